"""The workspace emulator itself, driven through databricks-sdk's `WorkspaceClient` as the
project's code drives a real workspace: the Files API on Unity Catalog volumes, what a cluster
sees of `/Volumes` and `/dbfs`, a workspace without DBFS root, all-purpose clusters and
instance pools, runtimes and wheel libraries, and OAuth machine-to-machine credentials.

Few tasks really run (each is a Python process on the emulated cluster): one on a pool cluster
that looks at its mounts and environment, one on an all-purpose cluster, one on a workspace
without DBFS root. Everything else stops before a cluster process starts.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, InvalidParameterValue, NotFound, PermissionDenied, ResourceConflict
from databricks.sdk.service import compute, jobs
from databricks.sdk.service.catalog import VolumeType

from retail_assets.lib.engine.spark import REMOTE_ENV
from retail_assets_tests.databricks.emulator import (
    ClusterIsolationError,
    LibraryError,
    WorkspaceEmulator,
    install_libraries,
    read_wheel,
    runtimes,
)
from retail_assets_tests.databricks.emulator.libraries import wheel_problem

pytestmark = pytest.mark.databricks

TOKEN = "dapi-emulator-test-token"
SP_ID, SP_SECRET = "3f1e-sp-pipeline", "dose-very-secret-value"
RUNTIME = "19.x-scala2.13"
STARTUP_S = 1.5  # a job cluster's start-up: long enough to tell from a run on a running cluster
TERMINAL = {"TERMINATED", "INTERNAL_ERROR", "SKIPPED"}
DEDICATED = compute.DataSecurityMode.SINGLE_USER


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    emulator = WorkspaceEmulator(
        tmp_path_factory.mktemp("emulated_workspace"),
        token=TOKEN,
        spark_remote=os.environ.get(REMOTE_ENV),
        startup_seconds=STARTUP_S,
        pool_startup_seconds=0.05,
        files_page_size=3,
        service_principals={SP_ID: SP_SECRET},
    )
    with emulator:
        yield emulator


@pytest.fixture(scope="module")
def w(ws) -> WorkspaceClient:
    return WorkspaceClient(host=ws.host, token=TOKEN, auth_type="pat")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def wait_for(w: WorkspaceClient, run_id: int, timeout: float = 180) -> jobs.Run:
    deadline = time.monotonic() + timeout
    while True:
        run = w.jobs.get_run(run_id)
        if run.state.life_cycle_state.value in TERMINAL:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run.state.life_cycle_state}"
        time.sleep(0.2)


def python_task(python_file: str, *parameters: str) -> jobs.SparkPythonTask:
    return jobs.SparkPythonTask(python_file=python_file, parameters=list(parameters))


def job_cluster(**spec) -> compute.ClusterSpec:
    return compute.ClusterSpec(**{"spark_version": RUNTIME, "num_workers": 1, "data_security_mode": DEDICATED, **spec})


def submit(w: WorkspaceClient, task: jobs.SparkPythonTask, *, libraries=(), **cluster) -> int:
    """A one-task run, as dagster-databricks submits it; returns the run id without waiting."""
    return w.jobs.submit(
        run_name="emulator-test",
        tasks=[jobs.SubmitTask(task_key="t", spark_python_task=task, libraries=list(libraries) or None, **cluster)],
    ).run_id


# ---- wheels ------------------------------------------------------------------------------

# A PEP 517 build backend in the package's own tree (`backend-path`), so `pip wheel` builds the
# wheel offline: what it writes is what `wheel.json` says.
BACKEND = """
import base64, hashlib, json, os, zipfile

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    spec = json.load(open("wheel.json"))
    name, version = spec["name"], spec["version"]
    dist = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n"
    metadata += "".join(f"Requires-Dist: {r}\\n" for r in spec["requires"])
    files = {f"{name}/__init__.py": b"VERSION = %r\\n" % version, f"{dist}/METADATA": metadata.encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: test-backend\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}" for p, d in files.items()]
    wheel = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{dist}/RECORD", "\\n".join(record + [f"{dist}/RECORD,,"]) + "\\n")
    return wheel
