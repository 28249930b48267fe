"""Quarantine replay: after a rule is corrected, the replay job moves exactly the records it had
quarantined into Silver and Gold, through the stage jobs, and conservation still holds with the
released records counted; their quarantine rows stay, stamped with when and by which run."""

from __future__ import annotations

from decimal import Decimal

import dagster as dg

# the replay job runs from its code location, as a deployment runs it: Dagster exports no loader
from dagster._core.definitions.reconstruct import ReconstructableRepository

from retail_assets.defs.quarantine.replay import REPLAY_TAG
from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import GOLD_AGG_DAILY_STORE_SALES, GOLD_FACT_SALES, QUARANTINE_RULE_VIOLATIONS
from retail_assets.lib.transforms import quality
from retail_assets_tests.defs.test_late_master_data import D1, SALES_HEADER, Lake, product, write

NO_GIFT_CARDS = rules.Rule(
    "no_gift_cards",
    rules.RULE_VIOLATIONS,
    "gift cards refused (a rule later found wrong)",
    rules.RULE[rules.ZERO_QUANTITY].applies_to,
    (rules.When("", "{raw} = 'gift_card'", "{column} {raw} is refused"),),
    on=("silver.sales_lines.payment_method",),
)


class Replay:
    def __init__(self, result: dg.ExecutionResult) -> None:
        self.success, self.run_id = result.success, result.run_id
        self.output = result.output_for_node("replay_quarantined") if result.success else None
        failures = [e for e in result.all_events if e.is_step_failure]
        self.failure = failures[0].step_failure_data.error.to_string() if failures else ""


def replay(lake: Lake, chosen: list[str], first_day: str) -> Replay:
    """Run the replay job as a deployment does: loaded from its code location (the definitions
    of the lake's environment), so it finds the stage jobs there."""
    location = ReconstructableRepository.for_module("retail_assets.definitions", "build_definitions")
    config = {"ops": {"replay_quarantined": {"config": {"rules": chosen, "first_day": first_day}}}}
    job = location.get_reconstructable_job("replay_quarantine")
    with dg.execute_job(job, instance=lake.instance, run_config=config, raise_on_error=False) as result:
        return Replay(result)


def test_a_replay_after_a_rule_change_moves_exactly_the_affected_records_into_gold(tmp_path, spark, monkeypatch):
    lake = Lake(tmp_path, spark, monkeypatch)
    lake.store_s1()
    lake.products(D1, product("P1", "Tea", f"{D1}T06:00:00+00:00"))
    ts = f"{D1}T10:00:00+00:00"
    sales = [
        f"T1,1,{ts},S1,P1,,2,5.00,0,card",
        f"T2,1,{ts},S1,P1,,1,7.00,0,gift_card",
        f"T3,1,{ts},S1,P1,,3,2.00,0,gift_card",
        f"T4,1,{ts},S1,P1,,0,2.00,0,card",  # zero quantity: another rule, stays quarantined
    ]
    write(lake.landing, f"sales/{D1}/sales.csv", SALES_HEADER + "\n" + "\n".join(sales) + "\n")

    declared = rules.RULES
    at = [r.name for r in declared].index(rules.ZERO_QUANTITY)
    monkeypatch.setattr(rules, "RULES", (*declared[:at], NO_GIFT_CARDS, *declared[at:]))
    lake.stages(D1, [D1])
    held = {r["record_key"]: r["rule"] for r in lake.engine.read_arrow(QUARANTINE_RULE_VIOLATIONS).to_pylist()}
    assert held == {"T2:1": "no_gift_cards", "T3:1": "no_gift_cards", "T4:1": rules.ZERO_QUANTITY}
    assert set(lake.fact()) == {"T1"}

    # the rule is found wrong and removed; the records it quarantined are replayed
    monkeypatch.setattr(rules, "RULES", declared)
    refused = replay(lake, ["no_such_rule"], D1.isoformat())
    assert not refused.success and "replay takes the rules" in refused.failure
    done = replay(lake, ["no_gift_cards"], D1.isoformat())
    assert done.success
    figures = done.output
    assert figures == {"chosen": 2, "released": 2, "still_quarantined": 0}

    # exactly the two lines entered Gold
    assert set(lake.fact()) == {"T1", "T2", "T3"}
    assert [r["revenue"] for r in lake.engine.read_arrow(GOLD_AGG_DAILY_STORE_SALES).to_pylist()] == [Decimal("23.00")]
    assert sum(r["net_amount"] for r in lake.engine.read_arrow(GOLD_FACT_SALES).to_pylist()) == Decimal("23.00")
    # their quarantine rows are history now: when, and by which of the replay's runs
    children = lake.instance.get_runs(filters=dg.RunsFilter(tags={REPLAY_TAG: done.run_id}))
    assert [r.job_name for r in reversed(children)] == [
        "refine_sales",
        "screen_arrivals",
        "build_dimensions",
        "build_gold",
    ]
    rows = {r["record_key"]: r for r in lake.engine.read_arrow(QUARANTINE_RULE_VIOLATIONS).to_pylist()}
    screening = next(r.run_id for r in children if r.job_name == "screen_arrivals")
    for key in ("T2:1", "T3:1"):
        assert rows[key]["replayed_at"] is not None and rows[key]["replayed_by"] == screening
    assert rows["T4:1"]["replayed_at"] is None
    # conservation holds for the day, the released records counted as accepted
    passed, meta = lake.evaluation_in(screening, "quarantine/rule_violations", quality.CONSERVATION)
    assert passed and meta["released_from_quarantine"] == 2 and meta["rule_violations"] == 1
    # a second replay finds nothing left to release
    again = replay(lake, ["no_gift_cards"], D1.isoformat())
    assert again.output == {"chosen": 0}
