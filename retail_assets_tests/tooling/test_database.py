"""The local operational database (Debian's PostgreSQL) and the generated week written to it."""

from __future__ import annotations

import collections
import os
import pwd
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from retail_assets.lib.sources.database import DatabaseUnavailable
from retail_assets.tooling.broker import free_port
from retail_assets.tooling.database import LocalDatabase, _unreachable_folder, postgres_bin_dir
from retail_assets.tooling.generator import GeneratorConfig
from retail_assets.tooling.generator.orders import (
    CRM_ID_DIGITS,
    ORDER_STATUSES,
    OrdersConfig,
    _world,
    apply_day,
    change_key,
    expected_changes,
    plan_week,
    seed_week,
    web_store_of,
)
from retail_assets.tooling.generator.world import World

CONFIG = OrdersConfig()


def changes(dsn: str) -> list[tuple[int, str, str, dict]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT change_id, table_name, op, row_data FROM orders.changes ORDER BY change_id"
        ).fetchall()


def by_day(rows: list[tuple], marks: list[int]) -> list[list[tuple[str, str, str]]]:
    """The change records between consecutive high-water marks, as (table, op, key)."""
    days, after = [], 0
    for upto in marks:
        days.append([(t, op, change_key(t, row)) for cid, t, op, row in rows if after < cid <= upto])
        after = upto
    return days


@pytest.fixture(scope="module")
def seeded(postgres):
    """Two databases seeded with the same config, and their change records."""
    out = {}
    for name in ("week_a", "week_b"):
        dsn = postgres.create_database(name)
        out[name] = (dsn, seed_week(dsn, CONFIG), changes(dsn))
    return out


def test_the_server_answers_over_tcp_as_the_retail_role(postgres):
    assert postgres.jdbc_url == f"jdbc:postgresql://127.0.0.1:{postgres.port}/retail"
    assert postgres.env["RETAIL_DB_JDBC_URL"] == postgres.jdbc_url and postgres.env["RETAIL_DB_USER"] == "retail"
    with psycopg.connect(postgres.dsn) as conn:
        user, db, addr, version = conn.execute(
            "SELECT current_user, current_database(), inet_server_addr()::text, current_setting('server_version_num')"
        ).fetchone()
    assert (user, db, addr) == ("retail", "retail", "127.0.0.1/32")
    assert int(version) // 10000 == int(postgres_bin_dir().parent.name)


def test_password_authentication_is_enforced(postgres):
    wrong = postgres.dsn.replace(f":{postgres.password}@", ":not-the-password@")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(host="127.0.0.1", port=postgres.port, user="retail", dbname="retail", password="")
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_restart_on_the_same_folder_keeps_the_data():
    first = LocalDatabase()
    with first:
        with first.connect() as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (42)")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(first.dsn, connect_timeout=2)
    # another server object on the folder the first one initialised: no new initdb, same rows
    initialised = (first.cluster_dir / "PG_VERSION").stat().st_mtime_ns
    second = LocalDatabase(data_dir=first.data_dir, password="an@other/pass:word")
    with second:
        with second.connect() as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]
        with pytest.raises(DatabaseUnavailable, match=f"another PostgreSQL .* is running on {second.cluster_dir}"):
            LocalDatabase(data_dir=first.data_dir).start()
    assert (first.cluster_dir / "PG_VERSION").stat().st_mtime_ns == initialised
    first.close()
    assert not first.data_dir.exists()


