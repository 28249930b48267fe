"""What a latency measurement holds: the batches sent and what the Dagster instance recorded of
the stream lane (its runs, their events, the Kafka sensor's ticks), as plain data."""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retail_assets.lib.registry.tables import (
    BRONZE_POS_TRANSACTIONS,
    GOLD_FACT_SALES,
    TableSpec,
)
from retail_assets.lib.sources.kafka import OffsetRange

# The tag the Kafka sensor puts on the runs it requests (`defs/bronze/sensors.py`, `LANE_TAGS`).
LANE_TAG = ("retail/lane", "stream")
REQUESTED_RANGES_TAG = "retail/offset_ranges"
# The Bronze materialization's metadata entry naming every offset range its step read.
READ_RANGES_METADATA = "offset_ranges"
KAFKA_SENSOR = "kafka_offsets_sensor"
# The engine event a run worker logs once its process is up (dagster/_cli/api.py)
PROCESS_STARTED = "Started process for run"
# A batch seen this long before its run's fact materialization was logged still counts as that
# run's (the Delta commit comes just before the event; the poller may read in between).
SEEN_SLACK_S = 2.0
_RANGE = re.compile(r"p(\d+)\[(\d+),(\d+)\)")


def percentile(samples: Iterable[float], q: int) -> float | None:
    ordered = sorted(samples)
    if not ordered:
        return None
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[q - 1]


@dataclass
class Batch:
    number: int
    transaction_ids: frozenset[str]
    sent_at: float
    seen_at: float | None = None
    # (Kafka partition, offset) of every event, as the broker acknowledged them
    offsets: frozenset[tuple[int, int]] = frozenset()

    @property
    def latency_s(self) -> float | None:
        return None if self.seen_at is None else self.seen_at - self.sent_at


@dataclass
class LatencyReport:
    batches: list[Batch]
    events_per_batch: int
    interval_s: float
    warmup_s: float
    notes: list[str] = field(default_factory=list)
    breakdown: dict[str, Any] | None = None

    @property
    def samples(self) -> list[float]:
        return [b.latency_s for b in self.batches if b.latency_s is not None]

    def percentile(self, q: int) -> float | None:
        return percentile(self.samples, q)

    def as_dict(self) -> dict[str, object]:
        return {
            "latency_p50_s": self.percentile(50),
            "latency_p95_s": self.percentile(95),
            "latency_max_s": max(self.samples) if self.samples else None,
            "latency_batches": len(self.batches),
            "latency_batches_seen": len(self.samples),
            "latency_events_per_batch": self.events_per_batch,
            "latency_interval_s": self.interval_s,
            "latency_warmup_s": round(self.warmup_s, 1),
            "latency_samples_s": [round(s, 2) for s in self.samples],
            "latency_notes": self.notes,
            "latency_breakdown": self.breakdown,
        }


# --- what the Dagster instance recorded, as plain data -------------------------------------------


@dataclass(frozen=True)
class StepTimes:
    key: str
    start: float
    end: float | None = None  # STEP_SUCCESS or STEP_FAILURE

    @property
    def duration_s(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True)
class LaneRun:
    """One stream-lane run, from its run record and event log."""

    run_id: str
    # the run's first event: the sensor daemon logs its planned materializations and checks right
    # after creating it (the run record's own creation time has a resolution of one second)
    created: float | None
    enqueued: float | None = None  # RUN_ENQUEUED: the daemon submitted it to the run queue
    # RUN_STARTING: the run coordinator took it off the queue and is asking the launcher to start
    # it (Dagster 1.13 logs no RUN_DEQUEUED; the coordinator writes RUN_STARTING as it dequeues)
    starting: float | None = None
    process_up: float | None = None  # the run worker's "Started process for run" (Python and dagster up)
    started: float | None = None  # RUN_START, once the run worker has loaded the job's code
    ended: float | None = None  # RUN_SUCCESS / RUN_FAILURE / RUN_CANCELED
    steps: tuple[StepTimes, ...] = ()
    bronze_at: float | None = None  # bronze/pos_transactions materialized
    fact_at: float | None = None  # gold/fact_sales materialized
    read: tuple[OffsetRange, ...] = ()  # what its Bronze step read (materialization metadata)
    requested: tuple[OffsetRange, ...] = ()  # what the sensor saw pending (the run's tag)

    @property
    def first_step(self) -> float | None:
        return min((s.start for s in self.steps), default=None)


@dataclass(frozen=True)
class Tick:
    """One evaluation of the Kafka sensor."""

    start: float
    end: float | None = None
    run_ids: tuple[str, ...] = ()
    skip_reason: str | None = None


@dataclass(frozen=True)
class LaneHistory:
    runs: tuple[LaneRun, ...]
    ticks: tuple[Tick, ...]
    # (started, ended) of every run outside the lane: automation catching up, dimensions …
    other_runs: tuple[tuple[float, float | None], ...] = ()


# --- attribution -----------------------------------------------------------------------------


def parse_ranges(text: str | None) -> tuple[OffsetRange, ...]:
    """`p0[0,20), p1[5,9)` (as `OffsetRange` prints) → ranges."""
    return tuple(OffsetRange(int(p), int(s), int(e)) for p, s, e in _RANGE.findall(text or ""))


