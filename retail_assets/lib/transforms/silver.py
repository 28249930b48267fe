"""Bronze → Silver: typing, validation, deduplication and the quarantine split.

Every function is pure Spark (no UDFs, no collect): DataFrames in, DataFrames out. Each Bronze
record ends in exactly one place (docs/architecture.md, "Where every record goes"):

- unparseable (Bronze `_parse_error`)      → `ingest_rejects`
- parsed, fails a rule                     → `violations`: the first rule by the precedence of
                                             `rules.VIOLATION_RULES`, the reason lists them all
- exact re-send of a record kept earlier   → `duplicates` (counted, not stored in Silver)
- everything else                          → the accepted Silver rows

Sales are handled at line grain, batch files and Kafka events alike: both are first brought to
one *candidate* shape (one row per transaction line), then `clean_sales` types and judges them.

Windows. The functions judge whatever rows they are given; callers filter the outputs. A sales
line's outcome depends only on rows with the same (transaction_id, line_number, event_date), and
every copy of such a line that survives the late/future rules arrived within D-1 … D+L of its
event date D. So any input covering arrivals D-1 … D+L gives every line of D the same outcome:
- Silver sales/returns for event date D: arrivals D-1 … D+L, keep `event_date == D`;
- quarantine and duplicates for arrival A: arrivals A-L-1 … A+L+1, keep `_arrival_date == A`.

Rules are written as Spark SQL expressions: one expression per step reaches the JVM in one
call, where the same logic through the Column API costs thousands of Py4J round trips.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import (
    BRONZE_POS_TRANSACTIONS,
    BRONZE_SALES_FILES,
    CHANNELS,
    PAYMENT_METHODS,
    QUARANTINE_INGEST_REJECTS,
    QUARANTINE_RULE_VIOLATIONS,
    SALES_FIELDS,
    SILVER_INVENTORY,
    SILVER_RETURNS,
    SILVER_SALES_LINES,
    TableSpec,
)

STORE_FILE, POS_STREAM = CHANNELS

# Columns of the `duplicates` frames: enough to count and to trace every dropped re-send.
DUPLICATE_COLUMNS = ("source_table", "_source", "record_key", "_arrival_date", "event_date")

# Kinds of `known_keys` rows.
STORE, PRODUCT, CUSTOMER = "store", "product", "customer"

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
    *SALES_FIELDS,
    "_raw_record",
    "_extra",
    "_record_error",
    "_record_reason",
)

_INT = r"^[+-]?[0-9]{1,18}$"
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"
# A date or date-time with no offset at all: readable, but not an instant.
_NO_OFFSET = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?$"
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_MAX_AMOUNT = 10**16  # amounts are decimal(18,2)
_LINES_SCHEMA = "array<map<string,string>>"  # values of any JSON type read as their JSON text


@dataclass(frozen=True)
class SplitResult:
    accepted: DataFrame  # the Silver table's schema
    violations: DataFrame  # QUARANTINE_RULE_VIOLATIONS schema
    duplicates: DataFrame  # DUPLICATE_COLUMNS
    # One row per parsed record with its outcome; the three frames above all derive from it.
    classified: DataFrame
    spec: TableSpec

    @property
    def classification(self) -> DataFrame:
        """What the outputs are derived from (`split_outputs`). A caller that writes or counts
        several outputs computes it once and derives them from the computed copy; otherwise Spark
        plans and runs the whole rule set once per action."""
        return self.classified


@dataclass(frozen=True)
class SalesResult:
    sales_lines: DataFrame  # SILVER_SALES_LINES schema
    returns: DataFrame  # SILVER_RETURNS schema
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


# ---------------------------------------------------------------------------------------------
# SQL building blocks
# ---------------------------------------------------------------------------------------------


def _lit(text: str) -> str:
    """A Spark SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _Sql(str):
    """A SQL expression inside a message (plain `str` parts are literal text)."""


def _msg(*parts: str) -> str:
    return "concat(" + ", ".join(f"CAST({p} AS STRING)" if isinstance(p, _Sql) else _lit(p) for p in parts) + ")"


