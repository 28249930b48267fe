"""The sensors against real components: files on disk, the local Kafka broker, Delta tables and a
Dagster instance in a temporary DAGSTER_HOME. Runs the sensors request are executed, and the
declarative automation that follows Bronze is evaluated and executed until it settles."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest

# the time the daemon would run automation's requests at: Dagster exports no clock to set
from dagster._core.test_utils import freeze_time

from retail_assets.defs.bronze.sensors import (
    LANE_TAGS,
    STREAM_LANE,
    kafka_offsets_sensor,
    landing_zone_sensor,
    other_writer,
)
from retail_assets.lib.engine import DeltaRsEngine
from retail_assets.lib.orchestration.factories import asset_key
from retail_assets.lib.orchestration.resources import KafkaResource, LakehouseResource
from retail_assets.lib.orchestration.sensing import KafkaCursor, decide_kafka_run
from retail_assets.lib.registry.tables import (
    BRONZE_POS_TRANSACTIONS,
    BRONZE_SALES_FILES,
    GOLD_FACT_SALES,
    KAFKA_TOPIC,
    QUARANTINE_INGEST_REJECTS,
    QUARANTINE_RULE_VIOLATIONS,
    SILVER_RETURNS,
    SILVER_SALES_LINES,
)
from retail_assets.lib.transforms import quality
from retail_assets.tooling.bench.workload import landing_with_held_files
from retail_assets.tooling.broker import ensure_topic
from retail_assets.tooling.generator import GeneratorConfig, generate
from retail_assets.tooling.stream import NEW_FIELD, StreamConfig, send_stream, stream_messages

pytestmark = pytest.mark.slow

LATENESS = 2


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


def load_defs(root: Path, bootstrap: str, monkeypatch) -> dg.Definitions:
    monkeypatch.setenv("RETAIL_DATA_ROOT", str(root))
    monkeypatch.setenv("RETAIL_KAFKA_BOOTSTRAP", bootstrap)
    monkeypatch.setenv("RETAIL_LATENESS_DAYS", str(LATENESS))
    from retail_assets.definitions import build_definitions

    return build_definitions()


def execute(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run what a sensor requested, tagged the way the daemon tags it."""
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        asset_selection=list(request.asset_selection),
        partition_key=request.partition_key,
        instance=instance,
        tags={**request.tags, "dagster/run_key": request.run_key},
        raise_on_error=False,
    )


def tick(sensor, instance, resources, cursor=None):
    # The local environment has no Databricks workspace: its `databricks` resource is none.
    resources = {"databricks": dg.ResourceDefinition.none_resource(), **resources}
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = sensor(context)
    if isinstance(result, (dg.SkipReason, dg.RunRequest)):
        result = [result]
    result = list(result or [])
    requests = [r for r in result if isinstance(r, dg.RunRequest)]
    skips = [r for r in result if isinstance(r, dg.SkipReason)]
    return requests, skips, context.cursor


def settle_automation(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor, rounds: int = 6
) -> list[dg.ExecuteInProcessResult]:
    """Evaluate every automation condition and run what it requests, one run per partition key
    as the daemon does, until nothing more is requested. `cursor` is an earlier evaluation's:
    updates are judged against it, as the running daemon judges them against its last tick.
    Each round is evaluated as if one catch-up interval had passed, so late partitions follow too,
    and its runs execute at that time as the daemon's would (near midnight, a round evaluated
    after it requests the new day, which exists only from then on)."""
    job = defs.resolve_implicit_global_asset_job_def()
    keys = list(defs.resolve_asset_graph().get_all_asset_keys())
    runs = []
    clock = dt.datetime.now(dt.UTC)
    for _ in range(rounds):
        clock += dt.timedelta(minutes=5)
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor, evaluation_time=clock)
        cursor = result.cursor
        by_partition: dict[str, list[dg.AssetKey]] = defaultdict(list)
        for key in keys:
            for partition in result.get_requested_partitions(key):
                by_partition[partition].append(key)
        if not by_partition:
            return runs
        for partition in sorted(by_partition):
            with freeze_time(clock):
                run = job.execute_in_process(
                    asset_selection=by_partition[partition],
                    partition_key=partition,
                    instance=instance,
                    raise_on_error=False,
                )
            assert run.success, f"automation run for {partition} {by_partition[partition]} failed"
            runs.append(run)
    raise AssertionError(f"automation did not settle within {rounds} rounds")


