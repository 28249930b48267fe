"""Silver: typed, validated, deduplicated records; sales at line grain by business date."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

import dagster as dg
from pyspark.sql import DataFrame

from retail_assets.lib.engine.checkpoint import SharedCheckpoint, fingerprint
from retail_assets.lib.orchestration.factories import (
    TableOutput,
    TableRun,
    Upstream,
    build_multi_table_asset,
    build_table_asset,
    over_ranges,
    partition_rows,
    window,
)
from retail_assets.lib.registry import rules, tables
from retail_assets.lib.registry.tables import (
    BRONZE_INVENTORY,
    BRONZE_POS_TRANSACTIONS,
    BRONZE_SALES_FILES,
    SILVER_CUSTOMERS,
    SILVER_INVENTORY,
    SILVER_PRODUCTS,
    SILVER_RETURNS,
    SILVER_SALES_LINES,
    SILVER_STORES,
    TableSpec,
    master_data,
)
from retail_assets.lib.settings import lateness_days
from retail_assets.lib.transforms import silver

L = lateness_days()

# Reference data decides whether a key is known; every partition of it can matter.
MASTER_DATA = [Upstream(s, dg.AllPartitionMapping()) for s in master_data()]


def known_keys(run: TableRun) -> DataFrame:
    return silver.known_keys(run.read_all(SILVER_CUSTOMERS), run.read_all(SILVER_PRODUCTS), run.read_all(SILVER_STORES))


def sales_candidates(run: TableRun, before: int, after: int) -> DataFrame:
    """Sales lines from files and from Kafka events, arrivals day-before … day+after."""
    files = silver.sales_candidates_from_files(run.read(BRONZE_SALES_FILES, before, after))
    events = silver.sales_candidates_from_events(run.read(BRONZE_POS_TRANSACTIONS, before, after))
    return files.unionByName(events)


def clean_sales_window(run: TableRun, before: int, after: int) -> silver.SalesResult:
    return silver.clean_sales(
        sales_candidates(run, before, after), known_keys(run), lateness_days=run.lateness_days, batch_id=run.run_id
    )


# The code a sales classification is computed by: part of a shared checkpoint's key.
_CLASSIFICATION_CODE = fingerprint(silver.__file__, rules.__file__, tables.__file__)


def sales_days_held(run: TableRun, before: int, after: int) -> dict[TableSpec, list[dt.date]]:
    """The days each Bronze sales table holds rows of, in arrivals day-before … day+after."""
    window = run.partition.widened(before, after)
    return {
        spec: sorted(partition_rows(run.engine, spec, window)) for spec in (BRONZE_SALES_FILES, BRONZE_POS_TRANSACTIONS)
    }


def shared_classification(
    run: TableRun,
    before: int,
    after: int,
    *,
    held: Mapping[TableSpec, list[dt.date]] | None = None,
    candidates: str = "window",
) -> Callable[[DataFrame], DataFrame] | None:
    """How a run materializes its sales classification of arrivals day-before … day+after:
    through a checkpoint other runs can read (`lib/engine/checkpoint.py`) where the engine has a
    scratch directory (None: kept in the session). The key is everything the classification is
    a function of: each Bronze sales table's committed version and the days of it the window
    holds (two windows holding the same days read the same rows), the master data's versions,
    the lateness, how candidates were chosen, the code. A range backfill's Silver sales run
    and its screening run key alike.

    Call it before reading the rows: a commit in between then leaves a key older than the rows
    it names, which no later run asks for, never a key newer than its rows. `held`: the
    window's `sales_days_held`, when the caller has them already."""
    directory = run.engine.scratch_location("sales_classification")
    if directory is None:
        return None
    if held is None:
        held = sales_days_held(run, before, after)
    key = {
        "bronze": {
            spec.key: [run.engine.storage_id(spec), run.engine.version(spec), [str(d) for d in days]]
            for spec, days in held.items()
        },
        "master_data": _master_data_versions(run),
        "lateness_days": run.lateness_days,
        "candidates": candidates,
        "code": _CLASSIFICATION_CODE,
    }
    return SharedCheckpoint(directory, key).materialize


