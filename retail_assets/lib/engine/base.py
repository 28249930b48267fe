"""The lakehouse engine interface.

Assets speak only to this interface: read chosen partitions of a registered table into Spark,
overwrite a partition range, append, and report versions and history. The local engine
writes Delta through delta-rs (SPEC §9); the Databricks engine through delta-spark.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from retail_assets.lib.engine import checkpoint
from retail_assets.lib.registry.tables import TableSpec

T = TypeVar("T")
# The column of a MERGE source that marks a row to delete (`merge_source`).
DELETE_FLAG = "_delete"
_PROCESS_RESULTS = checkpoint.ProcessResults()

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class PartitionRange:
    """An inclusive range of daily partitions."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"partition range ends ({self.end}) before it starts ({self.start})")

    @classmethod
    def single(cls, day: dt.date | str) -> PartitionRange:
        d = dt.date.fromisoformat(day) if isinstance(day, str) else day
        return cls(d, d)

    @classmethod
    def around(cls, day: dt.date | str, before: int, after: int) -> PartitionRange:
        """The window `day - before … day + after`."""
        d = dt.date.fromisoformat(day) if isinstance(day, str) else day
        return cls(d - dt.timedelta(days=before), d + dt.timedelta(days=after))

    def widened(self, before: int, after: int) -> PartitionRange:
        """The window `start - before … end + after`."""
        return PartitionRange(self.start - dt.timedelta(days=before), self.end + dt.timedelta(days=after))

    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def sql_predicate(self, column: str) -> str:
        if self.start == self.end:
            return f"{column} = '{self.start.isoformat()}'"
        return f"{column} >= '{self.start.isoformat()}' AND {column} <= '{self.end.isoformat()}'"

    def __str__(self) -> str:
        return self.start.isoformat() if self.start == self.end else f"{self.start}…{self.end}"


PREVIEW_ROWS = 5  # rows of a write shown in its materialization


