"""Factories that turn registry entries into Dagster assets and asset checks.

An asset is: read inputs through the engine, call a pure transformation, write through the
engine, report metadata. Everything table-specific comes from the registry; everything
layer-specific from the compute function passed in.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cache, reduce
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData

from retail_assets.lib import settings
from retail_assets.lib.engine import CommitInfo, LakehouseEngine, PartitionRange, RowStream
from retail_assets.lib.orchestration.automation import follow_upstream
from retail_assets.lib.orchestration.resources import LakehouseResource
from retail_assets.lib.registry.tables import TableSpec
from retail_assets.lib.transforms import quality

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

OWNERS = ["team:data-platform"]
# Every Spark step names the step launcher: none locally, a Databricks job cluster in production.
STEP_LAUNCHER = "pyspark_step_launcher"
KINDS = {"spark", "delta"}


# ---------------------------------------------------------------------------------------------
# Partitions
# ---------------------------------------------------------------------------------------------


@cache
def daily_partitions() -> dg.DailyPartitionsDefinition:
    # end_offset=1: today's partition exists, so streaming arrivals land in it as they come.
    return dg.DailyPartitionsDefinition(start_date=settings.partitions_start(), end_offset=1)


def window(before: int, after: int) -> dg.TimeWindowPartitionMapping:
    """Partition D depends on upstream partitions D-before … D+after."""
    # Windows reach before the first partition and past today; that beta flag lets them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.TimeWindowPartitionMapping(
            start_offset=-before, end_offset=after, allow_nonexistent_upstream_partitions=True
        )


def asset_key(spec: TableSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.layer.value, spec.name])


def column_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.type,
                description=c.description or None,
                constraints=dg.TableColumnConstraints(nullable=c.nullable, unique=spec.primary_key == (c.name,)),
            )
            for c in spec.columns
        ]
    )


def definition_metadata(spec: TableSpec) -> dict[str, Any]:
    return {
        "dagster/column_schema": column_schema(spec),
        "dagster/table_name": spec.key,
        "grain": spec.grain,
        "primary_key": ", ".join(spec.primary_key),
        "partitioned_by": f"{spec.partition_column} ({spec.partitioning.value})",
        "write_mode": "rebuild (whole table, one commit)" if spec.rebuild else "partition overwrite (one commit)",
    }


# A column of this table and the (input table, column) pairs it is computed from.
ColumnSources = Mapping[str, Sequence[tuple[TableSpec, str]]]
COLUMN_LINEAGE = "dagster/column_lineage"
CODE_REFERENCES = "dagster/code_references"


def column_lineage(
    spec: TableSpec,
    upstream: Sequence[Upstream],
    sources: Sequence[dg.AssetSpec] = (),
    derived: ColumnSources | None = None,
) -> dg.TableColumnLineage | None:
    """Column lineage where it is simple to state: a column fed by the same-named column of a
    direct input (reference data read whole only validates keys, it feeds no values; audit
    columns are the layer's own), plus the derivations a layer declares (aggregates, hashes)."""
    feeding = [
        (asset_key(u.spec), set(u.spec.column_names))
        for u in upstream
        if not isinstance(u.mapping, dg.AllPartitionMapping)
    ]
    for source in sources:
        schema = source.metadata.get("dagster/column_schema")
        feeding.append((source.key, {c.name for c in schema.columns} if schema else set()))
    deps_by_column: dict[str, list[dg.TableColumnDep]] = {}
    for column in spec.column_names:
        deps = (
            []
            if column.startswith("_")
            else [dg.TableColumnDep(key, column) for key, names in feeding if column in names]
        )
        declared = [*spec.column(column).derived_from, *(derived or {}).get(column, ())]
        deps += [dg.TableColumnDep(asset_key(s), c) for s, c in declared]
        if deps:
            deps_by_column[column] = deps
    return dg.TableColumnLineage(deps_by_column) if deps_by_column else None


def code_references(fn: Callable[..., Any]) -> dg.CodeReferencesMetadataValue:
    """Where the table-specific code of an asset lives (its compute function, not the factory).

    On Dagster+ the reference links to the deployed commit in git; elsewhere it opens the file.
    """
    # Code references are a beta API; one warning per asset would drown every command's output.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _code_references(inspect.unwrap(fn))


def _code_references(fn: Callable[..., Any]) -> dg.CodeReferencesMetadataValue:
    path = inspect.getsourcefile(fn) or ""
    line = inspect.getsourcelines(fn)[1]
    git_url, git_sha = os.environ.get("DAGSTER_CLOUD_GIT_URL"), os.environ.get("DAGSTER_CLOUD_GIT_SHA")
    if git_url and git_sha:
        relative = os.path.relpath(path, settings.project_root())
        reference = dg.UrlCodeReference(url=f"{git_url.rstrip('/')}/blob/{git_sha}/{relative}#L{line}", label="compute")
    else:
        reference = dg.LocalFileCodeReference(file_path=path, line_number=line, label="compute")
    return dg.CodeReferencesMetadataValue(code_references=[reference])


def describe(spec: TableSpec) -> str:
    return f"{spec.description}\n\n**Grain:** {spec.grain}.\n\n**Partitioned by** {spec.partitioning.value.replace('_', ' ')} (`{spec.partition_column}`)."


# ---------------------------------------------------------------------------------------------
# Assets
# ---------------------------------------------------------------------------------------------


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


def materialization_metadata(
    spec: TableSpec,
    commit: CommitInfo,
    partitions: PartitionRange,
    extra: Mapping[str, Any],
    lineage: dg.TableColumnLineage | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": commit.rows_written,
        "dagster/table_name": spec.key,
        "dagster/uri": commit.location,
        "dagster/column_schema": column_schema(spec),
        "delta_version": commit.version,
        "delta_operation": commit.operation,
        "partition": str(partitions),
    }
    if lineage is not None:
        metadata[COLUMN_LINEAGE] = lineage
    if commit.preview is not None and commit.preview.num_rows:
        metadata["preview"] = dg.MetadataValue.md(_markdown(commit.preview))
    metadata.update(extra)
    return metadata


def _markdown(table: pa.Table) -> str:
    frame = table.drop_columns([n for n in table.column_names if n in ("_raw_bytes",)]).to_pandas()
    for col in frame.columns:
        frame[col] = frame[col].map(lambda v: str(v)[:40] if v is not None else "")
    return frame.to_markdown(index=False)


def _deps(upstream: Sequence[Upstream], sources: Sequence[dg.AssetSpec] = ()) -> list[dg.AssetDep]:
    # External sources (landing folders, the Kafka topic) are not partitioned: every partition reads them.
    return [dg.AssetDep(asset_key(u.spec), partition_mapping=u.mapping) for u in upstream] + [
        dg.AssetDep(s.key) for s in sources
    ]


def _history_markdown(history: list[dict[str, Any]]) -> str:
    rows = ["| version | time (UTC) | operation | predicate |", "|---|---|---|---|"]
    for h in history:
        predicate = (h.get("parameters") or {}).get("predicate", "")
        rows.append(f"| {h['version']} | {h['timestamp']} | {h['operation']} | {predicate} |")
    return "\n".join(rows)


def _write(
    run: TableRun, spec: TableSpec, output: TableOutput, lineage: dg.TableColumnLineage | None = None
) -> dg.MaterializeResult:
    commit = run.engine.write(spec, output.data, run.partition)
    output.metadata.setdefault("delta_history", dg.MetadataValue.md(_history_markdown(run.engine.history(spec, 3))))
    run.context.log.info(
        f"{spec.key} partitions {run.partition}: wrote {commit.rows_written} rows, Delta version {commit.version}"
    )
    key = asset_key(spec)
    by_partition = output.figures_by_partition()
    if not run.single:
        # One commit for the range; each day's materialization still says what that day holds.
        rows = None if spec.rebuild else partition_rows(run.engine, spec, run.partition)
        for day in run.partition.days():
            figures = {
                "partition": day.isoformat(),
                "partitions_of_run": str(run.partition),
                **by_partition.get(day, {}),
            }
            if rows is not None:
                figures["dagster/row_count"] = rows.get(day, 0)
            run.context.add_asset_metadata(figures, asset_key=key, partition_key=day.isoformat())
    elif by_partition:
        output.metadata.update(by_partition.get(run.day, {}))
    return dg.MaterializeResult(
        asset_key=key, metadata=materialization_metadata(spec, commit, run.partition, output.metadata, lineage)
    )


def partition_rows(engine: LakehouseEngine, spec: TableSpec, partitions: PartitionRange) -> dict[dt.date, int]:
    """Rows per partition of a range, from the partition column alone."""
    column = engine.read_arrow(spec, partitions, columns=[spec.partition_column])[spec.partition_column]
    counts = column.value_counts()
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


FOLLOW = object()  # sentinel: the layer's default automation


def _automation(spec: TableSpec, given) -> dg.AutomationCondition | None:
    if given is not FOLLOW:
        return given
    if spec.layer.started_by_sensors:
        return None  # the landing-zone and Kafka sensors
    return follow_upstream(settings.lateness_days() + 2)


def _tags(spec: TableSpec) -> dict[str, str]:
    return {"layer": spec.layer.value, "partitioning": spec.partitioning.value, "domain": "retail"}


def build_table_asset(
    *,
    spec: TableSpec,
    upstream: Sequence[Upstream],
    compute: Compute,
    ranges: RangeMode = RangeMode.EACH_DAY,
    automation_condition=FOLLOW,
    pool: str | None = None,
    kinds: set[str] | None = None,
    resources: frozenset[str] = frozenset(),
    sources: Sequence[dg.AssetSpec] = (),
    derived_columns: ColumnSources | None = None,
    retry_policy: dg.RetryPolicy | None = None,
) -> dg.AssetsDefinition:
    """`ranges`: how `compute` handles a run over several days (`RangeMode`);
    `sources`: external assets the table reads (landing folders, the Kafka topic);
    `derived_columns`: column lineage that is not a same-named input column;
    `retry_policy`: for tables whose source can be briefly unavailable (a broker)."""
    lineage = column_lineage(spec, upstream, sources, derived_columns)
    metadata = {**definition_metadata(spec), CODE_REFERENCES: code_references(compute)}
    if lineage is not None:
        metadata[COLUMN_LINEAGE] = lineage

    @dg.asset(
        required_resource_keys={"lakehouse", STEP_LAUNCHER, *resources},
        key=asset_key(spec),
        group_name=spec.layer.value,
        description=describe(spec),
        partitions_def=daily_partitions(),
        deps=_deps(upstream, sources),
        kinds=kinds or KINDS,
        owners=OWNERS,
        tags=_tags(spec),
        metadata=metadata,
        automation_condition=_automation(spec, automation_condition),
        pool=pool,
        retry_policy=retry_policy,
    )
    def _asset(context) -> dg.MaterializeResult:
        run = TableRun(context, context.resources.lakehouse, run_partitions(context))
        try:
            return _write(run, spec, _produce(run, compute, ranges), lineage)
        finally:
            run.release()

    return _asset


def build_multi_table_asset(
    *,
    name: str,
    specs: Sequence[TableSpec],
    upstream: Sequence[Upstream],
    compute: MultiCompute,
    ranges: RangeMode = RangeMode.EACH_DAY,
    automation_condition=FOLLOW,
    pool: str | None = None,
) -> dg.AssetsDefinition:
    """Several tables produced by one computation (e.g. sales lines and returns from one pass)."""

    @dg.multi_asset(
        name=name,
        specs=[
            dg.AssetSpec(
                key=asset_key(s),
                group_name=s.layer.value,
                description=describe(s),
                deps=_deps(upstream),
                kinds=KINDS,
                owners=OWNERS,
                tags=_tags(s),
                metadata={
                    **definition_metadata(s),
                    CODE_REFERENCES: code_references(compute),
                    **({COLUMN_LINEAGE: lineage} if (lineage := column_lineage(s, upstream)) else {}),
                },
                automation_condition=_automation(s, automation_condition),
            )
            for s in specs
        ],
        partitions_def=daily_partitions(),
        pool=pool,
        required_resource_keys={"lakehouse", STEP_LAUNCHER},
    )
    def _assets(context):
        run = TableRun(context, context.resources.lakehouse, run_partitions(context))
        try:
            produced = _produce_many(run, compute, [s.name for s in specs], ranges)
            for s in specs:
                yield _write(run, s, produced[s.name], column_lineage(s, upstream))
        finally:
            run.release()

    return _assets


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def _names(columns: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if columns is None else tuple(columns)


_SHARED_LOCK = threading.Lock()


@dataclass
class CheckRun(RunScope):
    """What a check function gets: the checked partitions, read lazily, and the engine.

    A check's reads are plain Spark reads of the tables' Parquet files: each check's plan
    prunes them to the columns it needs, so nothing is cached for a check that reads a table
    once. In a run over a range of days, a check that reads a day at a time gets one CheckRun
    per day; those share `shared`, where each table is read once for the whole range (`span`)
    and cached, so a day's read is a filter of it rather than another pass over Delta."""

    context: dg.AssetCheckExecutionContext
    lakehouse: LakehouseResource
    spec: TableSpec
    partition: PartitionRange
    span: PartitionRange | None = None  # the run's days, when they are more than `partition`
    _frame: DataFrame | None = None
    # tables read once for the run, shared by its days' checks
    shared: dict[Any, Any] = field(default_factory=dict)

    @property
    def frame(self) -> DataFrame:
        """The checked table's partitions (the whole table for rebuilt tables)."""
        if self._frame is None:
            self._frame = self.read_all(self.spec) if self.spec.rebuild else self.read(self.spec)
        return self._frame

    def read(self, spec: TableSpec, before: int = 0, after: int = 0, *, columns: list[str] | None = None) -> DataFrame:
        """Partitions first-before … last+after of a table (only `columns`, if given)."""
        wanted = self.partition.widened(before, after)
        if self.span is None:
            return self.engine.read(spec, wanted, columns=columns)
        whole = self.span.widened(before, after)
        read_columns = None if columns is None else list(dict.fromkeys([*columns, spec.partition_column]))
        frame = self._shared(
            ("range", spec.key, whole, _names(columns)), lambda: self.engine.read(spec, whole, columns=read_columns)
        )
        selected = frame.filter(wanted.sql_predicate(spec.partition_column))
        return selected if columns is None else selected.select(*columns)

    def read_all(self, spec: TableSpec, *, columns: list[str] | None = None) -> DataFrame:
        if self.span is None:
            return self.engine.read(spec, columns=columns)
        return self._shared(("all", spec.key, _names(columns)), lambda: self.engine.read(spec, columns=columns))

    def key_columns(self, columns: Sequence[str]) -> DataFrame:
        """The checked partitions, only `columns` (a key check need not read whole rows)."""
        if self._frame is not None:
            return self._frame.select(*columns)
        wanted = list(columns)
        return self.read_all(self.spec, columns=wanted) if self.spec.rebuild else self.read(self.spec, columns=wanted)

    def _shared(self, key: tuple, read: Callable[[], DataFrame]) -> DataFrame:
        """A read of the whole range, cached once for every day of the run that reads it."""
        with _SHARED_LOCK:  # checks of one step are evaluated side by side
            if key not in self.shared:
                self.shared[key] = read().cache()
            return self.shared[key]

    def day_run(self, day: dt.date) -> CheckRun:
        """This run's check of one of its days, sharing what the range read."""
        return replace(self, partition=PartitionRange.single(day), span=self.partition, _frame=None)

    def spanning(self) -> CheckRun:
        """The check run over every day of the run (itself, outside a range run)."""
        return self if self.span is None else replace(self, partition=self.span, span=None, _frame=None)

    def release(self) -> None:
        for value in self.shared.values():
            if hasattr(value, "unpersist"):
                value.unpersist()
        self.shared.clear()


@dataclass(frozen=True)
class TableCheck:
    """`range_safe`: the rule holds for a range of days if and only if it holds for each day (a
    property of every row, or of every key within a day), so a range run evaluates it once over
    the range, and day by day only to say which days fail.

    `by_day`: evaluates every day of the run at once (figures grouped by day in one pass) and
    returns each day's outcome; a range run calls it once instead of `evaluate` per day.
    """

    name: str
    description: str
    evaluate: Callable[[CheckRun], quality.CheckOutcome]
    blocking: bool = False
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
    reads: tuple[TableSpec, ...] = ()
    range_safe: bool = False
    by_day: Callable[[CheckRun], dict[dt.date, quality.CheckOutcome]] | None = None

    @classmethod
    def grouped_by_day(
        cls,
        name: str,
        description: str,
        by_day: Callable[[CheckRun], dict[dt.date, quality.CheckOutcome]],
        **options: Any,
    ) -> TableCheck:
        """A check written once, over all the run's days: a single day's run is a range of one."""
        return cls(name, description, lambda run: by_day(run)[run.day], by_day=by_day, **options)


def _primary_key(run: CheckRun) -> quality.CheckOutcome:
    key = run.spec.primary_key
    if not (run.single or run.spec.rebuild or run.spec.partition_column in key):
        key = (*key, run.spec.partition_column)  # unique within each day of a range
    return quality.primary_key(run.key_columns(key), key)


def standard_checks(spec: TableSpec) -> list[TableCheck]:
    """The checks every table gets: key, schema, and its value rules."""
    checks = [
        TableCheck(
            quality.PRIMARY_KEY,
            f"Primary key ({', '.join(spec.primary_key)}) is never null and never repeated.",
            _primary_key,
            blocking=spec.layer.blocking_checks,
            range_safe=True,
        ),
        TableCheck(
            quality.COLUMN_SCHEMA,
            "The stored Delta schema has exactly the registry's columns and types.",
            lambda r: quality.column_schema(r.engine.stored_schema(r.spec), r.spec),
            severity=dg.AssetCheckSeverity.WARN,
            range_safe=True,
        ),
    ]
    if not spec.layer.raw:
        checks.append(
            TableCheck(
                quality.VALUE_RULES,
                "Required columns are set, amounts and counts are not negative, coded columns hold accepted values.",
                lambda r: quality.value_rules(r.frame, r.spec),
                blocking=spec.layer.blocking_checks,
                range_safe=True,
            )
        )
    return checks


# Checks of a step evaluated at once: while one waits on Spark's driver (planning, code
# generation, a small job's scheduling) another's tasks run. Small tables' checks are mostly that.
CHECK_THREADS = 3


def side_by_side(evaluate: Callable[[TableCheck], Any], checks: Sequence[TableCheck]) -> list[Any]:
    """`evaluate` of every check, in the checks' order, evaluated in a few threads."""
    if len(checks) < 2:
        return [evaluate(c) for c in checks]
    with ThreadPoolExecutor(max_workers=min(CHECK_THREADS, len(checks)), thread_name_prefix="check") as pool:
        return list(pool.map(evaluate, checks))


def _check_result(
    key: dg.AssetKey, check: TableCheck, outcome: quality.CheckOutcome, day: dt.date
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=check.name,
        passed=outcome.passed,
        severity=check.severity,
        description=outcome.description,
        metadata={"partition": day.isoformat(), **outcome.metadata},
    )


def _range_evaluations(
    context, spec: TableSpec, checks: Sequence[TableCheck], whole: CheckRun
) -> Iterator[dg.Output | dg.AssetCheckEvaluation]:
    """A range run's checks: one evaluation per check and day, each recorded on its day (as a
    run per day would), against that day's materialization. A rebuilt table is the same table
    whichever day is checked, so its checks are evaluated once for every day."""
    key = asset_key(spec)
    days = {d: whole.day_run(d) for d in whole.partition.days()}
    targets = _materializations_of(context.instance, key, list(days))

    def evaluate(check: TableCheck) -> dict[dt.date, quality.CheckOutcome]:
        if check.by_day is not None and not spec.rebuild:
            return check.by_day(whole)
        if check.range_safe or spec.rebuild:
            over_range = check.evaluate(whole)
            if over_range.passed or spec.rebuild:
                metadata = {**over_range.metadata, "evaluated_over": str(whole.partition)}
                return {d: replace(over_range, metadata=metadata) for d in days}
        return {d: check.evaluate(run) for d, run in days.items()}

    for check, outcomes in zip(checks, side_by_side(evaluate, checks)):
        check_key = dg.AssetCheckKey(key, check.name)
        yield dg.Output(
            None, output_name=context.op_execution_context.assets_def.get_output_name_for_asset_check_key(check_key)
        )
        for day, outcome in outcomes.items():
            yield dg.AssetCheckEvaluation(
                asset_key=key,
                check_name=check.name,
                passed=outcome.passed,
                metadata={"partition": day.isoformat(), **outcome.metadata},
                target_materialization_data=targets[day],
                severity=check.severity,
                description=outcome.description,
                blocking=check.blocking,
                partition=day.isoformat(),
            )


def _materializations_of(
    instance: dg.DagsterInstance, key: dg.AssetKey, days: list[dt.date]
) -> dict[dt.date, AssetCheckEvaluationTargetMaterializationData | None]:
    """The newest materialization of each day: one query for all of them (a page per 100
    records, newest first), not one per check and day."""
    wanted = {d.isoformat(): d for d in days}
    found: dict[dt.date, AssetCheckEvaluationTargetMaterializationData] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(wanted)), limit=100, cursor=cursor
        )
        for record in page.records:
            day = wanted.get(record.partition_key or "")
            if day is not None and day not in found:
                found[day] = AssetCheckEvaluationTargetMaterializationData(
                    run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp
                )
        if len(found) == len(wanted) or not page.has_more:
            return {d: found.get(d) for d in days}
        cursor = page.cursor


