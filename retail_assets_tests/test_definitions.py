"""The code location loads, and every registry table is a partitioned asset with checks."""

from __future__ import annotations

import dagster as dg
import pytest

from retail_assets.definitions import build_definitions
from retail_assets.lib.registry.tables import TABLES
from retail_assets.lib.settings import ENV_VAR, Environment, get_environment


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions()


def test_every_table_is_a_partitioned_asset_with_checks(defs):
    graph = defs.resolve_asset_graph()
    check_keys = graph.asset_check_keys
    for spec in TABLES:
        key = dg.AssetKey([spec.layer.value, spec.name])
        assert key in graph.get_all_asset_keys(), f"{spec.key} is not an asset"
        node = graph.get(key)
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition), f"{spec.key} is not daily partitioned"
        assert node.group_name == spec.layer.value
        assert spec.grain in (node.description or "")
        checks = {c.name for c in check_keys if c.asset_key == key}
        assert checks, f"{spec.key} has no asset check"
        # Bronze is started by sensors; everything downstream follows by itself.
        assert (node.automation_condition is None) == (spec.layer.value == "bronze"), spec.key


def test_lateness_window_is_expressed_in_partition_mappings(defs):
    graph = defs.resolve_asset_graph()
    sales = graph.get(dg.AssetKey(["silver", "sales_lines"]))
    mapping = sales.partition_mappings[dg.AssetKey(["bronze", "sales_files"])]
    assert isinstance(mapping, dg.TimeWindowPartitionMapping)
    assert (mapping.start_offset, mapping.end_offset) == (-1, 2)


def test_definitions_validate(defs):
    dg.Definitions.validate_loadable(defs)
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"ingest_bronze", "build_gold"}


def test_stages_cover_every_table_once():
    from retail_assets.lib.registry.stages import STAGES

    staged = [t.key for stage in STAGES for t in stage.tables]
    assert sorted(staged) == sorted(t.key for t in TABLES)
    for stage in STAGES:
        assert {t.partitioning for t in stage.tables} == {stage.partitioning}, stage.job_name


