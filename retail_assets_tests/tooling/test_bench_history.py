"""`retail-assets bench --history`: which runs a new day gets, what it is allowed to see, and how
the figures of two histories become `history_growth_ratio` and the per-stage table.

The end-to-end test (`pytest -m bench`) runs the real path on a tiny workload with two short
histories; its figures are reported, never asserted against a time.
"""

from __future__ import annotations

import datetime as dt

import pytest

from retail_assets.lib.settings import lateness_days
from retail_assets.tooling.bench.history import (
    copy_state,
    growth,
    new_day_figures,
    new_day_of,
    parse_history,
    summary_lines,
)
from retail_assets.tooling.bench.report import target_status, write_chart, write_json


def test_history_takes_two_day_counts_the_shorter_first():
    assert parse_history("8,60") == (8, 60)
    for bad in ("8", "60,8", "8,8", "0,5", "8,60,90", "eight,60", ""):
        with pytest.raises(ValueError, match="N1,N2"):
            parse_history(bad)


def test_every_history_of_a_size_ends_on_the_same_day_after_its_ordinary_workload():
    assert new_day_of("small") == dt.date(2026, 11, 8)  # the small week is 2026-11-01 … 11-07
    assert new_day_of("tiny") == dt.date(2026, 11, 2)  # one day


def test_a_daily_run_covers_its_arrival_day_and_the_business_days_whose_windows_read_it():
    from retail_assets.definitions import build_definitions
    from retail_assets.tooling.bench.measure import daily_run_days

    defs = build_definitions()
    days = [(dt.date(2026, 11, 1) + dt.timedelta(days=i)).isoformat() for i in range(10)]
    lateness = lateness_days()
    arrival, business = daily_run_days(defs, "2026-11-06", days)
    # Silver's sales of business day D read arrival days D-1 … D+L
    first = (dt.date(2026, 11, 6) - dt.timedelta(days=lateness)).isoformat()
    assert arrival == ["2026-11-06"] and business == [d for d in days if first <= d <= "2026-11-07"]
    # the newest day: no business day after it exists yet
    assert daily_run_days(defs, "2026-11-10", days)[1][-1] == "2026-11-10"
    assert daily_run_days(defs, "2026-11-01", days)[1][0] == "2026-11-01"


def test_landing_files_arrive_on_their_day_only(tmp_path):
    from retail_assets.lib.sources.landing import scan_landing
    from retail_assets.tooling.bench.workload import build_workload

    workload = build_workload("tiny", tmp_path / "input", days=3, lateness_days=1)
    landing = tmp_path / "landing"
    days = workload.event_days
    linked = workload.make_available(landing, days[:2])
    sources = ("sales", "customers", "products", "stores", "inventory")

    def arrived() -> set[str]:
        return {f.arrival_date.isoformat() for s in sources for f in scan_landing(landing, s, stable_seconds=0)}

    assert linked > 0 and arrived() == set(days[:2])
    assert workload.make_available(landing, days[2:]) > 0 and arrived() == set(days)
    # the same bytes as the generator wrote, no more files than it wrote
    assert sum(1 for p in landing.rglob("*") if p.is_file()) == sum(
        1 for p in workload.landing.rglob("*") if p.is_file()
    )


def test_copy_state_puts_a_data_root_back_as_the_history_left_it(tmp_path):
    root, saved = tmp_path / "pipeline", tmp_path / "after_history"
    (root / "lakehouse" / "gold").mkdir(parents=True)
    (root / "lakehouse" / "gold" / "part-0.parquet").write_text("history")
    (root / "landing" / "sales").mkdir(parents=True)
    (root / "landing" / "sales" / "day1.csv").write_text("day 1")
    copy_state(root, saved)
    assert not (saved / "landing").exists()
    # the new day's run writes, and its files land
    (root / "lakehouse" / "gold" / "part-1.parquet").write_text("new day")
    (root / "lakehouse" / "gold" / "part-0.parquet").write_text("rewritten")
    (root / "dagster_home").mkdir()
    (root / "landing" / "sales" / "day2.csv").write_text("day 2")
    copy_state(saved, root)
    assert sorted(p.name for p in root.iterdir()) == ["lakehouse", "landing"]
    assert [p.name for p in (root / "lakehouse" / "gold").iterdir()] == ["part-0.parquet"]
    assert (root / "lakehouse" / "gold" / "part-0.parquet").read_text() == "history"
    assert sorted(p.name for p in (root / "landing" / "sales").iterdir()) == ["day1.csv", "day2.csv"]


def repeat(wall: float, stages: dict[str, float], *, rss: float = 900.0, failing: str | None = None):
    runs = [
        {
            "stage": s,
            "partition": "2026-11-08",
            "seconds": v,
            "success": True,
            "checks_failed": [s] if s == failing else [],
        }
        for s, v in stages.items()
    ]
    return {"wall_s": wall, "runs": runs, "peak_rss_mb": rss}


def history(days: int, repeats: list[dict]) -> dict:
    return {"history_days": days, "history_failed_runs": [], **new_day_figures(repeats)}


