"""Concurrency: two writers on one partition, and overlapping backfills of Bronze.

Delta's optimistic concurrency decides between two writers of one partition: one commit wins,
the other fails with a readable error and leaves nothing behind. Bronze never doubles a record
however runs over the same partitions overlap: landing files already held elsewhere are
skipped, Kafka offsets are taken after the highest committed one, and Kafka ingestion runs in a
concurrency pool of one.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

import retail_assets.lib.engine.local as local
from retail_assets.defs.bronze.assets import landing_assets, pos_transactions
from retail_assets.lib.engine import ConcurrentWriteError, DeltaRsEngine, PartitionRange
from retail_assets.lib.orchestration.resources import KafkaResource, LakehouseResource
from retail_assets.lib.registry.tables import (
    BRONZE_POS_TRANSACTIONS,
    BRONZE_SALES_FILES,
    KAFKA_TOPIC,
    SILVER_SALES_LINES,
)
from retail_assets.lib.transforms import quality
from retail_assets.tooling.broker import LocalBroker, ensure_topic, produce
from retail_assets.tooling.cli import INSTANCE_CONFIG
from retail_assets_tests.reliability import hostile

pytestmark = pytest.mark.reliability


def _rows(spec, tag: str, n: int, day: dt.date) -> pa.Table:
    """`n` Silver sales lines of `day` whose transaction ids carry `tag`."""
    schema = spec.arrow_schema()
    values = {
        "transaction_id": [f"{tag}-{i}" for i in range(n)],
        "line_number": [1] * n,
        "event_time": [dt.datetime(2026, 11, 10, 9, tzinfo=dt.UTC)] * n,
        "event_date": [day] * n,
        "store_id": ["S001"] * n,
        "product_id": ["P001"] * n,
        "quantity": [1] * n,
        "channel": ["store_file"] * n,
        "_source": [f"{tag}:{i}" for i in range(n)],
        "_arrival_date": [day] * n,
        "_batch_id": [tag] * n,
    }
    columns = {}
    for field in schema:
        if field.name in values:
            columns[field.name] = pa.array(values[field.name], field.type)
        elif pa.types.is_decimal(field.type):
            columns[field.name] = pa.array([Decimal(0)] * n, field.type)
        else:
            columns[field.name] = pa.nulls(n, field.type) if field.nullable else pa.array(["x"] * n, field.type)
    return pa.table(columns, schema=schema)


def test_two_writers_on_one_partition_one_wins_one_fails_cleanly(engine, monkeypatch):
    day = dt.date(2026, 11, 10)
    partition = PartitionRange.single(day)
    other_day = _rows(SILVER_SALES_LINES, "keep", 2, day + dt.timedelta(days=1))
    engine.overwrite_partitions(SILVER_SALES_LINES, other_day, PartitionRange.single(day + dt.timedelta(days=1)))
    engine.overwrite_partitions(SILVER_SALES_LINES, _rows(SILVER_SALES_LINES, "old", 4, day), partition)
    version = engine.version(SILVER_SALES_LINES)

    # Both writers have read the table before either commits: the race Delta must settle.
    real = local.write_deltalake
    barrier = threading.Barrier(2, timeout=60)

    def racing(location, data, **kw):
        from deltalake import DeltaTable

        table = DeltaTable(location)
        barrier.wait()
        return real(table, data, **kw)

    monkeypatch.setattr(local, "write_deltalake", racing)
    outcomes: dict[str, object] = {}

    def write(tag: str, n: int) -> None:
        try:
            outcomes[tag] = engine.overwrite_partitions(
                SILVER_SALES_LINES, _rows(SILVER_SALES_LINES, tag, n, day), partition
            )
        except Exception as exc:  # noqa: BLE001 - the test inspects whichever error it is
            outcomes[tag] = exc

    threads = [threading.Thread(target=write, args=args) for args in (("a", 3), ("b", 5))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    errors = {k: v for k, v in outcomes.items() if isinstance(v, Exception)}
    assert len(errors) == 1, outcomes
    ((loser, error),) = errors.items()
    assert isinstance(error, ConcurrentWriteError)
    assert "another run committed to silver.sales_lines" in str(error) and "event_date = '2026-11-10'" in str(error)
    winner = "b" if loser == "a" else "a"
    # exactly the winner's rows: not both, not the old ones, not doubled; other partitions intact
    assert engine.version(SILVER_SALES_LINES) == version + 1
    held = engine.read_arrow(SILVER_SALES_LINES, partition)
    assert sorted(held["transaction_id"].to_pylist()) == sorted(
        f"{winner}-{i}" for i in range({"a": 3, "b": 5}[winner])
    )
    assert engine.read_arrow(SILVER_SALES_LINES, PartitionRange.single(day + dt.timedelta(days=1))).num_rows == 2
    assert quality.primary_key(engine.read(SILVER_SALES_LINES), SILVER_SALES_LINES.primary_key).passed


def test_kafka_ingestion_runs_in_a_pool_of_one():
    assert pos_transactions.op.pool == "bronze_kafka"
    pools = yaml.safe_load(INSTANCE_CONFIG)["concurrency"]["pools"]
    assert pools.get("default_limit") == 1


# ---------------------------------------------------------------------------------------------
# Overlapping backfills
# ---------------------------------------------------------------------------------------------

DAYS = [dt.date(2026, 11, 10) + dt.timedelta(days=i) for i in range(3)]


def _landing(root) -> None:
    for i, day in enumerate(DAYS):
        folder = root / "landing" / "sales" / day.isoformat()
        folder.mkdir(parents=True)
        lines = [hostile.sales_line(f"B{i}-{n}", event_time=f"{day}T10:00:00+01:00") for n in range(3)]
        (folder / f"pos_{i}.csv").write_text("\n".join([hostile.SALES_HEADER, *lines]) + "\n")
    # a loose file, dated by its modification time: it belongs to whatever day it was touched on
    loose = root / "landing" / "sales" / "pos_loose.csv"
    loose.write_text(hostile.SALES_HEADER + "\n" + hostile.sales_line("LOOSE") + "\n")
    touch(loose, DAYS[1])


def touch(path, day: dt.date) -> None:
    stamp = dt.datetime.combine(day, dt.time(8), dt.UTC).timestamp()
    os.utime(path, (stamp, stamp))


def test_overlapping_backfills_never_ingest_a_file_or_offset_twice(tmp_path, spark):
    _landing(tmp_path)
    engine = DeltaRsEngine(tmp_path / "lakehouse", spark=spark)
    instance = dg.DagsterInstance.ephemeral()
    messages = hostile.kafka_messages()[0]
    assets = [landing_assets[0], pos_transactions]  # sales files and Kafka

    with LocalBroker() as broker:
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC, partitions=2)
        resources = {
            "lakehouse": LakehouseResource(root=str(tmp_path / "lakehouse"), landing_root=str(tmp_path / "landing")),
            "kafka": KafkaResource(bootstrap_servers=broker.bootstrap_servers, request_timeout_s=5, read_timeout_s=20),
            "pyspark_step_launcher": dg.ResourceDefinition.none_resource(),
        }

        def run(day: dt.date, on: dg.DagsterInstance = instance) -> dg.ExecuteInProcessResult:
            return dg.materialize(
                assets, resources=resources, partition_key=day.isoformat(), instance=on, raise_on_error=False
            )

        # backfill A covers days 0-1, backfill B days 1-2; they interleave, day 1 runs twice,
        # and events keep arriving between the runs
        produce(broker.bootstrap_servers, KAFKA_TOPIC, messages[:10])
        results = [run(DAYS[0])]
        produce(broker.bootstrap_servers, KAFKA_TOPIC, messages[10:20])
        results.append(run(DAYS[1]))  # B
        # the loose file is touched again: its modification date is now another day
        touch(tmp_path / "landing" / "sales" / "pos_loose.csv", DAYS[2])
        results.append(run(DAYS[2]))  # B, runs before A's day 1
        produce(broker.bootstrap_servers, KAFKA_TOPIC, messages[20:30])
        results.append(run(DAYS[1]))  # A, overlapping B's day 1 after B already went further
        # and both backfills' day-1 runs once more at the same time
        twins: list[dg.ExecuteInProcessResult] = []
        threads = [
            threading.Thread(target=lambda: twins.append(run(DAYS[1], dg.DagsterInstance.ephemeral())))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    assert all(r.success for r in results)
    for twin in twins:  # each either succeeded or lost the commit race with a clear error
        if not twin.success:
            errors = [e.event_specific_data.error.to_string() for e in twin.all_events if e.is_step_failure]
            assert errors and all("another run committed to" in m for m in errors), errors

    files = engine.read_arrow(BRONZE_SALES_FILES, columns=["_source", "_source_file", "_arrival_date"])
    sources = files["_source"].to_pylist()
    assert len(sources) == len(set(sources)) == 3 * 3 + 1, "a landing line is held twice or lost"
    assert quality.exactly_once(engine.read(BRONZE_SALES_FILES), "_arrival_date").passed

    offsets = engine.read_arrow(BRONZE_POS_TRANSACTIONS, columns=["_partition", "_offset", "_arrival_date"])
    pairs = list(zip(offsets["_partition"].to_pylist(), offsets["_offset"].to_pylist()))
    assert len(pairs) == len(set(pairs)) == 30, "an offset is held twice or lost"
    assert pc.count_distinct(offsets["_arrival_date"]).as_py() >= 2
    assert quality.exactly_once(engine.read(BRONZE_POS_TRANSACTIONS), "_arrival_date").passed
