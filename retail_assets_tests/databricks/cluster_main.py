"""The driver of one emulated job-cluster task (run by the emulator in a fresh process).

Provides what the Databricks runtime provides before a `spark_python_task` starts — a Spark
session with Delta Lake as `spark` and `sc`, and `dbutils` — then runs the submitted file as
`__main__` with the submitted parameters. Deliberately imports nothing of the project: on a real
cluster the project arrives only through the task's libraries and the launcher's code upload.

The session attaches to a Spark Connect server when the emulator names one
(`EMULATOR_SPARK_REMOTE`): the server's JVM, with the Delta jar, stands in for the cluster's
driver, and a task starts in seconds instead of starting a JVM. `sc` then exists only as a name
(Spark Connect has no SparkContext); the launcher touches it only for S3/ADLS credentials, which
these tests never configure. Otherwise the task starts a local JVM of its own with the runtime's
conf (`EMULATOR_RUNTIME_SPARK_CONF`: the Delta jar, its extension and catalog).

The process runs in a private mount namespace the emulator set up: `/Volumes` is the emulator's
volumes folder and, on a workspace with DBFS root, `/dbfs` its DBFS folder — the FUSE mounts of
a Databricks cluster, so task paths stay as Databricks names them. `dbutils.fs` works on the same
mounts. Secrets for `dbutils.secrets` come from a file the emulator writes for this run only
(`EMULATOR_SECRETS_FILE`, read once and deleted), never from the environment.

argv: <python_file as the cluster sees it> <parameters…>.
"""

from __future__ import annotations

import json
import os
import posixpath
import runpy
import shutil
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path


class SecretNotFound(Exception):
    pass


class _Secrets:
    def __init__(self, entries: list[dict[str, str]]) -> None:
        self._values = {(e["scope"], e["key"]): e["value"] for e in entries}

    def get(self, scope: str, key: str) -> str:
        try:
            return self._values[(scope, key)]
        except KeyError:
            # Databricks' own wording, so a missing secret reads the same as on a cluster.
            raise SecretNotFound(f"Secret does not exist with scope: {scope} and key: {key}") from None

    def listScopes(self) -> list[str]:
        return sorted({s for s, _ in self._values})


class _Fs:
    """`dbutils.fs` on the cluster's mounts: `/Volumes/...` (also `dbfs:/Volumes/...`) is a volume;
    `dbfs:/x`, `/x` and `/dbfs/x` are DBFS path `/x`, which fails when DBFS root is disabled;
    `file:/x` is the driver's local file `/x`."""

    def __init__(self, dbfs_enabled: bool) -> None:
        self._dbfs_enabled = dbfs_enabled

    def _path(self, path: str) -> Path:
        if path.startswith("file:"):
            return Path(path[len("file:") :])
        p = path[len("dbfs:") :] if path.startswith("dbfs:") else path
        p = posixpath.normpath("/" + p.lstrip("/"))
        if p == "/Volumes" or p.startswith("/Volumes/"):
            return Path(p)
        if p == "/dbfs" or p.startswith("/dbfs/"):
            p = p[len("/dbfs") :] or "/"
        if not self._dbfs_enabled:
            raise PermissionError(
                f"DBFS root is disabled on this workspace: {path} cannot be accessed; use a Unity Catalog volume (/Volumes/...)"
            )
        return Path("/dbfs") / p.lstrip("/")

    def ls(self, path: str) -> list[str]:
        return sorted(str(c.name) for c in self._path(path).iterdir())

    def head(self, path: str, max_bytes: int = 65536) -> str:
        with self._path(path).open("rb") as f:
            return f.read(max_bytes).decode(errors="replace")

    def put(self, path: str, contents: str, overwrite: bool = False) -> bool:
        target = self._path(path)
        if target.exists() and not overwrite:
            raise FileExistsError(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(contents)
        return True

    def cp(self, src: str, dst: str) -> bool:
        self._path(dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(src), self._path(dst))
        return True

    def mkdirs(self, path: str) -> bool:
        self._path(path).mkdir(parents=True, exist_ok=True)
        return True

    def rm(self, path: str, recurse: bool = False) -> bool:
        target = self._path(path)
        if target.is_dir():
            shutil.rmtree(target) if recurse else target.rmdir()
        elif target.exists():
            target.unlink()
        return True


class DBUtils:
    def __init__(self, dbfs_enabled: bool, secrets: list[dict[str, str]]) -> None:
        self.fs = _Fs(dbfs_enabled)
        self.secrets = _Secrets(secrets)


def read_secrets() -> list[dict[str, str]]:
    """The run's secrets, from the file the emulator wrote for it; the file goes once read."""
    name = os.environ.get("EMULATOR_SECRETS_FILE")
    if not name or not os.path.exists(name):
        return []
    with open(name) as handle:
        entries = json.load(handle)
    os.unlink(name)
    return entries


class _Starting:
    """`spark` / `sc` while the session is still starting in the background.

    On Databricks the session is up before the task starts; here its JVM start overlaps the
    task's own imports instead of preceding them. Attribute access waits for the session.
    """

    def __init__(self, future: Future, attribute: str | None = None) -> None:
        self._future, self._attribute = future, attribute

    def __getattr__(self, name: str):
        session = self._future.result()
        target = getattr(session, self._attribute) if self._attribute else session
        return getattr(target, name)


# What keeps one emulated cluster small and quiet. A real cluster has many cores; this one has one
# or two, where Delta's VACUUM would otherwise list a tiny table in 10,000 tasks (Spark's
# partition-discovery default) and take most of a minute.
SMALL_SESSION = {"spark.sql.shuffle.partitions": "2", "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2"}
SMALL_JVM = {"spark.ui.enabled": "false"}


def cluster_conf() -> dict[str, str]:
    return {**json.loads(os.environ.get("EMULATOR_SPARK_CONF", "{}")), **SMALL_SESSION}


def attach_session(remote: str):
    from pyspark.sql import SparkSession

    # Built on the thread that runs the task, so `getActiveSession()` finds it there as it
    # finds the notebook's session on Databricks.
    builder = SparkSession.builder.remote(remote)
    for key, value in cluster_conf().items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def start_session():
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[1]").appName("emulated-job-cluster")
    # The runtime's own conf, then the cluster's spark_conf, then what keeps one local JVM small.
    conf = {**json.loads(os.environ.get("EMULATOR_RUNTIME_SPARK_CONF", "{}")), **cluster_conf(), **SMALL_JVM}
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def main() -> None:
    python_file, parameters = sys.argv[1], sys.argv[2:]
    pool = ThreadPoolExecutor(max_workers=1)
    remote = os.environ.get("EMULATOR_SPARK_REMOTE")
    if remote:
        session: Future = Future()
        session.set_result(attach_session(remote))
    else:
        session = pool.submit(start_session)
    dbutils = DBUtils(os.environ.get("EMULATOR_DBFS_ENABLED", "1") == "1", read_secrets())
    sys.argv = [python_file, *parameters]
    try:
        runpy.run_path(
            python_file,
            init_globals={"spark": _Starting(session), "sc": _Starting(session, "sparkContext"), "dbutils": dbutils},
            run_name="__main__",
        )
    finally:
        # A Connect session's stop releases only this task's session, never the server.
        session.result().stop()
        pool.shutdown()


if __name__ == "__main__":
    main()
