"""The first hour: the main job on a generated week (`demo`), the UI beside its broker and Spark
Connect server (`ui`), and the synthetic data alone (`generate`)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

import click

from retail_assets.lib import settings
from retail_assets.tooling.cli import preflight
from retail_assets.tooling.cli.commands.options import (
    DATABASE_PORT,
    GENERATED,
    KAFKA_PORT,
    PRESETS,
    WEBSERVER_PORT,
    _ctrl_c_delivered,
    _port_argument,
    data_root_option,
    example,
)
from retail_assets.tooling.cli.instance import dagster_home
from retail_assets.tooling.cli.progress import Progress, step_counter


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
    every partition through Dagster, Kafka events produced day by day to a local broker, and the
    web shop's and CRM's changes made day by day in a local PostgreSQL.

    The runs land in the data root's Dagster instance: open them afterwards with
    `retail-assets ui`."""
    root = Path(data_root).resolve()
    preflight.run_checks(
        [
            preflight.settings_valid(local=True),
            preflight.writable(root, "data root", "--data-root"),
            preflight.java(),
            preflight.jvm_artifacts("spark", "kafka"),
            preflight.postgres(),
        ]
    )
    _replace_generated(root, force)

    import dagster as dg

    from retail_assets.lib.registry.tables import KAFKA_TOPIC
    from retail_assets.tooling.broker import LocalBroker, ensure_topic, produce
    from retail_assets.tooling.database import orders_database
    from retail_assets.tooling.generator import GeneratorConfig, generate
    from retail_assets.tooling.generator.orders import OrdersConfig, apply_day
    from retail_assets.tooling.main_job import days as day_range
    from retail_assets.tooling.main_job import planned_runs, reset_data_root, run_week
    from retail_assets.tooling.summary import gold_summary

    home = dagster_home(root)
    os.environ["RETAIL_DATA_ROOT"] = str(root)
    started = time.monotonic()
    print(f"retail-assets main job\n  data root      {root}\n  DAGSTER_HOME   {home}", flush=True)
    reset_data_root(root)
    overrides = {
        "seed": seed,
        "days": days,
        "defects": not clean,
        "lateness_days": settings.lateness_days(),
        "web_store": True,  # the store the web shop's orders name
    }
    if start_date:
        overrides["start_date"] = start_date.date()
    config = GeneratorConfig.preset(preset, **overrides)
    first_event, last_event = config.start_date, config.end_date
    arrival_days = day_range(first_event, last_event + dt.timedelta(days=settings.lateness_days()))
    event_days = day_range(first_event, last_event)

    with Progress("demo") as progress:
        progress.status(f"generating {preset}, {days} days")
        generated = generate(config, root, overwrite=True)
        counts = ", ".join(f"{k}={v}" for k, v in sorted(generated.counts.items()))
        progress.line(f"  generated      {counts}; {len(generated.manifest)} injected defects")
        by_day: dict[str, list] = defaultdict(list)
        for message in generated.kafka_messages:
            by_day[dt.datetime.fromtimestamp(message.timestamp_ms / 1000, dt.UTC).date().isoformat()].append(message)

        progress.status("starting the Kafka broker and PostgreSQL")
        with (
            LocalBroker(data_dir=root / "kafka", log_path=root / "broker.log") as broker,
            orders_database(root) as database,
        ):
            os.environ["RETAIL_KAFKA_BOOTSTRAP"] = broker.bootstrap_servers
            ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC)
            progress.line(f"  kafka broker   {broker.bootstrap_servers} (topic {KAFKA_TOPIC})")
            orders = OrdersConfig.from_generator(config)
            progress.line(f"  postgresql     {database.jdbc_url} (schema orders, changes captured)")
            progress.status("loading the definitions")
            from retail_assets.definitions import build_definitions

            defs = build_definitions()
            progress.total = len(planned_runs(defs, arrival_days, event_days))
            instance = dg.DagsterInstance.get()

            def produce_day(day: str) -> None:
                sent = produce(broker.bootstrap_servers, KAFKA_TOPIC, by_day.pop(day, []))
                if sent:
                    progress.line(f"  kafka          produced {len(sent)} events that arrive on {day}")

            def change_day(day: str) -> None:
                index = (dt.date.fromisoformat(day) - config.start_date).days
                if 0 <= index < orders.days:
                    with database.connect(autocommit=True) as conn:
                        apply_day(conn, orders, index)
                    progress.line(f"  postgresql     the web shop's and the CRM's changes of {day}")

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
                before_changes=change_day,
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
    pages = sorted((root / "reports" / "kpi").glob("*/index.html"))
    if pages:
        print(f"\nKPI report ({len(pages)} business days), the newest: {pages[-1]}")
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
    "--database-port",
    type=click.IntRange(1, 65535),
    default=DATABASE_PORT,
    show_default=True,
    help="Loopback port of the local PostgreSQL started beside the UI (none when RETAIL_DB_JDBC_URL names a database).",
)
@click.option(
    "--no-database",
    is_flag=True,
    help="Start no local PostgreSQL: the database stage, asset and sensor say there is none (unless RETAIL_DB_JDBC_URL names one).",
)
@click.option(
    "--spark-per-run",
    is_flag=True,
    help="Each run starts its own Spark JVM instead of sharing one Spark Connect server.",
)
@click.argument("dagster_dev_args", nargs=-1, type=click.UNPROCESSED)
def ui(
    data_root: Path,
    kafka_port: int,
    database_port: int,
    no_database: bool,
    spark_per_run: bool,
    dagster_dev_args: tuple[str, ...],
) -> int:
    """Open the project in `dagster dev` (webserver and daemon, sensors running) on the data
    root's instance, with the local Kafka broker, the local PostgreSQL (the operational database,
    its `orders` schema and change capture installed) and one Spark Connect server beside it for
    as long as it runs. Arguments after `--` go to `dagster dev`."""
    import contextlib
    import subprocess

    _ctrl_c_delivered()  # `dagster dev` then starts with Ctrl-C delivered too
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
            *(
                []
                if settings.database_configured() or no_database
                else [preflight.postgres(), preflight.port_free(database_port, "PostgreSQL", "--database-port")]
            ),
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
        if settings.database_configured():
            print(f"operational database: {os.environ[settings.DB_URL_ENV]}", flush=True)
        elif no_database:
            print("no operational database (--no-database)", flush=True)
        else:
            from retail_assets.tooling.database import orders_database

            database = stack.enter_context(orders_database(root, database_port))
            print(f"postgresql on {database.jdbc_url} (user {database.user}, schema orders)", flush=True)
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
