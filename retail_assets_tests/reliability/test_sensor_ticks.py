"""Sensors under faults and repetition: an unreachable broker skips the tick with its reason, and
repeated ticks never lead to a landing line or a Kafka offset being ingested twice."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from retail_assets.defs.bronze.sensors import kafka_offsets_sensor, landing_zone_sensor
from retail_assets.lib.engine import DeltaRsEngine
from retail_assets.lib.orchestration.resources import KafkaResource, LakehouseResource
from retail_assets.lib.orchestration.sensing import KafkaCursor
from retail_assets.lib.registry.tables import BRONZE_POS_TRANSACTIONS, BRONZE_SALES_FILES, KAFKA_TOPIC
from retail_assets.tooling.broker import LocalBroker, ensure_topic, free_port, produce
from retail_assets_tests.reliability import hostile
from retail_assets_tests.simulated_week import build_defs

pytestmark = pytest.mark.reliability


def tick(sensor, instance, resources, cursor=None):
    # The local environment has no Databricks workspace: its `databricks` resource is none.
    resources = {"databricks": dg.ResourceDefinition.none_resource(), **resources}
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = sensor(context)
    result = [result] if isinstance(result, (dg.SkipReason, dg.RunRequest)) else list(result or [])
    return (
        [r for r in result if isinstance(r, dg.RunRequest)],
        [r for r in result if isinstance(r, dg.SkipReason)],
        context.cursor,
    )


def execute(defs, instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run a request the way the daemon does: tagged with its run key."""
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=list(request.asset_selection),
        partition_key=request.partition_key,
        instance=instance,
        tags={**request.tags, "dagster/run_key": request.run_key},
    )


def test_kafka_sensor_skips_with_reason_when_broker_unreachable(tmp_path):
    port = free_port()
    resources = {
        "lakehouse": LakehouseResource(root=str(tmp_path / "lakehouse"), landing_root=str(tmp_path / "landing")),
        "kafka": KafkaResource(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_s=2),
    }
    cursor = KafkaCursor(pending_since=123.0, last_run_key="kafka:t:p0[0,5)", requested_high={0: 5}).dumps()
    started = time.monotonic()
    requests, skips, after = tick(kafka_offsets_sensor, dg.DagsterInstance.ephemeral(), resources, cursor)
    assert requests == [] and len(skips) == 1
    assert f"127.0.0.1:{port} unreachable" in skips[0].skip_message
    assert after == cursor, "an outage must not move the sensor's cursor"
    assert time.monotonic() - started < 15, "a tick must never hang on a dead broker"


def test_repeated_kafka_ticks_never_ingest_an_offset_twice(tmp_path, spark, monkeypatch):
    monkeypatch.setenv("RETAIL_KAFKA_LAG_THRESHOLD", "5")
    instance = dg.DagsterInstance.ephemeral()
    messages = hostile.kafka_messages()[0]
    engine = DeltaRsEngine(tmp_path / "lakehouse", spark=spark)
    with LocalBroker() as broker:
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC, partitions=2)
        defs = build_defs(tmp_path, broker.bootstrap_servers, monkeypatch)
        resources = {
            "lakehouse": LakehouseResource(root=str(tmp_path / "lakehouse"), landing_root=str(tmp_path / "landing")),
            "kafka": KafkaResource(bootstrap_servers=broker.bootstrap_servers, request_timeout_s=5),
        }
        produce(broker.bootstrap_servers, KAFKA_TOPIC, messages[:10])
        (first,), _, cursor = tick(kafka_offsets_sensor, instance, resources)
        execute(defs, instance, first)
        requests, skips, cursor = tick(kafka_offsets_sensor, instance, resources, cursor)
        assert requests == [] and "holds every offset" in skips[0].skip_message

        produce(broker.bootstrap_servers, KAFKA_TOPIC, messages[10:18])
        (second,), _, cursor = tick(kafka_offsets_sensor, instance, resources, cursor)
        assert second.run_key != first.run_key
        # the same request executed twice (a retried run, an overlapping manual run)
        execute(defs, instance, second)
        execute(defs, instance, second)
        assert tick(kafka_offsets_sensor, instance, resources, cursor)[0] == []
    offsets = engine.read_arrow(BRONZE_POS_TRANSACTIONS, columns=["_partition", "_offset"])
    pairs = list(zip(offsets["_partition"].to_pylist(), offsets["_offset"].to_pylist()))
    assert len(pairs) == len(set(pairs)) == 18


def test_repeated_landing_ticks_never_ingest_a_file_twice(tmp_path, spark, monkeypatch):
    landing = hostile.landing_files()
    sales = {k: v for k, v in landing.files.items() if k.startswith("sales/") and "pos_hostile_" not in k}
    hostile.write_landing(tmp_path / "landing", hostile.Landing(sales, []))
    instance = dg.DagsterInstance.ephemeral()
    defs = build_defs(tmp_path, "127.0.0.1:9", monkeypatch)
    resources = {
        "lakehouse": LakehouseResource(root=str(tmp_path / "lakehouse"), landing_root=str(tmp_path / "landing"))
    }

    requests, _, _ = tick(landing_zone_sensor, instance, resources)
    again, _, _ = tick(landing_zone_sensor, instance, resources)
    # the same files are asked for under the same run key, which Dagster runs only once
    assert len(requests) == 1 and [r.run_key for r in again] == [requests[0].run_key]
    execute(defs, instance, requests[0])
    execute(defs, instance, requests[0])  # even when the request's run happens twice
    requests, skips, _ = tick(landing_zone_sensor, instance, resources)
    assert requests == [] and "no new complete files" in skips[0].skip_message

    # a new file: only it is asked for, under a new key
    new = tmp_path / "landing" / "sales" / hostile.D / "pos_late_upload.csv"
    new.write_text(hostile.SALES_HEADER + "\n" + hostile.sales_line("NEW-1") + "\n")
    (late,), _, _ = tick(landing_zone_sensor, instance, resources)
    assert late.tags["retail/new_files"] == "1" and late.run_key not in {r.run_key for r in again}
    execute(defs, instance, late)

    held = DeltaRsEngine(tmp_path / "lakehouse", spark=spark).read_arrow(BRONZE_SALES_FILES, columns=["_source"])
    sources = held["_source"].to_pylist()
    expected_lines = sum(max(1, len([ln for ln in c.split(b"\n")[1:] if ln.strip()])) for c in sales.values()) + 1
    assert len(sources) == len(set(sources)) == expected_lines
