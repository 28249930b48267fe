"""Quarantine checks: nothing lost (conservation) and the share of rejected records."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from retail_assets.defs.quarantine.assets import merged_changes_by_day, records_in_by_day
from retail_assets.lib.engine import PartitionRange
from retail_assets.lib.orchestration.factories import CheckRun, TableCheck, build_table_checks, standard_checks
from retail_assets.lib.registry.tables import (
    QUARANTINE_DUPLICATES,
    QUARANTINE_INGEST_REJECTS,
    QUARANTINE_RULE_VIOLATIONS,
    SILVER_CUSTOMERS,
    SILVER_INVENTORY,
    SILVER_PRODUCTS,
    SILVER_RETURNS,
    SILVER_SALES_LINES,
    SILVER_STORES,
    TableSpec,
)
from retail_assets.lib.transforms import quality

ARRIVAL_SILVER = (SILVER_CUSTOMERS, SILVER_PRODUCTS, SILVER_STORES, SILVER_INVENTORY)
EVENT_SILVER = (SILVER_SALES_LINES, SILVER_RETURNS)


def records_in(run: CheckRun) -> int:
    if "records_in" not in run.shared:
        # One Spark job over the six Bronze tables for every day of the run, the same counts
        # the materializations recorded.
        run.shared["records_in"] = records_in_by_day(run.spanning())
    return run.shared["records_in"].get(run.day, 0)


def rows(
    run: CheckRun, spec: TableSpec, partitions: PartitionRange | None = None, *, arrived: dt.date | None = None
) -> int:
    """Rows of a table (optionally only those that arrived on a day), counted from one column
    read straight from the table: a Spark job per count costs more than the count itself. Of the
    violations, only those still quarantined (released ones are in Silver)."""
    released = "replayed_at" in spec.column_names
    data = run.engine.read_arrow(spec, partitions, columns=["_arrival_date", *(["replayed_at"] if released else [])])
    if released:
        data = data.filter(pc.is_null(data["replayed_at"]))
    if arrived is None:
        return data.num_rows
    return pc.sum(pc.equal(data["_arrival_date"], pa.scalar(arrived, pa.date32()))).as_py() or 0


def accepted(run: CheckRun) -> int:
    day = PartitionRange.single(run.day)
    # A record that arrived on this day has an event date within L days before and 1 day after.
    events = PartitionRange.around(run.day, run.lateness_days, 1)
    from_events = sum(rows(run, spec, events, arrived=run.day) for spec in EVENT_SILVER)
    return from_events + sum(rows(run, spec, day) for spec in ARRIVAL_SILVER)


def merged(run: CheckRun) -> int:
    """The day's order change records merged into the lines Silver holds (superseded versions,
    cancelled lines, order headers): counted, like the duplicates."""
    if "merged" not in run.shared:
        run.shared["merged"] = merged_changes_by_day(run.spanning())
    return sum(n for (day, _), n in run.shared["merged"].items() if day == run.day)


def conservation(run: CheckRun) -> quality.CheckOutcome:
    return quality.conservation(
        records_in=records_in(run),
        accepted=accepted(run),
        rejected=rows(run, QUARANTINE_INGEST_REJECTS, PartitionRange.single(run.day)),
        violations=rows(run, QUARANTINE_RULE_VIOLATIONS, PartitionRange.single(run.day)),
        # the ledger's rows: each names the copy kept, so the figure reconciles row by row
        duplicates=rows(run, QUARANTINE_DUPLICATES, PartitionRange.single(run.day)),
        released=released(run),
        merged=merged(run),
    )


def released(run: CheckRun) -> int:
    """The day's violations released since (in Silver now): counted as accepted, shown apart."""
    data = run.engine.read_arrow(QUARANTINE_RULE_VIOLATIONS, PartitionRange.single(run.day), columns=["replayed_at"])
    return len(data) - data["replayed_at"].null_count


def reject_rate(run: CheckRun) -> quality.CheckOutcome:
    quarantined = rows(run, run.spec, PartitionRange.single(run.day))
    return quality.reject_rate(
        quarantined=quarantined, records_in=records_in(run), max_rate=run.lakehouse.max_reject_rate
    )


REJECT_RATE_CHECK = TableCheck(
    quality.REJECT_RATE,
    "The share of the day's records sent to this quarantine table stays under the configured threshold.",
    reject_rate,
    severity=dg.AssetCheckSeverity.WARN,
)

quarantine_checks = [
    build_table_checks(QUARANTINE_DUPLICATES, standard_checks(QUARANTINE_DUPLICATES)),
    build_table_checks(QUARANTINE_INGEST_REJECTS, [*standard_checks(QUARANTINE_INGEST_REJECTS), REJECT_RATE_CHECK]),
    build_table_checks(
        QUARANTINE_RULE_VIOLATIONS,
        [
            *standard_checks(QUARANTINE_RULE_VIOLATIONS),
            REJECT_RATE_CHECK,
            TableCheck(
                quality.CONSERVATION,
                "Records in = accepted + quarantined + the duplicates ledger's rows + the order changes merged into "
                "Silver's lines, for the records that arrived this day (SPEC §5); released records count as accepted, "
                "their figure shown apart.",
                conservation,
                reads=(QUARANTINE_INGEST_REJECTS, QUARANTINE_DUPLICATES, *ARRIVAL_SILVER, *EVENT_SILVER),
            ),
        ],
    ),
]
