"""How Silver judges records: typed values, rule checks, the first broken rule, deduplication,
and the quarantine projections.

Rules are declared with their conditions as Spark SQL (`lib/registry/rules.py`); `check` fills
a declared form in for one column, and every step is one SQL expression, which reaches the JVM
in one call where the same logic through the Column API costs thousands of Py4J round trips. A
record breaking several rules is quarantined under the first of them by the declarations'
order, with a reason listing them all.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import (
    QUARANTINE_RULE_VIOLATIONS,
    TableSpec,
)

# Columns of the `duplicates` frames: `quarantine.duplicates` but the run id.
DUPLICATE_COLUMNS = (
    "source_table",
    "_source",
    "record_key",
    "kept_source",
    "kept_arrival_date",
    "event_date",
    "_arrival_date",
)


# Kinds of `known_keys` rows.
STORE, PRODUCT, CUSTOMER = "store", "product", "customer"


_INT = r"^[+-]?[0-9]{1,18}$"


_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$"


_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"


# A date or date-time with no offset at all: readable, but not an instant.
_NO_OFFSET = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?$"


_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


MAX_AMOUNT = 10**16  # amounts are decimal(18,2)


def sql_string(text: str) -> str:
    """A Spark SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quoted(column: str) -> str:
    """A raw value for a reason, as SQL: quoted, long values cut."""
    return (
        f"concat('\\'', CASE WHEN length({column}) > 60 THEN concat(substring({column}, 1, 60), '…') "
        f"ELSE {column} END, '\\'')"
    )


def sql_in(values: Sequence[str]) -> str:
    return "(" + ", ".join(sql_string(v) for v in values) + ")"


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Registry columns, registry order, registry types."""
    return df.selectExpr(*[f"CAST(`{c.name}` AS {c.type}) AS `{c.name}`" for c in spec.columns])


def with_columns(df: DataFrame, columns: dict[str, str]) -> DataFrame:
    """Add (or replace) columns given as SQL expressions over the frame's current columns."""
    kept = [f"`{c}`" for c in df.columns if c not in columns]
    return df.selectExpr(*kept, *[f"{expr} AS `{name}`" for name, expr in columns.items()])


@dataclass(frozen=True)
class Check:
    """A declared rule form with its placeholders filled in (`check`)."""

    rule: str
    failed: str  # SQL condition; null counts as passed
    message: str  # SQL string expression


def check(rule: str, form: str = "", *, column: str = "", raw: str | None = None, **params: str) -> Check:
    """The form `form` of the declared `rule` (`lib/registry/rules.py`) with its placeholders
    filled in: `column` is the judged column, `raw` the column holding its text (default:
    `column`), and `params` SQL expressions for every other placeholder the form names."""
    when = rules.named(rule).when(form)
    sql = {"column": raw or column, "raw": raw or column, **params}

    def fill(text: str) -> str:
        def one(match: re.Match) -> str:
            name = match.group(1)
            if name not in sql:
                raise KeyError(f"rule {rule} form {form!r} needs {{{name}}}")
            return sql[name]

        return re.sub(r"\{(\w+)\}", one, text)

    parts = []
    for literal, field, _, _ in string.Formatter().parse(when.message):
        if literal:
            parts.append(sql_string(literal))
        if field == "column":
            parts.append(sql_string(column))
        elif field == "raw":
            parts.append(quoted(sql["raw"]))
        elif field:
            parts.append(f"CAST({sql[field] if field in sql else fill(field)} AS STRING)")
    message = "concat(" + ", ".join(parts) + ")" if parts else "''"
    return Check(rule, fill(when.condition), message)


@dataclass(frozen=True)
class Typed:
    """Typed columns to add (SQL over raw columns) and the checks that judge them."""

    columns: dict[str, str]
    checks: list[Check]


def _of(severity: rules.Severity) -> str:
    """A lambda body: whether failure `x` is of a rule of `severity`."""
    names = rules.with_severity(severity)
    return f"x.rule IN {sql_in(names)}" if names else "false"