# ---------------------------------------------------------------------------------------------
# Landing zone
# ---------------------------------------------------------------------------------------------


def test_landing_sensor_takes_each_complete_file_once(tmp_path, instance, spark, monkeypatch):
    root = tmp_path / "data"
    start = dt.date(2026, 11, 2)
    generate(GeneratorConfig.preset("tiny", seed=5, days=1, start_date=start, kafka_share=0.0), root)
    landing = root / "landing"
    day_dir = landing / "sales" / start.isoformat()
    # still being written: a temporary name, and a file modified within the stability window
    (day_dir / "pos_S999_upload.csv.part").write_text("transaction_id\n")
    growing = day_dir / "pos_S998_growing.csv"
    growing.write_text((next(day_dir.glob("pos_*.csv"))).read_text())
    monkeypatch.setenv("RETAIL_LANDING_STABLE_SECONDS", "600")
    defs = load_defs(root, "127.0.0.1:9", monkeypatch)
    old = time.time() - 1200
    for path in landing.rglob("*"):
        if path.is_file() and path != growing:
            os.utime(path, (old, old))
    lakehouse = LakehouseResource(root=str(root / "lakehouse"), landing_root=str(landing), landing_stable_seconds=600)
    resources = {"lakehouse": lakehouse}

    requests, _, _ = tick(landing_zone_sensor, instance, resources)
    assert requests, "complete files must be requested"
    requested_days = {r.partition_key for r in requests}
    assert all(r.run_key.startswith("landing:") for r in requests)
    # the same state asks for the same batches under the same keys (the daemon drops repeats)
    again, _, _ = tick(landing_zone_sensor, instance, resources)
    assert sorted(r.run_key for r in again) == sorted(r.run_key for r in requests)
    for request in requests:
        assert execute(defs, instance, request).success

    engine = DeltaRsEngine(root / "lakehouse", spark=spark)
    held = set(engine.read_arrow(BRONZE_SALES_FILES, columns=["_source_file"])["_source_file"].to_pylist())
    assert not any(name.endswith((".part", "_growing.csv")) for name in held), "a file still being written was ingested"
    assert held, requested_days

    requests, skips, _ = tick(landing_zone_sensor, instance, resources)
    assert requests == [] and "no new complete files" in skips[0].skip_message, [
        (r.partition_key, r.tags) for r in requests
    ]

    # the growing file settles: exactly it is requested, then ingested once
    os.utime(growing, (old, old))
    requests, _, _ = tick(landing_zone_sensor, instance, resources)
    assert [r.tags["retail/new_files"] for r in requests] == ["1"]
    assert execute(defs, instance, requests[0]).success
    sources = engine.read_arrow(BRONZE_SALES_FILES, columns=["_source", "_source_file", "_arrival_date"])
    assert growing.relative_to(landing).as_posix() in set(sources["_source_file"].to_pylist())
    assert pc.count_distinct(sources["_source"]).as_py() == sources.num_rows, "a landing line is held twice"
    assert tick(landing_zone_sensor, instance, resources)[0] == []


def test_landing_sensor_defers_files_outside_the_calendar(tmp_path, instance):
    landing = tmp_path / "landing"
    for day in ("2099-01-01", "2001-01-01"):
        (landing / "stores" / day).mkdir(parents=True)
        (landing / "stores" / day / "stores_changes.csv").write_text("store_id,updated_at\nS1,2026-11-01T00:00:00Z\n")
    resources = {"lakehouse": LakehouseResource(root=str(tmp_path / "lakehouse"), landing_root=str(landing))}
    requests, skips, _ = tick(landing_zone_sensor, instance, resources)
    assert requests == []
    assert "arrived on 2099-01-01: 1 stores; waits for that partition to open" in skips[0].skip_message
    assert "2001-01-01: 1 stores; is before the first partition" in skips[0].skip_message


def test_landing_sensor_tick_with_ten_thousand_files(tmp_path, instance, spark, capsys):
    """10,000 files in the landing zone, Bronze holding all but ten: one batch with those ten."""
    landing = landing_with_held_files(tmp_path, 10_000, 10, spark=spark)
    resources = {"lakehouse": LakehouseResource(root=str(tmp_path / "lakehouse"), landing_root=str(landing))}

    timings = []
    for _ in range(3):
        started = time.perf_counter()
        requests, _, _ = tick(landing_zone_sensor, instance, resources)
        timings.append(time.perf_counter() - started)
    assert [r.tags["retail/new_files"] for r in requests] == ["10"]
    with capsys.disabled():
        print(f"\nlanding sensor tick with 10,000 files: first {timings[0]:.3f}s, then {min(timings[1:]):.3f}s")