def _q(column: str) -> _Sql:
    """A raw value for a reason: quoted, long values cut."""
    return _Sql(
        f"concat('\\'', CASE WHEN length({column}) > 60 THEN concat(substring({column}, 1, 60), '…') ELSE {column} END, '\\'')"
    )


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(_lit(v) for v in values) + ")"


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Registry columns, registry order, registry types."""
    return df.selectExpr(*[f"CAST(`{c.name}` AS {c.type}) AS `{c.name}`" for c in spec.columns])


def _add(df: DataFrame, columns: dict[str, str]) -> DataFrame:
    """Add (or replace) columns given as SQL expressions over the frame's current columns."""
    kept = [f"`{c}`" for c in df.columns if c not in columns]
    return df.selectExpr(*kept, *[f"{expr} AS `{name}`" for name, expr in columns.items()])


@dataclass(frozen=True)
class _Check:
    rule: str
    failed: str  # SQL condition; null counts as passed (a missing value is another check's job)
    message: str  # SQL string expression


@dataclass(frozen=True)
class _Typed:
    """Typed columns to add (SQL over raw columns) and the checks that judge them."""

    columns: dict[str, str]
    checks: list[_Check]


def _judge(df: DataFrame, checks: Sequence[_Check]) -> DataFrame:
    """Add `_rule` (first failing rule by precedence) and `_reason` (every failure spelled out).

    The failures are gathered into one array in precedence order, so each check runs once.
    """
    ordered = sorted(checks, key=lambda c: rules.VIOLATION_RULES.index(c.rule))  # stable within a rule
    items = ", ".join(
        f"CASE WHEN {c.failed} THEN named_struct('rule', {_lit(c.rule)}, 'message', {c.message}) END" for c in ordered
    )
    df = _add(df, {"_failures": f"filter(array({items}), x -> x IS NOT NULL)"})
    # get() is null past the end, also under ANSI mode
    return _add(
        df, {"_rule": "get(_failures, 0).rule", "_reason": "nullif(array_join(_failures.message, '; '), '')"}
    ).drop("_failures")


def _missing(name: str) -> _Check:
    return _Check(rules.MISSING_KEY, f"{name} IS NULL", _lit(f"{name} is missing"))


def _typed_int(name: str, out: str) -> _Typed:
    big = f"CASE WHEN {name} RLIKE {_lit(_INT)} THEN try_cast({name} AS BIGINT) END"
    return _Typed(
        {out: f"CASE WHEN {big} BETWEEN {_INT32_MIN} AND {_INT32_MAX} THEN CAST({big} AS INT) END"},
        [
            _Check(
                rules.INVALID_TYPE,
                f"{name} IS NOT NULL AND {out} IS NULL",
                _msg(f"{name} ", _q(name), " is not a whole number"),
            )
        ],
    )


def _typed_decimal(
    name: str,
    out: str,
    exact: str,
    precision: int,
    scale: int,
    *,
    default: str | None = None,
    in_range: str | None = None,
) -> _Typed:
    """`exact` holds the number as written, `out` the value at the column's type. Non-numbers
    (NaN, Infinity, text), overflow and extra decimal places are `invalid_type`: rounding a price
    silently would change it. `default` replaces an absent value. With `in_range` (SQL over
    `exact`), overflow and decimal places are checked only inside the range: outside it another
    rule speaks."""
    value = f"CASE WHEN {name} RLIKE {_lit(_NUMBER)} THEN try_cast({name} AS DECIMAL(38,18)) END"
    if default is not None:
        value = f"CASE WHEN {name} IS NULL THEN CAST({default} AS DECIMAL(38,18)) ELSE {value} END"
    guard = f" AND ({in_range})" if in_range else ""
    return _Typed(
        {exact: value, out: f"try_cast({value} AS DECIMAL({precision},{scale}))"},
        [
            _Check(
                rules.INVALID_TYPE,
                f"{name} IS NOT NULL AND {exact} IS NULL",
                _msg(f"{name} ", _q(name), " is not a number"),
            ),
            _Check(
                rules.INVALID_TYPE,
                f"{exact} IS NOT NULL AND {out} IS NULL{guard}",
                _msg(f"{name} ", _q(name), f" is out of range for decimal({precision},{scale})"),
            ),
            _Check(
                rules.INVALID_TYPE,
                f"{exact} != {out}{guard}",
                _msg(f"{name} ", _q(name), f" has more than {scale} decimal places"),
            ),
        ],
    )


