"""Sensors that start Bronze: new complete files in the landing zone, Kafka lag, and new changes
in the operational database.

Everything below Bronze follows by declarative automation (see `definitions.py`), with one
exception: a Kafka run carries today's events on down to the fact table itself (`STREAM_LANE`),
so a point-of-sale event reaches Gold in one run rather than three automation hops. Both
sensors decide from committed Bronze data what is already ingested; their run keys make sure the
same batch of files, the same offset range or the same change range is never requested twice.
"""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg

from retail_assets.lib import settings
from retail_assets.lib.deployment.workspace import WORKSPACE_ERRORS, DatabricksWorkspaceResource
from retail_assets.lib.orchestration.change_sensing import (
    DatabaseCursor,
    base_key,
    batch_run_key,
    decide_database_run,
)
from retail_assets.lib.orchestration.factories import asset_key, daily_partitions
from retail_assets.lib.orchestration.resources import DatabaseResource, KafkaResource, LakehouseResource
from retail_assets.lib.orchestration.sensing import KafkaCursor, decide_kafka_run, new_landing_batches
from retail_assets.lib.registry.tables import (
    BRONZE_ORDERS_CHANGES,
    BRONZE_POS_TRANSACTIONS,
    GOLD_DIM_DATE,
    GOLD_FACT_SALES,
    LANDING_SOURCES,
    SILVER_RETURNS,
    SILVER_SALES_LINES,
)
from retail_assets.lib.sources import database as database_lib
from retail_assets.lib.sources import kafka as kafka_lib

LANDING_SENSOR = "landing_zone_sensor"
KAFKA_SENSOR = "kafka_offsets_sensor"
DATABASE_SENSOR = "database_changes_sensor"
LANDING_INTERVAL_S = 15
KAFKA_INTERVAL_S = 5
DATABASE_INTERVAL_S = 15
# A database tick makes one bounded query (the newest change_id) on one connection.
DATABASE_TICK_TIMEOUT_S = 5.0
# A Kafka tick makes at most two bounded broker calls (metadata, watermarks); a landing tick none.
KAFKA_TICK_TIMEOUT_S = 5.0

# A Kafka run's tables: today's Bronze offsets, the Silver lines and returns they become, the
# day's calendar row (the fact's date key must resolve even before the day's automation made
# it) and the fact rows those feed, in one run and one Spark session. Runs tagged with the lane
# run one at a time and ahead of queued catch-up work (instance settings in `cli.INSTANCE_CONFIG`).
STREAM_LANE = (BRONZE_POS_TRANSACTIONS, SILVER_SALES_LINES, SILVER_RETURNS, GOLD_DIM_DATE, GOLD_FACT_SALES)
LANE_TAGS = {"retail/lane": "stream", "dagster/priority": "10"}

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def default_status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if settings.sensors_running_by_default() else dg.DefaultSensorStatus.STOPPED


