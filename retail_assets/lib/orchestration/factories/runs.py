"""What a compute function gets and returns: the run over a range of days (`TableRun`), its
inputs (`Upstream`) and outputs (`TableOutput`), and how a range is handled (`RangeMode`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import reduce
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa

from retail_assets.lib.engine import LakehouseEngine, PartitionRange, RowStream
from retail_assets.lib.orchestration.resources import LakehouseResource
from retail_assets.lib.registry.tables import TableSpec

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


# The run tag that asks tables written by key for a rebuild from their whole input.
FULL_REFRESH_TAG = "retail/full_refresh"


@dataclass(frozen=True)
class Upstream:
    """A dependency on another registered table and how partitions map onto it."""

    spec: TableSpec
    mapping: dg.PartitionMapping | None = None  # None: the same partition


@dataclass
class TableOutput:
    """What a compute function returns for one table: the rows and any extra figures.

    `metadata` describes the whole run; `by_partition` holds figures of single partitions (a
    run over a range of days reports each day's own on that day's materialization), or is a
    function returning them once the rows are written (see `observed_by_day`)."""

    data: DataFrame | pa.Table | RowStream  # a RowStream is written while it is produced
    metadata: dict[str, Any] = field(default_factory=dict)
    by_partition: dict[dt.date, dict[str, Any]] | Callable[[], dict[dt.date, dict[str, Any]]] = field(
        default_factory=dict
    )
    # Rows to delete by primary key: the output is then a MERGE (`LakehouseEngine.merge`) with
    # `data` as the rows upserted. None: `data` is written as the registry says.
    deletes: DataFrame | None = None

    def figures_by_partition(self) -> dict[dt.date, dict[str, Any]]:
        return self.by_partition() if callable(self.by_partition) else self.by_partition


def observed_by_day(
    df: DataFrame, date_column: str, days: Sequence[dt.date], **sums: Column
) -> tuple[DataFrame, Callable[[], dict[dt.date, dict[str, float]]]]:
    """`df` with each day's sums observed while its rows are written (Spark's `Observation`),
    and the function that returns them afterwards: per-day figures for the materializations
    without caching the rows for a second pass over them."""
    from pyspark.sql import Observation  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: PLC0415

    observation = Observation()
    observed = df.observe(
        observation,
        *[
            F.sum(F.when(F.col(date_column) == F.lit(d), figure)).alias(f"{n}@{d}")
            for d in days
            for n, figure in sums.items()
        ],
    )

    def figures() -> dict[dt.date, dict[str, float]]:
        values = observation.get  # the write has run: available, never waited for
        return {d: {n: float(values[f"{n}@{d}"] or 0) for n in sums} for d in days}

    return observed, figures


class RangeNotSupported(RuntimeError):
    """A day-at-a-time computation was asked for the single day of a run over several."""


def run_partitions(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> PartitionRange:
    """The days a run covers: one partition, or the range of a single-run backfill."""
    keys = context.partition_key_range
    return PartitionRange(dt.date.fromisoformat(keys.start), dt.date.fromisoformat(keys.end))


class RunScope:
    """What an asset's run and a check's run have in common: the partitions they cover
    (`partition`, a range of days), the Dagster context and the lakehouse resource."""

    partition: PartitionRange
    context: Any
    lakehouse: LakehouseResource

    @property
    def engine(self) -> LakehouseEngine:
        return self.lakehouse.engine

    @property
    def run_id(self) -> str:
        return self.context.run.run_id

    @property
    def lateness_days(self) -> int:
        return self.lakehouse.lateness_days

    @property
    def single(self) -> bool:
        return self.partition.start == self.partition.end

    @property
    def day(self) -> dt.date:
        """The one day; what is written a day at a time is called per day of a range run."""
        if not self.single:
            raise RangeNotSupported(f"this run covers {self.partition}; the code reads one day at a time")
        return self.partition.start


@dataclass
class TableRun(RunScope):
    """Everything a compute function needs for the partitions of one run."""

    context: dg.AssetExecutionContext
    lakehouse: LakehouseResource
    partition: PartitionRange

    @property
    def full_refresh(self) -> bool:
        """The run is tagged `retail/full_refresh=true`: a table written by key (`deletes`) is
        rebuilt whole from its inputs instead (the reference its incremental runs must equal)."""
        return self.context.run.tags.get(FULL_REFRESH_TAG, "").lower() == "true"

    def each_day(self) -> list[TableRun]:
        return [replace(self, partition=PartitionRange.single(d)) for d in self.partition.days()]

    def read(self, spec: TableSpec, before: int = 0, after: int = 0) -> DataFrame:
        """Partitions first-before … last+after of a table."""
        return self.engine.read(spec, self.partition.widened(before, after))

    def read_all(self, spec: TableSpec) -> DataFrame:
        return self.engine.read(spec)

    def resource(self, name: str) -> Any:
        return getattr(self.context.resources, name)

    def release(self) -> None:
        """Drop what the step cached; steps of a run share one Spark session. A step that never
        touched Spark (Bronze ingestion works in Arrow) must not start a JVM just to clear it."""
        from pyspark.sql import SparkSession  # noqa: PLC0415

        if SparkSession.getActiveSession() is not None:
            self.engine.spark.catalog.clearCache()


Compute = Callable[[TableRun], "DataFrame | pa.Table | TableOutput"]


MultiCompute = Callable[[TableRun], Mapping[str, "DataFrame | pa.Table | TableOutput"]]


class RangeMode(Enum):
    """How an asset's compute function handles a run over a range of days."""

    # Called once per day of a range run; the days' outputs are written in one commit.
    EACH_DAY = "each_day"
    # Takes the whole range in one pass: reads the range, filters on it, reports per-day
    # figures in `TableOutput.by_partition`.
    WHOLE_RANGE = "whole_range"
    # Each day its own run, in order (what a day takes depends on what the days before it
    # wrote): a range run fails, saying so.
    ONE_DAY_PER_RUN = "one_day_per_run"

    @property
    def backfill_policy(self) -> dg.BackfillPolicy:
        """How Dagster splits a request over several partitions into runs (a UI backfill,
        `dagster asset materialize --partition-range`, automation's catch-up): one run over the
        whole range where the compute function takes ranges, one run per day where it does not."""
        if self is RangeMode.ONE_DAY_PER_RUN:
            return dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
        return dg.BackfillPolicy.single_run()