def _typed_date(name: str, out: str) -> _Typed:
    return _Typed(
        {out: f"CASE WHEN {name} RLIKE {_lit(_DATE)} THEN try_cast({name} AS DATE) END"},
        [
            _Check(
                rules.INVALID_TYPE,
                f"{name} IS NOT NULL AND {out} IS NULL",
                _msg(f"{name} ", _q(name), " is not a date (YYYY-MM-DD)"),
            )
        ],
    )


def _typed_timestamp(name: str, out: str, local_date: str) -> _Typed:
    """`out`: the UTC instant of an ISO-8601 timestamp with offset; `local_date`: its calendar
    date as written (the first ten characters) — the business date of the record."""
    instant = f"CASE WHEN {name} RLIKE {_lit(_TIMESTAMP)} THEN try_cast({name} AS TIMESTAMP) END"
    return _Typed(
        {
            out: instant,
            local_date: f"CASE WHEN {instant} IS NOT NULL THEN try_cast(substring({name}, 1, 10) AS DATE) END",
        },
        [
            _Check(
                rules.INVALID_TYPE,
                f"{name} RLIKE {_lit(_NO_OFFSET)}",
                _msg(
                    f"{name} ",
                    _q(name),
                    " has no UTC offset (ISO-8601 with offset required, e.g. 2026-10-01T09:30:00+02:00)",
                ),
            ),
            _Check(
                rules.INVALID_TYPE,
                f"{name} IS NOT NULL AND NOT {name} RLIKE {_lit(_NO_OFFSET)} AND {out} IS NULL",
                _msg(f"{name} ", _q(name), " is not an ISO-8601 timestamp with offset"),
            ),
        ],
    )


def _accepted_values(name: str, values: Sequence[str]) -> _Check:
    return _Check(
        rules.INVALID_VALUE,
        f"{name} NOT IN {_in(values)}",
        _msg(f"{name} ", _q(name), f" is not one of {', '.join(values)}"),
    )


def _with_known(df: DataFrame, known_keys: DataFrame, kinds: dict[str, str]) -> DataFrame:
    """Left-join `_<kind>_first`, the first arrival date of each referenced key (`kinds`: kind → id column)."""
    for kind, column in kinds.items():
        first = F.broadcast(
            known_keys.filter(F.col("kind") == kind)
            .groupBy(F.col("key").alias("_known_key"))
            .agg(F.min("first_arrival_date").alias(f"_{kind}_first"))
        )
        df = df.join(first, df[column] == first["_known_key"], "left").drop("_known_key")
    return df


def _orphan(kind: str, column: str, rule: str, lateness_days: int) -> _Check:
    first = f"_{kind}_first"
    deadline = f"date_add(_arrival_date, {lateness_days})"
    too_late = _msg(
        f"the first {kind} record arrived on ", _Sql(first), f", more than {lateness_days} days after this record"
    )
    return _Check(
        rule,
        f"{column} IS NOT NULL AND ({first} IS NULL OR {first} > {deadline})",
        _msg(
            f"{column} ",
            _q(column),
            f" is not a known {kind}: ",
            _Sql(f"CASE WHEN {first} IS NULL THEN {_lit(f'no {kind} record has arrived')} ELSE {too_late} END"),
        ),
    )


