"""Gold checks: SCD2 history, no raw PII, referential integrity and reconciliation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import dagster as dg
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from retail_assets.lib.engine import PartitionRange
from retail_assets.lib.orchestration.factories import (
    SERVED_INPUTS,
    CheckRun,
    TableCheck,
    build_table_checks,
    served_inputs,
    standard_checks,
)
from retail_assets.lib.registry import tables
from retail_assets.lib.transforms import quality
from retail_assets.lib.transforms.gold import integrity


def scd2_check(key: str, surrogate_key: str) -> TableCheck:
    return TableCheck(
        quality.SCD2_INTEGRITY,
        "Exactly one current version per key, validity intervals contiguous and never overlapping, one unknown member.",
        lambda r: integrity.scd2_integrity(r.frame, key=key, surrogate_key=surrogate_key),
        blocking=True,
    )


NO_RAW_PII_CHECK = TableCheck(
    quality.NO_RAW_PII,
    "No string column holds a raw e-mail address or phone number; only hashes and masks.",
    lambda r: integrity.no_raw_pii(r.frame, r.read_all(tables.SILVER_CUSTOMERS).select("phone")),
    blocking=True,
    reads=(tables.SILVER_CUSTOMERS,),
    range_safe=True,
)


def inferred_check(key: str) -> TableCheck:
    return TableCheck(
        quality.INFERRED_WAITING,
        "No inferred member (a key sales named before its master record arrived) has waited longer than "
        "`inferred_wait_days` for its record.",
        lambda r: integrity.inferred_members_waiting(
            r.frame, key, as_of=r.partition.end, wait_days=r.lakehouse.inferred_wait_days
        ),
        severity=dg.AssetCheckSeverity.WARN,
        range_safe=True,
    )


def fact_references(run: CheckRun) -> quality.CheckOutcome:
    return integrity.referential_integrity(
        run.frame,
        {
            "customer_sk": (run.read_all(tables.GOLD_DIM_CUSTOMER), "customer_sk"),
            "product_sk": (run.read_all(tables.GOLD_DIM_PRODUCT), "product_sk"),
            "store_sk": (run.read_all(tables.GOLD_DIM_STORE), "store_sk"),
            "date_sk": (run.read(tables.GOLD_DIM_DATE), "date_sk"),
        },
    )


def _figures_by_day(df: DataFrame, day: str, days: list[dt.date], **figures: Column) -> dict[dt.date, dict[str, Any]]:
    """Named figures for each of `days`, from one aggregation; 0 for a day without rows."""
    found = {r[day]: r.asDict() for r in df.groupBy(day).agg(*[c.alias(n) for n, c in figures.items()]).collect()}
    return {d: found.get(d, dict.fromkeys(figures, 0)) for d in days}


def _total(column: str | Column) -> Column:
    return F.coalesce(F.sum(column), F.lit(0))


def fact_reconciles(run: CheckRun) -> dict[dt.date, quality.CheckOutcome]:
    days = run.partition.days()
    # Silver's sales lines and returns counted and summed in one pass over both
    lines = run.read(tables.SILVER_SALES_LINES, columns=["event_date", "net_amount"]).withColumn(
        "_return", F.lit(False)
    )
    lines = lines.unionByName(
        run.read(tables.SILVER_RETURNS, columns=["event_date", "net_amount"]).withColumn("_return", F.lit(True))
    )
    in_silver = _figures_by_day(
        lines,
        "event_date",
        days,
        sales_n=F.count(F.when(~F.col("_return"), 1)),
        sales_s=_total(F.when(~F.col("_return"), F.col("net_amount"))),
        returns_n=F.count(F.when(F.col("_return"), 1)),
        returns_s=_total(F.when(F.col("_return"), F.col("net_amount"))),
    )
    is_return = F.col("line_type") == "return"
    fact = _figures_by_day(
        run.frame,
        "event_date",
        days,
        sales_n=F.count(F.when(is_sale(), 1)),
        sales_s=_total(F.when(is_sale(), F.col("net_amount"))),
        returns_n=F.count(F.when(is_return, 1)),
        returns_s=_total(F.when(is_return, F.col("net_amount"))),
    )
    return {
        d: quality.reconciliation(
            {
                "sales_lines": (fact[d]["sales_n"], in_silver[d]["sales_n"]),
                "return_lines": (fact[d]["returns_n"], in_silver[d]["returns_n"]),
                "sales_net_amount": (fact[d]["sales_s"], in_silver[d]["sales_s"]),
                "returns_net_amount": (-fact[d]["returns_s"], in_silver[d]["returns_s"]),
            }
        )
        for d in days
    }


def aggregate_reconciles(measure: str, fact_aggregate: Callable[[], Column]) -> TableCheck:
    """Each day's total of `measure` equals `fact_aggregate` over the fact's rows of that day."""

    def by_day(run: CheckRun) -> dict[dt.date, quality.CheckOutcome]:
        days = run.partition.days()
        gold = _figures_by_day(run.frame, run.spec.partition_column, days, v=_total(measure))
        expected = _figures_by_day(
            run.read(tables.GOLD_FACT_SALES), "event_date", days, v=F.coalesce(fact_aggregate(), F.lit(0))
        )
        return {d: quality.reconciliation({measure: (gold[d]["v"], expected[d]["v"])}) for d in days}

    return TableCheck.grouped_by_day(
        quality.RECONCILIATION,
        f"The day's total `{measure}` equals the same total computed from `gold.fact_sales`.",
        by_day,
        blocking=False,
        reads=(tables.GOLD_FACT_SALES,),
    )


def customer_days_reconcile(run: CheckRun) -> dict[dt.date, quality.CheckOutcome]:
    """Each day's net spend and orders of identified customers, from `gold.fact_sales`'s lines."""
    days = run.partition.days()
    identified = run.read(tables.GOLD_FACT_SALES).where(F.col("customer_id").isNotNull())
    expected = _figures_by_day(
        identified,
        "event_date",
        days,
        net_spend=_total("net_amount"),
        orders=F.count_distinct(F.when(is_sale(), F.struct("customer_id", "transaction_id"))),
    )
    gold = _figures_by_day(run.frame, "event_date", days, net_spend=_total("net_spend"), orders=_total("orders"))
    return {d: quality.reconciliation({f: (gold[d][f], expected[d][f]) for f in ("net_spend", "orders")}) for d in days}


def lifetime_reconciles(run: CheckRun) -> quality.CheckOutcome:
    """The whole table against every customer's days in `gold.customer_daily_value`."""
    per_customer = (
        run.read_all(tables.GOLD_CUSTOMER_DAILY_VALUE, columns=["customer_id", "net_spend", "orders"])
        .groupBy("customer_id")
        .agg(F.sum("net_spend").alias("total_spend"), F.sum("orders").alias("orders"))
        .where(F.col("orders") > 0)
    )

    def totals(df: DataFrame) -> dict[str, Any]:
        return (
            df.agg(
                F.count(F.lit(1)).alias("customers"),
                _total("total_spend").alias("total_spend"),
                _total("orders").alias("orders"),
            )
            .first()
            .asDict()
        )

    gold, expected = totals(run.frame), totals(per_customer)
    return quality.reconciliation({f: (gold[f], expected[f]) for f in ("customers", "total_spend", "orders")})


