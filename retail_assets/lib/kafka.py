"""Kafka offsets: exact-range reads whose resume point comes from committed Bronze data.

The contract (SPEC §5): every offset lands in Bronze once. A run reads, per Kafka partition,
from the offset after the highest one Bronze already holds up to the high watermark taken when
the run starts, and writes rows with their topic/partition/offset in one Delta commit. A crash
before the commit leaves no trace, so the re-run reads the same range; a crash after it moves
the resume point past the range, so the re-run skips it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

T = TypeVar("T")


class KafkaUnavailable(RuntimeError):
    """The broker could not be reached or did not answer in time."""


class OffsetsNotRetained(RuntimeError):
    """A range to re-read is older than what the broker still keeps."""


class LogBehindBronze(RuntimeError):
    """The broker's log ends before offsets Bronze already holds: the topic was recreated or the
    broker restarted empty, so its new offsets would repeat ingested ones."""


def log_behind(high: Mapping[int, int], committed: Mapping[int, int]) -> dict[int, tuple[int, int]]:
    """Partitions whose log ends at or before the highest offset Bronze holds: {p: (end, held)}."""
    return {p: (high.get(p, 0), held) for p, held in sorted(committed.items()) if high.get(p, 0) <= held}


def check_log_not_behind(topic: str, high: Mapping[int, int], committed: Mapping[int, int]) -> None:
    behind = log_behind(high, committed)
    if behind:
        detail = ", ".join(f"p{p}: log ends at {end}, Bronze holds up to offset {held}" for p, (end, held) in behind.items())
        raise LogBehindBronze(
            f"the broker's log of {topic} ends before what Bronze already holds ({detail}): the topic was recreated "
            "or the broker restarted empty, and its offsets would repeat ones already ingested, so nothing is read. "
            "Point RETAIL_KAFKA_BOOTSTRAP at the broker that holds those offsets, or use a fresh data root for a new topic."
        )


@dataclass(frozen=True, order=True)
class OffsetRange:
    """Offsets [start, end) of one Kafka partition."""

    partition: int
    start: int
    end: int

    @property
    def count(self) -> int:
        return max(0, self.end - self.start)

    def __str__(self) -> str:
        return f"p{self.partition}[{self.start},{self.end})"


def _consumer(config: Mapping[str, Any]) -> Consumer:
    # The project never commits consumer offsets: the resume point lives in Bronze.
    base = {"enable.auto.commit": False, "enable.partition.eof": True, "auto.offset.reset": "earliest", "group.id": "retail-assets-bronze"}
    return Consumer({**base, **config})


def partitions_of(consumer: Consumer, topic: str, timeout: float) -> list[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot list topic {topic!r}: {exc}") from exc
    info = metadata.topics.get(topic)
    if info is None or info.error is not None:
        # An absent topic is "nothing produced yet", not an outage.
        if info is not None and info.error.code() not in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
            raise KafkaUnavailable(f"topic {topic!r}: {info.error}")
        return []
    return sorted(info.partitions)


def watermarks(config: Mapping[str, Any], topic: str, *, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """(low, high) watermark of every partition of the topic; bounded by `timeout` per call."""
    consumer = _consumer({**config, "socket.timeout.ms": int(timeout * 1000)})
    try:
        result = {}
        for p in partitions_of(consumer, topic, timeout):
            try:
                result[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
            except KafkaException as exc:
                raise KafkaUnavailable(f"cannot read watermarks of {topic}/{p}: {exc}") from exc
        return result
    finally:
        consumer.close()


def pending_ranges(high: Mapping[int, int], committed_max: Mapping[int, int]) -> list[OffsetRange]:
    """Ranges not yet in Bronze: after the highest committed offset up to the high watermark."""
    ranges = []
    for p, hw in sorted(high.items()):
        start = committed_max.get(p, -1) + 1
        if hw > start:
            ranges.append(OffsetRange(p, start, hw))
    return ranges


def merge_ranges(ranges: list[OffsetRange]) -> list[OffsetRange]:
    """One range per partition: a partition's recorded range and its pending tail are adjacent."""
    merged: dict[int, OffsetRange] = {}
    for r in sorted(r for r in ranges if r.count):
        prev = merged.get(r.partition)
        if prev is None:
            merged[r.partition] = r
        elif r.start <= prev.end:
            merged[r.partition] = OffsetRange(r.partition, prev.start, max(prev.end, r.end))
        else:
            raise ValueError(f"offset ranges {prev} and {r} leave a gap; refusing to skip offsets {prev.end}..{r.start - 1}")
    return [merged[p] for p in sorted(merged)]


