"""Where each batch's seconds went: the run that carried it and the phases of its latency."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from retail_assets.lib.sources.kafka import OffsetRange
from retail_assets.tooling.latency.records import (
    SEEN_SLACK_S,
    Batch,
    LaneHistory,
    LaneRun,
    Tick,
    covers,
    offsets_label,
    parse_ranges,
    percentile,
)


@dataclass(frozen=True)
class Phase:
    name: str
    group: str
    what: str


# In timeline order; each ends at the boundary `_boundaries` gives in the same order, and the
# last one at the moment the poller saw the batch. The (a)–(e) are the groups.
PHASES = (
    Phase("sensor_next_tick", "sensor", "batch sent → the first Kafka sensor tick that sees it starts"),
    Phase(
        "sensor_hold", "sensor", "→ the tick that requests the run (earlier ticks saw the batch and asked for nothing)"
    ),
    Phase("sensor_request", "sensor", "the requesting tick's evaluation → run created (its first event)"),
    Phase("queue_submit", "queue", "→ RUN_ENQUEUED (the daemon logs the run's planned materializations and checks)"),
    Phase("queue_lane", "queue", "→ the previous stream-lane run ended (one lane run at a time)"),
    Phase("queue_pickup", "queue", "→ RUN_STARTING (the coordinator's dequeue loop, the instance's other run limits)"),
    Phase(
        "launch_process", "launch", "RUN_STARTING → the run worker's 'Started process for run' (a new Python process)"
    ),
    Phase("launch_code", "launch", "→ RUN_START (the run worker loads the job's code)"),
    Phase("run_setup", "steps", "RUN_START → first STEP_START (resources, execution plan)"),
    Phase("steps_to_fact", "steps", "first STEP_START → gold/fact_sales materialized"),
    Phase("visibility", "visibility", "fact materialized → seen by the poller (0.5 s polls of the Delta table)"),
)
GROUPS = ("sensor", "queue", "launch", "steps", "visibility")

BY_READ = "offsets read"  # exact: the first run whose Bronze step read every offset of the batch
BY_TAG = "offsets requested"  # the first run whose sensor tag names every offset of the batch
BY_TIMING = "timing"  # the first run whose Bronze step started after the batch was sent

HOLD_REASONS = (
    ("below the lag threshold", "lag below the threshold, max wait not reached"),
    ("reads up to the log's end", "a queued run will read them"),
    ("for them is", "a started run covers them"),
    ("waiting for", "another run writes the lane's tables"),
    ("Bronze holds every offset", "nothing pending yet"),
)


@dataclass(frozen=True)
class Attribution:
    batch: int
    latency_s: float
    run_id: str
    carrier: str  # BY_READ, BY_TAG or BY_TIMING
    phases: Mapping[str, float | None]  # None: the boundary was not recorded (the next phase has it)
    hold_ticks: tuple[str, ...] = ()  # why each tick between the first and the requesting one asked for nothing
    other_runs_in_flight: int = 0  # runs outside the lane running when the carrier was created

    def group(self, name: str) -> float | None:
        values = [self.phases[p.name] for p in PHASES if p.group == name and self.phases[p.name] is not None]
        return sum(values) if values else None


def find_carrier(batch: Batch, runs: Sequence[LaneRun]) -> tuple[LaneRun, str] | None:
    """The lane run that brought the batch to Gold, and how it was found.

    Every lane run re-reads the day's offsets Bronze holds and takes everything up to the high
    watermark when its Bronze step starts, so the later runs read a batch's offsets too: the
    carrier is the *first* run, in the order the lane ran them, whose Bronze step read them all
    and which materialized the fact. Without the Bronze metadata, the first run whose sensor tag
    names them (the tag lists what was pending at the tick, not what a run took on at its start);
    without either, the first run whose Bronze step started after the batch was sent and
    whose fact was materialized by the time the batch was seen.
    """
    done = sorted((r for r in runs if r.fact_at is not None), key=lambda r: (r.bronze_at or r.fact_at or 0.0))
    if batch.offsets:
        for r in done:
            if r.read and covers(r.read, batch.offsets):
                return r, BY_READ
        for r in sorted(done, key=lambda r: r.created or 0.0):
            if r.requested and covers(r.requested, batch.offsets):
                return r, BY_TAG
    seen = batch.seen_at if batch.seen_at is not None else float("inf")
    for r in done:
        bronze_start = next((s.start for s in r.steps if s.key.startswith("bronze")), r.started)
        if bronze_start is not None and bronze_start >= batch.sent_at and (r.fact_at or 0.0) <= seen + SEEN_SLACK_S:
            return r, BY_TIMING
    return None


def saw(tick: Tick, batch: Batch, requested: Mapping[str, Sequence[OffsetRange]]) -> bool:
    """Whether the tick can have seen the batch pending: it started after the batch was sent, or
    it was still running then and the ranges it names (its skip reason's pending ranges, or the
    tag of the run it requested) hold every offset of the batch."""
    if tick.start >= batch.sent_at:
        return True
    if tick.end is None or tick.end < batch.sent_at or not batch.offsets:
        return False
    ranges = parse_ranges(tick.skip_reason) + tuple(r for i in tick.run_ids for r in requested.get(i, ()))
    return covers(ranges, batch.offsets) if ranges else False


def _boundaries(batch: Batch, run: LaneRun, history: LaneHistory) -> list[float | None]:
    ticks = sorted(history.ticks, key=lambda t: t.start)
    request_tick = next((t.start for t in ticks if run.run_id in t.run_ids), None)
    requested = {r.run_id: r.requested for r in history.runs}
    next_tick = next((t.start for t in ticks if saw(t, batch, requested)), None)
    # A run requested (or created) before the batch was sent leaves no tick for the batch to wait for.
    caps = [c for c in (request_tick, run.created) if c is not None]
    if next_tick is not None and caps:
        next_tick = min(next_tick, *caps)
    if request_tick is not None and run.created is not None:
        request_tick = min(request_tick, run.created)
    lane_free = None
    if run.created is not None:
        # the previous lane run's end, if the run waited for it in the queue
        until = run.starting if run.starting is not None else run.started
        ends = [
            r.ended
            for r in history.runs
            if r.run_id != run.run_id and r.ended is not None and until is not None and r.ended <= until
        ]
        lane_free = max([run.enqueued or run.created, *ends])
    return [
        next_tick,
        request_tick,
        run.created,
        run.enqueued,
        lane_free,
        run.starting,
        run.process_up,
        run.started,
        run.first_step,
        run.fact_at,
    ]


def attribute(batch: Batch, history: LaneHistory) -> Attribution | None:
    """Split one seen batch's latency into `PHASES`, from its carrier run's records.

    Each boundary is clipped to [previous boundary, seen], so a run created before the batch was
    sent contributes no sensor time, and the phases always add up to the latency.
    """
    if batch.seen_at is None:
        return None
    found = find_carrier(batch, history.runs)
    if found is None:
        return None
    run, carrier = found
    ends = [*_boundaries(batch, run, history), batch.seen_at]
    phases: dict[str, float | None] = {}
    previous = batch.sent_at
    for phase, end in zip(PHASES, ends, strict=True):
        if end is None:
            phases[phase.name] = None
            continue
        clipped = min(batch.seen_at, max(previous, end))
        phases[phase.name] = clipped - previous
        previous = clipped
    first_tick, request_tick = ends[0], ends[1]
    hold = ()
    if first_tick is not None and request_tick is not None:
        hold = tuple(
            hold_reason(t.skip_reason)
            for t in sorted(history.ticks, key=lambda t: t.start)
            if first_tick <= t.start < request_tick
        )
    created = run.created
    busy = 0
    if created is not None:
        busy = sum(1 for start, end in history.other_runs if start <= created and (end is None or end > created))
    return Attribution(batch.number, batch.seen_at - batch.sent_at, run.run_id, carrier, phases, hold, busy)


def hold_reason(skip_reason: str | None) -> str:
    for needle, label in HOLD_REASONS:
        if skip_reason and needle in skip_reason:
            return label
    return "other" if skip_reason else "no reason recorded"


def _figures(values: Iterable[float | None]) -> dict[str, float | int | None]:
    present = [v for v in values if v is not None]

    def rounded(x: float | None) -> float | None:
        return None if x is None else round(x, 2)

    return {
        "p50_s": rounded(percentile(present, 50)),
        "p95_s": rounded(percentile(present, 95)),
        "mean_s": rounded(statistics.fmean(present) if present else None),
        "max_s": rounded(max(present, default=None)),
        "n": len(present),
    }


def breakdown(batches: Sequence[Batch], history: LaneHistory) -> dict[str, Any]:
    """Per phase and per group p50/p95 across the batches; the carrier runs' steps; the sensor's
    ticks; each batch's own figures."""
    attributed = [a for a in (attribute(b, history) for b in batches) if a is not None]
    by_batch = {a.batch: a for a in attributed}
    seen = [b for b in batches if b.seen_at is not None]
    total = sum(a.latency_s for a in attributed)

    def summary(values: list[float | None]) -> dict[str, Any]:
        # the share of the summed latency: what the phase costs on average, against the whole
        share = (
            round(sum(v or 0.0 for v in values) / total, 3) if total and any(v is not None for v in values) else None
        )
        return {**_figures(values), "share": share}

    phases = {
        p.name: {"group": p.group, "what": p.what, **summary([a.phases[p.name] for a in attributed])} for p in PHASES
    }
    groups = {g: summary([a.group(g) for a in attributed]) for g in GROUPS}

    by_id = {r.run_id: r for r in history.runs}
    carriers = [by_id[i] for i in dict.fromkeys(a.run_id for a in attributed)]
    step_durations: dict[str, list[float]] = {}
    before_fact: Counter[str] = Counter()
    for run in carriers:
        for step in run.steps:
            if step.duration_s is not None:
                step_durations.setdefault(step.key, []).append(step.duration_s)
            if run.fact_at is not None and step.end is not None and step.end <= run.fact_at + 0.5:
                before_fact[step.key] += 1
    steps = {
        key: {**_figures(values), "before_fact": before_fact[key]}
        for key, values in sorted(step_durations.items(), key=lambda kv: min(_step_starts(carriers, kv[0])))
    }

    window_start = min((b.sent_at for b in batches), default=0.0)
    window_end = max((b.seen_at or b.sent_at for b in batches), default=0.0)
    in_window = sorted((t for t in history.ticks if window_start <= t.start <= window_end), key=lambda t: t.start)
    intervals = [b.start - a.start for a, b in zip(in_window, in_window[1:], strict=False)]
    lane_in_window = [r for r in history.runs if r.created is not None and window_start <= r.created <= window_end]
    per_run = Counter(a.run_id for a in attributed)
    hold = Counter(reason for a in attributed for reason in a.hold_ticks)

    notes = []
    if len(attributed) < len(seen):
        missing = sorted({b.number for b in seen} - {a.batch for a in attributed})
        notes.append(f"no carrier run found for batch(es) {missing}")
    for name in ("sensor_next_tick", "sensor_hold", "queue_pickup", "launch_process"):
        unknown = [a.batch for a in attributed if a.phases[name] is None]
        if unknown:
            notes.append(f"{name}: boundary not recorded for batch(es) {unknown}; the next phase holds its time")
    return {
        "method": (
            "Each batch's carrier is the first stream-lane run (tag retail/lane=stream) whose Bronze "
            "materialization's offset_ranges hold every offset the broker acknowledged for the batch "
            f"({BY_READ!r}); failing that, the first whose retail/offset_ranges tag does ({BY_TAG!r}), or "
            f"the first whose Bronze step started after the batch was sent ({BY_TIMING!r}). Phases run "
            "from the batch's send to the poller's sighting through the Kafka sensor's ticks and the "
            "run's events (its first event, RUN_ENQUEUED, RUN_STARTING, 'Started process for run', "
            "RUN_START, STEP_START, the gold/fact_sales materialization), each boundary clipped to "
            "[previous, seen], so they add up to the latency. Percentiles are per phase across batches "
            "and do not add up; the shares (of the summed latency) do."
        ),
        "batches_attributed": len(attributed),
        "carriers": dict(Counter(a.carrier for a in attributed)),
        "phases": phases,
        "groups": groups,
        "steps": steps,
        "runs": {
            "lane_runs_in_window": len(lane_in_window),
            "carrier_runs": len(carriers),
            "batches_per_carrier_max": max(per_run.values(), default=0),
            "submit_s": _figures(r.enqueued - r.created for r in carriers if r.enqueued and r.created),
            "launch_s": _figures(r.started - r.starting for r in carriers if r.started and r.starting),
            "to_fact_s": _figures(r.fact_at - r.started for r in carriers if r.fact_at and r.started),
            "checks_before_fact_s": _figures(checks_before_fact(r) for r in carriers),
            "after_fact_s": _figures(r.ended - r.fact_at for r in carriers if r.ended and r.fact_at),
            "run_s": _figures(r.ended - r.started for r in carriers if r.ended and r.started),
            "other_runs_in_flight_at_create": _figures(a.other_runs_in_flight for a in attributed),
        },
        "sensor": {
            "ticks_in_window": len(in_window),
            "tick_interval_s": _figures(intervals),
            "tick_duration_s": _figures(t.end - t.start for t in in_window if t.end is not None),
            "hold_ticks": dict(hold),
        },
        "batches": [_batch_entry(b, by_batch.get(b.number)) for b in batches],
        "notes": notes,
    }


