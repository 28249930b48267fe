"""Incremental dimension runs (`gold.rebuild_touched_keys`) against the full rebuild, the
reference: whatever order the arrival days run in, with late, out-of-order, re-sent and no-op
changes and keys sales named before their records, the table the MERGEs leave is the rebuild's."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

import pytest

from retail_assets.lib.registry import rules, tables
from retail_assets.lib.transforms import gold
from retail_assets_tests.lib.test_gold import (
    PROCESSED_AT,
    PRODUCT_CHANGES,
    RUN_DAY,
    change,
    make_df,
    silver_line,
    sorted_rows,
    ts,
)

CHANGES = [
    *PRODUCT_CHANGES,
    # named by a sale arriving on day 2; its record, dated day 1, arrives on day 5
    change(5, "products/g.csv:2", product_id="P3", name="Plum", unit_cost=Decimal("0.50"), updated_at=ts(1)),
    change(6, "products/h.csv:2", product_id="P3", unit_cost=Decimal("0.60"), updated_at=ts(5)),
    # a change to P2 dated before every other of its records, arriving last
    change(7, "products/i.csv:2", product_id="P2", name="Early Pear", updated_at=ts(1)),
]
# (product named, arrival day of the line): P3 and P4 before any record of theirs; P4 never gets one
FLAGGED = [("P3", 2), ("P4", 3), ("P4", 1), ("P3", 6)]
DAYS = list(range(1, 8))
VOLATILE = set(tables.GOLD_DIM_PRODUCT.volatile_columns)


def lines(spark, arrived_on: list[int]):
    records = [
        {
            **silver_line(f"T{i}", ts(day, 9), "S1", product, None, 1, "1.00"),
            "quality_flags": [rules.UNKNOWN_PRODUCT],
            "_arrival_date": date(2024, 1, day),
        }
        for i, (product, day) in enumerate(FLAGGED)
        if day in arrived_on
    ]
    return gold.inferred_keys(make_df(spark, tables.SILVER_SALES_LINES, records), "product_id", rules.UNKNOWN_PRODUCT)


def content(df) -> list[tuple]:
    return sorted_rows(df.select(*[c for c in df.columns if c not in VOLATILE]))


def full_rebuild(spark, arrived_by: int):
    return gold.build_dim_product(
        make_df(spark, tables.SILVER_PRODUCTS, [c for c in CHANGES if c["_arrival_date"].day <= arrived_by]),
        processed_at=PROCESSED_AT,
        arrival_date=RUN_DAY,
        inferred=lines(spark, [d for d in DAYS if d <= arrived_by]),
    )


def run_days(spark, order: list[int], *, silver_complete: bool):
    """The dimension after each incremental run of `order`'s arrival days, each MERGEd into what
    the runs before it left (the first starts from nothing, not from a rebuild). Silver holds
    every record (`silver_complete`: a backfill after Silver was refined), or those arrived by
    the day."""
    dim = full_rebuild(spark, 0).limit(0)
    for day in order:
        silver = [c for c in CHANGES if silver_complete or c["_arrival_date"].day <= day]
        upserts, deletes = gold.rebuild_touched_keys(
            gold.build_dim_product,
            key="product_id",
            sk_column="product_sk",
            arrived=make_df(spark, tables.SILVER_PRODUCTS, [c for c in CHANGES if c["_arrival_date"].day == day]),
            inferred=lines(spark, [day]),
            changes=make_df(spark, tables.SILVER_PRODUCTS, silver),
            current=dim,
            processed_at=PROCESSED_AT,
            arrival_date=date(2024, 1, day),
        )
        # the MERGE: rows of the deleted and of the upserted surrogate keys go, the upserts come
        gone = deletes.unionByName(upserts.select("product_sk"))
        merged = dim.join(gone, "product_sk", "left_anti").unionByName(upserts)
        dim = spark.createDataFrame(merged.collect(), merged.schema)  # as written: no growing plan
        yield day, dim


def last(runs):
    return list(runs)[-1][1]


@pytest.fixture(scope="module")
def day_by_day(spark) -> dict:
    """The main job's order: each day's Silver, then its dimension run."""
    return dict(run_days(spark, DAYS, silver_complete=False))


def test_day_by_day_runs_equal_the_rebuild(spark, day_by_day):
    for day in (2, 5, 7):
        assert content(day_by_day[day]) == content(full_rebuild(spark, day)), f"after day {day}"


def test_a_backfill_in_any_order_equals_the_rebuild(spark):
    order = DAYS[:]
    random.Random(3).shuffle(order)
    expected = content(full_rebuild(spark, DAYS[-1]))
    assert content(last(run_days(spark, order, silver_complete=True))) == expected
    # and the rebuild holds what the changes say, so equality is not vacuous
    products = {r[1] for r in expected}
    assert products == {"P1", "P2", "P3", "P4", tables.UNKNOWN_MEMBER_ID}


def test_a_run_touches_only_its_keys_and_a_late_change_rekeys_only_them(spark, day_by_day):
    before = day_by_day[6]
    upserts, deletes = gold.rebuild_touched_keys(
        gold.build_dim_product,
        key="product_id",
        sk_column="product_sk",
        arrived=make_df(spark, tables.SILVER_PRODUCTS, [c for c in CHANGES if c["_arrival_date"].day == 7]),
        inferred=lines(spark, [7]),
        changes=make_df(spark, tables.SILVER_PRODUCTS, CHANGES),
        current=before,
        processed_at=PROCESSED_AT,
        arrival_date=date(2024, 1, 7),
    )
    # day 7 brings P2's earlier-dated change: only P2 (and the unknown member) is written
    assert {r["product_id"] for r in upserts.collect()} == {"P2", tables.UNKNOWN_MEMBER_ID}
    versions = sorted((r["version"], r["name"]) for r in upserts.collect() if r["product_id"] == "P2")
    assert versions == [(1, "Early Pear"), (2, "Pear")]
    # the one row P2 had is deleted unless derived again under its key (the first-arrived record's)
    held = {r["product_sk"] for r in before.collect() if r["product_id"] == "P2"}
    assert {r["product_sk"] for r in deletes.collect()} == held
    assert held <= {r["product_sk"] for r in upserts.collect()}
