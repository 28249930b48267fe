"""Deployment settings read from the environment.

Values that shape the asset graph itself (partition start, lateness window) are read when the
definitions load; nothing here opens a connection or builds a client.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

ENV_VAR = "RETAIL_ENV"


class Environment(str, Enum):
    LOCAL = "local"
    DATABRICKS = "databricks"


def get_environment() -> Environment:
    value = os.environ.get(ENV_VAR, Environment.LOCAL.value).strip().lower()
    try:
        return Environment(value)
    except ValueError:
        allowed = ", ".join(e.value for e in Environment)
        raise ValueError(f"{ENV_VAR}={value!r} is not a known environment; use one of: {allowed}") from None


def partitions_start() -> str:
    """First daily partition of every asset (ISO date)."""
    return os.environ.get("RETAIL_PARTITIONS_START", "2026-10-01")


def lateness_days() -> int:
    """Lateness window L (SPEC §4): event date D reads arrival partitions D-1 … D+L."""
    value = int(os.environ.get("RETAIL_LATENESS_DAYS", "2"))
    if value < 0:
        raise ValueError(f"RETAIL_LATENESS_DAYS must be >= 0, got {value}")
    return value


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def local_data_root() -> Path:
    """Where the local environment keeps its landing zone and lakehouse."""
    return Path(os.environ.get("RETAIL_DATA_ROOT", project_root() / ".lakehouse")).resolve()


# Each local engine as it is meant to run: delta-spark reads Kafka through Spark's source, as on
# Databricks (the bench, the parity tests and their subprocesses take these variables).
ENGINE_ENV = {
    "delta_rs": {"RETAIL_LOCAL_ENGINE": "delta_rs", "RETAIL_KAFKA_READER": "confluent"},
    "delta_spark": {"RETAIL_LOCAL_ENGINE": "delta_spark", "RETAIL_KAFKA_READER": "spark"},
}
LOCAL_ENGINES = tuple(ENGINE_ENV)


def local_engine() -> str:
    """Who writes the local Delta tables (`RETAIL_LOCAL_ENGINE`): `delta_rs` (delta-rs via Arrow,
    the default: faster here, see the README's benchmark) or `delta_spark` (Delta Lake's Spark
    jar, the engine Databricks uses)."""
    value = os.environ.get("RETAIL_LOCAL_ENGINE", "delta_rs").strip().lower()
    if value not in LOCAL_ENGINES:
        raise ValueError(f"RETAIL_LOCAL_ENGINE={value!r} is not a local engine; use one of: {', '.join(LOCAL_ENGINES)}")
    return value


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def sensors_running_by_default() -> bool:
    """Whether the project's sensors start running on a fresh instance (`RETAIL_SENSORS_DEFAULT`).

    `running` (the default) makes `dagster dev` ingest and refine with no click; `stopped` is for
    sessions that drive materializations by hand (backfill tests, demos of the Materialize button).
    """
    value = os.environ.get("RETAIL_SENSORS_DEFAULT", "running").strip().lower()
    if value not in ("running", "stopped"):
        raise ValueError(f"RETAIL_SENSORS_DEFAULT must be 'running' or 'stopped', got {value!r}")
    return value == "running"


def kafka_lag_threshold() -> int:
    """Pending offsets that trigger a Bronze run at once (`RETAIL_KAFKA_LAG_THRESHOLD`)."""
    return int(os.environ.get("RETAIL_KAFKA_LAG_THRESHOLD", "200"))


def kafka_max_wait_seconds() -> float:
    """Longest an offset waits below the lag threshold before a run is requested anyway. 0 (the
    default): the first tick that sees an offset pending requests a run, for the event → Gold
    latency; a higher value gathers small batches into fewer runs."""
    return float(os.environ.get("RETAIL_KAFKA_MAX_WAIT_SECONDS", "0"))


def deployment_env() -> str:
    """The deployment environment name that prefixes Unity Catalog schemas (`{env}_{layer}`).

    `RETAIL_DEPLOYMENT_ENV` wins. Otherwise Dagster+ decides: a branch deployment gets its own
    `pr_<number>` schemas so a pull request never writes production tables, a full deployment
    uses its name (`prod`), and anything else is `dev`.
    """
    explicit = os.environ.get("RETAIL_DEPLOYMENT_ENV", "").strip()
    if explicit:
        return _schema_safe(explicit)
    if os.environ.get("DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT", "") == "1":
        pr = os.environ.get("DAGSTER_CLOUD_PULL_REQUEST_ID", "").strip()
        return _schema_safe(f"pr_{pr}" if pr else f"branch_{os.environ.get('DAGSTER_CLOUD_GIT_BRANCH', 'unknown')}")
    return _schema_safe(os.environ.get("DAGSTER_CLOUD_DEPLOYMENT_NAME", "").strip() or "dev")


def _schema_safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_") or "dev"


# `sc://host:port` of the Spark Connect server a process computes on (`tooling/spark_server.py`); a
# setting of this machine, never forwarded to a Databricks cluster.
SPARK_REMOTE_ENV = "RETAIL_SPARK_REMOTE"


# The operational database (PostgreSQL) Bronze reads changes from; unset URL: there is none.
DB_URL_ENV = "RETAIL_DB_JDBC_URL"
DB_USER_ENV = "RETAIL_DB_USER"
DB_PASSWORD_ENV = "RETAIL_DB_PASSWORD"


def database_configured() -> bool:
    """Whether this deployment has an operational database (`RETAIL_DB_JDBC_URL` is set)."""
    return bool(os.environ.get(DB_URL_ENV, "").strip())
