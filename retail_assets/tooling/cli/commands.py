"""The subcommands of `retail-assets`: options and help here, the work in `retail_assets.lib`.

Every command runs its preflight checks (`tooling/cli/preflight.py`) before it creates, deletes or
starts anything.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

import click

from retail_assets.lib import settings
from retail_assets.tooling.cli import preflight
from retail_assets.tooling.cli.instance import dagster_home
from retail_assets.tooling.cli.progress import Progress, step_counter

KAFKA_PORT = 19092
WEBSERVER_PORT = 3000  # `dagster dev`'s default
PRESETS = ["tiny", "small", "medium"]
GENERATED = ("landing", "lakehouse", "kafka", "manifest.json")  # what `demo` replaces in a data root


def example(*lines: str) -> str:
    """An epilog showing how a command is used (`\b` keeps click from rewrapping it)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def data_root_option(help_text: str):
    return click.option(
        "--data-root",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="RETAIL_DATA_ROOT",
        show_envvar=True,
        default=lambda: str(settings.local_data_root()),
        show_default="./.lakehouse",
        help=help_text,
    )


def _sigterm_unwinds() -> None:
    # SIGTERM unwinds like Ctrl-C, so the JVMs a command started are stopped with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# ---- demo ---------------------------------------------------------------------------------


@click.command(
    short_help="The main job: a generated week through every asset, every partition.",
    epilog=example(
        "retail-assets demo                              # a tiny week with every defect, in ./.lakehouse",
        "retail-assets demo --preset small --days 3 --data-root /tmp/retail --force",
    ),
)
@data_root_option("Folder for the landing zone, lakehouse, Kafka log and Dagster instance.")
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    default="tiny",
    show_default=True,
    help="Size of the generated week (tiny: seconds per run).",
)
@click.option(
    "--seed", type=int, default=7, show_default=True, help="Seed of the generator: the same seed, the same data."
)
@click.option("--days", type=click.IntRange(min=1), default=7, show_default=True, help="Business days to generate.")
@click.option(
    "--start-date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="First business day (YYYY-MM-DD); default: the preset's.",
)
@click.option("--clean", is_flag=True, help="Generate without the injected defects of SPEC §7.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace the landing zone, lakehouse and Kafka log already in the data root without asking.",
)
def demo(
    data_root: Path, preset: str, seed: int, days: int, start_date: dt.datetime | None, clean: bool, force: bool
) -> int:
    """The main job: generate a week of data (with every defect) and materialize every asset of
    every partition through Dagster, Kafka events produced day by day to a local broker.

    The runs land in the data root's Dagster instance: open them afterwards with
    `retail-assets ui`."""
    root = Path(data_root).resolve()
    preflight.run_checks(
        [
            preflight.settings_valid(local=True),
            preflight.writable(root, "data root", "--data-root"),
            preflight.java(),
            preflight.jvm_artifacts("spark", "kafka"),
        ]
    )
    _replace_generated(root, force)

    import dagster as dg

    from retail_assets.lib.registry.tables import KAFKA_TOPIC
    from retail_assets.tooling.broker import LocalBroker, ensure_topic, produce
    from retail_assets.tooling.generator import GeneratorConfig, generate
    from retail_assets.tooling.main_job import days as day_range
    from retail_assets.tooling.main_job import planned_runs, reset_data_root, run_week
    from retail_assets.tooling.summary import gold_summary

    home = dagster_home(root)
    os.environ["RETAIL_DATA_ROOT"] = str(root)
    started = time.monotonic()
    print(f"retail-assets main job\n  data root      {root}\n  DAGSTER_HOME   {home}", flush=True)
    reset_data_root(root)
    overrides = {"seed": seed, "days": days, "defects": not clean, "lateness_days": settings.lateness_days()}
    if start_date:
        overrides["start_date"] = start_date.date()
    config = GeneratorConfig.preset(preset, **overrides)
    first_event, last_event = config.start_date, config.end_date
    arrival_days = day_range(first_event, last_event + dt.timedelta(days=settings.lateness_days()))
    event_days = day_range(first_event, last_event)

    with Progress("demo", total=len(planned_runs(arrival_days, event_days))) as progress:
        progress.status(f"generating {preset}, {days} days")
        generated = generate(config, root, overwrite=True)
        counts = ", ".join(f"{k}={v}" for k, v in sorted(generated.counts.items()))
        progress.line(f"  generated      {counts}; {len(generated.manifest)} injected defects")
        by_day: dict[str, list] = defaultdict(list)
        for message in generated.kafka_messages:
            by_day[dt.datetime.fromtimestamp(message.timestamp_ms / 1000, dt.UTC).date().isoformat()].append(message)

        progress.status("starting the Kafka broker")
        with LocalBroker(data_dir=root / "kafka", log_path=root / "broker.log") as broker:
            os.environ["RETAIL_KAFKA_BOOTSTRAP"] = broker.bootstrap_servers
            ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC)
            progress.line(f"  kafka broker   {broker.bootstrap_servers} (topic {KAFKA_TOPIC})")
            progress.status("loading the definitions")
            from retail_assets.definitions import build_definitions

            defs = build_definitions()
            instance = dg.DagsterInstance.get()

            def produce_day(day: str) -> None:
                sent = produce(broker.bootstrap_servers, KAFKA_TOPIC, by_day.pop(day, []))
                if sent:
                    progress.line(f"  kafka          produced {len(sent)} events that arrive on {day}")

            def on_run(stage, partition: str, steps: int):
                progress.status(f"{stage.job_name} {partition}", steps=(0, steps))
                return step_counter(progress, steps)

            def echo(line: str) -> None:
                progress.advance()
                progress.line(line)

            progress.line("  runs:")
            summaries = run_week(
                defs,
                instance,
                arrival_days=arrival_days,
                event_days=event_days,
                before_ingest=produce_day,
                echo=echo,
                on_run=on_run,
            )
            leftover = sum(len(v) for v in by_day.values())
            if leftover:
                progress.line(
                    f"  note           {leftover} generated events arrive after {arrival_days[-1]} and were not produced"
                )

    failed = [s for s in summaries if not s.success or s.checks_failed]
    print(gold_summary(root / "lakehouse"))
    print(
        f"\n{len(summaries)} runs, {len(failed)} with failures, {time.monotonic() - started:.0f}s. "
        f"Open the UI with:  retail-assets ui --data-root {root}"
    )
    return 1 if failed else 0


