"""How Silver judges records: typed values, rule checks, the first broken rule, deduplication,
and the quarantine projections.

Rules are written as Spark SQL expressions: one expression per step reaches the JVM in one
call, where the same logic through the Column API costs thousands of Py4J round trips. Each
check names the rule it enforces (`lib/registry/rules.py`); a record breaking several is
quarantined under the first of them by the declarations' order, with a reason listing them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import (
    QUARANTINE_RULE_VIOLATIONS,
    TableSpec,
)

# Columns of the `duplicates` frames: enough to count and to trace every dropped re-send.
DUPLICATE_COLUMNS = ("source_table", "_source", "record_key", "_arrival_date", "event_date")


# Kinds of `known_keys` rows.
STORE, PRODUCT, CUSTOMER = "store", "product", "customer"


_INT = r"^[+-]?[0-9]{1,18}$"


_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$"


_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"


# A date or date-time with no offset at all: readable, but not an instant.
_NO_OFFSET = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?$"


_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


_MAX_AMOUNT = 10**16  # amounts are decimal(18,2)


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
