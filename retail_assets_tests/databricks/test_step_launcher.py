"""The production path end to end: every step through `DatabricksPySparkStepLauncher` against
the workspace emulator — upload to DBFS, runs/submit, polling, events read back.

Each step really runs on the emulated cluster: the launcher's `databricks_step_main.py` in a
fresh process that knows only what the launcher forwarded, rebuilding the job from code.
"""

from __future__ import annotations

import datetime as dt
import re

import dagster as dg
import pytest
from dagster_shared.serdes import serialize_value
from deltalake import DeltaTable

from retail_assets.lib import quality
from retail_assets.lib.generator import GeneratorConfig, generate
from retail_assets.lib.settings import project_root
from retail_assets_tests.databricks import jobs

DAY = dt.date(2026, 11, 2)
STAGING = "/dagster_staging"


@pytest.fixture(scope="module")
def deployment(workspace, tmp_path_factory):
    """A Databricks deployment's environment, pointed at the emulator."""
    data = tmp_path_factory.mktemp("databricks_data")
    generate(GeneratorConfig.preset("tiny", seed=11, days=1, start_date=DAY, kafka_share=0.0), data)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "RETAIL_ENV": "databricks",
            "DATABRICKS_HOST": workspace.host,
            "DATABRICKS_TOKEN": workspace.token,
            "RETAIL_DEPLOYMENT_ENV": "ci",
            "RETAIL_LANDING_ROOT": str(data / "landing"),
            # No Delta jar here (SPEC §9): the cluster writes through delta-rs under this folder.
            "RETAIL_DATABRICKS_TABLE_ENGINE": "delta_rs",
            "RETAIL_DATABRICKS_TABLE_ROOT": str(data / "lakehouse"),
            "RETAIL_DATABRICKS_WHEEL": "dbfs:/artifacts/retail_assets-0.1.0-py3-none-any.whl",
            "RETAIL_DATABRICKS_POLL_SECONDS": "0.5",
            "RETAIL_DATABRICKS_TIMEOUT_SECONDS": "300",
            "RETAIL_DATABRICKS_STAGING_PREFIX": STAGING,
        }.items():
            mp.setenv(name, value)
        # The wheel library must exist where the run config says (the emulator checks, as
        # Databricks' library installation would); the project itself is importable on the
        # emulated cluster because its Python is this virtualenv.
        wheel = workspace.dbfs_file("/artifacts/retail_assets-0.1.0-py3-none-any.whl")
        wheel.parent.mkdir(parents=True, exist_ok=True)
        wheel.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
        yield data


def execute(job_fn: str, instance: dg.DagsterInstance) -> dg.ExecuteJobResult:
    recon = dg.build_reconstructable_job(jobs.__name__, job_fn, reconstructor_working_directory=str(project_root()))
    return dg.execute_job(recon, instance=instance, tags={"dagster/partition": DAY.isoformat()}, raise_on_error=False)


def step_dirs(workspace, run_id: str) -> dict[str, set[str]]:
    staged = workspace.dbfs_file(f"{STAGING}/{run_id}")
    return {d.name: {f.name for f in d.iterdir()} for d in staged.iterdir()} if staged.exists() else {}