def is_sale() -> Column:
    return F.col("line_type") == "sale"


def inventory_rows_match(run: CheckRun) -> dict[dt.date, quality.CheckOutcome]:
    """One Gold row per store and product of each day's snapshot, which arrives within L days."""
    first, last = run.partition.start, run.partition.end
    snapshots = run.read(tables.SILVER_INVENTORY, 0, run.lateness_days).filter(
        F.col("snapshot_date").between(F.lit(first), F.lit(last))
        & F.col("_arrival_date").between(F.col("snapshot_date"), F.date_add("snapshot_date", run.lateness_days))
    )
    days = run.partition.days()
    expected = _figures_by_day(snapshots, "snapshot_date", days, n=F.count_distinct("store_id", "product_id"))
    rows = _figures_by_day(run.frame, "snapshot_date", days, n=F.count(F.lit(1)))
    return {d: quality.reconciliation({"store_product_rows": (rows[d]["n"], expected[d]["n"])}) for d in days}


def _over_days(spec: tables.TableSpec, name: str, description: str, by_day, **options: Any) -> TableCheck:
    """A check evaluated for all the run's days at once; a rebuilt table's is the whole table's,
    the same outcome whichever day is checked."""
    if spec.rebuild:
        return TableCheck(name, description, lambda r: by_day(r)[r.partition.end], range_safe=True, **options)
    return TableCheck.grouped_by_day(name, description, by_day, **options)


