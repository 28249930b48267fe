"""The Databricks clusters Spark steps run on, and the step launcher that submits them.

Everything is read from the deployment's environment when the definitions load and handed to
the step launcher (`lib/deployment/launcher.py`) as configuration; credentials resolve from the code
server's environment only when a run starts a step, and no client exists before then.

What the remote side needs and why:
- the project wheel as a cluster library, from the artifacts volume, because the launcher's code
  zip only carries the package sources; its version is this code server's (`RETAIL_CODE_VERSION`
  travels with the step and the cluster refuses another: `check_code_version`);
- the same non-secret `RETAIL_*` settings (`env_variables`), because the cluster re-imports the
  code location and must build the same asset graph and resources;
- the Kafka credentials from a Databricks secret scope (`secrets_to_env_variables`), only with a
  SASL Kafka cluster, and the operational database's user and password, only with a database. No Databricks credential goes to a cluster: the runtime authenticates the
  cluster itself, and the launcher resource the cluster rebuilds needs none.

Which cluster: a new job cluster per step (the launcher's model; minutes of start-up each), one
from an instance pool (`RETAIL_DATABRICKS_INSTANCE_POOL_ID`: warm instances, seconds), or an
existing all-purpose cluster every step shares (`RETAIL_DATABRICKS_CLUSTER_ID`). Whatever it is,
it runs in dedicated access mode (`SINGLE_USER`), assigned to the pipeline's service principal:
Unity Catalog tables and volumes are reachable only from a UC access mode, and the launcher's
driver-side Python needs a dedicated cluster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from retail_assets.lib import settings
from retail_assets.lib.version import code_version, wheel_filename

SECRET_SCOPE_VAR = "RETAIL_DATABRICKS_SECRET_SCOPE"
# Names of the secrets in the scope, exported on the cluster as these environment variables.
KAFKA_SECRETS = {
    "RETAIL_KAFKA_SASL_USERNAME": "kafka-sasl-username",
    "RETAIL_KAFKA_SASL_PASSWORD": "kafka-sasl-password",
}
DATABASE_SECRETS = {
    settings.DB_USER_ENV: "db-user",
    settings.DB_PASSWORD_ENV: "db-password",
}
# Settings never forwarded in clear text: they travel through the secret scope.
SECRET_MARKERS = ("PASSWORD", "TOKEN", "SECRET", "USERNAME")
# Databricks Runtime 19: Apache Spark 4.2, the pinned pyspark's minor (lib/engine/jvm.py SPARK_VERSION).
DEFAULT_RUNTIME = "19.x-scala2.13"
# Dedicated access mode: a Unity Catalog access mode, assigned to one principal.
ACCESS_MODE = "SINGLE_USER"
CODE_VERSION_ENV = "RETAIL_CODE_VERSION"


class StaleCode(RuntimeError):
    """The cluster's installed project wheel is not the version the code server launched."""


def catalog() -> str:
    return settings.env("RETAIL_UC_CATALOG", "retail")


def landing_root() -> str:
    """A Unity Catalog volume: clusters see it as a local folder under /Volumes."""
    return settings.env("RETAIL_LANDING_ROOT", f"/Volumes/{catalog()}/{settings.deployment_env()}_bronze/landing")


def artifacts_volume() -> str:
    """The volume holding the project wheel and the launcher's staged steps."""
    return f"/Volumes/{catalog()}/{settings.deployment_env()}_bronze/artifacts"


def wheel_path() -> str:
    """The wheel of exactly this code server's version (its file name carries the version)."""
    return settings.env("RETAIL_DATABRICKS_WHEEL", f"{artifacts_volume()}/{wheel_filename()}")


def staging_prefix() -> str:
    return settings.env("RETAIL_DATABRICKS_STAGING_PREFIX", f"{artifacts_volume()}/staging")


def check_code_version() -> None:
    """On a cluster: the installed wheel must be the version the code server launched the step
    with. The installed package comes first on the cluster's path, ahead of the launcher's code
    zip, so a wheel left over from an older release would otherwise run in silence."""
    expected = os.environ.get(CODE_VERSION_ENV)
    if expected and expected != code_version():
        raise StaleCode(
            f"this cluster runs retail-assets {code_version()} but the step was launched by {expected}: "
            f"upload the wheel of {expected} to {artifacts_volume()} (retail-assets provision --upload-wheel) "
            "or point RETAIL_DATABRICKS_WHEEL at it"
        )


def package_dir() -> str:
    """The `retail_assets` package folder, which the launcher zips and uploads for every step: its
    sources only, so neither a virtualenv nor lakehouse data next to the checkout is ever shipped.
    The zip holds the package's contents at its root, so a cluster imports `retail_assets` from
    the installed wheel, which `check_code_version` holds to the code server's version."""
    import retail_assets  # noqa: PLC0415

    return settings.env("RETAIL_DATABRICKS_CODE_PATH", str(Path(retail_assets.__file__).resolve().parent))


