"""Registry entry + check functions → Dagster asset checks, evaluated side by side, per day of a
range where a rule needs it."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData

from retail_assets.lib.engine import PartitionRange
from retail_assets.lib.orchestration.factories.metadata import ON_THE_PATH, STEP_LAUNCHER, asset_key, daily_partitions
from retail_assets.lib.orchestration.factories.runs import RunScope, run_partitions
from retail_assets.lib.orchestration.resources import LakehouseResource
from retail_assets.lib.orchestration.retries import retried_when_transient, step_attempt
from retail_assets.lib.registry.tables import TableSpec
from retail_assets.lib.transforms import quality

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


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

    def materialized(self, days: Sequence[dt.date]) -> dict[dt.date, dict[str, Any]]:
        """The metadata of each day's latest materialization of the checked table (empty when
        the day has none)."""
        found = latest_materializations(self.context.instance, asset_key(self.spec), list(days))
        return {
            d: {} if r is None else {k: v.value for k, v in r.asset_materialization.metadata.items()}
            for d, r in found.items()
        }

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
    if "quality_flags" in spec.column_names and spec.view is None:  # a serving shape's flags are its source's
        checks.append(
            TableCheck.grouped_by_day(
                quality.QUALITY_WARNINGS,
                "Rows kept with warn-level flags, counted per rule (`lib/registry/rules.py`): they are in the "
                "table, and the check warns when a day has any.",
                lambda r: quality.quality_warnings(r.frame, r.spec.partition_column, r.partition.days()),
                severity=dg.AssetCheckSeverity.WARN,
            )
        )
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
    targets = materializations_of(context.instance, key, list(days))

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
        yield from evaluations_by_day(
            context,
            dg.AssetCheckKey(key, check.name),
            outcomes,
            targets,
            severity=check.severity,
            blocking=check.blocking,
        )


def evaluations_by_day(
    context,
    check_key: dg.AssetCheckKey,
    outcomes: dict[dt.date, quality.CheckOutcome],
    targets: dict[dt.date, AssetCheckEvaluationTargetMaterializationData | None],
    *,
    severity: dg.AssetCheckSeverity,
    blocking: bool,
) -> Iterator[dg.Output | dg.AssetCheckEvaluation]:
    """One check's outcomes in a range run: its output, then an evaluation per day, recorded on
    that day against that day's materialization (`targets`, from `materializations_of`)."""
    yield dg.Output(
        None, output_name=context.op_execution_context.assets_def.get_output_name_for_asset_check_key(check_key)
    )
    for day, outcome in outcomes.items():
        yield dg.AssetCheckEvaluation(
            asset_key=check_key.asset_key,
            check_name=check_key.name,
            passed=outcome.passed,
            metadata={"partition": day.isoformat(), **outcome.metadata},
            target_materialization_data=targets[day],
            severity=severity,
            description=outcome.description or None,
            blocking=blocking,
            partition=day.isoformat(),
        )


def materializations_of(
    instance: dg.DagsterInstance, key: dg.AssetKey, days: list[dt.date]
) -> dict[dt.date, AssetCheckEvaluationTargetMaterializationData | None]:
    return {
        d: None
        if r is None
        else AssetCheckEvaluationTargetMaterializationData(
            run_id=r.run_id, storage_id=r.storage_id, timestamp=r.timestamp
        )
        for d, r in latest_materializations(instance, key, days).items()
    }


def latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, days: list[dt.date]
) -> dict[dt.date, dg.EventLogRecord | None]:
    """The newest materialization of each day: one query for all of them (a page per 100
    records, newest first), not one per check and day."""
    wanted = {d.isoformat(): d for d in days}
    found: dict[dt.date, dg.EventLogRecord] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(wanted)), limit=100, cursor=cursor
        )
        for record in page.records:
            day = wanted.get(record.partition_key or "")
            if day is not None and day not in found:
                found[day] = record
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
        op_tags=ON_THE_PATH if any(c.blocking for c in checks) else None,
    )
    def _checks(context):
        run = CheckRun(context, context.resources.lakehouse, spec, run_partitions(context))
        selected = [by_name[k.name] for k in sorted(context.selected_asset_check_keys, key=lambda k: k.name)]
        try:
            with retried_when_transient(step_attempt(context), context.log):
                if not run.single:
                    yield from _range_evaluations(context, spec, selected, run)
                    return
                for check, outcome in zip(selected, side_by_side(lambda c: c.evaluate(run), selected)):
                    yield _check_result(key, check, outcome, run.day)
        finally:
            run.release()

    return _checks
