"""Quarantine: every record Silver could not accept, with its rule and original payload."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from retail_assets.defs.silver.assets import (
    MASTER_DATA,
    SALES_SOURCES,
    known_keys,
    refinement_input,
    sales_candidates,
    sales_days_held,
    shared_arrivals_classification,
    shared_classification,
)
from retail_assets.lib.orchestration.automation import follow_upstream
from retail_assets.lib.orchestration.factories import (
    CheckRun,
    RangeMode,
    TableOutput,
    TableRun,
    Upstream,
    build_multi_table_asset,
    build_table_asset,
    window,
)
from retail_assets.lib.registry.tables import (
    BRONZE_CUSTOMERS,
    BRONZE_INVENTORY,
    BRONZE_ORDERS_CHANGES,
    BRONZE_PRODUCTS,
    BRONZE_STORES,
    QUARANTINE_DUPLICATES,
    QUARANTINE_INGEST_REJECTS,
    QUARANTINE_RULE_VIOLATIONS,
    SILVER_INVENTORY,
    SILVER_RETURNS,
    SILVER_SALES_LINES,
    Layer,
    TableSpec,
    master_data,
    refinements,
    tables_in,
)
from retail_assets.lib.settings import lateness_days
from retail_assets.lib.transforms import silver
from retail_assets.lib.transforms.silver import conform

L = lateness_days()
# Every Bronze table: quarantine takes in what each could not parse or Silver refused.
BRONZE_TABLES = tables_in(Layer.BRONZE)


def union(frames: list[DataFrame]) -> DataFrame:
    return reduce(DataFrame.unionByName, frames)


def records_in_by_day(run: TableRun | CheckRun) -> dict[dt.date, int]:
    """Records that arrived on each day of the run, in the unit conservation counts in.

    A function of the Bronze tables' committed versions: a quarantine asset and its checks, in
    one run, read the same versions, and the process counts them once."""

    def count() -> dict[dt.date, int]:
        counted = (
            union([silver.count_records_in(run.read(spec), spec.key) for spec in BRONZE_TABLES])
            .groupBy("_arrival_date")
            .agg(F.sum("records").alias("n"))
            .collect()
        )
        return {r["_arrival_date"]: int(r["n"] or 0) for r in counted}

    days = str(run.partition)
    return dict(run.engine.computed_once("records_in", count, inputs=dict.fromkeys(BRONZE_TABLES, days)))


def counts_by_day(df: DataFrame, *by: str) -> dict[tuple, int]:
    """Rows per (arrival day, *by), keyed by those values."""
    grouped = df.groupBy("_arrival_date", *by).agg(F.count(F.lit(1)).alias("n")).collect()
    return {tuple(r[c] for c in ("_arrival_date", *by)): int(r["n"]) for r in grouped}


def reject_figures(run: TableRun, quarantined: DataFrame) -> dict[dt.date, dict[str, float | int]]:
    """Numeric per-partition figures the UI plots: the share of each day's records quarantined."""
    rows, records_in = counts_by_day(quarantined), records_in_by_day(run)
    figures = {}
    for day in run.partition.days():
        quarantined_rows, day_in = rows.get((day,), 0), records_in.get(day, 0)
        figures[day] = {"records_in": day_in, "reject_rate": round(quarantined_rows / day_in, 6) if day_in else 0.0}
    return figures


def ingest_rejects_compute(run: TableRun) -> TableOutput:
    frames = [
        silver.ingest_rejects(run.read(spec), source_table=spec.key, batch_id=run.run_id) for spec in BRONZE_TABLES
    ]
    rejects = union(frames).cache()
    return TableOutput(rejects, by_partition=reject_figures(run, rejects))


ingest_rejects = build_table_asset(
    spec=QUARANTINE_INGEST_REJECTS,
    upstream=[Upstream(spec) for spec in BRONZE_TABLES],
    compute=ingest_rejects_compute,
    ranges=RangeMode.WHOLE_RANGE,
    derived_columns={
        "original_record": [(spec, "_raw_record") for spec in BRONZE_TABLES],
        "original_bytes": [(spec, "_raw_bytes") for spec in BRONZE_TABLES],
    },
)


