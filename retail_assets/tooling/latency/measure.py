"""The measurement: `retail-assets ui` started, batches sent, Gold watched."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pyarrow.compute as pc
from deltalake import DeltaTable

from retail_assets.lib.registry.tables import (
    GOLD_DIM_STORE,
    GOLD_FACT_SALES,
    KAFKA_TOPIC,
)
from retail_assets.tooling.devserver import start_dagster_dev
from retail_assets.tooling.generator import KafkaMessage
from retail_assets.tooling.latency.breakdown import breakdown, describe
from retail_assets.tooling.latency.records import Batch, LatencyReport, read_lane_history
from retail_assets.tooling.stream import StreamConfig, send_stream, stream_messages

# The tag the Kafka sensor puts on the runs it requests (`defs/bronze/sensors.py`, `LANE_TAGS`).


def transaction_id(message: KafkaMessage) -> str | None:
    try:
        event = json.loads(message.value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return event.get("transaction_id") if isinstance(event, dict) else None


def placed_offsets(placed: Mapping[int, str]) -> frozenset[tuple[int, int]]:
    """`send_stream`'s `{index: "topic/partition/offset"}` → (partition, offset) pairs."""
    pairs = set()
    for where in placed.values():
        _, partition, offset = where.rsplit("/", 2)
        pairs.add((int(partition), int(offset)))
    return frozenset(pairs)


def gold_transactions(lakehouse: Path) -> set[str]:
    path = lakehouse / GOLD_FACT_SALES.layer.value / GOLD_FACT_SALES.name
    if not DeltaTable.is_deltatable(str(path)):
        return set()
    column = DeltaTable(str(path)).to_pyarrow_dataset().to_table(columns=["transaction_id"])["transaction_id"]
    return set(pc.unique(column).to_pylist())


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 1.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(poll)
    return time.monotonic() - started


def measure_latency(
    *,
    batches: int = 20,
    events_per_batch: int = 20,
    interval_s: float = 10.0,
    root: Path | None = None,
    drain_timeout_s: float = 600.0,
    echo: Callable[[str], None] = print,
) -> dict[str, object]:
    """Run the measurement; returns the figures (`latency_p50_s`, `latency_p95_s`, samples, and
    `latency_breakdown`: where the seconds went)."""
    with tempfile.TemporaryDirectory(prefix="retail-latency-") as tmp:
        return _measure(Path(root or tmp), batches, events_per_batch, interval_s, drain_timeout_s, echo).as_dict()


def _measure(
    root: Path, n_batches: int, per_batch: int, interval_s: float, drain_timeout_s: float, echo
) -> LatencyReport:
    today = dt.datetime.now(dt.UTC).date()
    data_root = root / "data"
    # enough clean events for every batch (plus one warm-up batch) on one business day
    needed = (n_batches + 1) * per_batch
    stores = 4
    config = StreamConfig(
        seed=11, day=today, stores=stores, transactions_per_store_day=max(20, needed // stores + 10), defects=False
    )
    messages = [m for m in stream_messages(config, data_root / "landing") if transaction_id(m)]
    if len(messages) < needed:
        raise RuntimeError(f"the generator gave {len(messages)} events, {needed} needed")
    env = {"RETAIL_SENSORS_DEFAULT": "running", "RETAIL_PARTITIONS_START": (today - dt.timedelta(days=7)).isoformat()}
    echo(f"starting dagster dev under {root} (sensors on, default intervals)")
    with start_dagster_dev(root, env) as dev:
        lakehouse = dev.lakehouse
        started = time.monotonic()
        # reference data: the landing sensor takes the files, automation builds the dimensions
        wait_for(
            lambda: DeltaTable.is_deltatable(str(lakehouse / "gold" / GOLD_DIM_STORE.name)),
            600,
            "gold.dim_store built from landing files",
        )
        warmup = [messages[i] for i in range(per_batch)]
        send_stream(dev.kafka_bootstrap, KAFKA_TOPIC, warmup, rate_per_s=0)
        warm_ids = {transaction_id(m) for m in warmup}
        wait_for(lambda: warm_ids <= gold_transactions(lakehouse), 600, "the warm-up batch in gold.fact_sales")
        warmup_s = time.monotonic() - started
        echo(
            f"warm: reference data and a first batch in Gold after {warmup_s:.0f}s; sending {n_batches} batches every {interval_s:.0f}s"
        )

        report = LatencyReport([], per_batch, interval_s, warmup_s)
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                seen = gold_transactions(lakehouse)
                now = time.time()
                for batch in list(report.batches):
                    if batch.seen_at is None and batch.transaction_ids <= seen:
                        batch.seen_at = now
                        echo(f"  batch {batch.number:>2}: in Gold after {batch.latency_s:5.1f}s")
                stop.wait(0.5)

        watcher = threading.Thread(target=watch, name="gold-watcher", daemon=True)
        watcher.start()
        try:
            rest = messages[per_batch:needed]
            next_at = time.monotonic()
            for number in range(n_batches):
                time.sleep(max(0.0, next_at - time.monotonic()))
                chunk = rest[number * per_batch : (number + 1) * per_batch]
                sent_at = time.time()
                placed = send_stream(dev.kafka_bootstrap, KAFKA_TOPIC, chunk, rate_per_s=0)
                report.batches.append(
                    Batch(number, frozenset(transaction_id(m) for m in chunk), sent_at, offsets=placed_offsets(placed))
                )
                next_at += interval_s
            try:
                wait_for(
                    lambda: all(b.seen_at is not None for b in report.batches), drain_timeout_s, "every batch in Gold"
                )
            except TimeoutError as exc:
                report.notes.append(str(exc))
        finally:
            stop.set()
            watcher.join(timeout=10)
    # `dagster dev` has stopped: its records are complete and nobody writes them any more.
    try:
        report.breakdown = breakdown(report.batches, read_lane_history(dev.dagster_home))
    except Exception as exc:  # noqa: BLE001 - the latency stands without its breakdown; say why
        report.notes.append(f"no breakdown: {type(exc).__name__}: {exc}")
    for line in describe(report.as_dict()):
        echo(line)
    return report
