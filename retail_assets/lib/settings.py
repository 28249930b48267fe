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


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)