def _dedup(df: DataFrame, identity: Sequence[str], order: Sequence[str], content: dict[str, str]) -> DataFrame:
    """Among rows with `_rule` null, mark later copies of an identity as `_duplicate` (same
    content as the kept, earliest copy) or `conflicting_duplicate` (different content).

    `content` maps the compared columns to the names a reason shows.
    """
    window = f"OVER (PARTITION BY _rule IS NULL, {', '.join(identity)} ORDER BY {', '.join(order)})"
    firsts = {f"_first{i}": f"first({c}) {window}" for i, c in enumerate(content)}
    df = _add(
        df,
        {
            "_rank": f"CASE WHEN _rule IS NULL THEN row_number() {window} END",
            "_first_source": f"first(_source) {window}",
            "_first_arrival": f"first(_arrival_date) {window}",
            **firsts,
        },
    )
    differs = ", ".join(
        f"CASE WHEN NOT {c} <=> _first{i} THEN {_lit(label)} END" for i, (c, label) in enumerate(content.items())
    )
    df = _add(df, {"_differs": f"CASE WHEN _rank > 1 THEN concat_ws(', ', {differs}) END"})
    conflicting = "_differs != ''"
    reason = _msg(
        "same key as ",
        _Sql("_first_source"),
        " (arrived ",
        _Sql("_first_arrival"),
        ", kept) but different ",
        _Sql("_differs"),
    )
    df = _add(
        df,
        {
            "_duplicate": "coalesce(_differs = '', false)",
            "_rule": f"CASE WHEN {conflicting} THEN {_lit(rules.CONFLICTING_DUPLICATE)} ELSE _rule END",
            "_reason": f"CASE WHEN {conflicting} THEN {reason} ELSE _reason END",
        },
    )
    return df.drop("_rank", "_first_source", "_first_arrival", "_differs", *firsts)


def _violations(classified: DataFrame, *, batch_id: str) -> DataFrame:
    out = classified.filter("_rule IS NOT NULL").selectExpr(
        "source_table",
        "_source",
        "record_key",
        "_rule AS rule",
        "_reason AS reason",
        "_raw_record AS original_record",
        "CAST(NULL AS BINARY) AS original_bytes",
        "_event_date AS event_date",
        "_arrival_date",
        f"{_lit(batch_id)} AS _batch_id",
    )
    return conform(out, QUARANTINE_RULE_VIOLATIONS)


def _duplicates(classified: DataFrame) -> DataFrame:
    return classified.filter("_duplicate").selectExpr(
        "CAST(source_table AS STRING) AS source_table",
        "CAST(_source AS STRING) AS _source",
        "CAST(record_key AS STRING) AS record_key",
        "CAST(_arrival_date AS DATE) AS _arrival_date",
        "CAST(_event_date AS DATE) AS event_date",
    )


# ---------------------------------------------------------------------------------------------
# Ingest rejects and record counts
# ---------------------------------------------------------------------------------------------


def ingest_rejects(bronze: DataFrame, *, source_table: str, batch_id: str) -> DataFrame:
    """Bronze rows that could not be parsed at all, as `quarantine.ingest_rejects` rows."""
    out = bronze.filter("_parse_error IS NOT NULL").selectExpr(
        f"{_lit(source_table)} AS source_table",
        "_source",
        "CAST(NULL AS STRING) AS record_key",
        "_parse_error AS rule",
        "coalesce(_parse_reason, _parse_error) AS reason",
        "_raw_record AS original_record",
        "_raw_bytes AS original_bytes",
        "CAST(NULL AS DATE) AS event_date",
        "_arrival_date",
        f"{_lit(batch_id)} AS _batch_id",
    )
    return conform(out, QUARANTINE_INGEST_REJECTS)


_PARSED_LINES = f"from_json(lines, {_lit(_LINES_SCHEMA)})"
# Rule and reason for a parsed event whose `lines` cannot be turned into transaction lines.
_LINES_ERROR = (
    f"CASE WHEN lines IS NULL THEN {_lit(rules.MISSING_KEY)} "
    f"WHEN _lines IS NULL THEN {_lit(rules.INVALID_TYPE)} "
    f"WHEN size(_lines) = 0 THEN {_lit(rules.MISSING_KEY)} END"
)
_LINES_REASON = (
    "CASE WHEN lines IS NULL THEN 'event has no lines' "
    f"WHEN _lines IS NULL THEN {_msg('lines ', _q('lines'), ' is not an array of JSON objects')} "
    "WHEN size(_lines) = 0 THEN 'lines is an empty array' END"
)


