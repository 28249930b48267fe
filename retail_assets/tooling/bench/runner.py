"""`retail-assets bench`: every size's pipeline and baseline, Gold compared, then the figures
that do not depend on size (definitions load, sensor tick, event → Gold latency)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from retail_assets.lib.engine.spark import classic_env
from retail_assets.lib.settings import ENGINE_ENV, LOCAL_ENGINES
from retail_assets.tooling.bench.backfill import backfill_graph
from retail_assets.tooling.bench.compare import compare_gold
from retail_assets.tooling.bench.measure import ProcessFigures, definitions_load_s, run_measured, sensor_tick_s
from retail_assets.tooling.bench.processes import (
    BenchFailed,
    failed,
    measure,
    measure_pipeline,
    measured_env,
    stage_seconds,
)
from retail_assets.tooling.bench.report import repeated
from retail_assets.tooling.bench.workload import Workload, build_workload

# Which stage jobs write which layer (quarantine is written beside Bronze and Silver).
LAYER_STAGES = {
    "bronze": ("ingest_pos_stream", "ingest_bronze"),
    "silver": ("refine_master_data", "refine_sales", "screen_arrivals"),
    "gold": ("build_dimensions", "build_gold"),
}


def layer_rows(lakehouse: Path) -> dict[str, int]:
    from deltalake import DeltaTable  # noqa: PLC0415

    from retail_assets.lib.registry.tables import TABLES  # noqa: PLC0415

    rows: dict[str, int] = {}
    for spec in TABLES:
        path = lakehouse / spec.layer.value / spec.name
        if DeltaTable.is_deltatable(str(path)):
            rows[spec.layer.value] = rows.get(spec.layer.value, 0) + DeltaTable(str(path)).count()
    return rows


ENGINES = LOCAL_ENGINES


def bench_size(
    workload: Workload,
    work: Path,
    *,
    engines: tuple[str, ...] = ENGINES,
    backfill: bool = True,
    echo: Callable[[str], None],
) -> list[dict[str, object]]:
    """Each engine's pipeline on one workload, each with a broker of its own (every pipeline
    produces the events itself); the one baseline on the first broker's topic; with `backfill`,
    each engine's graph again as UI backfills through `dagster dev` (`bench/backfill.py`); then
    each engine's Gold, of either path, compared with the baseline's."""
    from retail_assets.lib.registry.tables import KAFKA_TOPIC  # noqa: PLC0415
    from retail_assets.tooling.bench.baseline import GOLD_TABLES  # noqa: PLC0415
    from retail_assets.tooling.broker import LocalBroker, ensure_topic  # noqa: PLC0415

    baseline_out = work / "baseline"
    measured: dict[str, tuple[ProcessFigures, dict[str, object], Path]] = {}
    baseline = baseline_report = None
    for engine in engines:
        where = work / engine
        pipeline_root = where / "pipeline"
        pipeline_root.mkdir(parents=True, exist_ok=True)
        env = measured_env(engine, pipeline_root, workload.lateness_days)
        with LocalBroker(data_dir=where / "kafka", log_path=where / "broker.log") as broker:
            ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC)
            echo(
                f"  {engine} pipeline: {len(workload.arrival_days)} arrival days, {len(workload.event_days)} event days through Dagster (log {where / 'pipeline.log'})"
            )
            pipeline, figures = measure_pipeline(
                workload, pipeline_root, broker.bootstrap_servers, env=env, where=where, engine=engine
            )
            echo(
                f"  {engine} pipeline: {figures['wall_s']:.1f}s (+{figures['produce_s']:.1f}s producing {figures['events_produced']} events), peak RSS {pipeline.peak_rss_mb:.0f} MB"
            )
            kafka, kafka_report = measure(
                "kafka", workload, pipeline_root, broker.bootstrap_servers, env=env, where=where
            )
            if kafka.returncode or not kafka_report.exists():
                raise BenchFailed(
                    f"the {engine} Kafka ingestion process exited with {kafka.returncode}; see {where / 'kafka.log'}"
                )
            figures.update(json.loads(kafka_report.read_text()), kafka_peak_rss_mb=round(kafka.peak_rss_mb))
            echo(
                f"  {engine} Kafka: {figures['kafka_events_ingested']} events into Bronze in {figures['kafka_ingest_s']:.1f}s, peak RSS {kafka.peak_rss_mb:.0f} MB"
            )
            measured[engine] = (pipeline, figures, pipeline_root)
            if baseline is None:
                echo(f"  baseline: one PySpark job over the same landing files and topic (log {work / 'baseline.log'})")
                baseline_report = work / "baseline.json"
                baseline = run_measured(
                    [
                        sys.executable,
                        "-m",
                        "retail_assets.tooling.bench.baseline",
                        "--landing",
                        str(workload.landing),
                        "--bootstrap",
                        broker.bootstrap_servers,
                        "--start-date",
                        workload.event_days[0],
                        "--days",
                        str(len(workload.event_days)),
                        "--lateness-days",
                        str(workload.lateness_days),
                        "--out",
                        str(baseline_out),
                        "--report",
                        str(baseline_report),
                    ],
                    env=env,
                    log=work / "baseline.log",
                )
                if baseline.returncode:
                    raise BenchFailed(f"the baseline exited with {baseline.returncode}; see {work / 'baseline.log'}")
                echo(f"  baseline: {baseline.wall_s:.1f}s, peak RSS {baseline.peak_rss_mb:.0f} MB")
    assert baseline is not None and baseline_report is not None
    out = []
    for engine, (pipeline, figures, pipeline_root) in measured.items():
        if backfill:
            where = work / engine / "backfill"
            echo(f"  {engine} UI backfill through dagster dev (log {where / 'dagster_dev.log'})")
            env = {k: v for k, v in classic_env().items() if k not in ("DAGSTER_HOME", "RETAIL_DATA_ROOT")}
            figures.update(backfill_graph(workload, where, env={**env, **ENGINE_ENV[engine]}, echo=echo))
            # The backfill ran every table over every arrival day: compared on the business days.
            lakehouse = Path(figures.pop("backfill_lakehouse"))
            backfilled = compare_gold(lakehouse, baseline_out, GOLD_TABLES, days=workload.event_days)
            figures["backfill_gold_equal"] = all(c.equal for c in backfilled)
            for c in backfilled:
                if not c.equal:
                    echo(f"    {engine} UI backfill: {c.describe()}")
            echo(
                f"  {engine} UI backfill: {figures['backfill_wall_s']:.1f}s in {figures['backfill_runs']} runs "
                f"({figures['backfill_graph_runs']} for the graph), Gold {'equal' if figures['backfill_gold_equal'] else 'DIFFERENT'}"
            )
        comparisons = compare_gold(pipeline_root / "lakehouse", baseline_out, GOLD_TABLES)
        for c in comparisons:
            echo(f"    {engine}: {c.describe()}")
        result = assemble(
            workload,
            pipeline,
            figures,
            baseline,
            json.loads(baseline_report.read_text()),
            comparisons,
            layer_rows(pipeline_root / "lakehouse"),
        )
        out.append({"engine": engine, **result})
    return out


def assemble(
    workload, pipeline: ProcessFigures, figures, baseline: ProcessFigures, baseline_figures, comparisons, rows
) -> dict[str, object]:
    # The pipeline process's wall time without the seconds it spent producing the events to
    # Kafka (the baseline finds them already on the topic); both include interpreter and JVM start.
    pipeline_wall = pipeline.wall_s - figures["produce_s"]
    stage_s = stage_seconds(figures["runs"])
    rows_per_s = {
        layer: round(rows.get(layer, 0) / sum(stage_s.get(s, 0.0) for s in stages), 1)
        for layer, stages in LAYER_STAGES.items()
        if sum(stage_s.get(s, 0.0) for s in stages)
    }
    rows_per_s["sales_lines_end_to_end"] = round(workload.sales_lines / pipeline_wall, 1)
    failed_runs = failed(figures["runs"])
    return {
        "workload": workload.describe(),
        "pipeline_wall_s": round(pipeline_wall, 2),
        "pipeline_in_runs_s": round(sum(stage_s.values()), 2),
        "pipeline_runs": len(figures["runs"]),
        "pipeline_failed_runs": failed_runs,
        "stage_s": {k: round(v, 2) for k, v in stage_s.items()},
        "baseline_wall_s": round(baseline.wall_s, 2),
        "baseline_phases_s": {k: baseline_figures[k] for k in ("session_s", "read_s", "compute_write_s")},
        "overhead_ratio": round(pipeline_wall / baseline.wall_s, 2),
        **backfill_figures(figures, baseline.wall_s),
        "rows_per_s": rows_per_s,
        "rows_by_layer": rows,
        "baseline_rows_per_s": {"sales_lines_end_to_end": round(workload.sales_lines / baseline.wall_s, 1)},
        "peak_rss_mb": round(pipeline.peak_rss_mb),
        "baseline_peak_rss_mb": round(baseline.peak_rss_mb),
        "kafka_events_per_s": figures.get("kafka_events_per_s"),
        "kafka_events_ingested": figures.get("kafka_events_ingested"),
        "kafka_peak_rss_mb": figures.get("kafka_peak_rss_mb"),
        "kafka_produce_events_per_s": round(figures["events_produced"] / figures["produce_s"], 1)
        if figures["produce_s"]
        else None,
        "gold_equal": all(c.equal for c in comparisons),
        "gold_tables": {c.table: c.describe() for c in comparisons},
    }


def backfill_figures(figures: dict[str, object], baseline_wall_s: float) -> dict[str, object]:
    """The UI backfill path's figures, when it was measured."""
    if "backfill_wall_s" not in figures:
        return {"backfill_overhead_ratio": None}
    keys = ("backfill_wall_s", "backfill_runs", "backfill_graph_runs", "backfill_in_runs_s", "backfill_gold_equal")
    return {
        **{k: figures[k] for k in keys},
        "backfill_overhead_ratio": round(float(figures["backfill_wall_s"]) / baseline_wall_s, 2),
    }