# ---------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------


def test_kafka_decisions():
    base = dict(topic="t", committed={0: 9}, now=1000.0, lag_threshold=100, max_wait_s=30, last_run_status=None)
    caught_up = decide_kafka_run(high={0: 10}, cursor=KafkaCursor(), **base)
    assert not caught_up.request and "holds every offset" in caught_up.reason
    small = decide_kafka_run(high={0: 15}, cursor=KafkaCursor(), **base)
    assert not small.request and "below the lag threshold" in small.reason and small.cursor.pending_since == 1000.0
    waited = decide_kafka_run(high={0: 15}, cursor=small.cursor, **{**base, "now": 1031.0})
    assert waited.request and "waited 31s" in waited.reason and waited.run_key == "kafka:t:p0[10,15)"
    big = decide_kafka_run(high={0: 500}, cursor=KafkaCursor(), **base)
    assert big.request and "lag 490" in big.reason
    running = decide_kafka_run(high={0: 500}, cursor=big.cursor, **{**base, "last_run_status": "STARTED"})
    assert not running.request and "started" in running.reason
    # more offsets while the run is queued: it reads them too when it starts, so no second run
    queued = decide_kafka_run(high={0: 900}, cursor=big.cursor, **{**base, "last_run_status": "QUEUED"})
    assert not queued.request and "reads up to the log's end when it starts" in queued.reason
    # more offsets after it started: one more run, for everything pending
    behind = decide_kafka_run(high={0: 900}, cursor=big.cursor, **{**base, "last_run_status": "STARTED"})
    assert behind.request and behind.run_key == "kafka:t:p0[10,900)" and behind.cursor.requested_high == {0: 900}
    # another run writing today's lane tables (say automation rebuilding Silver): wait for it
    blocked = decide_kafka_run(
        high={0: 500}, cursor=KafkaCursor(), **{**base, "blocked_by": "run abc writing silver/sales_lines"}
    )
    assert not blocked.request and "waiting for run abc writing silver/sales_lines" in blocked.reason
    # the run ended without committing the range: asked again, under a new key
    failed = decide_kafka_run(high={0: 500}, cursor=big.cursor, **{**base, "last_run_status": "FAILURE"})
    assert failed.request and failed.run_key != big.run_key and failed.run_key.startswith(big.run_key)
    # a broker that restarted empty would hand out offsets Bronze already holds: never read them
    reset = decide_kafka_run(high={0: 3}, cursor=KafkaCursor(), **base)
    assert not reset.request and "p0: log ends at 3, Bronze holds up to offset 9" in reset.reason


def test_kafka_run_waits_for_another_run_writing_todays_lane_tables():
    instance = dg.DagsterInstance.ephemeral()
    today, yesterday = "2026-11-23", "2026-11-22"

    def add(status, partition, keys, sensor):
        tags = {"dagster/partition": partition, "dagster/sensor_name": sensor}
        selection = frozenset(dg.AssetKey.from_user_string(k) for k in keys)
        instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", status=status, tags=tags, asset_selection=selection))

    add(dg.DagsterRunStatus.STARTED, today, ["gold/dim_store"], "downstream_automation")
    add(dg.DagsterRunStatus.STARTED, yesterday, ["silver/sales_lines"], "downstream_automation")
    add(dg.DagsterRunStatus.STARTED, today, ["bronze/pos_transactions", "silver/sales_lines"], "kafka_offsets_sensor")
    add(dg.DagsterRunStatus.SUCCESS, today, ["silver/sales_lines"], "downstream_automation")
    assert other_writer(instance, today) is None
    add(dg.DagsterRunStatus.STARTING, today, ["silver/returns", "quarantine/ingest_rejects"], "downstream_automation")
    assert "(starting) writing silver/returns for 2026-11-23" in other_writer(instance, today)


