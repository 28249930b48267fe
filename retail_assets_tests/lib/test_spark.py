"""The process's Spark session started on a thread of its own while the caller works."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from retail_assets.lib.engine.spark import REMOTE_ENV

# A fresh interpreter: the suite's own session would make starting one a no-op.
_SCRIPT = textwrap.dedent(
    """
    import threading
    from pyspark.sql import SparkSession
    from retail_assets.lib.engine.spark import get_spark, start_in_background

    thread = start_in_background()
    assert thread is not None, "no session existed, so one should start"
    thread.join()
    # started on the other thread: the builder would not make it this thread's
    spark = get_spark()
    active = SparkSession.getActiveSession()
    assert active is not None and active._jsparkSession.equals(spark._jsparkSession), "the session is not this thread's active one"
    assert spark.range(3).count() == 3
    assert start_in_background() is None, "a second start must find the session"
    print("ok", threading.active_count())
    """
)


def test_session_started_in_background_is_the_callers():
    # without the suite's Spark Connect server (nor the mode pyspark records once a process
    # has a Connect session): a local JVM of its own
    env = {k: v for k, v in os.environ.items() if k not in (REMOTE_ENV, "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[0] == "ok"
