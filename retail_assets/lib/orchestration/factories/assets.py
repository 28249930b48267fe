"""Registry entry + compute function → a Dagster asset: read inputs through the engine, call a
pure transformation, write through the engine, report metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import dagster as dg

from retail_assets.lib import settings
from retail_assets.lib.engine import CommitInfo
from retail_assets.lib.orchestration.automation import follow_upstream
from retail_assets.lib.orchestration.factories.metadata import (
    CODE_REFERENCES,
    COLUMN_LINEAGE,
    KINDS,
    ON_THE_PATH,
    OWNERS,
    SERVED_INPUTS,
    STEP_LAUNCHER,
    ColumnSources,
    _history_markdown,
    _tags,
    asset_key,
    code_references,
    column_lineage,
    daily_partitions,
    definition_metadata,
    describe,
    materialization_metadata,
    served_inputs,
)
from retail_assets.lib.orchestration.factories.runs import (
    Compute,
    MultiCompute,
    RangeMode,
    TableOutput,
    TableRun,
    Upstream,
    _produce,
    _produce_many,
    partition_rows,
    run_partitions,
)
from retail_assets.lib.orchestration.retries import retried_when_transient, step_attempt
from retail_assets.lib.registry.tables import TableSpec

if TYPE_CHECKING:
    pass


def _deps(upstream: Sequence[Upstream], sources: Sequence[dg.AssetSpec] = ()) -> list[dg.AssetDep]:
    # External sources (landing folders, the Kafka topic) are not partitioned: every partition reads them.
    return [dg.AssetDep(asset_key(u.spec), partition_mapping=u.mapping) for u in upstream] + [
        dg.AssetDep(s.key) for s in sources
    ]


def _write(
    run: TableRun, spec: TableSpec, output: TableOutput, lineage: dg.TableColumnLineage | None = None
) -> dg.MaterializeResult:
    if output.deletes is not None:
        commit = run.engine.merge(spec, output.data, output.deletes)
    else:
        commit = run.engine.write(spec, output.data, run.partition)
    return _report(run, spec, commit, output, lineage)


def _report(
    run: TableRun,
    spec: TableSpec,
    commit: CommitInfo,
    output: TableOutput,
    lineage: dg.TableColumnLineage | None = None,
) -> dg.MaterializeResult:
    if commit.version is not None:
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


FOLLOW = object()  # sentinel: the layer's default automation


def _automation(spec: TableSpec, given) -> dg.AutomationCondition | None:
    if given is not FOLLOW:
        return given
    if spec.layer.started_by_sensors:
        return None  # the landing-zone and Kafka sensors
    return follow_upstream(settings.lateness_days() + 2)


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
) -> dg.AssetsDefinition:
    """`ranges`: how `compute` handles a run over several days (`RangeMode`);
    `sources`: external assets the table reads (landing folders, the Kafka topic);
    `derived_columns`: column lineage that is not a same-named input column. A transient failure
    (a broker or an API briefly away) is retried with backoff (`retries.retried_when_transient`)."""
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
        op_tags=ON_THE_PATH,
        backfill_policy=ranges.backfill_policy,
    )
    def _asset(context) -> dg.MaterializeResult:
        run = TableRun(context, context.resources.lakehouse, run_partitions(context))
        try:
            with retried_when_transient(step_attempt(context), context.log):
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
        op_tags=ON_THE_PATH,
        required_resource_keys={"lakehouse", STEP_LAUNCHER},
        backfill_policy=ranges.backfill_policy,
    )
    def _assets(context):
        run = TableRun(context, context.resources.lakehouse, run_partitions(context))
        try:
            with retried_when_transient(step_attempt(context), context.log):
                produced = _produce_many(run, compute, [s.name for s in specs], ranges)
                for s in specs:
                    yield _write(run, s, produced[s.name], column_lineage(s, upstream))
        finally:
            run.release()

    return _assets


def build_serving_asset(
    *, spec: TableSpec, upstream: Sequence[Upstream], automation_condition=FOLLOW
) -> dg.AssetsDefinition:
    """A serving shape (`TableSpec.view`): materializing it states its catalog view, or, on an
    engine without a catalog, writes its SELECT's rows of the partitions as a table."""
    assert spec.view is not None, f"{spec.key} is not a serving shape"
    lineage = column_lineage(spec, upstream)
    sql = dg.MetadataValue.md(f"```sql\n{spec.view.select}\n```")

    @dg.asset(
        required_resource_keys={"lakehouse", STEP_LAUNCHER},
        key=asset_key(spec),
        group_name=spec.layer.value,
        description=describe(spec),
        partitions_def=daily_partitions(),
        deps=_deps(upstream),
        kinds=KINDS,
        owners=OWNERS,
        tags=_tags(spec),
        metadata={**definition_metadata(spec), "select": sql, **({COLUMN_LINEAGE: lineage} if lineage else {})},
        automation_condition=_automation(spec, automation_condition),
        op_tags=ON_THE_PATH,
        backfill_policy=RangeMode.WHOLE_RANGE.backfill_policy,  # a view or a table, for any range
    )
    def _asset(context) -> dg.MaterializeResult:
        run = TableRun(context, context.resources.lakehouse, run_partitions(context))
        try:
            with retried_when_transient(step_attempt(context), context.log):
                return _publish(run, spec, lineage)
        finally:
            run.release()

    return _asset


def _publish(run: TableRun, spec: TableSpec, lineage) -> dg.MaterializeResult:
    computed_from = None if run.engine.is_view(spec) else served_inputs(run.engine, spec)
    commit = run.engine.publish(spec, run.partition)
    output = TableOutput(None, metadata={"served_as": "table"})
    if computed_from is not None:
        output.metadata[SERVED_INPUTS] = dg.MetadataValue.json(computed_from)
    if run.engine.is_view(spec):
        # a view holds what its inputs hold now: the rows it serves, counted
        rows = run.engine.read(spec, None if spec.rebuild else run.partition, columns=[spec.partition_column])
        output.metadata.update({"served_as": "catalog view", "dagster/row_count": rows.count()})
        run.context.log.info(f"{spec.key}: view {commit.location} stated")
    return _report(run, spec, commit, output, lineage)
