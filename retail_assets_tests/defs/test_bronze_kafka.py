"""Kafka → Bronze exactly once, against the real local broker, across hard kills of the run and
restarts of the broker. The exactly-once tests run on both local engines, each with its own
Kafka reader (delta-rs with the confluent consumer; delta-spark, marked `parity`, with Spark's
Kafka source); tests of the confluent consumer itself run once."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest

from retail_assets.lib.engine import DeltaRsEngine
from retail_assets.lib.registry.tables import BRONZE_POS_TRANSACTIONS, KAFKA_TOPIC
from retail_assets.lib.sources.kafka import watermarks
from retail_assets.tooling.broker import LocalBroker, ensure_topic, produce
from retail_assets.tooling.generator import KafkaMessage

DAY = "2026-11-05"
NEXT_DAY = "2026-11-06"
POS_KEY = dg.AssetKey(["bronze", "pos_transactions"])

# Runs the Bronze Kafka asset for one partition in a separate process. With KILL_AT set, the
# process SIGKILLs itself just before or just after the Delta commit of the Bronze rows, on
# whichever engine RETAIL_LOCAL_ENGINE selects.
DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    import dagster as dg
    import retail_assets.lib.engine.local as local
    from retail_assets.lib.engine.delta_spark import DeltaSparkEngine

    kill_at = os.environ.get("KILL_AT")
    real_write = local.write_deltalake

    def write(path, data, **kw):
        if "pos_transactions" in str(path) and kill_at == "before_commit":
            # The rows stream into the write: read them all first (the whole Kafka range
            # consumed and parsed), so that the kill comes just before the commit.
            if hasattr(data, "read_all"):
                data.read_all()
            os.kill(os.getpid(), signal.SIGKILL)
        real_write(path, data, **kw)
        if "pos_transactions" in str(path) and kill_at == "after_commit":
            os.kill(os.getpid(), signal.SIGKILL)

    local.write_deltalake = write
    real_save = DeltaSparkEngine._save

    def save(self, spec, frame, *args, **kw):
        if spec.name == "pos_transactions" and kill_at == "before_commit":
            # Spark's Kafka source is lazy and the write would be the read: read the ranges
            # first, so that this kill too comes after the messages were consumed.
            frame.count()
            os.kill(os.getpid(), signal.SIGKILL)
        real_save(self, spec, frame, *args, **kw)
        if spec.name == "pos_transactions" and kill_at == "after_commit":
            os.kill(os.getpid(), signal.SIGKILL)

    DeltaSparkEngine._save = save
    from retail_assets.definitions import build_definitions

    defs = build_definitions()
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        asset_selection=[dg.AssetKey(["bronze", "pos_transactions"])],
        partition_key=sys.argv[1],
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    sys.exit(0 if result.success else 3)
    """
)


def messages(start: int, count: int) -> list[KafkaMessage]:
    ts = int(dt.datetime(2026, 11, 5, 12, tzinfo=dt.UTC).timestamp() * 1000)
    out = []
    for i in range(start, start + count):
        value = {
            "schema_version": 1,
            "transaction_id": f"K{i:05d}",
            "event_time": "2026-11-05T12:00:00+00:00",
            "store_id": "S001",
            "customer_id": None,
            "payment_method": "card",
            "lines": [{"line_number": 1, "product_id": "P0001", "quantity": 1, "unit_price": 2.5, "discount": 0}],
        }
        out.append(KafkaMessage(index=i, key=f"K{i:05d}", timestamp_ms=ts + i, value=json.dumps(value).encode()))
    return out


@pytest.fixture
def broker():
    with LocalBroker() as b:
        ensure_topic(b.bootstrap_servers, KAFKA_TOPIC, partitions=2)
        yield b


