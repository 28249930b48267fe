"""The operational database → Bronze exactly once, against a real PostgreSQL, Spark's JDBC source
and Delta on both local engines: inserts, updates and deletes land once, the high-water mark is
Bronze's own, a run killed before its commit leaves nothing, the fence keeps a change committed
late from falling behind the mark, and the sensor asks once per batch."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from retail_assets.defs.bronze.sensors import database_changes_sensor
from retail_assets.lib.engine import DeltaRsEngine, PartitionRange
from retail_assets.lib.engine.delta_spark import LOCAL_CATALOG
from retail_assets.lib.orchestration.resources import DatabaseResource, LakehouseResource
from retail_assets.lib.registry.tables import BRONZE_ORDERS_CHANGES
from retail_assets.lib.settings import deployment_env
from retail_assets.lib.sources import database as database_lib
from retail_assets.lib.transforms import quality
from retail_assets.tooling.generator.orders import OrdersConfig, apply_day, change_key, expected_changes, install_schema

DAY, NEXT_DAY = "2026-11-05", "2026-11-06"
KEY = dg.AssetKey(["bronze", "orders_changes"])
SPEC = BRONZE_ORDERS_CHANGES

# Runs the Bronze database asset for one partition in a separate process. With KILL_AT set, the
# process SIGKILLs itself just before or just after the Delta commit of the Bronze rows, on
# whichever engine RETAIL_LOCAL_ENGINE selects (as test_bronze_kafka's driver does).
DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    import dagster as dg
    import retail_assets.lib.engine.local as local
    from retail_assets.lib.engine.delta_spark import DeltaSparkEngine

    kill_at = os.environ.get("KILL_AT")
    real_write = local.write_deltalake

    def write(path, data, **kw):
        if "orders_changes" in str(path) and kill_at == "before_commit":
            os.kill(os.getpid(), signal.SIGKILL)  # the rows were read through JDBC into Arrow
        real_write(path, data, **kw)
        if "orders_changes" in str(path) and kill_at == "after_commit":
            os.kill(os.getpid(), signal.SIGKILL)

    local.write_deltalake = write
    real_save = DeltaSparkEngine._save

    def save(self, spec, frame, *args, **kw):
        if spec.name == "orders_changes" and kill_at == "before_commit":
            frame.count()  # the JDBC read is lazy: read the range first, then die before the commit
            os.kill(os.getpid(), signal.SIGKILL)
        real_save(self, spec, frame, *args, **kw)
        if spec.name == "orders_changes" and kill_at == "after_commit":
            os.kill(os.getpid(), signal.SIGKILL)

    DeltaSparkEngine._save = save
    from retail_assets.definitions import build_definitions

    job = build_definitions().resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        asset_selection=[dg.AssetKey(["bronze", "orders_changes"])],
        partition_key=sys.argv[1],
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    sys.exit(0 if result.success else 3)
    """
)


class Orders:
    """A database of its own on the session's PostgreSQL, with the business tables and capture."""

    def __init__(self, postgres, name: str, *, capture: bool = True) -> None:
        self.postgres, self.name = postgres, name
        postgres.create_database(name)
        self.jdbc_url = postgres.jdbc_url.rsplit("/", 1)[0] + f"/{name}"
        if capture:
            with self.connect() as conn:
                install_schema(conn)

    def connect(self, **kwargs):
        return self.postgres.connect(self.name, **{"autocommit": True, **kwargs})

    @property
    def env(self) -> dict[str, str]:
        return {**self.postgres.env, "RETAIL_DB_JDBC_URL": self.jdbc_url}

    def resource(self, **overrides) -> DatabaseResource:
        settings = {"jdbc_url": self.jdbc_url, "user": self.postgres.user, "password": self.postgres.password}
        return DatabaseResource(**{**settings, **overrides})

    def customers(self, *ids: str) -> None:
        with self.connect() as conn:
            for i in ids:
                conn.execute(
                    "INSERT INTO orders.customers (customer_id, first_name, email, updated_at) VALUES (%s, %s, %s, now())",
                    (i, f"First {i}", f"{i.lower()}@example.com"),
                )

    def changes(self) -> dict[int, tuple[str, str, dict]]:
        """change_id → (table, op, row) of every change the database recorded."""
        with self.connect() as conn:
            rows = conn.execute("SELECT change_id, table_name, op, row_data FROM orders.changes").fetchall()
        return {i: (t, op, row) for i, t, op, row in rows}


