"""Customer lifetime value as the assets write it (delta-rs): a late sale that re-materializes an
earlier day of the fact reaches the customer's lifetime figures through declared dependencies,
by a MERGE of the customers it touches, and the table equals a from-scratch computation over the
whole fact whatever order the days run in; one row per customer, however many days."""

from __future__ import annotations

import datetime as dt
import random

import dagster as dg
import pytest

from retail_assets.defs.gold.assets import agg_customer_lifetime_value, customer_daily_value
from retail_assets.defs.gold.checks import gold_checks
from retail_assets.lib.engine import PartitionRange
from retail_assets.lib.orchestration.factories import FULL_REFRESH_TAG, STEP_LAUNCHER, asset_key, daily_partitions
from retail_assets.lib.orchestration.resources import LakehouseResource
from retail_assets.lib.registry.tables import (
    GOLD_AGG_CUSTOMER_LIFETIME_VALUE,
    GOLD_CUSTOMER_DAILY_VALUE,
    GOLD_FACT_SALES,
)
from retail_assets.lib.transforms import gold
from retail_assets_tests.lib.test_gold import fact_row, make_df, sorted_rows

DAYS = [dt.date(2026, 11, 2) + dt.timedelta(days=i) for i in range(3)]
CLV_KEY, DAILY_KEY = asset_key(GOLD_AGG_CUSTOMER_LIFETIME_VALUE), asset_key(GOLD_CUSTOMER_DAILY_VALUE)
CHECKS = [c for c in gold_checks if {k.asset_key for k in c.check_keys} & {CLV_KEY, DAILY_KEY}]


def lines(day: dt.date, customers: list[str | None], first_tx: int = 0) -> list[dict]:
    """One sale per customer that day, and a return for the first of them."""
    rows = [
        fact_row(f"T{day:%d}-{first_tx + i}", 1, "sale", day, 9, "S1", "P1", 101, c, i + 1, "3.50")
        for i, c in enumerate(customers)
    ]
    rows.append(fact_row(f"R{day:%d}-{first_tx}", 1, "return", day, 12, "S1", "P1", 101, customers[0], -1, "3.50"))
    return [{**r, "quality_flags": []} for r in rows]


FACT = {
    DAYS[0]: lines(DAYS[0], ["C1", "C2", None]),
    DAYS[1]: lines(DAYS[1], ["C2", "C3"]),
    DAYS[2]: lines(DAYS[2], ["C1", "C3", "C4"]),
}
# Arrives after every day ran, for the first day: a new customer, and C3's first purchase moves
LATE = lines(DAYS[0], ["C5", "C3"], first_tx=10)