def serving_checks(spec: tables.TableSpec) -> list[TableCheck]:
    """A serving shape against the table whose rows it serves (matched by that table's key), and
    against its SELECT over its inputs as they stand now."""
    view = spec.view
    assert view is not None
    source = view.rows_of
    day = None if spec.rebuild else spec.partition_column

    def serves(run: CheckRun) -> dict[dt.date, quality.CheckOutcome]:
        rows = run.read_all(source) if source.rebuild else run.read(source)
        if view.where:
            rows = rows.where(view.where)
        return integrity.serves_source(run.frame, rows, source.primary_key, day, run.partition.days())

    def current(run: CheckRun) -> dict[dt.date, quality.CheckOutcome]:
        days = run.partition.days()
        if run.engine.is_view(spec):
            return {
                d: quality.CheckOutcome(True, "a catalog view: its SELECT over its inputs as they stand") for d in days
            }
        # A day whose rows were computed by the same SELECT from the inputs' current versions
        # holds what the SELECT gives now; only the other days are computed again.
        now = served_inputs(run.engine, spec)
        written = run.materialized(days)
        changed = [d for d in days if written[d].get(SERVED_INPUTS) != now]
        outcomes = {
            d: quality.CheckOutcome(
                True,
                "computed from the inputs' current versions by the current SELECT: what its SELECT gives now",
                {"stale_rows": 0, "computed_again": False},
            )
            for d in days
            if d not in changed
        }
        if changed:
            again = None if spec.rebuild else PartitionRange(changed[0], changed[-1])
            served = run.frame if again is None else run.frame.where(again.sql_predicate(spec.partition_column))
            fresh = run.engine.view_rows(spec, again)
            for d, outcome in integrity.served_rows_current(served, fresh, spec, day, changed).items():
                outcomes[d] = replace(outcome, metadata={**outcome.metadata, "computed_again": True})
        return outcomes

    return [
        _over_days(
            spec,
            quality.SERVES_SOURCE,
            f"One row for each row of `{source.key}`"
            + (f" where `{view.where}`" if view.where else "")
            + ", matched by its key: no line dropped or repeated by a join, no table older than its source.",
            serves,
            blocking=True,
            reads=(source,),
        ),
        _over_days(
            spec,
            quality.SERVED_ROWS_CURRENT,
            "A table form's rows equal its SELECT over the inputs as they stand: a dimension change that arrived "
            "after the lateness window (a filled-in inferred member, a type 1 rename) shows in the days it names once "
            "they are materialized again. A catalog view always passes.",
            current,
            severity=dg.AssetCheckSeverity.WARN,
            reads=view.reads,
        ),
    ]


EXTRA_CHECKS: dict[str, list[TableCheck]] = {
    tables.GOLD_DIM_CUSTOMER.key: [
        scd2_check("customer_id", "customer_sk"),
        NO_RAW_PII_CHECK,
        inferred_check("customer_id"),
    ],
    tables.GOLD_DIM_PRODUCT.key: [scd2_check("product_id", "product_sk"), inferred_check("product_id")],
    tables.GOLD_DIM_STORE.key: [inferred_check("store_id")],
    tables.GOLD_FACT_SALES.key: [
        TableCheck(
            quality.REFERENTIAL_INTEGRITY,
            "Every customer, product, store and date key names a dimension row (the unknown member included).",
            fact_references,
            blocking=True,
            reads=(tables.GOLD_DIM_CUSTOMER, tables.GOLD_DIM_PRODUCT, tables.GOLD_DIM_STORE, tables.GOLD_DIM_DATE),
            range_safe=True,
        ),
        TableCheck.grouped_by_day(
            quality.RECONCILIATION,
            "Line counts and net amounts of sales and returns equal Silver's for the day.",
            fact_reconciles,
            blocking=True,
            reads=(tables.SILVER_SALES_LINES, tables.SILVER_RETURNS),
        ),
        NO_RAW_PII_CHECK,
    ],
    tables.GOLD_AGG_DAILY_STORE_SALES.key: [
        aggregate_reconciles("revenue", lambda: F.sum(F.when(is_sale(), F.col("net_amount"))))
    ],
    tables.GOLD_AGG_PRODUCT_PERFORMANCE.key: [aggregate_reconciles("net_revenue", lambda: F.sum("net_amount"))],
    tables.GOLD_CUSTOMER_DAILY_VALUE.key: [
        TableCheck.grouped_by_day(
            quality.RECONCILIATION,
            "The day's net spend and orders (customer and transaction pairs with a sales line) equal those of the "
            "identified customers' lines in `gold.fact_sales`.",
            customer_days_reconcile,
            reads=(tables.GOLD_FACT_SALES,),
        )
    ],
    tables.GOLD_AGG_CUSTOMER_LIFETIME_VALUE.key: [
        TableCheck(
            quality.RECONCILIATION,
            "Customers, total spend and orders equal those summed from every day of `gold.customer_daily_value` "
            "(customers with an order). Warns while a day that changed has not run yet, or after lines left a day "
            "in the middle of a customer's history: a run tagged `retail/full_refresh=true` rebuilds the table.",
            lifetime_reconciles,
            severity=dg.AssetCheckSeverity.WARN,
            reads=(tables.GOLD_CUSTOMER_DAILY_VALUE,),
        )
    ],
    tables.GOLD_AGG_INVENTORY_COVER.key: [
        TableCheck.grouped_by_day(
            quality.RECONCILIATION,
            "One row per store and product in the day's Silver inventory snapshot.",
            inventory_rows_match,
        )
    ],
}

gold_checks = [
    build_table_checks(
        spec,
        [*standard_checks(spec), *EXTRA_CHECKS.get(spec.key, []), *(serving_checks(spec) if spec.view else [])],
    )
    for spec in tables.TABLES
    if spec.layer is tables.Layer.GOLD
]
