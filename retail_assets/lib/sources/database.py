"""The operational database (PostgreSQL): change capture, the fence, and exact change_id ranges.

The contract (SPEC §5, docs/architecture.md): every change lands in Bronze once.
Row triggers on the business tables write every insert, update and delete to `<schema>.changes`,
one total order (`change_id`) over them. A run fences the table (`fence`: a SHARE lock waits for
every transaction still inserting into it, so every change_id at or below the max it then reads
is committed), then reads `(max change_id in committed Bronze, fenced max]` through Spark's JDBC
source and writes the rows in one Delta commit. A crash before the commit leaves no trace and
the re-run reads the same range (plus what arrived since); a crash after it moves the mark past
the range. The mark is read from Bronze, never kept anywhere else.

psycopg talks to the database for the small statements (the fence, counts, the sensor's max);
the rows themselves go through Spark (`load_changes`), on the executors, on both engines and on
Databricks alike.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg
    from pyspark.sql import DataFrame, SparkSession

CHANGE_TABLE = "changes"
CAPTURED_TABLES = ("customers", "online_orders", "order_lines")
# When a change happened: the transaction's `retail.change_time` where the writer states one (the
# generator replaying a simulated week sets it to the simulated moment), else the wall clock.
CHANGE_TIME_SETTING = "retail.change_time"
CHANGED_AT = f"coalesce(nullif(current_setting('{CHANGE_TIME_SETTING}', true), '')::timestamptz, clock_timestamp())"
OPS = ("I", "U", "D")
JDBC_DRIVER = "org.postgresql.Driver"
INSTALL_HINT = (
    "install change capture on the database as the schema's owner (`install_capture` of "
    "retail_assets.lib.sources.database; `retail-assets database --seed-week` installs it with the business tables)"
)


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached or did not answer in time (transient: retried)."""


class FenceTimeout(DatabaseUnavailable):
    """A transaction writing the change table stayed open longer than the fence waits."""


class DatabaseRefused(RuntimeError):
    """The database refused the project: credentials, database name or privileges (permanent)."""


class CaptureNotInstalled(RuntimeError):
    """The change table is missing: change capture was never installed on this database."""


class ChangesNotRetained(RuntimeError):
    """Changes Bronze holds are no longer in the change table, so their range cannot be re-read."""


class ChangesBehindBronze(RuntimeError):
    """The change table ends before changes Bronze already holds: it was recreated, and its new
    change_ids would repeat ingested ones."""


@dataclass(frozen=True, order=True)
class ChangeRange:
    """change_ids `(after, upto]`."""

    after: int
    upto: int

    @property
    def empty(self) -> bool:
        return self.upto <= self.after

    def predicate(self) -> str:
        return f"change_id > {int(self.after)} AND change_id <= {int(self.upto)}"

    def __str__(self) -> str:
        return f"({self.after},{self.upto}]"


