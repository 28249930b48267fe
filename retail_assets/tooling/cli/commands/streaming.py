"""The broker and the live stream (`broker`, `produce`), and what is measured (`latency`, `bench`)."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import click

from retail_assets.lib import settings
from retail_assets.tooling.cli import preflight
from retail_assets.tooling.cli.commands.options import KAFKA_PORT, PRESETS, _signals_unwind, data_root_option, example
from retail_assets.tooling.cli.progress import Progress


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

    _signals_unwind()
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
    report how long each took to reach `gold.fact_sales` (p50, p95) and where the seconds went
    (Kafka sensor, run queue, launch, steps, visibility: p50/p95 per phase across batches, from
    the instance's records of the stream-lane runs). `--out` also holds each batch's phases."""
    preflight.run_checks(
        [preflight.settings_valid(local=True), preflight.java(), preflight.jvm_artifacts("spark", "kafka")]
    )
    from retail_assets.tooling.latency import measure_latency

    _signals_unwind()
    figures = measure_latency(batches=batches, events_per_batch=events, interval_s=interval)
    # the breakdown was printed as a table above; `--out` keeps it whole
    shown = {k: v for k, v in figures.items() if k not in ("latency_samples_s", "latency_breakdown")}
    print(json.dumps(shown, indent=2))
    if out:
        Path(out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["latency_batches_seen"] == figures["latency_batches"] else 1


@click.command(
    short_help="Time the asset graph against a plain PySpark job.",
    epilog=example(
        "retail-assets bench --size small --skip-latency",
        "retail-assets bench --size small --size medium --engine delta_rs --repeat 3 --out results.json",
        "retail-assets bench --size small --history 8,60 --repeat 3 --out history.json",
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
@click.option(
    "--skip-backfill",
    is_flag=True,
    help="Skip the second pipeline path: the graph as UI backfills through dagster dev.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the workloads.")
@click.option("--days", type=click.IntRange(min=1), help="Business days of the workload (default: the size's).")
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where workloads and lakehouses go (default: a temporary folder).",
)
@click.option("--keep", is_flag=True, help="Keep the workloads, lakehouses and logs.")
@click.option(
    "--history",
    metavar="N1,N2",
    help="Instead: time one more day's run after N1 and after N2 days of history (history_growth_ratio, "
    "each stage's seconds); one engine, the first given (default delta_rs).",
)
def bench(
    sizes, engines, repeat, out, skip_latency, skip_sensor, skip_backfill, seed, days, work_dir, keep, history
) -> int:
    """Time the asset graph through Dagster against one plain PySpark job over the same data,
    compare their Gold tables, and measure Kafka ingestion, memory, the sensor tick and latency.
    With --history, measure instead how one more day's run grows with the days behind it."""
    if history is not None and days is not None:
        raise click.UsageError("--days does not go with --history: each history has N+1 days")
    preflight.run_checks(
        [
            preflight.modules("bench", "psutil", "matplotlib"),
            preflight.settings_valid(local=True),
            preflight.java(),
            preflight.jvm_artifacts("spark", "kafka"),
        ]
    )
    from retail_assets.tooling.bench.history import parse_history
    from retail_assets.tooling.bench.report import summary, write_chart, write_json
    from retail_assets.tooling.bench.runner import run_bench

    engines = tuple(dict.fromkeys(engines or settings.LOCAL_ENGINES))
    if history is not None:
        try:
            history = parse_history(history)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--history") from None
        engines = engines[:1]

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
            skip_backfill=skip_backfill,
            keep=keep,
            repeat=repeat,
            engines=engines,
            history=history,
            echo=echo,
            progress=measured,
        )
    write_json(results, out)
    chart = out.with_suffix(".png")
    write_chart(results, chart)
    print(summary(results))
    print(f"wrote {out} and {chart}")
    if not results.get("gold_equal", True):
        print("Gold differs between the pipeline and the baseline (see gold_tables above)", file=sys.stderr)
        return 1
    failing = [
        h
        for e in results.get("history", [])
        for h in e["histories"]
        if h["history_failed_runs"] + h["new_day_failed_runs"]
    ]
    if failing:
        print("runs failed in the history benchmark (see above); its times are not a daily run's", file=sys.stderr)
        return 1
    return 0