def judge(df: DataFrame, checks: Sequence[Check]) -> DataFrame:
    """Add what the record's failures mean, by the rules' severities (`Rule.severity`):
    - `_rule`: the first `drop` rule it breaks by precedence (quarantined), else null;
    - `_reason`: every failure spelled out, warnings included;
    - `_flags`: the `warn` rules it breaks (array, precedence order; empty when none);
    - `_fatal`: the first `fail` rule it breaks and why, else null (the run must stop).

    The failures are gathered into one array in precedence order, so each check runs once.
    """
    ordered = sorted(checks, key=lambda c: rules.precedence(c.rule))  # stable within a rule
    items = ", ".join(
        f"CASE WHEN {c.failed} THEN named_struct('rule', {sql_string(c.rule)}, 'message', {c.message}) END"
        for c in ordered
    )
    df = with_columns(df, {"_failures": f"filter(array({items}), x -> x IS NOT NULL)"})
    fatal = f"filter(_failures, x -> {_of(rules.Severity.FAIL)})"
    # get() is null past the end, also under ANSI mode
    return with_columns(
        df,
        {
            "_rule": f"get(filter(_failures, x -> {_of(rules.Severity.DROP)}), 0).rule",
            "_reason": "nullif(array_join(_failures.message, '; '), '')",
            "_flags": f"array_distinct(transform(filter(_failures, x -> {_of(rules.Severity.WARN)}), x -> x.rule))",
            "_fatal": f"concat(get({fatal}, 0).rule, ': ', get({fatal}, 0).message)"
            if rules.with_severity(rules.Severity.FAIL)
            else "CAST(NULL AS STRING)",
        },
    ).drop("_failures")


class FatalRecords(Exception):
    """Records broke a rule of severity `fail`: the run stops before it writes anything."""


def refuse_fatal(classified: DataFrame, table: str) -> None:
    """Raise `FatalRecords` naming up to ten records of `classified` that broke a `fail` rule.
    Free when no such rule is declared (no Spark job runs)."""
    if not rules.with_severity(rules.Severity.FAIL):
        return
    found = classified.filter("_fatal IS NOT NULL").select("_source", "record_key", "_fatal").limit(10).collect()
    if found:
        listed = "; ".join(f"{r['_source']} ({r['record_key']}): {r['_fatal']}" for r in found)
        raise FatalRecords(f"{table}: records broke a rule of severity fail, nothing was written: {listed}")


def first_failure(checks: Sequence[Check]) -> tuple[str, str]:
    """SQL for the rule and the reason of the first of `checks` a record fails (NULL: none), in
    the order given: for a record judged as a whole before `judge`."""
    rule = " ".join(f"WHEN {c.failed} THEN {sql_string(c.rule)}" for c in checks)
    reason = " ".join(f"WHEN {c.failed} THEN {c.message}" for c in checks)
    return f"CASE {rule} END", f"CASE {reason} END"


def missing(name: str) -> Check:
    return check(rules.MISSING_KEY, column=name)


def declared_checks(df: DataFrame, spec: TableSpec) -> list[Check]:
    """The checks of the rules that name columns of `spec` in their declaration (`Rule.on`)."""
    out = []
    for rule, column in rules.declared_on(spec.key):
        if column not in spec.column_names:
            raise ValueError(f"rule {rule.name} judges {spec.key}.{column}, but {spec.key} has no column {column}")
        value = f"v_{column}" if f"v_{column}" in df.columns else column
        exact = f"_{column}_exact" if f"_{column}_exact" in df.columns else value
        out += [check(rule.name, w.form, column=column, value=value, exact=exact) for w in rule.forms]
    return out


def typed_int(name: str, out: str) -> Typed:
    big = f"CASE WHEN {name} RLIKE {sql_string(_INT)} THEN try_cast({name} AS BIGINT) END"
    return Typed(
        {out: f"CASE WHEN {big} BETWEEN {_INT32_MIN} AND {_INT32_MAX} THEN CAST({big} AS INT) END"},
        [check(rules.INVALID_TYPE, "whole_number", column=name, value=out)],
    )


