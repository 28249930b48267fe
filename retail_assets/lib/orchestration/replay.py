"""Quarantine replay: which records to re-evaluate, which stage runs re-evaluate them, and what
became of them.

A Silver partition is a function of Bronze, today's rules and today's master data, so a record
quarantined under a rule since fixed (or whose master data has arrived) passes as soon as the
partition it belongs to is built again. A replay builds exactly those partitions through the
stage jobs, in the main job's order: the master data's and inventory's arrival days, the sales'
business days, the screening of the chosen arrival days (which keeps every released record's
row, stamped `replayed_at` and `replayed_by`), the dimensions, and Gold's business days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from retail_assets.lib.engine import LakehouseEngine, PartitionRange
from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import (
    BRONZE_POS_TRANSACTIONS,
    BRONZE_SALES_FILES,
    QUARANTINE_RULE_VIOLATIONS,
)

SALES_SOURCES = (BRONZE_SALES_FILES.key, BRONZE_POS_TRANSACTIONS.key)
RECORD = ("source_table", "_source", "record_key")


@dataclass(frozen=True)
class ReplayPlan:
    rules: tuple[str, ...]
    days: PartitionRange  # arrival days whose quarantine is re-evaluated
    records: pa.Table  # the quarantined rows chosen: RECORD, rule, event_date, _arrival_date

    @property
    def master_days(self) -> list[dt.date]:
        """Arrival days of the chosen master-data and inventory records."""
        other = self.records.filter(pc.invert(pc.is_in(self.records["source_table"], pa.array(SALES_SOURCES))))
        return sorted(set(other["_arrival_date"].to_pylist()))

    @property
    def business_days(self) -> list[dt.date]:
        """Business days the chosen sales lines belong to (a line without one cannot be in Silver)."""
        sales = self.records.filter(pc.is_in(self.records["source_table"], pa.array(SALES_SOURCES)))
        return sorted({d for d in sales["event_date"].to_pylist() if d is not None})

    def runs(self, dimensions_day: dt.date) -> list[tuple[str, list[dt.date]]]:
        """(stage job, days) in the order they must run; stages with nothing to do left out."""
        business = self.business_days
        planned = [
            ("refine_master_data", self.master_days),
            ("refine_sales", business),
            ("screen_arrivals", self.days.days()),
            # rebuilt whole, once, as of the newest day they were built for: released master records
            # are versions, released sales lines may name keys that need an inferred member
            ("build_dimensions", [dimensions_day]),
            ("build_gold", business),
        ]
        return [(stage, days) for stage, days in planned if days]


def plan(engine: LakehouseEngine, chosen: list[str], days: PartitionRange) -> ReplayPlan:
    """The records quarantined under `chosen` rules that arrived on `days`, still quarantined.
    A rule may have been removed since: its name is still the one its rows carry."""
    rows = engine.read_arrow(
        QUARANTINE_RULE_VIOLATIONS, days, columns=[*RECORD, "rule", "event_date", "_arrival_date", "replayed_at"]
    )
    found = set(rows["rule"].to_pylist())
    unknown = sorted(r for r in set(chosen) if r not in rules.VIOLATION_RULES and r not in found)
    if not chosen or unknown:
        raise ValueError(
            f"replay takes the rules of {QUARANTINE_RULE_VIOLATIONS.key} rows: {', '.join(rules.VIOLATION_RULES)}"
            + (f", or a rule its rows of {days} name; not {', '.join(unknown)}" if unknown else "")
            + " (an unparseable record is read again by running ingest_bronze for its day)"
        )
    held = rows.filter(pc.and_(pc.is_null(rows["replayed_at"]), pc.is_in(rows["rule"], pa.array(chosen))))
    return ReplayPlan(tuple(chosen), days, held.drop_columns(["replayed_at"]))


def outcome(engine: LakehouseEngine, replay: ReplayPlan, run_ids: set[str]) -> dict[str, int]:
    """What became of the chosen records: released by one of the replay's runs, or still held."""
    rows = engine.read_arrow(
        QUARANTINE_RULE_VIOLATIONS, replay.days, columns=[*RECORD, "rule", "replayed_at", "replayed_by"]
    )
    chosen = {tuple(r[c] for c in RECORD) for r in replay.records.to_pylist()}
    released = held = 0
    for r in rows.to_pylist():
        if tuple(r[c] for c in RECORD) not in chosen:
            continue
        if r["replayed_at"] is None:
            held += 1
        elif r["replayed_by"] in run_ids:
            released += 1
    return {"chosen": len(chosen), "released": released, "still_quarantined": held}
