"""The production path end to end: every step through `DatabricksPySparkStepLauncher` against
the workspace emulator — upload to DBFS, runs/submit, polling, events read back.

Each step really runs on the emulated cluster: the launcher's `databricks_step_main.py` in a
fresh process that knows only what the launcher forwarded, rebuilding the job from code, and
writing its tables through delta-spark as a Databricks cluster does (`DatabricksLakehouseResource`,
names in Spark's session catalog, external tables under the deployment's table root). What Delta
then offers — the change feed Bronze keeps, time travel, OPTIMIZE and VACUUM — is read back here
through Spark.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster_shared.serdes import serialize_value
from databricks.sdk import WorkspaceClient
from deltalake import DeltaTable

from retail_assets.definitions import build_definitions
from retail_assets.defs.bronze.sensors import KAFKA_SENSOR, LANDING_SENSOR, STREAM_LANE
from retail_assets.lib.deployment import cluster
from retail_assets.lib.engine import delta_spark as ds
from retail_assets.lib.engine import delta_sql, jvm
from retail_assets.lib.orchestration.factories import asset_key
from retail_assets.lib.registry.tables import BRONZE_POS_TRANSACTIONS, BRONZE_STORES, KAFKA_TOPIC, TABLES_BY_KEY
from retail_assets.lib.settings import DB_PASSWORD_ENV, DB_URL_ENV, DB_USER_ENV, project_root
from retail_assets.lib.transforms import quality
from retail_assets.tooling.broker import LocalBroker, ensure_topic, produce
from retail_assets.tooling.generator import GeneratorConfig, generate
from retail_assets.tooling.generator.orders import OrdersConfig, apply_day, install_schema
from retail_assets.tooling.stream import StreamConfig, stream_messages
from retail_assets_tests.databricks import jobs
from retail_assets_tests.databricks.conftest import PIPELINE_CLIENT_ID, PIPELINE_SECRET, WAREHOUSE_ID

pytestmark = pytest.mark.databricks

DAY = dt.date(2026, 11, 2)
ENV = "ci"
CATALOG = ds.LOCAL_CATALOG
BRONZE_SCHEMA = f"{ENV}_bronze"
LANDING = f"/Volumes/{CATALOG}/{BRONZE_SCHEMA}/landing"
ARTIFACTS = f"/Volumes/{CATALOG}/{BRONZE_SCHEMA}/artifacts"
STAGING = f"{ARTIFACTS}/staging"
# A late export of the same arrival day: Bronze takes it in when the partition runs again.
LATE_FILE = f"stores/{DAY.isoformat()}/stores_{DAY:%Y%m%d}_late.jsonl"
LATE_STORE = {
    "store_id": "S999",
    "name": "Marketa Late Opening",
    "city": "Lyon",
    "region": "Western Europe",
    "format": "express",
    "opened_on": "2026-10-30",
    "status": "open",
    "updated_at": "2026-11-02T08:00:00+00:00",
}


def admin(workspace) -> WorkspaceClient:
    """The workspace as its administrator sees it (not the pipeline's identity)."""
    return WorkspaceClient(host=workspace.host, token=workspace.token, auth_type="pat")


@pytest.fixture(scope="module")
def deployment(workspace, tmp_path_factory, project_wheel):
    """A Databricks deployment's environment, pointed at the emulator: a workspace without DBFS
    root, the landing zone and the artifacts in Unity Catalog volumes, the project's real wheel
    uploaded there, and the pipeline signing in as its service principal."""
    data = tmp_path_factory.mktemp("databricks_data")
    for volume in ("landing", "artifacts"):
        workspace.create_volume(CATALOG, BRONZE_SCHEMA, volume)
    # The day's store export, dropped into the landing volume as a source system would.
    generate(GeneratorConfig.preset("tiny", seed=11, days=1, start_date=DAY, kafka_share=0.0), data)
    stores = data / "landing" / "stores"
    shutil.copytree(stores, workspace.volume_path(f"{LANDING}/stores"))
    wheel = f"{ARTIFACTS}/{project_wheel.name}"
    admin(workspace).files.upload(wheel, io.BytesIO(project_wheel.read_bytes()), overwrite=True)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("DATABRICKS_TOKEN", "RETAIL_LANDING_ROOT", "RETAIL_DATABRICKS_STAGING_PREFIX"):
            mp.delenv(name, raising=False)
        for name, value in {
            "RETAIL_ENV": "databricks",
            "DATABRICKS_HOST": workspace.host,
            "DATABRICKS_CLIENT_ID": PIPELINE_CLIENT_ID,
            "DATABRICKS_CLIENT_SECRET": PIPELINE_SECRET,
            "RETAIL_DEPLOYMENT_ENV": ENV,
            # Unity Catalog stands as Spark's session catalog (the only catalog Delta's own
            # DeltaCatalog can be), its tables external under this folder.
            "RETAIL_UC_CATALOG": CATALOG,
            "RETAIL_DATABRICKS_TABLE_ROOT": str(data / "lakehouse"),
            "RETAIL_DATABRICKS_WAREHOUSE_ID": WAREHOUSE_ID,
            # The emulated cluster's Python is this virtualenv: it runs the installed project,
            # and the uploaded wheel (the working tree's build) is what its library check reads.
            "RETAIL_DATABRICKS_WHEEL": wheel,
            "RETAIL_DATABRICKS_POLL_SECONDS": "0.5",
            "RETAIL_DATABRICKS_TIMEOUT_SECONDS": "300",
        }.items():
            mp.setenv(name, value)
        yield data


def execute(
    job_fn: str,
    instance: dg.DagsterInstance,
    *,
    partitioned: bool = True,
    run_config: dict | None = None,
    day: dt.date = DAY,
) -> dg.ExecuteJobResult:
    recon = dg.build_reconstructable_job(jobs.__name__, job_fn, reconstructor_working_directory=str(project_root()))
    # Each run loads the code location under the environment of the moment, as a run worker
    # process would: Dagster keeps the last job it reconstructed in this process otherwise.
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()
    tags = {"dagster/partition": day.isoformat()} if partitioned else {}
    return dg.execute_job(recon, instance=instance, tags=tags, run_config=run_config, raise_on_error=False)


@dataclass(frozen=True)
class Launched:
    """What a run through the launcher left behind, once its result is closed."""

    instance: dg.DagsterInstance
    run_id: str
    success: bool
    failures: list[str]
    step_keys: set[str]
    submitted: int  # Databricks runs the job submitted


def launch(workspace, job_fn: str, **kwargs: Any) -> Launched:
    instance = dg.DagsterInstance.ephemeral()
    submitted_before = workspace.count("/jobs/runs/submit")
    with execute(job_fn, instance, **kwargs) as result:
        failures = [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]
        run_id, success = result.run_id, result.success
        step_keys = {e.step_key for e in result.all_events if e.is_step_success}
    return Launched(
        instance, run_id, success, failures, step_keys, workspace.count("/jobs/runs/submit") - submitted_before
    )


def table_path(deployment: Path, key: dg.AssetKey) -> Path:
    return deployment / "lakehouse" / key.path[0] / key.path[1]


def history(spark, path: Path) -> dict[int, dict]:
    """`DESCRIBE HISTORY` by version, as Delta's Spark jar reads the log."""
    return {r["version"]: r.asDict(recursive=True) for r in spark.sql(f"DESCRIBE HISTORY delta.`{path}`").collect()}


def engine_info(path: Path, version: int) -> str:
    """Who wrote a commit, from its own `commitInfo` in the Delta log."""
    actions = [json.loads(line) for line in (path / "_delta_log" / f"{version:020d}.json").read_text().splitlines()]
    return next(a["commitInfo"]["engineInfo"] for a in actions if "commitInfo" in a)


def landing_tick(instance: dg.DagsterInstance) -> list[dg.RunRequest | dg.SkipReason]:
    """One evaluation of the deployment's landing sensor, as the code server's daemon makes it:
    with the `databricks` environment's own resources, on this machine (no volume mounted)."""
    defs = build_definitions()
    sensor = defs.get_sensor_def(LANDING_SENSOR)
    resources = {key: defs.resources[key] for key in ("lakehouse", "databricks")}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = sensor(context)
        return (
            list(result) if result is not None and not isinstance(result, (dg.RunRequest, dg.SkipReason)) else [result]
        )


@dataclass(frozen=True)
class SensedChain:
    first_tick: list
    launched: Launched
    second_tick: list
    statements: list[str]  # the SQL warehouse statements the two ticks ran


@pytest.fixture(scope="module")
def sensed_chain(workspace, deployment):
    """The landing sensor finds the day's store export in the volume and requests Bronze stores
    for the day; that asset with its Silver and Gold descendants runs on clusters; the next tick
    finds the export held in Bronze."""
    before = len(workspace.catalog.statements)
    instance = dg.DagsterInstance.ephemeral()
    first = landing_tick(instance)
    launched = launch(workspace, "chain_job")
    second = landing_tick(instance)
    statements = [s.statement for s in workspace.catalog.statements[before:]]
    return SensedChain(first, launched, second, statements)


@pytest.fixture(scope="module")
def chain(sensed_chain):
    """Bronze → Silver → Gold for stores, once for the module."""
    return sensed_chain.launched


def step_dirs(workspace, run_id: str) -> dict[str, set[str]]:
    staged = workspace.volume_path(f"{STAGING}/{run_id}")
    return {d.name: {f.name for f in d.iterdir()} for d in staged.iterdir()} if staged.exists() else {}


def test_the_landing_sensor_reads_the_volume_and_bronze_through_the_workspace_apis(workspace, deployment, sensed_chain):
    # This machine has no /Volumes mount (the clusters do): what the sensor saw came through the
    # Files API, and what Bronze holds through the SQL warehouse.
    assert not Path(LANDING).exists()
    (request,) = sensed_chain.first_tick
    assert isinstance(request, dg.RunRequest), sensed_chain.first_tick
    assert request.partition_key == DAY.isoformat()
    assert request.asset_selection == [jobs.CHAIN[0]]
    exported = sorted(
        p.relative_to(workspace.volume_path(LANDING)).as_posix()
        for p in workspace.volume_path(f"{LANDING}/stores").rglob("*")
        if p.is_file()
    )
    assert int(request.tags["retail/new_files"]) == len(exported) >= 1
    assert any(p.startswith(f"/api/2.0/fs/directories{LANDING}/stores") for p in workspace.paths_called("GET"))
    bronze = delta_sql.quote_name(BRONZE_STORES.catalog_name(CATALOG, ENV))
    assert any(bronze in s and "DESCRIBE HISTORY" in s for s in sensed_chain.statements)
    # Once the run committed, the same files are held: nothing more to request.
    assert sensed_chain.launched.success, sensed_chain.launched.failures
    (skip,) = sensed_chain.second_tick
    assert isinstance(skip, dg.SkipReason) and "no new complete files" in skip.skip_message, skip
    assert any(bronze in s and "_source_file" in s for s in sensed_chain.statements)
    # The code server signed in as the pipeline's service principal, never with a token.
    assert {t.client_id for t in workspace.tokens_issued} == {PIPELINE_CLIENT_ID}


def test_bronze_silver_gold_chain_runs_through_the_step_launcher(workspace, deployment, chain, spark):
    assert chain.success, chain.failures
    instance, run_id, step_keys = chain.instance, chain.run_id, chain.step_keys

    # Four steps (three assets, one check step), each launched as its own Databricks run; the
    # freshness checks read only the event log, so they run beside the run, on no cluster.
    assert "freshness_checks" in step_keys, step_keys
    step_keys = [k for k in step_keys if k != "freshness_checks"]
    assert len(step_keys) == 4, step_keys
    assert chain.submitted == 4
    assert not workspace.unhandled, workspace.unhandled
    staged = step_dirs(workspace, run_id)
    assert {k.replace("[", "__").replace("]", "__") for k in step_keys} == set(staged)
    for step, files in staged.items():
        # uploaded by the launcher …
        assert {"databricks_step_main.py", "code.zip", "step_run_ref.pkl", "config.pkl"} <= files, step
        # … and written back by the step on the cluster
        assert {"stdout", "stderr", "0_events.pkl"} <= files, step
    runs = [
        r
        for r in workspace.runs.values()
        if r.task["spark_python_task"]["python_file"].startswith(f"{STAGING}/{run_id}/")
    ]
    assert len(runs) == 4
    wheel = os.environ["RETAIL_DATABRICKS_WHEEL"]
    for run in runs:
        assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "SUCCESS")
        assert run.polls >= 2  # the launcher's run-page event plus at least one poll
        libraries = run.task["libraries"]
        assert {"whl": wheel} in libraries
        assert any(lib.get("pypi", {}).get("package", "").startswith("dagster-databricks==") for lib in libraries)
        assert run.task["new_cluster"]["data_security_mode"] == "SINGLE_USER"
        assert run.task["new_cluster"]["single_user_name"] == PIPELINE_CLIENT_ID
        assert run.submitted_by == f"sp:{PIPELINE_CLIENT_ID}"  # the service principal, by application id
    # Staged through the Files API on a workspace whose DBFS root is disabled: no DBFS call at all.
    assert not [p for p in workspace.paths_called() if "/dbfs/" in p]
    assert workspace.count(f"{STAGING}/{run_id}/bronze__stores/code.zip") == 1

    # Materializations and check results landed in the local instance, from the remote steps,
    # and every table is a Delta table the cluster's delta-spark created and wrote.
    for key in jobs.CHAIN:
        event = instance.get_latest_materialization_event(key)
        assert event is not None, key
        materialization = event.asset_materialization
        assert materialization.partition == DAY.isoformat()
        metadata = materialization.metadata
        assert metadata["dagster/row_count"].value > 0, key
        spec = TABLES_BY_KEY[f"{key.path[0]}.{key.path[1]}"]
        assert metadata["dagster/uri"].value == spec.catalog_name(ds.LOCAL_CATALOG, ENV)
        version = metadata["delta_version"].value
        path = table_path(deployment, key)
        commits = history(spark, path)
        assert max(commits) == version, key
        # The engine's DDL first, then one overwrite commit: of the day, by condition (Delta
        # records Spark's rendering of it), or of the whole table for a dimension that is rebuilt.
        assert commits[0]["operation"] == "CREATE TABLE", key
        write = commits[version]
        assert (write["operation"], write["operationParameters"]["mode"]) == ("WRITE", "Overwrite"), key
        if spec.rebuild:
            assert "predicate" not in write["operationParameters"], key
        else:
            predicate = write["operationParameters"]["predicate"]
            assert spec.partition_column in predicate and f"'{DAY.isoformat()}'" in predicate, predicate
        assert int(write["operationMetrics"]["numOutputRows"]) == metadata["dagster/row_count"].value
        for v in (0, version):
            # delta-rs signs its commits "delta-rs:py-<version>"
            assert engine_info(path, v).startswith("Apache-Spark/"), (key, v)
            assert f"Delta-Lake/{jvm.DELTA_VERSION}" in engine_info(path, v)
            assert commits[v]["engineInfo"] == engine_info(path, v)
    # No Databricks credential left the code server: not to a cluster's environment (the runtime
    # authenticates clusters itself), not into what the run recorded (event log, run, tags), not
    # into a submitted task. The OAuth tokens the code server was issued went nowhere either.
    run = instance.get_run_by_id(run_id)
    recorded = [serialize_value(r) for r in instance.all_logs(run_id)] + [serialize_value(run)]
    credentials = [PIPELINE_SECRET, workspace.token, *(t.access_token for t in workspace.tokens_issued)]
    assert workspace.tokens_issued
    for secret in credentials:
        assert not [text for text in recorded if secret in text]
        for submitted in runs:
            assert secret not in json.dumps(submitted.submitted)
            assert secret not in json.dumps(submitted.cluster_environment)
    for submitted in runs:
        assert not {
            k
            for k in submitted.cluster_environment
            if k.startswith("DATABRICKS_") and k != "DATABRICKS_RUNTIME_VERSION"
        }
    # What the launcher hands each step to set up on the cluster (its pickled DatabricksConfig:
    # the variables and secret-scope entries the step exports there) holds no credential either.
    for step in staged:
        remote = pickle.loads(workspace.volume_path(f"{STAGING}/{run_id}/{step}/config.pkl").read_bytes())
        assert not [k for k in remote.env_variables if k.startswith("DATABRICKS_") or "SECRET" in k or "TOKEN" in k], (
            remote.env_variables
        )
        assert remote.secrets == []
        for secret in credentials:
            assert secret not in json.dumps(remote.env_variables)
    evaluations = [
        r.dagster_event.event_specific_data
        for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    assert {e.check_name for e in evaluations} == {
        quality.PRIMARY_KEY,
        quality.COLUMN_SCHEMA,
        quality.VALUE_RULES,
        quality.QUALITY_WARNINGS,
        "fresh",  # the freshness checks' step, beside the run
    }
    for evaluation in evaluations:
        assert evaluation.passed, (evaluation.asset_key, evaluation.check_name, evaluation.description)
        if evaluation.check_name == "fresh":
            continue  # of each table of the run, not of a partition
        assert evaluation.asset_key == jobs.CHECKED
        assert evaluation.metadata["partition"].value == DAY.isoformat()


@dataclass(frozen=True)
class Rerun:
    first: Launched
    second: Launched
    before: int  # Bronze's version as the chain left it
    after: int  # Bronze's version once the day ran again


def bronze_version(launched: Launched) -> int:
    event = launched.instance.get_latest_materialization_event(jobs.CHAIN[0])
    assert event is not None
    return event.asset_materialization.metadata["delta_version"].value


@pytest.fixture(scope="module")
def rerun(workspace, deployment, chain):
    """Bronze stores' day materialized again on a cluster, after a late export of that day landed."""
    assert chain.success, chain.failures
    late = workspace.volume_path(f"{LANDING}/{LATE_FILE}")
    late.write_text(json.dumps(LATE_STORE) + "\n")
    second = launch(workspace, "bronze_stores_job")
    assert second.success, second.failures
    return Rerun(chain, second, bronze_version(chain), bronze_version(second))


def test_bronze_change_feed_shows_the_rows_a_rerun_replaced(deployment, rerun, spark):
    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", rerun.before + 1)
        .option("endingVersion", rerun.after)
        .load(str(table_path(deployment, jobs.CHAIN[0])))
        .select("_source", "_source_file", "_batch_id", "_change_type", "_commit_version")
        .collect()
    )
    assert {c["_commit_version"] for c in changes} == {rerun.after}  # one commit replaced the day
    deleted = [c for c in changes if c["_change_type"] == "delete"]
    inserted = [c for c in changes if c["_change_type"] == "insert"]
    assert len(deleted) + len(inserted) == len(changes)  # an overwrite: no update pre/post images
    # Out went every record the first run had ingested …
    first_rows = (
        rerun.first.instance.get_latest_materialization_event(jobs.CHAIN[0])
        .asset_materialization.metadata["dagster/row_count"]
        .value
    )
    assert len(deleted) == first_rows
    assert {c["_batch_id"] for c in deleted} == {rerun.first.run_id}
    assert LATE_FILE not in {c["_source_file"] for c in deleted}
    # … in came the same landing records, ingested again, and the late file's one record.
    assert {c["_batch_id"] for c in inserted} == {rerun.second.run_id}
    late = {c["_source"] for c in inserted if c["_source_file"] == LATE_FILE}
    assert len(late) == 1
    assert {c["_source"] for c in inserted} == {c["_source"] for c in deleted} | late


