"""Gold: dimensions, the sales fact and business aggregates for analysts."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from retail_assets.lib.orchestration.automation import fill_missing, follow_upstream
from retail_assets.lib.orchestration.factories import (
    RangeMode,
    TableOutput,
    TableRun,
    Upstream,
    asset_key,
    build_table_asset,
    observed_by_day,
    window,
)
from retail_assets.lib.registry import rules, tables
from retail_assets.lib.settings import lateness_days
from retail_assets.lib.transforms import gold

L = lateness_days()
COVER_WINDOW_DAYS = 7
# A dimension run reads the table and merges into it: one at a time, none refuses another's commit.
DIMENSION_POOL = "gold_dimensions"
# A lifetime-value run reads the table and merges into it: one at a time, none refuses another's commit.
CUSTOMER_VALUE_POOL = "gold_customer_value"
# The Silver lines that arrived on a dimension's arrival day: their business dates are L days
# before to one day after it.
SALES_ARRIVED = [Upstream(tables.SILVER_SALES_LINES, window(L, 1)), Upstream(tables.SILVER_RETURNS, window(L, 1))]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# Silver lines name the keys that need an inferred member.
SALES = (tables.SILVER_SALES_LINES, tables.SILVER_RETURNS)


def dimension_compute(silver_spec, dim_spec, build):
    key = silver_spec.identity[0]
    rule = rules.unknown_master(key.removesuffix("_id"))

    def compute(run: TableRun) -> TableOutput:
        # Each row is a version: the materialization's row count says how many.
        if run.full_refresh or not run.engine.exists(dim_spec):
            # Every key from the whole change history, as of the last of the run's days.
            lines = [run.read_all(spec).select(key, "quality_flags", "_arrival_date") for spec in SALES]
            inferred = gold.inferred_keys(lines[0].unionByName(lines[1]), key, rule)
            full = build(
                run.read_all(silver_spec), processed_at=now(), arrival_date=run.partition.end, inferred=inferred
            )
            return TableOutput(full, metadata={"refresh": "full"})
        # Only the keys the run's days touched: their change records, and the keys the Silver
        # lines that arrived on those days name without a record.
        arrived = F.col("_arrival_date").between(F.lit(run.partition.start), F.lit(run.partition.end))
        lines = [run.read(spec, L, 1).where(arrived).select(key, "quality_flags", "_arrival_date") for spec in SALES]
        rows, deletes = gold.rebuild_touched_keys(
            build,
            key=key,
            sk_column=dim_spec.primary_key[0],
            arrived=run.read(silver_spec),
            inferred=gold.inferred_keys(lines[0].unionByName(lines[1]), key, rule),
            changes=run.read_all(silver_spec),
            current=run.read_all(dim_spec),
            processed_at=now(),
            arrival_date=run.partition.end,
        )
        return TableOutput(rows, deletes=deletes, metadata={"refresh": "keys touched"})

    return compute


dim_customer = build_table_asset(
    spec=tables.GOLD_DIM_CUSTOMER,
    upstream=[Upstream(tables.SILVER_CUSTOMERS), *SALES_ARRIVED],
    compute=dimension_compute(tables.SILVER_CUSTOMERS, tables.GOLD_DIM_CUSTOMER, gold.build_dim_customer),
    ranges=RangeMode.WHOLE_RANGE,
    pool=DIMENSION_POOL,
)
dim_product = build_table_asset(
    spec=tables.GOLD_DIM_PRODUCT,
    upstream=[Upstream(tables.SILVER_PRODUCTS), *SALES_ARRIVED],
    compute=dimension_compute(tables.SILVER_PRODUCTS, tables.GOLD_DIM_PRODUCT, gold.build_dim_product),
    ranges=RangeMode.WHOLE_RANGE,
    pool=DIMENSION_POOL,
)
dim_store = build_table_asset(
    spec=tables.GOLD_DIM_STORE,
    upstream=[Upstream(tables.SILVER_STORES), *SALES_ARRIVED],
    compute=dimension_compute(tables.SILVER_STORES, tables.GOLD_DIM_STORE, gold.build_dim_store),
    ranges=RangeMode.WHOLE_RANGE,
    pool=DIMENSION_POOL,
)
dim_date = build_table_asset(
    spec=tables.GOLD_DIM_DATE,
    upstream=[],
    compute=lambda run: TableOutput(gold.build_dim_date(run.partition.days(), run.engine.spark)),
    ranges=RangeMode.WHOLE_RANGE,
    # Only the newest day opens by itself: a running deployment has every earlier calendar row
    # from its own day, and one run per missing past day would crowd the run queue at start-up
    # (a new deployment backfills the calendar once).
    automation_condition=fill_missing(1),
)

DIMENSIONS = (tables.GOLD_DIM_CUSTOMER, tables.GOLD_DIM_PRODUCT, tables.GOLD_DIM_STORE)


def fact_sales_compute(run: TableRun) -> TableOutput:
    fact = gold.build_fact_sales(
        run.read(tables.SILVER_SALES_LINES),
        run.read(tables.SILVER_RETURNS),
        run.read_all(tables.GOLD_DIM_CUSTOMER),
        run.read_all(tables.GOLD_DIM_PRODUCT),
        run.read_all(tables.GOLD_DIM_STORE),
        processed_at=now(),
    )
    # The day's figures are summed as the rows are written: the fact is computed once, and
    # never cached (a million rows at medium).
    fact, figures = observed_by_day(
        fact,
        "event_date",
        run.partition.days(),
        revenue=F.when(F.col("line_type") == "sale", F.col("net_amount")).otherwise(0),
        returns_amount=F.when(F.col("line_type") == "return", -F.col("net_amount")).otherwise(0),
        anonymous_lines=F.when(F.col("customer_sk") == -1, 1).otherwise(0),
        # lines keyed to an inferred member: their store, product or customer has no record yet
        inferred_member_lines=F.when(F.exists("quality_flags", lambda f: f.startswith("unknown_")), 1).otherwise(0),
    )
    return TableOutput(fact, by_partition=figures)


fact_sales = build_table_asset(
    spec=tables.GOLD_FACT_SALES,
    upstream=[
        Upstream(tables.SILVER_SALES_LINES),
        Upstream(tables.SILVER_RETURNS),
        Upstream(tables.GOLD_DIM_DATE),
        # A dimension change for day D can arrive up to L days later.
        *(Upstream(d, window(0, L)) for d in DIMENSIONS),
    ],
    compute=fact_sales_compute,
    ranges=RangeMode.WHOLE_RANGE,
    # A new calendar day alone changes no sale; the fact follows Silver and the dimensions.
    automation_condition=follow_upstream(L + 2, not_triggered_by=(asset_key(tables.GOLD_DIM_DATE),)),
)


def daily_store_sales_compute(run: TableRun) -> TableOutput:
    agg, totals = observed_by_day(
        gold.agg_daily_store_sales(run.read(tables.GOLD_FACT_SALES)),
        "event_date",
        run.partition.days(),
        **{figure: F.col(figure) for figure in ("revenue", "net_revenue", "transactions")},
    )
    return TableOutput(agg, by_partition=totals)


agg_daily_store_sales = build_table_asset(
    spec=tables.GOLD_AGG_DAILY_STORE_SALES,
    upstream=[Upstream(tables.GOLD_FACT_SALES)],
    compute=daily_store_sales_compute,
    ranges=RangeMode.WHOLE_RANGE,
)
agg_product_performance = build_table_asset(
    spec=tables.GOLD_AGG_PRODUCT_PERFORMANCE,
    upstream=[Upstream(tables.GOLD_FACT_SALES), Upstream(tables.GOLD_DIM_PRODUCT, window(0, L))],
    compute=lambda run: TableOutput(
        gold.agg_product_performance(run.read(tables.GOLD_FACT_SALES), run.read_all(tables.GOLD_DIM_PRODUCT))
    ),
    ranges=RangeMode.WHOLE_RANGE,
)


customer_daily_value = build_table_asset(
    spec=tables.GOLD_CUSTOMER_DAILY_VALUE,
    upstream=[Upstream(tables.GOLD_FACT_SALES)],
    compute=lambda run: TableOutput(gold.customer_daily_value(run.read(tables.GOLD_FACT_SALES))),
    ranges=RangeMode.WHOLE_RANGE,
)


def customer_lifetime_value_compute(run: TableRun) -> TableOutput:
    clv = tables.GOLD_AGG_CUSTOMER_LIFETIME_VALUE
    daily = run.read_all(tables.GOLD_CUSTOMER_DAILY_VALUE)
    if run.full_refresh or not run.engine.exists(clv):
        return TableOutput(gold.agg_customer_lifetime_value(daily), metadata={"refresh": "full"})
    # Only the customers the run's days touched, each from all its days in the daily table
    # (one row per customer and day: far fewer than the fact's lines); the other rows stay.
    upserts, deletes = gold.customer_lifetime_value_changes(
        run.read(tables.GOLD_CUSTOMER_DAILY_VALUE),
        daily,
        run.read_all(clv),
        first=run.partition.start,
        last=run.partition.end,
    )
    return TableOutput(upserts, deletes=deletes, metadata={"refresh": "customers touched"})


agg_customer_lifetime_value = build_table_asset(
    spec=tables.GOLD_AGG_CUSTOMER_LIFETIME_VALUE,
    # A late sale re-materializes its day of the fact, then of the daily values, then this day:
    # the customers it touches are computed again.
    upstream=[Upstream(tables.GOLD_CUSTOMER_DAILY_VALUE)],
    compute=customer_lifetime_value_compute,
    ranges=RangeMode.WHOLE_RANGE,
    pool=CUSTOMER_VALUE_POOL,
)


def inventory_cover_compute(run: TableRun) -> TableOutput:
    return TableOutput(
        gold.agg_inventory_cover(
            run.read(tables.SILVER_INVENTORY, 0, run.lateness_days),
            run.read(tables.GOLD_FACT_SALES, COVER_WINDOW_DAYS - 1, 0),
            snapshot_date=run.day,
            window_days=COVER_WINDOW_DAYS,
        )
    )


agg_inventory_cover = build_table_asset(
    spec=tables.GOLD_AGG_INVENTORY_COVER,
    upstream=[
        Upstream(tables.SILVER_INVENTORY, window(0, L)),
        Upstream(tables.GOLD_FACT_SALES, window(COVER_WINDOW_DAYS - 1, 0)),
    ],
    compute=inventory_cover_compute,
)
