"""Fixtures shared by the whole suite: one Spark server, a fresh lakehouse per test."""

from __future__ import annotations

import contextlib
import gc
import os
import sys

import pytest

from retail_assets.lib.engine import DeltaRsEngine
from retail_assets.lib.engine.spark import REMOTE_ENV, get_spark
from retail_assets.lib.settings import ENGINE_ENV
from retail_assets.tooling.spark_server import SparkConnectServer

# Each test process (each xdist worker) computes on one Spark Connect server, as runs under
# `retail-assets ui` do; subprocesses a test starts (a killed run, `dagster dev` and its run
# workers, the CLI) inherit RETAIL_SPARK_REMOTE and attach to it instead of starting a JVM.
# RETAIL_TEST_SPARK=classic runs the suite on an in-process `local[2]` session instead.
_server: SparkConnectServer | None = None


def pytest_configure(config):
    global _server
    controller = getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput")
    if controller or os.environ.get(REMOTE_ENV) or os.environ.get("RETAIL_TEST_SPARK") == "classic":
        return
    _server = SparkConnectServer(master="local[2]")
    os.environ[REMOTE_ENV] = _server.start()


def pytest_unconfigure(config):
    global _server
    if _server is not None:
        close_connect_clients()
        os.environ.pop(REMOTE_ENV, None)
        _server.stop()
        _server = None


def close_connect_clients() -> None:
    """Close every Spark Connect client of this process, whichever thread opened it.

    pyspark gives each client an exit hook that sends the server one more command and, once the
    server is gone, retries it for about ten minutes before the interpreter may exit; a closed
    client skips the hook. The active session is per thread and a run's first Spark read is
    often an asset check's, on a pool thread that has ended since, so `getActiveSession` here
    misses it: the clients are found among the live objects instead.
    """
    core = sys.modules.get("pyspark.sql.connect.client.core")
    if core is None:  # nothing in this process attached to the server
        return
    for client in [o for o in gc.get_objects() if isinstance(o, core.SparkConnectClient)]:
        if client.is_closed:
            continue
        # One attempt: a session the server cannot release now goes with the server, next.
        client.set_retry_policies([])
        with contextlib.suppress(Exception):
            client.release_session()
        client.close()


# Longest modules first, so the two workers of `.ci/run` finish together: it hands whole
# modules out in collection order (`--no-loadscope-reorder`: xdist would otherwise order them by
# their number of tests), and a long module handed out last runs alone while the other worker
# idles. The longest, as measured on a fresh clone, by name; the rest by their marks.
LONGEST = (
    "test_pipeline.py",
    "test_readme.py",
    "e2e/test_dagster_ui.py",
    "defs/test_sensors.py",
    "reliability/test_security.py",
    "test_pipeline_clean.py",
    "e2e/test_streaming.py",
    "databricks/test_step_launcher.py",
    "defs/test_bronze_database.py",
    "reliability/test_crash_recovery.py",
    "defs/test_bronze_kafka.py",
)
LONG_FIRST = ("slow", "e2e", "reliability")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> tuple[int, int]:
        module = item.nodeid.split("::")[0].removeprefix("retail_assets_tests/")
        if module in LONGEST:
            return (0, LONGEST.index(module))
        marks = {m.name for m in item.iter_markers()}
        return (1, next((i for i, name in enumerate(LONG_FIRST) if name in marks), len(LONG_FIRST)))

    items.sort(key=rank)


@pytest.fixture(scope="session")
def spark():
    return get_spark(master="local[2]")


@pytest.fixture(params=["delta_rs", pytest.param("delta_spark", marks=pytest.mark.parity)])
def engine_name(request, monkeypatch) -> str:
    """Each local engine in turn (the delta-spark one marked `parity`): its variables set for the
    test's runs in this process and in the subprocesses it starts."""
    for name, value in ENGINE_ENV[request.param].items():
        monkeypatch.setenv(name, value)
    return request.param


@pytest.fixture(scope="module")
def monkeymodule():
    """`monkeypatch` for module-scoped fixtures (a simulated week's environment)."""
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture
def engine(spark, tmp_path):
    return DeltaRsEngine(tmp_path / "lakehouse", spark=spark)


@pytest.fixture(scope="session")
def kafka_broker():
    """One local Kafka broker (SPEC §8) on a free loopback port for the session.

    Its log lives in a private temporary folder; tests that need a clean log use their own topic name.
    """
    from retail_assets.tooling.broker import LocalBroker

    with LocalBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres():
    """One local PostgreSQL (Debian's package) on a free loopback port for the session, with the
    database `retail` of the role `retail`.

    Its cluster lives in a private temporary folder; tests that need an empty database create
    their own (`postgres.create_database(name)` returns its DSN).
    """
    from retail_assets.tooling.database import LocalDatabase

    database = LocalDatabase()
    with database:
        yield database
    database.close()