def identifier(name: str) -> str:
    """A schema name as SQL (plain lowercase identifiers only: it is spliced into statements)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"schema name {name!r} must be a plain lowercase SQL identifier")
    return name


# ---------------------------------------------------------------------------------------------
# Change capture (installed on the source)
# ---------------------------------------------------------------------------------------------


def capture_ddl(schema: str = "orders") -> list[str]:
    """The change table, its trigger function and one AFTER row trigger per business table;
    every statement may run again (idempotent)."""
    s = identifier(schema)
    statements = [
        f"""CREATE TABLE IF NOT EXISTS {s}.{CHANGE_TABLE} (
            change_id  bigserial PRIMARY KEY,
            table_name text NOT NULL,
            op         char(1) NOT NULL CHECK (op IN ('I','U','D')),
            row_data   jsonb NOT NULL,
            changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
        )""",
        f"""CREATE OR REPLACE FUNCTION {s}.capture_change() RETURNS trigger
        LANGUAGE plpgsql AS $capture$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                INSERT INTO {s}.{CHANGE_TABLE} (table_name, op, row_data, changed_at)
                VALUES (TG_TABLE_NAME, 'D', to_jsonb(OLD), {CHANGED_AT});
                RETURN OLD;
            END IF;
            INSERT INTO {s}.{CHANGE_TABLE} (table_name, op, row_data, changed_at)
            VALUES (TG_TABLE_NAME, CASE TG_OP WHEN 'INSERT' THEN 'I' ELSE 'U' END, to_jsonb(NEW), {CHANGED_AT});
            RETURN NEW;
        END
        $capture$""",
    ]
    statements += [
        f"CREATE OR REPLACE TRIGGER capture_change AFTER INSERT OR UPDATE OR DELETE ON {s}.{table} "
        f"FOR EACH ROW EXECUTE FUNCTION {s}.capture_change()"
        for table in CAPTURED_TABLES
    ]
    return statements


def install_capture(conn: psycopg.Connection, schema: str = "orders") -> None:
    """Install (or re-install) change capture on the business tables of `schema`, in one
    transaction of `conn` (a savepoint of the caller's, if one is open)."""
    with conn.transaction():
        for statement in capture_ddl(schema):
            conn.execute(statement)


# ---------------------------------------------------------------------------------------------
# Connections and the statements psycopg runs
# ---------------------------------------------------------------------------------------------


def conninfo(jdbc_url: str) -> dict[str, str]:
    """libpq connection keywords of a `jdbc:postgresql://host[:port][,host[:port]…]/db[?…]` URL."""
    found = re.fullmatch(r"jdbc:postgresql://([^/?]+)/([^?]+)(?:\?(.*))?", jdbc_url.strip())
    if found is None:
        raise DatabaseRefused(f"{jdbc_url!r} is not a PostgreSQL JDBC URL (jdbc:postgresql://host:port/database)")
    hosts, ports = [], []
    for part in found.group(1).split(","):
        host, _, port = part.rpartition(":") if re.search(r":\d+$", part) else (part, "", "5432")
        hosts.append(host.strip("[]"))
        ports.append(port)
    info = {"host": ",".join(hosts), "port": ",".join(ports), "dbname": found.group(2)}
    for pair in (found.group(3) or "").split("&"):
        key, _, value = pair.partition("=")
        if key in ("sslmode", "sslrootcert"):
            info[key] = value
    return info


REFUSALS = re.compile(
    r"password authentication failed|authentication failed|no pg_hba\.conf entry|"
    r"role \S+ does not exist|database \S+ does not exist|permission denied|not a PostgreSQL JDBC URL",
    re.IGNORECASE,
)


@contextlib.contextmanager
def connect(
    jdbc_url: str, user: str, password: str, *, timeout_s: float = 10.0, statement_timeout_s: float | None = None
) -> Iterator[psycopg.Connection]:
    """A psycopg connection (autocommit) whose failures say what they are: `DatabaseRefused`
    (credentials, names, privileges: a person must act), `CaptureNotInstalled`, or
    `DatabaseUnavailable` (anything a retry can outlive)."""
    import psycopg  # noqa: PLC0415

    where = jdbc_url.split("?")[0]
    options = f"-c statement_timeout={int(statement_timeout_s * 1000)}" if statement_timeout_s else None
    try:
        conn = psycopg.connect(
            **conninfo(jdbc_url),
            user=user or None,
            password=password or None,
            connect_timeout=max(2, int(timeout_s)),
            autocommit=True,
            application_name="retail-assets",
            **({"options": options} if options else {}),
        )
    except psycopg.OperationalError as exc:
        if REFUSALS.search(str(exc)):
            raise DatabaseRefused(f"{where} refused the connection as {user!r}: {first_line(exc)}") from exc
        raise DatabaseUnavailable(f"cannot connect to {where}: {first_line(exc)}") from exc
    try:
        with conn:
            yield conn
    except psycopg.errors.UndefinedTable as exc:
        raise CaptureNotInstalled(f"{where} has no change table ({first_line(exc)}); {INSTALL_HINT}") from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DatabaseRefused(
            f"{user!r} may not read or lock the change table of {where} ({first_line(exc)}); grant it SELECT and "
            "UPDATE on the change table (UPDATE allows the SHARE lock of the fence), or connect as its owner"
        ) from exc
    except psycopg.errors.QueryCanceled as exc:
        raise DatabaseUnavailable(f"{where} did not answer in time: {first_line(exc)}") from exc
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"lost the connection to {where}: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def fence(conn: psycopg.Connection, schema: str, *, lock_timeout_s: float) -> int:
    """The highest change_id below which every change is committed (0 for an empty table).

    The SHARE lock waits for every transaction still inserting into the change table to end and
    holds new ones back until the max is read; a sequence hands out ids before commit, so
    without it a lower id committed later would fall behind the mark and be lost. A writer that
    keeps its transaction open longer than `lock_timeout_s` fails the fence (`FenceTimeout`)."""
    import psycopg  # noqa: PLC0415

    table = f"{identifier(schema)}.{CHANGE_TABLE}"
    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_s * 1000)}")
            conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
            return int(conn.execute(f"SELECT coalesce(max(change_id), 0) FROM {table}").fetchone()[0])
    except psycopg.errors.LockNotAvailable as exc:
        raise FenceTimeout(
            f"a transaction writing {table} stayed open for more than {lock_timeout_s:g}s, so the changes up to now "
            "cannot be told committed; nothing was read. The step is retried; if it keeps failing, look for a long "
            "transaction on the business tables (pg_stat_activity) or raise the database resource's lock_timeout_s"
        ) from exc


