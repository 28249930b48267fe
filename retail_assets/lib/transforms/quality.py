"""Data-quality rules evaluated by the asset checks.

Each function takes Spark DataFrames and returns a `CheckOutcome`: pass/fail plus the figures
that explain it. They compute everything in one aggregation where they can, so a check costs a
single Spark job. The Dagster layer only turns outcomes into `AssetCheckResult`s.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F

from retail_assets.lib.registry.tables import TableSpec

if TYPE_CHECKING:
    import pyarrow as pa

# Check names, one constant each: the UI shows them and the tests select by them.
PRIMARY_KEY = "primary_key_unique_not_null"
COLUMN_SCHEMA = "column_schema_matches_registry"
VALUE_RULES = "values_within_rules"
EXACTLY_ONCE = "each_source_record_once"
CONSERVATION = "records_conserved"
REJECT_RATE = "reject_rate_below_threshold"
REFERENTIAL_INTEGRITY = "foreign_keys_resolve"
SCD2_INTEGRITY = "scd2_history_consistent"
RECONCILIATION = "amounts_reconcile_with_silver"
QUALITY_WARNINGS = "warn_rules_flagged"
INFERRED_WAITING = "inferred_members_resolved"
SERVES_SOURCE = "serves_its_source_rows"
SERVED_ROWS_CURRENT = "served_rows_current"
NO_RAW_PII = "no_raw_email_or_phone"


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def plain(value: Any) -> Any:
    """Metadata values the UI can plot: Decimal → float, None → 0."""
    if isinstance(value, Decimal):
        return float(value)
    return 0 if value is None else value


def key_hash(*columns: str) -> Column:
    """A 64-bit hash of a key: grouping by it shuffles a long per row where the key may be
    several strings. Different keys can share a hash, so whatever a grouping by it finds
    repeated is counted again by the key itself."""
    return F.xxhash64(*columns)


def primary_key(df: DataFrame, key: tuple[str, ...]) -> CheckOutcome:
    # Rows per key hash, then one pass over those groups: a plain aggregation of longs, cheaper
    # than grouping by the key's values (or a multi-column count_distinct, which Spark expands
    # row by row). A key with a null part has no hash and is counted as null.
    complete = ~F.greatest(*[F.col(k).isNull() for k in key]) if len(key) > 1 else F.col(key[0]).isNotNull()
    hashed = df.withColumn("_h", F.when(complete, key_hash(*key)))
    groups = hashed.groupBy("_h").agg(F.count(F.lit(1)).alias("n"))
    row = groups.agg(
        F.sum("n").alias("rows"),
        F.sum(F.when(F.col("_h").isNull(), F.col("n"))).alias("null_keys"),
        # every row of a hash beyond its first repeats it, unless two keys share the hash
        F.sum(F.when(F.col("_h").isNotNull(), F.col("n") - 1)).alias("repeats"),
    ).first()
    rows, nulls, duplicates = int(plain(row["rows"])), int(plain(row["null_keys"])), int(plain(row["repeats"]))
    if duplicates:
        # Count the rows of hashes held more than once again, by their key values.
        shared = groups.filter(F.col("_h").isNotNull() & (F.col("n") > 1)).select("_h")
        exact = (
            hashed.join(shared, "_h", "left_semi")
            .groupBy(*key)
            .agg(F.count(F.lit(1)).alias("n"))
            .agg(F.sum(F.col("n") - 1).alias("duplicates"))
            .first()
        )
        duplicates = int(plain(exact["duplicates"]))
    passed = nulls == 0 and duplicates == 0
    return CheckOutcome(
        passed,
        f"key ({', '.join(key)}): {nulls} null, {duplicates} duplicated of {rows} rows",
        {"rows": rows, "null_keys": nulls, "duplicate_keys": duplicates},
    )


def column_schema(actual: list[tuple[str, str]], spec: TableSpec) -> CheckOutcome:
    """Compare the table's stored columns and types with its registry entry."""
    expected = {c.name: c.type.replace(" ", "").lower() for c in spec.columns}
    found = {name: typ.replace(" ", "").lower() for name, typ in actual}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    retyped = sorted(
        f"{n}: {found[n]} (registry: {expected[n]})" for n in set(expected) & set(found) if found[n] != expected[n]
    )
    passed = not (missing or unexpected or retyped)
    parts = [
        f"missing {missing}" if missing else "",
        f"unexpected {unexpected}" if unexpected else "",
        f"retyped {retyped}" if retyped else "",
    ]
    return CheckOutcome(
        passed,
        "stored schema matches the registry" if passed else "schema drift: " + "; ".join(p for p in parts if p),
        {"columns": len(found), "missing": len(missing), "unexpected": len(unexpected), "retyped": len(retyped)},
    )