# Settings that describe this machine's Spark, not the deployment: a cluster uses its own session.
MACHINE_LOCAL = frozenset({settings.SPARK_REMOTE_ENV, "RETAIL_SPARK_MASTER"})


def remote_env_variables() -> dict[str, str]:
    """Non-secret settings the cluster needs to rebuild the same code location."""
    forwarded = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("RETAIL_")
        and not any(m in k for m in SECRET_MARKERS)
        and k not in MACHINE_LOCAL
        and k not in DATABASE_SECRETS
    }
    forwarded.update(
        {
            settings.ENV_VAR: settings.Environment.DATABRICKS.value,
            # Pinned: the cluster has no Dagster+ branch variables of its own to derive it from.
            "RETAIL_DEPLOYMENT_ENV": settings.deployment_env(),
            "RETAIL_UC_CATALOG": catalog(),
            CODE_VERSION_ENV: code_version(),
        }
    )
    return dict(sorted(forwarded.items()))


def secrets_to_env_variables() -> list[dict[str, str]]:
    """Only a SASL Kafka cluster's and an operational database's credentials: nothing else
    secret reaches a cluster."""
    wanted = {}
    if settings.env("RETAIL_KAFKA_SASL_MECHANISM", ""):
        wanted |= KAFKA_SECRETS
    if settings.database_configured():
        wanted |= DATABASE_SECRETS
    scope = settings.env(SECRET_SCOPE_VAR, "retail-assets")
    return [{"name": name, "key": key, "scope": scope} for name, key in wanted.items()]


def run_as() -> str:
    """The principal the dedicated clusters are assigned to: the pipeline's service principal
    (its application id, which is also the OAuth client id the launcher authenticates with)."""
    for name in ("RETAIL_DATABRICKS_RUN_AS", "RETAIL_DATABRICKS_PIPELINE_PRINCIPAL", "DATABRICKS_CLIENT_ID"):
        if settings.env(name, ""):
            return settings.env(name, "")
    return ""


def nodes() -> dict[str, Any]:
    pool = settings.env("RETAIL_DATABRICKS_INSTANCE_POOL_ID", "")
    if pool:
        driver_pool = settings.env("RETAIL_DATABRICKS_DRIVER_POOL_ID", "")
        return {"instance_pool_id": pool, **({"driver_instance_pool_id": driver_pool} if driver_pool else {})}
    return {"node_types": {"node_type_id": settings.env("RETAIL_DATABRICKS_NODE_TYPE", "i3.xlarge")}}


def job_cluster() -> dict[str, Any]:
    """The `new` job cluster of a step (one cluster per step; the launcher's model)."""
    env = settings.deployment_env()
    principal = run_as()
    return {
        "spark_version": settings.env("RETAIL_DATABRICKS_SPARK_VERSION", DEFAULT_RUNTIME),
        "nodes": nodes(),
        "size": {
            "autoscale": {
                "min_workers": int(settings.env("RETAIL_DATABRICKS_MIN_WORKERS", "1")),
                "max_workers": int(settings.env("RETAIL_DATABRICKS_MAX_WORKERS", "4")),
            }
        },
        # Unity Catalog tables and volumes are reachable only from clusters in a UC access mode.
        "data_security_mode": ACCESS_MODE,
        **({"single_user_name": principal} if principal else {}),
        "spark_conf": {
            # Every timestamp in the lakehouse is UTC, as locally.
            "spark.sql.session.timeZone": "UTC",
        },
        "custom_tags": [{"key": "project", "value": "retail-assets"}, {"key": "deployment", "value": env}],
    }


def cluster_choice() -> dict[str, Any]:
    """`{"existing": id}` with `RETAIL_DATABRICKS_CLUSTER_ID`, else a new job cluster per step."""
    existing = settings.env("RETAIL_DATABRICKS_CLUSTER_ID", "")
    return {"existing": existing} if existing else {"new": job_cluster()}


def run_config() -> dict[str, Any]:
    return {
        "run_name": f"retail-assets-{settings.deployment_env()}",
        "cluster": cluster_choice(),
        "libraries": [{"whl": wheel_path()}],
        "timeout_seconds": int(settings.env("RETAIL_DATABRICKS_TIMEOUT_SECONDS", "7200")),
    }


def launcher_config() -> dict[str, Any]:
    return {
        "run_config": run_config(),
        "local_pipeline_package_path": package_dir(),
        "staging_prefix": staging_prefix(),
        "env_variables": remote_env_variables(),
        "secrets_to_env_variables": secrets_to_env_variables(),
        "poll_interval_sec": float(settings.env("RETAIL_DATABRICKS_POLL_SECONDS", "10")),
        "max_completion_wait_time_seconds": int(settings.env("RETAIL_DATABRICKS_TIMEOUT_SECONDS", "7200")),
        "verbose_logs": False,
    }