"""
PYPROJECT = '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'


def pip_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A wheel built by `pip wheel --no-deps` from a tiny package."""
    source = folder / f"src-{name}"
    (source / name).mkdir(parents=True)
    (source / name / "__init__.py").write_text("")
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "backend.py").write_text(BACKEND)
    (source / "wheel.json").write_text(json.dumps({"name": name, "version": version, "requires": requires}))
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-index",
            "-q",
            "-w",
            str(folder / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return folder / "dist" / f"{name}-{version}-py3-none-any.whl"


def zip_wheel(path: Path, metadata: str | None, *, name: str = "tinypkg", version: str = "0.1.0") -> Path:
    """A wheel-shaped zip, written directly, with `metadata` as its METADATA (None: none)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        if metadata is not None:
            zf.writestr(f"{name}-{version}.dist-info/METADATA", metadata)
    return path


def metadata(*requires: str, name: str = "tinypkg", version: str = "0.1.0", requires_python: str | None = None) -> str:
    text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    text += f"Requires-Python: {requires_python}\n" if requires_python else ""
    return text + "".join(f"Requires-Dist: {r}\n" for r in requires)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheels")
    return {
        # On runtime 19 (Spark 4.2): its pyspark pin is the runtime's, the old pin only with an extra.
        "good": pip_wheel(
            folder, "goodpkg", "1.2.0", ["pyspark>=4.2,<4.3", "click>=8", "pyspark==3.5.0; extra == 'old'"]
        ),
        # Would bring another Spark over the runtime's.
        "newer_spark": pip_wheel(folder, "sparkypkg", "0.3.0", ["pyspark>=4.3"]),
    }


# ---- Files API ---------------------------------------------------------------------------


def test_files_api_serves_a_volume_as_the_sdk_calls_it(ws, w):
    catalog = unique("files")
    folder = ws.create_volume(catalog, "landing", "raw")
    base = f"/Volumes/{catalog}/landing/raw"
    assert folder == ws.volume_path(base) and folder.is_dir()

    w.files.upload(f"{base}/stores/2026-11-02/a.jsonl", io.BytesIO(b'{"store_id": "S1"}\n'))
    # Parents were created, the bytes are on disk where the volume is, and read back the same.
    assert ws.volume_path(f"{base}/stores/2026-11-02/a.jsonl").read_bytes() == b'{"store_id": "S1"}\n'
    assert w.files.download(f"{base}/stores/2026-11-02/a.jsonl").contents.read() == b'{"store_id": "S1"}\n'

    # A file a test drops "into the volume" is served as uploaded ones are.
    dropped = ws.volume_path(f"{base}/stores/2026-11-02/b.jsonl")
    dropped.write_bytes(b"0123456789")
    meta = w.files.get_metadata(f"{base}/stores/2026-11-02/b.jsonl")
    assert meta.content_length == 10 and meta.content_type == "application/octet-stream"
    assert abs(parsedate_to_datetime(meta.last_modified).timestamp() - dropped.stat().st_mtime) < 1.5

    # Directories: idempotent create, metadata, listing with sizes and millisecond times.
    w.files.create_directory(f"{base}/stores/2026-11-03")
    w.files.create_directory(f"{base}/stores/2026-11-03")
    w.files.get_directory_metadata(f"{base}/stores/2026-11-03")
    entries = {e.name: e for e in w.files.list_directory_contents(f"{base}/stores")}
    assert set(entries) == {"2026-11-02", "2026-11-03"} and all(e.is_directory for e in entries.values())
    assert entries["2026-11-02"].path == f"{base}/stores/2026-11-02/"
    files = {e.name: e for e in w.files.list_directory_contents(f"{base}/stores/2026-11-02")}
    assert {n: (e.is_directory, e.file_size, e.path) for n, e in files.items()} == {
        "a.jsonl": (False, 19, f"{base}/stores/2026-11-02/a.jsonl"),
        "b.jsonl": (False, 10, f"{base}/stores/2026-11-02/b.jsonl"),
    }
    assert files["b.jsonl"].last_modified == int(dropped.stat().st_mtime * 1000)

    # No overwrite when asked not to; a non-empty directory is not deleted.
    with pytest.raises(ResourceConflict):
        w.files.upload(f"{base}/stores/2026-11-02/a.jsonl", io.BytesIO(b"other"), overwrite=False)
    assert ws.volume_path(f"{base}/stores/2026-11-02/a.jsonl").read_bytes() == b'{"store_id": "S1"}\n'
    w.files.upload(f"{base}/stores/2026-11-02/a.jsonl", io.BytesIO(b"replaced"), overwrite=True)
    assert w.files.download(f"{base}/stores/2026-11-02/a.jsonl").contents.read() == b"replaced"
    with pytest.raises(ResourceConflict):
        w.files.delete_directory(f"{base}/stores/2026-11-02")

    # Deletes: a file, then its emptied directory; both are gone for the API and on disk.
    w.files.delete(f"{base}/stores/2026-11-02/a.jsonl")
    w.files.delete(f"{base}/stores/2026-11-02/b.jsonl")
    with pytest.raises(NotFound):
        w.files.get_metadata(f"{base}/stores/2026-11-02/a.jsonl")
    with pytest.raises(NotFound):
        w.files.download(f"{base}/stores/2026-11-02/b.jsonl")
    w.files.delete_directory(f"{base}/stores/2026-11-02")
    with pytest.raises(NotFound):
        w.files.get_directory_metadata(f"{base}/stores/2026-11-02")
    assert not ws.volume_path(f"{base}/stores/2026-11-02").exists()
    assert not ws.unhandled and not ws.errors


def test_a_range_request_reads_part_of_a_file(ws):
    catalog = unique("range")
    ws.create_volume(catalog, "s", "v")
    ws.volume_path(f"/Volumes/{catalog}/s/v/f.bin").write_bytes(bytes(range(100)))
    url = f"{ws.host}/api/2.0/fs/files/Volumes/{catalog}/s/v/f.bin"
    part = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}", "Range": "bytes=10-19"}, timeout=10)
    assert part.status_code == 206 and part.content == bytes(range(10, 20))
    assert part.headers["Content-Range"] == "bytes 10-19/100"


def test_directory_listing_pages_with_the_sdk_following_the_token(ws, w):
    catalog = unique("paging")
    ws.create_volume(catalog, "s", "v")
    base = f"/Volumes/{catalog}/s/v/many"
    names = [f"f{i:02d}.json" for i in range(7)]
    for name in names:
        w.files.upload(f"{base}/{name}", io.BytesIO(name.encode()))
    listing_path = f"/api/2.0/fs/directories{base}"

    before = ws.paths_called("GET").count(listing_path)
    assert [e.name for e in w.files.list_directory_contents(base)] == names
    # The workspace pages at 3 entries (files_page_size): three requests, the sdk following the token.
    requests_made = [params for m, p, params in ws.calls if m == "GET" and p == listing_path][before:]
    assert len(requests_made) == 3
    assert "page_token" not in requests_made[0] and all("page_token" in r for r in requests_made[1:])

    # A smaller page_size from the client is honoured (4 pages of 2).
    before = ws.paths_called("GET").count(listing_path)
    assert [e.name for e in w.files.list_directory_contents(base, page_size=2)] == names
    assert ws.paths_called("GET").count(listing_path) - before == 4

    # A token is this directory's only.
    with pytest.raises(BadRequest):
        list(
            w.files.list_directory_contents(
                f"/Volumes/{catalog}/s/v",
                page_token=base64.urlsafe_b64encode(b'{"path": "/elsewhere", "after": ""}').decode(),
            )
        )


def test_a_missing_volume_is_not_found_and_a_path_outside_volumes_a_bad_request(ws, w):
    catalog = unique("nowhere")
    with pytest.raises(NotFound, match=f"{catalog}.s.v"):
        w.files.upload(f"/Volumes/{catalog}/s/v/x.txt", io.BytesIO(b"x"))
    with pytest.raises(NotFound):
        list(w.files.list_directory_contents(f"/Volumes/{catalog}/s/v"))
    assert not ws.volume_path(f"/Volumes/{catalog}/s/v/x.txt").exists()
    for path in ("/tmp/x.txt", "/dbfs/x.txt", "/Volumes/only-a-catalog"):
        with pytest.raises(BadRequest):
            w.files.upload(path, io.BytesIO(b"x"))


class StubCatalog:
    """The two calls the Files API makes of a catalog, recorded."""

    def __init__(self) -> None:
        self.volumes: set[tuple[str, str, str]] = set()
        self.asked: list[tuple[str, str, str]] = []

    def volume_exists(self, catalog: str, schema: str, volume: str) -> bool:
        self.asked.append((catalog, schema, volume))
        return (catalog, schema, volume) in self.volumes

    def create_volume(self, catalog: str, schema: str, name: str) -> None:
        self.volumes.add((catalog, schema, name))


def test_files_api_asks_the_catalog_which_volumes_exist(tmp_path):
    stub = StubCatalog()
    with WorkspaceEmulator(tmp_path, token=TOKEN, catalog=stub) as ws:
        w = WorkspaceClient(host=ws.host, token=TOKEN, auth_type="pat")
        ws.create_volume("retail", "prod_bronze", "landing")
        assert stub.volumes == {("retail", "prod_bronze", "landing")}
        w.files.upload("/Volumes/retail/prod_bronze/landing/a.txt", io.BytesIO(b"a"))
        assert ("retail", "prod_bronze", "landing") in stub.asked
        stub.volumes.clear()  # the volume is dropped in Unity Catalog: its files are gone for the API
        with pytest.raises(NotFound):
            w.files.download("/Volumes/retail/prod_bronze/landing/a.txt")


def test_the_unity_catalog_emulation_is_wired_in(ws, w):
    unity_catalog = pytest.importorskip("retail_assets_tests.databricks.unity_catalog")
    assert isinstance(ws.catalog, unity_catalog.UnityCatalog)
    catalog = unique("uc")
    # A volume created through Unity Catalog's REST API is one the Files API serves.
    w.catalogs.create(catalog)
    w.schemas.create("landing", catalog)
    w.volumes.create(catalog, "landing", "raw", VolumeType.MANAGED)
    w.files.upload(f"/Volumes/{catalog}/landing/raw/a.txt", io.BytesIO(b"uc"))
    assert ws.volume_path(f"/Volumes/{catalog}/landing/raw/a.txt").read_bytes() == b"uc"
    w.volumes.delete(f"{catalog}.landing.raw")
    with pytest.raises(NotFound):
        w.files.download(f"/Volumes/{catalog}/landing/raw/a.txt")


# ---- the emulated cluster: mounts, environment, OAuth ----------------------------------------

PROBE = r"""
import json, os, sys
out_path, dbfs_input = sys.argv[1], sys.argv[2]
report = {
    "argv": sys.argv,
    "volume": sorted(os.listdir(os.path.dirname(out_path))),
    "volume_file": open(os.path.join(os.path.dirname(out_path), "input.txt")).read(),
    "dbfs_file": open(dbfs_input).read(),
    "dbutils_ls": dbutils.fs.ls(os.path.dirname(out_path)),
    "secret": dbutils.secrets.get("pipeline", "kafka-password") == "kafka-secret-value",
    "env": dict(os.environ),
}
with open(out_path, "w") as handle:
    json.dump(report, handle)
"""


@pytest.fixture(scope="module")
def probe_run(ws, wheels):
    """A task on a pool cluster, submitted with OAuth M2M credentials, that reports what it sees."""
    catalog = unique("mounts")
    folder = ws.create_volume(catalog, "artifacts", "files")
    base = f"/Volumes/{catalog}/artifacts/files"
    pool = ws.create_instance_pool("warm-pool")
    sp = WorkspaceClient(host=ws.host, client_id=SP_ID, client_secret=SP_SECRET, auth_type="oauth-m2m")
    sp.files.upload(f"{base}/probe.py", io.BytesIO(PROBE.encode()))
    sp.files.upload(f"{base}/input.txt", io.BytesIO(b"from the volume"))
    sp.files.upload(f"{base}/{wheels['good'].name}", io.BytesIO(wheels["good"].read_bytes()))
    ws.dbfs_file("/staging/input.txt").parent.mkdir(parents=True, exist_ok=True)
    ws.dbfs_file("/staging/input.txt").write_text("from dbfs")
    sp.secrets.create_scope("pipeline")
    sp.secrets.put_secret("pipeline", "kafka-password", string_value="kafka-secret-value")
    run_id = submit(
        sp,
        python_task(f"{base}/probe.py", f"{base}/report.json", "/dbfs/staging/input.txt"),
        libraries=[compute.Library(whl=f"{base}/{wheels['good'].name}")],
        new_cluster=job_cluster(instance_pool_id=pool),
    )
    run = wait_for(sp, run_id)
    return {
        "catalog": catalog,
        "folder": folder,
        "base": base,
        "pool": pool,
        "run": run,
        "sp": sp,
        "emulated": ws.runs[run_id],
    }


def test_a_cluster_sees_volumes_and_dbfs_as_folders_the_host_does_not(ws, probe_run):
    run, emulated = probe_run["run"], probe_run["emulated"]
    assert run.state.result_state == jobs.RunResultState.SUCCESS, (emulated.run_dir / "driver_stderr").read_text()[
        -3000:
    ]
    report = json.loads((probe_run["folder"] / "report.json").read_text())
    base = probe_run["base"]
    # The task's paths arrived as Databricks names them, and were real folders on the cluster.
    assert report["argv"] == [f"{base}/probe.py", f"{base}/report.json", "/dbfs/staging/input.txt"]
    assert report["volume_file"] == "from the volume" and report["dbfs_file"] == "from dbfs"
    assert {"probe.py", "input.txt"} <= set(report["volume"]) and report["dbutils_ls"] == report["volume"]
    assert report["secret"] is True
    # The host (this test process, like a Dagster code server) sees nothing of the volume.
    assert not Path("/Volumes", probe_run["catalog"]).exists()
    assert not Path("/dbfs/staging/input.txt").exists()


def test_a_pool_cluster_starts_for_the_run_and_reports_the_wheel(ws, probe_run):
    emulated = probe_run["emulated"]
    (start,) = [c for c in ws.clusters_created if c.run_id == emulated.run_id]
    assert start.from_pool and start.instance_pool_id == probe_run["pool"]
    assert ws.cluster_runs[start.cluster_id] == [emulated.run_id]
    assert emulated.cluster_wait < STARTUP_S  # a pool's warm instance, not a cold start
    statuses = list(probe_run["sp"].libraries.cluster_status(start.cluster_id))
    (wheel,) = [s for s in statuses if s.library.whl]
    assert wheel.status == compute.LibraryInstallStatus.INSTALLED
    assert "goodpkg==1.2.0" in wheel.messages
    assert ws.clusters[start.cluster_id].state == "TERMINATED"  # a job cluster ends with its run


def test_oauth_m2m_tokens_are_issued_and_accepted_and_never_reach_the_cluster(ws, probe_run):
    emulated = probe_run["emulated"]
    # The sdk found the token endpoint, then traded the client secret for a bearer token.
    assert ("GET", "/oidc/.well-known/oauth-authorization-server") in [(m, p) for m, p, _ in ws.calls]
    token_calls = [params for m, p, params in ws.calls if (m, p) == ("POST", "/oidc/v1/token")]
    assert token_calls and all(c["grant_type"] == "client_credentials" for c in token_calls)
    issued = [t for t in ws.tokens_issued if t.client_id == SP_ID]
    assert issued and all(t.expires_at > t.issued_at for t in issued)
    assert emulated.submitted_by == f"sp:{SP_ID}"
    assert ("POST", "/api/2.2/jobs/runs/submit", f"sp:{SP_ID}") in ws.authenticated
    # What the cluster's process was started with, and what it saw, hold no credential.
    report = json.loads((probe_run["folder"] / "report.json").read_text())
    assert report["env"]["DATABRICKS_RUNTIME_VERSION"] == "19"
    for environment in (emulated.cluster_environment, report["env"]):
        values = "\n".join(f"{k}={v}" for k, v in environment.items())
        for credential in (SP_SECRET, TOKEN, "kafka-secret-value", *(t.access_token for t in ws.tokens_issued)):
            assert credential not in values
        assert not {k for k in environment if "TOKEN" in k or "SECRET" in k.replace("SECRETS_FILE", "")}
    assert not (emulated.run_dir / "secrets.json").exists()  # read once, then gone


def test_a_wrong_client_secret_gets_an_oauth_error(ws):
    issued = len(ws.tokens_issued)
    with pytest.raises(ValueError, match="invalid_client"):
        WorkspaceClient(
            host=ws.host, client_id=SP_ID, client_secret="not-the-secret", auth_type="oauth-m2m"
        ).clusters.spark_versions()
    answer = requests.post(
        f"{ws.host}/oidc/v1/token",
        data={"grant_type": "client_credentials", "scope": "all-apis"},
        auth=(SP_ID, "not-the-secret"),
        timeout=10,
    )
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    assert answer.headers["Content-Type"].startswith("application/json")
    assert len(ws.tokens_issued) == issued  # no token for a wrong secret
    # Only the PAT or an issued token opens the API.
    assert (
        requests.get(
            f"{ws.host}/api/2.1/clusters/list", headers={"Authorization": "Bearer made-up"}, timeout=10
        ).status_code
        == 401
    )


def test_an_expired_oauth_token_is_refused(tmp_path):
    with WorkspaceEmulator(tmp_path, service_principals={SP_ID: SP_SECRET}, oauth_token_seconds=1) as ws:
        token = requests.post(
            f"{ws.host}/oidc/v1/token", data={"grant_type": "client_credentials"}, auth=(SP_ID, SP_SECRET), timeout=10
        ).json()
        assert token["token_type"] == "Bearer" and token["expires_in"] == 1
        url, headers = f"{ws.host}/api/2.1/clusters/list", {"Authorization": f"Bearer {token['access_token']}"}
        assert requests.get(url, headers=headers, timeout=10).status_code == 200
        time.sleep(1.1)
        assert requests.get(url, headers=headers, timeout=10).status_code == 401
        assert [t.access_token for t in ws.tokens_issued] == [token["access_token"]]


# ---- clusters ----------------------------------------------------------------------------


def test_a_run_on_a_running_all_purpose_cluster_starts_at_once(ws, w, tmp_path):
    catalog = unique("shared")
    ws.create_volume(catalog, "s", "v")
    ws.volume_path(f"/Volumes/{catalog}/s/v/noop.py").write_text(
        "import os\nprint('on', os.environ['DATABRICKS_RUNTIME_VERSION'])\n"
    )
    cluster_id = w.clusters.create(
        spark_version=RUNTIME, cluster_name="shared", num_workers=1, data_security_mode=DEDICATED
    ).cluster_id
    assert w.clusters.get(cluster_id).state == compute.State.PENDING
    assert w.clusters.wait_get_cluster_running(cluster_id).state == compute.State.RUNNING
    created = len(ws.clusters_created)

    run_id = submit(w, python_task(f"/Volumes/{catalog}/s/v/noop.py"), existing_cluster_id=cluster_id)
    run = wait_for(w, run_id)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, (
        ws.runs[run_id].run_dir / "driver_stderr"
    ).read_text()[-3000:]
    assert run.tasks[0].cluster_instance.cluster_id == cluster_id
    assert ws.runs[run_id].cluster_wait < 0.5 * STARTUP_S  # no cluster start-up
    assert len(ws.clusters_created) == created  # no job cluster was made
    assert ws.cluster_runs[cluster_id] == [run_id]
    assert w.clusters.get(cluster_id).state == compute.State.RUNNING  # it outlives the run
    assert "on 19" in (ws.runs[run_id].run_dir / "driver_stdout").read_text()


def test_a_terminated_cluster_starts_again_on_request(ws, w):
    cluster_id = ws.create_cluster(spark_version=RUNTIME, data_security_mode="SINGLE_USER", state="TERMINATED")
    assert w.clusters.get(cluster_id).state == compute.State.TERMINATED
    w.clusters.start(cluster_id)
    assert w.clusters.get(cluster_id).state == compute.State.PENDING
    assert w.clusters.wait_get_cluster_running(cluster_id).state == compute.State.RUNNING
    with pytest.raises(BadRequest, match="unexpected state"):
        w.clusters.start(cluster_id)
    w.clusters.delete(cluster_id)
    assert w.clusters.get(cluster_id).state == compute.State.TERMINATED


def test_cluster_specs_are_validated_at_submit(ws, w):
    catalog = unique("specs")
    ws.create_volume(catalog, "s", "v")
    script = f"/Volumes/{catalog}/s/v/noop.py"
    ws.volume_path(script).write_text("pass\n")
    submitted = ws.count("/jobs/runs/submit")
    with pytest.raises(BadRequest, match="Instance pool .* does not exist"):
        submit(w, python_task(script), new_cluster=job_cluster(instance_pool_id="0000-no-such-pool"))
    with pytest.raises(InvalidParameterValue, match=r"Invalid spark version '16\.4\.x-scala2\.12'"):
        submit(w, python_task(script), new_cluster=job_cluster(spark_version="16.4.x-scala2.12"))
    with pytest.raises(BadRequest, match="Cluster 0000-nope does not exist"):
        submit(w, python_task(script), existing_cluster_id="0000-nope")
    # No Unity Catalog access mode: no access to Unity Catalog.
    for mode in (None, compute.DataSecurityMode.NONE, compute.DataSecurityMode.LEGACY_SINGLE_USER):
        with pytest.raises(BadRequest, match=r"\[UC_NOT_ENABLED\]"):
            submit(w, python_task(script), new_cluster=job_cluster(data_security_mode=mode))
    no_uc = ws.create_cluster(spark_version=RUNTIME)
    with pytest.raises(BadRequest, match=r"\[UC_NOT_ENABLED\]"):
        submit(w, python_task(script), existing_cluster_id=no_uc)
    assert ws.count("/jobs/runs/submit") - submitted == 7 and not [
        r for r in ws.runs.values() if r.task["spark_python_task"]["python_file"] == script
    ]
    for mode in (
        "USER_ISOLATION",
        "DATA_SECURITY_MODE_DEDICATED",
        "DATA_SECURITY_MODE_STANDARD",
        "DATA_SECURITY_MODE_AUTO",
    ):
        ws.check_access_mode({"data_security_mode": mode})  # the other UC access modes pass


def test_the_access_mode_check_can_be_turned_off(tmp_path):
    with WorkspaceEmulator(tmp_path, token=TOKEN, require_unity_catalog_access_mode=False, startup_seconds=30) as ws:
        w = WorkspaceClient(host=ws.host, token=TOKEN, auth_type="pat")
        w.dbfs.upload("/noop.py", io.BytesIO(b"pass\n"))
        run_id = submit(w, python_task("dbfs:/noop.py"), new_cluster=job_cluster(data_security_mode=None))
        w.jobs.cancel_run(run_id)  # while its cluster starts: no process ever runs
        run = wait_for(w, run_id)
        assert run.state.result_state == jobs.RunResultState.CANCELED
        assert ws.runs[run_id].process is None


# ---- runtimes and libraries ----------------------------------------------------------------


def test_a_runtime_whose_spark_is_not_the_installed_one_cannot_be_emulated(ws, w):
    catalog = unique("old")
    ws.create_volume(catalog, "s", "v")
    ws.volume_path(f"/Volumes/{catalog}/s/v/noop.py").write_text("pass\n")
    run_id = submit(
        w, python_task(f"/Volumes/{catalog}/s/v/noop.py"), new_cluster=job_cluster(spark_version="17.3.x-scala2.13")
    )
    run = wait_for(w, run_id)
    assert (run.state.life_cycle_state, run.state.result_state) == (
        jobs.RunLifeCycleState.INTERNAL_ERROR,
        jobs.RunResultState.FAILED,
    )
    assert (
        "cannot run Databricks Runtime 17.3.x-scala2.13" in run.state.state_message
        and "Spark 4.0.0" in run.state.state_message
    )
    assert "19.x-scala2.13" in run.state.state_message  # the runtime that would do
    assert ws.runs[run_id].process is None
    assert ws.runs[run_id].cluster_wait >= STARTUP_S * 0.9  # a job cluster's cold start came first


def test_a_wheel_that_would_replace_the_runtimes_spark_fails_library_installation(ws, w, wheels):
    catalog = unique("badwheel")
    ws.create_volume(catalog, "s", "v")
    ws.volume_path(f"/Volumes/{catalog}/s/v/noop.py").write_text("pass\n")
    wheel = wheels["newer_spark"]
    # Through DBFS this time: a dbfs: wheel library on a workspace with DBFS root.
    w.dbfs.upload(f"/artifacts/{wheel.name}", io.BytesIO(wheel.read_bytes()))
    run_id = submit(
        w,
        python_task(f"/Volumes/{catalog}/s/v/noop.py"),
        new_cluster=job_cluster(),
        libraries=[
            compute.Library(pypi=compute.PythonPyPiLibrary(package="click")),
            compute.Library(whl=f"dbfs:/artifacts/{wheel.name}"),
        ],
    )
    run = wait_for(w, run_id)
    assert (run.state.life_cycle_state, run.state.result_state) == (
        jobs.RunLifeCycleState.INTERNAL_ERROR,
        jobs.RunResultState.FAILED,
    )
    message = run.state.state_message
    assert message.startswith("Library installation failed: ") and "pyspark>=4.3" in message and "Spark" in message
    assert "sparkypkg 0.3.0" in message and "provides pyspark 4.2.0" in message
    assert ws.runs[run_id].process is None
    statuses = {next(iter(s.library.as_dict())): s for s in w.libraries.cluster_status(ws.runs[run_id].cluster_id)}
    assert statuses["pypi"].status == compute.LibraryInstallStatus.INSTALLED
    assert (
        statuses["whl"].status == compute.LibraryInstallStatus.FAILED and "sparkypkg==0.3.0" in statuses["whl"].messages
    )


RUNTIME_19 = runtimes()[RUNTIME]


@pytest.mark.parametrize(
    ("requires", "problem"),
    [
        (["pyspark>=4.2,<4.3", "click>=8"], None),
        (["pyspark>=4.3"], "would replace the runtime's own Spark"),
        (["pyspark==4.1.*"], "would replace the runtime's own Spark"),
        (["delta-spark<4"], "would replace the runtime's own delta-spark"),
        (["pandas<2"], "would replace the runtime's own pandas"),
        # A marker that does not hold skips a requirement — except one on Spark itself.
        (["pandas<2; python_version < '3'"], None),
        (["pyspark<4.2; python_version < '3'"], "would replace the runtime's own Spark"),
        # Requirements of an extra nobody asks for are not installed.
        (["pyspark==3.5.0; extra == 'legacy'", "no-such-package-here; extra == 'legacy'"], None),
        (["no-such-package-here>=1"], "not installed on the emulated cluster"),
        (["click<1"], "the emulated cluster has click"),
    ],
)
def test_wheel_requirements_are_resolved_against_the_runtime(tmp_path, requires, problem):
    path = zip_wheel(tmp_path / "tinypkg-0.1.0-py3-none-any.whl", metadata(*requires))
    found = wheel_problem(read_wheel(path, "/Volumes/c/s/v/tinypkg.whl"), RUNTIME_19, "/Volumes/c/s/v/tinypkg.whl")
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found


def test_what_the_runtime_provides_decides(tmp_path):
    # The same wheel is fine on Spark 4.2 and refused on a runtime with Spark 4.1.
    wheel = read_wheel(zip_wheel(tmp_path / "tinypkg-0.1.0-py3-none-any.whl", metadata("pyspark>=4.2")), "w.whl")
    assert wheel_problem(wheel, runtimes()["19.x-scala2.13"], "w.whl") is None
    found = wheel_problem(wheel, runtimes()["18.x-scala2.13"], "w.whl")
    assert found is not None and "provides pyspark 4.1.0" in found
    assert runtimes()[RUNTIME].packages["pyspark"] == "4.2.0"
    assert set(runtimes()[RUNTIME].packages) >= {"pyspark", "delta-spark", "databricks-sdk", "pandas", "pyarrow"}


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("tinypkg-0.1.0-py3-none-any.whl", None, "does not exist"),
        ("tinypkg-0.1.0-py3-none-any.whl", b"PK\x05\x06" + b"\x00" * 18, "no *.dist-info/METADATA"),
        ("tinypkg-0.1.0-py3-none-any.whl", b"not a zip at all", "not a zip archive"),
        ("tinypkg.whl", "zip", "not a valid wheel file name"),
        ("tinypkg-0.2.0-py3-none-any.whl", "zip", "its METADATA tinypkg 0.1.0"),
        ("tinypkg-0.1.0-cp27-cp27mu-win32.whl", "zip", "not a supported wheel"),
        ("tinypkg-0.1.0-py3-none-any.whl", "zip-py313", "requires a different Python"),
    ],
)
def test_only_a_real_installable_wheel_installs(tmp_path, name, content, problem):
    path = tmp_path / name
    if content == "zip":
        zip_wheel(path, metadata())
    elif content == "zip-py313":
        zip_wheel(path, metadata(requires_python=">=3.13"))
    elif content is not None:
        path.write_bytes(content)
    statuses, found = install_libraries([{"whl": "/Volumes/c/s/v/" + name}], RUNTIME_19, lambda _: path)
    assert found is not None and problem in found, found
    assert statuses[0]["status"] == "FAILED"


def test_pypi_libraries_keep_their_checks(tmp_path):
    libraries = [
        {"pypi": {"package": "click"}},
        {"pypi": {"package": "pyspark==4.2.0"}},
        {"pypi": {"package": "click==0.0.1"}},
    ]
    statuses, found = install_libraries(libraries, RUNTIME_19, lambda _: tmp_path)
    assert found == "pyspark==4.2.0 would replace the Databricks Runtime's own Spark"
    assert [s["status"] for s in statuses] == ["INSTALLED", "FAILED", "SKIPPED"]
    _, found = install_libraries(libraries[2:], RUNTIME_19, lambda _: tmp_path)
    assert found is not None and "conflicts with click==" in found
    with pytest.raises(LibraryError):  # a path the cluster cannot read is the locator's to refuse
        read_wheel(tmp_path / "missing-1.0-py3-none-any.whl", "x")


# ---- a workspace without DBFS root ---------------------------------------------------------

NO_DBFS_PROBE = r"""
import json, os, sys
report = {"dbfs_entries": os.listdir("/dbfs") if os.path.isdir("/dbfs") else None}
try:
    open("/dbfs/written-from-the-cluster.txt", "w").write("x")
    report["dbfs_write"] = "ok"
except OSError as exc:
    report["dbfs_write"] = type(exc).__name__
try:
    dbutils.fs.ls("dbfs:/")
    report["dbutils"] = "ok"
except PermissionError as exc:
    report["dbutils"] = str(exc)
report["volume"] = dbutils.fs.ls(os.path.dirname(sys.argv[1]))
open(sys.argv[1], "w").write(json.dumps(report))
"""


def test_a_workspace_without_dbfs_root(tmp_path, wheels):
    with WorkspaceEmulator(
        tmp_path, token=TOKEN, dbfs_root_enabled=False, spark_remote=os.environ.get(REMOTE_ENV), startup_seconds=0.05
    ) as ws:
        w = WorkspaceClient(host=ws.host, token=TOKEN, auth_type="pat")
        # Every DBFS call is refused, saying why.
        for call in (lambda: w.dbfs.get_status("/"), lambda: w.dbfs.mkdirs("/staging"), lambda: list(w.dbfs.list("/"))):
            with pytest.raises(PermissionDenied, match="DBFS root is disabled") as info:
                call()
            assert info.value.error_code == "FEATURE_DISABLED"
        assert not any(ws.dbfs_root.iterdir())

        catalog = unique("nodbfs")
        ws.create_volume(catalog, "s", "v")
        base = f"/Volumes/{catalog}/s/v"
        w.files.upload(f"{base}/probe.py", io.BytesIO(NO_DBFS_PROBE.encode()))
        # A task naming DBFS root in any way is refused at submit.
        for task, libraries in [
            (python_task("dbfs:/staging/probe.py"), []),
            (python_task(f"{base}/probe.py", "/dbfs/staging/step_run_ref.pkl"), []),
            (python_task(f"{base}/probe.py"), [compute.Library(whl=f"dbfs:/artifacts/{wheels['good'].name}")]),
        ]:
            with pytest.raises(BadRequest, match="DBFS root is disabled on this workspace"):
                submit(w, task, libraries=libraries, new_cluster=job_cluster())
        assert not ws.runs

        # `dbfs:/Volumes/...` is a volume, not DBFS root; on the cluster there is no /dbfs to use.
        run_id = submit(w, python_task(f"dbfs:{base}/probe.py", f"{base}/report.json"), new_cluster=job_cluster())
        run = wait_for(w, run_id)
        assert run.state.result_state == jobs.RunResultState.SUCCESS, (
            ws.runs[run_id].run_dir / "driver_stderr"
        ).read_text()[-3000:]
        report = json.loads(ws.volume_path(f"{base}/report.json").read_text())
        assert report["dbfs_entries"] in (None, [])
        assert report["dbfs_write"] != "ok" and "DBFS root is disabled" in report["dbutils"]
        assert "probe.py" in report["volume"]
        assert ws.runs[run_id].cluster_environment["EMULATOR_DBFS_ENABLED"] == "0"


# ---- start-up --------------------------------------------------------------------------------


def test_without_unshare_the_emulator_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ClusterIsolationError, match="unshare"):
        WorkspaceEmulator(tmp_path / "ws", token=TOKEN).start()


def test_when_the_mount_namespace_fails_the_emulator_says_so(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "unshare"
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(ClusterIsolationError, match="Operation not permitted"):
        WorkspaceEmulator(tmp_path / "ws", token=TOKEN).start()
