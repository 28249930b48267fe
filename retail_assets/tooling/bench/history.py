"""`retail-assets bench --history N1,N2`: does one more day's run cost more after a longer history?

For each N the size's daily volume is generated for N+1 business days (same seed; every
history workload ends on the same day, the day after the size's ordinary workload, so that its
partitions exist and both new days fall on the same weekday). The main job runs the first N
arrival days, their landing folders linked into the landing zone before the runs and each
day's Kafka events produced just before its stream run, nothing of day N+1 (the history). Then day N+1 arrives: its landing
files are linked in and its events produced, and a daily run of it is timed in a process of its
own (`measure pipeline --day`): the stages in order, the arrival-date ones over that day, the
business-date ones over the days whose declared lateness windows read it
(`measure.daily_run_days`). Both histories run first, each broker staying up; then the new
day's runs alternate between them (after N1, after N2, after N1, …), so that the drift of a
shared machine weighs on both alike. With `--repeat`, the lakehouse and the Dagster instance are
put back as the history left them before each further run of the day; the medians count.

`history_growth_ratio` is the new day's wall time after N2 days over its time after N1; each
stage's seconds and ratio show which stage's cost grows with the history.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

from retail_assets.tooling.bench.processes import failed, measure_pipeline, measured_env, stage_seconds
from retail_assets.tooling.bench.workload import Workload, build_workload, config_for

LANDING = "landing"


def parse_history(text: str) -> tuple[int, int]:
    """`N1,N2`: two day counts of history, the shorter first."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if len(counts) != 2 or not 1 <= counts[0] < counts[1]:
        raise ValueError(f"--history takes two day counts N1,N2 with 1 <= N1 < N2 (e.g. 8,60), got {text!r}")
    return counts


def new_day_of(size: str) -> dt.date:
    """The day every history workload of a size ends on: the day after its ordinary workload."""
    return config_for(size).end_date + dt.timedelta(days=1)


def copy_state(source: Path, target: Path) -> None:
    """Make `target` hold what `source` holds (lakehouse, Dagster instance, …), landing zones aside."""
    target.mkdir(parents=True, exist_ok=True)
    for path in target.iterdir():
        if path.name != LANDING:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for path in source.iterdir():
        if path.name == LANDING:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.copytree(path, target / path.name, symlinks=True)
        else:
            shutil.copy2(path, target / path.name, follow_symlinks=False)


