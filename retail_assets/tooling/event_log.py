"""The local instance's event log: Dagster's SQLite event log, with its index database kept open.

Dagster's SQLite event log opens a new connection for every read and write. A run's events go
to the run's own database, and asset and check events are mirrored in the shared index
database, which needs two or three more connections. A check evaluation costs about 8 ms this
way. A range run of a stage writes one evaluation per check and day, about 700 in a week's run.

`LocalEventLogStorage` is that storage, with one connection to the index database kept open
per process:
- The connection runs in WAL mode, as Dagster sets it, with `synchronous=NORMAL`. A power cut
  may lose the last commits but never corrupts the file. An interrupted process loses nothing.
  The index mirrors the run databases, and `dagster instance reindex` rebuilds it.
- It is used under the storage's own lock, one thread at a time, as Dagster's connections are.
- A process forked from one that holds it opens its own (an SQLite connection must not
  cross a fork).

The run databases keep Dagster's connection per use. The webserver follows a run's log by
watching the run's database file. A connection kept open would leave new events in the
write-ahead log until a checkpoint, and the UI would stop updating.

`retail-assets` writes it into the `dagster.yaml` of the instances it creates
(`instance_config`). `dagster dev`, the daemon and every run worker of that instance then use
it; each process keeps its own connection.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool, StaticPool

# Where Dagster's default SQLite storage keeps the event log, under the instance's home.
EVENT_LOG_DIR = ("history", "runs")


# The Dagster minor version whose private SQLite storage internals this module overrides
# (`_connect`, `_initdb`, `_initialized_dbs`, `_db_lock`, `has_table`); `test_event_log.py`
# fails on any other until they are read again.
WRITTEN_FOR_DAGSTER = "1.13"


def instance_config(home: Path) -> str:
    """The `dagster.yaml` block that makes an instance at `home` use this storage, in the folder
    Dagster's default storage uses (an instance keeps its history when it changes over)."""
    return (
        "# Dagster's SQLite event log, with the index database kept open (retail_assets/tooling/event_log.py).\n"
        "event_log_storage:\n"
        f"  module: {__name__}\n"
        f"  class: {LocalEventLogStorage.__name__}\n"
        "  config:\n"
        f"    base_dir: {home.joinpath(*EVENT_LOG_DIR)}\n"
    )


def _synchronous_normal(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


class LocalEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with one open connection to its index database per process."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._index_engine: Engine | None = None
        self._index_pid: int | None = None
        # engines a forked child inherited: never used, never closed (the parent owns them)
        self._inherited: list[Engine] = []
        self._tables_seen: set[str] = set()
        super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"base_dir": StringSource}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> LocalEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _index(self) -> Engine:
        if self._index_engine is not None and self._index_pid == os.getpid():
            return self._index_engine
        if self._index_engine is not None:
            self._inherited.append(self._index_engine)
        engine = create_engine(
            self.conn_string_for_shard(INDEX_SHARD_NAME),
            poolclass=StaticPool,
            # Used by one thread at a time, under `_db_lock`, but not always the thread that opened it.
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        event.listen(engine, "connect", _synchronous_normal)
        self._index_engine, self._index_pid = engine, os.getpid()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        if shard != INDEX_SHARD_NAME:
            with super()._connect(shard) as conn:
                yield conn
            return
        with self._db_lock:
            if shard not in self._initialized_dbs:
                # Creating or migrating the schema goes through a connection of its own, as in Dagster.
                init = create_engine(
                    self.conn_string_for_shard(shard),
                    poolclass=NullPool,
                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                )
                self._initdb(init)
                init.dispose()
                self._initialized_dbs.add(shard)
            with self._index().connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        # Asked on every check evaluation. Migrations only add tables: once seen, one stays.
        if table_name not in self._tables_seen and super().has_table(table_name):
            self._tables_seen.add(table_name)
        return table_name in self._tables_seen

    def dispose(self) -> None:
        super().dispose()
        with self._db_lock:
            if self._index_engine is not None and self._index_pid == os.getpid():
                self._index_engine.dispose()
            self._index_engine = None