def days_in_flight(instance: dg.DagsterInstance, sensor_name: str) -> dict[str, str]:
    """Partition → run id of this sensor's runs that have not finished yet."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT, tags={"dagster/sensor_name": sensor_name}))
    return {run.tags["dagster/partition"]: run.run_id for run in runs if "dagster/partition" in run.tags}


@dg.sensor(
    name=LANDING_SENSOR,
    description=(
        "Finds complete files in the landing zone that Bronze does not hold yet and requests one run "
        "per arrival day for the Bronze tables of their folders. Files still being written "
        "(temporary names, or modified within the stability window) wait for a later tick."
    ),
    target=dg.AssetSelection.assets(*(asset_key(spec) for spec in LANDING_SOURCES.values())),
    minimum_interval_seconds=LANDING_INTERVAL_S,
    default_status=default_status(),
)
def landing_zone_sensor(
    context: dg.SensorEvaluationContext,
    lakehouse: LakehouseResource,
    databricks: dg.ResourceParam[DatabricksWorkspaceResource | None],
):
    started = time.perf_counter()
    view = lakehouse.view(databricks)
    try:
        batches, seen = new_landing_batches(view, LANDING_SOURCES, stable_seconds=lakehouse.landing_stable_seconds)
    except WORKSPACE_ERRORS as exc:
        yield dg.SkipReason(f"the Databricks workspace did not answer; will retry next tick: {exc}"[:1000])
        return
    if not batches:
        yield dg.SkipReason(
            f"no new complete files among the {seen} in {view.landing_root} ({time.perf_counter() - started:.2f}s)"
        )
        return
    busy = days_in_flight(context.instance, LANDING_SENSOR)
    partitions = daily_partitions()
    first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
    waiting: list[str] = []
    requested = 0
    for batch in batches:
        day = batch.day.isoformat()
        if not first <= day <= last:
            # A folder dated ahead of the calendar waits for its day; one before the first
            # partition can never be ingested and needs a person (RETAIL_PARTITIONS_START).
            when = (
                "waits for that partition to open"
                if day > last
                else f"is before the first partition {first}; move it or lower RETAIL_PARTITIONS_START"
            )
            waiting.append(f"{batch.describe()}; {when}")
            continue
        if day in busy:
            # The running ingestion of this day may not see these files; a later tick asks again.
            waiting.append(f"{batch.describe()}; waiting for run {busy[day]} of that day to finish")
            continue
        requested += 1
        yield dg.RunRequest(
            run_key=batch.run_key,
            partition_key=day,
            asset_selection=[asset_key(LANDING_SOURCES[source]) for source in batch.sources],
            tags={"retail/trigger": batch.describe()[:250], "retail/new_files": str(len(batch.files))},
        )
    for note in waiting:
        context.log.warning(note)
    if not requested:
        yield dg.SkipReason(" | ".join(waiting)[:1000])
    context.log.info(
        f"{requested} run(s) requested for new files among {seen}; tick took {time.perf_counter() - started:.2f}s"
    )


def last_run_status(instance: dg.DagsterInstance, run_key: str | None) -> str | None:
    if run_key is None:
        return None
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
    return runs[0].status.value if runs else None


def other_writer(instance: dg.DagsterInstance, partition: str) -> str | None:
    """Another unfinished run (not this sensor's) writing a lane table's `partition`, if any."""
    lane = {asset_key(spec) for spec in STREAM_LANE}
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT, tags={"dagster/partition": partition}))
    for run in runs:
        if run.tags.get("dagster/sensor_name") == KAFKA_SENSOR:
            continue
        touched = lane if run.asset_selection is None else lane & set(run.asset_selection)
        if touched:
            names = ", ".join(sorted(k.to_user_string() for k in touched))
            return f"run {run.run_id[:8]} ({run.status.value.lower()}) writing {names} for {partition}"
    return None


@dg.sensor(
    name=KAFKA_SENSOR,
    description=(
        "Compares the topic's high watermarks with the offsets committed to Bronze and requests a "
        "run for today's arrival partition when the lag passes a threshold or the oldest pending "
        "offset has waited too long: Bronze, then the Silver sales lines and returns and the fact "
        "rows they feed. Broker calls are bounded; an unreachable broker skips the tick with the reason."
    ),
    target=dg.AssetSelection.assets(*(asset_key(spec) for spec in STREAM_LANE)),
    minimum_interval_seconds=KAFKA_INTERVAL_S,
    default_status=default_status(),
)
def kafka_offsets_sensor(
    context: dg.SensorEvaluationContext,
    lakehouse: LakehouseResource,
    kafka: KafkaResource,
    databricks: dg.ResourceParam[DatabricksWorkspaceResource | None],
):
    cursor = KafkaCursor.loads(context.cursor)
    timeout = min(kafka.request_timeout_s, KAFKA_TICK_TIMEOUT_S)
    try:
        high = {
            p: hw for p, (_, hw) in kafka_lib.watermarks(kafka.client_config(), kafka.topic, timeout=timeout).items()
        }
    except kafka_lib.KafkaUnavailable as exc:
        return dg.SkipReason(f"Kafka broker {kafka.bootstrap_servers} unreachable; will retry next tick: {exc}")
    try:
        committed = lakehouse.view(databricks).committed_offsets(BRONZE_POS_TRANSACTIONS)
    except WORKSPACE_ERRORS as exc:
        return dg.SkipReason(f"the Databricks workspace did not answer; will retry next tick: {exc}"[:1000])
    today = dt.datetime.now(dt.UTC).date().isoformat()
    decision = decide_kafka_run(
        topic=kafka.topic,
        high=high,
        committed=committed,
        cursor=cursor,
        now=time.time(),
        lag_threshold=settings.kafka_lag_threshold(),
        max_wait_s=settings.kafka_max_wait_seconds(),
        last_run_status=last_run_status(context.instance, cursor.last_run_key),
        blocked_by=other_writer(context.instance, today),
    )
    context.update_cursor(decision.cursor.dumps())
    if not decision.request:
        return dg.SkipReason(decision.reason)
    return dg.RunRequest(
        run_key=decision.run_key,
        partition_key=today,
        asset_selection=[asset_key(spec) for spec in STREAM_LANE],
        tags={
            **LANE_TAGS,
            "retail/trigger": decision.reason[:250],
            "retail/offset_ranges": ",".join(map(str, decision.ranges))[:250],
        },
    )


def extraction_in_flight(instance: dg.DagsterInstance) -> str | None:
    """An unfinished run (this sensor's or anyone's) that writes the database's Bronze table."""
    key = asset_key(BRONZE_ORDERS_CHANGES)
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT)):
        if (
            run.tags.get("dagster/sensor_name") == DATABASE_SENSOR
            or run.job_name == BRONZE_ORDERS_CHANGES.stage
            or (run.asset_selection is not None and key in run.asset_selection)
        ):
            return f"run {run.run_id[:8]} ({run.status.value.lower()}) of {key.to_user_string()}"
    return None


