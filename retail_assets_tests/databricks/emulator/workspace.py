"""`WorkspaceEmulator`: the loopback HTTP server, its routing and authentication."""

from __future__ import annotations

import importlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from . import compute, dbfs, files, jobs, oauth
from .compute import ClusterStart, ComputeApi, EmulatedCluster
from .dbfs import DBFS_DISABLED, DbfsApi, SecretsApi
from .errors import ApiError, RawResponse, Request
from .files import FilesApi
from .jobs import EmulatedRun, JobsApi, check_isolation, kill
from .oauth import IssuedToken, OAuthApi

ExactHandler = Callable[[Any, dict[str, Any]], Any]
PatternHandler = Callable[[Any, dict[str, Any], re.Match], Any]

# Exact-path routes: (method, path) → handler(emulator, params).
ROUTES: dict[tuple[str, str], ExactHandler] = {**dbfs.ROUTES, **compute.ROUTES, **jobs.ROUTES, **oauth.ROUTES}
# Regex routes: (method, full-match path regex, handler(emulator, params, match)), tried in order
# after the exact routes, then those of `_extra_routes()`.
PATTERN_ROUTES: list[tuple[str, re.Pattern, PatternHandler]] = [*files.PATTERN_ROUTES]
# Older API versions of the same endpoints.
ALIASES = (("/api/2.1/jobs/", "/api/2.2/jobs/"), ("/api/2.0/clusters/", "/api/2.1/clusters/"))
UNITY_CATALOG_MODULE = "retail_assets_tests.databricks.unity_catalog"
NOT_LOGGED = frozenset({"data", "contents", "client_secret", "string_value"})
AUTO = object()


