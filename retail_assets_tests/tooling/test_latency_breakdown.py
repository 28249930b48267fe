"""Where a batch's event → Gold seconds go (`tooling/latency/`): which stream-lane run carried
it and how its latency splits into sensor, queue, launch, steps and visibility, from synthetic
run and tick records (no `dagster dev`), then read back from a real instance's records."""

from __future__ import annotations

import json
from dataclasses import replace

import dagster as dg
import pytest

from retail_assets.lib.sources.kafka import OffsetRange
from retail_assets.tooling.latency import (
    BY_READ,
    BY_TAG,
    BY_TIMING,
    PHASES,
    Batch,
    LaneHistory,
    LaneRun,
    StepTimes,
    Tick,
    attribute,
    batch_from_entry,
    breakdown,
    describe,
    find_carrier,
    offsets_label,
    parse_ranges,
    placed_offsets,
    read_lane_history,
)

BELOW = "20 offsets pending (p0[0,10),p1[0,10)), below the lag threshold 200; oldest seen 0s ago (max 10s)"
QUEUED = "10 offsets pending; run kafka:x is queued and reads up to the log's end when it starts"


def offsets(partition: int, first: int, last: int) -> frozenset[tuple[int, int]]:
    return frozenset((partition, o) for o in range(first, last))


# Run 1 carries batch A. Batch B is sent just after run 1's Bronze step took its watermark, so run
# 2 (requested for it) carries it; batch C arrives after run 2 was created but before it started,
# so run 2 takes it too, though its tag does not name it. Run 2 re-reads the day, batch A included.
R1 = LaneRun(
    "r1",
    created=115.2,
    enqueued=115.4,
    starting=118.0,
    process_up=119.2,
    started=121.0,
    ended=135.0,
    steps=(
        StepTimes("bronze__pos_transactions", 122.0, 124.0),
        StepTimes("silver_sales", 124.0, 127.0),
        StepTimes("gold__fact_sales", 127.5, 130.5),
        StepTimes("gold__fact_sales_checks", 130.5, 134.5),
    ),
    bronze_at=123.9,
    fact_at=130.0,
    read=parse_ranges("p0[0,10), p1[0,10)"),
    requested=parse_ranges("p0[0,10),p1[0,10)"),
)
R2 = LaneRun(
    "r2",
    created=125.1,
    enqueued=125.3,
    starting=137.0,
    process_up=138.0,
    started=140.0,
    ended=155.0,
    steps=(
        StepTimes("bronze__pos_transactions", 141.0, 143.0),
        StepTimes("silver_sales", 143.0, 146.0),
        StepTimes("gold__fact_sales", 146.5, 150.5),
    ),
    bronze_at=142.9,
    fact_at=150.0,
    read=parse_ranges("p0[0,30), p1[0,10)"),
    requested=parse_ranges("p0[10,20)"),
)
TICKS = (
    Tick(95.0, 95.2, skip_reason="Bronze holds every offset of retail.pos.transactions (p0@0)"),
    Tick(105.0, 105.3, skip_reason=BELOW),
    Tick(115.0, 115.4, run_ids=("r1",)),
    Tick(125.0, 125.3, run_ids=("r2",)),
    Tick(135.0, 135.2, skip_reason=QUEUED),
    Tick(145.0, 145.2, skip_reason="Bronze holds every offset of retail.pos.transactions (p0@30)"),
)
HISTORY = LaneHistory((R1, R2), TICKS, other_runs=((110.0, 126.0), (124.0, None), (90.0, 100.0)))
A = Batch(0, frozenset({"a"}), 100.0, 130.5, offsets(0, 0, 10) | offsets(1, 0, 10))
B = Batch(1, frozenset({"b"}), 123.0, 151.0, offsets(0, 10, 20))
C = Batch(2, frozenset({"c"}), 126.0, 151.0, offsets(0, 20, 30))


def phases(batch: Batch, history: LaneHistory = HISTORY) -> dict[str, float | None]:
    found = attribute(batch, history)
    assert found is not None
    return {k: None if v is None else round(v, 3) for k, v in found.phases.items()}


def test_the_first_run_that_read_every_offset_carries_the_batch():
    # run 2 read batch A's offsets too (it re-reads the day), but run 1 read them first
    assert find_carrier(A, HISTORY.runs) == (R1, BY_READ)
    assert find_carrier(B, HISTORY.runs) == (R2, BY_READ)
    # run 2's tag names only what was pending at its tick; its Bronze step read batch C as well
    assert find_carrier(C, HISTORY.runs) == (R2, BY_READ)
    # a batch no run read all of (one offset beyond run 2's watermark) has no carrier by offsets
    late = Batch(3, frozenset({"d"}), 160.0, None, offsets(0, 29, 31))
    assert find_carrier(late, HISTORY.runs) is None


