"""The operational database's change records (`bronze.orders_changes`) as Silver inputs: the web
shop's order lines as candidate sales lines of channel `online`, the CRM's customer changes as
customer change records.

Order lines. The database changes an order after it was placed (a line's quantity, its status,
a cancellation), and records each change; Silver holds each line as the newest version the
lateness window saw. An order's business date D is the date of its `ordered_at` as written (an
order's time never changes in the shop). A change record of an order line is *in window* when it
arrived on D-1 … D+L, the arrivals Silver's event-date partition D reads (`sales.py`). Of a
line's in-window records, the newest (highest `change_id`) is the line:
- joined with the newest in-window image of its order header (the newest of any, if none is in
  window), it is a candidate: transaction_id = order_id, event_time = ordered_at, store,
  customer and payment method from the header; `clean_sales` judges it like any sales line;
- unless it is a delete, or its order's header is: the order or the line was cancelled before
  the window closed, no sale (`CANCELLED`, counted).
The older in-window records of the line are `SUPERSEDED` (counted). A record that arrived
outside the window (a change after D+L, or a line whose order was never seen) is a candidate of
its own: `clean_sales` quarantines it as a late (future) event, or for its missing event time,
and Silver keeps the version the window saw. Change records of order headers carry no line of
their own: each is counted as merged into its lines (`ORDER_HEADER`), a cancellation arriving
after the window too (like a late event, it no longer reaches its day).

Every outcome depends only on the records of the same order that arrived in its window, so any
window holding D-1 … D+L (Silver's for D; the screening of any day one of them arrived on, whose
window is L+1 days either side) decides each record alike. Counted records are no quarantine
rows: the conservation check adds them per arrival day (`merged_order_changes`), as it adds the
duplicates.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from retail_assets.lib.registry import tables
from retail_assets.lib.transforms.silver.judging import sql_in, sql_string

ONLINE = tables.CHANNELS[2]  # the web shop
SOURCE_FILE = "postgresql:orders.changes"  # the `_source_file` of a CRM record in the customers' Bronze shape

# What became of an order change record that is not a candidate line: the figures conservation adds.
SUPERSEDED, CANCELLED, ORDER_HEADER = "superseded", "cancelled", "order_header"
MERGED_OUTCOMES = (SUPERSEDED, CANCELLED, ORDER_HEADER)
CANDIDATE = "candidate"

_HEADER = ("store_id", "customer_id", "ordered_at", "payment_method")
_LINE = ("line_number", "product_id", "quantity", "unit_price", "discount")
_ROW = "from_json(row_data, 'map<string,string>')"  # JSON values of any type read as their text


def _changes_of(bronze: DataFrame, table: str) -> DataFrame:
    return bronze.filter(f"_parse_error IS NULL AND table_name = {sql_string(table)}").selectExpr(
        "*", f"{_ROW} AS _row"
    )


def order_change_outcomes(bronze_orders_changes: DataFrame, *, lateness_days: int) -> DataFrame:
    """One row per parsed order change record (`online_orders`, `order_lines`): its `_source`,
    `_arrival_date`, `_outcome` (CANDIDATE or one of MERGED_OUTCOMES) and, for a candidate, the
    candidate line's raw values (`sales_candidates_from_orders`)."""
    header_images = _changes_of(bronze_orders_changes, "online_orders").selectExpr(
        "_row['order_id'] AS order_id",
        "change_id",
        "op",
        "_arrival_date",
        "_source",
        *[f"_row['{f}'] AS {f}" for f in _HEADER],
    )
    newest = F.struct("change_id", "op", *_HEADER)
    dates = header_images.groupBy("order_id").agg(
        F.expr("try_cast(substring(max_by(ordered_at, change_id), 1, 10) AS DATE)").alias("_order_date")
    )
    L = int(lateness_days)
    in_window = f"_arrival_date BETWEEN date_sub(_order_date, 1) AND date_add(_order_date, {L})"
    headers = (
        header_images.join(dates, "order_id", "left")
        .withColumn("_in_window", F.coalesce(F.expr(in_window), F.lit(False)))
        .groupBy("order_id", "_order_date")
        .agg(
            F.max_by(F.when(F.col("_in_window"), newest), F.when(F.col("_in_window"), F.col("change_id"))).alias("_h"),
            F.max_by(newest, F.col("change_id")).alias("_any"),
        )
        .selectExpr("order_id", "_order_date", "coalesce(_h, _any) AS _h")
    )
    lines = _changes_of(bronze_orders_changes, "order_lines").selectExpr(
        "_source",
        "_arrival_date",
        "change_id",
        "op",
        "_raw_record",
        "_row['order_id'] AS order_id",
        *[f"_row['{f}'] AS {f}" for f in _LINE],
        f"CASE WHEN size(map_filter(_row, (k, v) -> NOT k IN {sql_in(('order_id', *_LINE))})) > 0 "
        f"THEN to_json(map_filter(_row, (k, v) -> NOT k IN {sql_in(('order_id', *_LINE))})) END AS _extra",
    )
    judged = lines.join(headers, "order_id", "left").withColumn(
        "_in_window", F.coalesce(F.expr(in_window), F.lit(False))
    )
    rank = Window.partitionBy("order_id", "line_number", "_in_window").orderBy(F.col("change_id").desc())
    judged = judged.withColumn("_rank", F.row_number().over(rank))
    outcome = (
        F.when(~F.col("_in_window"), F.lit(CANDIDATE))
        .when(F.col("_rank") > 1, F.lit(SUPERSEDED))
        .when((F.col("op") == "D") | (F.col("_h.op") == "D"), F.lit(CANCELLED))
        .otherwise(F.lit(CANDIDATE))
    )
    line_outcomes = judged.withColumn("_outcome", outcome)
    header_outcomes = header_images.select("_source", "_arrival_date", F.lit(ORDER_HEADER).alias("_outcome"))
    return line_outcomes.unionByName(header_outcomes, allowMissingColumns=True)


