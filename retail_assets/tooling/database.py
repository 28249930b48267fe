"""The local operational database (SPEC §2, docs/architecture.md): Debian's PostgreSQL
in a process of its own, listening on loopback only, with the database `retail` owned by the
role `retail` (password authentication over TCP).

Its cluster lives on disk in `data_dir` (the CLI's `<data root>/postgres`), so a database restarted
on the same folder keeps its rows and its change table. PostgreSQL refuses to run as root: under
root the cluster belongs to, and the server runs as, the `postgres` system user of Debian's
package (else `nobody`). The server's unix socket goes to a private folder, never /var/run, and
serves only the administrative connection that creates the role and the database.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from retail_assets.lib.sources.database import DatabaseUnavailable
from retail_assets.tooling.broker import free_port, log_tail, port_is_free

HOST = "127.0.0.1"
DATABASE = "retail"
USER = "retail"
PASSWORD = "retail"  # a development database on loopback; `LocalDatabase(password=...)` sets another
SUPERUSER = "postgres"  # the cluster's bootstrap role, reachable only through the private socket
DEBIAN_BIN = Path("/usr/lib/postgresql")
INSTALL_HINT = "install Debian's PostgreSQL: apt-get install postgresql"
STOP_TIMEOUT_S = 30.0

# The socket folder is private (0700), so the bootstrap role needs no password there; over TCP
# every role authenticates with its password.
PG_HBA = """\
local all all trust
host all all 127.0.0.1/32 scram-sha-256
"""


def postgres_bin_dir(root: Path = DEBIAN_BIN) -> Path:
    """`/usr/lib/postgresql/<major>/bin` of the newest major version installed with all three binaries."""
    found = []
    for candidate in root.glob("*/bin") if root.is_dir() else []:
        major = candidate.parent.name
        if major.isdigit() and all((candidate / b).is_file() for b in ("initdb", "pg_ctl", "postgres")):
            found.append((int(major), candidate))
    if not found:
        raise DatabaseUnavailable(f"no PostgreSQL binaries under {root}/<version>/bin: {INSTALL_HINT}")
    return max(found)[1]


def _server_account() -> tuple[int, int] | None:
    """The (uid, gid) the server runs as when this process is root; None to run as this user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise DatabaseUnavailable(
        f"PostgreSQL refuses to run as root and neither a `postgres` nor a `nobody` user exists: {INSTALL_HINT}"
    )