def landing_records(rows) -> list[tuple]:
    """The records of the chain's landing file, without what either run stamped on them."""
    return sorted((r["_source"], r["store_id"], r["name"], r["status"]) for r in rows if r["_source_file"] != LATE_FILE)


def test_time_travel_reads_bronze_as_the_first_run_wrote_it(deployment, rerun, spark):
    # Through the table's catalog name, as a Databricks notebook would query it.
    engine = ds.DeltaSparkEngine.local(deployment / "lakehouse", ENV, spark=spark)
    assert engine.exists(BRONZE_STORES)
    name = delta_sql.quote_name(engine.location(BRONZE_STORES))
    columns = "store_id, name, status, _source, _source_file, _batch_id"
    then = spark.sql(f"SELECT {columns} FROM {name} VERSION AS OF {rerun.before}").collect()
    now = spark.sql(f"SELECT {columns} FROM {name}").collect()
    assert {r["_batch_id"] for r in then} == {rerun.first.run_id}
    assert {r["_batch_id"] for r in now} == {rerun.second.run_id}
    assert LATE_FILE not in {r["_source_file"] for r in then}
    assert [r["store_id"] for r in now if r["_source_file"] == LATE_FILE] == [LATE_STORE["store_id"]]
    assert landing_records(then) == landing_records(now)  # the earlier version's content, record for record
    # The DataFrame reader's option reads the same version.
    assert spark.read.option("versionAsOf", rerun.before).table(engine.location(BRONZE_STORES)).count() == len(then)


