"""The operational database (`database`): Debian's PostgreSQL with the web shop's orders and the CRM."""

from __future__ import annotations

import time
from pathlib import Path

import click

from retail_assets.tooling.cli import preflight
from retail_assets.tooling.cli.commands.options import (
    DATABASE_PORT,
    PRESETS,
    _signals_unwind,
    data_root_option,
    example,
)


@click.command(
    short_help="Run the local PostgreSQL (online orders, CRM) in the foreground.",
    epilog=example(
        "retail-assets database",
        "retail-assets database --seed-week --preset tiny --port 55433 --data-root /tmp/retail",
    ),
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DATABASE_PORT,
    show_default=True,
    help="Loopback port of the database.",
)
@data_root_option("Its cluster goes to <data-root>/postgres and survives restarts.")
@click.option(
    "--seed-week",
    is_flag=True,
    help="Fill an empty database with the generated week of CRM and web-shop changes (schema `orders`).",
)
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    default="tiny",
    show_default=True,
    help="With --seed-week: the generator size whose products, stores and days the week uses (as `demo`'s).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="With --seed-week: the generator's seed.")
@click.option(
    "--days", type=click.IntRange(min=1), default=7, show_default=True, help="With --seed-week: business days."
)
def database(port: int, data_root: Path, seed_week: bool, preset: str, seed: int, days: int) -> int:
    """Run the local PostgreSQL (Debian's package) in the foreground until Ctrl-C: the database
    `retail` of the role `retail`, on loopback only, whose schema `orders` the project reads
    through JDBC."""
    root = Path(data_root).resolve()
    preflight.run_checks(
        [
            preflight.writable(root, "data root", "--data-root"),
            preflight.postgres(),
            preflight.port_free(port, "PostgreSQL", "--port"),
        ]
    )
    from retail_assets.tooling.database import LocalDatabase

    _signals_unwind()
    with LocalDatabase(port, data_dir=root / "postgres", log_path=root / "postgres.log") as running:
        if seed_week:
            print(_seed(running.dsn, preset, seed, days), flush=True)
        print(f"PostgreSQL on {running.dsn}, cluster in {running.cluster_dir}; Ctrl-C stops it", flush=True)
        print(f"JDBC: {running.jdbc_url}\nThe project reads it with:", flush=True)
        for name, value in running.env.items():
            print(f"  export {name}={value}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def _seed(dsn: str, preset: str, seed: int, days: int) -> str:
    import psycopg

    from retail_assets.tooling.generator import GeneratorConfig
    from retail_assets.tooling.generator.orders import OrdersConfig, seed_week

    with psycopg.connect(dsn) as conn:
        seeded = conn.execute("SELECT to_regclass('orders.customers') IS NOT NULL").fetchone()[0]
        if seeded and conn.execute("SELECT EXISTS (SELECT 1 FROM orders.customers)").fetchone()[0]:
            return "orders already holds rows: kept as they are (a fresh --data-root seeds anew)"
    config = OrdersConfig.from_generator(GeneratorConfig.preset(preset, seed=seed, days=days, web_store=True))
    marks = seed_week(dsn, config)
    return f"seeded {config.days} days from {config.start_date} ({preset}, seed {seed}): {marks[-1]} change records"
