"""The Databricks engine's SQL, writer options and naming: as text where that is the point, and
run on the suite's Spark session with Delta Lake's jar where Delta's own answer is.

What these cannot prove — that a Databricks runtime and Unity Catalog accept the statements and
options — is said in the README's "Deploy to Databricks" section.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from retail_assets.defs.maintenance.jobs import lakehouse_maintenance
from retail_assets.lib import settings
from retail_assets.lib.engine import DeltaRsEngine, DeltaSparkEngine, PartitionRange, delta_sql
from retail_assets.lib.engine import delta_spark as ds
from retail_assets.lib.orchestration.resources import DatabricksLakehouseResource, KafkaResource, LakehouseResource
from retail_assets.lib.registry.tables import (
    BRONZE_STORES,
    GOLD_DIM_DATE,
    GOLD_FACT_SALES,
    SILVER_STORES,
    TABLES,
    Layer,
)
from retail_assets.lib.sources import spark_kafka
from retail_assets.lib.sources.kafka import OffsetRange, OffsetsNotRetained

DAY = dt.date(2026, 11, 2)


# ---- Unity Catalog naming -------------------------------------------------------------------


def test_unity_catalog_names_follow_catalog_env_layer_table():
    engine = DeltaSparkEngine("retail", "prod")
    assert engine.location(SILVER_STORES) == "retail.prod_silver.stores"
    assert engine.location(GOLD_FACT_SALES) == "retail.prod_gold.fact_sales"
    names = {engine.location(t) for t in TABLES}
    assert len(names) == len(TABLES)  # no two tables share a name
    with pytest.raises(ValueError, match="alphanumeric"):
        DeltaSparkEngine("retail", "pr-12")
    with pytest.raises(ValueError, match="catalog"):
        DeltaSparkEngine("retail;drop", "prod")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RETAIL_DEPLOYMENT_ENV": "Staging-EU"}, "staging_eu"),
        ({"DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT": "1", "DAGSTER_CLOUD_PULL_REQUEST_ID": "42"}, "pr_42"),
        ({"DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod"}, "prod"),
        ({}, "dev"),
    ],
)
def test_deployment_env_maps_branch_deployments_to_their_own_schemas(monkeypatch, env, expected):
    for name in (
        "RETAIL_DEPLOYMENT_ENV",
        "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT",
        "DAGSTER_CLOUD_PULL_REQUEST_ID",
        "DAGSTER_CLOUD_DEPLOYMENT_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert settings.deployment_env() == expected
    assert (
        DeltaSparkEngine("retail", settings.deployment_env()).location(BRONZE_STORES)
        == f"retail.{expected}_bronze.stores"
    )


# ---- SQL and writer options -----------------------------------------------------------------


def test_replace_where_confines_the_overwrite_to_the_partition_range():
    assert delta_sql.replace_where(SILVER_STORES, PartitionRange.single(DAY)) == "`_arrival_date` = DATE'2026-11-02'"
    assert (
        delta_sql.replace_where(GOLD_DIM_DATE, PartitionRange.around(DAY, 1, 2))
        == "`date` >= DATE'2026-11-01' AND `date` <= DATE'2026-11-04'"
    )


def test_create_table_sql_declares_columns_partitioning_and_properties():
    sql = delta_sql.create_table_sql(BRONZE_STORES, "retail.prod_bronze.stores")
    assert sql.startswith("CREATE TABLE IF NOT EXISTS `retail`.`prod_bronze`.`stores` (")
    assert "USING DELTA" in sql and "PARTITIONED BY (`_arrival_date`)" in sql
    assert "`_arrival_date` DATE NOT NULL" in sql
    assert "`store_id` STRING COMMENT" in sql
    assert "'delta.enableChangeDataFeed' = 'true'" in sql  # Bronze keeps its change feed
    assert "'delta.autoOptimize.optimizeWrite' = 'true'" in sql
    silver = delta_sql.create_table_sql(SILVER_STORES, "retail.prod_silver.stores")
    assert "enableChangeDataFeed" not in silver
    assert (
        delta_sql.create_schema_sql("retail", Layer.SILVER, "prod")
        == "CREATE SCHEMA IF NOT EXISTS `retail`.`prod_silver`"
    )
    assert delta_sql.set_properties_sql(BRONZE_STORES, "retail.prod_bronze.stores").startswith(
        "ALTER TABLE `retail`.`prod_bronze`.`stores` SET TBLPROPERTIES ("
    )


def test_comments_with_quotes_are_escaped():
    assert delta_sql.sql_string("it's a \\ path") == "'it\\'s a \\\\ path'"


def test_maintenance_sql():
    assert delta_sql.optimize_sql(GOLD_FACT_SALES, "retail.prod_gold.fact_sales") == (
        "OPTIMIZE `retail`.`prod_gold`.`fact_sales` ZORDER BY ("
        + ", ".join(f"`{c}`" for c in delta_sql.zorder_columns(GOLD_FACT_SALES))
        + ")"
    )
    assert GOLD_FACT_SALES.partition_column not in delta_sql.zorder_columns(GOLD_FACT_SALES)
    assert delta_sql.optimize_sql(SILVER_STORES, "c.s.t", PartitionRange.single(DAY), zorder=False) == (
        "OPTIMIZE `c`.`s`.`t` WHERE `_arrival_date` = DATE'2026-11-02'"
    )
    assert delta_sql.vacuum_sql("c.s.t") == "VACUUM `c`.`s`.`t` RETAIN 168 HOURS"
    with pytest.raises(ValueError, match="refusing to VACUUM"):
        delta_sql.vacuum_sql("c.s.t", 1)


def test_writer_options():
    assert delta_sql.writer_options(
        mode="overwrite_partitions", partitions=(SILVER_STORES, PartitionRange.single(DAY))
    ) == {
        "replaceWhere": "`_arrival_date` = DATE'2026-11-02'",
        "mergeSchema": "true",
    }
    assert delta_sql.writer_options(mode="overwrite_table") == {"mergeSchema": "true"}
    assert delta_sql.writer_options(mode="append", app_id="kafka-bronze", app_version=7) == {
        "mergeSchema": "true",
        "txnAppId": "kafka-bronze",
        "txnVersion": "7",
    }
    with pytest.raises(ValueError):
        delta_sql.writer_options(mode="append", app_id="kafka-bronze")
    with pytest.raises(ValueError):
        delta_sql.writer_options(mode="overwrite_partitions")


@pytest.mark.databricks
def test_partition_overwrite_is_the_ddl_then_one_overwrite_by_condition(spark, tmp_path):
    engine = DeltaSparkEngine.local(tmp_path / "lakehouse", "ci", spark=spark)
    name = engine.location(SILVER_STORES)
    rows = stores_rows(DAY)
    commit = engine.overwrite_partitions(SILVER_STORES, rows, PartitionRange.single(DAY))
    assert (commit.location, commit.version, commit.rows_written) == (
        "spark_catalog.ci_silver.stores",
        1,
        rows.num_rows,
    )
    history = {r["version"]: r.asDict(recursive=True) for r in spark.sql(delta_sql.history_sql(name, 10)).collect()}
    assert [history[v]["operation"] for v in sorted(history)] == ["CREATE TABLE", "WRITE"]
    write = history[1]["operationParameters"]
    assert (
        write["mode"] == "Overwrite" and "_arrival_date" in write["predicate"] and DAY.isoformat() in write["predicate"]
    )
    assert history[1]["engineInfo"].startswith("Apache-Spark/")

    # What `create_table_sql` declares is what Delta made of it.
    detail = spark.sql(f"DESCRIBE DETAIL {delta_sql.quote_name(name)}").first()
    assert (detail["format"], detail["partitionColumns"]) == ("delta", ["_arrival_date"])
    assert str(detail["location"]).removeprefix("file:").rstrip("/") == str(engine.path(SILVER_STORES))
    properties = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {delta_sql.quote_name(name)}").collect()}
    assert delta_sql.table_properties(SILVER_STORES).items() <= properties.items()
    assert "delta.enableChangeDataFeed" not in properties  # Bronze's alone
    fields = {f.name: f for f in spark.table(name).schema.fields}
    assert not fields["_arrival_date"].nullable
    described = next(c for c in SILVER_STORES.columns if c.description)
    assert fields[described.name].metadata.get("comment") == described.description

    # A row outside the partition is refused by Delta's own check of the condition; nothing commits.
    with pytest.raises(ValueError, match="outside the partitions"):
        engine.overwrite_partitions(SILVER_STORES, stores_rows(DAY + dt.timedelta(days=1)), PartitionRange.single(DAY))
    assert engine.version(SILVER_STORES) == 1

    # `OPTIMIZE … WHERE` confined to the day compacts its two files into one, without Z-order.
    engine.append(SILVER_STORES, rows)
    done = engine.optimize(SILVER_STORES, PartitionRange.single(DAY), zorder=False)
    assert (done["files_removed"], done["files_added"]) == (2, 1)
    optimize = spark.sql(delta_sql.history_sql(name, 1)).first().asDict(recursive=True)
    assert optimize["operation"] == "OPTIMIZE" and json.loads(optimize["operationParameters"]["zOrderBy"]) == []
    assert DAY.isoformat() in optimize["operationParameters"]["predicate"]
    assert spark.table(name).count() == 2 * rows.num_rows


def stores_rows(day: dt.date) -> pa.Table:
    schema = SILVER_STORES.arrow_schema()
    values = {
        pa.string(): "x",
        pa.date32(): day,
        pa.timestamp("us", tz="UTC"): dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
        pa.int64(): 1,
        pa.int32(): 1,
        pa.float64(): 1.0,
        pa.bool_(): True,
    }
    columns = {}
    for f in schema:
        value = day if f.name == SILVER_STORES.partition_column else values.get(f.type, None)
        if pa.types.is_list(f.type):
            value = []
        columns[f.name] = pa.array([value, value], f.type)
    return pa.table(columns, schema=schema)


# ---- the Kafka source on Databricks ---------------------------------------------------------


def test_kafka_source_options_carry_the_offset_contract():
    kafka = KafkaResource(
        bootstrap_servers="b1:9092,b2:9092",
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="svc",
        sasl_password='p"w',
    )
    ranges = [OffsetRange(1, 10, 20), OffsetRange(0, 5, 8), OffsetRange(1, 20, 25)]
    options = spark_kafka.source_options(kafka.client_config(), "retail.pos.transactions", ranges)
    assert json.loads(options["startingOffsets"]) == {"retail.pos.transactions": {"0": 5, "1": 10}}
    assert json.loads(options["endingOffsets"]) == {
        "retail.pos.transactions": {"0": 8, "1": 25}
    }  # end exclusive, as [start, end)
    assert json.loads(options["assign"]) == {"retail.pos.transactions": [0, 1]}
    assert options["failOnDataLoss"] == "true"
    assert options["kafka.bootstrap.servers"] == "b1:9092,b2:9092"
    assert options["kafka.sasl.jaas.config"] == (
        'kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule required username="svc" password="p\\"w";'
    )
    with pytest.raises(ValueError, match="leave a gap"):
        spark_kafka.source_options(kafka.client_config(), "t", [OffsetRange(0, 0, 5), OffsetRange(0, 7, 9)])


def test_spark_kafka_read_is_checked_against_its_ranges():
    ranges = [OffsetRange(0, 5, 8)]
    spark_kafka.check_offsets(ranges, [(0, 5), (0, 7)])  # a gap (transaction marker) is fine
    with pytest.raises(OffsetsNotRetained):
        spark_kafka.check_offsets(ranges, [(0, 8)])
    with pytest.raises(ValueError, match="twice"):
        spark_kafka.check_offsets(ranges, [(0, 5), (0, 5)])
    # A task's Arrow batch as the parser's message columns: Kafka timestamps in milliseconds,
    # a missing one negative as a consumer reports it; an offset outside the ranges is refused.
    sent = dt.datetime(2026, 11, 2, 8, 30, 0, 125_000, tzinfo=dt.UTC)
    batch = pa.RecordBatch.from_pydict(
        {
            "topic": ["t", "t"],
            "partition": [0, 0],
            "offset": [5, 6],
            "value": [b"{}", None],
            "timestamp": pa.array([sent, None], pa.timestamp("us", tz="UTC")),
        }
    )
    (columns,) = spark_kafka.message_columns(iter([batch]), spark_kafka.OffsetGuard(ranges))
    assert (columns.offsets, columns.values, columns.timestamps_ms) == (
        [5, 6],
        [b"{}", None],
        [int(sent.timestamp() * 1000), -1],
    )
    with pytest.raises(OffsetsNotRetained):
        list(spark_kafka.message_columns(iter([batch]), spark_kafka.OffsetGuard([OffsetRange(0, 5, 6)])))


# ---- resources ------------------------------------------------------------------------------


def test_databricks_lakehouse_resource_chooses_the_engine():
    uc = DatabricksLakehouseResource(
        catalog="retail", deployment_env="prod", landing_root="/Volumes/retail/prod_bronze/landing"
    ).create_engine()
    assert isinstance(uc, DeltaSparkEngine)
    assert (uc.location(SILVER_STORES), uc.path(SILVER_STORES)) == ("retail.prod_silver.stores", None)  # managed tables
    # The emulator's: external tables under a folder, named in Spark's session catalog.
    emulated = DatabricksLakehouseResource(
        catalog=ds.LOCAL_CATALOG, deployment_env="ci", landing_root="/l", root="/x"
    ).create_engine()
    assert isinstance(emulated, DeltaSparkEngine)
    assert (emulated.location(SILVER_STORES), emulated.path(SILVER_STORES)) == (
        "spark_catalog.ci_silver.stores",
        Path("/x/silver/stores"),
    )
    with pytest.raises(ValueError, match="delta_spark"):  # no delta-rs on Databricks
        DatabricksLakehouseResource(catalog="retail", deployment_env="ci", landing_root="/l", table_engine="delta_rs")


# ---- maintenance (locally through delta-rs) -------------------------------------------------


def test_maintenance_job_compacts_and_vacuums_local_tables(tmp_path):
    engine = DeltaRsEngine(tmp_path / "lakehouse")
    for _ in range(3):  # three commits, each leaving a file of the partition behind
        engine.overwrite_partitions(SILVER_STORES, stores_rows(DAY), PartitionRange.single(DAY))
        engine.append(SILVER_STORES, stores_rows(DAY))
    before = len(DeltaTable(engine.location(SILVER_STORES)).file_uris())
    assert before > 1
    result = lakehouse_maintenance.execute_in_process(
        resources={
            "lakehouse": LakehouseResource(root=str(tmp_path / "lakehouse"), landing_root=str(tmp_path / "landing")),
            "pyspark_step_launcher": dg.ResourceDefinition.none_resource(),
        },
        run_config={"ops": {"optimize_and_vacuum": {"config": {"tables": ["silver.stores"], "zorder": False}}}},
    )
    assert result.success
    table = DeltaTable(engine.location(SILVER_STORES))
    assert len(table.file_uris()) == 1
    assert table.history(1)[0]["operation"] in ("OPTIMIZE", "VACUUM END")
    assert table.to_pyarrow_table().num_rows == 4  # the data is unchanged
