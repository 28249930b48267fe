"""Data-quality rules evaluated by the asset checks.

Each function takes Spark DataFrames and returns a `CheckOutcome`: pass/fail plus the figures
that explain it. They compute everything in one aggregation where they can, so a check costs a
single Spark job. The Dagster layer only turns outcomes into `AssetCheckResult`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from retail_assets.lib.registry.tables import UNKNOWN_MEMBER_SK, TableSpec

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


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _plain(value: Any) -> Any:
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
    rows, nulls, duplicates = int(_plain(row["rows"])), int(_plain(row["null_keys"])), int(_plain(row["repeats"]))
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
        duplicates = int(_plain(exact["duplicates"]))
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
    failures = {k: int(_plain(v)) for k, v in row.items() if _plain(v)}
    metadata: dict[str, Any] = {"rows": rows, "violating_values": sum(failures.values())}
    metadata.update({k.replace(":", "_"): v for k, v in failures.items()})
    if failures:
        detail = ", ".join(f"{v} × {k}" for k, v in sorted(failures.items()))
        return CheckOutcome(False, f"value rules broken: {detail}", metadata)
    return CheckOutcome(True, f"all {rows} rows satisfy the value rules", metadata)


def exactly_once(df: DataFrame, partition_column: str) -> CheckOutcome:
    """Every source record (`_source`) is held by exactly one row of exactly one partition."""

    # A record spans partitions when its first and last differ: the same answer as counting its
    # distinct partitions, without the distinct aggregation's extra shuffle (twice as fast).
    # Grouped by the hash of `_source`; hashes held more than once are grouped again by value.
    def grouped(rows: DataFrame, by: str) -> DataFrame:
        return rows.groupBy(by).agg(
            F.count(F.lit(1)).alias("n"), F.min(partition_column).alias("first"), F.max(partition_column).alias("last")
        )

    def figures(groups: DataFrame) -> Row:
        return groups.agg(
            F.count(F.lit(1)).alias("sources"),
            F.sum((F.col("n") > 1).cast("int")).alias("repeated"),
            F.sum((F.col("first") != F.col("last")).cast("int")).alias("split"),
        ).first()

    hashed = df.withColumn("_h", key_hash("_source"))
    by_hash = grouped(hashed, "_h")
    row = figures(by_hash)
    sources, repeated, split = int(_plain(row["sources"])), int(_plain(row["repeated"])), int(_plain(row["split"]))
    if repeated:
        shared = by_hash.filter(F.col("n") > 1).select("_h")
        exact = figures(grouped(hashed.join(shared, "_h", "left_semi"), "_source"))
        # the shared hashes' groups are replaced by their records' own
        sources += int(_plain(exact["sources"])) - repeated
        repeated, split = int(_plain(exact["repeated"])), int(_plain(exact["split"]))
    return CheckOutcome(
        repeated == 0,
        f"{repeated} source records held more than once ({split} across partitions)"
        if repeated
        else "every source record is held once",
        {"source_records": sources, "repeated_sources": repeated, "split_across_partitions": split},
    )


def conservation(
    *, records_in: int, accepted: int, rejected: int, violations: int, duplicates: int, released: int = 0
) -> CheckOutcome:
    """`violations`: the records still quarantined; `released`: those a replay let into Silver
    since (part of `accepted`, reported apart)."""
    accounted = accepted + rejected + violations + duplicates
    diff = records_in - accounted
    metadata = {
        "records_in": records_in,
        "accepted": accepted,
        "ingest_rejects": rejected,
        "rule_violations": violations,
        "duplicates": duplicates,
        "released_from_quarantine": released,
        "unaccounted": diff,
    }
    if diff == 0:
        return CheckOutcome(
            True,
            f"{records_in} in = {accepted} accepted + {rejected + violations} quarantined + {duplicates} duplicates",
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


def inferred_members_waiting(dim: DataFrame, key: str, *, as_of: Any, wait_days: int) -> CheckOutcome:
    """Inferred members whose master record has not arrived `wait_days` after the first sales
    line that named them."""
    inferred = dim.where(F.col("is_inferred"))
    overdue = inferred.where(F.col("inferred_since") <= F.date_sub(F.lit(as_of), wait_days))
    row = inferred.agg(
        F.count(F.lit(1)).alias("inferred"),
        F.sum((F.col("inferred_since") <= F.date_sub(F.lit(as_of), wait_days)).cast("int")).alias("overdue"),
    ).first()
    waiting, late = int(row["inferred"]), int(row["overdue"] or 0)
    examples = [r[key] for r in overdue.orderBy("inferred_since", key).select(key).limit(5).collect()] if late else []
    return CheckOutcome(
        late == 0,
        f"{waiting} inferred members, none waiting more than {wait_days} days"
        if not late
        else f"{late} inferred members have waited more than {wait_days} days for their master record: "
        + ", ".join(examples),
        {"inferred_members": waiting, "waiting_too_long": late, "wait_days": wait_days},
    )


def reject_rate(*, quarantined: int, records_in: int, max_rate: float) -> CheckOutcome:
    rate = quarantined / records_in if records_in else 0.0
    return CheckOutcome(
        rate <= max_rate,
        f"{quarantined} of {records_in} records quarantined ({rate:.2%}; threshold {max_rate:.0%})",
        {"quarantined": quarantined, "records_in": records_in, "reject_rate": round(rate, 6), "threshold": max_rate},
    )


def referential_integrity(fact: DataFrame, references: dict[str, tuple[DataFrame, str]]) -> CheckOutcome:
    """Every foreign key of `fact` names a row of its dimension.

    `references` maps a fact column to (dimension DataFrame, its key column). The unknown member
    (-1) belongs to every dimension by definition, built or not yet (a stream run keys a line to
    it before the dimensions' first build); the SCD2 check proves each dimension holds it. One
    pass over the fact: each dimension's keys are broadcast and joined, one aggregation counts.
    """
    joined, figures = fact, [F.count(F.lit(1)).alias("rows")]
    for i, (fk, (dim, pk)) in enumerate(references.items()):
        keys = dim.select(F.col(pk).alias(f"_pk{i}")).distinct().withColumn(f"_found{i}", F.lit(True))
        joined = joined.join(F.broadcast(keys), F.col(fk) == F.col(f"_pk{i}"), "left")
        # a null key matches no dimension row: unresolved, as an anti-join counts it
        unresolved = F.col(f"_found{i}").isNull() & ~F.coalesce(F.col(fk) == UNKNOWN_MEMBER_SK, F.lit(False))
        figures.append(F.sum(unresolved.cast("int")).alias(f"{fk}_unresolved"))
        figures.append(F.sum((F.col(fk) == UNKNOWN_MEMBER_SK).cast("int")).alias(f"{fk}_unknown_member"))
    row = joined.agg(*figures).first().asDict()
    metadata: dict[str, Any] = {name: int(_plain(value)) for name, value in row.items()}
    broken = [f"{metadata[f'{fk}_unresolved']} × {fk}" for fk in references if metadata[f"{fk}_unresolved"]]
    if broken:
        return CheckOutcome(False, "foreign keys without a dimension row: " + ", ".join(broken), metadata)
    return CheckOutcome(True, f"all {metadata['rows']} rows resolve every foreign key", metadata)


def scd2_integrity(dim: DataFrame, *, key: str, surrogate_key: str) -> CheckOutcome:
    """One current version per key, contiguous non-overlapping validity, one unknown member."""
    members = dim.filter(F.col(surrogate_key) != UNKNOWN_MEMBER_SK)
    w = Window.partitionBy(key).orderBy("valid_from")
    ordered = members.withColumn("_next_from", F.lead("valid_from").over(w))
    per_key = members.groupBy(key).agg(F.sum(F.col("is_current").cast("int")).alias("current"))
    row = ordered.agg(
        F.count(F.lit(1)).alias("versions"),
        # the next version must start exactly where this one ends
        F.sum(
            (
                F.col("_next_from").isNotNull()
                & ((F.col("valid_to") != F.col("_next_from")) | F.col("valid_to").isNull())
            ).cast("int")
        ).alias("gaps_or_overlaps"),
        F.sum((F.col("_next_from").isNull() & F.col("valid_to").isNotNull()).cast("int")).alias("closed_last"),
        F.sum((F.col("valid_to").isNotNull() & (F.col("valid_to") <= F.col("valid_from"))).cast("int")).alias(
            "empty_intervals"
        ),
    ).first()
    keys_row = per_key.agg(
        F.count(F.lit(1)).alias("keys"), F.sum((F.col("current") != 1).cast("int")).alias("bad_current")
    ).first()
    unknown = dim.filter(F.col(surrogate_key) == UNKNOWN_MEMBER_SK).count()
    metadata = {
        "versions": int(_plain(row["versions"])),
        "keys": int(_plain(keys_row["keys"])),
        "keys_without_exactly_one_current": int(_plain(keys_row["bad_current"])),
        "gaps_or_overlaps": int(_plain(row["gaps_or_overlaps"])),
        "open_versions_not_last": int(_plain(row["closed_last"])),
        "empty_intervals": int(_plain(row["empty_intervals"])),
        "unknown_members": unknown,
    }
    problems = [
        k
        for k in ("keys_without_exactly_one_current", "gaps_or_overlaps", "open_versions_not_last", "empty_intervals")
        if metadata[k]
    ]
    if unknown != 1:
        problems.append(f"unknown_members={unknown}")
    if problems:
        return CheckOutcome(False, "SCD2 history inconsistent: " + ", ".join(problems), metadata)
    return CheckOutcome(
        True, f"{metadata['versions']} versions of {metadata['keys']} keys, one current each, contiguous", metadata
    )


def reconciliation(figures: dict[str, tuple[Any, Any]]) -> CheckOutcome:
    """Compare named amounts computed two ways: {name: (gold, silver)}; exact for decimals."""
    metadata: dict[str, Any] = {}
    mismatched = []
    for name, (gold, silver) in figures.items():
        g, s = _plain(gold), _plain(silver)
        metadata[f"{name}_gold"] = g
        metadata[f"{name}_silver"] = s
        if Decimal(str(g)) != Decimal(str(s)):
            mismatched.append(f"{name}: gold {g} vs silver {s}")
    if mismatched:
        return CheckOutcome(False, "Gold does not reconcile with Silver: " + "; ".join(mismatched), metadata)
    return CheckOutcome(
        True, "Gold reconciles with Silver: " + ", ".join(f"{n}={_plain(v[0])}" for n, v in figures.items()), metadata
    )


NO_RAW_PII = "no_raw_email_or_phone"
# An e-mail address whose local part is not masked (`j***@example.com` is masked).
RAW_EMAIL = r"(?i)^[a-z0-9._%+-]*[a-z0-9%+-][a-z0-9._%+-]*@[a-z0-9.-]+\.[a-z]{2,}$"
MASKED_EMAIL = r"^.\*\*\*@"
MIN_PHONE_DIGITS = 7  # fewer digits are ids and counts, not phone numbers


def _phone_digits(col):
    return F.regexp_replace(col, r"[^0-9]", "")


def no_raw_pii(df: DataFrame, raw_phones: DataFrame) -> CheckOutcome:
    """No string value is a raw e-mail address or one of the raw phone numbers Silver holds.

    E-mails are recognised by shape (an unmasked local part); phones by their digits matching a
    phone some customer record carries, since ids and hashes are digit runs too.
    """
    string_columns = [name for name, typ in df.dtypes if typ == "string"]
    if not string_columns:
        return CheckOutcome(True, "no string columns to scan", {"columns_scanned": 0})
    values = (
        df.select(
            F.explode(
                F.array(*[F.struct(F.lit(c).alias("column"), F.col(c).alias("value")) for c in string_columns])
            ).alias("cell")
        )
        .select("cell.column", "cell.value")
        .filter(F.col("value").isNotNull())
    )
    phones = (
        raw_phones.select(_phone_digits(F.col("phone")).alias("digits"))
        .filter(F.length("digits") >= MIN_PHONE_DIGITS)
        .distinct()
    )
    # Cheap tests first: a value shorter than a phone's digits cannot hold one, and an e-mail
    # address has an "@"; only the rest pay for the regular expressions.
    digits = F.when(F.length("value") >= MIN_PHONE_DIGITS, _phone_digits(F.col("value")))
    flagged = values.withColumn("digits", digits).join(
        F.broadcast(phones.withColumn("_raw_phone", F.lit(True))), "digits", "left"
    )
    email = F.col("value").contains("@") & F.col("value").rlike(RAW_EMAIL) & ~F.col("value").rlike(MASKED_EMAIL)
    flagged = flagged.withColumn("leak", email | F.col("_raw_phone").isNotNull())
    leaks = {
        r["column"]: r["n"]
        for r in flagged.filter("leak").groupBy("column").agg(F.count(F.lit(1)).alias("n")).collect()
    }
    metadata: dict[str, Any] = {"columns_scanned": len(string_columns), "values_with_raw_pii": sum(leaks.values())}
    if leaks:
        return CheckOutcome(
            False,
            "raw e-mail or phone values in: " + ", ".join(f"{k} ({v})" for k, v in sorted(leaks.items())),
            metadata,
        )
    return CheckOutcome(True, f"{len(string_columns)} string columns scanned, no raw e-mail or phone", metadata)