@pytest.fixture
def orders(postgres):
    return Orders(postgres, f"orders_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def lake(tmp_path, orders, monkeypatch, engine_name):
    monkeypatch.setenv("RETAIL_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("RETAIL_STEP_RETRIES", "0")
    for name, value in orders.env.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def materialize(day: str, **tags: str) -> dg.ExecuteInProcessResult:
    from retail_assets.definitions import build_definitions

    job = build_definitions().resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        asset_selection=[KEY], partition_key=day, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == KEY]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def bronze(root: Path, day: str | None = None) -> list[dict]:
    """Bronze's rows as delta-rs reads the table folder, whichever engine committed them."""
    table = DeltaRsEngine(root / "lakehouse").read_arrow(SPEC)
    if day is not None:
        table = table.filter(pc.equal(table["_arrival_date"], dt.date.fromisoformat(day)))
    return sorted(table.to_pylist(), key=lambda r: r["change_id"])


def start_driver(root: Path, env: dict[str, str], kill_at: str | None = None, day: str = DAY) -> subprocess.Popen:
    env = {**os.environ, **env, "RETAIL_DATA_ROOT": str(root), "KILL_AT": kill_at or ""}
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, day], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def run_driver(root: Path, env: dict[str, str], kill_at: str | None = None, *, exits: int = 0, day: str = DAY) -> str:
    """Runs DRIVER for `day`; it must end with `exits` (-SIGKILL for a kill). Returns its output."""
    driver = start_driver(root, env, kill_at, day)
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == exits, output[-3000:]
    return output


def test_inserts_updates_and_deletes_land_once(orders, lake, spark):
    orders.customers("C1", "C2")
    with orders.connect() as conn:
        conn.execute("INSERT INTO orders.online_orders VALUES ('O1', 'S-WEB', 'C1', now(), 'card', 'placed', now())")
        conn.execute("INSERT INTO orders.order_lines VALUES ('O1', 1, 'P1', 2, 3.50, 0), ('O1', 2, 'P2', 1, 9.99, 0.1)")
        conn.execute("UPDATE orders.customers SET loyalty_tier = 'gold', updated_at = now() WHERE customer_id = 'C2'")
        conn.execute("DELETE FROM orders.online_orders WHERE order_id = 'O1'")  # its lines go by the cascade
    recorded = orders.changes()
    assert len(recorded) == 9

    first = materialize(DAY)
    assert first.success
    rows = bronze(lake)
    assert [r["change_id"] for r in rows] == sorted(recorded)
    for r in rows:
        table, op, row = recorded[r["change_id"]]
        assert (r["table_name"], r["op"], json.loads(r["row_data"])) == (table, op, row)
        assert r["_source"] == f"postgresql:orders.changes/{r['change_id']}"
        assert json.loads(r["_raw_record"])["row_data"] == row and r["_parse_error"] is None
    deleted = {(r["table_name"], json.loads(r["row_data"]).get("line_number")) for r in rows if r["op"] == "D"}
    assert deleted == {("online_orders", None), ("order_lines", 1), ("order_lines", 2)}
    gone = next(json.loads(r["row_data"]) for r in rows if r["op"] == "D" and r["table_name"] == "online_orders")
    assert gone["order_id"] == "O1" and gone["customer_id"] == "C1"  # the deleted row itself, not just its key
    figures = metadata(first)
    assert figures["change_range"] == f"(0,{max(recorded)}]" and figures["changes"] == 9
    assert (figures["customers.I"], figures["customers.U"], figures["order_lines.D"]) == (2, 1, 2)
    checks = {e.check_name: e.passed for e in first.get_asset_check_evaluations()}
    assert checks[quality.EXACTLY_ONCE] and checks[quality.PRIMARY_KEY]

    # nothing new: the next day's run writes nothing, and Bronze is as it was
    idle = materialize(NEXT_DAY)
    assert idle.success and metadata(idle)["changes"] == 0 and metadata(idle)["change_range"] == "none"
    assert bronze(lake) == rows

    # new changes go to the newest day only; the past day re-reads exactly the range it holds
    orders.customers("C3")
    with orders.connect() as conn:
        conn.execute("DELETE FROM orders.customers WHERE customer_id = 'C1'")
    assert materialize(NEXT_DAY).success
    assert [(r["table_name"], r["op"]) for r in bronze(lake, NEXT_DAY)] == [("customers", "I"), ("customers", "D")]
    again = materialize(DAY)
    assert again.success and metadata(again)["fenced_max_change_id"].startswith("not fenced")
    held = bronze(lake)
    assert [r["change_id"] for r in held] == sorted(orders.changes())
    assert [r["_source"] for r in bronze(lake, DAY)] == [r["_source"] for r in rows]
    engine = DeltaRsEngine(lake / "lakehouse", spark=spark)
    assert quality.exactly_once(engine.read(SPEC), SPEC.partition_column).passed

    # a change held twice (a copy in another arrival day) is what the exactly-once check catches
    later = dt.date(2026, 11, 7)
    copy = engine.read_arrow(SPEC, PartitionRange.single(DAY)).slice(0, 1)
    copy = copy.set_column(copy.schema.get_field_index("_arrival_date"), "_arrival_date", pa.array([later]))
    engine.write(SPEC, copy, PartitionRange.single(later))
    caught = quality.exactly_once(engine.read(SPEC), SPEC.partition_column)
    assert not caught.passed and caught.metadata["split_across_partitions"] == 1