def takes_ranges(assets: Sequence[dg.AssetsDefinition]) -> bool:
    """Whether one run may cover a range of days for all of `assets`: what their backfill
    policies (`RangeMode.backfill_policy`) say."""
    return all(a.backfill_policy is None or a.backfill_policy.max_partitions_per_run is None for a in assets)


def _refuse_range(run: TableRun, ranges: RangeMode) -> None:
    if not run.single and ranges is RangeMode.ONE_DAY_PER_RUN:
        raise dg.Failure(
            description=f"this asset ingests one arrival day per run, in order; run {run.partition} as one run per day",
            allow_retries=False,
        )


def _as_output(produced: DataFrame | pa.Table | TableOutput) -> TableOutput:
    return produced if isinstance(produced, TableOutput) else TableOutput(produced)


def _combined(by_day: Mapping[dt.date, TableOutput]) -> TableOutput:
    """Day-at-a-time outputs as one: the rows together, each day's figures kept for its day."""
    frames = [o.data for o in by_day.values()]
    if isinstance(frames[0], RowStream):
        raise TypeError("rows streamed to the write need ranges=RangeMode.WHOLE_RANGE or ONE_DAY_PER_RUN")
    if isinstance(frames[0], pa.Table):
        data = pa.concat_tables(frames)
    else:
        data = reduce(lambda a, b: a.unionByName(b), frames)
    if any(callable(o.by_partition) for o in by_day.values()):
        # they would be asked for before the write that observes them
        raise TypeError("figures observed while the rows are written need ranges=RangeMode.WHOLE_RANGE")
    return TableOutput(
        data, by_partition={day: {**o.metadata, **o.by_partition.get(day, {})} for day, o in by_day.items()}
    )


def _produce(run: TableRun, compute: Compute, ranges: RangeMode) -> TableOutput:
    _refuse_range(run, ranges)
    if run.single or ranges is not RangeMode.EACH_DAY:
        return _as_output(compute(run))
    return _combined({day_run.day: _as_output(compute(day_run)) for day_run in run.each_day()})


def _produce_many(
    run: TableRun, compute: MultiCompute, names: Sequence[str], ranges: RangeMode
) -> dict[str, TableOutput]:
    _refuse_range(run, ranges)
    if run.single or ranges is not RangeMode.EACH_DAY:
        produced = compute(run)
        return {n: _as_output(produced[n]) for n in names}
    by_day = {day_run.day: compute(day_run) for day_run in run.each_day()}
    return {n: _combined({d: _as_output(p[n]) for d, p in by_day.items()}) for n in names}


def partition_rows(engine: LakehouseEngine, spec: TableSpec, partitions: PartitionRange) -> dict[dt.date, int]:
    """Rows per partition of a range, from the partition column alone."""
    column = engine.read_arrow(spec, partitions, columns=[spec.partition_column])[spec.partition_column]
    counts = column.value_counts()
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
