"""Delta Lake as text: the table properties, DDL, partition predicates, maintenance SQL and writer
options the delta-spark engine (`delta_spark.py`) sends, as plain functions (no Spark here, so
the sensors and tests can use them without a JVM)."""

from __future__ import annotations

from collections.abc import Mapping

from retail_assets.lib.engine.base import PartitionRange, merge_clauses
from retail_assets.lib.registry.tables import Layer, TableSpec, catalog_schema

# Properties every table gets. Optimized writes and auto-compaction keep daily partition
# overwrites from leaving many small files behind; the deletion-vector default is kept.
BASE_PROPERTIES: Mapping[str, str] = {
    "delta.autoOptimize.optimizeWrite": "true",
    "delta.autoOptimize.autoCompact": "true",
    "delta.logRetentionDuration": "interval 30 days",
    "delta.deletedFileRetentionDuration": "interval 7 days",
}
# Bronze keeps its change data feed so downstream consumers (and audits) can see exactly which
# records a re-materialized arrival partition replaced.
BRONZE_PROPERTIES: Mapping[str, str] = {"delta.enableChangeDataFeed": "true"}

DEFAULT_VACUUM_RETAIN_HOURS = 168


def table_properties(spec: TableSpec) -> dict[str, str]:
    props = dict(BASE_PROPERTIES)
    if spec.layer.raw:
        props.update(BRONZE_PROPERTIES)
    props["retail.layer"] = spec.layer.value
    props["retail.grain"] = spec.grain
    props["retail.primary_key"] = ",".join(spec.primary_key)
    return props


def quote_name(name: str) -> str:
    """Back-quote every part of a (possibly three-part) name."""
    return ".".join(f"`{part.replace('`', '``')}`" for part in name.split("."))


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def replace_where(spec: TableSpec, partitions: PartitionRange) -> str:
    """The `replaceWhere` predicate that confines an overwrite to the partition range."""
    column = f"`{spec.partition_column}`"
    if partitions.start == partitions.end:
        return f"{column} = DATE'{partitions.start.isoformat()}'"
    return f"{column} >= DATE'{partitions.start.isoformat()}' AND {column} <= DATE'{partitions.end.isoformat()}'"


def create_schema_sql(catalog: str, layer: Layer, env: str, location: str | None = None) -> str:
    sql = f"CREATE SCHEMA IF NOT EXISTS {quote_name(catalog)}.{quote_name(catalog_schema(layer, env))}"
    return sql + (f" LOCATION {sql_string(location)}" if location else "")


def create_table_sql(spec: TableSpec, name: str, location: str | None = None) -> str:
    """DDL of a registered table: columns with nullability and comments, partitioning, properties."""
    columns = ",\n  ".join(
        f"`{c.name}` {c.type.upper()}{'' if c.nullable else ' NOT NULL'}"
        + (f" COMMENT {sql_string(c.description)}" if c.description else "")
        for c in spec.columns
    )
    props = ",\n  ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in table_properties(spec).items())
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_name(name)} (\n  {columns}\n)\nUSING DELTA\n"
        f"PARTITIONED BY (`{spec.partition_column}`)\n"
        + (f"LOCATION {sql_string(location)}\n" if location else "")
        + f"COMMENT {sql_string(spec.description or spec.grain)}\n"
        f"TBLPROPERTIES (\n  {props}\n)"
    )


def set_properties_sql(spec: TableSpec, name: str) -> str:
    """Re-assert the properties on an existing table (they may predate a registry change)."""
    props = ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in table_properties(spec).items())
    return f"ALTER TABLE {quote_name(name)} SET TBLPROPERTIES ({props})"


def zorder_columns(spec: TableSpec) -> list[str]:
    """Columns to cluster files by: the key columns, never the partition column (Delta forbids it)."""
    return [c for c in spec.primary_key if c != spec.partition_column][:4]


def optimize_sql(spec: TableSpec, name: str, partitions: PartitionRange | None = None, *, zorder: bool = True) -> str:
    sql = f"OPTIMIZE {quote_name(name)}"
    if partitions is not None:
        sql += f" WHERE {replace_where(spec, partitions)}"
    cols = zorder_columns(spec) if zorder else []
    if cols:
        sql += " ZORDER BY (" + ", ".join(f"`{c}`" for c in cols) + ")"
    return sql


def vacuum_sql(name: str, retain_hours: int = DEFAULT_VACUUM_RETAIN_HOURS) -> str:
    if retain_hours < DEFAULT_VACUUM_RETAIN_HOURS:
        # Shorter than the deleted-file retention would break time travel and concurrent readers.
        raise ValueError(
            f"refusing to VACUUM with {retain_hours}h retention; the minimum is {DEFAULT_VACUUM_RETAIN_HOURS}h"
        )
    return f"VACUUM {quote_name(name)} RETAIN {retain_hours} HOURS"


def merge_sql(spec: TableSpec, name: str, source: str) -> str:
    """MERGE the view `source` (`base.merge_source`) into table `name` on its primary key."""
    match, deletes = merge_clauses(spec)
    columns = spec.column_names
    return (
        f"MERGE INTO {quote_name(name)} t USING {quote_name(source)} s ON {match} "
        f"WHEN MATCHED AND {deletes} THEN DELETE "
        f"WHEN MATCHED THEN UPDATE SET {', '.join(f't.{c} = s.{c}' for c in columns)} "
        f"WHEN NOT MATCHED AND NOT {deletes} THEN INSERT ({', '.join(columns)}) VALUES ({', '.join(f's.{c}' for c in columns)})"
    )


def history_sql(name: str, limit: int) -> str:
    return f"DESCRIBE HISTORY {quote_name(name)} LIMIT {int(limit)}"


def writer_options(
    *,
    mode: str,
    partitions: tuple[TableSpec, PartitionRange] | None = None,
    app_id: str | None = None,
    app_version: int | None = None,
) -> dict[str, str]:
    """Options of one Delta write.

    `replaceWhere` is the condition of a partition overwrite; `mergeSchema` lets a registry
    column added later evolve the table additively; `txnAppId`/`txnVersion` make an
    append idempotent and leave the resume point in the Delta log itself (SPEC §5).
    """
    options: dict[str, str] = {}
    if mode == "overwrite_partitions":
        if partitions is None:
            raise ValueError("a partition overwrite needs its partition range")
        spec, rng = partitions
        options["replaceWhere"] = replace_where(spec, rng)
        options["mergeSchema"] = "true"
    elif mode == "overwrite_table":
        options["mergeSchema"] = "true"
    elif mode == "append":
        options["mergeSchema"] = "true"
        if app_id is not None:
            if app_version is None:
                raise ValueError("append with app_id needs app_version")
            options["txnAppId"] = app_id
            options["txnVersion"] = str(int(app_version))
    else:
        raise ValueError(f"unknown write mode {mode!r}")
    return options