def build_table_checks(spec: TableSpec, checks: Sequence[TableCheck]) -> dg.AssetChecksDefinition:
    key = asset_key(spec)
    by_name = {c.name: c for c in checks}
    if len(by_name) != len(checks):
        raise ValueError(f"duplicate check names for {spec.key}")

    @dg.multi_asset_check(
        name=f"{spec.layer.value}_{spec.name}_checks",
        specs=[
            dg.AssetCheckSpec(
                c.name,
                asset=key,
                description=c.description,
                blocking=c.blocking,
                partitions_def=daily_partitions(),
                additional_deps=[asset_key(s) for s in c.reads],
            )
            for c in checks
        ],
        can_subset=True,
        required_resource_keys={"lakehouse", STEP_LAUNCHER},
    )
    def _checks(context):
        run = CheckRun(context, context.resources.lakehouse, spec, run_partitions(context))
        selected = [by_name[k.name] for k in sorted(context.selected_asset_check_keys, key=lambda k: k.name)]
        try:
            if not run.single:
                yield from _range_evaluations(context, spec, selected, run)
                return
            for check, outcome in zip(selected, side_by_side(lambda c: c.evaluate(run), selected)):
                yield _check_result(key, check, outcome, run.day)
        finally:
            run.release()

    return _checks
