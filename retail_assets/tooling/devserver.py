"""A running `dagster dev` (webserver + daemon), started the way a user starts it.

`start_dagster_dev(root, env=...)` runs `retail-assets ui` (local Kafka broker + `dagster dev`)
on free loopback ports with its own data root and DAGSTER_HOME under `root`, waits until the
code location has loaded and the daemons are healthy, and on exit stops the whole process group,
so no webserver, daemon, code server, run worker, Spark JVM or broker outlives it. Used by the
end-to-end tests and by the latency measurement.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from retail_assets.lib.settings import project_root
from retail_assets.tooling.broker import free_port

STARTUP_TIMEOUT_S = 240.0
SHUTDOWN_GRACE_S = 30.0
# The daemons a backfill and queued runs need; the others (sensors, schedules) are optional.
REQUIRED_DAEMONS = ("BACKFILL", "QUEUED_RUN_COORDINATOR")

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message stack } }
      }
    }
  }
  instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } }
}
"""


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
    ... on PythonError { message stack }
  }
}
"""
BACKFILL_STATE = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      error { message }
      runs(limit: 1000) { runId status startTime endTime tags { key value } }
    }
    ... on Error { message }
  }
}
"""
# A backfill in these states has runs to launch or to wait for.
BACKFILL_IN_PROGRESS = ("REQUESTED", "CANCELING", "FAILING")
RUN_STATE = """
query Run($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run { runId status startTime endTime tags { key value } }
    ... on Error { message }
  }
}
"""
RUN_FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


class DagsterDevError(AssertionError):
    """`dagster dev` did not start or answer; the message carries the tail of its log."""


@dataclass
class DagsterDev:
    """One running `retail-assets ui`: where to reach it and where it keeps its data."""

    host: str
    port: int
    data_root: Path
    dagster_home: Path
    log_path: Path
    kafka_bootstrap: str
    process: subprocess.Popen

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def landing(self) -> Path:
        return self.data_root / "landing"

    @property
    def lakehouse(self) -> Path:
        return self.data_root / "lakehouse"

    @cached_property
    def client(self):
        return DagsterGraphQLClient(self.host, port_number=self.port, timeout=60)

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run a query through dagster-graphql's client; errors carry the server log's tail."""
        try:
            return self.client._execute(query, dict(variables or {}))
        except DagsterGraphQLClientError as exc:
            raise self.fail(f"GraphQL request failed: {exc.__cause__ or exc}") from exc

    def backfill(
        self, partitions: Sequence[tuple[Sequence[str], str, str]], title: str, timeout_s: float
    ) -> dict[str, Any]:
        """Launch a partition backfill as the UI's *Materialize…* does, each entry an asset key's
        path and the first and last partition, and wait until the daemon ends it; its state (status,
        error, runs with their times and tags)."""
        launched = self.graphql(
            LAUNCH_BACKFILL,
            {
                "params": {
                    "title": title,
                    "partitionsByAssets": [
                        {"assetKey": {"path": list(path)}, "partitions": {"range": {"start": first, "end": last}}}
                        for path, first, last in partitions
                    ],
                }
            },
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise self.fail(f"backfill {title!r} not launched: {launched}")
        return self._wait(
            f"backfill {title!r}",
            lambda: self.graphql(BACKFILL_STATE, {"id": launched["backfillId"]})["partitionBackfillOrError"],
            "PartitionBackfill",
            lambda state: state["status"] not in BACKFILL_IN_PROGRESS,
            timeout_s,
            interval_s=1.0,
        )

    def materialize(self, path: Sequence[str], partition: str, title: str, timeout_s: float) -> dict[str, Any]:
        """Materialize one partition of one asset as the UI's *Materialize* on a single partition
        does (a run of the asset job, not a backfill), and wait for the run to end; its state
        (status, times, tags)."""
        try:
            run_id = self.client.submit_job_execution(
                "__ASSET_JOB", "retail_assets", "__repository__", tags={"dagster/partition": partition},
                asset_selection=[list(path)],
            )  # fmt: skip
        except DagsterGraphQLClientError as exc:
            raise self.fail(f"{title!r} not launched: {exc}") from exc
        return self._wait(
            repr(title),
            lambda: self.graphql(RUN_STATE, {"id": run_id})["runOrError"],
            "Run",
            lambda state: state["status"] in RUN_FINISHED,
            timeout_s,
            interval_s=0.25,
        )

    def _wait(
        self,
        what: str,
        read: Callable[[], dict[str, Any]],
        typename: str,
        finished: Callable[[dict[str, Any]], bool],
        timeout_s: float,
        *,
        interval_s: float,
    ) -> dict[str, Any]:
        """Poll `read` until the state it returns is `finished`; a state of another GraphQL
        type (an error) or the timeout fails with the server log's tail."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = read()
            if state["__typename"] != typename:
                raise self.fail(f"{what}: {state}")
            if finished(state):
                return state
            if time.monotonic() > deadline:
                runs = f"; runs: {state['runs']}" if "runs" in state else ""
                raise self.fail(f"{what} still {state['status']} after {timeout_s:.0f}s{runs}")
            time.sleep(interval_s)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "--- dagster dev log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def fail(self, message: str) -> DagsterDevError:
        return DagsterDevError(f"{message}\n{self.log_tail()}")


