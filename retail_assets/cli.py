"""`retail-assets`: the project's command line.

    retail-assets demo       generate a week of data and run the whole asset graph (the main job)
    retail-assets generate   write synthetic landing files, Kafka events and a defect manifest
    retail-assets broker     run the local Kafka broker in the foreground
    retail-assets produce    send today's POS events to Kafka at a rate (a live stream)
    retail-assets latency    measure event → Gold latency with `dagster dev` running the sensors
    retail-assets ui         open the project in `dagster dev` on the main job's instance
    retail-assets grants     print the Unity Catalog grants of one environment
    retail-assets bench      time the asset graph against a plain PySpark job (throughput, memory, latency)
"""

from __future__ import annotations

import argparse
import signal
import datetime as dt
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from retail_assets.lib import settings


INSTANCE_CONFIG = """\
telemetry:
  enabled: false
concurrency:
  runs:
    # Runs share the Spark Connect server `retail-assets ui` starts (one JVM); three at a time
    # keep a laptop's cores busy.
    max_concurrent_runs: 3
    tag_concurrency_limits:
      # One Kafka run at a time; the next one waits in the queue and takes everything pending.
      - key: retail/lane
        value: stream
        limit: 1
      # Automation (late partitions catching up, aggregates) never holds every slot: new files
      # and events always find one.
      - key: dagster/sensor_name
        value: downstream_automation
        limit: 2
  pools:
    # Dimensions are rebuilt whole (pool `gold_dimensions`): one at a time keeps the last
    # commit the one that saw every Silver change.
    default_limit: 1
"""


def dagster_home(root: Path) -> Path:
    """The persistent Dagster instance the main job and `dagster dev` share."""
    home = Path(os.environ.get("DAGSTER_HOME") or root / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    from retail_assets.lib.event_log import instance_config  # noqa: PLC0415

    if not config.exists():
        config.write_text(INSTANCE_CONFIG + instance_config(home))
    else:
        # An instance created before the event log storage was set: add it, keep the rest.
        import yaml  # noqa: PLC0415

        present = yaml.safe_load(config.read_text()) or {}
        if not any(key in present for key in ("storage", "run_storage", "event_log_storage", "schedule_storage")):
            with config.open("a") as out:
                out.write("\n" + instance_config(home))
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def cmd_demo(args: argparse.Namespace) -> int:
    import dagster as dg

    from retail_assets.lib.broker import LocalBroker, ensure_topic, produce
    from retail_assets.lib.generator import GeneratorConfig, generate
    from retail_assets.lib.pipeline import days, reset_data_root, run_week
    from retail_assets.lib.summary import gold_summary
    from retail_assets.lib.tables import KAFKA_TOPIC

    root = Path(args.data_root or settings.local_data_root()).resolve()
    home = dagster_home(root)
    os.environ["RETAIL_DATA_ROOT"] = str(root)
    started = time.monotonic()
    print(f"retail-assets main job\n  data root      {root}\n  DAGSTER_HOME   {home}")

    reset_data_root(root)
    overrides = {"seed": args.seed, "days": args.days, "defects": not args.clean, "lateness_days": settings.lateness_days()}
    if args.start_date:
        overrides["start_date"] = dt.date.fromisoformat(args.start_date)
    config = GeneratorConfig.preset(args.preset, **overrides)
    generated = generate(config, root, overwrite=True)
    counts = ", ".join(f"{k}={v}" for k, v in sorted(generated.counts.items()))
    print(f"  generated      {counts}; {len(generated.manifest)} injected defects")

    by_day: dict[str, list] = defaultdict(list)
    for message in generated.kafka_messages:
        by_day[dt.datetime.fromtimestamp(message.timestamp_ms / 1000, dt.UTC).date().isoformat()].append(message)

    with LocalBroker(data_dir=root / "kafka", log_path=root / "broker.log") as broker:
        os.environ["RETAIL_KAFKA_BOOTSTRAP"] = broker.bootstrap_servers
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC)
        print(f"  kafka broker   {broker.bootstrap_servers} (topic {KAFKA_TOPIC})")

        from retail_assets.definitions import build_definitions

        defs = build_definitions()
        instance = dg.DagsterInstance.get()
        first_event = config.start_date
        last_event = config.start_date + dt.timedelta(days=config.days - 1)
        arrival_days = days(first_event, last_event + dt.timedelta(days=settings.lateness_days()))
        event_days = days(first_event, last_event)

        def produce_day(day: str) -> None:
            sent = produce(broker.bootstrap_servers, KAFKA_TOPIC, by_day.pop(day, []))
            if sent:
                print(f"  kafka          produced {len(sent)} events that arrive on {day}")

        print("  runs:")
        summaries = run_week(defs, instance, arrival_days=arrival_days, event_days=event_days, before_ingest=produce_day)
        leftover = sum(len(v) for v in by_day.values())
        if leftover:
            print(f"  note           {leftover} generated events arrive after {arrival_days[-1]} and were not produced")

    failed = [s for s in summaries if not s.success or s.checks_failed]
    print(gold_summary(root / "lakehouse"))
    print(f"\n{len(summaries)} runs, {len(failed)} with failures, {time.monotonic() - started:.0f}s. "
          f"Open the UI with:  DAGSTER_HOME={home} dagster dev")
    return 1 if failed else 0