def test_a_batch_that_waited_for_the_sensor():
    assert phases(A) == {
        "sensor_next_tick": 5.0,  # sent 100, next tick 105
        "sensor_hold": 10.0,  # the 105 tick held it (below the lag threshold); 115 requested run 1
        "sensor_request": 0.2,  # 115 → run created 115.2
        "queue_submit": 0.2,  # → RUN_ENQUEUED 115.4
        "queue_lane": 0.0,  # no lane run in flight
        "queue_pickup": 2.6,  # → RUN_STARTING 118
        "launch_process": 1.2,  # → the run worker's process up at 119.2
        "launch_code": 1.8,  # → RUN_START 121
        "run_setup": 1.0,
        "steps_to_fact": 8.0,  # first step 122 → fact 130
        "visibility": 0.5,
    }
    found = attribute(A, HISTORY)
    assert found.hold_ticks == ("lag below the threshold, max wait not reached",)
    assert found.group("sensor") == pytest.approx(15.2)
    assert found.other_runs_in_flight == 1  # the run of 110–126; the one of 124 started after


def test_a_tick_running_as_the_batch_was_sent_saw_it_if_the_ranges_it_names_hold_the_batch():
    ticks = (
        Tick(99.9, 100.4, skip_reason=BELOW),  # read the watermarks once batch A was in
        Tick(110.0, 110.3, skip_reason=BELOW),
        Tick(115.0, 115.4, run_ids=("r1",)),
    )
    p = phases(A, LaneHistory(HISTORY.runs, ticks))
    assert p["sensor_next_tick"] == 0.0 and p["sensor_hold"] == 15.0
    assert (
        attribute(A, LaneHistory(HISTORY.runs, ticks)).hold_ticks
        == ("lag below the threshold, max wait not reached",) * 2
    )
    # the same tick naming other offsets had read the watermarks before: the next tick saw the batch
    before = (Tick(99.9, 100.4, skip_reason="Bronze holds every offset of retail.pos.transactions (p0@0)"), *ticks[1:])
    p = phases(A, LaneHistory(HISTORY.runs, before))
    assert p["sensor_next_tick"] == 10.0 and p["sensor_hold"] == 5.0


def test_a_batch_that_waited_for_the_previous_lane_run():
    assert phases(B) == {
        "sensor_next_tick": 2.0,
        "sensor_hold": 0.0,
        "sensor_request": 0.1,
        "queue_submit": 0.2,
        "queue_lane": 9.7,  # enqueued 125.3, run 1 ended at 135
        "queue_pickup": 2.0,  # RUN_STARTING 137
        "launch_process": 1.0,
        "launch_code": 2.0,
        "run_setup": 1.0,
        "steps_to_fact": 9.0,
        "visibility": 1.0,
    }


def test_a_batch_swept_up_by_a_run_created_before_it_was_sent_waits_for_no_tick():
    p = phases(C)
    assert p["sensor_next_tick"] == p["sensor_hold"] == p["sensor_request"] == 0.0
    assert p["queue_lane"] == 9.0  # sent 126, run 1 ended at 135
    assert sum(p.values()) == pytest.approx(25.0)
    assert attribute(C, HISTORY).hold_ticks == ()


def test_the_phases_add_up_to_the_latency_even_when_the_poller_beats_the_event_log():
    early = Batch(0, frozenset({"a"}), 100.0, 129.8, A.offsets)  # the Delta commit precedes the event
    p = phases(early)
    assert p["visibility"] == 0.0 and p["steps_to_fact"] == pytest.approx(7.8)
    assert sum(p.values()) == pytest.approx(29.8)


def test_without_bronze_metadata_the_tag_then_the_timing_finds_the_run():
    untagged = [replace(r, read=()) for r in (R1, R2)]
    assert find_carrier(B, untagged)[0].run_id == "r2"
    assert find_carrier(B, untagged)[1] == BY_TAG
    # batch C is in no tag: the first run whose Bronze step started after it was sent
    assert find_carrier(C, untagged)[0].run_id == "r2" and find_carrier(C, untagged)[1] == BY_TIMING
    # nor is a batch sent before run 1's Bronze step but not in its tag
    between = Batch(4, frozenset({"x"}), 121.5, 130.5, offsets(2, 0, 3))
    assert find_carrier(between, untagged) == (untagged[0], BY_TIMING)


def test_only_an_earlier_lane_run_holds_the_queue():
    # no RUN_STARTING nor process event recorded: run 2's later end must not count for run 1
    bare = replace(R1, starting=None, process_up=None)
    p = phases(A, LaneHistory((bare, R2), TICKS))
    assert p["queue_lane"] == 0.0 and p["queue_pickup"] is None and p["launch_process"] is None
    assert p["launch_code"] == pytest.approx(121.0 - 115.4)