def test_the_high_water_mark_is_bronze_s_own(orders, lake, engine_name, spark):
    orders.customers("C1", "C2", "C3")
    assert materialize(DAY).success
    assert len(bronze(lake)) == 3
    orders.customers("C4")
    # Bronze's table goes (a new lakehouse): nothing else remembers what was read, so everything is read again
    if engine_name == "delta_spark":
        spark.sql(f"DROP TABLE IF EXISTS {SPEC.catalog_name(LOCAL_CATALOG, deployment_env())}")
    shutil.rmtree(lake / "lakehouse" / "bronze" / SPEC.name)
    reread = materialize(NEXT_DAY)
    assert reread.success
    assert metadata(reread)["high_water_mark_before"] == 0 and metadata(reread)["change_range"] == "(0,4]"
    assert [r["change_id"] for r in bronze(lake)] == [1, 2, 3, 4]


@pytest.mark.reliability
def test_a_week_of_changes_lands_once_across_runs_killed_before_and_after_their_commit(orders, lake):
    """The generator's week of CRM and web-shop changes, one arrival day after another; the run of
    day 2 is killed after reading and before its commit, the run of day 3 right after its commit.
    Each re-run takes what the killed run left: every change once, in the day it arrived."""
    config = OrdersConfig(days=4, customers=12, orders_per_day=4, start_date=dt.date(2026, 11, 2))
    env = orders.env
    kills = {1: "before_commit", 2: "after_commit"}
    for d in range(config.days):
        day = (config.start_date + dt.timedelta(days=d)).isoformat()
        with orders.connect() as conn:
            apply_day(conn, config, d)
        if d in kills:
            run_driver(lake, env, kills[d], exits=-signal.SIGKILL, day=day)
        if d == 1:
            assert bronze(lake, day) == []  # read, not committed: no trace
        assert materialize(day).success  # the day's run (the re-run after a kill), in this process

    held = bronze(lake)
    assert [r["change_id"] for r in held] == sorted(orders.changes())  # every change once
    for d, expected in enumerate(expected_changes(config)):
        day = (config.start_date + dt.timedelta(days=d)).isoformat()
        landed = [
            (r["table_name"], r["op"], change_key(r["table_name"], json.loads(r["row_data"])))
            for r in bronze(lake, day)
        ]
        assert landed == expected, day
    ops = {r["op"] for r in held}
    assert ops == {"I", "U", "D"}


@pytest.mark.reliability
def test_the_fence_waits_for_a_change_committed_late(orders, lake, monkeypatch):
    """A sequence hands out change_ids before commit: a change of an open transaction has a lower
    id than one committed after it. The run's fence waits for the open transaction, so its change
    is in this run, not behind the mark; a writer open longer than the lock timeout fails the run
    clearly, writing nothing, and the next run takes both."""
    orders.customers("C1")
    slow = orders.connect(autocommit=False)
    slow.execute(
        "INSERT INTO orders.customers (customer_id, updated_at) VALUES ('C-SLOW', now())"
    )  # change 2, uncommitted
    orders.customers("C-FAST")  # change 3, committed
    lockless = orders.resource().source_max()
    assert lockless == 3  # a mark taken without the fence would pass change 2 by

    monkeypatch.setenv("RETAIL_DB_LOCK_TIMEOUT_S", "1")
    failed = materialize(DAY)
    assert not failed.success
    error = next(e for e in failed.all_events if e.is_step_failure).step_failure_data.error
    assert "stayed open for more than 1s" in str(error.message) + str(error.cause)
    assert bronze(lake) == []

    driver = start_driver(lake, {**orders.env, "RETAIL_DB_LOCK_TIMEOUT_S": "120"})
    waited = time.monotonic() + 240
    while not waiting_for_lock(orders) and time.monotonic() < waited and driver.poll() is None:
        time.sleep(0.5)
    assert waiting_for_lock(orders), "the run's fence must wait for the open transaction"
    assert bronze(lake) == []
    slow.commit()
    slow.close()
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, output[-3000:]
    assert [(r["change_id"], json.loads(r["row_data"])["customer_id"]) for r in bronze(lake)] == [
        (1, "C1"),
        (2, "C-SLOW"),
        (3, "C-FAST"),
    ]