def typed_decimal(
    name: str,
    out: str,
    exact: str,
    precision: int,
    scale: int,
    *,
    default: str | None = None,
    in_range: str = "true",
) -> Typed:
    """`exact` holds the number as written, `out` the value at the column's type. Non-numbers
    (NaN, Infinity, text), overflow and extra decimal places are `invalid_type`: rounding a price
    silently would change it. `default` replaces an absent value. With `in_range` (SQL over
    `exact`), overflow and decimal places are checked only inside the range: outside it another
    rule speaks."""
    value = f"CASE WHEN {name} RLIKE {sql_string(_NUMBER)} THEN try_cast({name} AS DECIMAL(38,18)) END"
    if default is not None:
        value = f"CASE WHEN {name} IS NULL THEN CAST({default} AS DECIMAL(38,18)) ELSE {value} END"
    params = {"column": name, "value": out, "exact": exact, "in_range": in_range}
    return Typed(
        {exact: value, out: f"try_cast({value} AS DECIMAL({precision},{scale}))"},
        [
            check(rules.INVALID_TYPE, "number", **params),
            check(rules.INVALID_TYPE, "decimal_range", precision=str(precision), scale=str(scale), **params),
            check(rules.INVALID_TYPE, "decimal_places", scale=str(scale), **params),
        ],
    )


def typed_date(name: str, out: str) -> Typed:
    return Typed(
        {out: f"CASE WHEN {name} RLIKE {sql_string(_DATE)} THEN try_cast({name} AS DATE) END"},
        [check(rules.INVALID_TYPE, "date", column=name, value=out)],
    )


def typed_timestamp(name: str, out: str, local_date: str) -> Typed:
    """`out`: the UTC instant of an ISO-8601 timestamp with offset; `local_date`: its calendar
    date as written (the first ten characters) — the business date of the record."""
    instant = f"CASE WHEN {name} RLIKE {sql_string(_TIMESTAMP)} THEN try_cast({name} AS TIMESTAMP) END"
    no_offset = sql_string(_NO_OFFSET)
    return Typed(
        {
            out: instant,
            local_date: f"CASE WHEN {instant} IS NOT NULL THEN try_cast(substring({name}, 1, 10) AS DATE) END",
        },
        [
            check(rules.INVALID_TYPE, "no_offset", column=name, no_offset=no_offset),
            check(rules.INVALID_TYPE, "timestamp", column=name, value=out, no_offset=no_offset),
        ],
    )


def accepted_values(name: str, values: Sequence[str]) -> Check:
    listed = sql_string(", ".join(values))
    return check(rules.INVALID_VALUE, "not_accepted", column=name, accepted=sql_in(values), listed=listed)


def coded_values(spec: TableSpec) -> list[Check]:
    """The value-list checks of `spec`'s judged columns: refused outside `accepted_values`,
    flagged outside `expected_values`."""
    out = [accepted_values(name, values) for name, values in spec.accepted_values.items() if name not in DERIVED]
    for name, values in spec.expected_values.items():
        listed = sql_string(", ".join(values))
        out.append(check(rules.UNEXPECTED_VALUE, column=name, accepted=sql_in(values), listed=listed))
        out.append(check(rules.INVALID_VALUE, "too_long", column=name, limit=str(MAX_CODE_LENGTH)))
    return out


# Longer than any code a list could hold: such a value is refused rather than kept and flagged.
MAX_CODE_LENGTH = 64


# Silver columns set by the pipeline, not read from the source: no value of theirs is judged.
DERIVED = ("channel",)


