"""Freshness of every table (SPEC §11): a `fresh` check per table, its bound from the registry
(`lib/registry/freshness.py`), and a sensor that keeps the checks' state current in the UI and
alerts when a table turns stale.

The check reads only the instance's event log: the table's and its inputs' latest
materializations. A table below Bronze is stale when an input was materialized more than its
bound ago and the table has not been since (automation stopped, a run failing, a blocking check
holding it back); a Bronze table when it was last materialized more than its bound ago. The
check is of the table, not of a partition, and warns (it blocks nothing). `freshness_sensor`
evaluates every table each minute and records an evaluation when a table's state changes (and
on its first tick), so the asset's page shows it stale without a run; *Execute checks* in the UI
evaluates it on demand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import dagster as dg

from retail_assets.lib.orchestration.alerts import Alert, Alerts
from retail_assets.lib.orchestration.factories import asset_key
from retail_assets.lib.registry.freshness import FRESHNESS_CHECK, Freshness, expected
from retail_assets.lib.registry.tables import TABLES, Layer
from retail_assets.lib.settings import sensors_running_by_default
from retail_assets.lib.transforms.quality import CheckOutcome

FRESHNESS_SENSOR = "freshness_sensor"
FRESHNESS_INTERVAL_S = 60
EXPECTED = {asset_key(t): expected(t) for t in TABLES}

# The time now; the tests let it pass.
clock = time.time


def _ago(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def freshness_outcome(fresh: Freshness, own: float | None, inputs: dict[str, float | None], now: float) -> CheckOutcome:
    """Whether a table last materialized at `own` (epoch seconds) is fresh at `now`, its inputs
    last materialized at `inputs`."""
    bound = fresh.bound.total_seconds()
    figures = {"bound_minutes": round(bound / 60, 1)}
    if own is not None:
        figures["minutes_since_update"] = round((now - own) / 60, 1)
    if not fresh.of_inputs:
        if own is None:
            return CheckOutcome(True, "never materialized: no data has arrived to be fresh with", figures)
        age = now - own
        passed = age <= bound
        return CheckOutcome(
            passed,
            f"last materialized {_ago(age)} ago; the bound is {_ago(bound)}"
            + ("" if passed else ": no data has reached it since"),
            figures,
        )
    waiting = {name: t for name, t in inputs.items() if t is not None and (own is None or t > own)}
    if not waiting:
        return CheckOutcome(True, "up to date with every input", figures)
    oldest = min(waiting.values())
    lag = now - oldest
    figures.update({"minutes_behind_inputs": round(lag / 60, 1), "inputs_updated_since": len(waiting)})
    names = ", ".join(sorted(waiting))
    passed = lag <= bound
    return CheckOutcome(
        passed,
        f"{names} updated {_ago(lag)} ago and not materialized since; the bound is {_ago(bound)}"
        + ("" if passed else " (stale)"),
        figures,
    )


def evaluate_freshness(
    instance: dg.DagsterInstance, graph: dg.AssetGraph | None, keys: Iterable[dg.AssetKey], now: float
) -> dict[dg.AssetKey, CheckOutcome]:
    """Each table's freshness at `now`, from one query of the latest materializations."""
    keys = list(keys)
    parents = {
        k: [p for p in graph.get(k).parent_keys if p in EXPECTED and p != k] if graph and graph.has(k) else []
        for k in keys
    }
    wanted = set(keys).union(*parents.values())
    latest = {k: (e.timestamp if e else None) for k, e in instance.get_latest_materialization_events(wanted).items()}
    return {
        k: freshness_outcome(EXPECTED[k], latest.get(k), {p.to_user_string(): latest.get(p) for p in parents[k]}, now)
        for k in keys
    }


def _result(key: dg.AssetKey, outcome: CheckOutcome) -> dict:
    """The fields of the `fresh` check's result for `key`, whether a run or the sensor records it."""
    return {
        "asset_key": key,
        "check_name": FRESHNESS_CHECK,
        "passed": outcome.passed,
        "severity": dg.AssetCheckSeverity.WARN,
        "description": outcome.description,
        "metadata": outcome.metadata,
    }


@dg.multi_asset_check(
    name="freshness_checks",
    specs=[dg.AssetCheckSpec(FRESHNESS_CHECK, asset=k, description=f.describe()) for k, f in EXPECTED.items()],
    can_subset=True,
    description="Each table's freshness, from the event log: the table's and its inputs' latest materializations.",
)
def freshness_checks(context):
    keys = [k.asset_key for k in context.selected_asset_check_keys]
    # the run's job's asset graph: the code location's, or what a `dg.materialize` was given
    graph = context.op_execution_context.job_def.asset_layer.asset_graph
    for key, outcome in evaluate_freshness(context.instance, graph, keys, clock()).items():
        yield dg.AssetCheckResult(**_result(key, outcome))


def _upstream_first(key: dg.AssetKey) -> tuple[int, str]:
    layers = [layer.value for layer in Layer]
    return (layers.index(key.path[0]) if key.path[0] in layers else len(layers), key.to_user_string())


def stale_alert(stale: dict[dg.AssetKey, CheckOutcome], alerts: Alerts) -> Alert:
    """One message for the tables that turned stale, upstream layers first (where the cause
    usually is)."""
    keys = sorted(stale, key=_upstream_first)
    names = [k.to_user_string() for k in keys]
    return Alert(
        subject=f"retail-assets: stale: {', '.join(names[:3])}"
        + (f" and {len(names) - 3} more" if len(names) > 3 else ""),
        lines=[f"{k.to_user_string()}: {stale[k].description}" for k in keys],
        links=[(k.to_user_string(), alerts.asset_url(k, "checks")) for k in keys],
    )


@dg.sensor(
    name=FRESHNESS_SENSOR,
    minimum_interval_seconds=FRESHNESS_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING if sensors_running_by_default() else dg.DefaultSensorStatus.STOPPED,
    description="Evaluates every table's freshness each minute: records the `fresh` check when a table turns stale or fresh again, and alerts (Slack, e-mail) on the tables that turned stale.",
)
def freshness_sensor(context: dg.SensorEvaluationContext, alerts: Alerts):
    graph = context.repository_def.asset_graph if context.repository_def else None
    outcomes = evaluate_freshness(context.instance, graph, EXPECTED, clock())
    before: dict[str, bool] = json.loads(context.cursor) if context.cursor else {}
    changed = {k: o for k, o in outcomes.items() if before.get(k.to_user_string()) != o.passed}
    turned_stale = {k: o for k, o in changed.items() if not o.passed}
    if turned_stale and alerts.enabled:
        alerts.send(stale_alert(turned_stale, alerts), context.log)
    cursor = json.dumps({k.to_user_string(): o.passed for k, o in outcomes.items()}, sort_keys=True)
    context.update_cursor(cursor)
    if not changed:
        return dg.SkipReason(f"no change: {sum(not o.passed for o in outcomes.values())} stale table(s)")
    return dg.SensorResult(asset_events=[dg.AssetCheckEvaluation(**_result(k, o)) for k, o in changed.items()])
