"""The Kafka broker goes away: ingestion fails clearly and commits nothing, the step is retried
with exponential backoff and jitter, and a retry that finds the broker back ingests every offset
exactly once; offsets the broker dropped fail at once, never retried."""

from __future__ import annotations

import os

import dagster as dg
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from retail_assets.defs.bronze.assets import pos_transactions
from retail_assets.lib.engine import DeltaRsEngine
from retail_assets.lib.orchestration.resources import KafkaResource, LakehouseResource
from retail_assets.lib.orchestration.retries import RETRIES_ENV, TRANSIENT_BACKOFF
from retail_assets.lib.registry.tables import BRONZE_POS_TRANSACTIONS, KAFKA_TOPIC
from retail_assets.lib.sources import kafka as kafka_lib
from retail_assets.tooling.broker import LocalBroker, ensure_topic, free_port, produce
from retail_assets_tests.reliability import hostile
from retail_assets_tests.simulated_week import snapshot

pytestmark = pytest.mark.reliability


def resources(root, port: int) -> dict:
    return {
        "lakehouse": LakehouseResource(root=str(root / "lakehouse"), landing_root=str(root / "landing")),
        "kafka": KafkaResource(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_s=2, read_timeout_s=5),
        "pyspark_step_launcher": dg.ResourceDefinition.none_resource(),
    }


@pytest.fixture(autouse=True)
def no_retries(monkeypatch):
    """Transient failures fail at once, so a failure shows without the backoff's waits; the tests
    of the retries themselves set the number back (`retries=True`)."""
    monkeypatch.setenv(RETRIES_ENV, "0")


def ingest(root, port: int, instance: dg.DagsterInstance, retries: bool = False) -> dg.ExecuteInProcessResult:
    if retries:
        os.environ[RETRIES_ENV] = str(TRANSIENT_BACKOFF.max_retries)  # put back by the fixture's monkeypatch
    try:
        return dg.materialize(
            [pos_transactions],
            resources=resources(root, port),
            partition_key=hostile.D,
            instance=instance,
            raise_on_error=False,
        )
    finally:
        os.environ[RETRIES_ENV] = "0"


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure)


def test_unreachable_broker_fails_clearly_and_commits_nothing(tmp_path, spark, monkeypatch):
    engine = DeltaRsEngine(tmp_path / "lakehouse", spark=spark)
    instance = dg.DagsterInstance.ephemeral()
    messages = hostile.kafka_messages()[0][:6]
    port = free_port()
    broker = LocalBroker(port)
    with broker:
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC, partitions=1)
        produce(broker.bootstrap_servers, KAFKA_TOPIC, messages)
        assert ingest(tmp_path, port, instance).success
    before, version = snapshot(engine, BRONZE_POS_TRANSACTIONS), engine.version(BRONZE_POS_TRANSACTIONS)
    assert before.num_rows == 6

    # down before the run starts
    down = ingest(tmp_path, port, instance)
    assert not down.success
    message = failure_message(down)
    assert f"127.0.0.1:{port} is unavailable" in message and "nothing was written" in message, message
    assert engine.version(BRONZE_POS_TRANSACTIONS) == version

    # back on its log with three more events: up for the watermarks, gone while the range is read
    with broker:
        produce(broker.bootstrap_servers, KAFKA_TOPIC, hostile.kafka_messages()[0][6:9])
        real = kafka_lib.watermarks
        calls = []

        def watermarks(config, topic, **kw):
            calls.append(topic)
            marks = real(config, topic, **kw)
            broker.stop()  # the run has its pending ranges; the broker dies before they are read
            return marks

        monkeypatch.setattr(kafka_lib, "watermarks", watermarks)
        mid = ingest(tmp_path, port, instance)
    assert not mid.success and len(calls) == 1
    assert "is unavailable" in failure_message(mid) and "still missing offsets" in failure_message(mid)
    assert engine.version(BRONZE_POS_TRANSACTIONS) == version
    assert snapshot(engine, BRONZE_POS_TRANSACTIONS).equals(before)


def test_retry_with_backoff_ingests_once_when_the_broker_returns(tmp_path, spark, monkeypatch):
    engine = DeltaRsEngine(tmp_path / "lakehouse", spark=spark)
    messages = hostile.kafka_messages()[0][:8]
    port = free_port()
    broker = LocalBroker(port)
    real = kafka_lib.watermarks
    failures = []

    def watermarks(config, topic, **kw):
        try:
            return real(config, topic, **kw)
        except kafka_lib.KafkaUnavailable:
            if not failures:
                # the outage ends during the backoff before the first retry
                broker.start()
                ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC, partitions=1)
                produce(broker.bootstrap_servers, KAFKA_TOPIC, messages)
            failures.append(topic)
            raise

    monkeypatch.setattr(kafka_lib, "watermarks", watermarks)
    try:
        result = ingest(tmp_path, port, dg.DagsterInstance.ephemeral(), retries=True)
    finally:
        broker.stop()
    assert result.success and failures == [KAFKA_TOPIC]
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    low, high = TRANSIENT_BACKOFF.bounds(0)
    assert len(retries) == 1 and low <= retries[0].event_specific_data.seconds_to_wait <= high
    # the retry names its reason: the broker's unavailability
    assert "is unavailable" in retries[0].event_specific_data.error.to_string()
    held = engine.read_arrow(BRONZE_POS_TRANSACTIONS, columns=["_offset"])["_offset"].to_pylist()
    assert sorted(held) == list(range(len(messages)))


def test_offsets_the_broker_no_longer_holds_fail_without_retry(tmp_path, spark):
    instance = dg.DagsterInstance.ephemeral()
    port = free_port()
    with LocalBroker(port) as broker:
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC, partitions=1)
        produce(broker.bootstrap_servers, KAFKA_TOPIC, hostile.kafka_messages()[0][:4])
        assert ingest(tmp_path, port, instance, retries=True).success
        # the broker deletes the records, as retention would: the recorded range cannot be re-read
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        for deleted in admin.delete_records([TopicPartition(KAFKA_TOPIC, 0, 4)]).values():
            deleted.result(timeout=10)
        result = ingest(tmp_path, port, instance, retries=True)
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"], (
        "retrying cannot bring offsets back"
    )
    assert "no longer (or not yet) on the broker" in failure_message(result)
    assert DeltaRsEngine(tmp_path / "lakehouse", spark=spark).read_arrow(BRONZE_POS_TRANSACTIONS).num_rows == 4
