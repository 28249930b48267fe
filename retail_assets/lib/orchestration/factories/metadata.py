"""What the UI shows of a table: keys, partitions, descriptions, schema, lineage, code references,
and the metadata each materialization carries."""

from __future__ import annotations

import hashlib
import inspect
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa

from retail_assets.lib import settings
from retail_assets.lib.engine import CommitInfo, LakehouseEngine, PartitionRange
from retail_assets.lib.orchestration.factories.runs import FULL_REFRESH_TAG, Upstream
from retail_assets.lib.registry.tables import TableSpec

if TYPE_CHECKING:
    pass


OWNERS = ["team:data-platform"]


# Every Spark step names the step launcher: none locally, a Databricks job cluster in production.
STEP_LAUNCHER = "pyspark_step_launcher"


KINDS = {"spark", "delta"}


# A run's executor starts the ready step of highest `dagster/priority` first. Table steps, and
# check steps holding a blocking check (they gate the tables downstream), come before check
# steps nothing waits for, so a table downstream (the stream lane's fact) is not held up by them.
ON_THE_PATH = {"dagster/priority": "1"}


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
        "write_mode": _write_mode(spec),
    }


def _write_mode(spec: TableSpec) -> str:
    mode = "rebuild (whole table, one commit)" if spec.rebuild else "partition overwrite (one commit)"
    if spec.by_key:
        mode = (
            "by key: a MERGE of the rows of the keys the run's days touched (one commit); "
            f"the whole table on a run tagged {FULL_REFRESH_TAG}=true"
        )
    if spec.view is not None:
        return (
            f"catalog view of its SELECT where the engine names tables in a catalog (delta-spark); else a table, {mode}"
        )
    return mode


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
        deps = list({(d.asset_key, d.column_name): d for d in deps}.values())  # declared and same-named
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


# A table-form serving shape's materialization: what its rows were computed from
# (`served_inputs`), so its currency check computes again only the days whose inputs changed since.
SERVED_INPUTS = "served_inputs"


def served_inputs(engine: LakehouseEngine, spec: TableSpec) -> dict[str, Any]:
    """What a serving shape's rows are computed from: its SELECT (a digest) and each input's
    current Delta version. Taken before the rows are computed, so an input committed meanwhile
    shows as changed."""
    assert spec.view is not None
    digest = hashlib.sha256(spec.view.select.encode()).hexdigest()[:16]
    return {"select": digest, **{t.key: engine.version(t) for t in spec.view.reads}}


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
        "delta_operation": commit.operation,
        "partition": str(partitions),
    }
    if commit.rows_deleted is not None:  # a MERGE: the rows it changed, not the table's
        metadata.pop("dagster/row_count")
        metadata.update(rows_upserted=commit.rows_written, rows_deleted=commit.rows_deleted)
    if commit.version is not None:  # a view has no commits
        metadata["delta_version"] = commit.version
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


def _history_markdown(history: list[dict[str, Any]]) -> str:
    rows = ["| version | time (UTC) | operation | predicate |", "|---|---|---|---|"]
    for h in history:
        predicate = (h.get("parameters") or {}).get("predicate", "")
        rows.append(f"| {h['version']} | {h['timestamp']} | {h['operation']} | {predicate} |")
    return "\n".join(rows)


def _tags(spec: TableSpec) -> dict[str, str]:
    return {"layer": spec.layer.value, "partitioning": spec.partitioning.value, "domain": "retail"}