def source_max(conn: psycopg.Connection, schema: str) -> int:
    """The highest committed change_id now, without a lock (the sensor's cheap look: the run fences)."""
    table = f"{identifier(schema)}.{CHANGE_TABLE}"
    return int(conn.execute(f"SELECT coalesce(max(change_id), 0) FROM {table}").fetchone()[0])


def count_in(conn: psycopg.Connection, schema: str, changes: ChangeRange) -> int:
    table = f"{identifier(schema)}.{CHANGE_TABLE}"
    return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {changes.predicate()}").fetchone()[0])


def check_retained(conn: psycopg.Connection, schema: str, changes: ChangeRange, held: int) -> None:
    """`ChangesNotRetained` unless the change table still has every one of the `held` changes
    Bronze holds in the range (rows pruned from it cannot be re-read)."""
    there = count_in(conn, schema, changes)
    if there < held:
        raise ChangesNotRetained(
            f"{schema}.{CHANGE_TABLE} holds {there} changes in {changes}, Bronze {held}: changes were removed from the "
            "change table since they were ingested, so this partition cannot be re-read from the database; Bronze keeps "
            "what it holds"
        )


def check_not_behind(schema: str, fenced: int, committed: int) -> None:
    if fenced < committed:
        raise ChangesBehindBronze(
            f"{schema}.{CHANGE_TABLE} ends at change_id {fenced} but Bronze already holds changes up to {committed}: the "
            "change table was recreated (or this is another database), and its change_ids would repeat ingested ones, "
            "so nothing is read. Point RETAIL_DB_JDBC_URL at the database Bronze was read from, or use a fresh data root"
        )


# ---------------------------------------------------------------------------------------------
# The rows, through Spark's JDBC source
# ---------------------------------------------------------------------------------------------


def batch_query(schema: str, changes: ChangeRange) -> str:
    """The changes of the range with the whole change record as JSON text (`_raw_record`), its
    time in UTC whatever the session's time zone, so a re-read yields the same text."""
    table = f"{identifier(schema)}.{CHANGE_TABLE}"
    stamp = "to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    return (
        "SELECT change_id, table_name, op::text AS op, row_data::text AS row_data, changed_at, "
        f"json_build_object('change_id', change_id, 'table_name', table_name, 'op', op, 'row_data', row_data, "
        f"'changed_at', {stamp})::text AS _raw_record "
        f"FROM {table} WHERE {changes.predicate()}"
    )


def jdbc_options(
    jdbc_url: str,
    user: str,
    password: str,
    schema: str,
    changes: ChangeRange,
    *,
    fetch_size: int,
    connect_timeout_s: float,
    read_timeout_s: float,
    max_partitions: int = 1,
    rows_per_partition: int = 50_000,
) -> dict[str, str]:
    """Options of one bounded JDBC read of exactly `changes`: a subquery as `dbtable`, split on
    `change_id` into up to `max_partitions` reads when the range is large."""
    if changes.empty:
        raise ValueError(f"no change to read in {changes}")
    options = {
        "url": jdbc_url,
        "driver": JDBC_DRIVER,
        "user": user,
        "password": password,
        "dbtable": f"({batch_query(schema, changes)}) AS changes_batch",
        "fetchsize": str(fetch_size),
        "queryTimeout": str(int(read_timeout_s)),
        # pgjdbc's own bounds (seconds): an unreachable host or a stalled socket fails the read
        "connectTimeout": str(max(1, int(connect_timeout_s))),
        "socketTimeout": str(max(1, int(read_timeout_s))),
        "ApplicationName": "retail-assets",
    }
    partitions = min(max_partitions, (changes.upto - changes.after) // rows_per_partition + 1)
    if partitions > 1:
        options |= {
            "partitionColumn": "change_id",
            "lowerBound": str(changes.after + 1),
            "upperBound": str(changes.upto + 1),
            "numPartitions": str(partitions),
        }
    return options


def load_changes(spark: SparkSession, options: dict[str, Any]) -> DataFrame:
    """The changes of the range as a lazy DataFrame: `change_id, table_name, op, row_data,
    changed_at, _raw_record`. The fence makes the range immutable, so Spark may read it more
    than once (a write's retry, a second action) and gets the same rows each time."""
    return spark.read.format("jdbc").options(**options).load()