def with_known(df: DataFrame, known_keys: DataFrame, kinds: dict[str, str]) -> DataFrame:
    """Left-join `_<kind>_first`, the first arrival date of each referenced key (`kinds`: kind → id column)."""
    for kind, column in kinds.items():
        first = F.broadcast(
            known_keys.filter(F.col("kind") == kind)
            .groupBy(F.col("key").alias("_known_key"))
            .agg(F.min("first_arrival_date").alias(f"_{kind}_first"))
        )
        df = df.join(first, df[column] == first["_known_key"], "left").drop("_known_key")
    return df


def orphan(kind: str, column: str, lateness_days: int) -> list[Check]:
    """`column` names a `kind` of master record that had not arrived by the record's arrival + L
    (after `with_known`)."""
    rule = rules.unknown_master(kind)
    params = {"column": column, "first": f"_{kind}_first", "lateness_days": str(lateness_days)}
    return [check(rule, w.form, **params) for w in rules.named(rule).forms]


def dedup(df: DataFrame, identity: Sequence[str], order: Sequence[str], content: dict[str, str]) -> DataFrame:
    """Among rows with `_rule` null, mark later copies of an identity as `_duplicate` (same
    content as the kept, earliest copy) or `conflicting_duplicate` (different content).

    `content` maps the compared columns to the names a reason shows.
    """
    window = f"OVER (PARTITION BY _rule IS NULL, {', '.join(identity)} ORDER BY {', '.join(order)})"
    firsts = {f"_first{i}": f"first({c}) {window}" for i, c in enumerate(content)}
    df = with_columns(
        df,
        {
            "_rank": f"CASE WHEN _rule IS NULL THEN row_number() {window} END",
            "_first_source": f"first(_source) {window}",
            "_first_arrival": f"first(_arrival_date) {window}",
            **firsts,
        },
    )
    differs = ", ".join(
        f"CASE WHEN NOT {c} <=> _first{i} THEN {sql_string(label)} END" for i, (c, label) in enumerate(content.items())
    )
    df = with_columns(df, {"_differs": f"CASE WHEN _rank > 1 THEN concat_ws(', ', {differs}) END"})
    kept = {"differs": "_differs", "kept_source": "_first_source", "kept_arrival": "_first_arrival"}
    conflicting = check(rules.CONFLICTING_DUPLICATE, **kept)
    duplicate = check(rules.DUPLICATE, **kept)
    df = with_columns(
        df,
        {
            "_duplicate": f"coalesce({duplicate.failed}, false)",
            # the copy a duplicate was counted against: the one kept
            "_kept_source": f"CASE WHEN {duplicate.failed} THEN _first_source END",
            "_kept_arrival": f"CASE WHEN {duplicate.failed} THEN _first_arrival END",
            "_rule": f"CASE WHEN {conflicting.failed} THEN {sql_string(conflicting.rule)} ELSE _rule END",
            "_reason": f"CASE WHEN {conflicting.failed} THEN {conflicting.message} ELSE _reason END",
        },
    )
    return df.drop("_rank", "_first_source", "_first_arrival", "_differs", *firsts)


def violation_rows(classified: DataFrame, *, batch_id: str) -> DataFrame:
    """The classified records that broke a rule, as `quarantine.rule_violations` rows."""
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
        f"{sql_string(batch_id)} AS _batch_id",
        "CAST(NULL AS TIMESTAMP) AS replayed_at",
        "CAST(NULL AS STRING) AS replayed_by",
    )
    return conform(out, QUARANTINE_RULE_VIOLATIONS)


def duplicate_rows(classified: DataFrame) -> DataFrame:
    """The classified records counted as duplicates, each with the copy kept (DUPLICATE_COLUMNS)."""
    return classified.filter("_duplicate").selectExpr(
        "CAST(source_table AS STRING) AS source_table",
        "CAST(_source AS STRING) AS _source",
        "CAST(record_key AS STRING) AS record_key",
        "CAST(_kept_source AS STRING) AS kept_source",
        "CAST(_kept_arrival AS DATE) AS kept_arrival_date",
        "CAST(_event_date AS DATE) AS event_date",
        "CAST(_arrival_date AS DATE) AS _arrival_date",
    )