class RowStream:
    """Rows handed to a write while they are still being produced: Arrow batches of one schema,
    written in one commit as a table would be. An engine that can (delta-rs) encodes each batch
    while the producer makes the next, so the write costs little beyond producing the rows; the
    others gather the batches first. Read once; `rows` and `preview` describe what went through.
    """

    def __init__(self, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> None:
        self.schema = schema
        self._batches = iter(batches)
        self._read = False
        self.rows = 0
        self._preview: list[pa.RecordBatch] = []
        self.failure: BaseException | None = None  # what stopped the stream, for the write to raise

    def batches(self, conform: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None) -> Iterator[pa.RecordBatch]:
        """The batches, each passed through `conform` (which raises to refuse one)."""
        if self._read:
            raise RuntimeError("a row stream is read once")
        self._read = True
        try:
            for batch in self._batches:
                if conform is not None:
                    batch = conform(batch)
                if self.rows < PREVIEW_ROWS:
                    self._preview.append(batch.slice(0, PREVIEW_ROWS - self.rows))
                self.rows += batch.num_rows
                yield batch
        except BaseException as exc:
            self.failure = exc
            raise

    @property
    def preview(self) -> pa.Table:
        """The first rows that went through."""
        return pa.Table.from_batches(self._preview, schema=self._preview[0].schema if self._preview else self.schema)

    def read_all(self) -> pa.Table:
        return pa.Table.from_batches(list(self.batches()), schema=self.schema)


class ConcurrentWriteError(RuntimeError):
    """Another writer committed to the table between this write's read and its commit.

    Delta's optimistic concurrency refused this commit, so nothing of it is in the table."""


@dataclass(frozen=True)
class CommitInfo:
    """What a write produced, reported as materialization metadata."""

    table: str
    location: str
    version: int | None  # None: a view was stated, no commit made
    operation: str
    rows_written: int
    # A few of the rows written, for the materialization's preview.
    preview: pa.Table | None = None
    rows_deleted: int | None = None  # a MERGE's (`LakehouseEngine.merge`)


class LakehouseEngine(ABC):
    """Reads and writes registered tables; knows nothing about what the tables mean."""

    # Whether serving shapes (`TableSpec.view`) are views in the engine's catalog. An engine
    # without a catalog writes the rows of their SELECT as a table instead (`publish`).
    catalog_views: bool = False

    def is_view(self, spec: TableSpec) -> bool:
        """The table is a catalog view here: no files, commits, history or maintenance of its own."""
        return self.catalog_views and spec.view is not None

    @property
    @abstractmethod
    def spark(self) -> SparkSession: ...

    @abstractmethod
    def location(self, spec: TableSpec) -> str:
        """Path or catalog name of the table."""

    def storage_id(self, spec: TableSpec) -> str:
        """What names the table's storage across lakehouses (cache keys): its folder where one
        machine holds several lakehouses, else its location."""
        return self.location(spec)

    @abstractmethod
    def exists(self, spec: TableSpec) -> bool: ...

    def scratch_location(self, name: str) -> Path | None:
        """A directory later runs on this machine can read intermediate results from (see
        `lib/engine/checkpoint.py`); None where runs share no filesystem with each other's Spark."""
        return None

    def result_key(
        self, name: str, inputs: Mapping[TableSpec, Sequence[dt.date] | str | None], params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """What a result computed from `inputs` (each table's days read, as dates or a partition,
        or None for the whole table) is a function of: the tables' committed versions and those
        days, `params`, and the code."""
        return {
            "result": name,
            "inputs": {
                spec.key: [
                    self.storage_id(spec),
                    self.version(spec),
                    days if days is None or isinstance(days, str) else [str(d) for d in days],
                ]
                for spec, days in inputs.items()
            },
            "params": dict(params),
            "code": checkpoint.package_digest(),
        }

    def shared_result(
        self,
        name: str,
        *,
        inputs: Mapping[TableSpec, Sequence[dt.date] | str | None],
        params: Mapping[str, Any] | None = None,
    ) -> checkpoint.SharedResult:
        """How to compute the result `name` so later runs on this machine can read it instead of
        computing it again (`lib/engine/checkpoint.py`). Ask before reading the inputs' rows: a
        commit in between then leaves a key older than the rows it names, which no later run
        asks for, never a key newer than its rows."""
        directory = self.scratch_location(name)
        if directory is None:
            return checkpoint.SharedResult(None)
        key = self.result_key(name, inputs, params or {})
        return checkpoint.SharedResult(checkpoint.SharedCheckpoint(directory, key))

    def computed_once(
        self,
        name: str,
        compute: Callable[[], T],
        *,
        inputs: Mapping[TableSpec, Sequence[dt.date] | str | None],
        params: Mapping[str, Any] | None = None,
    ) -> T:
        """`compute()` once per process for the same inputs' versions and parameters."""
        return _PROCESS_RESULTS.get(self.result_key(name, inputs, params or {}), compute)

    @abstractmethod
    def read(
        self,
        spec: TableSpec,
        partitions: PartitionRange | None = None,
        *,
        columns: list[str] | None = None,
    ) -> DataFrame:
        """Read the table (or only the given partitions) as a Spark DataFrame.

        A table that does not exist yet reads as an empty DataFrame with the registry schema,
        so the first partition of a new lakehouse needs no special case.
        """

    @abstractmethod
    def overwrite_partitions(
        self, spec: TableSpec, data: DataFrame | pa.Table | RowStream, partitions: PartitionRange
    ) -> CommitInfo:
        """Atomically replace the rows of the partition range with `data` (one commit).

        Every row of `data` must fall inside the range; a row outside it is a programming error
        and fails the write rather than silently landing in another partition.
        """

    @abstractmethod
    def overwrite_table(self, spec: TableSpec, data: DataFrame | pa.Table | RowStream) -> CommitInfo:
        """Atomically replace the whole table with `data` (one commit; used by rebuilt tables)."""

    def publish(self, spec: TableSpec, partitions: PartitionRange) -> CommitInfo:
        """Serve a serving shape for the partitions: state its catalog view (a changed SELECT
        takes effect; the view shows its inputs as they stand), or, without a catalog, write the
        SELECT's rows of those partitions as the table."""
        if spec.view is None:
            raise ValueError(f"{spec.key} is a table of its own, not a SELECT over others")
        if self.is_view(spec):
            return self.create_view(spec)
        return self.write(spec, self.view_rows(spec, partitions), partitions)

    def view_rows(self, spec: TableSpec, partitions: PartitionRange | None = None) -> DataFrame:
        """The rows of a serving shape's SELECT over its inputs as they stand: of `partitions`
        where an input has the shape's calendar, whole where it is rebuilt or has another."""
        assert spec.view is not None
        frames = {
            t.name: self.read(
                t, None if partitions is None or t.rebuild or t.partitioning is not spec.partitioning else partitions
            )
            for t in spec.view.reads
        }
        return self.spark.sql(spec.view.select, **frames).select(*spec.column_names)

    def create_view(self, spec: TableSpec) -> CommitInfo:
        """(Re)state a serving shape as a view in the engine's catalog."""
        raise NotImplementedError(f"{type(self).__name__} names no tables in a catalog, so it holds no views")

    def write(self, spec: TableSpec, data: DataFrame | pa.Table | RowStream, partitions: PartitionRange) -> CommitInfo:
        """Write an asset's output the way its registry entry says: rebuild or partition overwrite."""
        if spec.rebuild:
            return self.overwrite_table(spec, data)
        return self.overwrite_partitions(spec, data, partitions)

    def merge(self, spec: TableSpec, upserts: DataFrame, deletes: DataFrame) -> CommitInfo:
        """Change rows by primary key in one commit (Delta's MERGE): each row of `upserts`
        replaces the row of its key or is added, and the row of each key in `deletes` (the
        primary-key columns) is removed; every other row stays as it is. A key in both is
        upserted. A table that does not exist yet is created with `upserts`."""
        if not self.exists(spec):
            return self.overwrite_table(spec, upserts)
        return self._merge(spec, merge_source(spec, upserts, deletes))

    def _merge(self, spec: TableSpec, source: DataFrame) -> CommitInfo:
        """MERGE `source` (`merge_source`) into the existing table on its primary key."""
        raise NotImplementedError(f"{type(self).__name__} does not merge")

    @abstractmethod
    def append(
        self,
        spec: TableSpec,
        data: DataFrame | pa.Table | RowStream,
        *,
        app_id: str | None = None,
        app_version: int | None = None,
    ) -> CommitInfo:
        """Append in one commit; with `app_id`/`app_version` the commit also records an
        idempotent-writer transaction so a resume point can be derived from the table itself."""

    @abstractmethod
    def stored_schema(self, spec: TableSpec) -> list[tuple[str, str]]:
        """(column, Spark SQL type) pairs as stored in the table's Delta log."""

    @abstractmethod
    def version(self, spec: TableSpec) -> int | None:
        """Current table version, or None when the table does not exist."""

    @abstractmethod
    def history(self, spec: TableSpec, limit: int = 5) -> list[dict[str, Any]]:
        """Latest commits, newest first."""

    @abstractmethod
    def app_transaction_version(self, spec: TableSpec, app_id: str) -> int | None:
        """The last `app_version` committed by `app_id`, or None."""

    @abstractmethod
    def optimize(
        self, spec: TableSpec, partitions: PartitionRange | None = None, *, zorder: bool = True
    ) -> dict[str, Any]:
        """Compact small files (and cluster them by key when `zorder`); returns what it did."""

    @abstractmethod
    def vacuum(self, spec: TableSpec, retain_hours: int = 168) -> dict[str, Any]:
        """Delete files no version younger than `retain_hours` still references."""

    def read_arrow(
        self, spec: TableSpec, partitions: PartitionRange | None = None, *, columns: list[str] | None = None
    ) -> pa.Table:
        """Read into Arrow (for small control reads and tests); default goes through Spark."""
        return self.read(spec, partitions, columns=columns).toArrow()

    def file_ranges(self, spec: TableSpec, column: str) -> pa.Table | None:
        """Each data file of the current version (`FILE_RANGES`): its partition, its path
        (`read_files` reads it) and the range of the string `column` in it by the Delta log's
        statistics, null where it has none; `max` widened by `string_upper_bound`. None where the
        engine cannot tell (log or files not readable as such): read the table instead."""
        return None

    def read_files(self, spec: TableSpec, files: Sequence[str], *, columns: list[str] | None = None) -> DataFrame:
        """Rows of some data files (`file_ranges`), lazily: Parquet read with the registry's schema,
        the partition column from their `<table>/<column>=<value>/` folders."""
        if not files:
            return self.empty_frame(spec).select(*(columns or spec.column_names))
        root = files[0][: files[0].rindex(f"/{spec.partition_column}=")]
        frame = self.spark.read.schema(spec.spark_ddl()).option("basePath", root).parquet(*files)
        return frame.select(*(columns or spec.column_names))

    # ---- helpers shared by implementations -----------------------------------------------

    def empty_frame(self, spec: TableSpec) -> DataFrame:
        return self.spark.createDataFrame([], spec.spark_ddl())

    @staticmethod
    def check_columns(spec: TableSpec, columns: list[str]) -> None:
        expected = spec.column_names
        missing = [c for c in expected if c not in columns]
        extra = [c for c in columns if c not in expected]
        if missing or extra:
            raise ValueError(
                f"data for {spec.key} does not match its registered schema: missing {missing or 'none'}, unexpected {extra or 'none'}"
            )


FILE_RANGES = pa.schema([("partition", pa.date32()), ("file", pa.string()), ("min", pa.string()), ("max", pa.string())])


def string_upper_bound(value: str | None) -> str | None:
    """A bound above every string a file whose logged max is `value` can hold; None: none.

    Writers keep long strings' statistics to a prefix: delta-rs 64 bytes with the last character
    raised, delta-spark 32 characters and a tie-breaker, others maybe bare (older Delta's
    tie-breaker could sort below the character it replaced). Whatever the length, a logged max is
    at least the true one, or the true one starts with all of it but its last character: either
    way the successor of `value[:-1]` is above it."""
    head = (value or "")[:-1].rstrip("\U0010ffff")
    if not head:
        return None
    last = ord(head[-1]) + 1
    return head[:-1] + chr(0xE000 if 0xD800 <= last <= 0xDFFF else last)


def merge_source(spec: TableSpec, upserts: DataFrame, deletes: DataFrame) -> DataFrame:
    """One row per primary key for a MERGE on it: `upserts`' rows in registry columns with
    `DELETE_FLAG` false, and a row flagged true, its other columns null, for each key of
    `deletes` not upserted."""
    from pyspark.sql import functions as F  # noqa: PLC0415

    key = list(spec.primary_key)
    kept = upserts.select(*(F.col(c).cast(spec.column(c).type).alias(c) for c in spec.column_names))
    gone = deletes.select(*key).distinct().join(kept.select(*key), key, "left_anti")
    tombstones = gone.select(
        *(F.col(c) if c in key else F.lit(None).cast(spec.column(c).type).alias(c) for c in spec.column_names)
    )
    return kept.withColumn(DELETE_FLAG, F.lit(False)).unionByName(tombstones.withColumn(DELETE_FLAG, F.lit(True)))


def merge_clauses(spec: TableSpec) -> tuple[str, str]:
    """The MERGE's match condition on the primary key (target `t`, source `s`) and the
    condition of a source row that deletes its match."""
    return " AND ".join(f"t.{c} = s.{c}" for c in spec.primary_key), f"s.{DELETE_FLAG}"