class Screening:
    """Everything the Silver rules decide about the records that arrived on the run's days.

    Each table's records are classified once (the classification is materialized); the
    violations, the duplicates and their counts are all filters of it."""

    def __init__(self, run: TableRun) -> None:
        self.run = run
        first, last = run.partition.start, run.partition.end
        # Whether a sales record is a duplicate depends on every copy that shares its event date,
        # and those arrived within L+1 days either side of its day; only the copies are needed.
        window_days = run.lateness_days + 1
        held = sales_days_held(run, window_days, window_days)
        judged = other_days_hold_sales(run, held)
        # violations and duplicates both come from the classified records: evaluate rules once
        # (or not at all, when the Silver sales run classified the same records)
        shared_sales = shared_classification(
            run, window_days, window_days, held=held, candidates=f"judged with {first}..{last}" if judged else "window"
        )
        candidates = sales_candidates(run, window_days, window_days)
        if judged:
            candidates = silver.candidates_judged_with(candidates, first, last)
        # the master data's and inventory's classifications are the Silver runs' of these days,
        # when they wrote them where this run can read them (keyed before the rows are read)
        shared = {spec: shared_arrivals_classification(run, spec) for spec in refinements()}
        keys = known_keys(run)
        sales = silver.clean_sales(candidates, keys, lateness_days=run.lateness_days, batch_id=run.run_id)
        self.sales = silver.sales_outputs(shared_sales.computed(sales.classification), batch_id=run.run_id)
        in_run = run.partition.sql_predicate("_arrival_date")

        def screened(spec: TableSpec, result: silver.SplitResult) -> silver.SplitResult:
            return silver.split_outputs(shared[spec].computed(result.classification), spec, batch_id=run.run_id)

        self.masters = {
            spec.refines: screened(
                spec, silver.clean_master_data(refinement_input(run, spec), spec, batch_id=run.run_id)
            )
            for spec in master_data()
        }
        # order changes merged into the lines Silver holds, counted per arrival day
        self.merged = merged_changes_by_day(run)
        self.inventory = screened(
            SILVER_INVENTORY,
            silver.clean_inventory(
                run.read(BRONZE_INVENTORY), keys, lateness_days=run.lateness_days, batch_id=run.run_id
            ),
        )
        self.violations = union(
            [self.sales.violations.filter(in_run)]
            + [r.violations for r in self.masters.values()]
            + [self.inventory.violations]
        )
        self.duplicates = union(
            [self.sales.duplicates.filter(in_run)] + [r.duplicates for r in (*self.masters.values(), self.inventory)]
        )


def merged_changes_by_day(run: TableRun | CheckRun) -> dict[tuple[dt.date, str], int]:
    """The order change records of the run's arrival days counted rather than kept or
    quarantined (superseded versions, cancelled lines, order headers), per (day, outcome): judged
    over the days' sales windows, L+1 days either side, as the screening judges the lines."""
    window_days = run.lateness_days + 1
    merged = silver.merged_order_changes(
        run.read(BRONZE_ORDERS_CHANGES, window_days, window_days), lateness_days=run.lateness_days
    ).filter(run.partition.sql_predicate("_arrival_date"))
    return {(r["_arrival_date"], r["outcome"]): int(r["records"]) for r in merged.collect()}


MERGED_METADATA = "merged_order_changes"


def other_days_hold_sales(run: TableRun, held: Mapping[TableSpec, list[dt.date]]) -> bool:
    """Whether Bronze holds sales that arrived in the window (`held`: its `sales_days_held`) but
    not on the run's days. When it holds none, every candidate arrived on the run's days, and
    looking for other days' copies of them would only search an empty set (at a cost of a pass
    over the window)."""
    return any(not run.partition.start <= day <= run.partition.end for days in held.values() for day in days)


DUPLICATES_METADATA = "duplicates"


def screening_compute(run: TableRun) -> dict[str, TableOutput]:
    screening = Screening(run)
    # the days' rows as they stand, read before they are replaced: their history is kept
    previous = run.read(QUARANTINE_RULE_VIOLATIONS).localCheckpoint()
    now = dt.datetime.now(dt.UTC).isoformat()
    violations = silver.with_history(screening.violations, previous, run_id=run.run_id, now=now).cache()
    quarantined = violations.where("replayed_at IS NULL")
    by_rule = counts_by_day(quarantined, "rule")
    replayed = counts_by_day(violations.where(F.col("replayed_by") == run.run_id))
    # Exact re-sends are not quarantined: the ledger names each with the copy that was kept, and
    # each day's count is recorded on the violations' materialization too (SPEC §5).
    ledger = conform(screening.duplicates.withColumn("_batch_id", F.lit(run.run_id)), QUARANTINE_DUPLICATES).cache()
    duplicates = counts_by_day(ledger)
    figures = reject_figures(run, quarantined)
    for day, day_figures in figures.items():
        day_figures[DUPLICATES_METADATA] = duplicates.get((day,), 0)
        day_figures[MERGED_METADATA] = sum(n for (d, _), n in screening.merged.items() if d == day)
        day_figures["released"] = replayed.get((day,), 0)
        day_figures.update({f"rule_{rule}": n for (d, rule), n in sorted(by_rule.items()) if d == day})
    return {
        QUARANTINE_RULE_VIOLATIONS.name: TableOutput(violations, by_partition=figures),
        QUARANTINE_DUPLICATES.name: TableOutput(
            ledger, by_partition={day: {"duplicates": duplicates.get((day,), 0)} for day in run.partition.days()}
        ),
    }


rule_violations_and_duplicates = build_multi_table_asset(
    name="quarantine_rule_violations_and_duplicates",
    specs=[QUARANTINE_RULE_VIOLATIONS, QUARANTINE_DUPLICATES],
    upstream=[
        *(Upstream(spec, window(L + 1, L + 1)) for spec in SALES_SOURCES),
        Upstream(BRONZE_CUSTOMERS),
        Upstream(BRONZE_PRODUCTS),
        Upstream(BRONZE_STORES),
        Upstream(BRONZE_INVENTORY),
        *MASTER_DATA,
        # Runs after the Silver partitions its records could have gone to, so the
        # conservation check sees both sides.
        Upstream(SILVER_SALES_LINES, window(L, 1)),
        Upstream(SILVER_RETURNS, window(L, 1)),
        Upstream(SILVER_INVENTORY),
    ],
    compute=screening_compute,
    ranges=RangeMode.WHOLE_RANGE,
    # The ledger reconciles one arrival day against Silver partitions of several business days:
    # it follows on the catch-up cron, after the late partitions of the same wave.
    automation_condition=follow_upstream(L + 2, newest_at_once=False),
)