def middle(values: list[float]) -> float:
    """The median of repeats as the bench takes it: of an even number, the higher of the middle two."""
    return sorted(values)[len(values) // 2]


def new_day_figures(repeats: list[dict[str, object]]) -> dict[str, object]:
    """One history's new day, from each repeat's `wall_s`, `runs` and `peak_rss_mb`: the median
    wall time, each stage's median seconds, every repeat's figures and every failed run."""
    stage_s = [stage_seconds(r["runs"]) for r in repeats]
    stages = list(dict.fromkeys(stage for seconds in stage_s for stage in seconds))
    return {
        "new_day_wall_s": round(middle([r["wall_s"] for r in repeats]), 2),
        "new_day_stage_s": {stage: round(middle([s.get(stage, 0.0) for s in stage_s]), 2) for stage in stages},
        "new_day_runs": len(repeats[0]["runs"]),
        "new_day_partitions": {r["stage"]: r["partition"] for r in repeats[0]["runs"]},
        "new_day_repeats": [
            {"wall_s": r["wall_s"], "stage_s": {k: round(v, 2) for k, v in s.items()}}
            for r, s in zip(repeats, stage_s, strict=True)
        ],
        "new_day_failed_runs": sorted({run for r in repeats for run in failed(r["runs"])}),
        "new_day_peak_rss_mb": round(max(r["peak_rss_mb"] for r in repeats)),
    }


def ratio(after: float, before: float) -> float | None:
    return round(after / before, 2) if before else None


def growth(size: str, engine: str, histories: list[dict[str, object]]) -> dict[str, object]:
    """One size and engine: `history_growth_ratio` (the new day's wall time after the longest
    history over the shortest) and each stage's seconds after each history, with its ratio."""
    short, long = histories[0], histories[-1]
    stages = list(dict.fromkeys(s for h in histories for s in h["new_day_stage_s"]))
    return {
        "size": size,
        "engine": engine,
        "history_days": [h["history_days"] for h in histories],
        "history_growth_ratio": ratio(long["new_day_wall_s"], short["new_day_wall_s"]),
        "new_day_wall_s": {str(h["history_days"]): h["new_day_wall_s"] for h in histories},
        "stages": [
            {
                "stage": stage,
                "seconds": {str(h["history_days"]): h["new_day_stage_s"].get(stage, 0.0) for h in histories},
                "ratio": ratio(long["new_day_stage_s"].get(stage, 0.0), short["new_day_stage_s"].get(stage, 0.0)),
            }
            for stage in stages
        ],
        "histories": histories,
    }


def history_then_day(
    workload: Workload,
    history_days: int,
    where: Path,
    *,
    engine: str,
    repeat: int,
    stack: contextlib.ExitStack,
    echo: Callable[[str], None],
) -> tuple[dict[str, object], Callable[[int], dict[str, object]]]:
    """The first `history_days` arrival days of `workload` through the main job, with a broker
    that stays up for as long as `stack`; then the next day made available. Returns the
    history's figures and `run_day(i)`: the day's daily run in a measured process, from the
    state the history left (put back before every run but the first)."""
    from retail_assets.lib.registry.tables import KAFKA_TOPIC  # noqa: PLC0415
    from retail_assets.tooling.broker import LocalBroker, ensure_topic, produce  # noqa: PLC0415

    root = where / "pipeline"
    root.mkdir(parents=True, exist_ok=True)
    # At large N the history starts before the default first partition.
    env = measured_env(
        engine, root, workload.lateness_days, RETAIL_PARTITIONS_START=workload.config.start_date.isoformat()
    )
    history, day = workload.arrival_days[:history_days], workload.arrival_days[history_days]
    workload.make_available(root / LANDING, history)
    broker = stack.enter_context(LocalBroker(data_dir=where / "kafka", log_path=where / "broker.log"))
    ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC)
    echo(f"  {engine}: {history_days} days of history, {history[0]}…{history[-1]} (log {where / 'history.log'})")
    how = dict(engine=engine, env=env, where=where)
    process, figures = measure_pipeline(
        workload, root, broker.bootstrap_servers, name="history", args=("--through", history[-1]), **how
    )
    echo(f"  {engine}: history in {len(figures['runs'])} runs, {figures['wall_s']:.1f}s")
    after_history = where / "after_history"
    if repeat > 1:
        copy_state(root, after_history)
    workload.make_available(root / LANDING, [day])
    produce(broker.bootstrap_servers, KAFKA_TOPIC, workload.messages_by_arrival_day().get(day, []))

    def run_day(i: int) -> dict[str, object]:
        if i > 1:
            copy_state(after_history, root)
        day_process, day_figures = measure_pipeline(
            workload, root, broker.bootstrap_servers, name=f"day{i}", args=("--day", day), **how
        )
        stages = ", ".join(f"{k} {v:.1f}" for k, v in stage_seconds(day_figures["runs"]).items())
        echo(f"  {engine}: day {day} after {history_days} days: {day_figures['wall_s']:.1f}s ({stages})")
        return {**day_figures, "peak_rss_mb": day_process.peak_rss_mb}

    return {
        "history_days": history_days,
        "new_day": day,
        "workload": workload.describe(),
        "history_wall_s": figures["wall_s"],
        "history_runs": len(figures["runs"]),
        "history_failed_runs": failed(figures["runs"]),
        "history_peak_rss_mb": round(process.peak_rss_mb),
    }, run_day