def test_stream_to_gold_exactly_once(tmp_path, instance, spark, monkeypatch, kafka_broker):
    """Events with duplicates, late and future events and a new field, sent in two bursts: the
    sensor requests Bronze runs, automation builds everything below, and every line is accounted for."""
    today = dt.datetime.now(dt.UTC).date()
    root = tmp_path / "data"
    # the reference data the events point to lands as files, taken by the landing sensor
    messages = stream_messages(
        StreamConfig(seed=3, day=today, stores=2, transactions_per_store_day=12), root / "landing"
    )
    assert any(NEW_FIELD.encode() in m.value for m in messages)
    monkeypatch.setenv("RETAIL_KAFKA_LAG_THRESHOLD", "1")
    # the session's broker: this is the only test that writes to the project's topic on it
    with contextlib.nullcontext(kafka_broker) as broker:
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC)
        defs = load_defs(root, broker.bootstrap_servers, monkeypatch)
        lakehouse = LakehouseResource(
            root=str(root / "lakehouse"), landing_root=str(root / "landing"), lateness_days=LATENESS
        )
        resources = {"lakehouse": lakehouse, "kafka": KafkaResource(bootstrap_servers=broker.bootstrap_servers)}
        half = len(messages) // 2
        cursor = None
        # the automation sensor was already ticking before any event arrived
        automation_cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        for request in tick(landing_zone_sensor, instance, resources)[0]:
            assert execute(defs, instance, request).success
        for burst in (messages[:half], messages[half:]):
            send_stream(broker.bootstrap_servers, KAFKA_TOPIC, burst, rate_per_s=0)
            requests, _, cursor = tick(kafka_offsets_sensor, instance, resources, cursor)
            assert len(requests) == 1 and requests[0].partition_key == today.isoformat()
            # one run takes the events from Bronze down to the fact table
            assert set(requests[0].asset_selection) == {asset_key(spec) for spec in STREAM_LANE}
            assert LANE_TAGS.items() <= requests[0].tags.items()
            assert execute(defs, instance, requests[0]).success
            # caught up: the next tick does nothing, and says so
            again, skips, cursor = tick(kafka_offsets_sensor, instance, resources, cursor)
            assert again == [] and "holds every offset" in skips[0].skip_message
        automation_runs = settle_automation(defs, instance, automation_cursor)
    assert automation_runs

    engine = DeltaRsEngine(root / "lakehouse", spark=spark)
    bronze = engine.read_arrow(BRONZE_POS_TRANSACTIONS, columns=["_source", "_partition", "_offset"])
    # every offset exactly once
    assert bronze.num_rows == len(messages)
    assert pc.count_distinct(bronze["_source"]).as_py() == len(messages)

    # lines in = Silver + quarantine + counted duplicates, for today's arrivals
    def lines_of(value: bytes) -> int:
        try:
            event = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return 1
        lines = event.get("lines") if isinstance(event, dict) else None
        return len(lines) if isinstance(lines, list) and lines else 1

    produced_lines = sum(lines_of(m.value) for m in messages)

    def kafka_rows(spec):
        rows = engine.read_arrow(spec)
        return rows.filter(pc.starts_with(rows["_source"], KAFKA_TOPIC))

    accepted = kafka_rows(SILVER_SALES_LINES).num_rows + kafka_rows(SILVER_RETURNS).num_rows
    rejected = kafka_rows(QUARANTINE_INGEST_REJECTS).num_rows
    violations = kafka_rows(QUARANTINE_RULE_VIOLATIONS)
    materialization = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(["quarantine", "rule_violations"]), asset_partitions=[today.isoformat()]
        ),
        limit=1,
    ).records[0]
    duplicates = int(materialization.asset_materialization.metadata["duplicates"].value)
    figures = {"accepted": accepted, "rejected": rejected, "violations": violations.num_rows, "duplicates": duplicates}
    assert all(figures.values()), figures
    assert {"late_event"} <= set(violations["rule"].to_pylist())
    assert accepted + rejected + violations.num_rows + duplicates == produced_lines

    # the conservation check, run by automation with its table, agrees for today's partition
    conservation = [
        e
        for run in automation_runs
        for e in run.get_asset_check_evaluations()
        if e.check_name == quality.CONSERVATION and e.metadata["partition"].value == today.isoformat()
    ]
    assert conservation and conservation[-1].passed

    # Gold reflects every accepted Kafka line, and the new field did not vanish
    fact = engine.read_arrow(GOLD_FACT_SALES)
    fact_from_kafka = fact.filter(pc.equal(fact["channel"], "pos_stream")).num_rows
    assert fact_from_kafka == accepted
    silver = kafka_rows(SILVER_SALES_LINES)
    assert any(NEW_FIELD in (x or "") for x in silver["extra_attributes"].to_pylist())