def _replace_generated(root: Path, force: bool) -> None:
    """Never delete a data root's data unasked: `--force`, or a yes at a terminal."""
    present = [name for name in GENERATED if (root / name).exists()]
    if not present or force:
        return
    held = ", ".join(present)
    if sys.stdin.isatty() and sys.stdout.isatty():
        if click.confirm(f"{root} already holds {held}; delete them and generate a new week?", default=False):
            return
        raise click.Abort()
    raise preflight.Preflight(
        f"the data root {root} already holds {held}: pass --force to replace them, or --data-root with another folder"
    )


# ---- ui -----------------------------------------------------------------------------------


@click.command(
    short_help="Open the project in `dagster dev` on the demo's instance.",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    epilog=example(
        "retail-assets ui                                # http://127.0.0.1:3000, the demo's instance",
        "retail-assets ui --data-root /tmp/retail -- -h 127.0.0.1 -p 3001",
    ),
)
@data_root_option("Data root whose Dagster instance and lakehouse the UI opens.")
@click.option(
    "--kafka-port",
    type=click.IntRange(1, 65535),
    default=KAFKA_PORT,
    show_default=True,
    help="Loopback port of the local Kafka broker started beside the UI.",
)
@click.option(
    "--spark-per-run",
    is_flag=True,
    help="Each run starts its own Spark JVM instead of sharing one Spark Connect server.",
)
@click.argument("dagster_dev_args", nargs=-1, type=click.UNPROCESSED)
def ui(data_root: Path, kafka_port: int, spark_per_run: bool, dagster_dev_args: tuple[str, ...]) -> int:
    """Open the project in `dagster dev` (webserver and daemon, sensors running) on the data
    root's instance, with the local Kafka broker and one Spark Connect server beside it for as
    long as it runs. Arguments after `--` go to `dagster dev`."""
    import contextlib
    import subprocess

    root = Path(data_root).resolve()
    rest = list(dagster_dev_args)
    webserver_port = _port_argument(rest) or WEBSERVER_PORT
    preflight.run_checks(
        [
            preflight.settings_valid(local=True),
            preflight.writable(root, "data root", "--data-root"),
            preflight.java(),
            preflight.jvm_artifacts("spark", "kafka"),
            preflight.port_free(kafka_port, "Kafka broker", "--kafka-port"),
            preflight.port_free(webserver_port, "Dagster webserver", "`-- -p PORT`"),
        ]
    )
    from retail_assets.lib.engine.spark import REMOTE_ENV
    from retail_assets.lib.registry.tables import KAFKA_TOPIC
    from retail_assets.tooling.broker import LocalBroker, ensure_topic
    from retail_assets.tooling.spark_server import SparkConnectServer

    # A fresh data root (DAGSTER_HOME set elsewhere) still needs a folder for the broker's log.
    root.mkdir(parents=True, exist_ok=True)
    os.environ["RETAIL_DATA_ROOT"] = str(root)
    dagster_home(root)
    workspace = settings.project_root() / "workspace.yaml"
    dagster = str(Path(sys.executable).with_name("dagster"))
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(LocalBroker(kafka_port, data_dir=root / "kafka", log_path=root / "broker.log"))
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC)
        os.environ["RETAIL_KAFKA_BOOTSTRAP"] = broker.bootstrap_servers
        print(f"kafka broker on {broker.bootstrap_servers}; DAGSTER_HOME={os.environ['DAGSTER_HOME']}", flush=True)
        if os.environ.get(REMOTE_ENV):
            print(f"runs use the Spark Connect server at {os.environ[REMOTE_ENV]}", flush=True)
        elif not spark_per_run:
            # Every run attaches to this one JVM instead of starting its own.
            server = stack.enter_context(SparkConnectServer(log_path=root / "spark-connect.log"))
            os.environ[REMOTE_ENV] = server.remote
            print(f"spark connect server on {server.remote} (log {root / 'spark-connect.log'})", flush=True)
        process = subprocess.Popen([dagster, "dev", "-w", str(workspace), *rest])
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)
            return process.wait()