def run_driver(root: Path, bootstrap: str, kill_at: str | None = None, day: str = DAY, *, exits: int = 0) -> str:
    """Runs DRIVER for `day`; it must end with `exits` (-SIGKILL for a kill). Returns its output."""
    env = {**os.environ, "RETAIL_DATA_ROOT": str(root), "RETAIL_KAFKA_BOOTSTRAP": bootstrap, "KILL_AT": kill_at or ""}
    done = subprocess.run([sys.executable, "-c", DRIVER, day], env=env, timeout=300, capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == exits, output[-3000:]
    return output


def bronze_offsets(root: Path, day: str | None = None) -> list[tuple[int, int]]:
    """(partition, offset) of every Bronze row, as delta-rs reads the table folder: what a Delta
    reader sees of the log whichever engine committed it."""
    table = DeltaRsEngine(root / "lakehouse").read_arrow(
        BRONZE_POS_TRANSACTIONS, columns=["_partition", "_offset", "_arrival_date"]
    )
    if day is not None:
        table = table.filter(pc.equal(table["_arrival_date"], dt.date.fromisoformat(day)))
    return sorted(zip(table["_partition"].to_pylist(), table["_offset"].to_pylist()))


def materialize(bootstrap: str, day: str, monkeypatch) -> dg.ExecuteInProcessResult:
    """`bronze/pos_transactions` for one arrival day, in this process, against `bootstrap`."""
    monkeypatch.setenv("RETAIL_KAFKA_BOOTSTRAP", bootstrap)
    from retail_assets.definitions import build_definitions

    job = build_definitions().resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        asset_selection=[POS_KEY], partition_key=day, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


@pytest.mark.reliability
def test_kill_before_and_after_commit_leaves_every_offset_once(broker, tmp_path, engine_name):
    placed = produce(broker.bootstrap_servers, KAFKA_TOPIC, messages(0, 40))

    # killed after reading, before the commit: nothing of the range reached Bronze
    run_driver(tmp_path, broker.bootstrap_servers, "before_commit", exits=-signal.SIGKILL)
    assert bronze_offsets(tmp_path) == []

    # the re-run reads the same range again
    run_driver(tmp_path, broker.bootstrap_servers)
    first = bronze_offsets(tmp_path)
    assert len(first) == 40 and len(set(first)) == 40
    assert {f"{KAFKA_TOPIC}/{p}/{o}" for p, o in first} == set(placed.values())

    # more events; killed right after the commit: the re-run must not read the range twice
    placed.update(produce(broker.bootstrap_servers, KAFKA_TOPIC, messages(40, 25)))
    run_driver(tmp_path, broker.bootstrap_servers, "after_commit", exits=-signal.SIGKILL)
    run_driver(tmp_path, broker.bootstrap_servers)
    final = bronze_offsets(tmp_path)
    assert len(final) == 65 and len(set(final)) == 65
    assert {f"{KAFKA_TOPIC}/{p}/{o}" for p, o in final} == set(placed.values())
    ids = DeltaRsEngine(tmp_path / "lakehouse").read_arrow(BRONZE_POS_TRANSACTIONS, columns=["transaction_id"])[
        "transaction_id"
    ]
    assert pc.count_distinct(ids).as_py() == 65


@pytest.mark.reliability
def test_a_restarted_broker_keeps_its_log_and_every_offset_lands_once(tmp_path, monkeypatch, engine_name):
    """Produce, ingest a day, restart the broker on the same data dir, produce more, ingest the
    next day, then re-ingest the past day from the log: every offset produced is in Bronze once."""
    monkeypatch.setenv("RETAIL_DATA_ROOT", str(tmp_path))
    log = tmp_path / "kafka"
    with LocalBroker(data_dir=log) as first:
        ensure_topic(first.bootstrap_servers, KAFKA_TOPIC, partitions=2)
        placed = produce(first.bootstrap_servers, KAFKA_TOPIC, messages(0, 30))
        assert materialize(first.bootstrap_servers, DAY, monkeypatch).success
    past = bronze_offsets(tmp_path, DAY)
    assert len(past) == 30

    # another broker process on the same log (and another port): the topic and its offsets are there
    with LocalBroker(data_dir=log) as second:
        assert second.port != first.port
        marks = watermarks({"bootstrap.servers": second.bootstrap_servers}, KAFKA_TOPIC)
        assert sum(high for _, high in marks.values()) == 30 and all(low == 0 for low, _ in marks.values())
        later = produce(second.bootstrap_servers, KAFKA_TOPIC, messages(30, 20))
        assert set(later.values()).isdisjoint(placed.values()), "a restarted broker must not hand out an offset twice"
        placed.update(later)
        assert materialize(second.bootstrap_servers, NEXT_DAY, monkeypatch).success
        # the past day again: its recorded ranges are re-read from the restarted broker's log
        again = materialize(second.bootstrap_servers, DAY, monkeypatch)
        assert again.success
        reread = next(
            e.materialization.metadata for e in again.get_asset_materialization_events() if e.asset_key == POS_KEY
        )
    held = bronze_offsets(tmp_path)
    assert len(held) == len(set(held)) == 50
    assert {f"{KAFKA_TOPIC}/{p}/{o}" for p, o in held} == set(placed.values())
    assert bronze_offsets(tmp_path, DAY) == past and len(bronze_offsets(tmp_path, NEXT_DAY)) == 20
    assert reread["messages"].value == 30 and reread["offset_ranges"].value != "none"
    ids = DeltaRsEngine(tmp_path / "lakehouse").read_arrow(BRONZE_POS_TRANSACTIONS, columns=["transaction_id"])[
        "transaction_id"
    ]
    assert sorted(ids.to_pylist()) == [f"K{i:05d}" for i in range(50)]


def test_past_partition_cannot_be_reread_from_an_emptied_broker(broker, tmp_path, engine_name):
    produce(broker.bootstrap_servers, KAFKA_TOPIC, messages(0, 5))
    run_driver(tmp_path, broker.bootstrap_servers)
    with LocalBroker() as fresh:  # its own, empty data dir: the log Bronze read from is gone
        ensure_topic(fresh.bootstrap_servers, KAFKA_TOPIC, partitions=2)
        output = run_driver(tmp_path, fresh.bootstrap_servers, exits=3)
    assert "no longer (or not yet) on the broker" in output
    assert len(bronze_offsets(tmp_path)) == 5  # the failed re-read changed nothing
    # a new arrival day on the emptied broker: its offsets would repeat ingested ones, so refused
    with LocalBroker() as fresh:
        ensure_topic(fresh.bootstrap_servers, KAFKA_TOPIC, partitions=2)
        produce(fresh.bootstrap_servers, KAFKA_TOPIC, messages(0, 2))
        output = run_driver(tmp_path, fresh.bootstrap_servers, day=NEXT_DAY, exits=3)
    assert "ends before what Bronze already holds" in output
    assert len(bronze_offsets(tmp_path)) == 5


def test_producing_more_messages_than_the_client_queue_holds_sends_every_one(broker):
    # The client's queue holds 20; 300 messages wait for acknowledgements instead of failing.
    placed = produce(broker.bootstrap_servers, KAFKA_TOPIC, messages(0, 300), queue_max_messages=20)
    assert sorted(placed) == list(range(300))
    assert len(set(placed.values())) == 300
    high = watermarks({"bootstrap.servers": broker.bootstrap_servers}, KAFKA_TOPIC)
    assert sum(hw - low for low, hw in high.values()) == 300


def test_a_range_run_of_the_stream_is_refused_and_takes_nothing(broker, tmp_path, monkeypatch):
    """A day's partition takes what is on the topic beyond the days before it, so days of the
    stream cannot share a run: a range run fails saying so, before reading an offset."""
    produce(broker.bootstrap_servers, KAFKA_TOPIC, messages(0, 5))
    monkeypatch.setenv("RETAIL_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("RETAIL_KAFKA_BOOTSTRAP", broker.bootstrap_servers)
    from retail_assets.definitions import build_definitions

    job = build_definitions().resolve_implicit_global_asset_job_def()
    ranged = job.execute_in_process(
        asset_selection=[POS_KEY],
        tags={"dagster/asset_partition_range_start": "2026-11-04", "dagster/asset_partition_range_end": DAY},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not ranged.success
    failure = next(e for e in ranged.all_events if e.is_step_failure).step_failure_data.error
    assert "ingests one arrival day per run" in failure.message
    assert not (tmp_path / "lakehouse" / "bronze" / "pos_transactions").exists()
    single = job.execute_in_process(
        asset_selection=[POS_KEY], partition_key=DAY, instance=dg.DagsterInstance.ephemeral()
    )
    assert single.success and len(bronze_offsets(tmp_path)) == 5


def test_ranges_are_read_each_offset_once_and_stop_at_their_end(kafka_broker):
    from retail_assets.lib.sources import kafka as kafka_lib

    topic = "retail.test.read_ranges"
    ensure_topic(kafka_broker.bootstrap_servers, topic, partitions=3)
    placed = produce(
        kafka_broker.bootstrap_servers,
        topic,
        [KafkaMessage(i, f"k{i}", 1_790_000_000_000, b"%d" % i) for i in range(600)],
    )
    config = {"bootstrap.servers": kafka_broker.bootstrap_servers}
    marks = watermarks(config, topic)

    def read(ranges):
        batches = list(kafka_lib.read_ranges(config, topic, ranges, known_watermarks=marks))
        return [row for b in batches for row in zip(b.partitions, b.offsets, b.values, b.timestamps_ms, strict=True)]

    everything = read([kafka_lib.OffsetRange(p, 0, high) for p, (_, high) in marks.items()])
    assert sorted(f"{topic}/{p}/{o}" for p, o, _, _ in everything) == sorted(placed.values())  # each offset once
    assert sorted(int(v) for _, _, v, _ in everything) == list(range(600))
    assert {ms for *_, ms in everything} == {1_790_000_000_000}
    # A range ending before the log does: the messages after it are fetched but not handed on.
    middle = [kafka_lib.OffsetRange(p, 10, high - 10) for p, (_, high) in marks.items()]
    assert sorted((p, o) for p, o, _, _ in read(middle)) == sorted(
        (r.partition, o) for r in middle for o in range(r.start, r.end)
    )


def test_a_fetch_that_ends_the_log_keeps_the_messages_before_the_end():
    """The consumer reports a partition's end of log after its last messages, often in the same
    fetch: those messages are still handed on, and the partition's range is then complete."""
    from confluent_kafka import KafkaError, Message

    from retail_assets.lib.sources.kafka import KafkaUnavailable, _in_ranges

    def message(partition, offset):
        return Message(topic="t", partition=partition, offset=offset, value=b"%d" % offset, timestamp=(1, 5))

    next_offset, end = {0: 5, 1: 0}, {0: 9, 1: 3}
    fetched = [
        message(0, 5),
        message(0, 6),
        Message(topic="t", partition=0, offset=9, error=KafkaError(KafkaError._PARTITION_EOF)),
        message(1, 0),
    ]
    batch = _in_ranges(fetched, "t", next_offset, end)
    # offsets 7 and 8 never came (a transaction's markers): the end of the log completes the range
    assert list(zip(batch.partitions, batch.offsets)) == [(0, 5), (0, 6), (1, 0)]
    assert (batch.topics, batch.values, batch.timestamps_ms) == (["t"] * 3, [b"5", b"6", b"0"], [5, 5, 5])
    assert next_offset == {0: 9, 1: 1}
    # re-delivered and past-the-end offsets are not handed on; a fetch of nothing new is None
    assert _in_ranges([message(1, 0), message(1, 3)], "t", next_offset, end) is None
    with pytest.raises(KafkaUnavailable, match="error reading t"):
        _in_ranges([Message(topic="t", partition=1, error=KafkaError(KafkaError._TRANSPORT))], "t", next_offset, end)
