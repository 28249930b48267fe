"""The asset graph in stages, and the main job that runs a whole simulated week through it.

Each stage is a Dagster job over one partitioning (arrival or event date). Running the stages
in order is what an asset backfill of the graph does: the Kafka stream one arrival day per run
(a day's partition takes what is on the topic when it runs), every other stage in one run
over its whole partition range (a single-run backfill), or partition by partition. The main job
does it in-process against the persistent instance, so `dagster dev` shows every run, check
and materialization afterwards.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START

from retail_assets.lib.engine import PartitionRange
from retail_assets.lib.spark import start_in_background
from retail_assets.lib.tables import (
    BRONZE_CUSTOMERS,
    BRONZE_INVENTORY,
    BRONZE_POS_TRANSACTIONS,
    BRONZE_PRODUCTS,
    BRONZE_SALES_FILES,
    BRONZE_STORES,
    GOLD_AGG_CUSTOMER_LIFETIME_VALUE,
    GOLD_AGG_DAILY_STORE_SALES,
    GOLD_AGG_INVENTORY_COVER,
    GOLD_AGG_PRODUCT_PERFORMANCE,
    GOLD_DIM_CUSTOMER,
    GOLD_DIM_DATE,
    GOLD_DIM_PRODUCT,
    GOLD_DIM_STORE,
    GOLD_FACT_SALES,
    QUARANTINE_INGEST_REJECTS,
    QUARANTINE_RULE_VIOLATIONS,
    SILVER_CUSTOMERS,
    SILVER_INVENTORY,
    SILVER_PRODUCTS,
    SILVER_RETURNS,
    SILVER_SALES_LINES,
    SILVER_STORES,
    Partitioning,
    TableSpec,
)


@dataclass(frozen=True)
class Stage:
    job_name: str
    description: str
    partitioning: Partitioning
    tables: tuple[TableSpec, ...]
    # Whether one run may cover a range of days.
    over_ranges: bool = True
    # The tables whose checks this stage's job runs (None: its own tables).
    checked: tuple[TableSpec, ...] | None = None

    def asset_keys(self) -> list[dg.AssetKey]:
        return [dg.AssetKey([t.layer.value, t.name]) for t in self.tables]

    def selection(self) -> dg.AssetSelection:
        if self.checked is None:
            return dg.AssetSelection.assets(*self.asset_keys())
        checked = [dg.AssetKey([t.layer.value, t.name]) for t in self.checked]
        return dg.AssetSelection.assets(*self.asset_keys()).without_checks() | dg.AssetSelection.checks_for_assets(*checked)

    def partitions(self, arrival_days: list[str], event_days: list[str]) -> list[str]:
        """Of a week's arrival and business days, the ones this stage's partitions are."""
        return arrival_days if self.partitioning is Partitioning.ARRIVAL_DATE else event_days


BRONZE_LANDING = (BRONZE_SALES_FILES, BRONZE_CUSTOMERS, BRONZE_PRODUCTS, BRONZE_STORES, BRONZE_INVENTORY)

STAGES: tuple[Stage, ...] = (
    Stage(
        "ingest_pos_stream",
        "Take the Kafka offsets of one arrival day into Bronze; one run per day, in order (ingest_bronze checks them).",
        Partitioning.ARRIVAL_DATE,
        (BRONZE_POS_TRANSACTIONS,),
        # The newest arrival day takes what is on the topic beyond the days before it.
        over_ranges=False,
        checked=(),
    ),
    Stage(
        "ingest_bronze",
        "Land arrival days of landing files in Bronze, quarantine unparseable records, and check every Bronze table.",
        Partitioning.ARRIVAL_DATE,
        (*BRONZE_LANDING, QUARANTINE_INGEST_REJECTS),
        checked=(BRONZE_POS_TRANSACTIONS, *BRONZE_LANDING, QUARANTINE_INGEST_REJECTS),
    ),
    Stage(
        "refine_master_data",
        "Type, validate and deduplicate one arrival day of customer, product and store changes.",
        Partitioning.ARRIVAL_DATE,
        (SILVER_CUSTOMERS, SILVER_PRODUCTS, SILVER_STORES),
    ),
    Stage(
        "refine_sales",
        "Build one business day of Silver sales lines and returns from its lateness window.",
        Partitioning.EVENT_DATE,
        (SILVER_SALES_LINES, SILVER_RETURNS),
    ),
    Stage(
        "screen_arrivals",
        "Refine inventory and quarantine every rule violation of one arrival day; prove conservation.",
        Partitioning.ARRIVAL_DATE,
        (SILVER_INVENTORY, QUARANTINE_RULE_VIOLATIONS),
    ),
    Stage(
        "build_dimensions",
        "Rebuild the customer, product and store dimensions with one more arrival day.",
        Partitioning.ARRIVAL_DATE,
        (GOLD_DIM_CUSTOMER, GOLD_DIM_PRODUCT, GOLD_DIM_STORE),
    ),
    Stage(
        "build_gold",
        "Build one business day of the calendar, the sales fact and the aggregates.",
        Partitioning.EVENT_DATE,
        (GOLD_DIM_DATE, GOLD_FACT_SALES, GOLD_AGG_DAILY_STORE_SALES, GOLD_AGG_PRODUCT_PERFORMANCE, GOLD_AGG_CUSTOMER_LIFETIME_VALUE, GOLD_AGG_INVENTORY_COVER),
    ),
)

STAGE = {s.job_name: s for s in STAGES}


@dataclass
class RunSummary:
    stage: str
    partition: str
    success: bool
    materialized: int
    checks_passed: int
    checks_failed: list[str]  # failed with ERROR severity
    checks_warned: list[str]  # failed with WARN severity
    seconds: float
    run_id: str
    # (asset key "layer/table", check name, passed, partition) of every check the run evaluated
    evaluations: list[tuple[str, str, bool, str]]


def run_stage(
    defs: dg.Definitions,
    stage: Stage,
    partition: str | PartitionRange,
    instance: dg.DagsterInstance,
    *,
    log_level: str = "WARNING",
    listener: Callable[[Any], None] | None = None,
) -> RunSummary:
    """One run of a stage's job: one partition (a day's key) or a range of them in one run;
    `listener` receives each of the run's events as the instance stores it."""
    job = defs.resolve_job_def(stage.job_name)
    run_id = str(uuid.uuid4())
    if listener is not None:
        instance.add_event_listener(run_id, listener)
    tags = {"retail/stage": stage.job_name}
    if isinstance(partition, PartitionRange):
        tags |= {RANGE_START: partition.start.isoformat(), RANGE_END: partition.end.isoformat()}
    started = time.monotonic()
    result = job.execute_in_process(
        instance=instance,
        run_id=run_id,
        partition_key=None if isinstance(partition, PartitionRange) else partition,
        raise_on_error=False,
        tags=tags,
        # The full event log goes to the instance; the console gets warnings and errors only.
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    evaluations = result.get_asset_check_evaluations()
    def named(e) -> str:
        return f"{'/'.join(e.asset_key.path)}:{e.check_name}" + (f"@{e.partition}" if isinstance(partition, PartitionRange) else "")

    failed = [named(e) for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    warned = [named(e) for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.WARN]
    return RunSummary(
        stage=stage.job_name,
        partition=str(partition),
        success=result.success,
        materialized=len(result.get_asset_materialization_events()),
        checks_passed=sum(1 for e in evaluations if e.passed),
        checks_failed=failed,
        checks_warned=warned,
        seconds=time.monotonic() - started,
        run_id=result.run_id,
        evaluations=[("/".join(e.asset_key.path), e.check_name, e.passed, e.partition) for e in evaluations],
    )


def days(start: dt.date, end: dt.date) -> list[str]:
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def planned_runs(
    arrival_days: list[str], event_days: list[str], *, by_range: bool = True, order: Callable[[list[str]], list[str]] | None = None
) -> list[tuple[Stage, str | PartitionRange]]:
    """The runs of `run_week`, in order: each stage once over its range where it allows it,
    otherwise (and for the Kafka stream) once per day."""
    runs: list[tuple[Stage, str | PartitionRange]] = []
    for stage in STAGES:
        partitions = stage.partitions(arrival_days, event_days)
        if by_range and stage.over_ranges:
            runs.append((stage, PartitionRange(dt.date.fromisoformat(min(partitions)), dt.date.fromisoformat(max(partitions)))))
        else:
            runs += [(stage, p) for p in (order(list(partitions)) if order else partitions)]
    return runs


def run_week(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    arrival_days: list[str],
    event_days: list[str],
    before_ingest: Callable[[str], None] | None = None,
    echo: Callable[[str], None] = print,
    order: Callable[[list[str]], list[str]] | None = None,
    by_range: bool = True,
    on_run: Callable[[Stage, str, int], Callable[[Any], None] | None] | None = None,
) -> list[RunSummary]:
    """Run every stage over its partitions, in dependency order; returns one summary per run.

    `by_range`: a stage that allows it runs once over all its days (a single-run backfill);
    otherwise, and for the Kafka stream, one run per day. `before_ingest(day)` runs just before a day's
    Bronze ingestion (the main job produces that day's Kafka events there); `order` may reorder
    the partitions of per-day runs (tests shuffle). `on_run(stage, partition, steps)` is told of
    each run as it starts and may return a listener for the run's events (a progress display).
    """
    # The stream stage works in Arrow; the JVM the later stages need starts meanwhile.
    start_in_background()
    summaries = []
    for stage, partition in planned_runs(arrival_days, event_days, by_range=by_range, order=order):
        if before_ingest is not None and BRONZE_POS_TRANSACTIONS in stage.tables:
            before_ingest(str(partition))
        listener = on_run(stage, str(partition), len(defs.resolve_job_def(stage.job_name).graph.nodes)) if on_run else None
        summary = run_stage(defs, stage, partition, instance, listener=listener)
        summaries.append(summary)
        status = "ok  " if summary.success and not summary.checks_failed else "FAIL"
        failed = f"  failed: {', '.join(summary.checks_failed)}" if summary.checks_failed else ""
        failed += f"  warned: {', '.join(summary.checks_warned)}" if summary.checks_warned else ""
        echo(
            f"  {status} {stage.job_name:<20} {summary.partition:<10}  {summary.materialized:>2} tables  "
            f"{summary.checks_passed:>3} checks passed  {summary.seconds:5.1f}s{failed}"
        )
    return summaries


def reset_data_root(root: Path) -> None:
    """Remove generated inputs and tables (the Dagster instance is kept)."""
    for name in ("landing", "lakehouse", "kafka", "manifest.json"):
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
