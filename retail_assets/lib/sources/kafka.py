"""Kafka offsets: exact-range reads whose resume point comes from committed Bronze data.

The contract (SPEC §5): every offset lands in Bronze once. A run reads, per Kafka partition,
from the offset after the highest one Bronze already holds up to the high watermark taken when
the run starts, and writes rows with their topic/partition/offset in one Delta commit. A crash
before the commit leaves no trace, so the re-run reads the same range; a crash after it moves
the resume point past the range, so the re-run skips it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition


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
        detail = ", ".join(
            f"p{p}: log ends at {end}, Bronze holds up to offset {held}" for p, (end, held) in behind.items()
        )
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


@dataclass(frozen=True)
class MessageColumns:
    """A run of messages of one topic as columns: what the Bronze parser takes, so that the
    per-message work of a large range is list comprehensions and Arrow, not Python calls."""

    topics: list[str]
    partitions: list[int]
    offsets: list[int]
    values: list[bytes | None]
    timestamps_ms: list[int]  # negative: the message carries no timestamp

    def __len__(self) -> int:
        return len(self.offsets)

    def take(self, indices: Sequence[int]) -> MessageColumns:
        return MessageColumns(
            *(
                [column[i] for i in indices]
                for column in (self.topics, self.partitions, self.offsets, self.values, self.timestamps_ms)
            )
        )

    @classmethod
    def of(cls, messages: Sequence[Message], topic: str) -> MessageColumns:
        """The columns of messages all read from `topic` (no per-message topic lookup)."""
        return cls(
            [topic] * len(messages),
            [m.partition() for m in messages],
            [m.offset() for m in messages],
            [m.value() for m in messages],
            [m.timestamp()[1] for m in messages],
        )


def _consumer(config: Mapping[str, Any]) -> Consumer:
    # The project never commits consumer offsets: the resume point lives in Bronze.
    base = {
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "group.id": "retail-assets-bronze",
        # When the client's prefetch queue is full (64 MB by default: a range larger than that
        # is read while it is parsed), fetch again as soon as it drains instead of pausing a
        # whole second, librdkafka's default.
        "fetch.queue.backoff.ms": 10,
    }
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
            raise ValueError(
                f"offset ranges {prev} and {r} leave a gap; refusing to skip offsets {prev.end}..{r.start - 1}"
            )
    return [merged[p] for p in sorted(merged)]


def read_ranges(
    config: Mapping[str, Any],
    topic: str,
    ranges: list[OffsetRange],
    *,
    timeout: float = 60.0,
    known_watermarks: Mapping[int, tuple[int, int]] | None = None,
) -> Iterator[MessageColumns]:
    """Every message of the given ranges, each exactly once, in the batches one consumer fetches
    (message columns). The consumer fetches ahead in the background while the caller works on a
    batch, so one consumer keeps up with any parser here; consumers in threads would only
    contend for the interpreter.

    Fails with `OffsetsNotRetained` when the broker no longer holds the start of a range and with
    `KafkaUnavailable` when the range cannot be read completely within `timeout` seconds.
    `known_watermarks`, taken by the caller just before, spares asking the broker again (a
    consumer and a ListOffsets request per watermark).
    """
    todo = merge_ranges(ranges)
    if not todo:
        return
    check_retained(config, topic, todo, timeout, known_watermarks)
    yield from _consume(config, topic, todo, timeout)


def check_retained(
    config: Mapping[str, Any],
    topic: str,
    todo: list[OffsetRange],
    timeout: float,
    known: Mapping[int, tuple[int, int]] | None = None,
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


def _consume(
    config: Mapping[str, Any], topic: str, todo: list[OffsetRange], timeout: float
) -> Iterator[MessageColumns]:
    """The messages of the ranges, in the batches the consumer hands them over, each once."""
    consumer = _consumer(config)
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(topic, r.partition, r.start) for r in todo])
        next_offset = {r.partition: r.start for r in todo}
        end = {r.partition: r.end for r in todo}
        while any(next_offset[p] < end[p] for p in end):
            if time.monotonic() > deadline:
                missing = {p: f"{next_offset[p]}..{end[p]}" for p in end if next_offset[p] < end[p]}
                raise KafkaUnavailable(
                    f"timed out after {timeout:.0f}s reading {topic}; still missing offsets {missing}"
                )
            # Never more than the ranges still lack: `consume` waits out its whole timeout for
            # a batch the log cannot fill, which would stall the end of every range.
            wanted = sum(end[p] - next_offset[p] for p in end)
            batch = _in_ranges(
                consumer.consume(num_messages=max(1, min(2000, wanted)), timeout=1.0), topic, next_offset, end
            )
            if batch is not None:
                yield batch
    finally:
        consumer.close()


def _in_ranges(
    fetched: list[Message], topic: str, next_offset: dict[int, int], end: Mapping[int, int]
) -> MessageColumns | None:
    """The messages of one `consume` call that lie in the ranges (`next_offset` up to `end` per
    partition), in order, each moving its partition's `next_offset` on; None if there are none.
    A partition's end-of-log event follows its messages: it is applied after them, ending the
    partition's range when the log ends at or past it. Any other error is raised."""
    messages, log_ends = fetched, []
    if any(msg.error() is not None for msg in fetched):
        messages = []
        for msg in fetched:
            err = msg.error()
            if err is None:
                messages.append(msg)
            elif err.code() == KafkaError._PARTITION_EOF:
                log_ends.append((msg.partition(), msg.offset()))
            else:
                raise KafkaUnavailable(f"error reading {topic}: {err}")
    batch = None
    if messages:
        batch = MessageColumns.of(messages, topic)  # the consumer is assigned this topic only
        kept = []
        for i, (p, off) in enumerate(zip(batch.partitions, batch.offsets)):
            if next_offset.get(p, 0) <= off < end.get(p, -1):
                next_offset[p] = off + 1
                kept.append(i)
        # Anything else lies outside the range (re-delivered after a seek, or past the watermark).
        batch = batch if len(kept) == len(batch) else batch.take(kept) if kept else None
    for p, at in log_ends:
        # Nothing more on the log: offsets up to here that never came were control records or gaps.
        if p in end and at >= end[p]:
            next_offset[p] = end[p]
    return batch