def read_ranges(config: Mapping[str, Any], topic: str, ranges: list[OffsetRange], *, timeout: float = 60.0) -> Iterator[Message]:
    """Yield every message of the given ranges, each exactly once, partition by partition.

    Fails with `OffsetsNotRetained` when the broker no longer holds the start of a range and with
    `KafkaUnavailable` when the range cannot be read completely within `timeout` seconds.
    """
    todo = merge_ranges(ranges)
    if not todo:
        return
    check_retained(config, topic, todo, timeout)
    yield from _consume(config, topic, todo, timeout, threading.Event())


def read_each_partition(
    config: Mapping[str, Any],
    topic: str,
    ranges: list[OffsetRange],
    handle: Callable[[Iterator[Message]], T],
    *,
    timeout: float = 60.0,
    known_watermarks: Mapping[int, tuple[int, int]] | None = None,
) -> list[T]:
    """`handle(messages)` for each partition's range, in partition order, the partitions read at
    the same time, each by its own consumer: a broker answers one fetch per connection at a
    time, so one consumer waits on it while `handle` could be working. Same contract and
    failures as `read_ranges`; when one partition fails the others stop and the failure is raised.
    `known_watermarks`, taken by the caller just before, spares asking the broker again (a
    consumer and a ListOffsets request per watermark).
    """
    todo = merge_ranges(ranges)
    if not todo:
        return []
    check_retained(config, topic, todo, timeout, known_watermarks)
    stop = threading.Event()

    def one(r: OffsetRange) -> T:
        messages = _consume(config, topic, [r], timeout, stop)
        try:
            return handle(messages)
        except BaseException:
            stop.set()
            raise
        finally:
            messages.close()

    with ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="kafka-partition") as pool:
        futures = [pool.submit(one, r) for r in todo]
    failures = [e for e in (f.exception() for f in futures) if e is not None]
    if failures:
        raise next((e for e in failures if not isinstance(e, _Stopped)), failures[0])
    return [f.result() for f in futures]


class _Stopped(Exception):
    """Another partition's read failed; this one gives up."""


def check_retained(
    config: Mapping[str, Any], topic: str, todo: list[OffsetRange], timeout: float, known: Mapping[int, tuple[int, int]] | None = None
) -> None:
    """`OffsetsNotRetained` unless the broker holds every offset of the ranges (whichever reader
    reads them next: Spark's source would otherwise wait minutes and fail with a vaguer error)."""
    lows = known if known is not None else watermarks(config, topic, timeout=min(timeout, 10.0))
    for r in todo:
        low, high = lows.get(r.partition, (0, 0))
        if r.start < low or r.end > high:
            raise OffsetsNotRetained(
                f"{topic} {r} is no longer (or not yet) on the broker, which holds offsets [{low},{high}) of partition "
                f"{r.partition}; this partition cannot be re-read from Kafka"
            )


def _consume(config: Mapping[str, Any], topic: str, todo: list[OffsetRange], timeout: float, stop: threading.Event) -> Iterator[Message]:
    consumer = _consumer(config)
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(topic, r.partition, r.start) for r in todo])
        next_offset = {r.partition: r.start for r in todo}
        end = {r.partition: r.end for r in todo}
        while any(next_offset[p] < end[p] for p in end):
            if stop.is_set():
                raise _Stopped(f"reading {topic} stopped: another partition's read failed")
            if time.monotonic() > deadline:
                missing = {p: f"{next_offset[p]}..{end[p]}" for p in end if next_offset[p] < end[p]}
                raise KafkaUnavailable(f"timed out after {timeout:.0f}s reading {topic}; still missing offsets {missing}")
            for msg in consumer.consume(num_messages=2000, timeout=1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        # Nothing more on the log: offsets up to here were control records or gaps.
                        p = msg.partition()
                        if p in end and msg.offset() >= end[p]:
                            next_offset[p] = end[p]
                        continue
                    raise KafkaUnavailable(f"error reading {topic}: {err}")
                p, off = msg.partition(), msg.offset()
                if off < next_offset.get(p, 0) or off >= end.get(p, -1):
                    continue  # outside the range (re-delivery after a seek, or past the watermark)
                next_offset[p] = off + 1
                yield msg
    finally:
        consumer.close()
