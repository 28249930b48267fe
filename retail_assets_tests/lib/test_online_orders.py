"""The operational database in the model: the web shop's order lines become Silver sales lines of
channel `online` (newest version wins, cancellations and replaced versions counted, a change
after the lateness window quarantined as late) and reach the daily store sales under their
channel; the CRM's customer changes, deletes included, reach Silver customers; every change
record is accounted for."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal

import pyarrow as pa
from pyspark.sql import functions as F

from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import (
    BRONZE_CUSTOMERS,
    BRONZE_ORDERS_CHANGES,
    SILVER_CUSTOMERS,
    SILVER_PRODUCTS,
    SILVER_RETURNS,
    SILVER_SALES_LINES,
    SILVER_STORES,
)
from retail_assets.lib.transforms import gold, quality, silver
from retail_assets_tests.lib.test_gold import make_df
from retail_assets_tests.lib.test_silver import bronze, known

D = dt.date(2026, 10, 1)
NOW = dt.datetime(2026, 10, 5, tzinfo=dt.UTC)
L = 2


def day(offset: int) -> dt.date:
    return D + dt.timedelta(days=offset)


def change(change_id: int, table: str, op: str, row: dict, arrival: dt.date, changed_at: dt.datetime | None = None):
    return {
        "change_id": change_id,
        "table_name": table,
        "op": op,
        "row_data": json.dumps(row),
        "changed_at": changed_at or dt.datetime(arrival.year, arrival.month, arrival.day, 6, tzinfo=dt.UTC),
        "_source": f"postgresql:orders.changes/{change_id}",
        "_raw_record": json.dumps({"change_id": change_id, "table_name": table, "op": op, "row_data": row}),
        "_raw_bytes": None,
        "_parse_error": None,
        "_parse_reason": None,
        "_extra": None,
        "_ingested_at": NOW,
        "_batch_id": "run-database",
        "_arrival_date": arrival,
    }


def orders_bronze(spark, rows: list[dict]):
    return spark.createDataFrame(pa.Table.from_pylist(rows, schema=BRONZE_ORDERS_CHANGES.arrow_schema()))


def header(order_id: str, status: str = "placed") -> dict:
    return {
        "order_id": order_id,
        "store_id": "S9",
        "customer_id": "C900000001",
        "ordered_at": "2026-10-01T10:00:00+00:00",
        "payment_method": "card",
        "status": status,
        "updated_at": "2026-10-01T10:00:00+00:00",
    }


def line(order_id: str, number: int, quantity: int, product: str = "P1") -> dict:
    return {
        "order_id": order_id,
        "line_number": number,
        "product_id": product,
        "quantity": quantity,
        "unit_price": 4.5,
        "discount": 0.0,
    }


# W1 is placed on D, its first line changed the next day, its second line changed after the
# lateness window; W2 is placed and cancelled (the order deleted, its line by the cascade).
ORDERS = [
    change(1, "online_orders", "I", header("W1"), D),
    change(2, "order_lines", "I", line("W1", 1, 1), D),
    change(3, "order_lines", "I", line("W1", 2, 2, "P2"), D),
    change(4, "order_lines", "U", line("W1", 1, 3), day(1)),
    change(5, "online_orders", "U", header("W1", "shipped"), day(1)),
    change(6, "online_orders", "I", header("W2"), D),
    change(7, "order_lines", "I", line("W2", 1, 1), D),
    change(8, "online_orders", "D", header("W2"), day(1)),
    change(9, "order_lines", "D", line("W2", 1, 1), day(1)),
    change(10, "order_lines", "U", line("W1", 2, 5, "P2"), day(L + 1)),
]
CUSTOMER = {
    "customer_id": "C900000001",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada.lovelace@shop.example.com",
    "phone": "+44 20 123 4567",
    "city": "London",
    "country": "GB",
    "birth_date": "1980-12-10",
    "loyalty_tier": "gold",
    "updated_at": "2026-10-01T08:00:00+00:00",
}
DELETED_AT = dt.datetime(2026, 10, 2, 9, 30, tzinfo=dt.UTC)
CRM = [
    change(11, "customers", "I", CUSTOMER, D),
    change(12, "customers", "D", CUSTOMER, day(1), changed_at=DELETED_AT),
]


def keys(spark):
    early = day(-30)
    return known(spark, S9=early, P1=early, P2=early, C900000001=early)


def sales(spark, rows: list[dict]) -> silver.SalesResult:
    candidates = silver.sales_candidates_from_orders(orders_bronze(spark, rows), lateness_days=L)
    return silver.clean_sales(candidates, keys(spark), lateness_days=L, batch_id="run-silver")


def test_the_newest_version_of_each_line_is_the_sale_and_a_cancelled_order_none(spark):
    result = sales(spark, ORDERS)
    lines = {(r["transaction_id"], r["line_number"]): r for r in result.sales_lines.collect()}
    # W1/1 as changed on day 1; W1/2 as placed (its change after the window does not reach D)
    assert {k: r["quantity"] for k, r in lines.items()} == {("W1", 1): 3, ("W1", 2): 2}
    first = lines[("W1", 1)]
    assert (first["channel"], first["store_id"], first["customer_id"], first["payment_method"]) == (
        "online",
        "S9",
        "C900000001",
        "card",
    )
    assert first["event_date"] == D and first["_source"] == "postgresql:orders.changes/4"
    assert first["net_amount"] == Decimal("13.50")
    assert result.returns.count() == 0 and result.duplicates.count() == 0


def test_a_change_after_the_lateness_window_is_quarantined_as_late(spark):
    violations = sales(spark, ORDERS).violations.collect()
    assert [(v["_source"], v["rule"], v["record_key"]) for v in violations] == [
        ("postgresql:orders.changes/10", rules.LATE_EVENT, "W1:2")
    ]
    assert "3 days before its arrival" in violations[0]["reason"]
    # Silver's own window for D (arrivals D-1 … D+L) gives the same lines as one holding the late change
    in_window = sales(spark, [c for c in ORDERS if c["_arrival_date"] <= day(L)])
    assert sorted(tuple(r) for r in in_window.sales_lines.drop("_batch_id").collect()) == sorted(
        tuple(r) for r in sales(spark, ORDERS).sales_lines.drop("_batch_id").collect()
    )


def test_replaced_versions_cancellations_and_headers_are_counted_per_arrival_day(spark):
    merged = silver.merged_order_changes(orders_bronze(spark, ORDERS), lateness_days=L).collect()
    counted = {(r["_arrival_date"], r["outcome"]): r["records"] for r in merged}
    assert counted == {
        (D, "superseded"): 2,  # W1/1 as placed, W2/1 as placed
        (D, "order_header"): 2,  # W1 and W2 placed
        (day(1), "order_header"): 2,  # W1 shipped, W2 deleted
        (day(1), "cancelled"): 1,  # W2/1 deleted by the cascade
    }
    outcomes = silver.order_change_outcomes(orders_bronze(spark, ORDERS), lateness_days=L)
    by_source = {r["_source"].rsplit("/", 1)[1]: r["_outcome"] for r in outcomes.collect()}
    assert by_source == {
        "1": "order_header",
        "2": "superseded",
        "3": "candidate",
        "4": "candidate",
        "5": "order_header",
        "6": "order_header",
        "7": "superseded",
        "8": "order_header",
        "9": "cancelled",
        "10": "candidate",
    }


def test_crm_changes_and_a_delete_become_silver_customer_records(spark):
    files = bronze(
        spark, BRONZE_CUSTOMERS, [{**CUSTOMER, "customer_id": "C00001", "updated_at": "2026-10-01T07:00:00Z"}]
    )
    crm = silver.crm_customer_records(orders_bronze(spark, CRM + ORDERS))
    result = silver.clean_master_data(
        files.unionByName(crm, allowMissingColumns=True), SILVER_CUSTOMERS, batch_id="run-silver"
    )
    rows = sorted(result.accepted.collect(), key=lambda r: (r["customer_id"], r["updated_at"]))
    assert [(r["customer_id"], r["is_deleted"], r["_source"]) for r in rows] == [
        ("C00001", False, "customers/2026-10-01/customers.csv:2"),
        ("C900000001", False, "postgresql:orders.changes/11"),
        ("C900000001", True, "postgresql:orders.changes/12"),
    ]
    deletion = rows[2]
    assert deletion["updated_at"].astimezone(dt.UTC) == DELETED_AT and deletion["loyalty_tier"] == "gold"
    assert result.violations.count() == 0


def test_conservation_holds_with_online_orders_and_crm_changes(spark):
    changes = orders_bronze(spark, ORDERS + CRM)
    # every arrival day of the records, judged over windows holding L+1 days either side
    result = sales(spark, ORDERS)
    customers = silver.clean_master_data(silver.crm_customer_records(changes), SILVER_CUSTOMERS, batch_id="run-silver")
    merged = silver.merged_order_changes(changes, lateness_days=L).collect()
    records_in = {
        r["_arrival_date"]: r["records"] for r in silver.count_records_in(changes, BRONZE_ORDERS_CHANGES.key).collect()
    }
    for arrival in (D, day(1), day(L + 1)):
        accepted = sum(1 for r in result.sales_lines.collect() if r["_arrival_date"] == arrival)
        accepted += sum(1 for r in customers.accepted.collect() if r["_arrival_date"] == arrival)
        violations = sum(
            1 for v in (*result.violations.collect(), *customers.violations.collect()) if v["_arrival_date"] == arrival
        )
        outcome = quality.conservation(
            records_in=records_in[arrival],
            accepted=accepted,
            rejected=0,
            violations=violations,
            duplicates=result.duplicates.filter(f"_arrival_date = '{arrival}'").count(),
            merged=sum(r["records"] for r in merged if r["_arrival_date"] == arrival),
        )
        assert outcome.passed, (arrival, outcome.description)
    assert Counter(records_in) == Counter({D: 6, day(1): 5, day(L + 1): 1})
    # without the counted figure the check fails: the records are not silently gone
    assert not quality.conservation(records_in=6, accepted=2, rejected=0, violations=0, duplicates=0).passed


def test_online_sales_appear_in_daily_store_sales_under_their_channel(spark):
    lines = sales(spark, ORDERS).sales_lines
    # a till's sale in the same store and day: a row of its own channel
    store_sale = lines.filter("line_number = 1").withColumns(
        {"transaction_id": F.lit("T1"), "channel": F.lit("store_file")}
    )
    none = {spec: make_df(spark, spec, []) for spec in (SILVER_CUSTOMERS, SILVER_PRODUCTS, SILVER_STORES)}
    dims = {"processed_at": NOW, "arrival_date": D}
    fact = gold.build_fact_sales(
        lines.unionByName(store_sale),
        make_df(spark, SILVER_RETURNS, []),
        gold.build_dim_customer(none[SILVER_CUSTOMERS], **dims),
        gold.build_dim_product(none[SILVER_PRODUCTS], **dims),
        gold.build_dim_store(none[SILVER_STORES], **dims),
        processed_at=NOW,
    )
    daily = {(r["event_date"], r["store_id"], r["channel"]): r for r in gold.agg_daily_store_sales(fact).collect()}
    assert set(daily) == {(D, "S9", "online"), (D, "S9", "store_file")}
    online = daily[(D, "S9", "online")]
    assert (online["revenue"], online["units"], online["transactions"], online["unique_customers"]) == (
        Decimal("22.50"),
        5,
        1,
        1,
    )
    assert SILVER_SALES_LINES.accepted_values["channel"] == ("store_file", "pos_stream", "online")
