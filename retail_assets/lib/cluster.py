"""The Databricks job cluster every Spark step runs on, and the step launcher that submits it.

Everything is read from the deployment's environment when the definitions load and handed to
`databricks_pyspark_step_launcher` as configuration; host and token resolve from environment
variables only when a step starts, and no client exists before then.

What the remote side needs and why:
- the project wheel as a cluster library (its dependencies install with it), because the
  launcher's code zip only carries the package sources;
- the same non-secret `RETAIL_*` settings (`env_variables`), because the cluster re-imports the
  code location and must build the same asset graph and resources;
- host, token and the Kafka password from a Databricks secret scope (`secrets_to_env_variables`),
  because the cluster re-initializes the step's resources, the launcher's included.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dagster as dg

from retail_assets.lib import settings

SECRET_SCOPE_VAR = "RETAIL_DATABRICKS_SECRET_SCOPE"
# Names of the secrets in the scope, exported on the cluster as these environment variables.
CLUSTER_SECRETS = {"DATABRICKS_HOST": "databricks-host", "DATABRICKS_TOKEN": "databricks-token"}
KAFKA_SECRETS = {"RETAIL_KAFKA_SASL_USERNAME": "kafka-sasl-username", "RETAIL_KAFKA_SASL_PASSWORD": "kafka-sasl-password"}
# Settings never forwarded in clear text: they travel through the secret scope.
SECRET_MARKERS = ("PASSWORD", "TOKEN", "SECRET", "USERNAME")


def catalog() -> str:
    return settings.env("RETAIL_UC_CATALOG", "retail")


def landing_root() -> str:
    """A Unity Catalog volume: clusters see it as a local folder under /Volumes."""
    return settings.env("RETAIL_LANDING_ROOT", f"/Volumes/{catalog()}/{settings.deployment_env()}_bronze/landing")


def wheel_path() -> str:
    default = f"/Volumes/{catalog()}/{settings.deployment_env()}_bronze/artifacts/retail_assets-{version('retail-assets')}-py3-none-any.whl"
    return settings.env("RETAIL_DATABRICKS_WHEEL", default)


def package_dir() -> str:
    """The package the launcher zips and uploads for every step: its sources only, so neither
    a virtualenv nor lakehouse data next to the checkout is ever shipped."""
    return settings.env("RETAIL_DATABRICKS_CODE_PATH", str(Path(__file__).resolve().parents[1]))


# Settings that describe this machine's Spark, not the deployment: a cluster uses its own session.
MACHINE_LOCAL = frozenset({settings.SPARK_REMOTE_ENV, "RETAIL_SPARK_MASTER"})


def remote_env_variables() -> dict[str, str]:
    """Non-secret settings the cluster needs to rebuild the same code location."""
    forwarded = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("RETAIL_") and not any(m in k for m in SECRET_MARKERS) and k not in MACHINE_LOCAL
    }
    forwarded.update(
        {
            settings.ENV_VAR: settings.Environment.DATABRICKS.value,
            # Pinned: the cluster has no Dagster+ branch variables of its own to derive it from.
            "RETAIL_DEPLOYMENT_ENV": settings.deployment_env(),
            "RETAIL_UC_CATALOG": catalog(),
        }
    )
    return dict(sorted(forwarded.items()))


def secrets_to_env_variables() -> list[dict[str, str]]:
    scope = settings.env(SECRET_SCOPE_VAR, "retail-assets")
    wanted = dict(CLUSTER_SECRETS)
    if settings.env("RETAIL_KAFKA_SASL_MECHANISM", ""):
        wanted.update(KAFKA_SECRETS)
    return [{"name": name, "key": key, "scope": scope} for name, key in wanted.items()]


def job_cluster() -> dict[str, Any]:
    """The `new` job cluster of every step (one cluster per step; the launcher's model)."""
    env = settings.deployment_env()
    return {
        "spark_version": settings.env("RETAIL_DATABRICKS_SPARK_VERSION", "17.3.x-scala2.13"),
        "nodes": {"node_types": {"node_type_id": settings.env("RETAIL_DATABRICKS_NODE_TYPE", "i3.xlarge")}},
        "size": {
            "autoscale": {
                "min_workers": int(settings.env("RETAIL_DATABRICKS_MIN_WORKERS", "1")),
                "max_workers": int(settings.env("RETAIL_DATABRICKS_MAX_WORKERS", "4")),
            }
        },
        # Unity Catalog tables are reachable only from clusters in a UC access mode.
        "data_security_mode": "SINGLE_USER",
        **({"single_user_name": settings.env("RETAIL_DATABRICKS_RUN_AS", "")} if settings.env("RETAIL_DATABRICKS_RUN_AS", "") else {}),
        "spark_conf": {
            # Every timestamp in the lakehouse is UTC, as locally.
            "spark.sql.session.timeZone": "UTC",
        },
        "custom_tags": [{"key": "project", "value": "retail-assets"}, {"key": "deployment", "value": env}],
    }


def run_config() -> dict[str, Any]:
    return {
        "run_name": f"retail-assets-{settings.deployment_env()}",
        "cluster": {"new": job_cluster()},
        "libraries": [{"whl": wheel_path()}],
        "timeout_seconds": int(settings.env("RETAIL_DATABRICKS_TIMEOUT_SECONDS", "7200")),
    }


def launcher_config() -> dict[str, Any]:
    return {
        "run_config": run_config(),
        "databricks_host": {"env": "DATABRICKS_HOST"},
        "databricks_token": {"env": "DATABRICKS_TOKEN"},
        "local_pipeline_package_path": package_dir(),
        "staging_prefix": settings.env("RETAIL_DATABRICKS_STAGING_PREFIX", "/dagster_staging"),
        "env_variables": remote_env_variables(),
        "secrets_to_env_variables": secrets_to_env_variables(),
        "poll_interval_sec": float(settings.env("RETAIL_DATABRICKS_POLL_SECONDS", "10")),
        "max_completion_wait_time_seconds": int(settings.env("RETAIL_DATABRICKS_TIMEOUT_SECONDS", "7200")),
        "verbose_logs": False,
    }


def step_launcher() -> dg.ResourceDefinition:
    from dagster_databricks import databricks_pyspark_step_launcher

    return databricks_pyspark_step_launcher.configured(launcher_config())
