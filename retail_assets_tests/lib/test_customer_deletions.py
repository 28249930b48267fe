"""A customer the CRM deletes: `dim_customer`'s history of the key ends at the delete (the version
valid then closed and marked deleted, none current after it), the same whether the dimension is
rebuilt whole or run by key over the arrival days in any order; a sale after the delete stays
the deleted customer's."""

from __future__ import annotations

import random
from datetime import date

from pyspark.sql import functions as F

from retail_assets.lib.registry import tables
from retail_assets.lib.transforms import gold
from retail_assets.lib.transforms.gold import integrity
from retail_assets_tests.lib.test_gold import PROCESSED_AT, RUN_DAY, change, make_df, silver_line, sorted_rows, ts

CHANGES = [
    change(1, "customers/a.csv:2", customer_id="C1", first_name="Ada", loyalty_tier="silver", updated_at=ts(1)),
    change(3, "postgresql:orders.changes/3", customer_id="C1", loyalty_tier="gold", updated_at=ts(3)),
    change(5, "postgresql:orders.changes/9", customer_id="C1", loyalty_tier="gold", updated_at=ts(5), is_deleted=True),
    # a delete re-sent on a later day counts once
    change(6, "postgresql:orders.changes/9", customer_id="C1", loyalty_tier="gold", updated_at=ts(5), is_deleted=True),
    change(2, "customers/b.csv:2", customer_id="C2", first_name="Bo", loyalty_tier="none", updated_at=ts(2)),
    change(4, "postgresql:orders.changes/7", customer_id="C2", updated_at=ts(4, 12), is_deleted=True),
    # an update dated before the delete, arriving after it, slots in before it
    change(7, "customers/c.csv:2", customer_id="C2", loyalty_tier="gold", updated_at=ts(3)),
    change(2, "customers/b.csv:3", customer_id="C3", first_name="Cy", loyalty_tier="none", updated_at=ts(2)),
]
DAYS = list(range(1, 8))
VOLATILE = set(tables.GOLD_DIM_CUSTOMER.volatile_columns)


def silver(spark, records):
    return make_df(spark, tables.SILVER_CUSTOMERS, [{"is_deleted": False, **r} for r in records])


def build(spark, arrived_by: int = DAYS[-1]):
    records = [c for c in CHANGES if c["_arrival_date"].day <= arrived_by]
    return gold.build_dim_customer(silver(spark, records), processed_at=PROCESSED_AT, arrival_date=RUN_DAY)


def content(df) -> list[tuple]:
    return sorted_rows(df.select(*[c for c in df.columns if c not in VOLATILE]))


def history(dim, customer: str) -> list[tuple]:
    rows = sorted((r for r in dim.collect() if r["customer_id"] == customer), key=lambda r: r["version"])
    return [
        (r["version"], r["loyalty_tier"], r["valid_from"], r["valid_to"], r["is_current"], r["is_deleted"])
        for r in rows
    ]


def utc(rows: list[tuple]) -> list[tuple]:
    return [tuple(v.astimezone(ts(1).tzinfo) if hasattr(v, "astimezone") else v for v in r) for r in rows]


def test_a_deleted_customers_history_ends_at_the_delete(spark):
    dim = build(spark)
    assert utc(history(dim, "C1")) == [
        (1, "silver", ts(1), ts(3), False, False),
        (2, "gold", ts(3), ts(5), False, True),
    ]
    assert utc(history(dim, "C2")) == [
        (1, "none", ts(2), ts(3), False, False),
        (2, "gold", ts(3), ts(4, 12), False, True),
    ]
    assert utc(history(dim, "C3")) == [(1, "none", ts(2), None, True, False)]
    outcome = integrity.scd2_integrity(dim, key="customer_id", surrogate_key="customer_sk")
    assert outcome.passed, outcome.description
    # the current snapshot holds no deleted customer
    assert {r["customer_id"] for r in dim.where("is_current").collect()} == {"C3", tables.UNKNOWN_MEMBER_ID}


def test_the_check_still_refuses_a_key_closed_without_a_delete(spark):
    dim = build(spark).withColumn("is_deleted", F.lit(False))
    assert not integrity.scd2_integrity(dim, key="customer_id", surrogate_key="customer_sk").passed


def run_days(spark, order: list[int]):
    """The dimension after incremental runs of `order`'s arrival days (Silver holding every record)."""
    dim = build(spark, 0).limit(0)
    for day in order:
        upserts, deletes = gold.rebuild_touched_keys(
            gold.build_dim_customer,
            key="customer_id",
            sk_column="customer_sk",
            arrived=silver(spark, [c for c in CHANGES if c["_arrival_date"].day == day]),
            inferred=gold.inferred_keys(
                make_df(spark, tables.SILVER_SALES_LINES, []), "customer_id", "unknown_customer"
            ),
            changes=silver(spark, CHANGES),
            current=dim,
            processed_at=PROCESSED_AT,
            arrival_date=date(2024, 1, day),
        )
        gone = deletes.unionByName(upserts.select("customer_sk"))
        merged = dim.join(gone, "customer_sk", "left_anti").unionByName(upserts)
        dim = spark.createDataFrame(merged.collect(), merged.schema)
    return dim


def test_runs_by_key_in_any_order_equal_the_rebuild_with_deletes(spark):
    expected = content(build(spark))
    for seed in (1, 2, 3):
        order = DAYS[:]
        random.Random(seed).shuffle(order)
        assert content(run_days(spark, order)) == expected, order
    assert build(spark).where("is_deleted").count() == 2  # the compared table holds the deleted versions


def test_a_sale_after_the_delete_stays_the_deleted_customers(spark):
    dim = build(spark)
    sk = {(r["customer_id"], r["version"]): r["customer_sk"] for r in dim.collect()}
    lines = make_df(
        spark,
        tables.SILVER_SALES_LINES,
        [
            silver_line("T1", ts(2), "S1", "P1", "C1", 1, "1.00"),
            silver_line("T2", ts(6), "S1", "P1", "C1", 1, "1.00"),
        ],
    )
    empty = {"processed_at": PROCESSED_AT, "arrival_date": RUN_DAY}
    fact = gold.build_fact_sales(
        lines,
        make_df(spark, tables.SILVER_RETURNS, []),
        dim,
        gold.build_dim_product(make_df(spark, tables.SILVER_PRODUCTS, []), **empty),
        gold.build_dim_store(make_df(spark, tables.SILVER_STORES, []), **empty),
        processed_at=PROCESSED_AT,
    )
    keyed = {r["transaction_id"]: r["customer_sk"] for r in fact.collect()}
    assert keyed == {"T1": sk[("C1", 1)], "T2": sk[("C1", 2)]}