def _port_argument(args: list[str]) -> int | None:
    """The webserver port among `dagster dev` arguments (`-p N`, `--port N`, `--port=N`)."""
    for i, arg in enumerate(args):
        if arg in ("-p", "--port") and i + 1 < len(args) and args[i + 1].isdigit():
            return int(args[i + 1])
        if arg.startswith("--port=") and arg[7:].isdigit():
            return int(arg[7:])
    return None


# ---- generate -----------------------------------------------------------------------------


@click.command(
    short_help="Write synthetic landing files, Kafka events and a defect manifest.",
    epilog=example(
        "retail-assets generate --out /tmp/retail-data --preset tiny --defects",
        "retail-assets generate --out /tmp/retail-data --preset small --days 3 --seed 11 --force",
    ),
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: landing/, kafka/pos_transactions.jsonl, manifest.json.",
)
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    default="tiny",
    show_default=True,
    help="Named size; the options below override it.",
)
@click.option("--seed", type=int, help="Seed (default: the preset's, 7).")
@click.option("--days", type=click.IntRange(min=1), help="Business days (default: the preset's, 7).")
@click.option(
    "--start-date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="First business day, YYYY-MM-DD (default: the preset's).",
)
@click.option("--stores", type=click.IntRange(min=1), help="Stores (default: the preset's).")
@click.option("--products", type=click.IntRange(min=1), help="Products (default: the preset's).")
@click.option("--customers", type=click.IntRange(min=1), help="Customers (default: the preset's).")
@click.option(
    "--transactions-per-store-day",
    type=click.IntRange(min=0),
    help="Transactions per store and day (default: the preset's).",
)
@click.option(
    "--kafka-share", type=click.FloatRange(0, 1), help="Share of transactions sent as Kafka events rather than files."
)
@click.option(
    "--lateness-days", type=click.IntRange(min=0), help="Days after its business day an event or file may still arrive."
)
@click.option(
    "--defects/--no-defects",
    default=False,
    show_default=True,
    help="Inject the SPEC §7 defects and list them in manifest.json.",
)
@click.option("--defect-rate", type=click.FloatRange(0, 1), help="Share of records given a defect (with --defects).")
@click.option("--force", is_flag=True, help="Replace landing/, kafka/ and manifest.json already in --out.")
def generate(out: Path, preset: str, start_date: dt.datetime | None, defects: bool, force: bool, **sizes) -> int:
    """Write a synthetic landing zone (sales, customers, products, stores, inventory), the Kafka
    events of the point-of-sale stream and a manifest of every injected defect."""
    from retail_assets.tooling.generator import GeneratorConfig
    from retail_assets.tooling.generator import generate as write

    out = Path(out).resolve()
    preflight.run_checks([preflight.writable(out, "output folder", "--out")])
    present = [name for name in ("landing", "kafka", "manifest.json") if (out / name).exists()]
    if present and not force:
        raise preflight.Preflight(
            f"{out} already holds {', '.join(present)}: pass --force to replace them, or --out with another folder"
        )
    overrides = {k: v for k, v in sizes.items() if v is not None}
    if start_date:
        overrides["start_date"] = start_date.date()
    try:
        config = GeneratorConfig.preset(preset, defects=defects, **overrides)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc)) from None
    with Progress("generate") as progress:
        progress.status(
            f"{preset}, {config.days} days from {config.start_date}, defects {'on' if config.defects else 'off'}"
        )
        result = write(config, out, overwrite=True)
        seconds = progress.elapsed
    print(
        f"generated seed={config.seed} start={config.start_date} days={config.days} defects={'on' if config.defects else 'off'} in {seconds:.1f}s"
    )
    print(result.summary())
    return 0


