"""Customer lifetime value run by run (`gold.customer_lifetime_value_changes`, MERGEd by customer)
against the reference, `agg_customer_lifetime_value` over every customer's days computed from the
whole fact: after a late sale in an earlier day, after lines leave a day, whatever order the days
run in."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from retail_assets.lib.registry import tables
from retail_assets.lib.transforms import gold
from retail_assets_tests.lib.test_gold import FACT, fact_row, make_df, sorted_rows

D1, D2, D3 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)
DAYS = [D1, D2, D3]
LATER = [
    fact_row("T8", 1, "sale", D3, 9, "S1", "P1", 101, "C1", 1, "4.00"),
    fact_row("T9", 1, "return", D3, 10, "S1", "P1", 101, "C3", -1, "8.00"),  # C3's last activity: a return
]
# Arrive late, for day 1: C3's first purchase moves to day 1, C1 gets a second order that day.
LATE_SALES = [
    fact_row("T10", 1, "sale", D1, 18, "S2", "P2", 201, "C3", 2, "5.00"),
    fact_row("T11", 1, "sale", D1, 19, "S2", "P2", 201, "C1", 1, "5.00"),
]


class Lake:
    """The fact and the two customer-value tables, as the assets write them."""

    def __init__(self, spark, fact: list[dict]) -> None:
        self.spark = spark
        self.fact = fact
        self.daily = self.customer_days(DAYS)
        self.clv = gold.agg_customer_lifetime_value(self.daily.limit(0))

    def customer_days(self, days: list[date]):
        lines = make_df(self.spark, tables.GOLD_FACT_SALES, [r for r in self.fact if r["event_date"] in days])
        return gold.customer_daily_value(lines)

    def land(self, fact: list[dict], day: date) -> None:
        """The fact's day `day` materialized again from `fact`, then the daily values of that day."""
        self.fact = fact
        kept = self.daily.where(F.col("event_date") != day)
        self.daily = self.frozen(kept.unionByName(self.customer_days([day])))

    def run(self, day: date) -> None:
        """The lifetime-value asset's run of `day`: the MERGE of its changes."""
        upserts, deletes = gold.customer_lifetime_value_changes(
            self.daily.where(F.col("event_date") == day), self.daily, self.clv, first=day, last=day
        )
        gone = deletes.unionByName(upserts.select("customer_id"))
        self.clv = self.frozen(self.clv.join(gone, "customer_id", "left_anti").unionByName(upserts))

    def frozen(self, df):
        return self.spark.createDataFrame(df.collect(), df.schema)  # as written: no growing plan

    def from_scratch(self):
        fact = make_df(self.spark, tables.GOLD_FACT_SALES, self.fact)
        return gold.agg_customer_lifetime_value(gold.customer_daily_value(fact))


def test_a_late_sale_in_an_earlier_day_gives_the_from_scratch_figures(spark):
    lake = Lake(spark, FACT + LATER)
    for day in DAYS:
        lake.run(day)
    assert sorted_rows(lake.clv) == sorted_rows(lake.from_scratch())
    before = {r["customer_id"]: r.asDict() for r in lake.clv.collect()}

    lake.land(FACT + LATER + LATE_SALES, D1)
    lake.run(D1)  # only the late sale's day runs again, as automation requests it
    after = {r["customer_id"]: r.asDict() for r in lake.clv.collect()}
    assert sorted_rows(lake.clv) == sorted_rows(lake.from_scratch())
    assert (before["C3"]["first_purchase"], after["C3"]["first_purchase"]) == (D2, D1)
    assert after["C3"]["last_active_date"] == D3  # its day-3 return
    assert (after["C1"]["orders"], after["C1"]["total_spend"]) == (4, Decimal("27.01"))
    assert after["C2"] == before["C2"]  # not touched


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_days_run_again_in_any_order_give_the_from_scratch_figures(spark, seed):
    lake = Lake(spark, FACT + LATER)
    for day in DAYS:
        lake.run(day)
    lake.land(FACT + LATER + LATE_SALES, D1)
    order = DAYS * 2
    random.Random(seed).shuffle(order)
    for day in order:
        lake.run(day)
    assert sorted_rows(lake.clv) == sorted_rows(lake.from_scratch())


def test_a_customer_whose_lines_leave_a_day_it_names_is_computed_again_or_deleted(spark):
    lake = Lake(spark, FACT + LATER + LATE_SALES)
    for day in DAYS:
        lake.run(day)
    assert {r["customer_id"] for r in lake.clv.collect()} == {"C1", "C2", "C3"}
    # a corrected rule quarantines C2's one sale (day 2) and C3's day-1 sale: C2 is left with a
    # return (no order), C3 with its day-2 sale and day-3 return
    without = [r for r in FACT + LATER + LATE_SALES if r["transaction_id"] not in ("T5", "T10")]
    lake.land(without, D2)
    lake.run(D2)
    lake.land(without, D1)
    lake.run(D1)
    assert sorted_rows(lake.clv) == sorted_rows(lake.from_scratch())
    assert {r["customer_id"]: r["first_purchase"] for r in lake.clv.collect()} == {"C1": D1, "C3": D2}


def test_one_row_per_customer_however_many_days(spark):
    days = [D1 + timedelta(days=i) for i in range(30)]
    fact = [
        fact_row(f"T{i}-{c}", 1, "sale", day, 9, "S1", "P1", 101, c, 1, "2.00")
        for i, day in enumerate(days)
        for c in ("C1", "C2")
    ]
    daily = gold.customer_daily_value(make_df(spark, tables.GOLD_FACT_SALES, fact))
    assert daily.count() == 60
    clv = gold.agg_customer_lifetime_value(daily)
    assert sorted_rows(clv) == [
        ("C1", Decimal("60.00"), 30, days[0], days[-1], Decimal("2.00"), days[-1]),
        ("C2", Decimal("60.00"), 30, days[0], days[-1], Decimal("2.00"), days[-1]),
    ]