def _unreachable_folder(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder above `path` the account cannot traverse (None when it reaches `path`)."""
    groups = {gid, *(g.gr_gid for g in grp.getgrall() if pwd.getpwuid(uid).pw_name in g.gr_mem)}
    for folder in reversed(path.parents):
        st = folder.stat()
        if not (
            st.st_mode & 0o001
            or (st.st_uid == uid and st.st_mode & 0o100)
            or (st.st_gid in groups and st.st_mode & 0o010)
        ):
            return folder
    return None


def _running_pid(pid_file: Path) -> int | None:
    """The process id in PostgreSQL's `postmaster.pid` if that process is alive."""
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, and another user's
    return pid


def _terminate(process: subprocess.Popen, timeout: float) -> None:
    """SIGINT is PostgreSQL's fast shutdown (clients disconnected, a checkpoint written); then
    SIGQUIT (immediate shutdown, recovered at the next start), then SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout if sig == signal.SIGINT else 5.0)
        except subprocess.TimeoutExpired:
            continue


def _discard(running: list[subprocess.Popen], private: list[tempfile.TemporaryDirectory]) -> None:
    """Stop what a discarded (or never stopped) database left running, then remove its private folders."""
    for process in running:
        _terminate(process, 5.0)
    running.clear()
    for folder in private:
        folder.cleanup()


class LocalDatabase:
    """Start and stop one PostgreSQL server; usable as a context manager (which stops it, keeping its data).

    Without `data_dir` the cluster goes to a private temporary folder that survives `stop()` and
    `start()` and is removed by `close()` or when the object is discarded. The port stays the same
    across restarts of one object, so clients configured with it reconnect after an outage.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        data_dir: Path | None = None,
        log_path: Path | None = None,
        password: str = PASSWORD,
        bin_dir: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.user = USER
        self.password = password
        self.database = DATABASE
        self.bin_dir = bin_dir
        self._private: list[tempfile.TemporaryDirectory] = []
        if data_dir is None:
            self._private.append(tempfile.TemporaryDirectory(prefix="retail-postgres-"))
        self.data_dir = Path(data_dir or self._private[0].name).resolve()
        self.log_path = Path(log_path) if log_path else self.data_dir / "postgres.log"
        self.socket_dir: Path | None = None
        self._process: subprocess.Popen | None = None
        self._running: list[subprocess.Popen] = []
        self._discard = weakref.finalize(self, _discard, self._running, self._private)

    @property
    def cluster_dir(self) -> Path:
        """PostgreSQL's own data directory (PGDATA), owned by the account the server runs as."""
        return self.data_dir / "pgdata"

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.database)

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{HOST}:{self.port}/{self.database}"

    def dsn_for(self, database: str) -> str:
        """The libpq URL of another database of this server, as the role `retail`."""
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"postgresql://{credentials}@{HOST}:{self.port}/{quote(database, safe='')}"

    @property
    def env(self) -> dict[str, str]:
        """The settings a user exports so the project's database source reads this server."""
        return {"RETAIL_DB_JDBC_URL": self.jdbc_url, "RETAIL_DB_USER": self.user, "RETAIL_DB_PASSWORD": self.password}

    def start(self, timeout: float = 60.0) -> str:
        """Start the server (initialising the cluster the first time) and return its DSN."""
        if self._process is not None and self._process.poll() is None:
            return self.dsn
        bin_dir = self.bin_dir or postgres_bin_dir()
        account = _server_account()
        self._check_free()
        self._prepare(account)
        if not (self.cluster_dir / "PG_VERSION").exists():
            self._initdb(bin_dir, account)
        self._check_version(bin_dir)
        self._open_socket_dir(account)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        output_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        command = [
            str(bin_dir / "postgres"), "-D", str(self.cluster_dir), "-p", str(self.port),
            "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={self.socket_dir}",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **self._as(account)
            )
        self._running.append(self._process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._forget()
                raise DatabaseUnavailable(
                    f"PostgreSQL exited with code {code} while starting on {HOST}:{self.port} ({self.cluster_dir}); {self._tail(output_from)}"
                )
            try:
                self._bootstrap()
                return self.dsn
            except psycopg.OperationalError:
                time.sleep(0.1)
        self.stop()
        raise DatabaseUnavailable(
            f"PostgreSQL did not answer on {HOST}:{self.port} within {timeout:.0f}s; {self._tail(output_from)}"
        )

    def stop(self) -> None:
        """Fast shutdown, bounded by `STOP_TIMEOUT_S` before harder signals; the cluster stays."""
        if self._process is None:
            return
        _terminate(self._process, STOP_TIMEOUT_S)
        self._forget()

    def close(self) -> None:
        """Stop the server and remove its private folders (a given `data_dir` is kept)."""
        self.stop()
        self._discard()

    def __enter__(self) -> LocalDatabase:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def connect(self, database: str | None = None, **kwargs) -> psycopg.Connection:
        """A connection as the role `retail` over TCP (the way every client of the project connects)."""
        return psycopg.connect(self.dsn_for(database or self.database), **kwargs)

    def create_database(self, name: str, *, replace: bool = True) -> str:
        """A database `name` owned by `retail` (dropped first with `replace`); returns its DSN."""
        with self._admin() as conn:
            if replace:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(self.user))
                )
        return self.dsn_for(name)

    # -- internals ------------------------------------------------------------------------------
    def _as(self, account: tuple[int, int] | None) -> dict:
        if account is None:
            return {}
        # the account may not enter this process's working folder or home
        return {
            "user": account[0],
            "group": account[1],
            "extra_groups": [],
            "cwd": "/",
            "env": {**os.environ, "HOME": "/"},
        }

    def _prepare(self, account: tuple[int, int] | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if account is None:
            return
        uid, gid = account
        if self._private:
            self.data_dir.chmod(0o711)  # the server account passes through to the cluster below it
        blocked = _unreachable_folder(self.cluster_dir, uid, gid)
        if blocked is not None:
            raise DatabaseUnavailable(
                f"PostgreSQL runs as the unprivileged user {pwd.getpwuid(uid).pw_name}, who cannot enter {blocked}: "
                f"choose a data root outside it (--data-root) or let others traverse it (chmod o+x {blocked})"
            )
        if self.cluster_dir.exists() and self.cluster_dir.stat().st_uid != uid:
            for path in [self.cluster_dir, *self.cluster_dir.rglob("*")]:
                os.chown(path, uid, gid, follow_symlinks=False)

    def _check_free(self) -> None:
        pid = _running_pid(self.cluster_dir / "postmaster.pid")
        if pid is not None:
            raise DatabaseUnavailable(
                f"another PostgreSQL (process {pid}) is running on {self.cluster_dir}; stop it first or use another data root"
            )
        if not port_is_free(self.port):
            raise DatabaseUnavailable(
                f"port {self.port} on {HOST} is busy, so PostgreSQL cannot listen there; stop what uses it or choose another port"
            )

    def _initdb(self, bin_dir: Path, account: tuple[int, int] | None) -> None:
        self.cluster_dir.mkdir(mode=0o700, exist_ok=True)
        if account is not None:
            os.chown(self.cluster_dir, *account)
        command = [
            str(bin_dir / "initdb"), "-D", str(self.cluster_dir), "-U", SUPERUSER,
            "--encoding=UTF8", "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, **self._as(account))
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
            raise DatabaseUnavailable(f"initdb of {self.cluster_dir} failed (exit code {done.returncode}):\n{tail}")
        hba = self.cluster_dir / "pg_hba.conf"
        hba.write_text(PG_HBA)
        if account is not None:
            os.chown(hba, *account)

    def _check_version(self, bin_dir: Path) -> None:
        cluster = (self.cluster_dir / "PG_VERSION").read_text().strip()
        binaries = bin_dir.parent.name
        if re.fullmatch(r"\d+", binaries) and cluster != binaries:
            raise DatabaseUnavailable(
                f"{self.cluster_dir} holds a PostgreSQL {cluster} cluster and the binaries are {binaries} ({bin_dir}): "
                "use another data root, or remove that folder to start afresh"
            )

    def _open_socket_dir(self, account: tuple[int, int] | None) -> None:
        if self.socket_dir is None:
            folder = tempfile.TemporaryDirectory(prefix="retail-pg-socket-")
            self._private.append(folder)
            self.socket_dir = Path(folder.name)
        if account is not None:
            os.chown(self.socket_dir, *account)

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        )

    def _bootstrap(self) -> None:
        """The role `retail` with this object's password, and its database (both idempotent)."""
        with self._admin() as conn:
            role = sql.Identifier(self.user)
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,)).fetchone():
                conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(role, sql.Literal(self.password)))
            else:
                conn.execute(
                    sql.SQL("CREATE ROLE {} WITH LOGIN CREATEDB PASSWORD {}").format(role, sql.Literal(self.password))
                )
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(self.database), role))

    def _forget(self) -> None:
        if self._process in self._running:
            self._running.remove(self._process)
        self._process = None

    def _tail(self, offset: int, lines: int = 15) -> str:
        return log_tail(self.log_path, offset, lines)


@contextlib.contextmanager
def orders_database(data_root: Path, port: int | None = None) -> Iterator[LocalDatabase]:
    """The local operational database of `retail-assets ui` and `demo`: PostgreSQL in
    `<data_root>/postgres`, the web shop's and the CRM's tables with their change capture
    installed, and this process's `RETAIL_DB_*` naming it while it runs."""
    from retail_assets.tooling.generator.orders import install_schema  # noqa: PLC0415

    with LocalDatabase(port, data_dir=data_root / "postgres", log_path=data_root / "postgres.log") as database:
        with database.connect(autocommit=True) as conn:
            install_schema(conn)
        os.environ.update(database.env)
        yield database
