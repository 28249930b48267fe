"""Silver: typed, validated, deduplicated records; sales at line grain by business date."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import dagster as dg
from pyspark.sql import DataFrame

from retail_assets.lib.engine.checkpoint import SharedResult
from retail_assets.lib.orchestration.factories import (
    RangeMode,
    TableOutput,
    TableRun,
    Upstream,
    build_multi_table_asset,
    build_table_asset,
    partition_rows,
    window,
)
from retail_assets.lib.registry import rules, tables
from retail_assets.lib.settings import lateness_days
from retail_assets.lib.transforms import silver

L = lateness_days()

# Reference data decides whether a key is known; every partition of it can matter.
MASTER_DATA = [Upstream(s, dg.AllPartitionMapping()) for s in tables.master_data()]


def known_keys(run: TableRun) -> DataFrame:
    return silver.known_keys(
        run.read_all(tables.SILVER_CUSTOMERS), run.read_all(tables.SILVER_PRODUCTS), run.read_all(tables.SILVER_STORES)
    )


# The Bronze tables sales lines come from; the operational database's is empty (or absent)
# where no database is configured, and gives no line then.
SALES_SOURCES = (tables.BRONZE_SALES_FILES, tables.BRONZE_POS_TRANSACTIONS, tables.BRONZE_ORDERS_CHANGES)
# Bronze tables a Silver refinement takes change records from besides its own (`refines`): the
# CRM's customer changes.
ALSO_REFINES = {tables.SILVER_CUSTOMERS: (tables.BRONZE_ORDERS_CHANGES,)}


def sales_candidates(run: TableRun, before: int, after: int) -> DataFrame:
    """Sales lines from files, Kafka events and online orders, arrivals day-before … day+after."""
    files = silver.sales_candidates_from_files(run.read(tables.BRONZE_SALES_FILES, before, after))
    events = silver.sales_candidates_from_events(run.read(tables.BRONZE_POS_TRANSACTIONS, before, after))
    orders = silver.sales_candidates_from_orders(
        run.read(tables.BRONZE_ORDERS_CHANGES, before, after), lateness_days=run.lateness_days
    )
    return files.unionByName(events).unionByName(orders)


def refinement_input(run: TableRun, spec: tables.TableSpec) -> DataFrame:
    """The change records of the run's arrival days a Silver refinement (`spec`) cleans: its
    Bronze table's, and the CRM's customer changes in the same shape (`ALSO_REFINES`)."""
    records = run.read(spec.refines)
    for other in ALSO_REFINES.get(spec, ()):
        crm = silver.crm_customer_records(run.read(other))
        records = records.unionByName(crm, allowMissingColumns=True)
    return records


def clean_sales_window(run: TableRun, before: int, after: int) -> silver.SalesResult:
    return silver.clean_sales(
        sales_candidates(run, before, after), known_keys(run), lateness_days=run.lateness_days, batch_id=run.run_id
    )


def sales_days_held(run: TableRun, before: int, after: int) -> dict[tables.TableSpec, list[dt.date]]:
    """The days each Bronze sales table holds rows of, in arrivals day-before … day+after."""
    window = run.partition.widened(before, after)
    return {spec: sorted(partition_rows(run.engine, spec, window)) for spec in SALES_SOURCES}


def shared_classification(
    run: TableRun,
    before: int,
    after: int,
    *,
    held: Mapping[tables.TableSpec, list[dt.date]] | None = None,
    candidates: str = "window",
) -> SharedResult:
    """How a run computes its sales classification of arrivals day-before … day+after, so that a
    range backfill's Silver sales run and its screening run compute it once. It is a function of
    the days of Bronze the window holds (two windows holding the same days read the same rows),
    the master data, the lateness and how candidates were chosen. Ask before reading the rows.
    `held`: the window's `sales_days_held`, when the caller has them already."""
    held = sales_days_held(run, before, after) if held is None else held
    return run.engine.shared_result(
        "sales_classification",
        inputs={**held, **dict.fromkeys(tables.master_data())},
        params={"lateness_days": run.lateness_days, "candidates": candidates, "rules": rules.digest()},
    )


