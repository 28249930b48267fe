"""Silver sales at line grain, batch files, Kafka events and the web shop's online orders alike:
each is first brought to one *candidate* shape (one row per transaction line; online orders in
`orders.py`), then `clean_sales` types and judges them.

Windows. The functions judge whatever rows they are given; callers filter the outputs. A sales
line's outcome depends only on rows with the same (transaction_id, line_number, event_date), and
every copy of such a line that survives the late/future rules arrived within D-1 … D+L of its
event date D. So any input covering arrivals D-1 … D+L gives every line of D the same outcome:
- Silver sales/returns for event date D: arrivals D-1 … D+L, keep `event_date == D`;
- quarantine and duplicates for arrival A: arrivals A-L-1 … A+L+1, keep `_arrival_date == A`.
An online order line's candidate is the newest of its change records that arrived in D-1 … D+L,
which both windows hold whole; a change after D+L is its own candidate, quarantined as late
(`orders.py`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from retail_assets.lib.registry import rules, tables
from retail_assets.lib.transforms.silver.judging import (
    CUSTOMER,
    MAX_AMOUNT,
    PRODUCT,
    STORE,
    check,
    coded_values,
    conform,
    declared_checks,
    dedup,
    duplicate_rows,
    first_failure,
    judge,
    missing,
    orphan,
    sql_in,
    sql_string,
    typed_decimal,
    typed_int,
    typed_timestamp,
    violation_rows,
    with_columns,
    with_known,
)

STORE_FILE, POS_STREAM, ONLINE = tables.CHANNELS


# Line-level fields of a POS event; the rest of a sales line comes from the event itself.
POS_LINE_FIELDS = ("line_number", "product_id", "quantity", "unit_price", "discount")


# The common shape of a sales line before it is judged (see `sales_candidates_from_*`).
# `_pos_*` order copies of a record by source position: file path, line, 0, 0 for files;
# topic, partition, offset, index in `lines` for events. `_record_error`/`_record_reason` are
# set on an event whose `lines` cannot be read (one candidate row stands for the whole event).
CANDIDATE_COLUMNS = (
    "source_table",
    "channel",
    "_source",
    "_arrival_date",
    "_pos_a",
    "_pos_b",
    "_pos_c",
    "_pos_d",
    *tables.SALES_FIELDS,
    "_raw_record",
    "_extra",
    "_record_error",
    "_record_reason",
)


_LINES_SCHEMA = "array<map<string,string>>"  # values of any JSON type read as their JSON text

PARSED_LINES = f"from_json(lines, {sql_string(_LINES_SCHEMA)})"


def lines_judgement() -> tuple[str, str]:
    """SQL for the rule and the reason of a parsed event whose `lines` cannot be turned into
    transaction lines (NULL when they can); `_lines` holds them parsed (`PARSED_LINES`)."""
    return first_failure(
        [
            check(rules.MISSING_KEY, "no_lines", column="lines"),
            check(rules.INVALID_TYPE, "json_objects", column="lines", value="_lines"),
            check(rules.MISSING_KEY, "empty_array", column="lines", value="_lines"),
        ]
    )


@dataclass(frozen=True)
class SalesResult:
    sales_lines: DataFrame  # tables.SILVER_SALES_LINES schema
    returns: DataFrame  # tables.SILVER_RETURNS schema
    violations: DataFrame  # QUARANTINE_RULE_VIOLATIONS schema
    duplicates: DataFrame  # DUPLICATE_COLUMNS
    # One row per candidate with its outcome; the four frames above all derive from it.
    classified: DataFrame

    @property
    def classification(self) -> DataFrame:
        """What the outputs are derived from (`sales_outputs`), to compute once when several
        outputs are written or counted (with small daily partitions, planning the rule set once
        per action is a large share of a step's time). Only what the outputs read is kept, and
        the original record only where a violation will quote it: accepted lines are most rows,
        and their raw text the widest column."""
        return self.classified.selectExpr(
            *_SALES_OUTPUT_COLUMNS, "CASE WHEN _rule IS NOT NULL THEN _raw_record END AS _raw_record"
        )


def sales_candidates_from_files(bronze_sales_files: DataFrame) -> DataFrame:
    """Parsed Bronze `sales_files` rows as candidate lines (CANDIDATE_COLUMNS)."""
    return bronze_sales_files.filter("_parse_error IS NULL").selectExpr(
        f"{sql_string(tables.BRONZE_SALES_FILES.key)} AS source_table",
        f"{sql_string(STORE_FILE)} AS channel",
        "_source",
        "_arrival_date",
        "_source_file AS _pos_a",
        "CAST(_source_line AS BIGINT) AS _pos_b",
        "CAST(0 AS BIGINT) AS _pos_c",
        "0 AS _pos_d",
        *[f"CAST({f} AS STRING) AS {f}" for f in tables.SALES_FIELDS],
        "_raw_record",
        "_extra",
        "CAST(NULL AS STRING) AS _record_error",
        "CAST(NULL AS STRING) AS _record_reason",
    )


def sales_candidates_from_events(bronze_pos: DataFrame) -> DataFrame:
    """Parsed Bronze `pos_transactions` events exploded to candidate lines (CANDIDATE_COLUMNS).

    Event-level fields repeat on every line; `_source` stays the message's. Unknown line-level
    keys join the event's `_extra` under `"_line"`. An event whose `lines` is missing, empty or
    not an array of objects becomes one candidate carrying `_record_error`.
    """
    events = bronze_pos.filter("_parse_error IS NULL").selectExpr("*", f"{PARSED_LINES} AS _lines")
    error, reason = lines_judgement()
    events = events.selectExpr("*", f"{error} AS _record_error", f"{reason} AS _record_reason")
    exploded = events.selectExpr(
        "*", "posexplode_outer(CASE WHEN _record_error IS NULL THEN _lines END) AS (_index, _line)"
    )
    unknown = f"map_filter(_line, (k, v) -> NOT k IN {sql_in(POS_LINE_FIELDS)})"
    with_extra = exploded.selectExpr("*", f"CASE WHEN size({unknown}) > 0 THEN to_json({unknown}) END AS _line_extra")
    extra = (
        "CASE WHEN _line_extra IS NULL THEN _extra "
        """WHEN _extra IS NULL THEN concat('{"_line": ', _line_extra, '}') """
        """ELSE concat(substring(_extra, 1, length(_extra) - 1), ', "_line": ', _line_extra, '}') END"""
    )
    values = [
        f"CAST(_line['{f}'] AS STRING) AS {f}" if f in POS_LINE_FIELDS else f"CAST({f} AS STRING) AS {f}"
        for f in tables.SALES_FIELDS
    ]
    return with_extra.selectExpr(
        f"{sql_string(tables.BRONZE_POS_TRANSACTIONS.key)} AS source_table",
        f"{sql_string(POS_STREAM)} AS channel",
        "_source",
        "_arrival_date",
        "_topic AS _pos_a",
        "CAST(_partition AS BIGINT) AS _pos_b",
        "CAST(_offset AS BIGINT) AS _pos_c",
        "coalesce(_index, 0) AS _pos_d",
        *values,
        "_raw_record",
        f"{extra} AS _extra",
        "_record_error",
        "_record_reason",
    )


def candidates_judged_with(
    candidates: DataFrame, arrival_date: dt.date, last_arrival_date: dt.date | None = None
) -> DataFrame:
    """The candidates that arrived on `arrival_date` (… `last_arrival_date`), plus those of
    other days that share a transaction id with one of them: all `clean_sales` needs to
    classify those days' records.

    Every rule but deduplication judges a line on its own, and deduplication only compares copies
    with the same (transaction_id, line_number, event_date); a line without a transaction id is
    a violation and is never compared. So dropping other days' lines whose transaction id none of
    the day's lines carries changes no outcome of the day's lines, and the classification runs
    over about one day of data instead of the whole window.
    """
    txn = "nullif(trim(transaction_id), '')"
    arrived = F.col("_arrival_date").between(F.lit(arrival_date), F.lit(last_arrival_date or arrival_date))
    ids = candidates.filter(arrived).selectExpr(f"{txn} AS _txn").filter("_txn IS NOT NULL").distinct()
    others = candidates.filter(~arrived).withColumn("_txn", F.expr(txn))
    copies = others.join(F.broadcast(ids), "_txn", "left_semi").drop("_txn")
    return candidates.filter(arrived).unionByName(copies)


# Business content of a sales line: two copies with the same key and these values are the same record.
_SALES_CONTENT = {
    "v_event_time": "event_time",
    "store_id": "store_id",
    "product_id": "product_id",
    "customer_id": "customer_id",
    "v_quantity": "quantity",
    "v_unit_price": "unit_price",
    "v_discount": "discount",
    "payment_method": "payment_method",
}


_SALES_REQUIRED = ("transaction_id", "line_number", "event_time", "store_id", "product_id", "quantity", "unit_price")


_SALES_ORDER = ("_arrival_date", "source_table", "_pos_a", "_pos_b", "_pos_c", "_pos_d")


def clean_sales(candidates: DataFrame, known_keys: DataFrame, *, lateness_days: int, batch_id: str) -> SalesResult:
    """Type, validate and deduplicate candidate sales lines (`sales_candidates_from_*`).

    `known_keys` (kind, key, first_arrival_date) — see `known_keys()`. A store/product/customer
    id is known to a line if its first record arrived no later than the line's arrival + L; a
    null customer is an anonymous sale. Lines passing every rule are deduplicated on
    (transaction_id, line_number, event_date): the earliest copy by (arrival date, source
    table, source position) is kept; later copies with identical business content are counted
    duplicates, with different content `conflicting_duplicate` violations.
    """
    df = candidates.selectExpr(
        *[c for c in CANDIDATE_COLUMNS if c not in tables.SALES_FIELDS],
        *[f"nullif(trim({f}), '') AS {f}" for f in tables.SALES_FIELDS],
    )
    discount_in_range = f"NOT ({check(rules.DISCOUNT_OUT_OF_RANGE, exact='_discount_exact').failed})"
    typed = [
        typed_int("line_number", "v_line_number"),
        typed_int("quantity", "v_quantity"),
        typed_timestamp("event_time", "v_event_time", "_event_date"),
        typed_decimal("unit_price", "v_unit_price", "_unit_price_exact", 12, 2),
        # an absent discount is no discount
        typed_decimal("discount", "v_discount", "_discount_exact", 5, 4, default="0", in_range=discount_in_range),
    ]
    # a stream line without a line number is still told apart from its siblings
    line_ref = (
        f"coalesce(line_number, CASE WHEN channel = {sql_string(POS_STREAM)} THEN concat('#', _pos_d + 1) END, '')"
    )
    df = with_columns(
        df,
        {
            **{k: v for t in typed for k, v in t.columns.items()},
            "record_key": (
                "CASE WHEN _record_error IS NOT NULL THEN coalesce(transaction_id, '') "
                f"ELSE concat(coalesce(transaction_id, ''), ':', {line_ref}) END"
            ),
        },
    )
    df = with_columns(df, {"_gross_exact": "abs(v_quantity) * v_unit_price"})
    df = with_known(df, known_keys, {STORE: "store_id", PRODUCT: "product_id", CUSTOMER: "customer_id"})

    L = str(lateness_days)
    checks = [
        *[missing(f) for f in _SALES_REQUIRED],
        *[c for t in typed for c in t.checks],
        check(rules.NEGATIVE_PRICE, column="unit_price", exact="_unit_price_exact"),
        check(rules.DISCOUNT_OUT_OF_RANGE, column="discount", exact="_discount_exact"),
        check(rules.ZERO_QUANTITY, column="quantity", value="v_quantity"),
        check(rules.INVALID_VALUE, "not_positive", column="line_number", value="v_line_number"),
        check(
            rules.INVALID_VALUE,
            "too_large",
            column="quantity × unit_price",
            value="_gross_exact",
            limit=str(MAX_AMOUNT),
        ),
        *coded_values(tables.SILVER_SALES_LINES),
        *orphan(STORE, "store_id", lateness_days),
        *orphan(PRODUCT, "product_id", lateness_days),
        *orphan(CUSTOMER, "customer_id", lateness_days),
        check(rules.LATE_EVENT, lateness_days=L),
        check(rules.FUTURE_EVENT),
        *declared_checks(df, tables.SILVER_SALES_LINES),
    ]
    df = judge(df, checks)
    # an event whose lines cannot be read is judged as a whole
    df = with_columns(df, {"_rule": "coalesce(_record_error, _rule)", "_reason": "coalesce(_record_reason, _reason)"})
    classified = dedup(df, ("transaction_id", "v_line_number", "_event_date"), _SALES_ORDER, _SALES_CONTENT)
    return sales_outputs(classified, batch_id=batch_id)


# The classified columns `_sales_outputs` reads, `_raw_record` aside.
_SALES_OUTPUT_COLUMNS = (
    "source_table",
    "channel",
    "_source",
    "_arrival_date",
    "record_key",
    "_rule",
    "_reason",
    "_flags",
    "_fatal",
    "_duplicate",
    "_kept_source",
    "_kept_arrival",
    "_extra",
    "_event_date",
    "transaction_id",
    "v_line_number",
    "v_event_time",
    "store_id",
    "product_id",
    "customer_id",
    "v_quantity",
    "v_unit_price",
    "v_discount",
    "_gross_exact",
    "payment_method",
)


def sales_outputs(classified: DataFrame, *, batch_id: str) -> SalesResult:
    """Silver sales lines and returns, violations and duplicates of a sales classification."""
    gross = "CAST(_gross_exact AS DECIMAL(18,2))"
    discount_amount = f"CAST(round({gross} * v_discount, 2) AS DECIMAL(18,2))"
    lines = classified.filter("_rule IS NULL AND NOT _duplicate").selectExpr(
        "transaction_id",
        "v_line_number AS line_number",
        "v_event_time AS event_time",
        "_event_date AS event_date",
        "store_id",
        "product_id",
        "customer_id",
        "abs(v_quantity) AS quantity",
        "v_unit_price AS unit_price",
        "v_discount AS discount",
        f"{gross} AS gross_amount",
        f"{discount_amount} AS discount_amount",
        f"{gross} - {discount_amount} AS net_amount",
        "payment_method",
        "channel",
        "_flags AS quality_flags",
        "_extra AS extra_attributes",
        "_source",
        "_arrival_date",
        f"{sql_string(batch_id)} AS _batch_id",
        "v_quantity AS _signed_quantity",
    )
    return SalesResult(
        sales_lines=conform(lines.filter("_signed_quantity > 0"), tables.SILVER_SALES_LINES),
        returns=conform(lines.filter("_signed_quantity < 0"), tables.SILVER_RETURNS),
        violations=violation_rows(classified, batch_id=batch_id),
        duplicates=duplicate_rows(classified),
        classified=classified,
    )
