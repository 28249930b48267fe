"""The main job: a whole simulated week through the asset graph, stage by stage.

Running the stages (`lib/registry/stages.py`) in order is what an asset backfill of the graph does: the Kafka stream one arrival day per run
(a day's partition takes what is on the topic when it runs), every other stage in one run
over its whole partition range (a single-run backfill: what the assets' backfill policies ask
of a UI backfill too), or partition by partition. The main job
does it in-process against the persistent instance, so `dagster dev` shows every run, check
and materialization afterwards.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from retail_assets.lib import settings
from retail_assets.lib.engine import PartitionRange
from retail_assets.lib.engine.spark import start_in_background
from retail_assets.lib.orchestration.stage_runs import execute_stage, stage_takes_ranges
from retail_assets.lib.registry.stages import Stage, configured_stages
from retail_assets.lib.registry.tables import BRONZE_ORDERS_CHANGES, BRONZE_POS_TRANSACTIONS


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
    tags: dict[str, str] | None = None,
) -> RunSummary:
    """One run of a stage's job: one partition (a day's key) or a range of them in one run;
    `listener` receives each of the run's events as the instance stores it; `tags` are the run's
    own (`retail/full_refresh`)."""
    job = defs.resolve_job_def(stage.job_name)
    run_id = str(uuid.uuid4())
    if listener is not None:
        instance.add_event_listener(run_id, listener)
    started = time.monotonic()
    result = execute_stage(
        job,
        partition,
        instance,
        run_id=run_id,
        tags=tags,
        # The full event log goes to the instance; the console gets warnings and errors only.
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    evaluations = result.get_asset_check_evaluations()

    def named(e) -> str:
        return f"{'/'.join(e.asset_key.path)}:{e.check_name}" + (
            f"@{e.partition}" if isinstance(partition, PartitionRange) else ""
        )

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
    defs: dg.Definitions,
    arrival_days: list[str],
    event_days: list[str],
    *,
    by_range: bool = True,
    order: Callable[[list[str]], list[str]] | None = None,
) -> list[tuple[Stage, str | PartitionRange]]:
    """The runs of `run_week`, in order: each stage once over its range where its assets' backfill
    policies allow it (as a backfill from the UI runs them), otherwise (the Kafka stream, the
    database's changes) once per day. Without an operational database its stage is left out."""
    runs: list[tuple[Stage, str | PartitionRange]] = []
    for stage in configured_stages(optional_sources()):
        partitions = stage.partitions(arrival_days, event_days)
        if by_range and stage_takes_ranges(defs, stage.job_name):
            runs.append(
                (stage, PartitionRange(dt.date.fromisoformat(min(partitions)), dt.date.fromisoformat(max(partitions))))
            )
        else:
            runs += [(stage, p) for p in (order(list(partitions)) if order else partitions)]
    return runs


def optional_sources() -> set[str]:
    """The optional sources this deployment has (`Stage.optional_source`)."""
    return {"database"} if settings.database_configured() else set()


def run_week(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    arrival_days: list[str],
    event_days: list[str],
    before_ingest: Callable[[str], None] | None = None,
    before_changes: Callable[[str], None] | None = None,
    echo: Callable[[str], None] = print,
    order: Callable[[list[str]], list[str]] | None = None,
    by_range: bool = True,
    on_run: Callable[[Stage, str, int], Callable[[Any], None] | None] | None = None,
) -> list[RunSummary]:
    """Run every stage over its partitions, in dependency order; returns one summary per run.

    `by_range`: a stage that allows it runs once over all its days (a single-run backfill);
    otherwise, and for the Kafka stream, one run per day. `before_ingest(day)` runs just before a day's
    Bronze ingestion (the main job produces that day's Kafka events there), `before_changes(day)`
    just before a day's extraction from the operational database (the day's changes are made
    there); `order` may reorder
    the partitions of per-day runs (tests shuffle). `on_run(stage, partition, steps)` is told of
    each run as it starts and may return a listener for the run's events (a progress display).
    """
    # The stream stage works in Arrow; the JVM the later stages need starts meanwhile.
    start_in_background()
    summaries = []
    for stage, partition in planned_runs(defs, arrival_days, event_days, by_range=by_range, order=order):
        if before_ingest is not None and BRONZE_POS_TRANSACTIONS in stage.tables:
            before_ingest(str(partition))
        if before_changes is not None and BRONZE_ORDERS_CHANGES in stage.tables:
            before_changes(str(partition))
        listener = (
            on_run(stage, str(partition), len(defs.resolve_job_def(stage.job_name).graph.nodes)) if on_run else None
        )
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
    for name in ("landing", "lakehouse", "kafka", "postgres", "manifest.json"):
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