MAINTAINED = [jobs.CHAIN[0], jobs.CHAIN[1]]


def test_maintenance_optimizes_and_vacuums_the_delta_spark_tables(workspace, deployment, rerun, spark):
    paths = {key: table_path(deployment, key) for key in MAINTAINED}
    before = {key: max(history(spark, path)) for key, path in paths.items()}
    rows = {key: spark.read.format("delta").load(str(path)).count() for key, path in paths.items()}
    tables = [f"{key.path[0]}.{key.path[1]}" for key in MAINTAINED]
    run = launch(
        workspace,
        "maintenance_job",
        partitioned=False,
        run_config={"ops": {"optimize_and_vacuum": {"config": {"tables": tables}}}},
    )
    assert run.success, run.failures
    assert run.submitted == 1  # the op ran on a job cluster, through the launcher

    for key, path in paths.items():
        spec = TABLES_BY_KEY[f"{key.path[0]}.{key.path[1]}"]
        commits = history(spark, path)
        optimize, start, end = (commits[v] for v in sorted(commits) if v > before[key])
        assert (optimize["operation"], start["operation"], end["operation"]) == (
            "OPTIMIZE",
            "VACUUM START",
            "VACUUM END",
        ), key
        assert json.loads(optimize["operationParameters"]["zOrderBy"]) == delta_sql.zorder_columns(spec)
        assert (
            int(optimize["operationMetrics"]["numRemovedFiles"]) >= 1
            and int(optimize["operationMetrics"]["numAddedFiles"]) >= 1
        )
        # A week's retention (Delta's own check on): nothing written this hour is deleted, so the
        # files OPTIMIZE replaced still serve time travel to the version before it.
        assert start["operationParameters"]["retentionCheckEnabled"] == "true"
        assert int(start["operationMetrics"]["numFilesToDelete"]) == 0
        assert (end["operationParameters"]["status"], int(end["operationMetrics"]["numDeletedFiles"])) == (
            "COMPLETED",
            0,
        )
        assert spark.read.format("delta").load(str(path)).count() == rows[key]
        assert spark.read.format("delta").option("versionAsOf", before[key]).load(str(path)).count() == rows[key]
        assert engine_info(path, max(commits)).startswith("Apache-Spark/")
    # What the op reported on the cluster came back with the step's captured stderr.
    lines = "\n".join(r.user_message for r in run.instance.all_logs(run.run_id)).splitlines()
    for table in tables:
        reported = [line for line in lines if f"maintenance {table}: " in line]
        assert reported and "ZORDER BY" in reported[0] and "RETAIN 168 HOURS" in reported[0], table


