"""The delta-spark engine: Delta tables written natively by Delta Lake's Spark jar.

Tables are addressed by three-part names `{catalog}.{env}_{layer}.{table}` (SPEC §3). On
Databricks they are managed tables in Unity Catalog. Locally (`root` given) the catalog is
Spark's own session catalog, `spark_catalog`, with one database per `{env}_{layer}`; its tables
are external, at `<root>/<layer>/<table>` (the delta-rs engine's layout), because that catalog
lives in one JVM's memory: every process, and every Spark Connect server, learns a table from
its folder on first use (`_attach`). A partition write is one `replaceWhere` overwrite, so the
Delta log itself rejects any row outside the partitions being replaced. Everything that only
builds text (predicates, DDL, maintenance SQL, writer options) is in `delta_sql.py`.

Longer than the project's usual module: it is one class, the engine, whose reads, writes,
history and maintenance share how a table is attached to the session catalog.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow as pa
from pyspark.sql import functions as F

from retail_assets.lib.engine.base import (
    FILE_RANGES,
    PREVIEW_ROWS,
    CommitInfo,
    LakehouseEngine,
    PartitionRange,
    RowStream,
    string_upper_bound,
)
from retail_assets.lib.engine.delta_sql import (
    DEFAULT_VACUUM_RETAIN_HOURS,
    create_schema_sql,
    create_table_sql,
    history_sql,
    merge_sql,
    optimize_sql,
    quote_name,
    replace_where,
    set_properties_sql,
    sql_string,
    table_properties,
    vacuum_sql,
    writer_options,
)
from retail_assets.lib.engine.spark import get_spark
from retail_assets.lib.registry.tables import Layer, TableSpec, catalog_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# The session catalog: the only catalog name Delta's `DeltaCatalog` serves without Unity Catalog.
LOCAL_CATALOG = "spark_catalog"
# Each write's commit carries a marker of its own as Delta's `userMetadata` (shown by DESCRIBE
# HISTORY), by which the write's commit is found again: the latest commit need not be the write's,
# since auto-compaction commits right after it and other writers may commit in between.
COMMIT_MARKER_PREFIX = "retail-assets write "
# History rows searched for the marker before the whole retained history is.
HISTORY_WINDOW = 10
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
_OUTSIDE_RANGE = ("DELTA_REPLACE_WHERE_MISMATCH", "does not conform to partial table overwrite condition")
_NOT_NULL = ("DELTA_NOT_NULL_CONSTRAINT_VIOLATED", "NOT NULL constraint violated")
# Reader features that leave a table's files plain Parquet of its rows named in the log's JSON
# and Parquet checkpoints (`file_ranges`; deletion vectors are refused file by file).
PLAIN_READER_FEATURES = frozenset(
    {"deletionVectors", "timestampNtz", "typeWidening", "typeWidening-preview", "v2Checkpoint", "vacuumProtocolCheck"}
)


class DeltaSparkEngine(LakehouseEngine):
    """Delta tables through delta-spark: Unity Catalog managed tables on a Databricks cluster,
    or, with `root`, external tables under a local folder named through Spark's session catalog.
    Serving shapes are views in the same catalog."""

    catalog_views = True

    def __init__(
        self, catalog: str, env: str, spark: SparkSession | None = None, *, root: str | Path | None = None
    ) -> None:
        if not catalog or not catalog.replace("_", "").isalnum():
            raise ValueError(f"catalog name must be alphanumeric (underscores allowed), got {catalog!r}")
        catalog_schema(Layer.BRONZE, env)  # validates the environment name early
        self.catalog = catalog
        self.env = env
        self.root = Path(root).resolve() if root else None
        self._spark = spark
        self._prepared: set[str] = set()
        self._attached: set[str] = set()

    @classmethod
    def local(cls, root: str | Path, env: str, spark: SparkSession | None = None) -> DeltaSparkEngine:
        return cls(LOCAL_CATALOG, env, spark, root=root)

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            # On a Databricks cluster this returns the cluster's own session.
            self._spark = get_spark()
        return self._spark

    def location(self, spec: TableSpec) -> str:
        return spec.catalog_name(self.catalog, self.env)

    def path(self, spec: TableSpec) -> Path | None:
        """Folder of a local table; None where the catalog owns the storage."""
        return None if self.root is None else self.root / spec.layer.value / spec.name

    def storage_id(self, spec: TableSpec) -> str:
        path = self.path(spec)
        return self.location(spec) if path is None else str(path)

    def scratch_location(self, name: str) -> Path | None:
        return None if self.root is None else self.root / "_scratch" / name

    def exists(self, spec: TableSpec) -> bool:
        if self.is_view(spec):
            return self._view_exists(spec)
        path = self.path(spec)
        if path is None:
            return self.spark.catalog.tableExists(self.location(spec))
        if not (path / "_delta_log").is_dir():
            return False
        self._attach(spec)
        return True

    def _view_exists(self, spec: TableSpec) -> bool:
        """A view in Unity Catalog exists once stated. The local session catalog forgets its views
        with its JVM, as it forgets table names: a view whose inputs are all on disk is stated
        again from its registry entry on first use in this engine, as a table is named after its folder."""
        name = self.location(spec)
        if self.root is not None and name not in self._attached:
            assert spec.view is not None
            if not all(self.exists(t) for t in spec.view.reads):
                return False
            self.spark.sql(self._view_sql(spec))
            self._attached.add(name)
        return self.spark.catalog.tableExists(name)

    def _view_sql(self, spec: TableSpec) -> str:
        assert spec.view is not None
        columns = ", ".join(
            f"{quote_name(c.name)}" + (f" COMMENT {sql_string(c.description)}" if c.description else "")
            for c in spec.columns
        )
        names = {t.name: quote_name(self.location(t)) for t in spec.view.reads}
        return (
            f"CREATE OR REPLACE VIEW {quote_name(self.location(spec))} ({columns})\n"
            f"COMMENT {sql_string(spec.description)}\nAS {spec.view.sql(names)}"
        )

    def create_view(self, spec: TableSpec) -> CommitInfo:
        assert spec.view is not None
        for table in spec.view.reads:  # a view names its inputs: they exist, empty if never written
            self._ensure_table(table)
        folder = None if self.root is None else str(self.root / spec.layer.value)
        self.spark.sql(create_schema_sql(self.catalog, spec.layer, self.env, folder))
        self.spark.sql(self._view_sql(spec))
        self._attached.add(self.location(spec))
        preview = self.spark.read.table(self.location(spec)).limit(PREVIEW_ROWS).toArrow()
        return CommitInfo(spec.key, self.location(spec), None, "CREATE VIEW", 0, preview)

    def _registered_path(self, name: str) -> str | None:
        if not self.spark.catalog.tableExists(name):
            return None
        row = self.spark.sql(f"DESCRIBE DETAIL {quote_name(name)}").first()
        return str(row["location"]).removeprefix("file:").rstrip("/") if row is not None else None

    def _attach(self, spec: TableSpec) -> None:
        """Name a local table in this session catalog after its folder, once per engine.

        A name the catalog already holds for another folder (another lakehouse served by the
        same Spark Connect server) is dropped first: the table is external, so only the name goes.
        """
        name = self.location(spec)
        if name in self._attached:
            return
        path = self.path(spec)
        assert path is not None
        self.spark.sql(create_schema_sql(self.catalog, spec.layer, self.env, str(path.parent)))
        registered = self._registered_path(name)
        if registered != str(path):
            if registered is not None:
                self.spark.sql(f"DROP TABLE IF EXISTS {quote_name(name)}")
            if (path / "_delta_log").is_dir():
                self.spark.sql(
                    f"CREATE TABLE IF NOT EXISTS {quote_name(name)} USING DELTA LOCATION {sql_string(str(path))}"
                )
            else:
                self.spark.sql(create_table_sql(spec, name, str(path)))
                self._prepared.add(name)
        self._attached.add(name)

    def _ensure_table(self, spec: TableSpec) -> None:
        name = self.location(spec)
        if name in self._prepared:
            return
        if self.root is not None:
            self._attach(spec)
        else:
            self.spark.sql(create_schema_sql(self.catalog, spec.layer, self.env))
            self.spark.sql(create_table_sql(spec, name))
        if name not in self._prepared:
            # An existing table may predate a registry change; re-assert only what differs, since
            # every ALTER is a commit of its own.
            current = {r["key"]: r["value"] for r in self.spark.sql(f"SHOW TBLPROPERTIES {quote_name(name)}").collect()}
            if any(current.get(k) != v for k, v in table_properties(spec).items()):
                self.spark.sql(set_properties_sql(spec, name))
        self._prepared.add(name)

    # ---- reads ---------------------------------------------------------------------------

    def read(
        self, spec: TableSpec, partitions: PartitionRange | None = None, *, columns: list[str] | None = None
    ) -> DataFrame:
        wanted = columns or spec.column_names
        if not self.exists(spec):
            return self.empty_frame(spec).select(*wanted)
        frame = self.spark.read.table(self.location(spec))
        if partitions is not None:
            frame = frame.where(replace_where(spec, partitions))
        # Columns registered after the table was written read as nulls (additive evolution).
        for name in wanted:
            if name not in frame.columns:
                frame = frame.withColumn(name, F.lit(None).cast(spec.column(name).type))
        return frame.select(*wanted)

    # ---- writes --------------------------------------------------------------------------

    def _frame(self, spec: TableSpec, data: DataFrame | pa.Table | RowStream) -> DataFrame:
        if isinstance(data, RowStream):
            data = data.read_all()  # Spark takes whole tables
        if isinstance(data, pa.Table):
            self.check_columns(spec, data.column_names)
            for field in spec.arrow_schema():
                if not field.nullable and data.column(field.name).null_count:
                    raise ValueError(
                        f"{spec.key}.{field.name} is declared NOT NULL but {data.column(field.name).null_count} rows are null"
                    )
            if data.num_rows == 0:  # Spark cannot take a schema from an empty Arrow table
                return self.empty_frame(spec)
            data = self.spark.createDataFrame(data.select(spec.column_names).cast(spec.arrow_schema()))
        self.check_columns(spec, data.columns)
        return data.select(*(data[c].cast(spec.column(c).type).alias(c) for c in spec.column_names))

    def _save(
        self,
        spec: TableSpec,
        frame: DataFrame,
        mode: str,
        options: Mapping[str, str],
        partitions: PartitionRange | None = None,
    ) -> None:
        """One commit through the DataFrameWriterV2 of the catalog table: unlike `saveAsTable`, its
        execution reports the DataFrame's observed metrics (`observed_by_day`) in every session,
        Spark Connect included. A partition overwrite is Delta's `replaceWhere` by condition."""

        options = dict(options)
        condition = options.pop("replaceWhere", None)
        writer = frame.writeTo(self.location(spec))
        for key, value in options.items():
            writer = writer.option(key, value)
        try:
            if mode == "append":
                writer.append()
            else:
                writer.overwrite(F.expr(condition) if condition else F.lit(True))
        except Exception as exc:
            text = str(exc)
            if partitions is not None and any(marker in text for marker in _OUTSIDE_RANGE):
                raise ValueError(
                    f"refusing to write {spec.key}: rows fall outside the partitions being replaced ({partitions})"
                ) from exc
            if any(marker in text for marker in _NOT_NULL):
                raise ValueError(
                    f"{spec.key}: a column declared NOT NULL received nulls ({text.splitlines()[0]})"
                ) from exc
            raise

    def _write(
        self,
        spec: TableSpec,
        frame: DataFrame,
        mode: str,
        options: Mapping[str, str],
        partitions: PartitionRange | None = None,
    ) -> str:
        """`_save` with a fresh marker in the commit's `userMetadata`; returns the marker."""
        marker = f"{COMMIT_MARKER_PREFIX}{uuid.uuid4()}"
        self._save(spec, frame, mode, {**options, "userMetadata": marker}, partitions)
        return marker

    def overwrite_partitions(
        self, spec: TableSpec, data: DataFrame | pa.Table | RowStream, partitions: PartitionRange
    ) -> CommitInfo:
        frame = self._frame(spec, data)
        self._ensure_table(spec)
        # replaceWhere's constraint check refuses a row outside the range within the write itself,
        # so the rows are computed once.
        marker = self._write(
            spec,
            frame,
            "overwrite",
            writer_options(mode="overwrite_partitions", partitions=(spec, partitions)),
            partitions,
        )
        return self._commit_info(spec, "overwrite", data, partitions, marker)

    def overwrite_table(self, spec: TableSpec, data: DataFrame | pa.Table | RowStream) -> CommitInfo:
        frame = self._frame(spec, data)
        self._ensure_table(spec)
        marker = self._write(spec, frame, "overwrite", writer_options(mode="overwrite_table"))
        return self._commit_info(spec, "overwrite", data, None, marker)

    def _merge(self, spec: TableSpec, source: DataFrame) -> CommitInfo:
        self._ensure_table(spec)
        marker = f"{COMMIT_MARKER_PREFIX}{uuid.uuid4()}"
        # A MERGE takes no writer options: its commit's userMetadata comes from the session.
        # The source as a temporary view, not a `spark.sql` argument: Spark Connect nests an
        # argument's plan two levels deeper, past protobuf's limit for a dimension's history.
        view = f"merge_source_{uuid.uuid4().hex}"
        source.createOrReplaceTempView(view)
        self.spark.conf.set(USER_METADATA_CONF, marker)
        try:
            self.spark.sql(merge_sql(spec, self.location(spec), view))
        finally:
            self.spark.conf.unset(USER_METADATA_CONF)
            self.spark.catalog.dropTempView(view)
        own = self._own_commit(spec, marker)
        if own is None:
            raise RuntimeError(f"{spec.key}: no commit of this MERGE (userMetadata {marker!r}) in its history")
        metrics = own["metrics"] or {}
        written = self.spark.read.option("versionAsOf", str(own["version"])).table(self.location(spec))
        return CommitInfo(
            table=spec.key,
            location=self.location(spec),
            version=int(own["version"]),
            operation="merge",
            rows_written=int(metrics.get("numTargetRowsInserted", 0)) + int(metrics.get("numTargetRowsUpdated", 0)),
            preview=written.select(*spec.column_names).limit(PREVIEW_ROWS).toArrow(),
            rows_deleted=int(metrics.get("numTargetRowsDeleted", 0)),
        )

    def append(
        self,
        spec: TableSpec,
        data: DataFrame | pa.Table | RowStream,
        *,
        app_id: str | None = None,
        app_version: int | None = None,
    ) -> CommitInfo:
        frame = self._frame(spec, data)
        self._ensure_table(spec)
        marker = self._write(
            spec, frame, "append", writer_options(mode="append", app_id=app_id, app_version=app_version)
        )
        if app_id is not None and self._own_commit(spec, marker, whole_history=False) is None:
            committed = self.app_transaction_version(spec, app_id)
            if committed is not None and app_version is not None and committed >= app_version:
                # Delta skips an idempotent append whose transaction version it already holds:
                # an earlier attempt committed these rows, this one wrote nothing.
                return CommitInfo(
                    spec.key,
                    self.location(spec),
                    self.version(spec) or 0,
                    "append",
                    0,
                    spec.arrow_schema().empty_table(),
                )
        return self._commit_info(spec, "append", data, None, marker)

    def _own_commit(self, spec: TableSpec, marker: str, *, whole_history: bool = True) -> dict[str, Any] | None:
        """The history entry of the commit carrying `marker`, searched among the latest
        `HISTORY_WINDOW` commits and then (`whole_history`) all retained ones; None if none has it."""

        name = self.location(spec)
        searches = [history_sql(name, HISTORY_WINDOW)] + (
            [f"DESCRIBE HISTORY {quote_name(name)}"] if whole_history else []
        )
        for sql in searches:
            row = self.spark.sql(sql).where(F.col("userMetadata") == marker).first()
            if row is not None:
                return history_entry(row.asDict(recursive=True))
        return None

    def _commit_info(
        self,
        spec: TableSpec,
        operation: str,
        data: DataFrame | pa.Table | RowStream,
        partitions: PartitionRange | None,
        marker: str,
    ) -> CommitInfo:
        rows: int | None = None
        preview: pa.Table | None = None
        if isinstance(data, RowStream):
            rows, preview = data.rows, data.preview
        elif isinstance(data, pa.Table):
            rows, preview = data.num_rows, data.slice(0, PREVIEW_ROWS)
        # Delta records no commit for a write that changes nothing (`skipRecordingEmptyCommits`, on
        # by default): an append of no rows, or a partition overwrite of no rows where the
        # partition held none. A write known to be empty is not searched for through all history.
        own = self._own_commit(spec, marker, whole_history=rows != 0)
        if own is None:
            if rows is None and not isinstance(data, (pa.Table, RowStream)):
                rows = 0 if data.isEmpty() else None
            # Any write of rows without its commit is an error. Nothing committed, so the
            # version reported is the table's as it stands.
            if rows != 0:
                raise RuntimeError(
                    f"{spec.key}: no commit of this write (userMetadata {marker!r}) in the history of {self.location(spec)}"
                )
            return CommitInfo(
                spec.key, self.location(spec), self.version(spec) or 0, operation, 0, spec.arrow_schema().empty_table()
            )
        version = int(own["version"])
        if rows is None:
            rows = int((own["metrics"] or {}).get("numOutputRows", 0))
            # Read back from the commit (its own version, not whatever committed since) rather
            # than computing the rows a second time.
            written = self.spark.read.option("versionAsOf", str(version)).table(self.location(spec))
            if partitions is not None:
                written = written.where(replace_where(spec, partitions))
            preview = written.select(*spec.column_names).limit(PREVIEW_ROWS).toArrow()
        return CommitInfo(
            table=spec.key,
            location=self.location(spec),
            version=version,
            operation=operation,
            rows_written=rows,
            preview=preview,
        )

    # ---- table state ---------------------------------------------------------------------

    def stored_schema(self, spec: TableSpec) -> list[tuple[str, str]]:
        """As the Delta log stores it; a view's, as its SELECT produces it."""
        if not self.exists(spec):
            return []
        return [(f.name, f.dataType.simpleString()) for f in self.spark.read.table(self.location(spec)).schema.fields]

    def version(self, spec: TableSpec) -> int | None:
        """None for a view: it has no commits."""
        latest = self.history(spec, 1) if self.exists(spec) else []
        return int(latest[0]["version"]) if latest else None

    def history(self, spec: TableSpec, limit: int = 5) -> list[dict[str, Any]]:
        if self.is_view(spec) or not self.exists(spec):
            return []
        rows = self.spark.sql(history_sql(self.location(spec), limit)).collect()
        return [history_entry(r.asDict(recursive=True)) for r in rows]

    def app_transaction_version(self, spec: TableSpec, app_id: str) -> int | None:
        """The idempotent-writer version recorded in the Delta log (`txn` actions).

        delta-spark has no public reader for `txn`; the log's JSON commits and checkpoints are
        read directly. Versions only grow per app id, so the maximum over what is still retained
        is the latest one.
        """
        if self.is_view(spec) or not self.exists(spec):
            return None

        detail = self.spark.sql(f"DESCRIBE DETAIL {quote_name(self.location(spec))}").first()
        log = f"{detail['location']}/_delta_log"
        versions = None
        for pattern, reader in (
            (f"{log}/*.json", self.spark.read.json),
            (f"{log}/*.checkpoint*.parquet", self.spark.read.parquet),
        ):
            try:
                frame = reader(pattern)
                if "txn" not in frame.columns:
                    continue
                row = frame.where(F.col("txn.appId") == app_id).agg(F.max("txn.version").alias("v")).first()
            except Exception as exc:
                # No checkpoint written yet is the normal young-table case (a Connect session
                # reports the missing path only when the plan is analysed, hence the wide try).
                if "PATH_NOT_FOUND" in str(exc) or "Path does not exist" in str(exc):
                    continue
                raise
            if row["v"] is not None:
                versions = max(versions or 0, int(row["v"]))
        return versions

    def file_ranges(self, spec: TableSpec, column: str) -> pa.Table | None:
        """From the Delta log's newest checkpoint and the JSON commits after it (`_log_actions`): a
        file is in the current version when its path's latest action is an add (an add wins over a
        remove of the same version). None where the log cannot be read (a Unity Catalog managed
        table's storage is not for path reads), a checkpoint keeps its files in sidecars, the
        protocol names a reader feature not in `PLAIN_READER_FEATURES` (column mapping,
        catalog-managed commits) or the files are not plain Parquet under `<column>=<value>/`
        (deletion vectors)."""
        if self.is_view(spec) or not self.exists(spec):
            return FILE_RANGES.empty_table()
        path = self.path(spec)
        location = str(path or self.spark.sql(f"DESCRIBE DETAIL {quote_name(self.location(spec))}").first()["location"])
        log = f"{location}/_delta_log"
        schema = (
            "add STRUCT<path: STRING, partitionValues: MAP<STRING, STRING>, stats: STRING, "
            "deletionVector: STRUCT<storageType: STRING>>, remove STRUCT<path: STRING>, sidecar STRUCT<path: STRING>, "
            "protocol STRUCT<minReaderVersion: INT, readerFeatures: ARRAY<STRING>>"
        )
        stats = F.from_json("add.stats", f"minValues STRUCT<`{column}`: STRING>, maxValues STRUCT<`{column}`: STRING>")
        try:
            actions = (
                self._log_actions(log, schema)
                .select(
                    F.coalesce("add.path", "remove.path").alias("path"),
                    "version",
                    F.col("add.path").isNotNull().alias("added"),
                    F.col("add.partitionValues").getItem(spec.partition_column).alias("partition"),
                    stats.getField("minValues").getField(column).alias("min"),
                    stats.getField("maxValues").getField(column).alias("max"),
                    F.col("add.deletionVector").isNotNull().alias("deletion_vector"),
                    "protocol",
                    F.col("sidecar.path").isNotNull().alias("sidecar"),
                )
                .where(F.col("path").isNotNull() | F.col("protocol").isNotNull() | F.col("sidecar"))
                .toArrow()
                .to_pylist()
            )
        except Exception:  # noqa: BLE001 - an unreadable log leaves the check its full read
            return None
        # Each path's latest action, an add over a remove of the same version; the latest protocol.
        latest: dict[str, dict[str, Any]] = {}
        for action in sorted(actions, key=lambda a: (a["version"], a["added"])):
            latest[action["path"]] = action
        found = [f for f in latest.values() if f["added"] and f["path"] is not None]
        protocol = max((a for a in actions if a["protocol"]), key=lambda a: a["version"], default={}).get("protocol")
        # reader version 2: column mapping
        if protocol is None or any(a["sidecar"] for a in actions) or protocol["minReaderVersion"] == 2:
            return None
        if set(protocol["readerFeatures"] or ()) - PLAIN_READER_FEATURES or any(
            f["deletion_vector"] or not f["path"].startswith(f"{spec.partition_column}=") for f in found
        ):
            return None
        rows = [
            {
                "partition": None if f["partition"] is None else dt.date.fromisoformat(f["partition"]),
                "file": f"{location}/{unquote(f['path'])}",  # the log's paths are URI-encoded
                "min": f["min"],
                "max": string_upper_bound(f["max"]),
            }
            for f in found
        ]
        return pa.Table.from_pylist(rows, schema=FILE_RANGES)

    def _log_actions(self, log: str, schema: str) -> DataFrame:
        """The actions of the newest complete checkpoint and of the commits after it (of every
        commit while there is no checkpoint), each with its `version`."""
        # The log's folder listed, not read (one path: listed by the driver, not a job per file;
        # Spark's readers skip `_last_checkpoint`, a name with `_`). A checkpoint in parts
        # (`<version>.checkpoint.<part>.<parts>.parquet`) counts once all its parts are there.
        listed = self.spark.read.format("binaryFile").load(log).select("path").collect()
        names = [r[0].rsplit("/", 1)[-1] for r in listed]
        names = [n for n in names if n[:20].isdigit() and n.endswith((".json", ".parquet"))]
        checkpoints = [n for n in names if ".checkpoint." in n and n.endswith(".parquet")]
        parts = Counter((n[:20], n.split(".")[-2]) for n in checkpoints if n.count(".") == 4)
        since = max(
            (
                int(n[:20])
                for n in checkpoints
                if n.count(".") != 4 or parts[n[:20], n.split(".")[-2]] == int(n.split(".")[-2])
            ),
            default=-1,
        )
        version = F.regexp_extract("_metadata.file_name", r"^(\d+)", 1).cast("long")
        frames = [
            self.spark.read.schema(schema)
            .format(form)
            .load([f"{log}/{n}" for n in chosen])
            .withColumn("version", version)
            for form, chosen in (
                ("json", [n for n in names if n.endswith(".json") and int(n[:20]) > since]),
                ("parquet", [n for n in checkpoints if int(n[:20]) == since]),
            )
            if chosen
        ]
        return frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])

    # ---- maintenance ---------------------------------------------------------------------

    def optimize(
        self, spec: TableSpec, partitions: PartitionRange | None = None, *, zorder: bool = True
    ) -> dict[str, Any]:
        if self.is_view(spec):
            return {"skipped": "a view has no files"}
        if not self.exists(spec):
            return {"skipped": "table does not exist"}
        sql = optimize_sql(spec, self.location(spec), partitions, zorder=zorder)
        row = self.spark.sql(sql).first()
        metrics = row.asDict(recursive=True).get("metrics", {}) if row is not None else {}
        return {
            "sql": sql,
            "files_added": metrics.get("numFilesAdded"),
            "files_removed": metrics.get("numFilesRemoved"),
        }

    def vacuum(self, spec: TableSpec, retain_hours: int = DEFAULT_VACUUM_RETAIN_HOURS) -> dict[str, Any]:
        if self.is_view(spec):
            return {"skipped": "a view has no files"}
        if not self.exists(spec):
            return {"skipped": "table does not exist"}
        sql = vacuum_sql(self.location(spec), retain_hours)
        self.spark.sql(sql)
        return {"sql": sql}


def history_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """One `DESCRIBE HISTORY` row in the engine-neutral shape of `LakehouseEngine.history`."""
    ts = row.get("timestamp")
    if isinstance(ts, dt.datetime):
        ts = (ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)).isoformat()
    return {
        "version": row.get("version"),
        "timestamp": ts,
        "operation": row.get("operation"),
        "parameters": row.get("operationParameters"),
        "metrics": row.get("operationMetrics"),
    }
