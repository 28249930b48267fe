"""Freshness: a table whose input was updated and which was not materialized since turns stale
once its bound has passed on the clock, shows as a failed `fresh` check, and is alerted once;
materializing it makes it fresh again. Bronze is stale when nothing reached it within its bound."""

from __future__ import annotations

import dagster as dg
import pytest

from retail_assets.definitions import defs as project_defs
from retail_assets.defs.operations import freshness
from retail_assets.lib.orchestration.alerts import Alert, Alerts
from retail_assets.lib.registry.freshness import FRESHNESS_CHECK, expected
from retail_assets.lib.registry.tables import BRONZE_SALES_FILES, GOLD_FACT_SALES, SILVER_SALES_LINES, TABLES

SALES_FILES = dg.AssetKey(["bronze", "sales_files"])
SALES_LINES = dg.AssetKey(["silver", "sales_lines"])
FACT = dg.AssetKey(["gold", "fact_sales"])
MINUTE = 60.0


class Outbox(Alerts):
    """The alert resource, recording what it would send instead of sending it (the channels
    themselves are proven in test_alerts.py)."""

    @property
    def enabled(self) -> bool:
        return True

    def send(self, alert: Alert, log=None) -> list[str]:
        SENT.append(alert)
        return ["outbox"]


SENT: list[Alert] = []


@pytest.fixture
def world(monkeypatch):
    SENT.clear()
    now = [0.0]
    monkeypatch.setattr(freshness, "clock", lambda: now[0])
    with dg.instance_for_test() as instance:
        yield instance, now


def materialized(instance: dg.DagsterInstance, *keys: dg.AssetKey) -> float:
    for key in keys:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition="2026-11-03"))
    return instance.get_latest_materialization_event(keys[-1]).timestamp


def tick(instance: dg.DagsterInstance, cursor: str | None):
    alerts = Outbox(slack=None, email=None)
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        repository_def=project_defs.get_repository_def(),
        resources={"alerts": alerts},
    ) as context:
        result = freshness.freshness_sensor(context)
        return context.cursor, result


def reported(result) -> dict[dg.AssetKey, dg.AssetCheckEvaluation]:
    events = result.asset_events if isinstance(result, dg.SensorResult) else []
    return {e.asset_key: e for e in events if e.check_name == FRESHNESS_CHECK}


def test_every_table_has_a_freshness_check_derived_from_the_registry():
    graph = project_defs.resolve_asset_graph()
    for spec in TABLES:
        key = dg.AssetKey([spec.layer.value, spec.name])
        assert dg.AssetCheckKey(key, FRESHNESS_CHECK) in graph.asset_check_keys, spec.key
    assert not expected(BRONZE_SALES_FILES).of_inputs and expected(GOLD_FACT_SALES).of_inputs
    assert expected(SILVER_SALES_LINES).describe() == "Materialized within 30 min of any update of its inputs."


def test_a_table_behind_its_input_turns_stale_when_the_clock_passes_its_bound(world):
    instance, now = world
    start = materialized(instance, SALES_FILES, SALES_LINES, FACT)
    now[0] = start + MINUTE
    cursor, first = tick(instance, None)  # the first tick records every table's state
    assert reported(first)[SALES_LINES].passed and reported(first)[FACT].passed
    assert SENT == []

    # new files land in Bronze; Silver's automation does not follow (stopped, failing, held back)
    landed = materialized(instance, SALES_FILES)
    now[0] = landed + 5 * MINUTE
    cursor, within = tick(instance, cursor)
    assert isinstance(within, dg.SkipReason) and SENT == []  # 5 minutes behind: within the bound

    now[0] = landed + 31 * MINUTE
    cursor, past = tick(instance, cursor)
    stale = reported(past)[SALES_LINES]
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.WARN
    assert "bronze/sales_files updated 31 min ago and not materialized since" in stale.description
    assert stale.metadata["minutes_behind_inputs"].value == 31.0
    assert FACT not in reported(past)  # its inputs did not change: still fresh, nothing to record
    assert len(SENT) == 1 and SENT[0].subject.startswith("retail-assets: stale: quarantine/")  # upstream first
    assert "silver/sales_lines: bronze/sales_files updated 31 min ago" in SENT[0].text()

    # still stale a minute later: no second alert, no second evaluation
    now[0] += MINUTE
    cursor, again = tick(instance, cursor)
    assert SALES_LINES not in reported(again) and len(SENT) == 1

    # Silver catches up, and the fact after it: fresh again, recorded, no alert
    materialized(instance, SALES_LINES, FACT)
    cursor, caught_up = tick(instance, cursor)
    assert reported(caught_up)[SALES_LINES].passed and FACT not in reported(caught_up) and len(SENT) == 1


def test_bronze_is_stale_when_nothing_reached_it_within_its_bound(world):
    instance, now = world
    landed = materialized(instance, SALES_FILES)
    outcome = freshness.evaluate_freshness(instance, None, [SALES_FILES], landed + 25 * 3600)[SALES_FILES]
    assert outcome.passed
    outcome = freshness.evaluate_freshness(instance, None, [SALES_FILES], landed + 27 * 3600)[SALES_FILES]
    assert not outcome.passed and "last materialized 27.0 h ago; the bound is 26.0 h" in outcome.description
