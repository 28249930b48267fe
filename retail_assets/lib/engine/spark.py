"""The one Spark session of a process.

Locally a `local[*]` session with UTC session time, Arrow exchange, and the jars of
`lib/engine/jvm.py` on its classpath: Delta Lake's SQL extension and catalog (the `delta_spark` engine)
and Spark's Kafka source. On Databricks the cluster's session (the step launcher hands it to us
through `getOrCreate`), whose runtime ships both.
"""

from __future__ import annotations

import os
import sys
import threading

from pyspark.sql import SparkSession

from retail_assets.lib import settings

_lock = threading.Lock()

# `sc://host:port` of a running Spark Connect server (see `tooling/spark_server.py`): the process then
# uses that server's session instead of starting a JVM of its own.
REMOTE_ENV = settings.SPARK_REMOTE_ENV

# The variables that put pyspark in Spark Connect client mode. pyspark itself sets
# `SPARK_CONNECT_MODE_ENABLED` in a process that attaches to a server, and a child inherits it.
CONNECT_CLIENT_ENV = frozenset(
    {REMOTE_ENV, "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE", "SPARK_API_MODE"}
)


def classic_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """`environ` (this process's by default) for a child that builds a classic session of its own."""
    return {k: v for k, v in (os.environ if environ is None else environ).items() if k not in CONNECT_CLIENT_ENV}


LOCAL_CONF = {
    # Every timestamp in the lakehouse is UTC; Arrow exchange with delta-rs relies on it.
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    # Adaptive execution coalesces these to a handful for a day's rows, and keeps a week's
    # shuffles (a range run over a medium workload) in pieces a 2 GB driver can sort.
    "spark.sql.shuffle.partitions": "16",
    "spark.default.parallelism": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.driver.memory": "2g",
    "spark.sql.ansi.enabled": "false",
    # Delta Lake as Databricks runs it: `CREATE TABLE … USING DELTA`, `replaceWhere`, `OPTIMIZE`,
    # three-part names through the session catalog.
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # A day's table state is a few hundred files: Delta's default 50 partitions per log replay
    # cost more in task start-up than they save on 2 cores.
    "spark.databricks.delta.snapshotPartitions": "2",
    # VACUUM lists a table's files in this many tasks (10,000 by default: 40-55 s on a tiny table).
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
}


def local_conf() -> dict[str, str]:
    """`LOCAL_CONF` plus the fetched jars; `MissingJvmArtifacts` says how to fetch them."""
    from retail_assets.lib.engine import jvm  # noqa: PLC0415

    return {**LOCAL_CONF, "spark.jars": ",".join(str(p) for p in jvm.classpath("spark"))}


def get_spark(master: str | None = None, app_name: str = "retail-assets") -> SparkSession:
    """Return the process-wide session, creating a local one if none is active."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    with _lock:
        remote = os.environ.get(REMOTE_ENV)
        if remote:
            return SparkSession.builder.remote(remote).getOrCreate()
        # Loopback only: the machine's other interfaces are not ours to bind.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python UDFs (the Kafka source's parser) run in workers of this interpreter, which has
        # the project installed; the `python3` on PATH may not.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        builder = SparkSession.builder.appName(app_name).master(
            master or os.environ.get("RETAIL_SPARK_MASTER", "local[*]")
        )
        for key, value in local_conf().items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        if SparkSession.getActiveSession() is None:
            # Another thread started it (`start_in_background`): the builder hands back that
            # session without making it this thread's, and `getActiveSession` is how the rest of
            # the process (the fast path above, a step's release) finds it.
            SparkSession._get_j_spark_session_class(spark._jvm).setActiveSession(spark._jsparkSession)
        return spark


def start_in_background() -> threading.Thread | None:
    """Start the process's local session on a thread of its own, so that a caller with other
    work first (Kafka ingestion works in Arrow, with no JVM) does not wait for the JVM later:
    the first `get_spark` on any thread waits for this start instead of beginning its own.
    Nothing to start when a session exists or the process uses a Spark Connect server."""
    if os.environ.get(REMOTE_ENV) or SparkSession.getActiveSession() is not None:
        return None
    thread = threading.Thread(target=get_spark, name="spark-start", daemon=True)
    thread.start()
    return thread
