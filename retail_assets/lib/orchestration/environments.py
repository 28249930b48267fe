"""One resource mapping per environment, with identical keys."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from retail_assets.lib import settings
from retail_assets.lib.deployment import cluster, launcher
from retail_assets.lib.deployment.launcher import RUNTIME_ENV
from retail_assets.lib.deployment.workspace import DatabricksWorkspaceResource
from retail_assets.lib.orchestration.alerts import alerts_resource
from retail_assets.lib.orchestration.resources import (
    DatabaseResource,
    DatabricksLakehouseResource,
    KafkaResource,
    LakehouseResource,
)
from retail_assets.lib.settings import Environment
from retail_assets.lib.sources import spark_kafka


def kafka_resource(**overrides: Any) -> KafkaResource:
    """The Kafka connection from the `RETAIL_KAFKA_*` environment; `overrides` win over it."""
    settings_from_env: dict[str, Any] = {
        "bootstrap_servers": settings.env("RETAIL_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
        "security_protocol": settings.env("RETAIL_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
        "sasl_mechanism": settings.env("RETAIL_KAFKA_SASL_MECHANISM", "") or None,
        "sasl_username": dg.EnvVar("RETAIL_KAFKA_SASL_USERNAME")
        if settings.env("RETAIL_KAFKA_SASL_USERNAME", "")
        else None,
        "sasl_password": dg.EnvVar("RETAIL_KAFKA_SASL_PASSWORD")
        if settings.env("RETAIL_KAFKA_SASL_PASSWORD", "")
        else None,
        # a private CA for SSL / SASL_SSL listeners; public CAs come from the system store
        "ssl_ca_location": settings.env("RETAIL_KAFKA_SSL_CA_LOCATION", "") or None,
    }
    return KafkaResource(**{**settings_from_env, **overrides})


def database_resource() -> DatabaseResource:
    """The operational database from `RETAIL_DB_JDBC_URL`, `RETAIL_DB_USER` and
    `RETAIL_DB_PASSWORD` (each a `dg.EnvVar`, read when a run or a tick uses it); unset, the
    deployment has no database and only its asset and sensor say so."""

    def secret(name: str) -> Any:
        return dg.EnvVar(name) if settings.env(name, "") else ""

    return DatabaseResource(
        jdbc_url=secret(settings.DB_URL_ENV),
        user=secret(settings.DB_USER_ENV),
        password=secret(settings.DB_PASSWORD_ENV),
        source_schema=settings.env("RETAIL_DB_SCHEMA", "orders"),
        lock_timeout_s=float(settings.env("RETAIL_DB_LOCK_TIMEOUT_S", "30")),
    )


def local_resources() -> dict[str, Any]:
    root = settings.local_data_root()
    return {
        "lakehouse": LakehouseResource(
            root=str(root / "lakehouse"),
            landing_root=str(root / "landing"),
            lateness_days=settings.lateness_days(),
            landing_stable_seconds=float(settings.env("RETAIL_LANDING_STABLE_SECONDS", "0")),
            inferred_wait_days=int(settings.env("RETAIL_INFERRED_WAIT_DAYS", "7")),
            table_engine=settings.local_engine(),
            deployment_env=settings.deployment_env(),
        ),
        "kafka": kafka_resource(reader=settings.env("RETAIL_KAFKA_READER", "confluent")),
        "database": database_resource(),
        # Locally every step runs in the Dagster run's own process.
        "pyspark_step_launcher": dg.ResourceDefinition.none_resource(),
        # No workspace: the sensors read the landing folder and Bronze directly.
        "databricks": dg.ResourceDefinition.none_resource(),
        # Slack and e-mail for the alert and freshness sensors, off until configured
        "alerts": alerts_resource(),
    }


def resources_for(environment: Environment) -> dict[str, Any]:
    if environment is Environment.LOCAL:
        return local_resources()
    if environment is Environment.DATABRICKS:
        return databricks_resources()
    raise NotImplementedError(f"the {environment.value} environment is not configured in this version")


def databricks_resources() -> dict[str, Any]:
    """Every Spark step on a Databricks cluster; tables in Unity Catalog (SPEC §3, §6, §12).

    The sensors and the provisioning job run in the code server and reach the workspace through
    `databricks` (REST: Files API, SQL warehouse, Unity Catalog); no asset requires it, so a
    cluster never builds it."""
    if os.environ.get(RUNTIME_ENV):
        cluster.check_code_version()
    return {
        "lakehouse": DatabricksLakehouseResource(
            catalog=cluster.catalog(),
            deployment_env=settings.deployment_env(),
            root=settings.env("RETAIL_DATABRICKS_TABLE_ROOT", ""),
            landing_root=cluster.landing_root(),
            lateness_days=settings.lateness_days(),
            landing_stable_seconds=float(settings.env("RETAIL_LANDING_STABLE_SECONDS", "0")),
            inferred_wait_days=int(settings.env("RETAIL_INFERRED_WAIT_DAYS", "7")),
        ),
        # The cluster ships Spark's Kafka connector; offsets still come from Bronze.
        "kafka": kafka_resource(
            reader=settings.env("RETAIL_KAFKA_READER", "spark"), shaded_prefix=spark_kafka.DATABRICKS_SHADED_PREFIX
        ),
        # The same JDBC URL from the cluster (the runtime ships the PostgreSQL driver); the
        # credentials reach the cluster through the secret scope (`cluster.secrets_to_env_variables`).
        "database": database_resource(),
        "pyspark_step_launcher": launcher.step_launcher(),
        "databricks": DatabricksWorkspaceResource.from_env(),
        # The alert and freshness sensors run in the code server, like the other sensors.
        "alerts": alerts_resource(),
    }