def measure_history(
    results: dict[str, object],
    sizes: list[str],
    history: tuple[int, int],
    root: Path,
    *,
    seed: int,
    lateness_days: int,
    repeat: int,
    engines: tuple[str, ...],
    echo: Callable[[str], None],
    progress: Callable[[dict[str, object]], None] | None,
) -> None:
    """Each size's history growth into `results["history"]`, one entry per engine; the headline
    `history_growth_ratio` is the first engine's at the last size. Both histories are run
    first, then the new day's repeats alternate between them, so that a shared machine's drift
    weighs on both alike."""
    results["history"] = []
    for size in sizes:
        new_day = new_day_of(size)
        workloads = []
        for days in history:
            echo(f"{size}: generating {days + 1} days ending {new_day}")
            workload = build_workload(
                size,
                root / size / f"history{days}" / "input",
                seed=seed,
                lateness_days=lateness_days,
                days=days + 1,
                start_date=new_day - dt.timedelta(days=days),
            )
            echo(f"{size}: {workload.sales_lines} sales lines, {workload.files} landing files over {days + 1} days")
            workloads.append(workload)
        for engine in engines:
            with contextlib.ExitStack() as stack:
                prepared = [
                    history_then_day(
                        w, days, w.root.parent / engine, engine=engine, repeat=repeat, stack=stack, echo=echo
                    )
                    for w, days in zip(workloads, history, strict=True)
                ]
                repeats: list[list[dict[str, object]]] = [[] for _ in prepared]
                for i in range(1, repeat + 1):
                    for (_, run_day), runs in zip(prepared, repeats, strict=True):
                        runs.append(run_day(i))
            histories = [{**h, **new_day_figures(runs)} for (h, _), runs in zip(prepared, repeats, strict=True)]
            results["history"].append(growth(size, engine, histories))
        if progress is not None:
            progress(results)
    headline = next(h for h in reversed(results["history"]) if h["engine"] == engines[0])
    bad = [run for h in headline["histories"] for run in h["history_failed_runs"] + h["new_day_failed_runs"]]
    # a run that failed did less than a daily run: its time says nothing of the history's cost
    results["history_growth_ratio"] = None if bad else headline["history_growth_ratio"]
    if bad:
        results["history_growth_note"] = f"runs failed: {', '.join(bad)}"


def summary_lines(results: dict[str, object]) -> list[str]:
    """The history-growth figures as `retail-assets bench` prints them: per size and engine, the
    new day's wall time after each history and each stage's seconds with its ratio."""
    lines = []
    for h in results.get("history", []):
        days = [str(n) for n in h["history_days"]]
        walls = " / ".join(f"{h['new_day_wall_s'][n]:.1f}s" for n in days)
        repeats = len(h["histories"][0]["new_day_repeats"])
        lines.append(
            f"history {h['size']} {h['engine']}: one more day after {' / '.join(days)} days of history: {walls}, "
            f"history_growth_ratio ×{h['history_growth_ratio']}" + (f" (median of {repeats})" if repeats > 1 else "")
        )
        lines.append(f"  {'stage':<20}" + "".join(f"{'after ' + n:>11}" for n in days) + f"{'ratio':>8}")
        for s in h["stages"]:
            shown = f"×{s['ratio']}" if s["ratio"] is not None else "-"
            lines.append(f"  {s['stage']:<20}" + "".join(f"{s['seconds'][n]:>10.1f}s" for n in days) + f"{shown:>8}")
        lines.append(
            f"  {'wall':<20}"
            + "".join(f"{h['new_day_wall_s'][n]:>10.1f}s" for n in days)
            + f"{'×' + str(h['history_growth_ratio']):>8}"
        )
        for hist in h["histories"]:
            bad = hist["history_failed_runs"] + hist["new_day_failed_runs"]
            if bad:
                lines.append(f"  after {hist['history_days']} days, failed runs: {', '.join(bad)}")
    return lines


def write_chart(results: dict[str, object], path: Path) -> None:
    """Each stage's seconds in the new day's run after each history, per size and engine."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt  # noqa: PLC0415

    entries = results["history"]
    fig, axes = plt.subplots(1, len(entries), figsize=(8 * len(entries), 5.5), squeeze=False)
    for ax, h in zip(axes[0], entries, strict=True):
        days = [str(n) for n in h["history_days"]]
        stages = [s["stage"] for s in h["stages"]]
        width = 0.8 / len(days)
        for k, n in enumerate(days):
            seconds = [s["seconds"][n] for s in h["stages"]]
            ax.bar(
                [i + (k - (len(days) - 1) / 2) * width for i in range(len(stages))],
                seconds,
                width,
                label=f"after {n} days",
            )
        for i, s in enumerate(h["stages"]):
            top = max(s["seconds"].values())
            ax.annotate(f"×{s['ratio']}", (i, top), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(stages)), stages, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("seconds in the new day's runs")
        ax.set_title(f"{h['size']} {h['engine']}: history_growth_ratio ×{h['history_growth_ratio']}")
        ax.legend(fontsize=8)
    fig.suptitle(f"retail-assets bench --history: one more day's run, measured {results['measured_at']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
