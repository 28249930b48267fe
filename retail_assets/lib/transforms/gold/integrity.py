"""The star schema's integrity rules, evaluated by Gold's asset checks: SCD2 history, foreign
keys, inferred members, serving shapes against their sources, and no raw personal data.

Like `lib/transforms/quality.py` (the rules every table shares, and every check's name), each
function returns a `CheckOutcome` from as few Spark jobs as it can.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from retail_assets.lib.registry.tables import UNKNOWN_MEMBER_SK, TableSpec
from retail_assets.lib.transforms.quality import CheckOutcome, key_hash, plain


def inferred_members_waiting(dim: DataFrame, key: str, *, as_of: Any, wait_days: int) -> CheckOutcome:
    """Inferred members whose master record has not arrived `wait_days` after the first sales
    line that named them."""
    inferred = dim.where(F.col("is_inferred"))
    is_overdue = F.col("inferred_since") <= F.date_sub(F.lit(as_of), wait_days)
    overdue = inferred.where(is_overdue)
    row = inferred.agg(F.count(F.lit(1)).alias("inferred"), F.sum(is_overdue.cast("int")).alias("overdue")).first()
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
    metadata: dict[str, Any] = {name: int(plain(value)) for name, value in row.items()}
    broken = [f"{metadata[f'{fk}_unresolved']} × {fk}" for fk in references if metadata[f"{fk}_unresolved"]]
    if broken:
        return CheckOutcome(False, "foreign keys without a dimension row: " + ", ".join(broken), metadata)
    return CheckOutcome(True, f"all {metadata['rows']} rows resolve every foreign key", metadata)


WHOLE = "whole table"  # the day of every row where a check counts the whole table


def serves_source(
    served: DataFrame, source: DataFrame, key: tuple[str, ...], day: str | None, days: list
) -> dict[Any, CheckOutcome]:
    """A serving shape holds exactly one row per row of its source, matched by the source's key:
    a join that drops or repeats lines, or a served table older than its source, fails. Counted
    per day of `day` (None: the whole table, the same outcome for every day) in one pass."""
    tagged = [
        frame.select((F.col(day) if day else F.lit(WHOLE)).alias("_day"), key_hash(*key).alias("_h"))
        .groupBy("_day", "_h")
        .agg(F.count(F.lit(1)).alias(side))
        for frame, side in ((served, "served"), (source, "source"))
    ]
    joined = tagged[0].join(tagged[1], ["_day", "_h"], "full")
    served_n, source_n = F.coalesce(F.col("served"), F.lit(0)), F.coalesce(F.col("source"), F.lit(0))
    found = {
        r["_day"]: r.asDict()
        for r in joined.groupBy("_day")
        .agg(
            F.sum(served_n).alias("rows"),
            F.sum(source_n).alias("source_rows"),
            F.sum(F.greatest(source_n - served_n, F.lit(0))).alias("missing"),
            F.sum(F.greatest(served_n - source_n, F.lit(0))).alias("unexpected"),
        )
        .collect()
    }
    outcomes = {}
    for d in days:
        figures = {n: int(plain(v)) for n, v in found.get(d if day else WHOLE, {}).items() if n != "_day"}
        figures = {n: figures.get(n, 0) for n in ("rows", "source_rows", "missing", "unexpected")}
        if figures["missing"] or figures["unexpected"]:
            outcomes[d] = CheckOutcome(
                False,
                f"{figures['missing']} source rows are not served and {figures['unexpected']} served rows match no "
                "source row (a join that drops or repeats rows, or a served table older than its source)",
                figures,
            )
        else:
            outcomes[d] = CheckOutcome(True, f"one row for each of the {figures['source_rows']} source rows", figures)
    return outcomes


def served_rows_current(
    served: DataFrame, fresh: DataFrame, spec: TableSpec, day: str | None, days: list
) -> dict[Any, CheckOutcome]:
    """Rows of a served table that its SELECT over the inputs as they stand no longer gives (the
    volatile columns aside), per day of `day` (None: the whole table): attributes a later change
    replaced (rows missing altogether are `serves_source`'s). One pass: the served rows less the fresh."""
    compared = [c for c in spec.column_names if c not in spec.volatile_columns]
    stale = served.select(*compared).exceptAll(fresh.select(*compared))
    found = {
        r["_day"]: int(r["n"])
        for r in stale.groupBy((F.col(day) if day else F.lit(WHOLE)).alias("_day"))
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    }
    outcomes = {}
    for d in days:
        n = found.get(d if day else WHOLE, 0)
        outcomes[d] = CheckOutcome(
            n == 0,
            "every row is what its SELECT gives now"
            if not n
            else f"{n} rows hold what an input no longer holds: materialize the day again to refresh them",
            {"stale_rows": n},
        )
    return outcomes


def scd2_integrity(dim: DataFrame, *, key: str, surrogate_key: str) -> CheckOutcome:
    """One current version per key, contiguous non-overlapping validity, one unknown member. A
    key whose last version is deleted (`is_deleted`) has no current version; a version closed by
    a deletion may be followed, after a gap, by the key's re-creation."""
    members = dim.filter(F.col(surrogate_key) != UNKNOWN_MEMBER_SK)
    deleted = F.coalesce(F.col("is_deleted"), F.lit(False)) if "is_deleted" in dim.columns else F.lit(False)
    w = Window.partitionBy(key).orderBy("valid_from")
    ordered = members.withColumn("_deleted", deleted).withColumn("_next_from", F.lead("valid_from").over(w))
    last = F.max_by(F.col("_deleted").cast("int"), F.col("valid_from")) == 1
    per_key = ordered.groupBy(key).agg(
        F.sum(F.col("is_current").cast("int")).alias("current"), last.alias("_ends_deleted")
    )
    row = ordered.agg(
        F.count(F.lit(1)).alias("versions"),
        # the next version must start exactly where this one ends
        F.sum(
            (
                F.col("_next_from").isNotNull()
                & ((F.col("valid_to") != F.col("_next_from")) | F.col("valid_to").isNull())
                & ~(F.col("_deleted") & (F.col("valid_to") < F.col("_next_from")))
            ).cast("int")
        ).alias("gaps_or_overlaps"),
        F.sum((F.col("_next_from").isNull() & F.col("valid_to").isNotNull() & ~F.col("_deleted")).cast("int")).alias(
            "closed_last"
        ),
        F.sum((F.col("valid_to").isNotNull() & (F.col("valid_to") <= F.col("valid_from"))).cast("int")).alias(
            "empty_intervals"
        ),
    ).first()
    keys_row = per_key.agg(
        F.count(F.lit(1)).alias("keys"),
        F.sum((F.col("current") != F.when(F.col("_ends_deleted"), 0).otherwise(1)).cast("int")).alias("bad_current"),
    ).first()
    unknown = dim.filter(F.col(surrogate_key) == UNKNOWN_MEMBER_SK).count()
    metadata = {
        "versions": int(plain(row["versions"])),
        "keys": int(plain(keys_row["keys"])),
        "keys_without_exactly_one_current": int(plain(keys_row["bad_current"])),
        "gaps_or_overlaps": int(plain(row["gaps_or_overlaps"])),
        "open_versions_not_last": int(plain(row["closed_last"])),
        "empty_intervals": int(plain(row["empty_intervals"])),
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