def count_records_in(bronze_df: DataFrame, source_table: str) -> DataFrame:
    """Records in, per arrival date: DataFrame(_arrival_date date, records bigint).

    The unit is the one every output counts in, so that per arrival date
    records = accepted + ingest_rejects + violations + duplicates holds exactly:
    - file tables: one Bronze row (one non-blank physical line, or one empty-file row);
    - `pos_transactions`: one transaction line of a readable event; an unparseable message
      (one ingest reject) or an event whose `lines` cannot be read (one violation) counts once.
    """
    if source_table in (BRONZE_POS_TRANSACTIONS.key, BRONZE_POS_TRANSACTIONS.name):
        parsed = bronze_df.selectExpr("_arrival_date", "_parse_error", "lines", f"{_PARSED_LINES} AS _lines")
        per_row = parsed.selectExpr(
            "_arrival_date",
            f"CASE WHEN _parse_error IS NOT NULL OR ({_LINES_ERROR}) IS NOT NULL THEN 1 ELSE size(_lines) END AS n",
        )
    else:
        per_row = bronze_df.selectExpr("_arrival_date", "1 AS n")
    return per_row.groupBy("_arrival_date").agg(F.sum("n").cast("bigint").alias("records"))


# ---------------------------------------------------------------------------------------------
# Sales: candidates
# ---------------------------------------------------------------------------------------------


