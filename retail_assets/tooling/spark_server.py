"""One Spark JVM for every run of a `dagster dev`: a local Spark Connect server.

Locally every Dagster run is a process of its own, and a process that builds a classic
`local[*]` session starts a JVM (10–20 s on a laptop, then a cold JIT). `retail-assets ui` starts
this server once, beside the broker, and exports `RETAIL_SPARK_REMOTE=sc://127.0.0.1:PORT`; each
run's `get_spark()` then attaches to it in well under a second. The server is PySpark's own
`local[*]` session with the project's settings (`lib/engine/spark.py`) and the Spark Connect plugin
whose jar ships in the pyspark wheel, with the Delta and Kafka jars of `lib/engine/jvm.py`: the
`delta_spark` engine and Spark's Kafka source run in this server, the `delta_rs` engine in the
run's own process, and each run has a Connect session of its own (its temporary views, cache and
settings are not shared with other runs).

`python -m retail_assets.tooling.spark_server --port P` runs the server in the foreground;
`SparkConnectServer` starts and stops it from Python.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from retail_assets.lib.engine.spark import classic_env, local_conf

CONNECT_PLUGIN = "org.apache.spark.sql.connect.SparkConnectPlugin"


class SparkServerUnavailable(RuntimeError):
    """The Spark Connect server exited or did not listen in time."""


def server_conf(port: int) -> dict[str, str]:
    return {
        **local_conf(),
        "spark.plugins": CONNECT_PLUGIN,
        # Loopback only, like the broker.
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        # Runs exchange whole partitions as Arrow with the server.
        "spark.connect.grpc.maxInboundMessageSize": str(512 * 2**20),
    }


def serve(port: int, master: str) -> None:
    """Start the session with the Connect plugin and block until SIGTERM or SIGINT."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python UDFs run in workers the server starts: the same interpreter as the runs.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession  # noqa: PLC0415

    builder = SparkSession.builder.appName("retail-assets-connect").master(master)
    for key, value in server_conf(port).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"spark connect server on sc://127.0.0.1:{port} (master {master})", flush=True)
    stop.wait()
    spark.stop()


def child_pids(pid: int) -> set[int]:
    """Direct children of `pid` (the server's JVM), from /proc; empty where there is none."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def pid_running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class SparkConnectServer:
    """Start and stop one server process; usable as a context manager."""

    def __init__(self, port: int | None = None, *, master: str | None = None, log_path: Path | None = None) -> None:
        from retail_assets.tooling.broker import free_port  # noqa: PLC0415

        self.port = port or free_port()
        self.master = master or os.environ.get("RETAIL_SPARK_MASTER", "local[*]")
        self.log_path = log_path
        self._process: subprocess.Popen | None = None

    @property
    def remote(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> str:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        command = [
            sys.executable,
            "-m",
            "retail_assets.tooling.spark_server",
            "--port",
            str(self.port),
            "--master",
            self.master,
        ]
        # A process that already attached to a server carries pyspark's Connect-mode variables;
        # the server itself must build a classic session.
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=classic_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                where = f"; see {self.log_path}" if self.log_path else ""
                raise SparkServerUnavailable(
                    f"Spark Connect server exited with code {self._process.returncode} while starting on port {self.port}{where}"
                )
            if _listening(self.port):
                return self.remote
            time.sleep(0.25)
        self.stop()
        raise SparkServerUnavailable(
            f"Spark Connect server did not listen on 127.0.0.1:{self.port} within {timeout:.0f}s"
        )

    def stop(self, grace_s: float = 30.0) -> None:
        if self._process is None:
            return
        jvms = child_pids(self._process.pid)
        self._process.terminate()
        try:
            self._process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
        # The JVM leaves once its Python parent has gone; one that does not is killed.
        deadline = time.monotonic() + grace_s
        while any(pid_running(pid) for pid in jvms) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in jvms:
            if pid_running(pid):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> SparkConnectServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retail_assets.tooling.spark_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args(argv)
    serve(args.port, args.master)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
