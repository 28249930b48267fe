"""Measurements: a process tree's wall time and peak memory, the pipeline run as the main job
runs it, Kafka ingestion, definitions load and a landing-sensor tick.

`python -m retail_assets.tooling.bench.measure pipeline ...` is the pipeline side of the bench: the
stage jobs over every partition through Dagster against a fresh instance, exactly as
`retail-assets demo` runs them, in a process of its own so its memory and time are its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

# ---------------------------------------------------------------------------------------------
# Process trees
# ---------------------------------------------------------------------------------------------


@dataclass
class ProcessFigures:
    wall_s: float
    peak_rss_mb: float
    returncode: int


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (Python plus the Spark JVM).

    Proportional set size where the kernel reports it: forked workers (PySpark's daemon) share
    pages with their parent, and summing their plain RSS would count those pages twice."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except psutil.AccessDenied:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def run_measured(
    command: list[str], *, env: dict[str, str] | None = None, log: Path | None = None, interval_s: float = 0.25
) -> ProcessFigures:
    """Run a command to completion, sampling its process tree's resident memory."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    started = time.monotonic()
    try:
        child = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        proc = psutil.Process(child.pid)
        peak = 0
        while child.poll() is None:
            try:
                peak = max(peak, tree_rss(proc))
            except psutil.NoSuchProcess:
                break
            time.sleep(interval_s)
        returncode = child.wait()
    finally:
        if log:
            out.close()
    return ProcessFigures(time.monotonic() - started, peak / 2**20, returncode)


# ---------------------------------------------------------------------------------------------
# Definitions load and sensor tick
# ---------------------------------------------------------------------------------------------

_IMPORT_TIMER = "import time; t = time.perf_counter(); import retail_assets.definitions; print(time.perf_counter() - t)"


def definitions_load_s(runs: int = 3) -> dict[str, object]:
    """Seconds to import the code location in a fresh interpreter (what `dagster dev`, every run
    worker and every sensor daemon process pays); the median of `runs`."""
    samples = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", _IMPORT_TIMER], capture_output=True, text=True, check=True)
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    return {
        "definitions_load_s": round(statistics.median(samples), 3),
        "definitions_load_samples_s": [round(s, 3) for s in samples],
    }


def sensor_tick_s(root: Path, files: int = 10_000, new: int = 10, ticks: int = 3) -> dict[str, object]:
    """A landing-sensor tick with `files` landing files, Bronze already holding all but `new`."""
    import dagster as dg  # noqa: PLC0415

    from retail_assets.defs.bronze.sensors import landing_zone_sensor  # noqa: PLC0415
    from retail_assets.lib.orchestration.resources import LakehouseResource  # noqa: PLC0415
    from retail_assets.tooling.bench.workload import landing_with_held_files  # noqa: PLC0415

    landing = landing_with_held_files(root, files, new)
    resources = {"lakehouse": LakehouseResource(root=str(root / "lakehouse"), landing_root=str(landing))}
    instance = dg.DagsterInstance.ephemeral()
    samples, requested = [], []
    for _ in range(ticks):
        context = dg.build_sensor_context(instance=instance, resources=resources)
        started = time.perf_counter()
        result = landing_zone_sensor(context)
        result = [result] if isinstance(result, (dg.SkipReason, dg.RunRequest)) else list(result or [])
        samples.append(time.perf_counter() - started)
        requested = [r.tags.get("retail/new_files") for r in result if isinstance(r, dg.RunRequest)]
    if requested != [str(new)]:
        raise RuntimeError(f"the landing sensor requested {requested} new files, expected one run with {new}")
    # the first tick also imports and builds what later ticks reuse; report a steady tick
    return {
        "sensor_tick_s": round(statistics.median(samples[1:] or samples), 3),
        "sensor_tick_first_s": round(samples[0], 3),
        "sensor_tick_files": files,
    }


# ---------------------------------------------------------------------------------------------
# The pipeline side
# ---------------------------------------------------------------------------------------------