def sales_candidates_from_files(bronze_sales_files: DataFrame) -> DataFrame:
    """Parsed Bronze `sales_files` rows as candidate lines (CANDIDATE_COLUMNS)."""
    return bronze_sales_files.filter("_parse_error IS NULL").selectExpr(
        f"{_lit(BRONZE_SALES_FILES.key)} AS source_table",
        f"{_lit(STORE_FILE)} AS channel",
        "_source",
        "_arrival_date",
        "_source_file AS _pos_a",
        "CAST(_source_line AS BIGINT) AS _pos_b",
        "CAST(0 AS BIGINT) AS _pos_c",
        "0 AS _pos_d",
        *[f"CAST({f} AS STRING) AS {f}" for f in SALES_FIELDS],
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
    events = bronze_pos.filter("_parse_error IS NULL").selectExpr("*", f"{_PARSED_LINES} AS _lines")
    events = events.selectExpr("*", f"{_LINES_ERROR} AS _record_error", f"{_LINES_REASON} AS _record_reason")
    exploded = events.selectExpr(
        "*", "posexplode_outer(CASE WHEN _record_error IS NULL THEN _lines END) AS (_index, _line)"
    )
    unknown = f"map_filter(_line, (k, v) -> NOT k IN {_in(POS_LINE_FIELDS)})"
    with_extra = exploded.selectExpr("*", f"CASE WHEN size({unknown}) > 0 THEN to_json({unknown}) END AS _line_extra")
    extra = (
        "CASE WHEN _line_extra IS NULL THEN _extra "
        """WHEN _extra IS NULL THEN concat('{"_line": ', _line_extra, '}') """
        """ELSE concat(substring(_extra, 1, length(_extra) - 1), ', "_line": ', _line_extra, '}') END"""
    )
    values = [
        f"CAST(_line['{f}'] AS STRING) AS {f}" if f in POS_LINE_FIELDS else f"CAST({f} AS STRING) AS {f}"
        for f in SALES_FIELDS
    ]
    return with_extra.selectExpr(
        f"{_lit(BRONZE_POS_TRANSACTIONS.key)} AS source_table",
        f"{_lit(POS_STREAM)} AS channel",
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


# ---------------------------------------------------------------------------------------------
# Sales: clean
# ---------------------------------------------------------------------------------------------

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
        *[c for c in CANDIDATE_COLUMNS if c not in SALES_FIELDS],
        *[f"nullif(trim({f}), '') AS {f}" for f in SALES_FIELDS],
    )
    discount_in_range = "_discount_exact BETWEEN 0 AND 1"
    typed = [
        _typed_int("line_number", "v_line_number"),
        _typed_int("quantity", "v_quantity"),
        _typed_timestamp("event_time", "v_event_time", "_event_date"),
        _typed_decimal("unit_price", "v_unit_price", "_price_exact", 12, 2),
        # an absent discount is no discount
        _typed_decimal("discount", "v_discount", "_discount_exact", 5, 4, default="0", in_range=discount_in_range),
    ]
    # a stream line without a line number is still told apart from its siblings
    line_ref = f"coalesce(line_number, CASE WHEN channel = {_lit(POS_STREAM)} THEN concat('#', _pos_d + 1) END, '')"
    df = _add(
        df,
        {
            **{k: v for t in typed for k, v in t.columns.items()},
            "record_key": (
                "CASE WHEN _record_error IS NOT NULL THEN coalesce(transaction_id, '') "
                f"ELSE concat(coalesce(transaction_id, ''), ':', {line_ref}) END"
            ),
        },
    )
    df = _add(df, {"_gross_exact": "abs(v_quantity) * v_unit_price"})
    df = _with_known(df, known_keys, {STORE: "store_id", PRODUCT: "product_id", CUSTOMER: "customer_id"})

    L = lateness_days
    checks = [
        *[_missing(f) for f in _SALES_REQUIRED],
        *[c for t in typed for c in t.checks],
        _Check(rules.NEGATIVE_PRICE, "_price_exact < 0", _msg("unit_price ", _q("unit_price"), " is negative")),
        _Check(
            rules.DISCOUNT_OUT_OF_RANGE,
            f"NOT ({discount_in_range})",
            _msg("discount ", _q("discount"), " is outside 0..1"),
        ),
        _Check(rules.ZERO_QUANTITY, "v_quantity = 0", _lit("quantity is 0")),
        _Check(
            rules.INVALID_VALUE, "v_line_number < 1", _msg("line_number ", _Sql("v_line_number"), " is not positive")
        ),
        _Check(
            rules.INVALID_VALUE,
            f"_gross_exact >= {_MAX_AMOUNT}",
            _msg("quantity × unit_price = ", _Sql("_gross_exact"), " is too large an amount"),
        ),
        _accepted_values("payment_method", PAYMENT_METHODS),
        _orphan(STORE, "store_id", rules.UNKNOWN_STORE, L),
        _orphan(PRODUCT, "product_id", rules.UNKNOWN_PRODUCT, L),
        _orphan(CUSTOMER, "customer_id", rules.UNKNOWN_CUSTOMER, L),
        _Check(
            rules.LATE_EVENT,
            f"datediff(_arrival_date, _event_date) > {L}",
            _msg(
                "event date ",
                _Sql("_event_date"),
                " is ",
                _Sql("datediff(_arrival_date, _event_date)"),
                " days before its arrival on ",
                _Sql("_arrival_date"),
                f" (lateness window {L} days)",
            ),
        ),
        _Check(
            rules.FUTURE_EVENT,
            "datediff(_event_date, _arrival_date) > 1",
            _msg(
                "event date ",
                _Sql("_event_date"),
                " is ",
                _Sql("datediff(_event_date, _arrival_date)"),
                " days after its arrival on ",
                _Sql("_arrival_date"),
                " (at most 1 allowed)",
            ),
        ),
    ]
    df = _judge(df, checks)
    # an event whose lines cannot be read is judged as a whole
    df = _add(df, {"_rule": "coalesce(_record_error, _rule)", "_reason": "coalesce(_record_reason, _reason)"})
    classified = _dedup(df, ("transaction_id", "v_line_number", "_event_date"), _SALES_ORDER, _SALES_CONTENT)
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
    "_duplicate",
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
        "_extra AS extra_attributes",
        "_source",
        "_arrival_date",
        f"{_lit(batch_id)} AS _batch_id",
        "v_quantity AS _signed_quantity",
    )
    return SalesResult(
        sales_lines=conform(lines.filter("_signed_quantity > 0"), SILVER_SALES_LINES),
        returns=conform(lines.filter("_signed_quantity < 0"), SILVER_RETURNS),
        violations=_violations(classified, batch_id=batch_id),
        duplicates=_duplicates(classified),
        classified=classified,
    )