def test_the_database_extraction_runs_on_the_cluster_with_credentials_from_the_secret_scope(
    workspace, deployment, postgres, monkeypatch
):
    """Bronze's extraction from the operational database, launched on a cluster: the JDBC URL
    travels as a setting, the user and password only through the secret scope (the code server
    has neither), and the cluster's Spark reads the day's changes into the Delta table."""
    name = "databricks_orders"
    postgres.create_database(name)
    config = OrdersConfig(days=1, customers=6, orders_per_day=3, start_date=DAY)
    with postgres.connect(name, autocommit=True) as conn:
        install_schema(conn)
        apply_day(conn, config, 0)
        changes = conn.execute("SELECT change_id, op FROM orders.changes ORDER BY 1").fetchall()
    monkeypatch.setenv(DB_URL_ENV, postgres.jdbc_url.rsplit("/", 1)[0] + f"/{name}")
    monkeypatch.delenv(DB_USER_ENV, raising=False)
    monkeypatch.delenv(DB_PASSWORD_ENV, raising=False)
    scope = "retail-assets"
    api = admin(workspace)
    api.secrets.create_scope(scope)
    api.secrets.put_secret(scope, "db-user", string_value=postgres.user)
    api.secrets.put_secret(scope, "db-password", string_value=postgres.password)

    launched = launch(workspace, "bronze_orders_job")
    assert launched.success, launched.failures
    assert launched.submitted == 1
    (run,) = [
        r
        for r in workspace.runs.values()
        if r.task["spark_python_task"]["python_file"].startswith(f"{STAGING}/{launched.run_id}/")
    ]
    staged = workspace.volume_path(f"{STAGING}/{launched.run_id}/bronze__orders_changes/config.pkl")
    remote = pickle.loads(staged.read_bytes())
    assert {(s["name"], s["key"], s["scope"]) for s in remote.secrets} == {
        (DB_USER_ENV, "db-user", scope),
        (DB_PASSWORD_ENV, "db-password", scope),
    }
    assert remote.env_variables[DB_URL_ENV].endswith(f"/{name}")
    for env in (remote.env_variables, run.task["new_cluster"].get("spark_env_vars", {}), run.cluster_environment):
        assert not {DB_USER_ENV, DB_PASSWORD_ENV} & set(env) and postgres.password not in env.values()
    assert f'"{postgres.password}"' not in json.dumps(run.submitted)
    bronze = DeltaTable(table_path(deployment, dg.AssetKey(["bronze", "orders_changes"]))).to_pyarrow_table()
    assert sorted(zip(bronze["change_id"].to_pylist(), bronze["op"].to_pylist())) == changes
    assert engine_info(table_path(deployment, dg.AssetKey(["bronze", "orders_changes"])), 1).startswith("Apache-Spark/")


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
    # The remote stderr was read back from the volume and is in the run's log.
    logs = [r.user_message for r in instance.all_logs(run_id)]
    captured = [m for m in logs if m.startswith("Captured stderr for step")]
    assert captured, "the launcher did not read the remote stderr"
    stderr = workspace.volume_path(f"{STAGING}/{run_id}/emulator__exploding/stderr").read_text()
    assert jobs.EXPLOSION in stderr
    assert any(stderr.strip() and stderr.strip()[:200] in m for m in logs)


