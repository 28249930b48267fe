"""Lakehouse engines: one interface, one implementation per environment."""

from retail_assets.lib.engine.base import CommitInfo, ConcurrentWriteError, LakehouseEngine, PartitionRange, RowStream
from retail_assets.lib.engine.delta_spark import DeltaSparkEngine
from retail_assets.lib.engine.local import DeltaRsEngine

__all__ = ["CommitInfo", "ConcurrentWriteError", "DeltaRsEngine", "DeltaSparkEngine", "LakehouseEngine", "PartitionRange", "RowStream"]