# ---- broker, produce ----------------------------------------------------------------------


@click.command(
    short_help="Run the local Kafka broker in the foreground.",
    epilog=example("retail-assets broker", "retail-assets broker --port 29092 --data-root /tmp/retail"),
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=KAFKA_PORT, show_default=True, help="Loopback port of the broker."
)
@data_root_option("Its log goes to <data-root>/kafka and survives restarts.")
def broker(port: int, data_root: Path) -> int:
    """Run the local Kafka broker (Apache Kafka, KRaft) in the foreground until Ctrl-C."""
    root = Path(data_root).resolve()
    preflight.run_checks(
        [
            preflight.writable(root, "data root", "--data-root"),
            preflight.java(),
            preflight.jvm_artifacts("kafka"),
            preflight.port_free(port, "Kafka broker", "--port"),
        ]
    )
    from retail_assets.lib.registry.tables import KAFKA_TOPIC
    from retail_assets.tooling.broker import LocalBroker, ensure_topic

    _sigterm_unwinds()
    with LocalBroker(port, data_dir=root / "kafka", log_path=root / "broker.log") as running:
        ensure_topic(running.bootstrap_servers, KAFKA_TOPIC)
        print(
            f"broker on {running.bootstrap_servers}, topic {KAFKA_TOPIC}, log in {running.data_dir}; Ctrl-C stops it",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


@click.command(
    short_help="Send a day's POS events to Kafka at a rate (a live stream).",
    epilog=example(
        "retail-assets produce                           # to the broker of `retail-assets ui`",
        "retail-assets produce --rate 0 --stores 2 --transactions-per-store 10 --data-root ./.lakehouse",
    ),
)
@click.option(
    "--bootstrap",
    envvar="RETAIL_KAFKA_BOOTSTRAP",
    show_envvar=True,
    default=f"127.0.0.1:{KAFKA_PORT}",
    show_default=True,
    help="Kafka bootstrap servers.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="Events per second (0: as fast as possible).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=10, show_default=True, help="Events sent together.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the events.")
@click.option(
    "--day", type=click.DateTime(formats=["%Y-%m-%d"]), help="Business day of the events (default: today, UTC)."
)
@click.option("--stores", type=click.IntRange(min=1), default=6, show_default=True, help="Stores selling.")
@click.option(
    "--transactions-per-store",
    type=click.IntRange(min=1),
    default=40,
    show_default=True,
    help="Transactions per store.",
)
@click.option(
    "--clean", is_flag=True, help="No defects (duplicates, late events, a new field mid-stream are on by default)."
)
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write the day's reference data into <data-root>/landing, so the events' keys resolve.",
)
def produce(
    bootstrap: str,
    rate: float,
    batch_size: int,
    seed: int,
    day: dt.datetime | None,
    stores: int,
    transactions_per_store: int,
    clean: bool,
    data_root: Path | None,
) -> int:
    """Send a day's point-of-sale events to Kafka at a rate: a live stream for the sensors."""
    from retail_assets.lib.registry.tables import KAFKA_TOPIC
    from retail_assets.tooling.broker import ensure_topic
    from retail_assets.tooling.stream import StreamConfig, send_stream, stream_messages

    if data_root is not None:
        preflight.run_checks([preflight.writable(Path(data_root).resolve(), "data root", "--data-root")])
    config = StreamConfig(
        seed=seed,
        day=day.date() if day else None,
        stores=stores,
        transactions_per_store_day=transactions_per_store,
        defects=not clean,
    )
    messages = stream_messages(config, Path(data_root).resolve() / "landing" if data_root else None)
    ensure_topic(bootstrap, KAFKA_TOPIC)
    print(f"sending {len(messages)} events to {bootstrap} {KAFKA_TOPIC} at {rate:g}/s", flush=True)

    def report(number, batch, placed, sent_at) -> None:
        print(
            f"  batch {number:>3}: {len(batch)} events, offsets {min(placed.values())} … {max(placed.values())}",
            flush=True,
        )

    send_stream(bootstrap, KAFKA_TOPIC, messages, rate_per_s=rate, batch_size=batch_size, on_batch=report)
    return 0