def test_environment_selection(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert get_environment() is Environment.LOCAL
    monkeypatch.setenv(ENV_VAR, "moon")
    with pytest.raises(ValueError, match="not a known environment"):
        get_environment()


def test_databricks_definitions_load_and_validate(monkeypatch):
    """The production code location: same graph, same resource keys, every Spark step launched
    on a job cluster, tables named in Unity Catalog — and nothing connects while loading."""
    from retail_assets.lib.deployment.launcher import VolumeStagedStepLauncher
    from retail_assets.lib.engine import DeltaSparkEngine
    from retail_assets.lib.orchestration.environments import resources_for

    monkeypatch.setenv(ENV_VAR, "databricks")
    monkeypatch.setenv("RETAIL_UC_CATALOG", "retail")
    monkeypatch.setenv("RETAIL_DEPLOYMENT_ENV", "prod")
    # An unroutable host: loading must not try to reach it.
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-0000000000000000.0.azuredatabricks.net")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-not-a-real-token")
    databricks = build_definitions()
    dg.Definitions.validate_loadable(databricks)
    local = resources_for(Environment.LOCAL)
    assert (
        set(databricks.resources)
        == set(local)
        == {"lakehouse", "kafka", "database", "pyspark_step_launcher", "databricks", "alerts"}
    )
    assert {j.name for j in databricks.resolve_all_job_defs()} >= {
        "ingest_bronze",
        "build_gold",
        "lakehouse_maintenance",
    }

    lakehouse = databricks.resources["lakehouse"]
    engine = lakehouse.create_engine()
    assert isinstance(engine, DeltaSparkEngine)
    silver_stores = next(t for t in TABLES if t.key == "silver.stores")
    assert engine.location(silver_stores) == "retail.prod_silver.stores"
    assert databricks.resources["kafka"].reader == "spark"

    launcher_def = databricks.resources["pyspark_step_launcher"]
    with dg.build_resources({"pyspark_step_launcher": launcher_def}) as built:
        launcher = built.pyspark_step_launcher
    assert isinstance(launcher, VolumeStagedStepLauncher)
    assert launcher.databricks_host == "https://adb-0000000000000000.0.azuredatabricks.net"
    assert launcher.staging_prefix == "/Volumes/retail/prod_bronze/artifacts/staging"
    assert launcher.env_variables["RETAIL_ENV"] == "databricks"
    assert launcher.env_variables["RETAIL_DEPLOYMENT_ENV"] == "prod"
    assert not any("TOKEN" in k or "PASSWORD" in k or "SECRET" in k for k in launcher.env_variables)
    # No Databricks credential is sent to a cluster, and no Kafka secret without SASL.
    assert launcher.secrets == []
    new_cluster = launcher.run_config["cluster"]["new"]
    assert new_cluster["data_security_mode"] == "SINGLE_USER"
    assert new_cluster["spark_version"] == "19.x-scala2.13"
    assert any(
        lib.get("whl", "").startswith("/Volumes/retail/prod_bronze/artifacts/")
        for lib in launcher.run_config["libraries"]
    )

    # Every asset and every check step requires the launcher, so none runs off the cluster.
    graph = databricks.resolve_asset_graph()
    for spec in TABLES:
        node = graph.get(dg.AssetKey([spec.layer.value, spec.name]))
        assert "pyspark_step_launcher" in node.assets_def.required_resource_keys, spec.key
    checks_defs = [a for a in databricks.asset_checks or []] + [
        a for a in databricks.assets or [] if isinstance(a, dg.AssetChecksDefinition)
    ]
    assert checks_defs
    for checks_def in checks_defs:
        if checks_def.node_def.name == "freshness_checks":
            # reads only the Dagster instance's event log, which is where the run is, not on a cluster
            assert not {"pyspark_step_launcher", "lakehouse"} & set(checks_def.required_resource_keys)
            continue
        assert "pyspark_step_launcher" in checks_def.required_resource_keys, checks_def.node_def.name


def test_the_databricks_code_location_loads_without_the_local_extra():
    """The Dagster+ code server and the clusters install the wheel without its `local` extra:
    the definitions must load with delta-rs, the webserver and Spark Connect's client absent."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "for name in ('deltalake', 'dagster_webserver', 'dagster_graphql'):\n"
        "    sys.modules[name] = None  # `import` of it raises ImportError\n"
        "import retail_assets.definitions as d\n"
        "assert d.defs.resolve_asset_graph().get_all_asset_keys()\n"
    )
    env = {
        **__import__("os").environ,
        "RETAIL_ENV": "databricks",
        "RETAIL_UC_CATALOG": "retail",
        "RETAIL_DEPLOYMENT_ENV": "prod",
    }
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_table_steps_come_before_the_check_steps_ready_beside_them(defs):
    """The executor starts the ready step of highest `dagster/priority` first: tables, and the
    check steps that gate tables (a blocking check), ahead of checks nothing waits for (the
    stream lane's fact ahead of Bronze's checks)."""

    def priority(assets_def: dg.AssetsDefinition) -> int:
        return int(assets_def.op.tags.get("dagster/priority", 0))

    executable = [a for a in defs.resolve_asset_graph().assets_defs if a.is_executable]
    tables = [a for a in executable if a.keys]
    gating = [a for a in executable if not a.keys and any(c.blocking for c in a.check_specs)]
    waited_for_by_none = [a for a in executable if not a.keys and not any(c.blocking for c in a.check_specs)]
    assert {k for a in tables for k in a.keys} >= {dg.AssetKey([s.layer.value, s.name]) for s in TABLES}
    assert gating and waited_for_by_none  # Silver's and Gold's checks block; Bronze's do not
    assert min(priority(a) for a in tables + gating) > max(priority(a) for a in waited_for_by_none)