# ---------------------------------------------------------------------------------------------
# Master data and inventory
# ---------------------------------------------------------------------------------------------


def known_keys(customers: DataFrame, products: DataFrame, stores: DataFrame) -> DataFrame:
    """(kind, key, first_arrival_date): when each master key first arrived in Silver."""
    parts = [
        frame.selectExpr(f"{_lit(kind)} AS kind", f"{column} AS key", "_arrival_date")
        for kind, column, frame in (
            (CUSTOMER, "customer_id", customers),
            (PRODUCT, "product_id", products),
            (STORE, "store_id", stores),
        )
    ]
    union = parts[0].unionByName(parts[1]).unionByName(parts[2])
    return union.groupBy("kind", "key").agg(F.min("_arrival_date").alias("first_arrival_date"))


@dataclass(frozen=True)
class _Shape:
    """How a Silver refinement types its Bronze table: read off its registry entry."""

    silver: TableSpec

    @property
    def bronze(self) -> TableSpec:
        if self.silver.refines is None:
            raise ValueError(f"{self.silver.key} does not refine a Bronze table of its own")
        return self.silver.refines

    @property
    def identity(self) -> tuple[str, ...]:
        return self.silver.identity

    @property
    def versioned(self) -> bool:
        return self.silver.versioned

    def _typed(self, type_: str) -> tuple[str, ...]:
        return tuple(c for c in self.attributes if self.silver.column(c).type == type_ and c != "updated_at")

    @property
    def required(self) -> tuple[str, ...]:
        """Set on every record, besides identity and version (non-nullable in the registry)."""
        return tuple(
            c
            for c in self.attributes
            if not self.silver.column(c).nullable and c not in self.identity and c != "updated_at"
        )

    @property
    def dates(self) -> tuple[str, ...]:
        return self._typed("date")

    @property
    def prices(self) -> tuple[str, ...]:
        """decimal(12,2) money columns: a negative one breaks `negative_price`."""
        return self._typed("decimal(12,2)")

    @property
    def counts(self) -> tuple[str, ...]:
        """int columns: a negative one breaks `invalid_value`."""
        return self._typed("int")

    @property
    def references(self) -> tuple[tuple[str, str, str], ...]:
        """(kind, column, rule) of each column that must name a known master record."""
        out = []
        for column, master in self.silver.references:
            kind = master.identity[0].removesuffix("_id")
            out.append((kind, column, rules.unknown_master(kind)))
        return tuple(out)

    @property
    def attributes(self) -> list[str]:
        """The Silver table's business columns (its lineage columns aside)."""
        return self.silver.business_columns


def clean_master_data(bronze: DataFrame, spec: TableSpec, *, batch_id: str) -> SplitResult:
    """Bronze change records → their Silver table (`spec`: customers, products or stores), one
    row per distinct change; what is typed and checked is read off the registry entry."""
    if spec.references:
        raise ValueError(f"{spec.key} references master data: clean it with its known keys")
    return _clean(bronze, _Shape(spec), batch_id=batch_id)