def test_the_growth_ratio_and_each_stage_come_from_the_median_repeats():
    short = history(
        8,
        [
            repeat(40.0, {"ingest_bronze": 10.0, "build_gold": 20.0}),
            repeat(44.0, {"ingest_bronze": 12.0, "build_gold": 19.0}, rss=1200),
            repeat(42.0, {"ingest_bronze": 11.0, "build_gold": 30.0}),
        ],
    )
    assert short["new_day_wall_s"] == 42.0 and short["new_day_peak_rss_mb"] == 1200
    # each stage's own median, whichever repeat it came from
    assert short["new_day_stage_s"] == {"ingest_bronze": 11.0, "build_gold": 20.0}
    long = history(
        60,
        [
            repeat(63.0, {"ingest_bronze": 16.5, "build_gold": 20.0, "screen_arrivals": 3.0}, failing="build_gold"),
            repeat(60.0, {"ingest_bronze": 16.5, "build_gold": 22.0, "screen_arrivals": 2.0}),
        ],
    )
    assert long["new_day_wall_s"] == 63.0  # of two, the higher (as `repeated` takes the median)
    assert long["new_day_failed_runs"] == ["build_gold 2026-11-08"]

    figures = growth("small", "delta_rs", [short, long])
    assert figures["history_growth_ratio"] == 1.5 and figures["history_days"] == [8, 60]
    by_stage = {s["stage"]: s for s in figures["stages"]}
    assert list(by_stage) == ["ingest_bronze", "build_gold", "screen_arrivals"]
    assert by_stage["ingest_bronze"] == {"stage": "ingest_bronze", "seconds": {"8": 11.0, "60": 16.5}, "ratio": 1.5}
    assert by_stage["build_gold"]["ratio"] == 1.1
    # a stage the short history's day did not run has no ratio, but its seconds show
    assert by_stage["screen_arrivals"] == {"stage": "screen_arrivals", "seconds": {"8": 0.0, "60": 3.0}, "ratio": None}

    results = {"history": [figures], "history_growth_ratio": figures["history_growth_ratio"]}
    text = "\n".join(summary_lines(results))
    assert "one more day after 8 / 60 days of history: 42.0s / 63.0s, history_growth_ratio ×1.5" in text
    assert "ingest_bronze" in text and "×1.5" in text and "failed runs: build_gold 2026-11-08" in text
    assert target_status(results)["history_growth_ratio"] == "1.5 (MISSES <= 1.2)"
    assert target_status({"history_growth_ratio": 1.1})["history_growth_ratio"] == "1.1 (meets <= 1.2)"
    assert target_status({})["history_growth_ratio"] == "not measured"


def test_the_history_results_write_their_json_and_chart(tmp_path):
    import json

    short = history(2, [repeat(10.0, {"ingest_bronze": 4.0, "build_gold": 6.0})])
    long = history(5, [repeat(11.0, {"ingest_bronze": 5.0, "build_gold": 6.0})])
    results = {"measured_at": "now", "sizes": [], "history": [growth("tiny", "delta_rs", [short, long])]}
    results["history_growth_ratio"] = results["history"][0]["history_growth_ratio"]
    out = tmp_path / "history.json"
    write_json(results, out)
    write_chart(results, out.with_suffix(".png"))
    assert json.loads(out.read_text())["targets"]["history_growth_ratio"] == "1.1 (meets <= 1.2)"
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def bronze_events_by_arrival(lakehouse) -> dict[str, int]:
    from collections import Counter

    from deltalake import DeltaTable

    from retail_assets.lib.registry.tables import BRONZE_POS_TRANSACTIONS as spec

    arrivals = DeltaTable(str(lakehouse / spec.layer.value / spec.name)).to_pyarrow_table(columns=["_arrival_date"])
    return {day.isoformat(): n for day, n in Counter(arrivals["_arrival_date"].to_pylist()).items()}


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_history_growth_end_to_end_on_a_tiny_workload(tmp_path, monkeypatch):
    """Two short histories of the tiny workload, each followed by two daily runs of the next
    day, the second from the state the history left (the lakehouse and instance put back)."""
    from retail_assets.lib.registry.stages import configured_stages
    from retail_assets.tooling.bench.runner import run_bench
    from retail_assets.tooling.bench.workload import Workload

    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")  # as in test_bench: measured processes start their own
    results = run_bench(
        ["tiny"], work_dir=tmp_path, engines=("delta_rs",), history=(2, 4), repeat=2, keep=True, echo=print
    )
    (figures,) = results["history"]
    assert results["history_growth_ratio"] == figures["history_growth_ratio"] > 0
    lateness = 2  # run_bench's default
    STAGES = configured_stages(set())  # the bench's workload has no operational database
    stages = {s.job_name for s in STAGES}
    for h, days in zip(figures["histories"], (2, 4), strict=True):
        assert h["history_failed_runs"] == [] and h["new_day_failed_runs"] == []
        # the history: one stream run per arrival day, every other stage one range run
        assert h["history_runs"] == days + len(STAGES) - 1
        assert h["workload"]["days"] == days + 1 and h["new_day"] == new_day_of("tiny").isoformat()
        # the new day: one run per stage; business-date stages over the lateness window before it
        assert h["new_day_runs"] == len(STAGES)
        first = (new_day_of("tiny") - dt.timedelta(days=lateness)).isoformat()
        assert h["new_day_partitions"]["ingest_bronze"] == h["new_day"]
        assert h["new_day_partitions"]["build_gold"] == f"{first}…{h['new_day']}"
        assert set(h["new_day_stage_s"]) == stages and all(s > 0 for s in h["new_day_stage_s"].values())
        assert len(h["new_day_repeats"]) == 2 and all(set(r["stage_s"]) == stages for r in h["new_day_repeats"])
        # Bronze holds each arrival day's events under that day: the new day's came in with it, not the history
        work = tmp_path / "tiny" / f"history{days}"
        expected = {day: len(m) for day, m in Workload.load(work / "input").messages_by_arrival_day().items()}
        assert bronze_events_by_arrival(work / "delta_rs" / "pipeline" / "lakehouse") == expected
    assert {s["stage"] for s in figures["stages"]} == stages
    assert all(s["ratio"] > 0 and set(s["seconds"]) == {"2", "4"} for s in figures["stages"])
