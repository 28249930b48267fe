"""Factories that turn registry entries into Dagster assets and asset checks.

An asset is: read inputs through the engine, call a pure transformation, write through the
engine, report metadata. Everything table-specific comes from the registry; everything
layer-specific from the compute function passed in. `assets.py` builds assets, `checks.py`
checks, `runs.py` is what a compute function gets and returns, `metadata.py` what the UI shows.
"""

from retail_assets.lib.orchestration.factories.assets import (
    FOLLOW,
    build_multi_table_asset,
    build_serving_asset,
    build_table_asset,
)
from retail_assets.lib.orchestration.factories.checks import (
    CHECK_THREADS,
    CheckRun,
    TableCheck,
    build_table_checks,
    side_by_side,
    standard_checks,
)
from retail_assets.lib.orchestration.factories.metadata import (
    CODE_REFERENCES,
    COLUMN_LINEAGE,
    KINDS,
    OWNERS,
    SERVED_INPUTS,
    STEP_LAUNCHER,
    ColumnSources,
    asset_key,
    code_references,
    column_lineage,
    column_schema,
    daily_partitions,
    definition_metadata,
    describe,
    materialization_metadata,
    served_inputs,
    window,
)
from retail_assets.lib.orchestration.factories.runs import (
    FULL_REFRESH_TAG,
    Compute,
    MultiCompute,
    RangeMode,
    RangeNotSupported,
    RunScope,
    TableOutput,
    TableRun,
    Upstream,
    observed_by_day,
    partition_rows,
    run_partitions,
)

__all__ = [
    "CHECK_THREADS",
    "CODE_REFERENCES",
    "FULL_REFRESH_TAG",
    "COLUMN_LINEAGE",
    "CheckRun",
    "ColumnSources",
    "Compute",
    "FOLLOW",
    "KINDS",
    "MultiCompute",
    "OWNERS",
    "SERVED_INPUTS",
    "RangeMode",
    "RangeNotSupported",
    "RunScope",
    "STEP_LAUNCHER",
    "TableCheck",
    "TableOutput",
    "TableRun",
    "Upstream",
    "asset_key",
    "build_multi_table_asset",
    "build_serving_asset",
    "build_table_asset",
    "build_table_checks",
    "code_references",
    "column_lineage",
    "column_schema",
    "daily_partitions",
    "definition_metadata",
    "describe",
    "materialization_metadata",
    "served_inputs",
    "observed_by_day",
    "partition_rows",
    "run_partitions",
    "side_by_side",
    "standard_checks",
    "window",
]
