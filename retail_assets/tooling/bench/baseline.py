"""The baseline: the Gold tables computed by one plain PySpark job, as a user would write it.

    python -m retail_assets.tooling.bench.baseline --landing DIR --bootstrap HOST:PORT \
        --start-date 2026-11-01 --days 7 --out DIR

No Dagster, no engine, no partition loop, no Delta log: read every landing file and every Kafka
message once, run the project's pure transformation functions over the whole range in one
Spark session, write each Gold table as Parquet under `<out>/gold/<table>`. It is the job a user
would otherwise submit with `spark-submit`, and what `retail-assets bench` times the pipeline
against. Record parsing and the transformations are the project's own (a user would import
them), so the comparison measures what orchestration, partitioning and Delta cost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from functools import reduce
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from retail_assets.lib.engine.base import PartitionRange
from retail_assets.lib.engine.spark import local_conf
from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import (
    BRONZE_INVENTORY,
    BRONZE_POS_TRANSACTIONS,
    BRONZE_SALES_FILES,
    GOLD_AGG_CUSTOMER_LIFETIME_VALUE,
    GOLD_AGG_DAILY_STORE_SALES,
    GOLD_AGG_INVENTORY_COVER,
    GOLD_AGG_PRODUCT_PERFORMANCE,
    GOLD_CUSTOMER_DAILY_VALUE,
    GOLD_DIM_CUSTOMER,
    GOLD_DIM_DATE,
    GOLD_DIM_PRODUCT,
    GOLD_DIM_STORE,
    GOLD_FACT_SALES,
    KAFKA_TOPIC,
    LANDING_SOURCES,
    SILVER_CUSTOMERS,
    SILVER_PRODUCTS,
    SILVER_STORES,
    Layer,
    TableSpec,
    tables_in,
)
from retail_assets.lib.sources import kafka as kafka_lib
from retail_assets.lib.sources.landing import scan_landing
from retail_assets.lib.transforms import gold, silver
from retail_assets.lib.transforms.ingest import PosEvents, parse_landing_file

# The inventory-cover window of `gold.agg_inventory_cover` in the asset graph; the bench's Gold
# comparison fails if the two ever disagree.
COVER_WINDOW_DAYS = 7
BATCH_ID = "baseline"
# Every Gold table of the registry: one the baseline does not build is a mismatch, never skipped.
# Serving shapes are one SELECT over these (`TableSpec.view`), the same SQL in either pipeline:
# the tables they select from are what is compared.
GOLD_TABLES = tuple(t for t in tables_in(Layer.GOLD) if t.view is None)


def spark_session(master: str) -> SparkSession:
    builder = SparkSession.builder.appName("retail-baseline").master(master)
    for key, value in local_conf().items():
        builder = builder.config(key, value)
    # Readers outside Spark (pyarrow) expect microsecond timestamps rather than INT96.
    builder = builder.config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def frame(spark: SparkSession, data: pa.Table, spec: TableSpec, scratch: Path) -> DataFrame:
    """Parsed records as a DataFrame Spark reads from disk: a Parquet file of them, as a job would
    stage its input (handing the rows over in memory would hold a week in the driver's heap)."""
    if data.num_rows == 0:
        return spark.createDataFrame([], spec.spark_ddl())
    folder = scratch / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(data.cast(spec.arrow_schema()), folder / "part-0.parquet")
    return spark.read.schema(spec.spark_ddl()).parquet(str(folder))


def read_landing(
    spark: SparkSession, landing: Path, arrivals: PartitionRange, scratch: Path
) -> dict[TableSpec, DataFrame]:
    """Every complete landing file of the arrival range, parsed into Bronze rows."""
    ingested_at = dt.datetime.now(dt.UTC)
    out = {}
    for source, spec in LANDING_SOURCES.items():
        parsed = [
            parse_landing_file(f, spec, batch_id=BATCH_ID, ingested_at=ingested_at)
            for f in scan_landing(landing, source, partitions=arrivals)
        ]
        out[spec] = frame(
            spark, pa.concat_tables(parsed) if parsed else spec.arrow_schema().empty_table(), spec, scratch
        )
    return out


def read_kafka(
    spark: SparkSession, config: dict[str, object], topic: str, arrivals: PartitionRange, scratch: Path
) -> DataFrame:
    """Every message on the topic; its arrival day is the UTC day of its Kafka timestamp."""
    ranges = [
        kafka_lib.OffsetRange(p, low, high)
        for p, (low, high) in kafka_lib.watermarks(config, topic).items()
        if high > low
    ]
    events = PosEvents(batch_id=BATCH_ID, ingested_at=dt.datetime.now(dt.UTC))
    for batch in kafka_lib.read_ranges(config, topic, ranges):
        for topic_, partition, offset, value, ms in zip(
            batch.topics, batch.partitions, batch.offsets, batch.values, batch.timestamps_ms
        ):
            arrival = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()
            if arrivals.start <= arrival <= arrivals.end:
                events.add(
                    value, topic=topic_, partition=partition, offset=offset, timestamp_ms=ms, arrival_date=arrival
                )
    return frame(spark, events.table(), BRONZE_POS_TRANSACTIONS, scratch)


def union(frames: list[DataFrame]) -> DataFrame:
    return reduce(DataFrame.unionByName, frames)


def per_arrival_day(bronze: DataFrame, days: list[dt.date], clean) -> DataFrame:
    """Silver master data is defined per arrival day (a re-sent record on a later day is kept
    there too): clean each day's records on their own, in one plan."""
    return union([clean(bronze.where(F.col("_arrival_date") == F.lit(d))).accepted for d in days])


def build_gold(
    bronze: dict[TableSpec, DataFrame], *, event_days: list[dt.date], arrival_days: list[dt.date], lateness_days: int
) -> dict[str, DataFrame]:
    L = lateness_days
    # Every intermediate used more than once is materialized with its lineage cut
    # (`localCheckpoint`): without it each Gold write would re-plan the whole Silver logic.
    customers, products, stores = (
        per_arrival_day(
            bronze[spec.refines],
            arrival_days,
            lambda b, spec=spec: silver.clean_master_data(b, spec, batch_id=BATCH_ID),
        ).localCheckpoint()
        for spec in (SILVER_CUSTOMERS, SILVER_PRODUCTS, SILVER_STORES)
    )
    known = silver.known_keys(customers, products, stores).localCheckpoint()
    inventory = per_arrival_day(
        bronze[BRONZE_INVENTORY],
        arrival_days,
        lambda b: silver.clean_inventory(b, known, lateness_days=L, batch_id=BATCH_ID),
    ).localCheckpoint()

    candidates = silver.sales_candidates_from_files(bronze[BRONZE_SALES_FILES]).unionByName(
        silver.sales_candidates_from_events(bronze[BRONZE_POS_TRANSACTIONS])
    )
    # sales lines and returns both derive from the classification: materialize it once
    classified = silver.clean_sales(candidates, known, lateness_days=L, batch_id=BATCH_ID).classification
    sales = silver.sales_outputs(classified.localCheckpoint(), batch_id=BATCH_ID)
    in_range = F.col("event_date").between(F.lit(event_days[0]), F.lit(event_days[-1]))
    sales_lines = sales.sales_lines.where(in_range).localCheckpoint()
    returns = sales.returns.where(in_range).localCheckpoint()

    processed_at = dt.datetime.now(dt.UTC)
    dims = {"processed_at": processed_at, "arrival_date": arrival_days[-1]}
    lines = sales_lines.unionByName(returns)

    def inferred(key: str):
        return gold.inferred_keys(lines, key, rules.unknown_master(key.removesuffix("_id")))

    dim_customer = gold.build_dim_customer(customers, inferred=inferred("customer_id"), **dims).localCheckpoint()
    dim_product = gold.build_dim_product(products, inferred=inferred("product_id"), **dims).localCheckpoint()
    dim_store = gold.build_dim_store(stores, inferred=inferred("store_id"), **dims).localCheckpoint()
    fact = gold.build_fact_sales(
        sales_lines, returns, dim_customer, dim_product, dim_store, processed_at=processed_at
    ).localCheckpoint()
    spark = fact.sparkSession
    customer_days = gold.customer_daily_value(fact).localCheckpoint()
    return {
        GOLD_DIM_CUSTOMER.name: dim_customer,
        GOLD_DIM_PRODUCT.name: dim_product,
        GOLD_DIM_STORE.name: dim_store,
        GOLD_DIM_DATE.name: gold.build_dim_date(event_days, spark),
        GOLD_FACT_SALES.name: fact,
        GOLD_AGG_DAILY_STORE_SALES.name: gold.agg_daily_store_sales(fact),
        GOLD_AGG_PRODUCT_PERFORMANCE.name: gold.agg_product_performance(fact, dim_product),
        GOLD_CUSTOMER_DAILY_VALUE.name: customer_days,
        GOLD_AGG_CUSTOMER_LIFETIME_VALUE.name: gold.agg_customer_lifetime_value(customer_days),
        GOLD_AGG_INVENTORY_COVER.name: union(
            [
                # a snapshot of day D counts when it arrived on D … D+L
                gold.agg_inventory_cover(
                    inventory.where(F.col("_arrival_date").between(F.lit(d), F.lit(d + dt.timedelta(days=L)))),
                    fact,
                    snapshot_date=d,
                    window_days=COVER_WINDOW_DAYS,
                )
                for d in event_days
            ]
        ),
    }


def run(
    *,
    landing: Path,
    bootstrap: str,
    topic: str,
    start: dt.date,
    days: int,
    lateness_days: int,
    out: Path,
    master: str = "local[*]",
) -> dict[str, object]:
    """The whole job; returns its timings and the rows it wrote per Gold table."""
    started = time.monotonic()
    spark = spark_session(master)
    session_s = time.monotonic() - started
    event_days = [start + dt.timedelta(days=i) for i in range(days)]
    arrival_days = [start + dt.timedelta(days=i) for i in range(days + lateness_days)]
    arrivals = PartitionRange(arrival_days[0], arrival_days[-1])

    read_started = time.monotonic()
    scratch = out / "bronze"
    bronze = read_landing(spark, landing, arrivals, scratch)
    bronze[BRONZE_POS_TRANSACTIONS] = read_kafka(spark, {"bootstrap.servers": bootstrap}, topic, arrivals, scratch)
    read_s = time.monotonic() - read_started

    compute_started = time.monotonic()
    tables = build_gold(bronze, event_days=event_days, arrival_days=arrival_days, lateness_days=lateness_days)
    rows = {}
    for name, df in tables.items():
        df.write.mode("overwrite").parquet(str(out / "gold" / name))
        rows[name] = spark.read.parquet(str(out / "gold" / name)).count()
    compute_s = time.monotonic() - compute_started
    return {
        "gold_rows": rows,
        "session_s": round(session_s, 2),
        "read_s": round(read_s, 2),
        "compute_write_s": round(compute_s, 2),
        "wall_s": round(time.monotonic() - started, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retail_assets.tooling.bench.baseline", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--landing", required=True, type=Path, help="landing zone root (sales/, customers/, …)")
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--topic", default=KAFKA_TOPIC)
    parser.add_argument("--start-date", required=True, type=dt.date.fromisoformat, help="first business day")
    parser.add_argument("--days", type=int, default=7, help="business days")
    parser.add_argument("--lateness-days", type=int, default=int(os.environ.get("RETAIL_LATENESS_DAYS", "2")))
    parser.add_argument("--out", required=True, type=Path, help="folder for gold/<table> Parquet output")
    parser.add_argument("--master", default=os.environ.get("RETAIL_SPARK_MASTER", "local[*]"))
    parser.add_argument("--report", type=Path, help="write the timings as JSON here")
    args = parser.parse_args(argv)
    figures = run(
        landing=args.landing,
        bootstrap=args.bootstrap,
        topic=args.topic,
        start=args.start_date,
        days=args.days,
        lateness_days=args.lateness_days,
        out=args.out,
        master=args.master,
    )
    text = json.dumps(figures, indent=2)
    if args.report:
        args.report.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