def test_missing_ticks_leave_the_sensor_time_to_the_run_creation():
    p = phases(A, LaneHistory(HISTORY.runs, ()))
    assert p["sensor_next_tick"] is None and p["sensor_hold"] is None
    assert p["sensor_request"] == pytest.approx(15.2)
    assert sum(v for v in p.values() if v is not None) == pytest.approx(30.5)


def test_breakdown_reports_each_phase_across_batches():
    result = breakdown([A, B, C], HISTORY)
    json.dumps(result)
    assert result["batches_attributed"] == 3 and result["carriers"] == {BY_READ: 3}
    assert result["phases"]["sensor_next_tick"]["p50_s"] == 2.0  # 5, 2, 0
    assert result["phases"]["queue_lane"]["p50_s"] == 9.0  # 0, 9.7, 9
    assert result["groups"]["queue"]["p50_s"] == 11.0  # 2.8, 11.9, 11
    assert result["groups"]["sensor"]["max_s"] == 15.2
    assert sum(result["groups"][g]["share"] for g in result["groups"]) == pytest.approx(1.0, abs=0.005)
    assert sum(p["share"] for p in result["phases"].values()) == pytest.approx(1.0, abs=0.005)
    steps = result["steps"]
    assert list(steps) == ["bronze__pos_transactions", "silver_sales", "gold__fact_sales", "gold__fact_sales_checks"]
    assert steps["gold__fact_sales"]["p50_s"] == 3.5 and steps["gold__fact_sales"]["n"] == 2
    assert steps["gold__fact_sales_checks"]["before_fact"] == 0
    assert result["runs"]["carrier_runs"] == 2 and result["runs"]["batches_per_carrier_max"] == 2
    assert result["runs"]["after_fact_s"]["p50_s"] == 5.0  # 135 - 130, 155 - 150
    assert result["runs"]["checks_before_fact_s"]["max_s"] == 0.0  # run 1's checks ran after its fact
    assert result["sensor"]["tick_interval_s"]["p50_s"] == 10.0
    assert result["sensor"]["hold_ticks"] == {"lag below the threshold, max wait not reached": 1}
    assert [b["run_id"] for b in result["batches"]] == ["r1", "r2", "r2"]
    # the JSON keeps what it takes to attribute the batches again
    again = [batch_from_entry(b) for b in json.loads(json.dumps(result))["batches"]]
    assert [b.offsets for b in again] == [A.offsets, B.offsets, C.offsets]
    assert breakdown(again, HISTORY)["phases"] == result["phases"]
    lines = describe({"latency_p50_s": 28.0, "latency_p95_s": 30.2, "latency_breakdown": result})
    assert any(line.strip().startswith("queue_lane") for line in lines)
    assert len([p for p in PHASES if p.group == "visibility"]) == 1


def test_offsets_and_ranges_parse():
    assert parse_ranges("p0[0,10), p12[5,9)") == (OffsetRange(0, 0, 10), OffsetRange(12, 5, 9))
    assert parse_ranges(None) == ()
    placed = {0: "retail.pos.transactions/2/41", 1: "retail.pos.transactions/0/7"}
    assert placed_offsets(placed) == frozenset({(2, 41), (0, 7)})
    assert offsets_label({(1, 4), (0, 3), (0, 5), (0, 4), (1, 0)}) == "p0[3,6),p1[0,1),p1[4,5)"


def test_the_instance_records_are_read_back(tmp_path):
    @dg.asset(key=["bronze", "pos_transactions"])
    def bronze():
        return dg.MaterializeResult(metadata={"offset_ranges": "p0[0,20), p1[0,5)"})

    @dg.asset(key=["gold", "fact_sales"], deps=[bronze])
    def fact():
        return dg.MaterializeResult()

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        tags = {"retail/lane": "stream", "retail/offset_ranges": "p0[10,20)"}
        assert dg.materialize([bronze, fact], instance=instance, tags=tags).success
        assert dg.materialize([bronze], instance=instance).success  # not the lane's
    history = read_lane_history(tmp_path)
    (run,) = history.runs
    assert run.read == (OffsetRange(0, 0, 20), OffsetRange(1, 0, 5))
    assert run.requested == (OffsetRange(0, 10, 20),)
    assert run.created <= run.started <= run.first_step <= run.bronze_at <= run.fact_at <= run.ended
    assert [s.key for s in run.steps] == ["bronze__pos_transactions", "gold__fact_sales"]
    assert all(s.duration_s is not None for s in run.steps)
    assert len(history.other_runs) == 1 and history.ticks == ()