def checks_before_fact(run: LaneRun) -> float | None:
    """Seconds of asset-check steps (`<table>_checks`) the run finished before the fact's materialization."""
    if run.fact_at is None:
        return None
    return sum(
        s.duration_s or 0.0
        for s in run.steps
        if s.key.endswith("_checks") and s.end is not None and s.end <= run.fact_at
    )


def _batch_entry(batch: Batch, found: Attribution | None) -> dict[str, Any]:
    """One batch as the JSON keeps it: enough to attribute it again (`batch_from_entry`)."""
    entry: dict[str, Any] = {
        "batch": batch.number,
        "sent_at": batch.sent_at,
        "seen_at": batch.seen_at,
        "latency_s": None if batch.latency_s is None else round(batch.latency_s, 2),
        "offsets": offsets_label(batch.offsets),
        "transactions": len(batch.transaction_ids),
    }
    if found is not None:
        entry.update(
            run_id=found.run_id,
            carrier=found.carrier,
            phases={k: None if v is None else round(v, 2) for k, v in found.phases.items()},
            hold_ticks=list(found.hold_ticks),
            other_runs_in_flight=found.other_runs_in_flight,
        )
    return entry


def _step_starts(runs: Sequence[LaneRun], key: str) -> list[float]:
    return [s.start - (r.started or s.start) for r in runs for s in r.steps if s.key == key] or [0.0]