# ---- measurements -------------------------------------------------------------------------


@click.command(
    short_help="Measure event → Gold latency with `dagster dev` running the sensors.",
    epilog=example(
        "retail-assets latency", "retail-assets latency --batches 5 --events 10 --interval 5 --out latency.json"
    ),
)
@click.option("--batches", type=click.IntRange(min=1), default=20, show_default=True, help="Batches of events to send.")
@click.option("--events", type=click.IntRange(min=1), default=20, show_default=True, help="Events per batch.")
@click.option(
    "--interval", type=click.FloatRange(min=0), default=10.0, show_default=True, help="Seconds between batches."
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the figures as JSON.")
def latency(batches: int, events: int, interval: float, out: Path | None) -> int:
    """Start `dagster dev` with its sensors on a fresh data root, send batches of events and
    report how long each took to reach `gold.fact_sales` (p50, p95)."""
    preflight.run_checks(
        [preflight.settings_valid(local=True), preflight.java(), preflight.jvm_artifacts("spark", "kafka")]
    )
    from retail_assets.tooling.latency import measure_latency

    _sigterm_unwinds()
    figures = measure_latency(batches=batches, events_per_batch=events, interval_s=interval)
    print(json.dumps({k: v for k, v in figures.items() if k != "latency_samples_s"}, indent=2))
    if out:
        Path(out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["latency_batches_seen"] == figures["latency_batches"] else 1


@click.command(
    short_help="Time the asset graph against a plain PySpark job.",
    epilog=example(
        "retail-assets bench --size small --skip-latency",
        "retail-assets bench --size small --size medium --engine delta_rs --repeat 3 --out results.json",
    ),
)
@click.option(
    "--size",
    "sizes",
    multiple=True,
    type=click.Choice(PRESETS),
    help="Workload size; repeat for several.  [default: small]",
)
@click.option(
    "--engine",
    "engines",
    multiple=True,
    type=click.Choice(list(settings.LOCAL_ENGINES)),
    help="Local engine timed against the one baseline; repeat for several.  [default: both, delta_rs first]",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Measure each size this many times; the median run stands for it.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default="bench-results.json",
    show_default=True,
    help="Results JSON; the chart goes beside it as .png.",
)
@click.option(
    "--skip-latency", is_flag=True, help="Skip the event → Gold latency measurement (dagster dev, several minutes)."
)
@click.option("--skip-sensor", is_flag=True, help="Skip the landing-sensor tick with 10,000 files.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the workloads.")
@click.option("--days", type=click.IntRange(min=1), help="Business days of the workload (default: the size's).")
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where workloads and lakehouses go (default: a temporary folder).",
)
@click.option("--keep", is_flag=True, help="Keep the workloads, lakehouses and logs.")
def bench(sizes, engines, repeat, out, skip_latency, skip_sensor, seed, days, work_dir, keep) -> int:
    """Time the asset graph through Dagster against one plain PySpark job over the same data,
    compare their Gold tables, and measure Kafka ingestion, memory, the sensor tick and latency."""
    preflight.run_checks(
        [
            preflight.modules("bench", "psutil", "matplotlib"),
            preflight.settings_valid(local=True),
            preflight.java(),
            preflight.jvm_artifacts("spark", "kafka"),
        ]
    )
    from retail_assets.tooling.bench.report import summary, write_chart, write_json
    from retail_assets.tooling.bench.runner import run_bench

    out = Path(out).resolve()
    with Progress("bench", unit="parts measured") as progress:

        def echo(line: str) -> None:
            progress.line(line)
            progress.status(line.strip().split(" (log ")[0])

        def measured(partial: dict[str, object]) -> None:
            write_json(partial, out)  # what is measured so far survives an interrupted bench
            progress.advance()

        results = run_bench(
            list(sizes) or ["small"],
            work_dir=Path(work_dir) if work_dir else None,
            seed=seed,
            days=days,
            skip_latency=skip_latency,
            skip_sensor=skip_sensor,
            keep=keep,
            repeat=repeat,
            engines=tuple(dict.fromkeys(engines or settings.LOCAL_ENGINES)),
            echo=echo,
            progress=measured,
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


# ---- Databricks ---------------------------------------------------------------------------


def pipeline_principal_option():
    return click.option(
        "--pipeline-principal",
        envvar="RETAIL_DATABRICKS_PIPELINE_PRINCIPAL",
        show_envvar=True,
        help="Application id of the service principal the job clusters run as; unset: the account group {env}_retail_pipeline.",
    )


@click.command(
    short_help="Print the Unity Catalog GRANT statements of one environment.",
    epilog=example("retail-assets grants --env prod --catalog retail > grants.sql"),
)
@click.option("--env", required=True, help="Deployment environment, e.g. dev, staging, prod, pr_42.")
@click.option("--catalog", required=True, help="Unity Catalog catalog holding the {env}_{layer} schemas.")
@pipeline_principal_option()
def grants(env: str, catalog: str, pipeline_principal: str | None) -> int:
    """Print the Unity Catalog GRANT statements of one environment (SQL). The masks, row filter
    and partner share come with `retail-assets provision --dry-run`."""
    from retail_assets.lib.deployment.governance.grants import grants_sql
    from retail_assets.lib.deployment.governance.principals import Principals

    print(grants_sql(env, catalog, principals=Principals.for_env(env, pipeline_principal or "")), end="")
    return 0


@click.command(
    short_help="Create an environment's schemas, volumes, grants, masks, row filter and partner share.",
    epilog=example(
        "retail-assets provision --env pr_42 --catalog retail --dry-run",
        "retail-assets provision --env pr_42 --catalog retail --upload-wheel dist/retail_assets-0.1.0-py3-none-any.whl",
    ),
)
@click.option("--env", required=True, help="Deployment environment, e.g. prod or a branch deployment's pr_42.")
@click.option(
    "--catalog", required=True, help="Unity Catalog catalog holding the {env}_{layer} schemas (it must exist)."
)
@click.option(
    "--upload-wheel",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Project wheel to upload to /Volumes/{catalog}/{env}_bronze/artifacts/ once the volume exists.",
)
@click.option("--dry-run", is_flag=True, help="Print every step and its SQL; connect to nothing.")
@pipeline_principal_option()
@click.option(
    "--recipients",
    envvar="RETAIL_SHARE_RECIPIENTS",
    show_envvar=True,
    help="Delta Sharing recipients of {env}_partner_gold, comma-separated: NAME (open sharing) or NAME=<cloud>:<region>:<metastore uuid>; none: no recipient.",
)
def provision(
    env: str,
    catalog: str,
    upload_wheel: Path | None,
    dry_run: bool,
    pipeline_principal: str | None,
    recipients: str | None,
) -> int:
    """Provision one environment, branch deployments included, idempotently: its schemas, the
    landing and artifacts volumes, the project wheel, the grants, the column masks and row
    filter on Gold and the partner share. Each step prints what it ensures and its outcome
    (created, updated, unchanged, or pending until the table's first materialization).

    Runs with the workspace credentials of DATABRICKS_HOST and DATABRICKS_CLIENT_ID /
    DATABRICKS_CLIENT_SECRET (or DATABRICKS_TOKEN) as an administrator of the catalog; masks and
    the row filter go through the SQL warehouse RETAIL_DATABRICKS_WAREHOUSE_ID."""
    from retail_assets.lib.deployment import provisioning
    from retail_assets.lib.deployment.governance.principals import Principals
    from retail_assets.lib.deployment.governance.sharing import parse_recipients

    who = Principals.for_env(env, pipeline_principal or "")
    steps = provisioning.plan(
        env, catalog, principals=who, recipients=parse_recipients(recipients or ""), wheel=upload_wheel
    )
    width = len(str(len(steps)))
    print(f"provisioning {who.env} in catalog {catalog.lower()}: {len(steps)} steps; {who.pipeline_note}")
    if dry_run:
        for number, step in enumerate(steps, 1):
            print(f"[{number:>{width}}/{len(steps)}] {step.phase}: {step.description}")
            for statement in step.sql():
                print("    " + statement.replace("\n", "\n    "))
        print("dry run: nothing was changed")
        return 0
    preflight.run_checks([_workspace_configured()])
    import dagster as dg

    from retail_assets.lib.deployment.workspace import DatabricksWorkspaceResource

    numbers = {id(step): number for number, step in enumerate(steps, 1)}

    def show(step: provisioning.Step, outcome: provisioning.Outcome) -> None:
        print(f"[{numbers[id(step)]:>{width}}/{len(steps)}] {step.description} … {outcome}", flush=True)

    with dg.build_resources({"databricks": DatabricksWorkspaceResource.from_env()}) as resources:
        try:
            report = provisioning.apply(steps, resources.databricks, on_result=show)
        except provisioning.ProvisioningFailed as failed:
            print(
                f"[{numbers[id(failed.step)]:>{width}}/{len(steps)}] {failed.step.description} … FAILED",
                file=sys.stderr,
            )
            print(f"error: {failed.cause}", file=sys.stderr)
            print("the steps before it stay applied; fix the cause and run the same command again", file=sys.stderr)
            return 1
    counts = ", ".join(f"{n} {status}" for status, n in report.counts().items())
    print(f"done: {counts}")
    if report.pending:
        print(
            f"{len(report.pending)} pending until their tables exist: run this command (or the provision_environment job) again after the first materialization"
        )
    return 0


def _workspace_configured() -> preflight.Check:
    def check() -> None:
        from retail_assets.lib.deployment import workspace

        missing = [name for name in (workspace.HOST_ENV, workspace.WAREHOUSE_ENV) if not os.environ.get(name)]
        if not (
            os.environ.get(workspace.CLIENT_ID_ENV) and os.environ.get(workspace.CLIENT_SECRET_ENV)
        ) and not os.environ.get(workspace.TOKEN_ENV):
            missing.append(f"{workspace.CLIENT_ID_ENV} and {workspace.CLIENT_SECRET_ENV} (or {workspace.TOKEN_ENV})")
        if missing:
            raise preflight.Preflight(f"provisioning needs the workspace: set {', '.join(missing)} (or use --dry-run)")

    return check


COMMANDS = [demo, ui, generate, broker, produce, latency, bench, grants, provision]
