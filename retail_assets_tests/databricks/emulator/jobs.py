"""Jobs runs (`/api/2.2/jobs/runs/*`, 2.1 paths too) and the emulated cluster that runs them.

runs/submit takes one `spark_python_task` on a `new_cluster` (a job cluster, optionally from an
instance pool) or an `existing_cluster_id` (an all-purpose cluster: a RUNNING one runs the task
at once, a TERMINATED one is started first). The task's `python_file`, `parameters` and `whl`
libraries may be DBFS paths (`dbfs:/…`, `/dbfs/…`; refused when DBFS root is disabled) or Unity
Catalog volume paths (`/Volumes/…`, `dbfs:/Volumes/…`).

A run is PENDING while its cluster starts, then its libraries are checked (`libraries.py`; a
failure ends the run INTERNAL_ERROR / FAILED with "Library installation failed: …", as on
Databricks), then the runtime must be one this virtualenv can stand for (`runtimes.py`; else the
run fails INTERNAL_ERROR with the reason), then the task runs: RUNNING → TERMINATED with SUCCESS
/ FAILED / CANCELED / TIMEDOUT.

The task runs in a fresh Python process (`cluster_main.py`) with only a cluster's environment:
CLUSTER_BASE_ENV of this process, the emulator's `cluster_env`, the cluster's `spark_env_vars`,
and the emulator's own EMULATOR_* variables — recorded as `run.cluster_environment`. Secrets for
`dbutils.secrets` go through a file only the run can read, never the environment. The process
runs in a private mount namespace (`unshare --mount`) in which `<root>/volumes` is bind-mounted
on `/Volumes` and, with DBFS root enabled, `<root>/dbfs` on `/dbfs` — the FUSE mounts of a
Databricks cluster. The host sees neither. Note the consequence with `spark_remote`: Spark runs
in the Connect server's process, outside the namespace, so Spark itself reads `/Volumes/...`
only when the cluster starts its own JVM (no `spark_remote`); Python code of the task always can.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compute import ClusterStart, EmulatedCluster
from .dbfs import DBFS_DISABLED, is_volume_path, normalize_dbfs, uses_dbfs_root
from .errors import ApiError
from .libraries import LibraryError, install_libraries
from .runtimes import Runtime, emulation_problem

if TYPE_CHECKING:
    from .workspace import WorkspaceEmulator

CLUSTER_MAIN = Path(__file__).resolve().parent.parent / "cluster_main.py"
TASK_KEY = "dagster-task"
# Variables a Databricks driver has of its own; nothing else of the caller's environment leaks in.
CLUSTER_BASE_ENV = ("PATH", "HOME", "JAVA_HOME", "LANG", "LC_ALL", "TMPDIR", "SPARK_HOME")
VOLUMES_MOUNT, DBFS_MOUNT = "/Volumes", "/dbfs"
# Run by `unshare --mount` as `sh -c MOUNT_SCRIPT cluster <volumes> <dbfs or ""> <argv…>`: the
# FUSE mounts of a cluster, then the driver. Without DBFS an existing /dbfs is covered by an
# empty read-only tmpfs, so nothing of another emulator's DBFS shows through.
MOUNT_SCRIPT = """set -e
mount --bind "$1" /Volumes
if [ -n "$2" ]; then mount --bind "$2" /dbfs; elif [ -d /dbfs ]; then mount -t tmpfs -o ro,size=4k emulator-no-dbfs /dbfs; fi
shift 2
exec "$@"
"""


class ClusterIsolationError(RuntimeError):
    """The emulated cluster cannot get its private /Volumes (and /dbfs) mounts on this machine."""


@dataclass
class EmulatedRun:
    run_id: int
    run_name: str
    task: dict[str, Any]
    submitted: dict[str, Any]
    run_dir: Path
    cluster_id: str = ""
    existing_cluster: bool = False
    spark_version: str = ""
    submitted_by: str | None = None
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = "Waiting for cluster"
    start_time: int = field(default_factory=lambda: int(time.time() * 1000))
    end_time: int = 0
    process: subprocess.Popen | None = None
    error: str | None = None
    polls: int = 0
    library_statuses: list[dict[str, Any]] = field(default_factory=list)
    cluster_environment: dict[str, str] | None = None  # the environment the task's process started with
    argv: list[str] = field(default_factory=list)  # the driver's command line inside the namespace
    cluster_wait: float | None = None  # seconds the run waited for its cluster to be RUNNING

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "life_cycle_state": self.life_cycle_state,
            "state_message": self.state_message,
            "user_cancelled_or_timedout": False,
        }
        if self.result_state is not None:
            state["result_state"] = self.result_state
            state["user_cancelled_or_timedout"] = self.result_state in ("CANCELED", "TIMEDOUT")
        return state


def check_isolation(volumes_root: Path, dbfs_root: Path | None) -> str:
    """Make sure a cluster process can get its private mounts; returns the `unshare` to use."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise ClusterIsolationError(
            "the emulated cluster needs util-linux `unshare` (a private mount namespace for /Volumes and /dbfs); it is not on PATH"
        )
    for mountpoint in (VOLUMES_MOUNT, *([DBFS_MOUNT] if dbfs_root is not None else [])):
        try:
            Path(mountpoint).mkdir(exist_ok=True)
        except OSError as exc:
            raise ClusterIsolationError(
                f"cannot create the mount point {mountpoint} the emulated cluster needs: {exc}"
            ) from None
    probe = volumes_root / f".mount-probe-{os.getpid()}-{threading.get_ident()}"
    probe.write_text("")
    try:
        result = subprocess.run(
            [
                unshare,
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                MOUNT_SCRIPT,
                "cluster-probe",
                str(volumes_root),
                str(dbfs_root or ""),
                "/bin/sh",
                "-c",
                f'test -e "/Volumes/{probe.name}"',
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        leaked = Path(VOLUMES_MOUNT, probe.name).exists()
    finally:
        probe.unlink()
    if result.returncode != 0:
        raise ClusterIsolationError(
            f"the emulated cluster cannot mount /Volumes in a private mount namespace (`unshare --mount` + `mount --bind`, which need "
            f"root or CAP_SYS_ADMIN): exit {result.returncode}: {(result.stderr or result.stdout).strip()}"
        )
    if leaked:
        raise ClusterIsolationError("the emulated cluster's /Volumes mount is visible outside its mount namespace")
    return unshare


class JobsApi:
    runs: dict[int, EmulatedRun]
    runs_root: Path
    volumes_root: Path
    dbfs_root: Path
    dbfs_root_enabled: bool
    python: str
    spark_remote: str | None
    runtime_spark_conf: dict[str, str]
    cluster_env: dict[str, str]
    secrets: dict[tuple[str, str], str]
    _unshare: str | None
    _lock: threading.Lock

    # ---- submit --------------------------------------------------------------------------

    def _task_file(self: WorkspaceEmulator, path: str) -> Path:
        """Where a cluster reads a task's file from, on the emulator's disk."""
        if is_volume_path(path):
            return self.volume_path(path)
        if str(path).startswith("dbfs:"):
            return self.dbfs_file(path)
        raise ApiError(
            HTTPStatus.BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            f"Unsupported path {path}: the emulator serves dbfs:/… and /Volumes/… files",
        )

    def _check_dbfs_use(self, task: Mapping[str, Any]) -> None:
        if self.dbfs_root_enabled:
            return
        spark_task = task["spark_python_task"]
        used = [("python_file", spark_task["python_file"])]
        used += [("parameter", a) for a in spark_task.get("parameters", []) if isinstance(a, str)]
        used += [
            (f"{kind} library", lib[kind])
            for lib in task.get("libraries", [])
            for kind in ("whl", "jar", "egg", "requirements")
            if kind in lib
        ]
        for what, path in used:
            if uses_dbfs_root(path):
                raise ApiError(
                    HTTPStatus.BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    f"{DBFS_DISABLED} The task's {what} {path} is on DBFS root.",
                )

    def runs_submit(self: WorkspaceEmulator, p: Mapping[str, Any]) -> dict[str, Any]:
        tasks = p.get("tasks") or []
        if len(tasks) != 1:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                "the emulator runs exactly one task per submitted run",
            )
        task = tasks[0]
        if "spark_python_task" not in task:
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", "only spark_python_task is emulated")
        new_cluster, existing_id = task.get("new_cluster"), task.get("existing_cluster_id")
        if not new_cluster and not existing_id:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                "One of new_cluster or existing_cluster_id must be specified",
            )
        if new_cluster and existing_id:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                "Only one of new_cluster or existing_cluster_id may be specified",
            )
        if existing_id:
            spec = self._cluster(existing_id).spec
        else:
            spec = new_cluster
            self._validate_spec(spec)
        self.check_access_mode(spec)
        self._check_dbfs_use(task)
        python_file = task["spark_python_task"]["python_file"]
        if not self._task_file(python_file).is_file():
            raise ApiError(
                HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", f"python_file {python_file} does not exist"
            )
        run_id = self._new_id()
        run = EmulatedRun(
            run_id,
            p.get("run_name") or "Untitled",
            task,
            dict(p),
            self.runs_root / str(run_id),
            existing_cluster=bool(existing_id),
            spark_version=spec["spark_version"],
            submitted_by=self.request.principal,
        )
        if existing_id:
            run.cluster_id = str(existing_id)
        else:
            run.cluster_id = self._new_cluster(spec, source="JOB").cluster_id
        run.run_dir.mkdir(parents=True)
        with self._lock:
            self.runs[run_id] = run
            self.cluster_runs.setdefault(run.cluster_id, []).append(run_id)
        threading.Thread(
            target=self._execute, args=(run, p.get("timeout_seconds")), name=f"emulated-run-{run_id}", daemon=True
        ).start()
        return {"run_id": run_id}

    # ---- read ----------------------------------------------------------------------------

    def _run_json(self: WorkspaceEmulator, run: EmulatedRun) -> dict[str, Any]:
        cluster = {"cluster_id": run.cluster_id, "spark_context_id": str(run.run_id)}
        task = {
            "run_id": run.run_id,
            "task_key": TASK_KEY,
            "state": run.state(),
            "cluster_instance": cluster,
            "spark_python_task": run.task["spark_python_task"],
            "libraries": run.task.get("libraries", []),
            "start_time": run.start_time,
            "end_time": run.end_time,
        }
        task["existing_cluster_id" if run.existing_cluster else "new_cluster"] = run.task.get(
            "existing_cluster_id"
        ) or run.task.get("new_cluster")
        return {
            "job_id": 900000 + run.run_id,
            "run_id": run.run_id,
            "run_name": run.run_name,
            "run_type": "SUBMIT_RUN",
            "number_in_job": run.run_id,
            "state": run.state(),
            "status": {"state": "TERMINATED" if run.life_cycle_state == "TERMINATED" else run.life_cycle_state},
            "start_time": run.start_time,
            "end_time": run.end_time,
            "run_page_url": f"{self.host}/#job/{900000 + run.run_id}/run/{run.run_id}",
            "cluster_instance": cluster,
            "tasks": [task],
        }

    def _run(self, p: Mapping[str, Any]) -> EmulatedRun:
        run = self.runs.get(int(p["run_id"]))
        if run is None:
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", f"Run {p['run_id']} does not exist.")
        return run

    def runs_get(self, p: Mapping[str, Any]) -> dict[str, Any]:
        run = self._run(p)
        run.polls += 1
        return self._run_json(run)

    def runs_get_output(self, p: Mapping[str, Any]) -> dict[str, Any]:
        run = self._run(p)
        out: dict[str, Any] = {"metadata": self._run_json(run)}
        stdout = run.run_dir / "driver_stdout"
        if stdout.exists():
            out["logs"] = stdout.read_text(errors="replace")[-5000:]
            out["logs_truncated"] = stdout.stat().st_size > 5000
        if run.error:
            out["error"] = run.error
            stderr = run.run_dir / "driver_stderr"
            out["error_trace"] = stderr.read_text(errors="replace")[-20000:] if stderr.exists() else ""
        return out

    def runs_cancel(self, p: Mapping[str, Any]) -> dict[str, Any]:
        run = self._run(p)
        kill(run.process)
        self._finish(run, "CANCELED", "Run cancelled.", life_cycle="TERMINATED")
        return {}

    # ---- the emulated cluster ------------------------------------------------------------

    def _finish(self, run: EmulatedRun, result: str | None, message: str, *, life_cycle: str = "TERMINATED") -> None:
        with self._lock:
            if run.life_cycle_state in ("TERMINATED", "INTERNAL_ERROR"):
                return
            run.result_state, run.state_message = result, message
            run.life_cycle_state = life_cycle
            run.end_time = int(time.time() * 1000)

    def _wait_running(self: WorkspaceEmulator, run: EmulatedRun, cluster: EmulatedCluster) -> bool:
        """Start the run's cluster as Databricks would; False when the run ended meanwhile."""
        began = time.monotonic()
        if run.existing_cluster:
            self._start(cluster)  # an all-purpose cluster that was terminated starts again
        else:
            self.clusters_created.append(
                ClusterStart(cluster.cluster_id, run.run_id, cluster.spec["spark_version"], cluster.instance_pool_id)
            )
        while cluster.refresh() == "PENDING":
            time.sleep(min(0.05, max(0.0, cluster.ready_at - time.monotonic())) or 0.01)
            if run.life_cycle_state != "PENDING":
                return False
        run.cluster_wait = time.monotonic() - began
        if cluster.state != "RUNNING":
            self._finish(
                run,
                "FAILED",
                f"Cluster {cluster.cluster_id} is {cluster.state}: {cluster.state_message}",
                life_cycle="INTERNAL_ERROR",
            )
            return False
        return run.life_cycle_state == "PENDING"

    def _locate_library(self: WorkspaceEmulator, path: str) -> Path:
        if is_volume_path(path):
            match_path = normalize_dbfs(path) if path.startswith("dbfs:") else path
            parts = match_path.split("/")
            if len(parts) < 5 or not self.volume_exists(parts[2], parts[3], parts[4]):
                raise LibraryError(f"{path}: no such Unity Catalog volume")
            return self.volume_path(path)
        if path.startswith("dbfs:"):
            return self.dbfs_file(path)
        raise LibraryError(f"{path}: only dbfs:/… and /Volumes/… library paths are emulated")

    def _execute(self: WorkspaceEmulator, run: EmulatedRun, timeout_seconds: int | None) -> None:
        cluster = self.clusters[run.cluster_id]
        try:
            if not self._wait_running(run, cluster):
                return
            runtime = self.runtime(run.spark_version)
            statuses, problem = install_libraries(run.task.get("libraries", []), runtime, self._locate_library)
            run.library_statuses = statuses
            with self._lock:
                self.cluster_library_statuses.setdefault(cluster.cluster_id, []).extend(statuses)
            if problem:
                self._finish(run, "FAILED", f"Library installation failed: {problem}", life_cycle="INTERNAL_ERROR")
                return
            unsupported = emulation_problem(runtime)
            if unsupported:
                run.error = unsupported
                self._finish(run, "FAILED", f"Emulator: {unsupported}", life_cycle="INTERNAL_ERROR")
                return
            self._run_task(run, runtime, cluster, timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - an emulator bug must end the run, not leave it PENDING forever
            run.error = f"{type(exc).__name__}: {exc}"
            self._finish(run, "FAILED", f"Emulator error: {run.error}", life_cycle="INTERNAL_ERROR")
        finally:
            if cluster.source == "JOB":
                self._terminate(cluster, "Job cluster terminated after its run")

    def _cluster_path(self, path: str) -> str:
        """A task's path as the cluster's file system names it (its FUSE mounts)."""
        if is_volume_path(path):
            return normalize_dbfs(path)
        if str(path).startswith("dbfs:"):
            return DBFS_MOUNT + normalize_dbfs(path)
        return path

    def _run_task(
        self: WorkspaceEmulator,
        run: EmulatedRun,
        runtime: Runtime,
        cluster: EmulatedCluster,
        timeout_seconds: int | None,
    ) -> None:
        spec = cluster.spec
        spark_task = run.task["spark_python_task"]
        secrets_file = run.run_dir / "secrets.json"
        secrets_file.touch(mode=0o600)
        secrets_file.write_text(json.dumps([{"scope": s, "key": k, "value": v} for (s, k), v in self.secrets.items()]))
        env = {k: os.environ[k] for k in CLUSTER_BASE_ENV if k in os.environ} | self.cluster_env
        env.update(
            {
                "DATABRICKS_RUNTIME_VERSION": runtime.version_number,
                "SPARK_LOCAL_IP": "127.0.0.1",
                "PYSPARK_PYTHON": self.python,
                "EMULATOR_DBFS_ENABLED": "1" if self.dbfs_root_enabled else "0",
                "EMULATOR_SECRETS_FILE": str(secrets_file),
                "EMULATOR_SPARK_CONF": json.dumps(spec.get("spark_conf") or {}),
                "EMULATOR_RUNTIME_SPARK_CONF": json.dumps(self.runtime_spark_conf),
                **({"EMULATOR_SPARK_REMOTE": self.spark_remote} if self.spark_remote else {}),
                **{k: str(v) for k, v in (spec.get("spark_env_vars") or {}).items()},
            }
        )
        run.argv = [
            self.python,
            str(CLUSTER_MAIN),
            self._cluster_path(spark_task["python_file"]),
            *map(str, spark_task.get("parameters", [])),
        ]
        assert self._unshare is not None, "emulator not started"
        command = [
            self._unshare,
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            MOUNT_SCRIPT,
            "emulated-cluster",
            str(self.volumes_root),
            str(self.dbfs_root) if self.dbfs_root_enabled else "",
            *run.argv,
        ]
        with self._lock:
            if run.life_cycle_state != "PENDING":
                return  # cancelled while the cluster was starting
            run.life_cycle_state, run.state_message = "RUNNING", "In run"
            run.cluster_environment = dict(env)
            with (run.run_dir / "driver_stdout").open("wb") as out, (run.run_dir / "driver_stderr").open("wb") as err:
                run.process = subprocess.Popen(
                    command, cwd=run.run_dir, env=env, stdout=out, stderr=err, start_new_session=True
                )
        try:
            code = run.process.wait(timeout=timeout_seconds or None)
        except subprocess.TimeoutExpired:
            kill(run.process)
            self._finish(run, "TIMEDOUT", f"Run timed out after {timeout_seconds} seconds.")
            return
        finally:
            secrets_file.unlink(missing_ok=True)
        if code == 0:
            self._finish(run, "SUCCESS", "")
            return
        lines = [ln for ln in (run.run_dir / "driver_stderr").read_text(errors="replace").splitlines() if ln.strip()]
        run.error = lines[-1] if lines else f"exit code {code}"
        self._finish(run, "FAILED", "Workload failed, see run output for details")


def kill(process: subprocess.Popen | None) -> None:
    """End a cluster process and what it started (its own process group: a local JVM too)."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    process.wait()


ROUTES = {
    ("POST", "/api/2.2/jobs/runs/submit"): JobsApi.runs_submit,
    ("GET", "/api/2.2/jobs/runs/get"): JobsApi.runs_get,
    ("GET", "/api/2.2/jobs/runs/get-output"): JobsApi.runs_get_output,
    ("POST", "/api/2.2/jobs/runs/cancel"): JobsApi.runs_cancel,
}