def run_pipeline(
    workload_root: Path, data_root: Path, bootstrap: str, *, through: str | None = None, day: str | None = None
) -> dict[str, object]:
    """The stage jobs over every partition through Dagster (`run_week`), as the main job runs
    them: each arrival day's events produced to Kafka just before that day's stream run, every
    other stage one run over its partition range.

    `through`: only the arrival and business days up to that day (a history). `day`: only a
    daily run of that arrival day (`daily_run_days`), its events already on the topic,
    timed from when the code location is loaded and the Spark session started, as a run
    under `retail-assets ui` finds them."""
    from retail_assets.tooling.bench.workload import Workload  # noqa: PLC0415

    workload = Workload.load(workload_root)
    os.environ.update(
        RETAIL_DATA_ROOT=str(data_root),
        RETAIL_KAFKA_BOOTSTRAP=bootstrap,
        RETAIL_LATENESS_DAYS=str(workload.lateness_days),
    )
    from retail_assets.tooling.cli.instance import dagster_home  # noqa: PLC0415

    dagster_home(data_root)
    landing = data_root / "landing"
    if not landing.exists():
        landing.symlink_to(workload.landing, target_is_directory=True)

    import dagster as dg  # noqa: PLC0415

    from retail_assets.definitions import build_definitions  # noqa: PLC0415
    from retail_assets.lib.registry.tables import KAFKA_TOPIC  # noqa: PLC0415
    from retail_assets.tooling.broker import produce  # noqa: PLC0415
    from retail_assets.tooling.main_job import run_week  # noqa: PLC0415

    started = time.monotonic()
    defs = build_definitions()
    instance = dg.DagsterInstance.get()
    arrival_days = [d for d in workload.arrival_days if d <= (through or d)]
    event_days = [d for d in workload.event_days if d <= (through or d)]
    if day is not None:
        from retail_assets.lib.engine.spark import get_spark  # noqa: PLC0415

        arrival_days, event_days = daily_run_days(defs, day, workload.event_days)
        get_spark()
        started = time.monotonic()
    by_day = workload.messages_by_arrival_day() if day is None else {}
    produced = {"events": 0, "seconds": 0.0}

    def produce_day(day: str) -> None:
        t = time.monotonic()
        produced["events"] += len(produce(bootstrap, KAFKA_TOPIC, by_day.get(day, [])))
        produced["seconds"] += time.monotonic() - t

    def echo(line: str) -> None:
        print(line, flush=True)

    summaries = run_week(
        defs,
        instance,
        arrival_days=arrival_days,
        event_days=event_days,
        before_ingest=produce_day,
        echo=echo,
    )
    wall = time.monotonic() - started - produced["seconds"]
    return {
        "wall_s": round(wall, 2),
        "produce_s": round(produced["seconds"], 2),
        "events_produced": produced["events"],
        "runs": [
            {
                "stage": s.stage,
                "partition": s.partition,
                "seconds": round(s.seconds, 2),
                "success": s.success,
                "checks_failed": s.checks_failed,
            }
            for s in summaries
        ],
    }


def daily_run_days(defs, day: str, event_days: list[str]) -> tuple[list[str], list[str]]:
    """The arrival and business days a daily run of arrival day `day` runs: that day, and each of
    `event_days` that reads it through a lateness window a business-date table declares on an
    arrival-date one (Silver's sales read arrival days D-1 … D+L, so arrival day A feeds business
    days A-L … A+1; the fact reads the dimensions of D … D+L). Inputs read whole (the master data)
    are state as of the run, not a window: they add no business day."""
    import dagster as dg  # noqa: PLC0415

    from retail_assets.lib.registry.tables import TABLES, Partitioning  # noqa: PLC0415

    arriving = {dg.AssetKey([t.layer.value, t.name]) for t in TABLES if t.partitioning is Partitioning.ARRIVAL_DATE}
    arrival = dt.date.fromisoformat(day)
    fed: set[str] = set()
    for spec in TABLES:
        if spec.partitioning is not Partitioning.EVENT_DATE:
            continue
        key = dg.AssetKey([spec.layer.value, spec.name])
        for dep in defs.resolve_assets_def(key).specs_by_key[key].deps:
            window = dep.partition_mapping
            if dep.asset_key in arriving and isinstance(window, dg.TimeWindowPartitionMapping):
                # D reads arrival days D+start_offset … D+end_offset
                first = arrival - dt.timedelta(days=window.end_offset)
                last = arrival - dt.timedelta(days=window.start_offset)
                fed |= {d for d in event_days if first.isoformat() <= d <= last.isoformat()}
    return [day], sorted(fed)