def test_a_busy_port_is_refused_before_anything_is_created(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        database = LocalDatabase(port, data_dir=tmp_path / "postgres")
        with pytest.raises(DatabaseUnavailable, match=f"port {port} on 127.0.0.1 is busy"):
            database.start()
    assert not database.cluster_dir.exists()


def test_missing_binaries_and_unreachable_folders_say_what_to_do(tmp_path):
    with pytest.raises(DatabaseUnavailable, match="apt-get install postgresql"):
        postgres_bin_dir(tmp_path)
    nobody = pwd.getpwnam("nobody")
    # pytest's own base folder may be private to this user: a folder every account can traverse
    with tempfile.TemporaryDirectory(prefix="retail-reach-") as base:
        os.chmod(base, 0o755)
        private = Path(base) / "private"
        (private / "below").mkdir(parents=True)
        private.chmod(0o700)
        assert _unreachable_folder(private / "below" / "pgdata", nobody.pw_uid, nobody.pw_gid) == private
        private.chmod(0o711)
        assert _unreachable_folder(private / "below" / "pgdata", nobody.pw_uid, nobody.pw_gid) is None


def test_every_day_inserts_updates_and_deletes_as_planned(seeded):
    dsn, marks, rows = seeded["week_a"]
    assert len(marks) == CONFIG.days and marks == sorted(marks) and marks[-1] == len(rows)
    days = by_day(rows, marks)
    assert days == expected_changes(CONFIG)
    for day in days:
        assert {op for _, op, _ in day} == {"I", "U", "D"}
    week = collections.Counter((t, op) for day in days for t, op, _ in day)
    for table in ("customers", "online_orders", "order_lines"):
        assert week[(table, "I")] and week[(table, "U")] and week[(table, "D")], (table, week)
    with psycopg.connect(dsn) as conn:
        counts = {
            t: conn.execute(f"SELECT count(*) FROM orders.{t}").fetchone()[0] for t in plan_week(CONFIG).final_counts
        }
        statuses = dict(conn.execute("SELECT status, count(*) FROM orders.online_orders GROUP BY 1").fetchall())
    assert counts == plan_week(CONFIG).final_counts
    assert set(statuses) == {"placed", "shipped", "delivered"}


def test_the_same_config_gives_the_same_rows_and_change_records(seeded, postgres):
    (_, marks_a, rows_a), (_, marks_b, rows_b) = seeded["week_a"], seeded["week_b"]
    assert marks_a == marks_b and rows_a == rows_b
    other = postgres.create_database("week_other_seed")
    seed_week(other, OrdersConfig(seed=CONFIG.seed + 1))
    assert changes(other) != rows_a
    with pytest.raises(ValueError, match="already holds rows"):
        seed_week(other, OrdersConfig(seed=CONFIG.seed + 1))
    with psycopg.connect(other) as conn, pytest.raises(ValueError, match="autocommit"):
        apply_day(conn, CONFIG, 0)


def test_the_week_follows_the_business(seeded):
    dsn, _, rows = seeded["week_a"]
    world = _world(CONFIG.world)
    products = {p.product_id: p for p in world.products}
    orders = {r["order_id"]: r for _, t, op, r in rows if t == "online_orders" and op == "I"}
    for index, day in enumerate(CONFIG.start_date + timedelta(days=d) for d in range(CONFIG.days)):
        placed = [o for o in orders.values() if o["order_id"][1:9] == day.strftime("%Y%m%d")]
        assert placed, index
        assert all(datetime.fromisoformat(o["ordered_at"]).astimezone(UTC).date() == day for o in placed)
    assert {o["payment_method"] for o in orders.values()} <= {"card", "mobile", "gift_card"}
    assert {o["store_id"] for o in orders.values()} == {web_store_of(world)}
    for _, t, op, line in rows:
        if t == "order_lines" and op == "I":
            ordered = datetime.fromisoformat(orders[line["order_id"]]["ordered_at"]).timestamp()
            assert Decimal(str(line["unit_price"])) == Decimal(products[line["product_id"]].price_at(int(ordered))[0])
            assert 1 <= line["line_number"] <= 4
    # a status only moves forward, and an erased customer's orders keep the customer_id
    seen: dict[str, str] = {}
    for _, t, op, r in rows:
        if t == "online_orders" and op in "IU":
            assert ORDER_STATUSES.index(r["status"]) >= ORDER_STATUSES.index(seen.get(r["order_id"], "placed"))
            seen[r["order_id"]] = r["status"]
    erased = {r["customer_id"] for _, t, op, r in rows if t == "customers" and op == "D"}
    cancelled = {r["order_id"] for _, t, op, r in rows if t == "online_orders" and op == "D"}
    theirs = {o: r["customer_id"] for o, r in orders.items() if r["customer_id"] in erased and o not in cancelled}
    with psycopg.connect(dsn) as conn:
        kept = dict(conn.execute("SELECT order_id, customer_id FROM orders.online_orders").fetchall())
        left = conn.execute("SELECT count(*) FROM orders.customers WHERE customer_id = ANY(%s)", (list(erased),))
        assert left.fetchone()[0] == 0
    assert theirs and {o: kept[o] for o in theirs} == theirs


@pytest.mark.parametrize("preset", ["tiny", "medium"])
def test_crm_customer_ids_never_meet_the_landing_zone_ids(preset):
    generator = GeneratorConfig.preset(preset, customers=2000) if preset == "medium" else GeneratorConfig.preset(preset)
    world = World(generator, random.Random(generator.seed))
    landing = {c.customer_id for c in world.customers} | {world.unknown_customer_id(k) for k in range(50)}
    config = OrdersConfig.from_generator(generator, customers=30, orders_per_day=4)
    crm = {key for day in expected_changes(config) for t, _, key in day if t == "customers"}
    assert crm and not crm & landing
    assert {len(c) for c in crm} == {1 + CRM_ID_DIGITS} and max(len(c) for c in landing) < 1 + CRM_ID_DIGITS
    assert config.web_store_id in {s.store_id for s in world.stores}


def test_the_cli_runs_the_database_and_seeds_its_week(capsys):
    from retail_assets.tooling.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["database", "--port", str(port), "--data-root", "unused"]) == 2
    assert f"port {port} (PostgreSQL) is already in use" in capsys.readouterr().err

    # a folder every account can traverse: the server runs as an unprivileged user under root
    with tempfile.TemporaryDirectory(prefix="retail-cli-") as root:
        os.chmod(root, 0o755)
        port = free_port()
        command = [str(Path(sys.executable).parent / "retail-assets"), "database", "--port", str(port)]
        process = subprocess.Popen(
            [*command, "--data-root", root, "--seed-week"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            lines = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any("RETAIL_DB_PASSWORD" in line for line in lines):
                line = process.stdout.readline()
                assert line, "".join(lines)
                lines.append(line)
            text = "".join(lines)
            assert f"export RETAIL_DB_JDBC_URL=jdbc:postgresql://127.0.0.1:{port}/retail" in text
            assert "seeded 7 days from 2026-11-01 (tiny, seed 7)" in text
            dsn = f"postgresql://retail:retail@127.0.0.1:{port}/retail"
            with psycopg.connect(dsn) as conn:
                assert conn.execute("SELECT count(*) FROM orders.changes").fetchone()[0] > 0
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 143
        assert (Path(root) / "postgres" / "pgdata" / "PG_VERSION").exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=2)
