"""A live point-of-sale stream for the local broker: today's generated events, sent at a rate.

The events come from the deterministic generator (several stores, duplicates, late and future
events when defects are on), for the current business day, in a slightly shuffled order (tills
flush out of order). From the middle of the stream on, every well-formed event carries a field
the contract does not name yet (`terminal_id`), the way a producer rolls out a schema change.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from retail_assets.tooling.broker import produce
from retail_assets.tooling.generator import GeneratorConfig, KafkaMessage, generate

NEW_FIELD = "terminal_id"


@dataclass(frozen=True)
class StreamConfig:
    seed: int = 7
    day: dt.date | None = None  # business day of the events; default today (UTC)
    stores: int = 6
    transactions_per_store_day: int = 40
    defects: bool = True
    evolve_at: float = 0.5  # share of the stream after which the new optional field appears
    disorder: int = 5  # an event may overtake up to this many earlier ones


def stream_messages(config: StreamConfig, landing_root: str | Path | None = None) -> list[KafkaMessage]:
    """The whole day's events in sending order (deterministic for a config and day).

    With `landing_root`, the generator's reference data for the same day (customer, product and
    store change records, inventory) is dropped there as a producer would: written under a
    temporary name and renamed, never replacing a file that is already there.
    """
    day = config.day or dt.datetime.now(dt.UTC).date()
    generator = GeneratorConfig(
        seed=config.seed,
        start_date=day,
        days=1,
        stores=config.stores,
        products=60,
        customers=200,
        transactions_per_store_day=config.transactions_per_store_day,
        kafka_share=1.0,
        defects=config.defects,
    )
    with tempfile.TemporaryDirectory(prefix="retail-stream-") as out:
        result = generate(generator, out)
        messages = result.kafka_messages
        if landing_root is not None:
            drop_files(result.landing_root, Path(landing_root))
    rng = random.Random(f"{config.seed}:stream")
    ordered = sorted(messages, key=lambda m: (m.timestamp_ms, m.index))
    # bounded disorder: sort by a jittered position
    ordered = [
        m
        for _, m in sorted(
            ((i + rng.uniform(0, config.disorder), m) for i, m in enumerate(ordered)), key=lambda x: x[0]
        )
    ]
    cut = int(len(ordered) * config.evolve_at)
    return ordered[:cut] + [with_new_field(m) for m in ordered[cut:]]


def drop_files(source: Path, landing_root: Path) -> list[Path]:
    """Copy every file under `source` into `landing_root` (same relative path), atomically."""
    dropped = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        target = landing_root / path.relative_to(source)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        shutil.copyfile(path, partial)
        partial.rename(target)
        dropped.append(target)
    return dropped


def with_new_field(message: KafkaMessage) -> KafkaMessage:
    try:
        event = json.loads(message.value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return message
    if not isinstance(event, dict) or NEW_FIELD in event:
        return message
    event[NEW_FIELD] = f"T-{event.get('store_id')}-{message.index % 4}"
    return replace(message, value=json.dumps(event, separators=(",", ":")).encode())


def batches(messages: list[KafkaMessage], size: int) -> Iterator[list[KafkaMessage]]:
    for start in range(0, len(messages), size):
        yield messages[start : start + size]


def send_stream(
    bootstrap_servers: str,
    topic: str,
    messages: list[KafkaMessage],
    *,
    rate_per_s: float,
    batch_size: int = 50,
    on_batch: Callable[[int, list[KafkaMessage], dict[int, str], float], None] | None = None,
) -> dict[int, str]:
    """Send in batches paced to `rate_per_s`, stamped with the time they are sent (arrival).

    `on_batch(number, batch, placed, sent_at)` is called after each batch is acknowledged.
    Returns `{message index: "topic/partition/offset"}` for every message.
    """
    placed: dict[int, str] = {}
    interval = batch_size / rate_per_s if rate_per_s > 0 else 0.0
    next_at = time.monotonic()
    for number, batch in enumerate(batches(messages, batch_size)):
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent_at = time.time()
        stamped = [replace(m, timestamp_ms=int(sent_at * 1000)) for m in batch]
        where = produce(bootstrap_servers, topic, stamped)
        placed.update(where)
        if on_batch is not None:
            on_batch(number, batch, where, sent_at)
        next_at += interval
    return placed