def _guarded(key: str, measure: Callable[[], dict[str, object]]) -> dict[str, object]:
    """A size-independent figure that fails is reported as missing, with the reason."""
    try:
        return measure()
    except Exception as exc:  # noqa: BLE001 - the other figures stand; say why this one is missing
        return {key: None, f"{key.removesuffix('_s')}_note": f"failed: {type(exc).__name__}: {exc}"}


def latency_figures(echo: Callable[[str], None]) -> dict[str, object]:
    try:
        from retail_assets.tooling.latency import measure_latency  # noqa: PLC0415
    except ImportError as exc:
        return {
            "latency_p50_s": None,
            "latency_p95_s": None,
            "latency_note": f"retail_assets.tooling.latency is not available ({exc})",
        }
    try:
        figures = measure_latency(echo=lambda line: echo(f"  {line}"))
    except Exception as exc:  # noqa: BLE001 - the other figures stand; say why this one is missing
        return {
            "latency_p50_s": None,
            "latency_p95_s": None,
            "latency_note": f"latency measurement failed: {type(exc).__name__}: {exc}",
        }
    return figures


def run_bench(
    sizes: list[str],
    *,
    work_dir: Path | None = None,
    seed: int = 7,
    days: int | None = None,
    lateness_days: int = 2,
    skip_latency: bool = False,
    skip_sensor: bool = False,
    skip_backfill: bool = False,
    keep: bool = False,
    repeat: int = 1,
    engines: tuple[str, ...] = ENGINES,
    history: tuple[int, int] | None = None,
    echo: Callable[[str], None] = print,
    progress: Callable[[dict[str, object]], None] | None = None,
) -> dict[str, object]:
    """Every size (`repeat` times each, see `repeated`), then the size-independent figures;
    `progress(results)` after each part. With `history` (N1, N2), only the history growth of
    each size instead (`bench/history.py`)."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    root = Path(work_dir or tempfile.mkdtemp(prefix="retail-bench-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "work_dir": str(root),
        "sizes": [],
    }
    try:
        if history is not None:
            from retail_assets.tooling.bench.history import measure_history  # noqa: PLC0415

            measure_history(
                results,
                sizes,
                history,
                root,
                seed=seed,
                lateness_days=lateness_days,
                repeat=repeat,
                engines=engines,
                echo=echo,
                progress=progress,
            )
            return results
        for size in sizes:
            work = root / size
            echo(f"{size}: generating the workload")
            workload = build_workload(size, work / "input", seed=seed, days=days, lateness_days=lateness_days)
            echo(
                f"{size}: {workload.sales_lines} sales lines, {workload.counts.get('kafka_events', 0)} Kafka events, {workload.files} landing files"
            )
            runs: dict[str, list[dict[str, object]]] = {engine: [] for engine in engines}
            for i in range(1, repeat + 1):
                if repeat > 1:
                    echo(f"{size}: run {i} of {repeat}")
                for run in bench_size(
                    workload,
                    work if repeat == 1 else work / f"run{i}",
                    engines=engines,
                    backfill=not skip_backfill,
                    echo=echo,
                ):
                    runs[str(run["engine"])].append(run)
            for engine in engines:
                results["sizes"].append({"size": size, **repeated(runs[engine])})
            if progress is not None:
                progress(results)  # a size's figures survive whatever fails after it
        # The headline figures are the first engine's (the local default) at the largest size.
        largest = next(s for s in reversed(results["sizes"]) if s["engine"] == engines[0])
        for key in ("overhead_ratio", "backfill_overhead_ratio", "rows_per_s", "peak_rss_mb", "kafka_events_per_s"):
            results[key] = largest[key]
        results["gold_equal"] = all(s["gold_equal"] for s in results["sizes"])
        if len(sizes) > 1:
            first = next(s for s in results["sizes"] if s["engine"] == engines[0])
            results["scaling"] = {
                "from": first["size"],
                "to": largest["size"],
                "sales_lines_ratio": round(largest["workload"]["sales_lines"] / first["workload"]["sales_lines"], 2),
                "pipeline_time_ratio": round(largest["pipeline_wall_s"] / first["pipeline_wall_s"], 2),
                "baseline_time_ratio": round(largest["baseline_wall_s"] / first["baseline_wall_s"], 2),
            }
        if progress is not None:
            progress(results)
        echo("definitions load (fresh interpreter)")
        results.update(_guarded("definitions_load_s", lambda: definitions_load_s()))
        if skip_sensor:
            results.update(sensor_tick_s=None, sensor_tick_note="skipped (--skip-sensor)")
        else:
            echo("landing sensor tick with 10,000 files")
            results.update(_guarded("sensor_tick_s", lambda: sensor_tick_s(root / "sensor")))
        if skip_latency:
            results.update(latency_p50_s=None, latency_p95_s=None, latency_note="skipped (--skip-latency)")
        else:
            echo("event → Gold latency with dagster dev's daemon and default sensor intervals")
            results.update(latency_figures(echo))
    except BaseException:
        keep = True  # the logs of a failed bench are what explains it
        echo(f"bench failed; workloads, lakehouses and logs kept under {root}")
        raise
    finally:
        if not keep:
            for name in [*sizes, "sensor"]:
                shutil.rmtree(root / name, ignore_errors=True)
            if work_dir is None:
                shutil.rmtree(root, ignore_errors=True)
    return results