def kafka_ingestion(data_root: Path, bootstrap: str, day: str) -> dict[str, object]:
    """Materialize `bronze.pos_transactions` for one day into an empty lakehouse, so every event
    on the topic is pending: the asset's own path (offsets from Bronze, read, parse, one commit).
    As in a run worker, the code location is loaded before the run starts."""
    import dagster as dg  # noqa: PLC0415
    from deltalake import DeltaTable  # noqa: PLC0415

    import retail_assets.definitions  # noqa: F401, PLC0415  (the code location, as a run worker loads it)
    from retail_assets.defs.bronze.assets import pos_transactions  # noqa: PLC0415
    from retail_assets.lib import settings  # noqa: PLC0415
    from retail_assets.lib.orchestration.environments import kafka_resource  # noqa: PLC0415
    from retail_assets.lib.orchestration.resources import LakehouseResource  # noqa: PLC0415
    from retail_assets.lib.registry.tables import BRONZE_POS_TRANSACTIONS  # noqa: PLC0415

    lakehouse = data_root / "kafka_ingestion"
    resources = {
        "lakehouse": LakehouseResource(
            root=str(lakehouse),
            landing_root=str(data_root / "landing"),
            table_engine=settings.local_engine(),
            deployment_env=settings.deployment_env(),
        ),
        "kafka": kafka_resource(bootstrap_servers=bootstrap, reader=settings.env("RETAIL_KAFKA_READER", "confluent")),
        "pyspark_step_launcher": dg.ResourceDefinition.none_resource(),
    }
    instance = dg.DagsterInstance.ephemeral()  # set-up, not ingestion: outside the timed run
    if settings.local_engine() == "delta_spark":
        # Set-up too: runs under `retail-assets ui` find the Spark JVM running (its Connect server).
        from retail_assets.lib.engine.spark import get_spark  # noqa: PLC0415

        get_spark()
    started = time.monotonic()
    result = dg.materialize([pos_transactions], partition_key=day, resources=resources, instance=instance)
    seconds = time.monotonic() - started
    if not result.success:
        raise RuntimeError("bronze.pos_transactions failed in the Kafka ingestion measurement")
    events = DeltaTable(str(lakehouse / BRONZE_POS_TRANSACTIONS.layer.value / BRONZE_POS_TRANSACTIONS.name)).count()
    return {
        "kafka_events_ingested": events,
        "kafka_ingest_s": round(seconds, 2),
        "kafka_events_per_s": round(events / seconds, 1) if seconds else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retail_assets.tooling.bench.measure")
    sub = parser.add_subparsers(dest="what", required=True)
    pipeline = sub.add_parser("pipeline", help="run the asset graph over the workload through Dagster")
    # A process of its own, as a stream run is under `dagster dev`: no Spark JVM left over from
    # the pipeline competes for the cores, and the pipeline's time and memory do not include it.
    kafka = sub.add_parser("kafka", help="Bronze Kafka ingestion of every event on the topic, in one run")
    for command in (pipeline, kafka):
        command.add_argument("--workload", required=True, type=Path)
        command.add_argument("--root", required=True, type=Path, help="data root: lakehouse and Dagster instance")
        command.add_argument("--bootstrap", required=True)
        command.add_argument("--report", required=True, type=Path)
    pipeline.add_argument("--through", help="only the arrival and business days up to this day (a history)")
    pipeline.add_argument("--day", help="only a daily run of this arrival day, its events already on the topic")
    args = parser.parse_args(argv)
    if args.what == "kafka":
        from retail_assets.tooling.bench.workload import Workload  # noqa: PLC0415

        figures = kafka_ingestion(args.root, args.bootstrap, Workload.load(args.workload).arrival_days[-1])
        ok = True
    else:
        figures = run_pipeline(args.workload, args.root, args.bootstrap, through=args.through, day=args.day)
        ok = all(r["success"] and not r["checks_failed"] for r in figures["runs"])
    args.report.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