def cmd_ui(args: argparse.Namespace) -> int:
    """`dagster dev` (webserver + daemon) on the main job's instance and data root, with the
    local Kafka broker and one Spark Connect server running beside it for as long as it runs."""
    import contextlib  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    from retail_assets.lib.broker import LocalBroker, ensure_topic
    from retail_assets.lib.spark import REMOTE_ENV
    from retail_assets.lib.spark_server import SparkConnectServer
    from retail_assets.lib.tables import KAFKA_TOPIC

    root = Path(args.data_root or settings.local_data_root()).resolve()
    # A fresh data root (DAGSTER_HOME set elsewhere) still needs a folder for the broker's log.
    root.mkdir(parents=True, exist_ok=True)
    os.environ["RETAIL_DATA_ROOT"] = str(root)
    dagster_home(root)
    workspace = settings.project_root() / "workspace.yaml"
    dagster = str(Path(sys.executable).with_name("dagster"))
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(LocalBroker(args.kafka_port, data_dir=root / "kafka", log_path=root / "broker.log"))
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC)
        os.environ["RETAIL_KAFKA_BOOTSTRAP"] = broker.bootstrap_servers
        print(f"kafka broker on {broker.bootstrap_servers}; DAGSTER_HOME={os.environ['DAGSTER_HOME']}", flush=True)
        if os.environ.get(REMOTE_ENV):
            print(f"runs use the Spark Connect server at {os.environ[REMOTE_ENV]}", flush=True)
        elif not args.spark_per_run:
            # Every run attaches to this one JVM instead of starting its own.
            server = stack.enter_context(SparkConnectServer(log_path=root / "spark-connect.log"))
            os.environ[REMOTE_ENV] = server.remote
            print(f"spark connect server on {server.remote} (log {root / 'spark-connect.log'})", flush=True)
        # `retail-assets ui -- -h 127.0.0.1 -p 3001`: everything after `--` goes to `dagster dev`.
        rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        process = subprocess.Popen([dagster, "dev", "-w", str(workspace), *rest])
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)
            return process.wait()


def cmd_generate(args: argparse.Namespace) -> int:
    from retail_assets.lib.generator import main as generator_main

    return generator_main(args.rest, prog="retail-assets generate")