def test_a_library_the_cluster_cannot_install_fails_the_step_with_the_reason(workspace, deployment, monkeypatch):
    # The deployment names a project wheel that was never uploaded: Databricks fails the run
    # while installing libraries (INTERNAL_ERROR), before any code of the step runs.
    missing = f"{ARTIFACTS}/retail_assets-9.9.9-py3-none-any.whl"
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


# ---- the Kafka sensor in the databricks environment ------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with LocalBroker(data_dir=tmp_path_factory.mktemp("kafka")) as running:
        ensure_topic(running.bootstrap_servers, KAFKA_TOPIC)
        yield running


def kafka_tick(instance: dg.DagsterInstance, cursor: str | None) -> tuple[dg.RunRequest | dg.SkipReason, str | None]:
    defs = build_definitions()
    sensor = defs.get_sensor_def(KAFKA_SENSOR)
    resources = {key: defs.resources[key] for key in ("lakehouse", "kafka", "databricks")}
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return sensor(context), context.cursor


def test_the_kafka_sensor_reads_committed_offsets_through_the_sql_warehouse(
    workspace, deployment, broker, monkeypatch, spark
):
    """Events on the topic → the sensor (watermarks from the broker, Bronze's committed offsets
    from the SQL warehouse, no JVM here) requests today's lane → Bronze written on a cluster by
    Spark's Kafka source → the next tick finds every offset held."""
    today = dt.datetime.now(dt.UTC).date()
    monkeypatch.setenv("RETAIL_KAFKA_BOOTSTRAP", broker.bootstrap_servers)
    monkeypatch.setenv("RETAIL_KAFKA_LAG_THRESHOLD", "1")
    messages = stream_messages(StreamConfig(seed=5, day=today, stores=2, transactions_per_store_day=8, defects=False))
    produce(broker.bootstrap_servers, KAFKA_TOPIC, messages)
    instance = dg.DagsterInstance.ephemeral()
    before = len(workspace.catalog.statements)

    request, cursor = kafka_tick(instance, None)
    assert isinstance(request, dg.RunRequest), request
    assert request.partition_key == today.isoformat()
    assert set(request.asset_selection) == {asset_key(spec) for spec in STREAM_LANE}
    launched = launch(workspace, "bronze_pos_job", day=today)
    assert launched.success, launched.failures
    assert launched.submitted == 1

    caught_up, _ = kafka_tick(instance, cursor)
    assert isinstance(caught_up, dg.SkipReason) and "holds every offset" in caught_up.skip_message, caught_up
    bronze = delta_sql.quote_name(BRONZE_POS_TRANSACTIONS.catalog_name(CATALOG, ENV))
    statements = [s.statement for s in workspace.catalog.statements[before:]]
    # Each tick asks for Bronze's version; only once it exists are its offsets read (at that version).
    assert sum(bronze in s and "DESCRIBE HISTORY" in s for s in statements) == 2, statements
    assert sum(bronze in s and "MAX(_offset)" in s and "VERSION AS OF" in s for s in statements) == 1, statements
    # What the cluster wrote: every message once.
    rows = (
        spark.read.format("delta")
        .load(str(deployment / "lakehouse" / "bronze" / BRONZE_POS_TRANSACTIONS.name))
        .select("_source")
        .collect()
    )
    assert len(rows) == len({r["_source"] for r in rows}) == len(messages)