def _master_data_versions(run: TableRun) -> dict[str, list]:
    return {
        spec.key: [run.engine.storage_id(spec), run.engine.version(spec)]
        for spec in (SILVER_CUSTOMERS, SILVER_PRODUCTS, SILVER_STORES)
    }


def shared_arrivals_classification(run: TableRun, bronze: TableSpec) -> Callable[[DataFrame], DataFrame] | None:
    """How a run materializes its classification of one Bronze master-data or inventory table's
    arrival days: through a checkpoint, as `shared_classification` does for sales. The Silver
    run of those days and their screening (a later stage for master data, the same run for
    inventory) key alike, so the screening reads what the Silver run computed. The key: the
    Bronze table's committed version and the days read, for inventory also the master data it
    is judged against and the lateness, and the code. Call it before reading the rows."""
    directory = run.engine.scratch_location(f"{bronze.name}_classification")
    if directory is None:
        return None
    key: dict[str, object] = {
        "bronze": [run.engine.storage_id(bronze), run.engine.version(bronze), str(run.partition)],
        "code": _CLASSIFICATION_CODE,
    }
    if bronze is BRONZE_INVENTORY:
        key |= {"master_data": _master_data_versions(run), "lateness_days": run.lateness_days}
    return SharedCheckpoint(directory, key).materialize


@over_ranges
def sales_compute(run: TableRun) -> dict[str, TableOutput]:
    # Event date D can only have arrived on D-1 … D+L (earlier would be future, later late).
    # sales lines and returns are two filters of one classification: evaluate the rules once
    checkpoint = shared_classification(run, 1, run.lateness_days)  # keyed before the rows are read
    result = clean_sales_window(run, 1, run.lateness_days).materialized(checkpoint)
    in_run = run.partition.sql_predicate("event_date")
    sales = result.sales_lines.filter(in_run)
    returns = result.returns.filter(in_run)
    return {
        SILVER_SALES_LINES.name: TableOutput(sales),
        SILVER_RETURNS.name: TableOutput(returns),
    }


sales_lines_and_returns = build_multi_table_asset(
    name="silver_sales_lines_and_returns",
    specs=[SILVER_SALES_LINES, SILVER_RETURNS],
    upstream=[
        Upstream(BRONZE_SALES_FILES, window(1, L)),
        Upstream(BRONZE_POS_TRANSACTIONS, window(1, L)),
        *MASTER_DATA,
    ],
    compute=sales_compute,
)


def master_compute(spec: TableSpec):
    """The compute of a Silver master-data table (`spec`), from its Bronze change records."""

    @over_ranges  # cleaned within each arrival day
    def compute(run: TableRun) -> TableOutput:
        # Written where the screening of the same days can read it; else never kept (one action).
        checkpoint = shared_arrivals_classification(run, spec.refines)
        result = silver.clean_master_data(run.read(spec.refines), spec, batch_id=run.run_id)
        return TableOutput((result.materialized(checkpoint) if checkpoint else result).accepted)

    return compute


master_data_assets = [
    build_table_asset(spec=spec, upstream=[Upstream(spec.refines)], compute=master_compute(spec))
    for spec in master_data()
]


@over_ranges  # cleaned within each arrival day
def inventory_compute(run: TableRun) -> TableOutput:
    checkpoint = shared_arrivals_classification(run, BRONZE_INVENTORY)
    result = silver.clean_inventory(
        run.read(BRONZE_INVENTORY), known_keys(run), lateness_days=run.lateness_days, batch_id=run.run_id
    )
    return TableOutput((result.materialized(checkpoint) if checkpoint else result).accepted)


inventory = build_table_asset(
    spec=SILVER_INVENTORY,
    upstream=[Upstream(BRONZE_INVENTORY), *MASTER_DATA],
    compute=inventory_compute,
)