def cmd_broker(args: argparse.Namespace) -> int:
    from retail_assets.lib.broker import LocalBroker, ensure_topic
    from retail_assets.lib.tables import KAFKA_TOPIC

    root = Path(args.data_root or settings.local_data_root()).resolve()
    # SIGTERM unwinds like Ctrl-C, so the broker's JVM is stopped with it instead of orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with LocalBroker(args.port, data_dir=root / "kafka", log_path=root / "broker.log") as broker:
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC)
        print(f"broker on {broker.bootstrap_servers}, topic {KAFKA_TOPIC}, log in {broker.data_dir}; Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_grants(args: argparse.Namespace) -> int:
    from retail_assets.lib.grants import grants_sql

    print(grants_sql(args.env, args.catalog), end="")
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    import datetime as dt  # noqa: PLC0415

    from retail_assets.lib.broker import ensure_topic
    from retail_assets.lib.stream import StreamConfig, send_stream, stream_messages
    from retail_assets.lib.tables import KAFKA_TOPIC

    day = dt.date.fromisoformat(args.day) if args.day else None
    config = StreamConfig(seed=args.seed, day=day, stores=args.stores, transactions_per_store_day=args.transactions_per_store, defects=not args.clean)
    # With a data root, the day's reference data (customers, products, stores, inventory) lands
    # as files beside the events, so the stream's keys resolve once the landing sensor takes them.
    messages = stream_messages(config, Path(args.data_root).resolve() / "landing" if args.data_root else None)
    bootstrap = args.bootstrap or settings.env("RETAIL_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    ensure_topic(bootstrap, KAFKA_TOPIC)
    print(f"sending {len(messages)} events to {bootstrap} {KAFKA_TOPIC} at {args.rate:g}/s", flush=True)

    def report(number, batch, placed, sent_at) -> None:
        print(f"  batch {number:>3}: {len(batch)} events, offsets {min(placed.values())} … {max(placed.values())}", flush=True)

    send_stream(bootstrap, KAFKA_TOPIC, messages, rate_per_s=args.rate, batch_size=args.batch_size, on_batch=report)
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from retail_assets.lib.latency import measure_latency

    # SIGTERM unwinds like Ctrl-C, so the dagster dev it started is stopped with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    figures = measure_latency(batches=args.batches, events_per_batch=args.events, interval_s=args.interval)
    print(json.dumps({k: v for k, v in figures.items() if k != "latency_samples_s"}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["latency_batches_seen"] == figures["latency_batches"] else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from retail_assets.lib.bench.report import summary, write_chart, write_json
    from retail_assets.lib.bench.runner import run_bench

    out = Path(args.out).resolve()
    results = run_bench(
        args.size or ["small"],
        work_dir=Path(args.work_dir) if args.work_dir else None,
        seed=args.seed,
        days=args.days,
        skip_latency=args.skip_latency,
        skip_sensor=args.skip_sensor,
        keep=args.keep,
        repeat=args.repeat,
        engines=tuple(dict.fromkeys(args.engine or ["delta_rs", "delta_spark"])),
        progress=lambda partial: write_json(partial, out),
    )
    write_json(results, out)
    chart = out.with_suffix(".png")
    write_chart(results, chart)
    print(summary(results))
    print(f"wrote {out} and {chart}")
    if not results["gold_equal"]:
        print("Gold differs between the pipeline and the baseline (see gold_tables above)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retail-assets", description="Retail Medallion lakehouse on Dagster.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate a week of data (defects on) and materialize every asset for every partition")
    demo.add_argument("--data-root", help="landing zone, lakehouse and instance folder (default: RETAIL_DATA_ROOT or ./.lakehouse)")
    demo.add_argument("--preset", default="tiny", choices=["tiny", "small", "medium"])
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--days", type=int, default=7)
    demo.add_argument("--start-date", help="first business day (ISO date)")
    demo.add_argument("--clean", action="store_true", help="generate without defects")
    demo.set_defaults(func=cmd_demo)

    ui = sub.add_parser("ui", help="open the project in `dagster dev` (webserver + daemon) on the main job's instance")
    ui.add_argument("--data-root")
    ui.add_argument("--kafka-port", type=int, default=19092)
    ui.add_argument(
        "--spark-per-run", action="store_true", help="each run starts its own Spark JVM instead of sharing one Spark Connect server"
    )
    ui.add_argument("rest", nargs=argparse.REMAINDER, help="extra `dagster dev` arguments")
    ui.set_defaults(func=cmd_ui)

    gen = sub.add_parser("generate", help="synthetic data generator (see `retail-assets generate -- --help`)", add_help=False)
    gen.add_argument("rest", nargs=argparse.REMAINDER)
    gen.set_defaults(func=cmd_generate)

    broker = sub.add_parser("broker", help="run the local Kafka broker in the foreground")
    broker.add_argument("--port", type=int, default=19092)
    broker.add_argument("--data-root", help="its log goes to <data-root>/kafka (default: RETAIL_DATA_ROOT or ./.lakehouse)")
    broker.set_defaults(func=cmd_broker)

    produce = sub.add_parser("produce", help="send today's POS events (duplicates, late events, a new field mid-stream) to Kafka at a rate")
    produce.add_argument("--bootstrap", help="bootstrap servers (default: RETAIL_KAFKA_BOOTSTRAP or 127.0.0.1:19092)")
    produce.add_argument("--rate", type=float, default=20.0, help="events per second (0 = as fast as possible)")
    produce.add_argument("--batch-size", type=int, default=10)
    produce.add_argument("--seed", type=int, default=7)
    produce.add_argument("--day", help="business day of the events (default: today, UTC)")
    produce.add_argument("--stores", type=int, default=6)
    produce.add_argument("--transactions-per-store", type=int, default=40)
    produce.add_argument("--clean", action="store_true", help="no defects")
    produce.add_argument("--data-root", help="also write the day's reference data into <data-root>/landing")
    produce.set_defaults(func=cmd_produce)

    latency = sub.add_parser("latency", help="start dagster dev with sensors on and measure event → Gold latency (p50/p95)")
    latency.add_argument("--batches", type=int, default=20)
    latency.add_argument("--events", type=int, default=20, help="events per batch")
    latency.add_argument("--interval", type=float, default=10.0, help="seconds between batches")
    latency.add_argument("--out", help="write the figures as JSON")
    latency.set_defaults(func=cmd_latency)

    bench = sub.add_parser("bench", help="time the asset graph through Dagster against a plain PySpark job; write bench-results.json and .png")
    bench.add_argument("--size", action="append", choices=["tiny", "small", "medium"], help="workload size; repeat for several (default: small)")
    bench.add_argument("--out", default="bench-results.json", help="results JSON; the chart goes beside it as .png")
    bench.add_argument("--skip-latency", action="store_true", help="skip the event → Gold latency measurement (dagster dev, several minutes)")
    bench.add_argument("--skip-sensor", action="store_true", help="skip the landing-sensor tick with 10,000 files")
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--days", type=int, help="business days of the workload (default: the size's)")
    bench.add_argument("--work-dir", help="where workloads and lakehouses go (default: a temporary folder)")
    bench.add_argument("--keep", action="store_true", help="keep the workloads, lakehouses and logs")
    bench.add_argument("--repeat", type=int, default=1, help="measure each size this many times and report the median run (default: 1)")
    bench.add_argument(
        "--engine", action="append", choices=["delta_rs", "delta_spark"],
        help="local engine whose pipeline is timed against the one baseline; repeat for several (default: both, delta_rs first)",
    )
    bench.set_defaults(func=cmd_bench)

    grants = sub.add_parser("grants", help="print the Unity Catalog GRANT statements of one environment (SQL)")
    grants.add_argument("--env", required=True, help="deployment environment, e.g. dev, staging, prod")
    grants.add_argument("--catalog", required=True, help="Unity Catalog catalog holding the {env}_{layer} schemas")
    grants.set_defaults(func=cmd_grants)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
