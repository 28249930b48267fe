"""A week of generated data run through every stage job, in process: the simulation the pipeline
tests share. Each test module runs its own week once (module-scoped fixtures), so under
`pytest -n 2 --dist loadfile` the clean and the defect week run on different workers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow as pa

from retail_assets.lib.engine import DeltaRsEngine, DeltaSparkEngine, LakehouseEngine
from retail_assets.lib.registry.stages import STAGES
from retail_assets.lib.registry.tables import KAFKA_TOPIC, TABLES, TableSpec
from retail_assets.lib.settings import DB_PASSWORD_ENV, DB_URL_ENV, DB_USER_ENV, ENGINE_ENV
from retail_assets.tooling.broker import LocalBroker, ensure_topic, produce
from retail_assets.tooling.database import LocalDatabase
from retail_assets.tooling.generator import GenerationResult, GeneratorConfig, generate
from retail_assets.tooling.generator.orders import OrdersConfig, apply_day, install_schema
from retail_assets.tooling.main_job import RunSummary, days, run_stage, run_week

LATENESS = 2
DAYS = 3
START = dt.date(2026, 11, 2)


@dataclass
class Week:
    root: Path
    engine: LakehouseEngine
    generated: GenerationResult
    placed: dict[int, str]  # generator message index → Bronze `_source`
    summaries: list[RunSummary]
    defs: dg.Definitions
    instance: dg.DagsterInstance
    arrival_days: list[str]
    event_days: list[str]
    # every table before and after materializing one partition of every stage a second time
    before_rerun: dict[str, pa.Table] | None = None
    after_rerun: dict[str, pa.Table] | None = None
    engine_name: str = "delta_rs"
    database_dsn: str = ""  # the operational database the week's changes were made in


def build_defs(root: Path, bootstrap: str, mp, **env: str) -> dg.Definitions:
    """Definitions of the local environment over `root`; env vars stay set for the caller's scope."""
    mp.setenv("RETAIL_DATA_ROOT", str(root))
    mp.setenv("RETAIL_KAFKA_BOOTSTRAP", bootstrap)
    for name, value in env.items():
        mp.setenv(name, value)
    from retail_assets.definitions import build_definitions

    return build_definitions()


def rerun_one_partition_per_stage(week: Week) -> None:
    week.before_rerun = {spec.key: snapshot(week.engine, spec) for spec in TABLES}
    for stage in STAGES:
        partitions = stage.partitions(week.arrival_days, week.event_days)
        summary = run_stage(week.defs, stage, partitions[len(partitions) // 2], week.instance)
        assert summary.success and not summary.checks_failed, summary
    week.after_rerun = {spec.key: snapshot(week.engine, spec) for spec in TABLES}


# How each local engine is run, for the simulated weeks and the parity tests.
ENGINE_SETTINGS = ENGINE_ENV


def local_engine(name: str, root: Path, spark) -> LakehouseEngine:
    return (
        DeltaRsEngine(root / "lakehouse", spark=spark)
        if name == "delta_rs"
        else DeltaSparkEngine.local(root / "lakehouse", "dev", spark=spark)
    )


def run_simulated_week(
    root: Path,
    spark,
    *,
    defects: bool,
    monkeypatch,
    postgres: LocalDatabase,
    rerun: bool = False,
    n_days: int = DAYS,
    by_range: bool = True,
    engine: str = "delta_rs",
) -> Week:
    """The week's files, events and the operational database's changes (in a database of its own
    on the session's PostgreSQL), each made just before the day's ingestion runs."""
    config = GeneratorConfig.preset(
        "tiny", seed=11, days=n_days, start_date=START, defects=defects, lateness_days=LATENESS, web_store=True
    )
    generated = generate(config, root, overwrite=True)
    orders = OrdersConfig.from_generator(config)
    database = f"week_{root.name}".lower().replace("-", "_")
    postgres.create_database(database)
    with postgres.connect(database, autocommit=True) as conn:
        install_schema(conn)
    monkeypatch.setenv(DB_URL_ENV, postgres.jdbc_url.rsplit("/", 1)[0] + f"/{database}")
    monkeypatch.setenv(DB_USER_ENV, postgres.user)
    monkeypatch.setenv(DB_PASSWORD_ENV, postgres.password)

    def change_day(day: str) -> None:
        index = (dt.date.fromisoformat(day) - START).days
        if 0 <= index < orders.days:
            with postgres.connect(database, autocommit=True) as conn:
                apply_day(conn, orders, index)

    arrival_days = days(START, START + dt.timedelta(days=n_days - 1 + LATENESS))
    event_days = days(START, START + dt.timedelta(days=n_days - 1))
    placed: dict[int, str] = {}
    with LocalBroker() as broker:
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC)
        defs = build_defs(
            root, broker.bootstrap_servers, monkeypatch, RETAIL_LATENESS_DAYS=str(LATENESS), **ENGINE_SETTINGS[engine]
        )
        instance = dg.DagsterInstance.ephemeral()

        def produce_day(day: str) -> None:
            todays = [m for m in generated.kafka_messages if m.arrival_date.isoformat() == day]
            placed.update(produce(broker.bootstrap_servers, KAFKA_TOPIC, todays))

        summaries = run_week(
            defs,
            instance,
            arrival_days=arrival_days,
            event_days=event_days,
            before_ingest=produce_day,
            before_changes=change_day,
            echo=lambda _: None,
            by_range=by_range,
        )
        week = Week(
            root,
            local_engine(engine, root, spark),
            generated,
            placed,
            summaries,
            defs,
            instance,
            arrival_days,
            event_days,
            engine_name=engine,
            database_dsn=postgres.dsn_for(database),
        )
        if rerun:
            rerun_one_partition_per_stage(week)
    return week


def snapshot(engine: LakehouseEngine, spec: TableSpec) -> pa.Table:
    """Table content without run-specific columns, in a canonical order."""
    table = engine.read_arrow(spec)
    table = table.drop_columns([c for c in spec.volatile_columns if c in table.column_names])
    # lists as the registry types them (engines name a list's item field differently)
    table = table.cast(
        pa.schema(
            [
                pa.field(f.name, pa.list_(f.type.value_type), f.nullable) if pa.types.is_list(f.type) else f
                for f in table.schema
            ]
        )
    )
    return table.sort_by(
        [
            (c, "ascending")
            for c in table.column_names
            if not pa.types.is_binary(table.schema.field(c).type) and not pa.types.is_list(table.schema.field(c).type)
        ]
    )
