"""The local instance's event log: the index database stays open, and nothing else changes."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from retail_assets.tooling import cli
from retail_assets.tooling.event_log import LocalEventLogStorage


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a", "b", "c"]))
def counted() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


@dg.asset_check(asset=counted)
def counted_has_rows() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return cli.dagster_home(tmp_path)


def index_connections(monkeypatch, home: Path) -> list[str]:
    """Every SQLite connection opened to the instance's index database from now on."""
    opened: list[str] = []
    connect = sqlite3.dbapi2.connect

    def counting(database, *args, **kwargs):
        if str(database).endswith("index.db"):
            opened.append(str(database))
        return connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3.dbapi2, "connect", counting)
    return opened


def test_the_index_is_opened_once_and_holds_every_event(home, monkeypatch):
    instance = dg.DagsterInstance.from_config(str(home))
    storage = instance.event_log_storage
    assert isinstance(storage, LocalEventLogStorage)
    # the folder Dagster's default storage uses: an instance keeps its history when it changes over
    assert Path(storage._base_dir) == home / "history" / "runs"

    opened = index_connections(monkeypatch, home)
    for partition in ("a", "b", "c"):
        assert dg.materialize([counted, counted_has_rows], partition_key=partition, instance=instance).success

    # Dagster's own storage opens two to four per asset or check event (here well over 20)
    assert 1 <= len(opened) <= 2
    # every event reached the index, and a second instance (another process's view) reads them
    reader = dg.DagsterInstance.from_config(str(home))
    records = reader.fetch_materializations(counted.key, limit=10).records
    assert sorted(r.partition_key for r in records) == ["a", "b", "c"]
    check_key = dg.AssetCheckKey(counted.key, "counted_has_rows")
    executions = reader.event_log_storage.get_asset_check_execution_history(check_key, limit=10)
    assert len(executions) == 3 and all(e.status.value == "SUCCEEDED" for e in executions)


def test_a_run_log_is_followed_live_from_another_instance(home):
    """The webserver follows a run by watching its database file: every event must reach that
    file when it is written, not at a later checkpoint."""
    writer, follower = dg.DagsterInstance.from_config(str(home)), dg.DagsterInstance.from_config(str(home))
    run_id = str(uuid.uuid4())
    received: list[str] = []
    follower.event_log_storage.watch(run_id, None, lambda entry, _cursor: received.append(entry.user_message))
    try:
        for n in range(3):
            writer.event_log_storage.store_event(
                dg.EventLogEntry(
                    error_info=None, level="INFO", user_message=f"event {n}", run_id=run_id, timestamp=time.time()
                )
            )
            deadline = time.monotonic() + 10
            while len(received) <= n and time.monotonic() < deadline:
                time.sleep(0.05)
            assert received == [f"event {i}" for i in range(n + 1)]
        assert not Path(writer.event_log_storage.path_for_shard(run_id) + "-wal").exists()
    finally:
        follower.event_log_storage.dispose()
        writer.dispose()


def test_an_instance_created_before_is_given_the_storage_and_keeps_its_settings(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nconcurrency:\n  runs:\n    max_concurrent_runs: 7\n"
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    cli.dagster_home(tmp_path)
    instance = dg.DagsterInstance.from_config(str(home))
    assert isinstance(instance.event_log_storage, LocalEventLogStorage)
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 7

    assert instance.run_retries_enabled  # run retries added too

    # a storage and run retries the user chose are left alone, and the file is not touched twice
    chosen = "storage:\n  sqlite:\n    base_dir: " + str(home) + "\nrun_retries:\n  enabled: false\n"
    (home / "dagster.yaml").write_text(chosen)
    cli.dagster_home(tmp_path)
    cli.dagster_home(tmp_path)
    assert (home / "dagster.yaml").read_text() == chosen
    assert type(dg.DagsterInstance.from_config(str(home)).event_log_storage).__name__ == "SqliteEventLogStorage"


def _read_from_child(storage: LocalEventLogStorage) -> None:
    inherited = storage._index_engine
    found = len(storage.fetch_materializations(counted.key, limit=10).records)
    # the child read through a connection of its own, and left the parent's alone
    os._exit(0 if found == 1 and storage._index_engine is not inherited and storage._inherited == [inherited] else 3)


def test_a_forked_process_opens_its_own_index_connection(home):
    instance = dg.DagsterInstance.from_config(str(home))
    assert dg.materialize([counted, counted_has_rows], partition_key="a", instance=instance).success
    storage = instance.event_log_storage
    parent = storage._index_engine
    assert parent is not None

    child = multiprocessing.get_context("fork").Process(target=_read_from_child, args=(storage,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    # the parent's connection still works
    assert storage._index_engine is parent
    assert dg.materialize([counted, counted_has_rows], partition_key="b", instance=instance).success
    assert sorted(r.partition_key for r in instance.fetch_materializations(counted.key, limit=10).records) == ["a", "b"]


def test_the_storage_was_written_for_this_dagster_and_its_private_internals_are_still_there():
    """The storage overrides private methods of Dagster's SQLite event log: a Dagster it was not
    written for fails here, loudly, instead of misbehaving at run time."""
    import inspect

    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    from retail_assets.tooling import event_log

    assert dg.__version__.startswith(event_log.WRITTEN_FOR_DAGSTER + "."), (
        f"tooling/event_log.py was written for Dagster {event_log.WRITTEN_FOR_DAGSTER}, this is {dg.__version__}: "
        "read SqliteEventLogStorage's _connect/_initdb/has_table again, re-measure the medium bench with and "
        "without the storage, then update WRITTEN_FOR_DAGSTER"
    )
    assert list(inspect.signature(SqliteEventLogStorage._connect).parameters) == ["self", "shard"]
    assert list(inspect.signature(SqliteEventLogStorage._initdb).parameters)[:2] == ["self", "engine"]
    assert list(inspect.signature(SqliteEventLogStorage.has_table).parameters) == ["self", "table_name"]
    init = inspect.getsource(SqliteEventLogStorage.__init__)
    assert "_initialized_dbs" in init and "_db_lock" in init