def newest_status(instance: dg.DagsterInstance, *run_keys: str | None) -> str | None:
    """The status of the newest run requested under any of `run_keys`."""
    records = [
        record
        for run_key in dict.fromkeys(k for k in run_keys if k)
        for record in instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
    ]
    if not records:
        return None
    return max(records, key=lambda r: r.create_timestamp).dagster_run.status.value


@dg.sensor(
    name=DATABASE_SENSOR,
    description=(
        "Compares the operational database's newest change_id with the highest one committed to Bronze and "
        "requests one run of today's arrival partition per new batch of changes, none while an extraction is "
        "unfinished. One bounded query per tick; an unreachable or unconfigured database skips the tick saying so."
    ),
    target=dg.AssetSelection.assets(asset_key(BRONZE_ORDERS_CHANGES)),
    minimum_interval_seconds=DATABASE_INTERVAL_S,
    default_status=default_status(),
)
def database_changes_sensor(
    context: dg.SensorEvaluationContext,
    lakehouse: LakehouseResource,
    database: DatabaseResource,
    databricks: dg.ResourceParam[DatabricksWorkspaceResource | None],
):
    if not database.configured:
        return dg.SkipReason(
            "no operational database is configured (RETAIL_DB_JDBC_URL is not set); nothing to extract"
        )
    table = f"{database.source_schema}.{database_lib.CHANGE_TABLE}"
    try:
        newest = database.source_max(timeout_s=min(database.connect_timeout_s, DATABASE_TICK_TIMEOUT_S))
    except database_lib.DatabaseUnavailable as exc:
        return dg.SkipReason(f"the database {database.where} is unreachable; will retry next tick: {exc}"[:1000])
    except (database_lib.DatabaseRefused, database_lib.CaptureNotInstalled) as exc:
        return dg.SkipReason(f"cannot read {table}: {exc}"[:1000])
    try:
        committed = lakehouse.view(databricks).committed_max(BRONZE_ORDERS_CHANGES, "change_id")
    except WORKSPACE_ERRORS as exc:
        return dg.SkipReason(f"the Databricks workspace did not answer; will retry next tick: {exc}"[:1000])
    cursor = DatabaseCursor.loads(context.cursor)
    batch_key = batch_run_key(table, database_lib.ChangeRange(committed, newest))
    retried = cursor.last_run_key if base_key(cursor.last_run_key) == batch_key else None
    decision = decide_database_run(
        table=table,
        source_max=newest,
        committed=committed,
        cursor=cursor,
        now=time.time(),
        requested_status=newest_status(context.instance, batch_key, retried),
        in_flight=extraction_in_flight(context.instance),
    )
    context.update_cursor(decision.cursor.dumps())
    if not decision.request:
        return dg.SkipReason(decision.reason)
    return dg.RunRequest(
        run_key=decision.run_key,
        partition_key=dt.datetime.now(dt.UTC).date().isoformat(),
        asset_selection=[asset_key(BRONZE_ORDERS_CHANGES)],
        tags={"retail/trigger": decision.reason[:250], "retail/change_range": str(decision.batch)},
    )
