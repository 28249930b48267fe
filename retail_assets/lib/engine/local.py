"""The delta-rs engine: Delta tables on disk through delta-rs, Spark exchanging data as Arrow.

Spark never touches the Delta log here: delta-rs names the files of a version and Spark reads
them as Parquet; writes go `DataFrame.toArrow()` → delta-rs. (The `delta_spark` engine writes the
same layout through Delta Lake's Spark jar.)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from retail_assets.lib.engine.base import (
    DELETE_FLAG,
    FILE_RANGES,
    PREVIEW_ROWS,
    CommitInfo,
    ConcurrentWriteError,
    LakehouseEngine,
    PartitionRange,
    RowStream,
    merge_clauses,
    string_upper_bound,
)
from retail_assets.lib.engine.delta_sql import zorder_columns
from retail_assets.lib.engine.spark import get_spark
from retail_assets.lib.registry.tables import TableSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class DeltaRsEngine(LakehouseEngine):
    def __init__(self, root: str | Path, spark: SparkSession | None = None) -> None:
        self.root = Path(root).resolve()
        self._spark = spark

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            self._spark = get_spark()
        return self._spark

    def location(self, spec: TableSpec) -> str:
        return str(self.root / spec.layer.value / spec.name)

    def scratch_location(self, name: str) -> Path:
        # Beside the layers, on the disk the session's (local or loopback Connect) Spark writes.
        return self.root / "_scratch" / name

    def _table(self, spec: TableSpec) -> DeltaTable | None:
        try:
            return DeltaTable(self.location(spec))
        except TableNotFoundError:
            return None

    def exists(self, spec: TableSpec) -> bool:
        return DeltaTable.is_deltatable(self.location(spec))

    # ---- reads ---------------------------------------------------------------------------

    def read_arrow(
        self, spec: TableSpec, partitions: PartitionRange | None = None, *, columns: list[str] | None = None
    ) -> pa.Table:
        # Imported here: pyarrow.dataset pulls in pandas, a third of a second every process that
        # only loads the definitions (webserver, daemon, sensors) would pay for nothing.
        import pyarrow.dataset as ds  # noqa: PLC0415

        table = self._table(spec)
        wanted = columns or spec.column_names
        if table is None:
            return spec.arrow_schema().empty_table().select(wanted)
        dataset = table.to_pyarrow_dataset()
        flt = None
        if partitions is not None:
            col = ds.field(spec.partition_column)
            flt = (col >= pa.scalar(partitions.start, pa.date32())) & (col <= pa.scalar(partitions.end, pa.date32()))
        present = [c for c in wanted if c in dataset.schema.names]
        data = dataset.to_table(columns=present, filter=flt)
        # Columns registered after the table was written read as nulls (additive evolution).
        schema = spec.arrow_schema()
        for name in wanted:
            if name not in data.column_names:
                data = data.append_column(
                    pa.field(name, schema.field(name).type), pa.nulls(data.num_rows, schema.field(name).type)
                )
        return data.select(wanted).cast(pa.schema([schema.field(n) for n in wanted]))

    def read(
        self, spec: TableSpec, partitions: PartitionRange | None = None, *, columns: list[str] | None = None
    ) -> DataFrame:
        """The table's current data files as Spark reads Parquet: lazily, from disk.

        delta-rs names the files of the current version (of the wanted partitions); Spark reads
        them with the registry's schema, so a column registered after a file was written reads
        as null. Nothing is copied through the driver's heap, whatever the range."""
        wanted = columns or spec.column_names
        table = self._table(spec)
        files: list[str] = []
        partitioned = False
        if table is not None:
            partitioned = spec.partition_column in table.metadata().partition_columns
            filters = None
            if partitions is not None and partitioned:
                filters = [(spec.partition_column, "in", [d.isoformat() for d in partitions.days()])]
            files = table.file_uris(partition_filters=filters)
        ddl = ", ".join(f"`{c.name}` {c.type}" for c in spec.columns)
        if not files:
            return self.spark.createDataFrame([], ddl).select(*wanted)
        reader = self.spark.read.schema(ddl)
        if partitioned:
            reader = reader.option("basePath", self.location(spec))
        df = reader.parquet(*files)
        if partitions is not None and not partitioned:
            df = df.filter(partitions.sql_predicate(spec.partition_column))
        return df.select(*wanted)

    def file_ranges(self, spec: TableSpec, column: str) -> pa.Table | None:
        table = self._table(spec)
        if table is None:
            return FILE_RANGES.empty_table()
        if spec.partition_column not in table.metadata().partition_columns:
            return None
        adds = pa.table(table.get_add_actions(flatten=True))
        wanted = ["path", f"partition.{spec.partition_column}", f"min.{column}", f"max.{column}"]
        rows = [
            {
                "partition": add[f"partition.{spec.partition_column}"],
                "file": f"{self.location(spec)}/{unquote(add['path'])}",  # the log's paths are URI-encoded
                "min": add.get(f"min.{column}"),  # absent where no file has statistics of the column
                "max": string_upper_bound(add.get(f"max.{column}")),
            }
            for add in adds.select([c for c in wanted if c in adds.column_names]).to_pylist()
        ]
        return pa.Table.from_pylist(rows, schema=FILE_RANGES)

    # ---- writes --------------------------------------------------------------------------

    def _to_arrow(
        self, spec: TableSpec, data: DataFrame | pa.Table | RowStream, partitions: PartitionRange | None = None
    ) -> pa.Table | _Streamed:
        """The rows as Arrow in registry schema; a stream stays a stream, each batch checked as it
        passes (a refused batch stops the write before its commit)."""
        if isinstance(data, RowStream):
            self.check_columns(spec, data.schema.names)
            return _Streamed(spec.arrow_schema(), data, lambda batch: self._conform(spec, batch, partitions))
        if not isinstance(data, pa.Table):
            self.check_columns(spec, data.columns)
            data = data.select(*spec.column_names).toArrow()
        self.check_columns(spec, data.column_names)
        return self._conform(spec, data, partitions)

    def _conform(
        self, spec: TableSpec, data: pa.Table | pa.RecordBatch, partitions: PartitionRange | None
    ) -> pa.Table | pa.RecordBatch:
        data = data.select(spec.column_names)
        for f in spec.arrow_schema():
            if not f.nullable and data.column(f.name).null_count:
                raise ValueError(
                    f"{spec.key}.{f.name} is declared NOT NULL but {data.column(f.name).null_count} rows are null"
                )
        if partitions is not None and data.num_rows:
            col = data.column(spec.partition_column)
            lo, hi = pc.min(col).as_py(), pc.max(col).as_py()
            if lo < partitions.start or hi > partitions.end:
                raise ValueError(
                    f"refusing to write {spec.key}: rows for {lo}…{hi} fall outside the partitions being replaced ({partitions})"
                )
        return data.cast(spec.arrow_schema())

    def overwrite_partitions(
        self, spec: TableSpec, data: DataFrame | pa.Table | RowStream, partitions: PartitionRange
    ) -> CommitInfo:
        arrow = self._to_arrow(spec, data, partitions)
        self._write_delta(
            spec,
            self.location(spec),
            arrow,
            mode="overwrite",
            predicate=partitions.sql_predicate(spec.partition_column),
            partition_by=[spec.partition_column],
            schema_mode="merge" if self.exists(spec) else None,
            description=spec.description,
            name=spec.name,
        )
        return self._commit_info(spec, "overwrite", arrow)

    def overwrite_table(self, spec: TableSpec, data: DataFrame | pa.Table | RowStream) -> CommitInfo:
        arrow = self._to_arrow(spec, data)
        self._write_delta(
            spec,
            self.location(spec),
            arrow,
            mode="overwrite",
            schema_mode="overwrite" if self.exists(spec) else None,
            name=spec.name,
            description=spec.description,
        )
        return self._commit_info(spec, "overwrite", arrow)

    def _merge(self, spec: TableSpec, source: DataFrame) -> CommitInfo:
        arrow = source.toArrow()
        schema = pa.schema([f.with_nullable(True) for f in spec.arrow_schema()] + [pa.field(DELETE_FLAG, pa.bool_())])
        arrow = arrow.select(schema.names).cast(schema)
        match, deletes = merge_clauses(spec)
        table = self._table(spec)
        assert table is not None
        try:
            metrics = (
                table.merge(arrow, match, source_alias="s", target_alias="t")
                .when_matched_delete(deletes)
                .when_matched_update_all(except_cols=[DELETE_FLAG])
                .when_not_matched_insert_all(f"NOT {deletes}", except_cols=[DELETE_FLAG])
                .execute()
            )
        except CommitFailedError as exc:
            raise ConcurrentWriteError(
                f"another run committed to {spec.key} while this run was merging its rows; Delta refused this run's "
                f"commit, so nothing of it is in the table. Re-run the partition. delta-rs: {str(exc).splitlines()[0]}"
            ) from exc
        written = arrow.filter(pc.invert(arrow.column(DELETE_FLAG))).drop_columns([DELETE_FLAG])
        return replace(
            self._commit_info(spec, "merge", written), rows_deleted=int(metrics.get("num_target_rows_deleted", 0))
        )

    def append(
        self,
        spec: TableSpec,
        data: DataFrame | pa.Table | RowStream,
        *,
        app_id: str | None = None,
        app_version: int | None = None,
    ) -> CommitInfo:
        arrow = self._to_arrow(spec, data)
        commit_properties = None
        if app_id is not None:
            if app_version is None:
                raise ValueError("append with app_id needs app_version")
            commit_properties = CommitProperties(app_transactions=[Transaction(app_id=app_id, version=app_version)])
        self._write_delta(
            spec,
            self.location(spec),
            arrow,
            mode="append",
            partition_by=[spec.partition_column],
            schema_mode="merge" if self.exists(spec) else None,
            commit_properties=commit_properties,
            name=spec.name,
            description=spec.description,
        )
        return self._commit_info(spec, "append", arrow)

    def _write_delta(self, spec: TableSpec, location: str, data: pa.Table | _Streamed, **kwargs: Any) -> None:
        try:
            write_deltalake(location, data.reader() if isinstance(data, _Streamed) else data, **kwargs)
        except CommitFailedError as exc:
            what = f"partitions where {kwargs['predicate']}" if kwargs.get("predicate") else "the table"
            raise ConcurrentWriteError(
                f"another run committed to {spec.key} while this run was writing {what}; Delta refused this run's commit, "
                f"so the table holds the other run's data and nothing of this one. Re-run the partition if its result is "
                f"still wanted (it replaces, never adds to, the other run's rows). delta-rs: {str(exc).splitlines()[0]}"
            ) from exc
        except Exception:
            if isinstance(data, _Streamed) and data.stream.failure is not None:
                # delta-rs reports the producer's exception as text; raise the exception itself
                raise data.stream.failure from None
            raise

    def _commit_info(self, spec: TableSpec, operation: str, arrow: pa.Table | _Streamed) -> CommitInfo:
        rows, preview = (
            (arrow.stream.rows, arrow.stream.preview)
            if isinstance(arrow, _Streamed)
            else (arrow.num_rows, arrow.slice(0, PREVIEW_ROWS))
        )
        return CommitInfo(
            table=spec.key,
            location=self.location(spec),
            version=self.version(spec) or 0,
            operation=operation,
            rows_written=rows,
            preview=preview,
        )

    # ---- table state ---------------------------------------------------------------------

    def stored_schema(self, spec: TableSpec) -> list[tuple[str, str]]:
        table = self._table(spec)
        if table is None:
            return []
        return [(f.name, spark_type_name(f.type)) for f in pa.schema(table.schema().to_arrow())]

    def version(self, spec: TableSpec) -> int | None:
        table = self._table(spec)
        return None if table is None else table.version()

    def history(self, spec: TableSpec, limit: int = 5) -> list[dict[str, Any]]:
        table = self._table(spec)
        if table is None:
            return []
        out = []
        for entry in table.history(limit):
            ts = entry.get("timestamp")
            out.append(
                {
                    "version": entry.get("version"),
                    "timestamp": dt.datetime.fromtimestamp(ts / 1000, dt.UTC).isoformat() if ts else None,
                    "operation": entry.get("operation"),
                    "parameters": entry.get("operationParameters"),
                }
            )
        return out

    def app_transaction_version(self, spec: TableSpec, app_id: str) -> int | None:
        table = self._table(spec)
        return None if table is None else table.transaction_version(app_id)

    # ---- maintenance ---------------------------------------------------------------------

    def optimize(
        self, spec: TableSpec, partitions: PartitionRange | None = None, *, zorder: bool = True
    ) -> dict[str, Any]:
        table = self._table(spec)
        if table is None:
            return {"skipped": "table does not exist"}
        filters = (
            None if partitions is None else [(spec.partition_column, "in", [d.isoformat() for d in partitions.days()])]
        )
        columns = zorder_columns(spec) if zorder else []
        if columns:
            metrics = table.optimize.z_order(columns, partition_filters=filters)
        else:
            metrics = table.optimize.compact(partition_filters=filters)
        return {"files_added": metrics.get("numFilesAdded"), "files_removed": metrics.get("numFilesRemoved")}

    def vacuum(self, spec: TableSpec, retain_hours: int = 168) -> dict[str, Any]:
        table = self._table(spec)
        if table is None:
            return {"skipped": "table does not exist"}
        removed = table.vacuum(
            retention_hours=retain_hours, dry_run=False, enforce_retention_duration=retain_hours >= 168
        )
        return {"files_deleted": len(removed)}


def spark_type_name(arrow: pa.DataType) -> str:
    """The Spark SQL name of an Arrow type as delta-rs stores it."""
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow) or pa.types.is_string_view(arrow):
        return "string"
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow) or pa.types.is_binary_view(arrow):
        return "binary"
    if pa.types.is_decimal(arrow):
        return f"decimal({arrow.precision},{arrow.scale})"
    if pa.types.is_timestamp(arrow):
        return "timestamp" if arrow.tz else "timestamp_ntz"
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow) or pa.types.is_list_view(arrow):
        return f"array<{spark_type_name(arrow.value_type)}>"
    names = {
        pa.int8(): "tinyint",
        pa.int16(): "smallint",
        pa.int32(): "int",
        pa.int64(): "bigint",
        pa.float32(): "float",
        pa.float64(): "double",
        pa.bool_(): "boolean",
        pa.date32(): "date",
    }
    return names.get(arrow, str(arrow))


class _Streamed:
    """A row stream on its way to delta-rs, each batch conformed to the registry schema."""

    def __init__(self, schema: pa.Schema, stream: RowStream, conform) -> None:
        self.schema, self.stream, self._conform = schema, stream, conform

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self.stream.batches(self._conform))