def value_rules(df: DataFrame, spec: TableSpec) -> CheckOutcome:
    """Required columns not null, non-negative columns, accepted value sets."""
    exprs = []
    for c in spec.columns:
        if not c.nullable:
            exprs.append(F.sum(F.col(c.name).isNull().cast("int")).alias(f"null:{c.name}"))
    for name in spec.non_negative:
        exprs.append(F.sum((F.col(name) < 0).cast("int")).alias(f"negative:{name}"))
    for name, values in spec.accepted_values.items():
        exprs.append(
            F.sum((F.col(name).isNotNull() & ~F.col(name).isin(*values)).cast("int")).alias(f"not_accepted:{name}")
        )
    exprs.append(F.count(F.lit(1)).alias("rows"))
    row = df.agg(*exprs).first().asDict()
    rows = int(row.pop("rows"))
    failures = {k: int(plain(v)) for k, v in row.items() if plain(v)}
    metadata: dict[str, Any] = {"rows": rows, "violating_values": sum(failures.values())}
    metadata.update({k.replace(":", "_"): v for k, v in failures.items()})
    if failures:
        detail = ", ".join(f"{v} × {k}" for k, v in sorted(failures.items()))
        return CheckOutcome(False, f"value rules broken: {detail}", metadata)
    return CheckOutcome(True, f"all {rows} rows satisfy the value rules", metadata)


@dataclass(frozen=True)
class SourceFiles:
    """The data files an incremental exactly-once check reads (`files_to_compare`)."""

    days: tuple[dt.date, ...]  # the partitions checked
    checked: tuple[str, ...]  # their files
    compared: tuple[str, ...]  # other partitions' files whose range may hold one of their records
    skipped: int  # other partitions' files whose range cannot

    @property
    def read(self) -> list[str]:
        return [*self.checked, *self.compared]


def files_to_compare(ranges: pa.Table, days: Sequence[dt.date]) -> SourceFiles:
    """Which files can hold a record of the partitions `days`, by the range of `_source` in each
    (`LakehouseEngine.file_ranges`): theirs, and each other file whose range meets one of theirs.
    A file without a bound is unbounded on that side, whichever partition it is in."""
    checked, others, wanted = [], [], set(days)
    for f in ranges.to_pylist():
        (checked if f["partition"] in wanted else others).append(f)
    # The checked files' ranges merged into disjoint spans sorted by start ("" is the least
    # string, None an unbounded end); each other file is tested against the last span starting
    # at or below its end, the one reaching furthest of those that start in time.
    spans: list[list] = []
    for lo, hi in sorted(((f["min"] or "", f["max"]) for f in checked), key=lambda span: span[0]):
        if spans and (spans[-1][1] is None or lo <= spans[-1][1]):
            spans[-1][1] = None if None in (hi, spans[-1][1]) else max(hi, spans[-1][1])
        else:
            spans.append([lo, hi])
    starts = [lo for lo, _ in spans]
    compared = []
    for f in others:
        below = bisect.bisect_right(starts, f["max"]) if f["max"] is not None else len(starts)
        if below and (spans[below - 1][1] is None or (f["min"] or "") <= spans[below - 1][1]):
            compared.append(f["file"])
    return SourceFiles(tuple(days), tuple(f["file"] for f in checked), tuple(compared), len(others) - len(compared))


def exactly_once(df: DataFrame, partition_column: str, files: SourceFiles | None = None) -> CheckOutcome:
    """Every source record (`_source`) is held by exactly one row of exactly one partition.

    With `files`, of the records held by the partitions `files.days`: `df` holds their rows and
    those of every other file that may repeat one of them (`files_to_compare`), and counts only
    records with a row in those partitions, so a record held twice fails the check of each
    partition holding it, whatever the other partitions hold."""

    # A record spans partitions when its first and last differ: the same answer as counting its
    # distinct partitions, without the distinct aggregation's extra shuffle (twice as fast).
    # Grouped by the hash of `_source`; hashes held more than once are grouped again by value.
    def grouped(rows: DataFrame, by: str) -> DataFrame:
        groups = rows.groupBy(by).agg(
            F.count(F.lit(1)).alias("n"),
            F.min(partition_column).alias("first"),
            F.max(partition_column).alias("last"),
            *([F.max(F.col(partition_column).isin(*files.days)).alias("checked")] if files else []),
        )
        return groups.filter("checked") if files else groups

    def figures(groups: DataFrame) -> Row:
        return groups.agg(
            F.count(F.lit(1)).alias("sources"),
            F.sum((F.col("n") > 1).cast("int")).alias("repeated"),
            F.sum((F.col("first") != F.col("last")).cast("int")).alias("split"),
        ).first()

    hashed = df.withColumn("_h", key_hash("_source"))
    by_hash = grouped(hashed, "_h")
    row = figures(by_hash)
    sources, repeated, split = int(plain(row["sources"])), int(plain(row["repeated"])), int(plain(row["split"]))
    if repeated:
        shared = by_hash.filter(F.col("n") > 1).select("_h")
        exact = figures(grouped(hashed.join(shared, "_h", "left_semi"), "_source"))
        # the shared hashes' groups are replaced by their records' own
        sources += int(plain(exact["sources"])) - repeated
        repeated, split = int(plain(exact["repeated"])), int(plain(exact["split"]))
    metadata = {"source_records": sources, "repeated_sources": repeated, "split_across_partitions": split}
    compared = ""
    if files is not None:
        others = len(files.compared) + files.skipped
        metadata |= {"other_partition_files_read": len(files.compared), "other_partition_files_skipped": files.skipped}
        compared = (
            f" (compared with {len(files.compared)} of {others} files of other partitions; the rest cannot hold one)"
        )
    return CheckOutcome(
        repeated == 0,
        f"{repeated} source records held more than once ({split} across partitions){compared}"
        if repeated
        else f"every source record is held once{compared}",
        metadata,
    )


