"""The asset graph in stages: one Dagster job per stage, over one partitioning.

A table names its stage in its registry entry (`TableSpec.stage`); a stage's tables and the
checks its job runs are derived from the registry, so a new table joins its stage's job, the
main job and the bench by its entry alone. Running the stages in order is what an asset
backfill of the graph does: the Kafka stream one arrival day per run (a day's partition takes
what is on the topic when it runs), every other stage in one run over its whole partition
range (a single-run backfill), or partition by partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from retail_assets.lib.registry.freshness import FRESHNESS_CHECK
from retail_assets.lib.registry.tables import TABLES, Partitioning, TableSpec


@dataclass(frozen=True)
class Stage:
    job_name: str
    description: str
    partitioning: Partitioning
    # A system the stage reads that a deployment may not have (the operational database): the
    # main job leaves the stage out where it is not configured (`configured_stages`).
    optional_source: str | None = None

    @property
    def tables(self) -> tuple[TableSpec, ...]:
        return tuple(t for t in TABLES if t.stage == self.job_name)

    @property
    def checked(self) -> tuple[TableSpec, ...]:
        """The tables whose checks this stage's job runs."""
        return tuple(t for t in TABLES if (t.checked_in or t.stage) == self.job_name)

    def asset_keys(self) -> list[dg.AssetKey]:
        return [dg.AssetKey([t.layer.value, t.name]) for t in self.tables]

    def selection(self) -> dg.AssetSelection:
        """The stage's tables and the checks of `checked`; freshness is the freshness sensor's,
        not a stage's (a table just materialized is fresh)."""
        checked = [dg.AssetKey([t.layer.value, t.name]) for t in self.checked]
        freshness = dg.AssetSelection.checks(*(dg.AssetCheckKey(k, FRESHNESS_CHECK) for k in checked))
        if self.checked == self.tables:
            return dg.AssetSelection.assets(*self.asset_keys()) - freshness
        return (
            dg.AssetSelection.assets(*self.asset_keys()).without_checks()
            | dg.AssetSelection.checks_for_assets(*checked)
        ) - freshness

    def partitions(self, arrival_days: list[str], event_days: list[str]) -> list[str]:
        """Of a week's arrival and business days, the ones this stage's partitions are."""
        return arrival_days if self.partitioning is Partitioning.ARRIVAL_DATE else event_days


STAGES: tuple[Stage, ...] = (
    Stage(
        "ingest_pos_stream",
        "Take the Kafka offsets of one arrival day into Bronze; one run per day, in order (ingest_bronze checks them).",
        # One run per day (its asset's backfill policy): the newest arrival day takes what is on
        # the topic beyond the days before it.
        Partitioning.ARRIVAL_DATE,
    ),
    Stage(
        "ingest_database",
        "Take the operational database's changes since Bronze's high-water mark into one arrival day and check "
        "them; one run per day, in order.",
        Partitioning.ARRIVAL_DATE,
        optional_source="database",
    ),
    Stage(
        "ingest_bronze",
        "Land arrival days of landing files in Bronze, quarantine unparseable records, and check every Bronze table.",
        Partitioning.ARRIVAL_DATE,
    ),
    Stage(
        "refine_master_data",
        "Type, validate and deduplicate one arrival day of customer, product and store changes.",
        Partitioning.ARRIVAL_DATE,
    ),
    Stage(
        "refine_sales",
        "Build one business day of Silver sales lines and returns from its lateness window.",
        Partitioning.EVENT_DATE,
    ),
    Stage(
        "screen_arrivals",
        "Refine inventory and quarantine every rule violation of one arrival day; prove conservation.",
        Partitioning.ARRIVAL_DATE,
    ),
    Stage(
        "build_dimensions",
        "Rebuild the customer, product and store dimensions with one more arrival day.",
        Partitioning.ARRIVAL_DATE,
    ),
    Stage(
        "build_gold",
        "Build one business day of the calendar, the sales fact and the aggregates.",
        Partitioning.EVENT_DATE,
    ),
)

STAGE = {s.job_name: s for s in STAGES}


def configured_stages(sources: set[str]) -> tuple[Stage, ...]:
    """The stages a deployment with the optional `sources` runs (e.g. `{"database"}`)."""
    return tuple(s for s in STAGES if s.optional_source is None or s.optional_source in sources)


def _validate() -> None:
    for t in TABLES:
        for name in (t.stage, t.checked_in):
            if name is not None and name not in STAGE:
                raise ValueError(f"{t.key} names stage {name!r}; stages: {sorted(STAGE)}")
        if t.partitioning is not STAGE[t.stage].partitioning:
            raise ValueError(
                f"{t.key} is partitioned by {t.partitioning.value}, its stage {t.stage} by another calendar"
            )
    empty = [s.job_name for s in STAGES if not s.tables]
    if empty:
        raise ValueError(f"stages without tables: {empty}")


_validate()