def sales_candidates_from_orders(bronze_orders_changes: DataFrame, *, lateness_days: int) -> DataFrame:
    """The web shop's order lines as candidate sales lines of channel `online` (CANDIDATE_COLUMNS;
    see the module's docstring for which version of a line is one). Copies are ordered by
    arrival, then `change_id`."""
    candidates = order_change_outcomes(bronze_orders_changes, lateness_days=lateness_days).filter(
        F.col("_outcome") == CANDIDATE
    )
    values = {
        "transaction_id": "order_id",
        "event_time": "_h.ordered_at",
        "store_id": "_h.store_id",
        "customer_id": "_h.customer_id",
        "payment_method": "_h.payment_method",
    }
    return candidates.selectExpr(
        f"{sql_string(tables.BRONZE_ORDERS_CHANGES.key)} AS source_table",
        f"{sql_string(ONLINE)} AS channel",
        "_source",
        "_arrival_date",
        f"{sql_string(SOURCE_FILE)} AS _pos_a",
        "CAST(change_id AS BIGINT) AS _pos_b",
        "CAST(0 AS BIGINT) AS _pos_c",
        "0 AS _pos_d",
        *[f"CAST({values.get(f, f)} AS STRING) AS {f}" for f in tables.SALES_FIELDS],
        "_raw_record",
        "_extra",
        "CAST(NULL AS STRING) AS _record_error",
        "CAST(NULL AS STRING) AS _record_reason",
    )


def merged_order_changes(bronze_orders_changes: DataFrame, *, lateness_days: int) -> DataFrame:
    """(_arrival_date, outcome, records): the order change records counted rather than kept or
    quarantined (MERGED_OUTCOMES), per arrival day. Pass every arrival of the days' windows (L+1
    days either side) and keep the days wanted."""
    outcomes = order_change_outcomes(bronze_orders_changes, lateness_days=lateness_days)
    return (
        outcomes.filter(F.col("_outcome") != CANDIDATE)
        .groupBy("_arrival_date", F.col("_outcome").alias("outcome"))
        .agg(F.count(F.lit(1)).alias("records"))
    )


def crm_customer_records(bronze_orders_changes: DataFrame) -> DataFrame:
    """The CRM's customer change records in the shape of `bronze.customers` (the row's values as
    text, `_source_file` = SOURCE_FILE, `_source_line` = change_id) plus `_is_deleted`: an
    insert or update is a change record of the row's attributes at its `updated_at`; a delete is
    a deletion at the delete's `changed_at`, carrying the row as it was deleted. Unknown row
    fields go to `_extra` (schema evolution); a record the database could not give is Bronze's
    ingest reject already, kept here with its `_parse_error`."""
    fields = [f for f in tables.CUSTOMER_FIELDS if f != "updated_at"]
    unknown = f"map_filter(_row, (k, v) -> NOT k IN {sql_in(tables.CUSTOMER_FIELDS)})"
    changed_at = "date_format(changed_at, \"yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX\")"
    records = bronze_orders_changes.filter("table_name = 'customers'").selectExpr("*", f"{_ROW} AS _row")
    return records.selectExpr(
        *[f"_row['{f}'] AS {f}" for f in fields],
        f"CASE WHEN op = 'D' THEN {changed_at} ELSE _row['updated_at'] END AS updated_at",
        f"{sql_string(SOURCE_FILE)} AS _source_file",
        "change_id AS _source_line",
        "_source",
        "_raw_record",
        "_raw_bytes",
        "_parse_error",
        "_parse_reason",
        f"CASE WHEN size({unknown}) > 0 THEN to_json({unknown}) ELSE _extra END AS _extra",
        "_ingested_at",
        "_batch_id",
        "_arrival_date",
        "op = 'D' AS _is_deleted",
    )