def conservation(
    *,
    records_in: int,
    accepted: int,
    rejected: int,
    violations: int,
    duplicates: int,
    released: int = 0,
    merged: int = 0,
) -> CheckOutcome:
    """`violations`: the records still quarantined; `released`: those a replay let into Silver
    since (part of `accepted`, reported apart); `merged`: change records of the operational
    database's orders that Silver's lines took in as a newer version, a cancellation or their
    order's header (`silver/orders.py`), counted like the duplicates."""
    accounted = accepted + rejected + violations + duplicates + merged
    diff = records_in - accounted
    metadata = {
        "records_in": records_in,
        "accepted": accepted,
        "ingest_rejects": rejected,
        "rule_violations": violations,
        "duplicates": duplicates,
        "merged_order_changes": merged,
        "released_from_quarantine": released,
        "unaccounted": diff,
    }
    if diff == 0:
        return CheckOutcome(
            True,
            f"{records_in} in = {accepted} accepted + {rejected + violations} quarantined + {duplicates} duplicates"
            + (f" + {merged} order changes merged" if merged else ""),
            metadata,
        )
    verb = "lost" if diff > 0 else "invented"
    return CheckOutcome(False, f"{abs(diff)} records {verb}: {records_in} in but {accounted} accounted for", metadata)


def quality_warnings(df: DataFrame, partition_column: str, days: list) -> dict[Any, CheckOutcome]:
    """Per day: the rows kept with warn-level flags (`quality_flags`), counted per rule. A day
    with flagged rows warns; its figures say how many of each."""
    exploded = df.select(partition_column, F.explode("quality_flags").alias("rule"))
    per_rule: dict[Any, dict[str, int]] = {}
    for r in exploded.groupBy(partition_column, "rule").agg(F.count(F.lit(1)).alias("n")).collect():
        per_rule.setdefault(r[partition_column], {})[r["rule"]] = int(r["n"])
    totals = {
        r[partition_column]: (int(r["rows"]), int(r["flagged"] or 0))
        for r in df.groupBy(partition_column)
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum((F.size("quality_flags") > 0).cast("int")).alias("flagged"),
        )
        .collect()
    }
    out = {}
    for day in days:
        rows, flagged = totals.get(day, (0, 0))
        counts = per_rule.get(day, {})
        detail = ", ".join(f"{n} × {rule}" for rule, n in sorted(counts.items()))
        out[day] = CheckOutcome(
            flagged == 0,
            f"no row of {rows} is flagged" if not flagged else f"{flagged} of {rows} rows kept with warnings: {detail}",
            {"rows": rows, "flagged_rows": flagged, **{f"flag_{rule}": n for rule, n in sorted(counts.items())}},
        )
    return out


def reject_rate(*, quarantined: int, records_in: int, max_rate: float) -> CheckOutcome:
    rate = quarantined / records_in if records_in else 0.0
    return CheckOutcome(
        rate <= max_rate,
        f"{quarantined} of {records_in} records quarantined ({rate:.2%}; threshold {max_rate:.0%})",
        {"quarantined": quarantined, "records_in": records_in, "reject_rate": round(rate, 6), "threshold": max_rate},
    )


def reconciliation(figures: dict[str, tuple[Any, Any]]) -> CheckOutcome:
    """Compare named amounts computed two ways: {name: (gold, silver)}; exact for decimals."""
    metadata: dict[str, Any] = {}
    mismatched = []
    for name, (gold, silver) in figures.items():
        g, s = plain(gold), plain(silver)
        metadata[f"{name}_gold"] = g
        metadata[f"{name}_silver"] = s
        if Decimal(str(g)) != Decimal(str(s)):
            mismatched.append(f"{name}: gold {g} vs silver {s}")
    if mismatched:
        return CheckOutcome(False, "Gold does not reconcile with Silver: " + "; ".join(mismatched), metadata)
    return CheckOutcome(
        True, "Gold reconciles with Silver: " + ", ".join(f"{n}={plain(v[0])}" for n, v in figures.items()), metadata
    )
