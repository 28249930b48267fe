"""Running a stage's job in this process, for one day or a range of days in one run: the main
job and the quarantine replay both drive the stages so."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import dagster as dg

# The partition-range run tags a single-run backfill carries: Dagster exports no constant.
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START

from retail_assets.lib.engine import PartitionRange
from retail_assets.lib.orchestration.factories.runs import takes_ranges

STAGE_TAG = "retail/stage"


def execute_stage(
    job: dg.JobDefinition,
    partition: str | PartitionRange,
    instance: dg.DagsterInstance,
    *,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of a stage job (`job`) over one partition key or a range of days, recorded in
    `instance` like any other run; failures are returned, not raised."""
    tags = {STAGE_TAG: job.name, **(tags or {})}
    if isinstance(partition, PartitionRange):
        tags |= {RANGE_START: partition.start.isoformat(), RANGE_END: partition.end.isoformat()}
    return job.execute_in_process(
        instance=instance,
        run_id=run_id or str(uuid.uuid4()),
        partition_key=None if isinstance(partition, PartitionRange) else partition,
        raise_on_error=False,
        tags=tags,
        run_config=run_config,
    )


def stage_takes_ranges(defs: dg.Definitions, job_name: str) -> bool:
    """Whether one run of the stage's job may cover a range of days: its assets' backfill policies."""
    job = defs.resolve_job_def(job_name)
    return takes_ranges([defs.resolve_assets_def(key) for key in job.asset_layer.executable_asset_keys])


def contiguous(days: list[dt.date]) -> list[PartitionRange]:
    """`days` as the fewest ranges of consecutive days, in order."""
    out: list[PartitionRange] = []
    for day in sorted(set(days)):
        if out and day == out[-1].end + dt.timedelta(days=1):
            out[-1] = PartitionRange(out[-1].start, day)
        else:
            out.append(PartitionRange.single(day))
    return out