def shared_arrivals_classification(run: TableRun, spec: tables.TableSpec) -> SharedResult:
    """How a run computes the classification of a Silver refinement's (`spec`) arrival days: the
    Silver run of those days and their screening (a later stage for master data, the same run
    for inventory) compute it once. Inventory is judged against the master data too. Ask before
    reading the rows."""
    inputs: dict[tables.TableSpec, str | None] = {
        source: str(run.partition) for source in (spec.refines, *ALSO_REFINES.get(spec, ()))
    }
    params: dict[str, object] = {"rules": rules.digest()}
    if spec.references:
        inputs |= dict.fromkeys(tables.master_data())
        params["lateness_days"] = run.lateness_days
    return run.engine.shared_result(f"{spec.refines.name}_classification", inputs=inputs, params=params)


def sales_compute(run: TableRun) -> dict[str, TableOutput]:
    # Event date D can only have arrived on D-1 … D+L (earlier would be future, later late).
    # sales lines and returns are two filters of one classification: evaluate the rules once
    shared = shared_classification(run, 1, run.lateness_days)  # keyed before the rows are read
    classified = shared.computed(clean_sales_window(run, 1, run.lateness_days).classification)
    silver.refuse_fatal(classified, "silver sales")
    result = silver.sales_outputs(classified, batch_id=run.run_id)
    in_run = run.partition.sql_predicate("event_date")
    sales = result.sales_lines.filter(in_run)
    returns = result.returns.filter(in_run)
    return {
        tables.SILVER_SALES_LINES.name: TableOutput(sales),
        tables.SILVER_RETURNS.name: TableOutput(returns),
    }


sales_lines_and_returns = build_multi_table_asset(
    name="silver_sales_lines_and_returns",
    specs=[tables.SILVER_SALES_LINES, tables.SILVER_RETURNS],
    upstream=[
        *(Upstream(spec, window(1, L)) for spec in SALES_SOURCES),
        *MASTER_DATA,
    ],
    compute=sales_compute,
    ranges=RangeMode.WHOLE_RANGE,
)


def refined(run: TableRun, shared: SharedResult, result: silver.SplitResult) -> DataFrame:
    """The accepted rows of a refinement: from the shared classification where the screening of
    the same days will read it; else straight from the rules (written in one action)."""
    if not shared.shared:
        silver.refuse_fatal(result.classification, result.spec.key)
        return result.accepted
    classified = shared.computed(result.classification)
    silver.refuse_fatal(classified, result.spec.key)
    return silver.split_outputs(classified, result.spec, batch_id=run.run_id).accepted


def master_compute(spec: tables.TableSpec):
    """The compute of a Silver master-data table (`spec`), from its Bronze change records."""

    def compute(run: TableRun) -> TableOutput:
        shared = shared_arrivals_classification(run, spec)
        return TableOutput(
            refined(run, shared, silver.clean_master_data(refinement_input(run, spec), spec, batch_id=run.run_id))
        )

    return compute


master_data_assets = [
    # cleaned within each arrival day
    build_table_asset(
        spec=spec,
        upstream=[Upstream(source) for source in (spec.refines, *ALSO_REFINES.get(spec, ()))],
        compute=master_compute(spec),
        ranges=RangeMode.WHOLE_RANGE,
    )
    for spec in tables.master_data()
]


def inventory_compute(run: TableRun) -> TableOutput:
    shared = shared_arrivals_classification(run, tables.SILVER_INVENTORY)
    result = silver.clean_inventory(
        run.read(tables.BRONZE_INVENTORY), known_keys(run), lateness_days=run.lateness_days, batch_id=run.run_id
    )
    return TableOutput(refined(run, shared, result))


inventory = build_table_asset(
    spec=tables.SILVER_INVENTORY,
    upstream=[Upstream(tables.BRONZE_INVENTORY), *MASTER_DATA],
    compute=inventory_compute,
    ranges=RangeMode.WHOLE_RANGE,  # cleaned within each arrival day
)
