"""The Spark Connect server `retail-assets ui` shares between runs: a process that sets
RETAIL_SPARK_REMOTE computes on it without a JVM of its own, and stopping it leaves nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from retail_assets.lib.engine.spark import REMOTE_ENV
from retail_assets.tooling.spark_server import SparkConnectServer, child_pids, pid_running

CLIENT = """
import json
from pyspark import SparkContext
from pyspark.sql import functions as F
from retail_assets.lib.engine.spark import get_spark
spark = get_spark()
counts = spark.range(10).withColumn("even", F.col("id") % 3 == 0).groupBy("even").count().toArrow()
print(json.dumps({
    "session": type(spark).__module__,
    "own_jvm": SparkContext._gateway is not None,
    "counts": sorted(counts["count"].to_pylist()),
    "tz": spark.conf.get("spark.sql.session.timeZone"),
}))
"""


def test_runs_compute_on_the_shared_server_and_stopping_it_leaves_nothing(tmp_path):
    server = SparkConnectServer(log_path=tmp_path / "spark-connect.log")
    with server:
        jvms = child_pids(server._process.pid)
        assert jvms, "the server runs its JVM as a child process"
        env = {**os.environ, REMOTE_ENV: server.remote}
        done = subprocess.run([sys.executable, "-c", CLIENT], env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["session"].startswith("pyspark.sql.connect"), result
        assert result["own_jvm"] is False
        assert result["counts"] == [4, 6]
        # the project's session settings are the server's defaults for every run's session
        assert result["tz"] == "UTC"
        pid = server._process.pid
    assert not pid_running(pid)
    assert not any(pid_running(j) for j in jvms), "the server's JVM outlived it"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", server.port)) != 0