class Lake:
    def __init__(self, root, spark) -> None:
        self.resource = LakehouseResource(root=str(root / "lakehouse"), landing_root=str(root / "landing"))
        self.engine = self.resource.engine
        self.spark = spark
        self.instance = dg.DagsterInstance.ephemeral()
        self.fact = {day: list(rows) for day, rows in FACT.items()}
        for day in DAYS:
            self.write_fact(day)

    def write_fact(self, day: dt.date) -> None:
        data = make_df(self.spark, GOLD_FACT_SALES, self.fact[day])
        self.engine.write(GOLD_FACT_SALES, data, PartitionRange.single(day))

    def materialize(self, first: dt.date, last: dt.date | None = None, *, assets=None, tags=None):
        """The customer-value assets and their checks for a day or (`last`) a range in one run."""
        tags = dict(tags or {})
        if last is not None:
            tags |= {"dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(last)}
        chosen = assets or [customer_daily_value, agg_customer_lifetime_value]
        result = dg.materialize(
            [customer_daily_value, agg_customer_lifetime_value, *CHECKS],
            resources={"lakehouse": self.resource, STEP_LAUNCHER: dg.ResourceDefinition.none_resource()},
            partition_key=None if last is not None else str(first),
            instance=self.instance,
            tags=tags,
            selection=dg.AssetSelection.assets(*chosen),
        )
        failed = [(e.asset_key, e.check_name) for e in result.get_asset_check_evaluations() if not e.passed]
        assert failed == []
        return result

    def clv(self) -> list[tuple]:
        return sorted_rows(self.engine.read(GOLD_AGG_CUSTOMER_LIFETIME_VALUE))

    def from_scratch(self) -> list[tuple]:
        fact = make_df(self.spark, GOLD_FACT_SALES, [r for rows in self.fact.values() for r in rows])
        return sorted_rows(gold.agg_customer_lifetime_value(gold.customer_daily_value(fact)))


def metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.mark.parametrize("seed", [1, 2])
def test_a_late_sale_reaches_lifetime_value_and_any_run_order_equals_from_scratch(tmp_path, spark, seed):
    lake = Lake(tmp_path, spark)
    lake.materialize(DAYS[0], DAYS[-1])  # the first run: the whole table
    assert lake.clv() == lake.from_scratch()
    before = {r[0]: r for r in lake.clv()}
    assert set(before) == {"C1", "C2", "C3", "C4"} and before["C3"][3] == DAYS[1]

    # the late sale re-materializes its day of the fact; that day of each table follows
    lake.fact[DAYS[0]] += LATE
    lake.write_fact(DAYS[0])
    result = lake.materialize(DAYS[0])
    assert lake.clv() == lake.from_scratch()
    after = {r[0]: r for r in lake.clv()}
    assert after["C5"][3] == DAYS[0] and after["C3"][3] == DAYS[0]  # first purchases
    assert after["C4"] == before["C4"]
    figures = metadata(result, CLV_KEY)
    # C1 and C2 had lines that day already, C3 and C5 are the late sale's: only they are written
    assert (figures["refresh"], figures["rows_upserted"], figures["rows_deleted"]) == ("customers touched", 4, 0)

    # the days again, one run each, in any order: nothing changes
    order = DAYS[:]
    random.Random(seed).shuffle(order)
    for day in order:
        lake.materialize(day)
    assert lake.clv() == lake.from_scratch()


def test_one_row_per_customer_and_a_full_refresh_equals_the_runs(tmp_path, spark):
    lake = Lake(tmp_path, spark)
    for day in DAYS:
        lake.materialize(day)
    customers = {"C1", "C2", "C3", "C4"}
    assert [r[0] for r in lake.clv()] == sorted(customers)
    # more days of the same customers: more daily rows, not more lifetime rows
    later = [DAYS[-1] + dt.timedelta(days=i) for i in range(1, 4)]
    for day in later:
        lake.fact[day] = lines(day, sorted(customers))
        lake.write_fact(day)
        lake.materialize(day)
    assert lake.engine.read(GOLD_CUSTOMER_DAILY_VALUE).count() == 2 + 2 + 3 + 3 * 4
    assert len(lake.clv()) == len(customers)
    assert lake.clv() == lake.from_scratch()

    incremental = lake.clv()
    result = lake.materialize(later[0], assets=[agg_customer_lifetime_value], tags={FULL_REFRESH_TAG: "true"})
    assert metadata(result, CLV_KEY)["refresh"] == "full"
    assert lake.clv() == incremental


def test_automation_follows_a_late_fact_day_to_lifetime_value(tmp_path, spark):
    """The dependencies are declared: an updated day of the fact requests that day of the daily
    values and, in the same run, of the lifetime value; an updated day of the daily values
    requests that day of the lifetime value."""
    lake = Lake(tmp_path, spark)
    lake.materialize(DAYS[0], DAYS[-1])
    fact = dg.AssetSpec(asset_key(GOLD_FACT_SALES), partitions_def=daily_partitions())
    defs = dg.Definitions(
        assets=[fact, customer_daily_value, agg_customer_lifetime_value],
        resources={"lakehouse": lake.resource, STEP_LAUNCHER: dg.ResourceDefinition.none_resource()},
    )
    clock = dt.datetime.combine(DAYS[-1], dt.time(12), dt.UTC)
    cursor = dg.evaluate_automation_conditions(defs=defs, instance=lake.instance, evaluation_time=clock).cursor

    def requested() -> dict[dg.AssetKey, set[str]]:
        nonlocal clock, cursor
        clock += dt.timedelta(minutes=5)  # a catch-up tick passes: older days follow too
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=lake.instance, cursor=cursor, evaluation_time=clock
        )
        cursor = result.cursor
        return {k: set(result.get_requested_partitions(k)) for k in (DAILY_KEY, CLV_KEY)}

    nothing = {DAILY_KEY: set(), CLV_KEY: set()}
    assert requested() == nothing
    lake.fact[DAYS[0]] += LATE
    lake.write_fact(DAYS[0])
    lake.instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key(GOLD_FACT_SALES), partition=str(DAYS[0]))
    )
    assert requested() == {DAILY_KEY: {str(DAYS[0])}, CLV_KEY: {str(DAYS[0])}}
    lake.materialize(DAYS[0])  # the run automation requested
    assert requested() == nothing
    assert lake.clv() == lake.from_scratch()

    lake.materialize(DAYS[1], assets=[customer_daily_value])
    assert requested() == {DAILY_KEY: set(), CLV_KEY: {str(DAYS[1])}}
