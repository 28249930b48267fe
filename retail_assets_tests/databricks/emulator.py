"""A Databricks workspace on loopback, for tests only (SPEC §10).

It speaks the REST subset that dagster-databricks' step launcher and databricks-sdk call:

- DBFS: create / add-block / close (how the launcher uploads), put, read, get-status, list,
  mkdirs, delete;
- Jobs: runs/submit, runs/get, runs/get-output, runs/cancel (API 2.1 and 2.2 paths);
- Secrets: scopes/create, put (what `secrets_to_env_variables` later reads on the cluster).

A submitted `spark_python_task` runs as a job cluster would run it: in a fresh Python process
with only a cluster's environment (none of the caller's variables), the `new_cluster`'s
`spark_env_vars` and `spark_conf`, a Spark session with Delta Lake as `spark`/`sc` (attached to
the Spark Connect server given as `spark_remote`, else a local JVM started with
`runtime_spark_conf`, see `cluster_main.py`), a `dbutils` stand-in,
and `/dbfs/...` parameters mapped onto the emulator's DBFS folder. The launcher's real
`databricks_step_main.py` is what runs; nothing of the launcher is patched. Run states move
PENDING → RUNNING → TERMINATED with SUCCESS / FAILED / CANCELED / TIMEDOUT, and a library the
"cluster" cannot satisfy fails the run with INTERNAL_ERROR, as Databricks reports it.

What it cannot stand in for: the cluster's Python environment is this project's virtualenv
(which has the project installed, standing in for the wheel library), and Unity Catalog is
Spark's session catalog, so tables are external tables on the emulator's disk. Delta itself is
real: steps write through Delta Lake's Spark jar (delta-spark), as on Databricks.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

CLUSTER_MAIN = Path(__file__).with_name("cluster_main.py")
MAX_BLOCK_BYTES = 1024 * 1024  # DBFS add-block and read refuse more than 1 MB
TASK_KEY = "dagster-task"
# Variables a Databricks driver has of its own; nothing else of the caller's environment leaks in.
CLUSTER_BASE_ENV = ("PATH", "HOME", "JAVA_HOME", "LANG", "LC_ALL", "TMPDIR", "SPARK_HOME")


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class EmulatedRun:
    run_id: int
    run_name: str
    task: dict[str, Any]
    submitted: dict[str, Any]
    run_dir: Path
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = "Waiting for cluster"
    start_time: int = field(default_factory=lambda: int(time.time() * 1000))
    end_time: int = 0
    process: subprocess.Popen | None = None
    error: str | None = None
    polls: int = 0

    @property
    def cluster_id(self) -> str:
        return f"0000-000000-emul{self.run_id:04d}"

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"life_cycle_state": self.life_cycle_state, "state_message": self.state_message, "user_cancelled_or_timedout": False}
        if self.result_state is not None:
            state["result_state"] = self.result_state
            state["user_cancelled_or_timedout"] = self.result_state in ("CANCELED", "TIMEDOUT")
        return state


class WorkspaceEmulator:
    """Start with `with WorkspaceEmulator(folder, token=...) as ws:`; point clients at `ws.host`."""

    def __init__(
        self,
        root: Path,
        *,
        token: str,
        python: str = sys.executable,
        startup_seconds: float = 0.3,
        spark_remote: str | None = None,
        runtime_spark_conf: Mapping[str, str] | None = None,
        cluster_env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.dbfs_root = self.root / "dbfs"
        self.runs_root = self.root / "runs"
        self.dbfs_root.mkdir(parents=True, exist_ok=True)
        self.runs_root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.python = python
        # A cluster takes a moment to come up; runs stay PENDING meanwhile, as on Databricks.
        self.startup_seconds = startup_seconds
        # The clusters' Spark: a Connect server's session, or a local JVM with the runtime's conf.
        self.spark_remote = spark_remote
        self.runtime_spark_conf = dict(runtime_spark_conf or {})
        # Variables the clusters' machines have of their own, besides CLUSTER_BASE_ENV.
        self.cluster_env = dict(cluster_env or {})
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.secrets: dict[tuple[str, str], str] = {}
        self.runs: dict[int, EmulatedRun] = {}
        self._handles: dict[int, tuple[str, bytearray]] = {}
        self._lock = threading.Lock()
        self._next_id = 1
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> WorkspaceEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                emulator._dispatch(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                emulator._dispatch(self, "POST")

            def do_DELETE(self) -> None:  # noqa: N802
                emulator._dispatch(self, "DELETE")

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # the call log is `emulator.calls`

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="databricks-emulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        for run in list(self.runs.values()):
            if run.process is not None and run.process.poll() is None:
                run.process.kill()
                run.process.wait()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def host(self) -> str:
        assert self._server is not None, "emulator not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---- introspection for tests ---------------------------------------------------------

    def paths_called(self, method: str | None = None) -> list[str]:
        return [p for m, p, _ in self.calls if method is None or m == method]

    def count(self, path_suffix: str) -> int:
        return sum(1 for _, p, _ in self.calls if p.endswith(path_suffix))

    def dbfs_file(self, dbfs_path: str) -> Path:
        return self.dbfs_root / normalize_dbfs(dbfs_path).lstrip("/")

    def wait_idle(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while any(r.life_cycle_state not in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED") for r in self.runs.values()):
            if time.monotonic() > deadline:
                raise TimeoutError("emulated runs still active")
            time.sleep(0.1)

    # ---- HTTP ----------------------------------------------------------------------------

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
            if handler.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(HTTPStatus.UNAUTHORIZED, "UNAUTHENTICATED", "Invalid access token.")
            params = {**query, **body}
            self.calls.append((method, url.path, {k: v for k, v in params.items() if k not in ("data", "contents")}))
            route = ROUTES.get((method, url.path.replace("/api/2.1/jobs/", "/api/2.2/jobs/")))
            if route is None:
                self.unhandled.append((method, url.path))
                raise ApiError(HTTPStatus.NOT_FOUND, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {url.path}'")
            status, payload = HTTPStatus.OK, route(self, params)
        except ApiError as exc:
            status, payload = exc.status, {"error_code": exc.code, "message": exc.message}
        except (ValueError, KeyError, TypeError) as exc:
            status, payload = HTTPStatus.BAD_REQUEST, {"error_code": "INVALID_PARAMETER_VALUE", "message": str(exc)}
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    # ---- DBFS ----------------------------------------------------------------------------

    def _local(self, path: str) -> Path:
        if not path or not str(path).startswith(("/", "dbfs:")):
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", f"Path must be absolute: {path}")
        return self.dbfs_file(path)

    def _status(self, path: Path, dbfs_path: str) -> dict[str, Any]:
        if not path.exists():
            raise ApiError(HTTPStatus.NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {dbfs_path}.")
        return {
            "path": normalize_dbfs(dbfs_path),
            "is_dir": path.is_dir(),
            "file_size": 0 if path.is_dir() else path.stat().st_size,
            "modification_time": int(path.stat().st_mtime * 1000),
        }

    def dbfs_get_status(self, p: Mapping[str, Any]) -> dict[str, Any]:
        return self._status(self._local(p["path"]), p["path"])

    def dbfs_list(self, p: Mapping[str, Any]) -> dict[str, Any]:
        path = self._local(p["path"])
        self._status(path, p["path"])
        if path.is_file():
            return {"files": [self._status(path, p["path"])]}
        base = normalize_dbfs(p["path"]).rstrip("/")
        return {"files": [self._status(c, f"{base}/{c.name}") for c in sorted(path.iterdir())]}

    def dbfs_mkdirs(self, p: Mapping[str, Any]) -> dict[str, Any]:
        path = self._local(p["path"])
        if path.is_file():
            raise ApiError(HTTPStatus.BAD_REQUEST, "RESOURCE_ALREADY_EXISTS", f"A file exists at {p['path']}")
        path.mkdir(parents=True, exist_ok=True)
        return {}

    def dbfs_create(self, p: Mapping[str, Any]) -> dict[str, Any]:
        path = self._local(p["path"])
        if path.exists() and not p.get("overwrite", False):
            raise ApiError(HTTPStatus.BAD_REQUEST, "RESOURCE_ALREADY_EXISTS", f"A file or directory already exists at the input path {p['path']}.")
        with self._lock:
            handle = self._next_id
            self._next_id += 1
            self._handles[handle] = (p["path"], bytearray())
        return {"handle": handle}

    def dbfs_add_block(self, p: Mapping[str, Any]) -> dict[str, Any]:
        block = base64.b64decode(p["data"])
        if len(block) > MAX_BLOCK_BYTES:
            raise ApiError(HTTPStatus.BAD_REQUEST, "MAX_BLOCK_SIZE_EXCEEDED", "Block size exceeds 1 MB")
        with self._lock:
            if int(p["handle"]) not in self._handles:
                raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_STATE", f"Unknown handle {p['handle']}")
            self._handles[int(p["handle"])][1].extend(block)
        return {}

    def dbfs_close(self, p: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            if int(p["handle"]) not in self._handles:
                raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_STATE", f"Unknown handle {p['handle']}")
            dbfs_path, content = self._handles.pop(int(p["handle"]))
        self._write(self._local(dbfs_path), bytes(content))
        return {}

    def dbfs_put(self, p: Mapping[str, Any]) -> dict[str, Any]:
        path = self._local(p["path"])
        if path.exists() and not p.get("overwrite", False):
            raise ApiError(HTTPStatus.BAD_REQUEST, "RESOURCE_ALREADY_EXISTS", f"A file already exists at {p['path']}.")
        self._write(path, base64.b64decode(p.get("contents", "")))
        return {}

    @staticmethod
    def _write(path: Path, content: bytes) -> None:
        # Written under a temporary name and renamed, so a concurrent read never sees half a file.
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.writing")
        tmp.write_bytes(content)
        tmp.replace(path)

    def dbfs_read(self, p: Mapping[str, Any]) -> dict[str, Any]:
        path = self._local(p["path"])
        self._status(path, p["path"])
        if path.is_dir():
            raise ApiError(HTTPStatus.BAD_REQUEST, "NOT_A_FILE", f"{p['path']} is a directory")
        offset, length = int(p.get("offset", 0)), int(p.get("length", 0) or MAX_BLOCK_BYTES)
        if length > MAX_BLOCK_BYTES:
            raise ApiError(HTTPStatus.BAD_REQUEST, "MAX_READ_SIZE_EXCEEDED", "Cannot read more than 1 MB at once")
        with path.open("rb") as f:
            f.seek(offset)
            chunk = f.read(length)
        return {"bytes_read": len(chunk), "data": base64.b64encode(chunk).decode()}

    def dbfs_delete(self, p: Mapping[str, Any]) -> dict[str, Any]:
        path = self._local(p["path"])
        if path.is_dir():
            if any(path.iterdir()) and not p.get("recursive", False):
                raise ApiError(HTTPStatus.BAD_REQUEST, "IO_ERROR", f"{p['path']} is a non-empty directory")
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        return {}

    # ---- secrets -------------------------------------------------------------------------

    def secrets_create_scope(self, p: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def secrets_put(self, p: Mapping[str, Any]) -> dict[str, Any]:
        self.secrets[(p["scope"], p["key"])] = p["string_value"]
        return {}

    # ---- jobs ----------------------------------------------------------------------------

    def runs_submit(self, p: Mapping[str, Any]) -> dict[str, Any]:
        tasks = p.get("tasks") or []
        if len(tasks) != 1:
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", "the emulator runs exactly one task per submitted run")
        task = tasks[0]
        if "spark_python_task" not in task:
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", "only spark_python_task is emulated")
        if not task.get("new_cluster") and not task.get("existing_cluster_id"):
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", "One of new_cluster or existing_cluster_id must be specified")
        python_file = task["spark_python_task"]["python_file"]
        if not self.dbfs_file(python_file).is_file():
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", f"python_file {python_file} does not exist")
        with self._lock:
            run_id = self._next_id
            self._next_id += 1
        run = EmulatedRun(run_id, p.get("run_name") or "Untitled", task, dict(p), self.runs_root / str(run_id))
        run.run_dir.mkdir(parents=True)
        self.runs[run_id] = run
        threading.Thread(target=self._execute, args=(run, p.get("timeout_seconds")), daemon=True).start()
        return {"run_id": run_id}

    def _run_json(self, run: EmulatedRun) -> dict[str, Any]:
        cluster = {"cluster_id": run.cluster_id, "spark_context_id": str(run.run_id)}
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
            "tasks": [
                {
                    "run_id": run.run_id,
                    "task_key": TASK_KEY,
                    "state": run.state(),
                    "cluster_instance": cluster,
                    "spark_python_task": run.task["spark_python_task"],
                    "libraries": run.task.get("libraries", []),
                    "start_time": run.start_time,
                    "end_time": run.end_time,
                }
            ],
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
        if run.process is not None and run.process.poll() is None:
            run.process.kill()
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

    def _execute(self, run: EmulatedRun, timeout_seconds: int | None) -> None:
        time.sleep(self.startup_seconds)
        problem = library_problem(run.task.get("libraries", []), self.dbfs_file)
        if problem:
            self._finish(run, "FAILED", f"Library installation failed: {problem}", life_cycle="INTERNAL_ERROR")
            return
        cluster = run.task.get("new_cluster") or {}
        spark_task = run.task["spark_python_task"]
        env = {k: os.environ[k] for k in CLUSTER_BASE_ENV if k in os.environ} | self.cluster_env
        env.update(
            {
                "DATABRICKS_RUNTIME_VERSION": str(cluster.get("spark_version", "emulated")),
                "SPARK_LOCAL_IP": "127.0.0.1",
                "PYSPARK_PYTHON": self.python,
                "EMULATOR_DBFS_ROOT": str(self.dbfs_root),
                "EMULATOR_SPARK_CONF": json.dumps(cluster.get("spark_conf") or {}),
                "EMULATOR_RUNTIME_SPARK_CONF": json.dumps(self.runtime_spark_conf),
                **({"EMULATOR_SPARK_REMOTE": self.spark_remote} if self.spark_remote else {}),
                "EMULATOR_SECRETS": json.dumps([{"scope": s, "key": k, "value": v} for (s, k), v in self.secrets.items()]),
                **{k: str(v) for k, v in (cluster.get("spark_env_vars") or {}).items()},
            }
        )
        # A notebook-free task sees DBFS through the /dbfs FUSE mount; here that mount is a folder.
        args = [self.python, str(CLUSTER_MAIN), str(self.dbfs_file(spark_task["python_file"]))]
        args += [str(self.dbfs_file(a[len("/dbfs") :])) if a.startswith("/dbfs/") else a for a in spark_task.get("parameters", [])]
        with self._lock:
            if run.life_cycle_state != "PENDING":
                return  # cancelled while the cluster was starting
            run.life_cycle_state, run.state_message = "RUNNING", "In run"
            run.process = subprocess.Popen(
                args,
                cwd=run.run_dir,
                env=env,
                stdout=(run.run_dir / "driver_stdout").open("wb"),
                stderr=(run.run_dir / "driver_stderr").open("wb"),
            )
        try:
            code = run.process.wait(timeout=timeout_seconds or None)
        except subprocess.TimeoutExpired:
            run.process.kill()
            run.process.wait()
            self._finish(run, "TIMEDOUT", f"Run timed out after {timeout_seconds} seconds.")
            return
        if code == 0:
            self._finish(run, "SUCCESS", "")
            return
        lines = [ln for ln in (run.run_dir / "driver_stderr").read_text(errors="replace").splitlines() if ln.strip()]
        run.error = lines[-1] if lines else f"exit code {code}"
        self._finish(run, "FAILED", "Workload failed, see run output for details")


def normalize_dbfs(path: str) -> str:
    """`dbfs:/a`, `dbfs:///a`, `//a`, `/a` all name DBFS path `/a`."""
    p = str(path)
    if p.startswith("dbfs:"):
        p = p[len("dbfs:") :]
    return posixpath.normpath("/" + p.lstrip("/"))


def library_problem(libraries: list[dict[str, Any]], dbfs_file) -> str | None:
    """What a cluster would fail to install: a PyPI pin the runtime's Python cannot satisfy
    (it is this virtualenv), Spark itself as a library, or a DBFS wheel that was never uploaded."""
    for lib in libraries:
        if "pypi" in lib:
            spec = lib["pypi"]["package"]
            name, _, pinned = spec.partition("==")
            if name.replace("_", "-").lower() in ("pyspark", "delta-spark"):
                return f"{spec} would replace the Databricks Runtime's own Spark"
            try:
                installed = version(name)
            except PackageNotFoundError:
                return f"{spec}: no such package on the emulated cluster"
            if pinned and installed != pinned:
                return f"{spec} conflicts with {name}=={installed} on the cluster"
        elif "whl" in lib:
            path = lib["whl"]
            if path.startswith("dbfs:") and not dbfs_file(path).is_file():
                return f"wheel {path} does not exist"
        elif "jar" in lib or "maven" in lib:
            return f"JVM libraries cannot be emulated: {lib}"
    return None


ROUTES = {
    ("GET", "/api/2.0/dbfs/get-status"): WorkspaceEmulator.dbfs_get_status,
    ("GET", "/api/2.0/dbfs/list"): WorkspaceEmulator.dbfs_list,
    ("GET", "/api/2.0/dbfs/read"): WorkspaceEmulator.dbfs_read,
    ("POST", "/api/2.0/dbfs/mkdirs"): WorkspaceEmulator.dbfs_mkdirs,
    ("POST", "/api/2.0/dbfs/create"): WorkspaceEmulator.dbfs_create,
    ("POST", "/api/2.0/dbfs/add-block"): WorkspaceEmulator.dbfs_add_block,
    ("POST", "/api/2.0/dbfs/close"): WorkspaceEmulator.dbfs_close,
    ("POST", "/api/2.0/dbfs/put"): WorkspaceEmulator.dbfs_put,
    ("POST", "/api/2.0/dbfs/delete"): WorkspaceEmulator.dbfs_delete,
    ("POST", "/api/2.0/secrets/scopes/create"): WorkspaceEmulator.secrets_create_scope,
    ("POST", "/api/2.0/secrets/put"): WorkspaceEmulator.secrets_put,
    ("POST", "/api/2.2/jobs/runs/submit"): WorkspaceEmulator.runs_submit,
    ("GET", "/api/2.2/jobs/runs/get"): WorkspaceEmulator.runs_get,
    ("GET", "/api/2.2/jobs/runs/get-output"): WorkspaceEmulator.runs_get_output,
    ("POST", "/api/2.2/jobs/runs/cancel"): WorkspaceEmulator.runs_cancel,
}
