"""The cluster and launcher configuration of the `databricks` environment, as text: which cluster
a step runs on, in which access mode, with which runtime, and what (never) reaches it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from retail_assets.lib.deployment import cluster
from retail_assets.lib.deployment import launcher as launcher_module
from retail_assets.lib.deployment.launcher import (
    OnClusterStepLauncher,
    StagingNotOnVolume,
    VolumeStagedStepLauncher,
    volume_staging_prefix,
)
from retail_assets.lib.engine import jvm

HOST = "https://adb-0000000000000000.0.azuredatabricks.net"


@pytest.fixture
def deployment(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith(("RETAIL_DATABRICKS_", "DATABRICKS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RETAIL_ENV", "databricks")
    monkeypatch.setenv("RETAIL_UC_CATALOG", "retail")
    monkeypatch.setenv("RETAIL_DEPLOYMENT_ENV", "prod")
    monkeypatch.setenv("DATABRICKS_HOST", HOST)
    return monkeypatch


def test_default_runtime_runs_the_pinned_spark_minor():
    # DBR 19 ships Apache Spark 4.2: the minor of the pinned pyspark and of the fetched jars.
    assert cluster.DEFAULT_RUNTIME == "19.x-scala2.13"
    assert jvm.SPARK_MINOR == "4.2"


def test_a_new_job_cluster_per_step_in_dedicated_access_mode_for_the_service_principal(deployment):
    deployment.setenv("DATABRICKS_CLIENT_ID", "5f3c0b8e-1d2a-4b7c-9e6f-0a1b2c3d4e5f")
    choice = cluster.cluster_choice()
    new = choice["new"]
    assert new["data_security_mode"] == "SINGLE_USER"
    assert new["single_user_name"] == "5f3c0b8e-1d2a-4b7c-9e6f-0a1b2c3d4e5f"
    assert new["nodes"] == {"node_types": {"node_type_id": "i3.xlarge"}}
    deployment.setenv("RETAIL_DATABRICKS_RUN_AS", "retail-pipeline@example.com")
    assert cluster.job_cluster()["single_user_name"] == "retail-pipeline@example.com"


def test_an_instance_pool_or_an_existing_cluster_instead(deployment):
    deployment.setenv("RETAIL_DATABRICKS_INSTANCE_POOL_ID", "pool-1")
    deployment.setenv("RETAIL_DATABRICKS_DRIVER_POOL_ID", "pool-2")
    new = cluster.cluster_choice()["new"]
    assert new["nodes"] == {"instance_pool_id": "pool-1", "driver_instance_pool_id": "pool-2"}
    assert new["data_security_mode"] == "SINGLE_USER"
    deployment.setenv("RETAIL_DATABRICKS_CLUSTER_ID", "0101-000000-shared01")
    assert cluster.run_config()["cluster"] == {"existing": "0101-000000-shared01"}


def test_nothing_secret_is_forwarded_and_databricks_credentials_never(deployment):
    deployment.setenv("DATABRICKS_TOKEN", "dapi-secret")
    deployment.setenv("DATABRICKS_CLIENT_SECRET", "sp-secret")
    deployment.setenv("RETAIL_KAFKA_SASL_PASSWORD", "kafka-secret")
    deployment.setenv("RETAIL_KAFKA_SASL_MECHANISM", "PLAIN")
    config = cluster.launcher_config()
    text = repr(config)
    assert "dapi-secret" not in text and "sp-secret" not in text and "kafka-secret" not in text
    assert "databricks_token" not in config and "oauth_credentials" not in config
    # the Kafka credentials come from the secret scope on the cluster, nothing else does
    assert {s["name"] for s in config["secrets_to_env_variables"]} == set(cluster.KAFKA_SECRETS)
    assert config["env_variables"][cluster.CODE_VERSION_ENV] == cluster.code_version()


def test_the_database_credentials_reach_the_cluster_through_the_secret_scope_only(deployment):
    from retail_assets.lib.orchestration.environments import database_resource

    deployment.setenv("RETAIL_DB_JDBC_URL", "jdbc:postgresql://orders.internal:5432/retail")
    deployment.setenv("RETAIL_DB_USER", "retail_reader")
    deployment.setenv("RETAIL_DB_PASSWORD", "db-secret")
    config = cluster.launcher_config()
    text = repr(config)
    assert "db-secret" not in text and "retail_reader" not in text
    assert config["env_variables"]["RETAIL_DB_JDBC_URL"] == "jdbc:postgresql://orders.internal:5432/retail"
    assert {s["name"]: s["key"] for s in config["secrets_to_env_variables"]} == cluster.DATABASE_SECRETS
    # the same resource on the cluster, its settings read from the environment the scope fills
    database = database_resource()
    assert (database.jdbc_url, database.user, database.password) == (
        "RETAIL_DB_JDBC_URL",
        "RETAIL_DB_USER",
        "RETAIL_DB_PASSWORD",
    )  # dg.EnvVar names, resolved when a run uses the resource
    with dg.build_resources({"database": database}) as built:
        assert (built.database.user, built.database.password) == ("retail_reader", "db-secret")


def test_the_launcher_zips_the_package_itself(deployment):
    package = Path(cluster.package_dir())
    assert (
        package.name == "retail_assets"
        and (package / "definitions.py").is_file()
        and (package / "lib" / "deployment").is_dir()
    )


def test_staging_must_be_a_unity_catalog_volume():
    assert (
        volume_staging_prefix("/Volumes/retail/prod_bronze/artifacts/staging/")
        == "/Volumes/retail/prod_bronze/artifacts/staging"
    )
    for bad in ("/dagster_staging", "dbfs:/Volumes/a/b/c", "/Volumes/retail/prod_bronze", "/Volumes//b/c/d"):
        with pytest.raises(StagingNotOnVolume, match="DBFS root is disabled"):
            volume_staging_prefix(bad)


def test_the_launcher_takes_credentials_from_the_code_server_and_none_on_a_cluster(deployment):
    # A token here: OAuth's client discovers the workspace's token endpoint when it is built, and
    # this host does not exist (the emulator tests run OAuth M2M end to end).
    deployment.setenv("DATABRICKS_TOKEN", "dapi-secret")
    definition = launcher_module.step_launcher()
    with dg.build_resources({"launcher": definition}) as built:
        launcher = built.launcher
    assert isinstance(launcher, VolumeStagedStepLauncher)
    assert (
        launcher._dbfs_path("run", "bronze__stores", "step_run_ref.pkl")
        == "/Volumes/retail/prod_bronze/artifacts/staging/run/bronze__stores/step_run_ref.pkl"
    )
    assert (
        launcher._internal_dbfs_path("run", "a[1]", "code.zip")
        == "/Volumes/retail/prod_bronze/artifacts/staging/run/a__1__/code.zip"
    )
    config = launcher.databricks_runner.client.workspace_client.config
    assert (config.host, config.auth_type) == (HOST, "pat")

    # On a cluster (the runtime sets this) the same resource needs no credentials at all.
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN"):
        deployment.delenv(name)
    deployment.setenv("DATABRICKS_RUNTIME_VERSION", "19.x-scala2.13")
    with dg.build_resources({"launcher": definition}) as built:
        assert isinstance(built.launcher, OnClusterStepLauncher)


def test_a_stale_wheel_on_the_cluster_stops_the_step(deployment):
    deployment.setenv(cluster.CODE_VERSION_ENV, cluster.code_version())
    cluster.check_code_version()
    deployment.setenv(cluster.CODE_VERSION_ENV, "0.0.1+gdeadbee")
    with pytest.raises(cluster.StaleCode, match=r"launched by 0\.0\.1\+gdeadbee.*upload the wheel"):
        cluster.check_code_version()
