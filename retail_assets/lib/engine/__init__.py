"""Lakehouse engines: one interface, one implementation per environment.

`DeltaRsEngine` (delta-rs, the `local` extra) is imported on first use: a Databricks cluster and
the Dagster+ code server run without delta-rs installed.
"""

from typing import Any

from retail_assets.lib.engine.base import CommitInfo, ConcurrentWriteError, LakehouseEngine, PartitionRange, RowStream
from retail_assets.lib.engine.delta_spark import DeltaSparkEngine

__all__ = [
    "CommitInfo",
    "ConcurrentWriteError",
    "DeltaRsEngine",
    "DeltaSparkEngine",
    "LakehouseEngine",
    "PartitionRange",
    "RowStream",
]


def __getattr__(name: str) -> Any:
    if name == "DeltaRsEngine":
        from retail_assets.lib.engine.local import DeltaRsEngine  # noqa: PLC0415

        return DeltaRsEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