def describe(figures: Mapping[str, Any]) -> list[str]:
    """The breakdown as lines for a terminal."""
    b = figures.get("latency_breakdown")
    if not b:
        return []

    def s(x: float | None) -> str:
        return "    -" if x is None else f"{x:5.1f}"

    lines = [
        f"where the seconds go ({b['batches_attributed']} batches; carrier found by {b['carriers']}):",
        f"  {'phase':<18} {'p50':>5} {'p95':>5} {'mean':>5} share",
    ]
    for group in GROUPS:
        g = b["groups"][group]
        lines.append(f"  {group:<18} {s(g['p50_s'])} {s(g['p95_s'])} {s(g['mean_s'])} {_pct(g['share'])}")
        for name, p in b["phases"].items():
            if p["group"] == group and name != group:
                lines.append(f"    {name:<16} {s(p['p50_s'])} {s(p['p95_s'])} {s(p['mean_s'])} {_pct(p['share'])}")
    lines.append(
        f"  {'total':<18} {s(figures.get('latency_p50_s'))} {s(figures.get('latency_p95_s'))}"
        "        (percentiles do not add up; shares do)"
    )
    lines.append("steps of the carrier runs (STEP_START → STEP_SUCCESS):")
    for key, st in b["steps"].items():
        where = "before the fact" if st["before_fact"] else "after the fact"
        lines.append(f"  {key:<40} {s(st['p50_s'])} {s(st['p95_s'])}  ({st['n']} runs, {where})")
    runs, sensor = b["runs"], b["sensor"]
    lines += [
        f"lane runs: {runs['lane_runs_in_window']} in the window, {runs['carrier_runs']} carried batches "
        f"(at most {runs['batches_per_carrier_max']} each); p50 per run: created → RUN_ENQUEUED "
        f"{s(runs['submit_s']['p50_s'])} s, RUN_STARTING → RUN_START {s(runs['launch_s']['p50_s'])} s, "
        f"RUN_START → fact {s(runs['to_fact_s']['p50_s'])} s (check steps before the fact "
        f"{s(runs['checks_before_fact_s']['p50_s'])} s), after the fact {s(runs['after_fact_s']['p50_s'])} s "
        f"(the next lane run waits for it); other runs in flight at creation p50 "
        f"{runs['other_runs_in_flight_at_create']['p50_s']}",
        f"Kafka sensor: {sensor['ticks_in_window']} ticks, every {s(sensor['tick_interval_s']['p50_s'])} s "
        f"(p95 {s(sensor['tick_interval_s']['p95_s'])}), each {s(sensor['tick_duration_s']['p50_s'])} s; "
        f"ticks that held a batch: {sensor['hold_ticks'] or 'none'}",
        *b["notes"],
    ]
    return lines


def _pct(share: float | None) -> str:
    return "   -" if share is None else f"{share * 100:4.0f}%"


# --- reading the instance ----------------------------------------------------------------------