def _unity_catalog_module():
    """The Unity Catalog + SQL warehouse emulation, when that module exists."""
    try:
        return importlib.import_module(UNITY_CATALOG_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != UNITY_CATALOG_MODULE:
            raise
        return None


def _extra_routes() -> list[tuple[str, re.Pattern, PatternHandler]]:
    """The hook for other emulated APIs: Unity Catalog's `ROUTES` (regex routes), if present."""
    module = _unity_catalog_module()
    return list(getattr(module, "ROUTES", [])) if module is not None else []


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if (handler.headers.get("Transfer-Encoding") or "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


class WorkspaceEmulator(DbfsApi, SecretsApi, FilesApi, ComputeApi, JobsApi, OAuthApi):
    """Start with `with WorkspaceEmulator(folder, token=...) as ws:`; point clients at `ws.host`.

    Options:
      token: the personal access token every call may carry (None: OAuth only).
      python: the cluster's interpreter (default: this one, i.e. this virtualenv).
      startup_seconds / pool_startup_seconds: how long a cluster takes to start (from a pool).
      spark_remote: a Spark Connect server the clusters attach to, else each starts a local JVM
        with `runtime_spark_conf`; cluster_env: variables every cluster machine has.
      dbfs_root_enabled: False = a workspace with DBFS root disabled (no DBFS API, no /dbfs).
      require_unity_catalog_access_mode: refuse clusters without a UC access mode.
      service_principals: OAuth M2M clients, {client_id: secret}; oauth_token_seconds: their
        tokens' lifetime.
      files_page_size: the most entries one Files API directory listing page holds (≤ 1000).
      catalog: the Unity Catalog emulation (default: `UnityCatalog` of
        `retail_assets_tests.databricks.unity_catalog` when that module exists; None: none).

    Attributes for tests: `calls` [(method, path, params)], `authenticated` [(method, path,
    principal)], `unhandled`, `errors` (emulator exceptions), `secrets`, `runs`, `clusters`,
    `clusters_created` [ClusterStart], `cluster_runs` {cluster id: [run ids]},
    `instance_pools`, `tokens_issued` [IssuedToken], `catalog`, `volumes_root`, `dbfs_root`.
    """

    def __init__(
        self,
        root: Path,
        *,
        token: str | None = None,
        python: str = sys.executable,
        startup_seconds: float = 0.3,
        pool_startup_seconds: float = 0.05,
        spark_remote: str | None = None,
        runtime_spark_conf: Mapping[str, str] | None = None,
        cluster_env: Mapping[str, str] | None = None,
        dbfs_root_enabled: bool = True,
        require_unity_catalog_access_mode: bool = True,
        service_principals: Mapping[str, str] | None = None,
        oauth_token_seconds: float = 3600,
        files_page_size: int = files.MAX_PAGE,
        catalog: Any = AUTO,
    ) -> None:
        self.root = Path(root)
        self.dbfs_root = self.root / "dbfs"
        self.volumes_root = self.root / "volumes"
        self.runs_root = self.root / "runs"
        for folder in (self.dbfs_root, self.volumes_root, self.runs_root):
            folder.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.python = python
        # A cluster takes a moment to come up; runs stay PENDING meanwhile, as on Databricks.
        self.startup_seconds = startup_seconds
        self.pool_startup_seconds = pool_startup_seconds
        # The clusters' Spark: a Connect server's session, or a local JVM with the runtime's conf.
        self.spark_remote = spark_remote
        self.runtime_spark_conf = dict(runtime_spark_conf or {})
        # Variables the clusters' machines have of their own, besides CLUSTER_BASE_ENV.
        self.cluster_env = dict(cluster_env or {})
        self.dbfs_root_enabled = dbfs_root_enabled
        self.require_unity_catalog_access_mode = require_unity_catalog_access_mode
        self.service_principals = dict(service_principals or {})
        self.oauth_token_seconds = oauth_token_seconds
        self.files_page_size = max(1, min(int(files_page_size), files.MAX_PAGE))

        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.authenticated: list[tuple[str, str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.secrets: dict[tuple[str, str], str] = {}
        self.runs: dict[int, EmulatedRun] = {}
        self.clusters: dict[str, EmulatedCluster] = {}
        self.clusters_created: list[ClusterStart] = []
        self.cluster_runs: dict[str, list[int]] = {}
        self.cluster_library_statuses: dict[str, list[dict[str, Any]]] = {}
        self.instance_pools: dict[str, dict[str, Any]] = {}
        self.tokens_issued: list[IssuedToken] = []
        self._oauth_tokens: dict[str, IssuedToken] = {}
        self._volumes: set[tuple[str, str, str]] = set()
        self._handles: dict[int, tuple[str, bytearray]] = {}
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._next_id = 1
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._unshare: str | None = None
        self._pattern_routes: list[tuple[str, re.Pattern, PatternHandler]] = list(PATTERN_ROUTES)
        self.catalog = self._make_catalog() if catalog is AUTO else catalog

    def _make_catalog(self) -> Any:
        """An empty metastore of the Unity Catalog emulation, if that module exists."""
        module = _unity_catalog_module()
        return module.UnityCatalog() if module is not None else None

    # ---- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> WorkspaceEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Serve on a loopback port. Raises `ClusterIsolationError` when clusters could not get
        their private /Volumes (and /dbfs) mounts here."""
        self._unshare = check_isolation(self.volumes_root, self.dbfs_root if self.dbfs_root_enabled else None)
        self._pattern_routes = [*PATTERN_ROUTES, *_extra_routes()]
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                emulator._dispatch(self, "GET")

            def do_HEAD(self) -> None:
                emulator._dispatch(self, "HEAD")

            def do_POST(self) -> None:
                emulator._dispatch(self, "POST")

            def do_PUT(self) -> None:
                emulator._dispatch(self, "PUT")

            def do_PATCH(self) -> None:
                emulator._dispatch(self, "PATCH")

            def do_DELETE(self) -> None:
                emulator._dispatch(self, "DELETE")

            def log_message(self, format: str, *args: object) -> None:
                pass  # the call log is `emulator.calls`

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="databricks-emulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        for run in list(self.runs.values()):
            kill(run.process)
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

    def wait_idle(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while any(r.life_cycle_state not in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED") for r in self.runs.values()):
            if time.monotonic() > deadline:
                raise TimeoutError("emulated runs still active")
            time.sleep(0.1)

    @property
    def request(self) -> Request:
        """The request this thread is handling (raw body, headers, principal)."""
        return self._tls.request

    def _new_id(self) -> int:
        with self._lock:
            value = self._next_id
            self._next_id += 1
        return value

    # ---- HTTP ----------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[Callable[..., Any] | None, re.Match | None]:
        exact = path
        for old, new in ALIASES:
            exact = exact.replace(old, new, 1) if exact.startswith(old) else exact
        if (method, exact) in ROUTES:
            return ROUTES[(method, exact)], None
        for route_method, pattern, handler in self._pattern_routes:
            if route_method == method and (match := pattern.fullmatch(path)) is not None:
                return handler, match
        return None, None

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        headers = {"Content-Type": "application/json"}
        try:
            raw = _read_body(handler)
            route, match = self._route(method, path)
            principal = None if path in oauth.PUBLIC_PATHS else self.principal_of(handler.headers.get("Authorization"))
            content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if content_type == "application/x-www-form-urlencoded":
                body: Any = {k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
            elif content_type == "application/octet-stream" or not raw:
                body = {}
            else:
                body = json.loads(raw)
            params = {**query, **body} if isinstance(body, dict) else dict(query)
            self._tls.request = Request(method, path, query, dict(handler.headers.items()), raw, principal)
            self.calls.append((method, path, {k: v for k, v in params.items() if k not in NOT_LOGGED}))
            if principal is not None:
                self.authenticated.append((method, path, principal))
            if path.startswith("/api/2.0/dbfs/") and not self.dbfs_root_enabled:
                raise ApiError(HTTPStatus.FORBIDDEN, "FEATURE_DISABLED", DBFS_DISABLED)
            if route is None:
                self.unhandled.append((method, path))
                raise ApiError(HTTPStatus.NOT_FOUND, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")
            result = route(self, params) if match is None else route(self, params, match)
            if isinstance(result, RawResponse):
                status, headers, data = result.status, result.headers, result.body
            else:
                status, data = HTTPStatus.OK, json.dumps(result if result is not None else {}).encode()
        except ApiError as exc:
            status, data = exc.status, json.dumps(exc.payload()).encode()
        except (ValueError, KeyError, TypeError) as exc:
            status = HTTPStatus.BAD_REQUEST
            data = json.dumps(
                {"error_code": "INVALID_PARAMETER_VALUE", "message": f"{type(exc).__name__}: {exc}"}
            ).encode()
        except Exception as exc:  # noqa: BLE001 - an emulator bug: say so instead of hanging the client
            self.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            data = json.dumps(
                {"error_code": "INTERNAL_ERROR", "message": f"emulator error: {type(exc).__name__}: {exc}"}
            ).encode()
        finally:
            self._tls.request = None
        try:
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            if status != HTTPStatus.NO_CONTENT and "Content-Length" not in headers:
                handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            if method != "HEAD" and status != HTTPStatus.NO_CONTENT:
                handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away