def _clean(
    bronze: DataFrame, shape: _Shape, *, batch_id: str, known: DataFrame | None = None, lateness_days: int = 0
) -> SplitResult:
    fields = [c.name for c in shape.bronze.columns if not c.name.startswith("_")]
    df = bronze.filter("_parse_error IS NULL").selectExpr(
        f"{_lit(shape.bronze.key)} AS source_table",
        "_source",
        "_source_file",
        "_source_line",
        "_arrival_date",
        "_raw_record",
        "_extra",
        *[f"nullif(trim({f}), '') AS {f}" for f in fields],
    )
    typed: list[_Typed] = []
    checks = [_missing(k) for k in (*shape.identity, *shape.required)]
    if shape.versioned:
        checks.append(_missing("updated_at"))
        typed.append(_typed_timestamp("updated_at", "v_updated_at", "_event_date"))
    typed += [_typed_date(name, f"v_{name}") for name in shape.dates]
    for name in shape.prices:
        typed.append(_typed_decimal(name, f"v_{name}", f"_{name}_exact", 12, 2))
        checks.append(_Check(rules.NEGATIVE_PRICE, f"_{name}_exact < 0", _msg(f"{name} ", _q(name), " is negative")))
    for name in shape.counts:
        typed.append(_typed_int(name, f"v_{name}"))
        checks.append(_Check(rules.INVALID_VALUE, f"v_{name} < 0", _msg(f"{name} ", _q(name), " is negative")))
    checks += [c for t in typed for c in t.checks]
    checks += [_accepted_values(name, values) for name, values in shape.silver.accepted_values.items()]
    checks += [_orphan(kind, column, rule, lateness_days) for kind, column, rule in shape.references]

    columns = {k: v for t in typed for k, v in t.columns.items()}
    key_text = [f"coalesce({k}, '')" for k in shape.identity]
    if shape.versioned:
        columns["record_key"] = f"concat({', '.join(key_text)}, '@', coalesce(updated_at, ''))"
    else:
        columns["_event_date"] = columns["v_snapshot_date"]  # the business date of a snapshot
        columns["record_key"] = f"concat_ws(':', {', '.join(key_text)})"
    df = _add(df, columns)
    if shape.references:
        if known is None:
            raise ValueError(f"cleaning {shape.bronze.key} needs known_keys")
        df = _with_known(df, known, {kind: column for kind, column, _ in shape.references})
    df = _judge(df, checks)

    value_of = _value_columns(df, shape)
    attributes = shape.attributes
    identity = [value_of[k] for k in shape.identity] + (["v_updated_at"] if shape.versioned else [])
    content = {value_of[a]: a for a in attributes if value_of[a] not in identity}
    # Master data is deduplicated within an arrival day (a record re-sent on a later day is
    # that day's change too), so any range of days is cleaned in one pass.
    classified = _dedup(df, ["_arrival_date", *identity], ("_source_file", "_source_line"), content)
    return split_outputs(classified, shape.silver, batch_id=batch_id)


def _value_columns(df: DataFrame, shape: _Shape) -> dict[str, str]:
    """Each Silver column → the classified column holding its typed value."""
    return {c.name: (f"v_{c.name}" if f"v_{c.name}" in df.columns else c.name) for c in shape.silver.columns}


def split_outputs(classified: DataFrame, spec: TableSpec, *, batch_id: str) -> SplitResult:
    """The Silver table `spec`, violations and duplicates of one refinement's classification."""
    shape = _Shape(spec)
    value_of = _value_columns(classified, shape)
    accepted = classified.filter("_rule IS NULL AND NOT _duplicate").selectExpr(
        *[f"{value_of[a]} AS {a}" for a in shape.attributes],
        "_extra AS extra_attributes",
        "_source",
        "_arrival_date",
        f"{_lit(batch_id)} AS _batch_id",
    )
    return SplitResult(
        accepted=conform(accepted, shape.silver),
        violations=_violations(classified, batch_id=batch_id),
        duplicates=_duplicates(classified),
        classified=classified,
        spec=spec,
    )


def clean_inventory(bronze: DataFrame, known_keys: DataFrame, *, lateness_days: int, batch_id: str) -> SplitResult:
    """Bronze inventory snapshots → Silver inventory (one row per store, product and day);
    stores and products must be known by the snapshot's arrival + L (`known_keys`)."""
    return _clean(bronze, _Shape(SILVER_INVENTORY), batch_id=batch_id, known=known_keys, lateness_days=lateness_days)