def test_a_workspace_that_does_not_answer_skips_the_tick_with_the_reason(workspace, deployment, broker, monkeypatch):
    monkeypatch.setenv("RETAIL_KAFKA_BOOTSTRAP", broker.bootstrap_servers)
    monkeypatch.setenv("RETAIL_DATABRICKS_WAREHOUSE_ID", "0000000000000000")  # no such warehouse
    instance = dg.DagsterInstance.ephemeral()
    (landing,) = landing_tick(instance)
    kafka, _ = kafka_tick(instance, None)
    for result in (landing, kafka):
        assert isinstance(result, dg.SkipReason), result
        assert "workspace did not answer" in result.skip_message, result.skip_message


# ---- cluster reuse ---------------------------------------------------------------------------


def test_clusters_a_stage_run_starts_with_each_cluster_setting(workspace, deployment, monkeypatch):
    """The launcher's model is a new job cluster per step; an instance pool keeps that but starts
    from warm instances; an existing all-purpose cluster serves every step. Counted here on a run
    of three dependent steps (printed with `-s`)."""
    pool = workspace.create_instance_pool("retail-assets-pool")
    shared = workspace.create_cluster(
        spark_version=cluster.DEFAULT_RUNTIME,
        cluster_name="retail-assets-shared",
        data_security_mode="SINGLE_USER",
        single_user_name=PIPELINE_CLIENT_ID,
        node_type_id="i3.xlarge",
        num_workers=1,
    )
    settings = {
        "new job cluster per step": {},
        "instance pool": {"RETAIL_DATABRICKS_INSTANCE_POOL_ID": pool},
        "existing cluster": {"RETAIL_DATABRICKS_CLUSTER_ID": shared},
    }
    figures = {}
    for name, variables in settings.items():
        with monkeypatch.context() as mp:
            for key, value in variables.items():
                mp.setenv(key, value)
            started = len(workspace.clusters_created)
            launched = launch(workspace, "light_stage_job", partitioned=False)
        assert launched.success, launched.failures
        new = workspace.clusters_created[started:]
        runs = [
            r for r in workspace.runs.values() if f"/{launched.run_id}/" in r.task["spark_python_task"]["python_file"]
        ]
        figures[name] = {
            "steps": launched.submitted,
            "clusters started": len(new),
            "from the pool": sum(c.from_pool for c in new),
            "clusters used": len({r.cluster_id for r in runs}),
        }
        # What each step saw of Databricks' variables on its cluster: the runtime's, nothing else.
        for asset in jobs.LIGHT:
            seen = (
                launched.instance.get_latest_materialization_event(asset.key)
                .asset_materialization.metadata["databricks variables"]
                .value
            )
            assert seen == "DATABRICKS_RUNTIME_VERSION", (name, seen)
    print("\n".join(f"{name:>26}: {f}" for name, f in figures.items()))
    assert figures["new job cluster per step"] == {
        "steps": 3,
        "clusters started": 3,
        "from the pool": 0,
        "clusters used": 3,
    }
    assert figures["instance pool"] == {"steps": 3, "clusters started": 3, "from the pool": 3, "clusters used": 3}
    assert figures["existing cluster"] == {"steps": 3, "clusters started": 0, "from the pool": 0, "clusters used": 1}
    assert workspace.cluster_runs[shared] and len(workspace.cluster_runs[shared]) == 3

    # An all-purpose cluster that is not dedicated to the pipeline's principal is refused before
    # any step is submitted to it.
    standard = workspace.create_cluster(
        spark_version=cluster.DEFAULT_RUNTIME,
        cluster_name="everyone",
        data_security_mode="USER_ISOLATION",
        node_type_id="i3.xlarge",
        num_workers=1,
    )
    monkeypatch.setenv("RETAIL_DATABRICKS_CLUSTER_ID", standard)
    refused = launch(workspace, "light_stage_job", partitioned=False)
    assert not refused.success and refused.submitted == 0
    assert "USER_ISOLATION" in refused.failures[0] and "SINGLE_USER" in refused.failures[0], refused.failures