def test_bronze_silver_gold_chain_runs_through_the_step_launcher(workspace, deployment):
    instance = dg.DagsterInstance.ephemeral()
    submitted_before = workspace.count("/jobs/runs/submit")
    with execute("chain_job", instance) as result:
        failures = [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]
        assert result.success, failures
        run_id = result.run_id
        step_keys = {e.step_key for e in result.all_events if e.is_step_success}

    # Four steps (three assets, one check step), each launched as its own Databricks run.
    assert len(step_keys) == 4, step_keys
    assert workspace.count("/jobs/runs/submit") - submitted_before == 4
    assert not workspace.unhandled, workspace.unhandled
    staged = step_dirs(workspace, run_id)
    assert set(staged) == step_keys
    for step, files in staged.items():
        # uploaded by the launcher …
        assert {"databricks_step_main.py", "code.zip", "step_run_ref.pkl", "config.pkl"} <= files, step
        # … and written back by the step on the cluster
        assert {"stdout", "stderr", "0_events.pkl"} <= files, step
    runs = [r for r in workspace.runs.values() if r.task["spark_python_task"]["python_file"].startswith(f"dbfs:///{STAGING.strip('/')}/{run_id}/")]
    assert len(runs) == 4
    for run in runs:
        assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "SUCCESS")
        assert run.polls >= 2  # the launcher's run-page event plus at least one poll
        libraries = run.task["libraries"]
        assert {"whl": "dbfs:/artifacts/retail_assets-0.1.0-py3-none-any.whl"} in libraries
        assert any(lib.get("pypi", {}).get("package", "").startswith("dagster-databricks==") for lib in libraries)
        assert run.task["new_cluster"]["data_security_mode"] == "SINGLE_USER"
    # uploads went through create / add-block / close, never the 1 MB-limited put
    assert workspace.count("/dbfs/create") >= 16 and workspace.count("/dbfs/close") == workspace.count("/dbfs/create")
    assert workspace.count("/dbfs/put") == 0

    # Materializations and check results landed in the local instance, from the remote steps.
    for key in jobs.CHAIN:
        event = instance.get_latest_materialization_event(key)
        assert event is not None, key
        materialization = event.asset_materialization
        assert materialization.partition == DAY.isoformat()
        metadata = materialization.metadata
        assert metadata["dagster/row_count"].value > 0, key
        assert "delta_version" in metadata
        version = metadata["delta_version"].value
        table = DeltaTable(str(deployment / "lakehouse" / key.path[0] / key.path[1]))
        assert table.version() == version
    # The workspace token reached the cluster through the secret scope only: nothing the run
    # recorded (event log, run config, tags) holds it.
    run = instance.get_run_by_id(run_id)
    recorded = [serialize_value(r) for r in instance.all_logs(run_id)] + [serialize_value(run)]
    assert not [text for text in recorded if workspace.token in text]
    for submitted in runs:
        assert workspace.token not in str(submitted.task)
    evaluations = [
        r.dagster_event.event_specific_data
        for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    assert {e.check_name for e in evaluations} == {quality.PRIMARY_KEY, quality.COLUMN_SCHEMA, quality.VALUE_RULES}
    for evaluation in evaluations:
        assert evaluation.asset_key == jobs.CHECKED
        assert evaluation.passed, evaluation.check_name
        assert evaluation.metadata["partition"].value == DAY.isoformat()

def test_a_failing_remote_step_shows_its_remote_error(workspace, deployment):
    instance = dg.DagsterInstance.ephemeral()
    with execute("failing_job", instance) as result:
        assert not result.success
        failures = [e for e in result.all_events if e.is_step_failure]
        run_id = result.run_id
    assert len(failures) == 1
    error = failures[0].event_specific_data.error
    text = error.to_string()
    # The exception raised on the cluster, with its remote traceback, is the Dagster error.
    assert jobs.EXPLOSION in text
    assert re.search(r"ValueError", text)
    assert "jobs.py" in text  # the frame of the asset that raised, as seen on the cluster
    # The remote stderr was read back from DBFS and is in the run's log.
    logs = [r.user_message for r in instance.all_logs(run_id)]
    captured = [m for m in logs if m.startswith("Captured stderr for step")]
    assert captured, "the launcher did not read the remote stderr"
    stderr = workspace.dbfs_file(f"{STAGING}/{run_id}/emulator__exploding/stderr").read_text()
    assert jobs.EXPLOSION in stderr
    assert any(stderr.strip() and stderr.strip()[:200] in m for m in logs)


def test_a_library_the_cluster_cannot_install_fails_the_step_with_the_reason(workspace, deployment, monkeypatch):
    # The deployment names a project wheel that was never uploaded: Databricks fails the run
    # while installing libraries (INTERNAL_ERROR), before any code of the step runs.
    missing = "dbfs:/artifacts/retail_assets-9.9.9-py3-none-any.whl"
    monkeypatch.setenv("RETAIL_DATABRICKS_WHEEL", missing)
    instance = dg.DagsterInstance.ephemeral()
    submitted_before = workspace.count("/jobs/runs/submit")
    with execute("chain_job", instance) as result:
        assert not result.success
        failures = [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]
        run_id = result.run_id
    # The first step fails with the cluster's reason; nothing downstream is submitted.
    assert workspace.count("/jobs/runs/submit") - submitted_before == 1
    assert len(failures) == 1
    assert "Library installation failed" in failures[0] and missing in failures[0], failures[0]
    remote = [r for r in workspace.runs.values() if f"/{run_id}/" in r.task["spark_python_task"]["python_file"]]
    assert [(r.life_cycle_state, r.result_state) for r in remote] == [("INTERNAL_ERROR", "FAILED")]