def covers(ranges: Sequence[OffsetRange], offsets: Iterable[tuple[int, int]]) -> bool:
    return all(any(r.partition == p and r.start <= o < r.end for r in ranges) for p, o in offsets)


def _asset_path(spec: TableSpec) -> tuple[str, ...]:
    return (spec.layer.value, spec.name)


def _lane_run(instance, record) -> LaneRun:
    from dagster import DagsterEventType as E  # noqa: PLC0415 - dagster loads only when reading

    times: dict[E, float] = {}
    first = None
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    bronze_at = fact_at = None
    read: tuple[OffsetRange, ...] = ()
    for entry in instance.all_logs(record.dagster_run.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        first = entry.timestamp if first is None else min(first, entry.timestamp)
        kind = event.event_type
        if kind in (E.RUN_ENQUEUED, E.RUN_STARTING, E.RUN_START):
            times.setdefault(kind, entry.timestamp)
        elif kind == E.ENGINE_EVENT and (event.message or "").startswith(PROCESS_STARTED):
            times.setdefault(kind, entry.timestamp)
        elif kind in (E.RUN_SUCCESS, E.RUN_FAILURE, E.RUN_CANCELED):
            times[E.RUN_SUCCESS] = entry.timestamp
        elif kind == E.STEP_START and entry.step_key:
            starts.setdefault(entry.step_key, entry.timestamp)
        elif kind in (E.STEP_SUCCESS, E.STEP_FAILURE) and entry.step_key:
            ends[entry.step_key] = entry.timestamp
        elif kind == E.ASSET_MATERIALIZATION and event.asset_key is not None:
            path = tuple(event.asset_key.path)
            if path == _asset_path(GOLD_FACT_SALES) and fact_at is None:
                fact_at = entry.timestamp
            elif path == _asset_path(BRONZE_POS_TRANSACTIONS) and bronze_at is None:
                bronze_at = entry.timestamp
                value = entry.asset_materialization.metadata.get(READ_RANGES_METADATA)
                read = parse_ranges(str(getattr(value, "value", value) or ""))
    created = first
    if created is None:
        stamp = record.create_timestamp
        created = (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).timestamp()
    run = record.dagster_run
    return LaneRun(
        run_id=run.run_id,
        created=created,
        enqueued=times.get(E.RUN_ENQUEUED),
        starting=times.get(E.RUN_STARTING),
        process_up=times.get(E.ENGINE_EVENT),
        started=times.get(E.RUN_START),
        ended=times.get(E.RUN_SUCCESS, record.end_time),
        steps=tuple(StepTimes(k, t, ends.get(k)) for k, t in sorted(starts.items(), key=lambda kv: kv[1])),
        bronze_at=bronze_at,
        fact_at=fact_at,
        read=read,
        requested=parse_ranges(run.tags.get(REQUESTED_RANGES_TAG)),
    )


def read_lane_history(dagster_home: Path) -> LaneHistory:
    """The stream-lane runs, the Kafka sensor's ticks and the other runs' spans, from the
    instance at `dagster_home` (read after `dagster dev` stopped)."""
    import dagster as dg  # noqa: PLC0415

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        key, value = LANE_TAG
        lane = instance.get_run_records(filters=dg.RunsFilter(tags={key: value}))
        runs = tuple(sorted((_lane_run(instance, r) for r in lane), key=lambda r: r.created or 0.0))
        lane_ids = {r.run_id for r in runs}
        others = tuple(
            (r.start_time, r.end_time)
            for r in instance.get_run_records()
            if r.dagster_run.run_id not in lane_ids and r.start_time is not None
        )
        ticks: list[Tick] = []
        for state in instance.all_instigator_state():
            if state.instigator_name != KAFKA_SENSOR:
                continue
            for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id):
                ticks.append(Tick(tick.timestamp, tick.end_timestamp, tuple(tick.run_ids), tick.skip_reason))
        return LaneHistory(runs, tuple(sorted(ticks, key=lambda t: t.start)), others)
    finally:
        instance.dispose()


# --- the measurement ---------------------------------------------------------------------------


def batch_from_entry(entry: Mapping[str, Any]) -> Batch:
    """A batch back from the JSON's `latency_breakdown.batches` (its transaction ids are not kept)."""
    offsets = frozenset((r.partition, o) for r in parse_ranges(entry["offsets"]) for o in range(r.start, r.end))
    return Batch(entry["batch"], frozenset(), entry["sent_at"], entry["seen_at"], offsets)


def offsets_label(offsets: Iterable[tuple[int, int]]) -> str:
    """(partition, offset) pairs as contiguous ranges, `p0[3,7),p1[0,2)`."""
    ranges: list[OffsetRange] = []
    for partition, offset in sorted(offsets):
        last = ranges[-1] if ranges else None
        if last is not None and last.partition == partition and last.end == offset:
            ranges[-1] = OffsetRange(partition, last.start, offset + 1)
        else:
            ranges.append(OffsetRange(partition, offset, offset + 1))
    return ",".join(map(str, ranges))