def _wait_until_ready(dev: DagsterDev, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if dev.process.poll() is not None:
            raise dev.fail(f"`retail-assets ui` exited with code {dev.process.returncode} while starting")
        try:
            data = DagsterGraphQLClient(dev.host, port_number=dev.port, timeout=10)._execute(WORKSPACE_QUERY)
        except Exception as exc:  # noqa: BLE001 - the webserver is not listening yet
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(1.0)
            continue
        entries = data["workspaceOrError"].get("locationEntries") or []
        for entry in entries:
            error = entry["locationOrLoadError"]
            if error and error["__typename"] == "PythonError":
                raise dev.fail(f"code location {entry['name']} failed to load: {error['message']}\n{error['stack']}")
        loaded = entries and all(e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries)
        daemons = {d["daemonType"]: d["healthy"] for d in data["instance"]["daemonHealth"]["allDaemonStatuses"]}
        if loaded and all(daemons.get(d) for d in REQUIRED_DAEMONS):
            return
        last = f"locations {[(e['name'], e['loadStatus']) for e in entries]}, daemons {daemons}"
        time.sleep(1.0)
    raise dev.fail(f"dagster dev was not ready within {timeout:.0f}s ({last})")


def _stop(process: subprocess.Popen) -> None:
    """SIGINT to `retail-assets ui` (it stops `dagster dev`, then the broker), then SIGKILL to
    the whole process group for whatever did not exit in time: run workers, JVMs, servers."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=SHUTDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


@contextmanager
def start_dagster_dev(
    root: Path, env: Mapping[str, str] | None = None, *, timeout: float = STARTUP_TIMEOUT_S
) -> Iterator[DagsterDev]:
    """Start `retail-assets ui` with data under `root`, without the local PostgreSQL; `env`
    overrides the environment (e.g. `RETAIL_SENSORS_DEFAULT`, `RETAIL_PARTITIONS_START`)."""
    root.mkdir(parents=True, exist_ok=True)
    data_root, home, log_path = root / "data", root / "dagster_home", root / "dagster_dev.log"
    port, kafka_port = free_port(), free_port()
    environment = {
        **os.environ,
        "RETAIL_DATA_ROOT": str(data_root),
        "DAGSTER_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [
        str(Path(sys.executable).with_name("retail-assets")),
        "ui",
        "--data-root", str(data_root),
        "--kafka-port", str(kafka_port),
        # the tests, the latency and the bench's backfills need no operational database (and
        # under root its server could not reach a private temporary folder)
        "--no-database",
        "--", "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        # Its own process group, so teardown can reach every process it started.
        process = subprocess.Popen(
            command, cwd=project_root(), env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    dev = DagsterDev("127.0.0.1", port, data_root, home, log_path, f"127.0.0.1:{kafka_port}", process)
    try:
        _wait_until_ready(dev, timeout)
        yield dev
    finally:
        _stop(process)