def waiting_for_lock(orders: Orders) -> bool:
    """Whether a session of the database waits for a lock (the run's fence, here)."""
    with orders.connect() as conn:
        return bool(
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", (orders.name,)
            ).fetchone()[0]
        )


def test_the_sensor_asks_once_per_batch_and_not_when_caught_up(orders, lake, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    resources = {
        "lakehouse": LakehouseResource(root=str(lake / "lakehouse"), landing_root=str(lake / "landing")),
        "database": orders.resource(),
        "databricks": dg.ResourceDefinition.none_resource(),
    }

    def tick(cursor=None):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        return database_changes_sensor(context), context.cursor

    caught_up, cursor = tick()
    assert isinstance(caught_up, dg.SkipReason) and "holds every change of orders.changes" in caught_up.skip_message

    orders.customers("C1", "C2")
    request, cursor = tick(cursor)
    assert isinstance(request, dg.RunRequest) and request.run_key == "database:orders.changes:(0,2]"
    assert request.asset_selection == [KEY] and request.partition_key == dt.datetime.now(dt.UTC).date().isoformat()

    # while its run is unfinished, nothing more is requested, even for newer changes
    run = instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/run_key": request.run_key, "dagster/sensor_name": "database_changes_sensor"},
            asset_selection=frozenset({KEY}),
        )
    )
    orders.customers("C3")
    waiting, cursor = tick(cursor)
    assert isinstance(waiting, dg.SkipReason) and f"waiting for run {run.run_id[:8]}" in waiting.skip_message
    instance.report_run_canceled(run)  # ended without committing: the batch is asked for again, under a new key
    retry, cursor = tick(cursor)
    assert isinstance(retry, dg.RunRequest) and retry.run_key.startswith("database:orders.changes:(0,3]")

    assert materialize(DAY).success
    done, cursor = tick(cursor)
    assert isinstance(done, dg.SkipReason) and "(up to change_id 3)" in done.skip_message
    orders.customers("C4")
    following, _ = tick(cursor)
    assert isinstance(following, dg.RunRequest) and following.run_key == "database:orders.changes:(3,4]"


def test_without_a_database_the_asset_fails_clearly_and_the_sensor_skips(tmp_path, monkeypatch):
    monkeypatch.setenv("RETAIL_DATA_ROOT", str(tmp_path))
    monkeypatch.delenv("RETAIL_DB_JDBC_URL", raising=False)
    failed = materialize(DAY)
    assert not failed.success
    error = next(e for e in failed.all_events if e.is_step_failure).step_failure_data.error
    assert "no operational database is configured: set RETAIL_DB_JDBC_URL" in error.message
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "lakehouse": LakehouseResource(root=str(tmp_path / "lakehouse"), landing_root=str(tmp_path / "landing")),
            "database": DatabaseResource(),
            "databricks": dg.ResourceDefinition.none_resource(),
        },
    )
    skipped = database_changes_sensor(context)
    assert isinstance(skipped, dg.SkipReason) and "RETAIL_DB_JDBC_URL is not set" in skipped.skip_message


def test_database_failures_are_told_apart(orders, postgres):
    with pytest.raises(database_lib.DatabaseRefused, match="refused the connection as 'retail'"):
        orders.resource(password="wrong").source_max()
    unreachable = DatabaseResource(
        jdbc_url="jdbc:postgresql://127.0.0.1:9/retail", user="retail", password="x", connect_timeout_s=2
    )
    with pytest.raises(database_lib.DatabaseUnavailable, match="cannot connect to jdbc:postgresql://127.0.0.1:9"):
        unreachable.source_max()
    bare = Orders(postgres, f"bare_{uuid.uuid4().hex[:8]}", capture=False)
    with pytest.raises(database_lib.CaptureNotInstalled, match="install change capture"):
        bare.resource().source_max()
    # installing capture again changes nothing: the same triggers, the same change table
    with orders.connect() as conn:
        database_lib.install_capture(conn)
        database_lib.install_capture(conn)
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'capture_change' AND NOT tgisinternal"
        ).fetchone()[0]
    assert triggers == 3
