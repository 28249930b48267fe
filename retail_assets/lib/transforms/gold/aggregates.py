"""The business aggregates over the sales fact."""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from retail_assets.lib.registry import tables
from retail_assets.lib.transforms.gold.common import _MONEY, RETURN, SALE, _conform, _zero


def _is_sale() -> Column:
    return F.col("line_type") == F.lit(SALE)


def _is_return() -> Column:
    return F.col("line_type") == F.lit(RETURN)


def _sum_where(condition: Column, value: Column, type_: str) -> Column:
    return F.coalesce(F.sum(F.when(condition, value)), _zero(type_)).cast(type_)


def agg_daily_store_sales(fact: DataFrame) -> DataFrame:
    """`gold.agg_daily_store_sales`: one row per (event_date, store_id, channel) present in `fact`.

    revenue = net of sale lines; returns_amount = net of return lines as a positive amount;
    net_revenue = revenue - returns_amount; transactions = distinct transactions with a sale
    line; units / units_returned = sold / returned units (both positive); unique_customers =
    distinct identified customers on sale lines. Zero where nothing qualifies.
    """
    daily = fact.groupBy("event_date", "store_id", "channel").agg(
        F.max("store_sk").alias("store_sk"),
        _sum_where(_is_sale(), F.col("net_amount"), _MONEY).alias("revenue"),
        _sum_where(_is_return(), -F.col("net_amount"), _MONEY).alias("returns_amount"),
        F.count_distinct(F.when(_is_sale(), F.col("transaction_id"))).alias("transactions"),
        _sum_where(_is_sale(), F.col("quantity").cast("bigint"), "bigint").alias("units"),
        _sum_where(_is_return(), -F.col("quantity").cast("bigint"), "bigint").alias("units_returned"),
        F.count_distinct(F.when(_is_sale(), F.col("customer_id"))).alias("unique_customers"),
    )
    return _conform(
        daily.withColumn("net_revenue", F.col("revenue") - F.col("returns_amount")), tables.GOLD_AGG_DAILY_STORE_SALES
    )


def agg_product_performance(fact: DataFrame, dim_product: DataFrame) -> DataFrame:
    """`gold.agg_product_performance`: one row per (event_date, product_id) present in `fact`.

    Each line resolves to a product version: the one its `product_sk` references or, when the
    line carries the unknown member (-1) but the product is in the dimension now, the
    product's current version; a product absent from the dimension resolves to nothing.
    category = that of the version resolved for the day's latest line (null if none);
    gross_margin = net_revenue - sum(signed quantity x unit_cost of each line's version), null
    unless every line of the group has a known unit_cost (a partial cost would overstate the
    margin). transactions = distinct transactions with a sale line.
    """
    dim = dim_product.where(
        (F.col("product_sk") != F.lit(tables.UNKNOWN_MEMBER_SK))
        & (F.col("product_id") != F.lit(tables.UNKNOWN_MEMBER_ID))
    )
    attrs = F.struct(F.col("category").alias("category"), F.col("unit_cost").alias("unit_cost"))
    by_sk = dim.groupBy("product_sk").agg(F.max_by(attrs, F.col("valid_from")).alias("_referenced"))
    current = dim.groupBy(F.col("product_id").alias("_current_id")).agg(
        F.max_by(attrs, F.col("valid_from")).alias("_current")
    )
    lines = (
        fact.join(by_sk, on="product_sk", how="left")
        .join(current, on=F.col("product_id") == F.col("_current_id"), how="left")
        .withColumn("_version", F.coalesce(F.col("_referenced"), F.col("_current")))
    )
    latest_line = F.struct("event_time", "transaction_id", "line_number", "line_type")
    cost = F.col("quantity") * F.col("_version.unit_cost")
    daily = lines.groupBy("event_date", "product_id").agg(
        F.max_by(F.col("_version.category"), latest_line).alias("category"),
        _sum_where(_is_sale(), F.col("quantity").cast("bigint"), "bigint").alias("units_sold"),
        _sum_where(_is_return(), -F.col("quantity").cast("bigint"), "bigint").alias("units_returned"),
        _sum_where(_is_sale(), F.col("net_amount"), _MONEY).alias("revenue"),
        _sum_where(_is_return(), -F.col("net_amount"), _MONEY).alias("returns_amount"),
        F.sum("net_amount").alias("_net"),
        F.sum(cost).alias("_cost"),
        F.count(cost).alias("_costed_lines"),
        F.count(F.lit(1)).alias("_lines"),
        F.count_distinct(F.when(_is_sale(), F.col("transaction_id"))).alias("transactions"),
    )
    performance = daily.withColumn("net_revenue", F.col("revenue") - F.col("returns_amount")).withColumn(
        "gross_margin", F.when(F.col("_costed_lines") == F.col("_lines"), F.col("_net") - F.col("_cost"))
    )
    return _conform(performance, tables.GOLD_AGG_PRODUCT_PERFORMANCE)


def customer_daily_value(fact: DataFrame) -> DataFrame:
    """`gold.customer_daily_value`: one row per (event_date, identified customer) with lines in `fact`.

    net_spend = signed net of the customer's lines that day (returns subtract); orders = distinct
    transactions with a sale line that day (0 when the day holds only returns).
    """
    daily = (
        fact.where(F.col("customer_id").isNotNull())
        .groupBy("event_date", "customer_id")
        .agg(
            F.sum("net_amount").alias("net_spend"),
            F.count_distinct(F.when(_is_sale(), F.col("transaction_id"))).alias("orders"),
        )
    )
    return _conform(daily, tables.GOLD_CUSTOMER_DAILY_VALUE)


def agg_customer_lifetime_value(daily: DataFrame) -> DataFrame:
    """`gold.agg_customer_lifetime_value` of the customers in `daily` (`customer_daily_value`
    rows: every day of each customer given, for figures over their whole history).

    total_spend = sum of net_spend; orders = sum of the days' orders; first/last purchase =
    min/max event_date of days with an order; last_active_date = the latest day with any line;
    average_order_value = round(total_spend / orders, 2). Customers without an order (only
    returns) are left out.
    """
    with_order = F.col("orders") > 0
    clv = (
        daily.groupBy("customer_id")
        .agg(
            F.sum("net_spend").alias("total_spend"),
            F.sum("orders").alias("orders"),
            F.min(F.when(with_order, F.col("event_date"))).alias("first_purchase"),
            F.max(F.when(with_order, F.col("event_date"))).alias("last_purchase"),
            F.max("event_date").alias("last_active_date"),
        )
        .where(F.col("orders") > 0)
        .withColumn("average_order_value", F.round(F.col("total_spend") / F.col("orders"), 2))
    )
    return _conform(clv, tables.GOLD_AGG_CUSTOMER_LIFETIME_VALUE)


def customer_lifetime_value_changes(
    days_run: DataFrame, daily: DataFrame, current: DataFrame, *, first: date, last: date
) -> tuple[DataFrame, DataFrame]:
    """A run of `gold.agg_customer_lifetime_value` over business days `first` … `last`: the rows
    to upsert and the customers (`customer_id`) to delete, for a MERGE into `current`.

    The customers touched are those with rows in `days_run` (`customer_daily_value` of those
    days) and those whose row in `current` names one of the days as first or last purchase or as
    last activity (lines of theirs may have left the day). Their figures are computed again by
    `agg_customer_lifetime_value` from all their rows in `daily` (`customer_daily_value`, read
    for those customers only); a touched customer left without an order is deleted. Nothing is
    added to or subtracted from a stored figure, so running a day again, or the days in any
    order, leaves what `agg_customer_lifetime_value` over all of `daily` gives, once each day
    that changed has run. Lines leaving a day in the middle of a customer's history (only a
    corrected rule quarantining accepted lines removes a line from the fact) show at the
    customer's next touch, or with a full refresh.
    """
    days = (F.lit(first), F.lit(last))
    names_a_day = (
        F.col("last_active_date").between(*days)
        | F.col("first_purchase").between(*days)
        | F.col("last_purchase").between(*days)
    )
    named = current.where(names_a_day).select("customer_id")
    touched = days_run.select("customer_id").unionByName(named).distinct()
    upserts = agg_customer_lifetime_value(daily.join(touched, "customer_id", "left_semi"))
    return upserts, touched


def agg_inventory_cover(
    inventory: DataFrame, fact_window: DataFrame, *, snapshot_date: date, window_days: int = 7
) -> DataFrame:
    """`gold.agg_inventory_cover` for `snapshot_date`.

    One row per (store, product) snapshotted that day: the latest copy by (_arrival_date,
    _source) when a snapshot was re-sent. avg_daily_units_sold = net units (sales minus
    returns) over the `window_days` days ending on `snapshot_date` / window_days, floored at 0;
    days_of_cover = on_hand_qty / avg, null when nothing sold. `fact_window` may hold more days
    than the window: it is filtered here.
    """
    if window_days < 1:
        raise ValueError(f"window_days must be >= 1, got {window_days}")
    latest = Window.partitionBy("store_id", "product_id").orderBy(
        F.col("_arrival_date").desc(), F.col("_source").desc()
    )
    snapshot = (
        inventory.where(F.col("snapshot_date") == F.lit(snapshot_date))
        .withColumn("_copy", F.row_number().over(latest))
        .where(F.col("_copy") == 1)
        .select("snapshot_date", "store_id", "product_id", "on_hand_qty")
    )
    first_day = snapshot_date - timedelta(days=window_days - 1)
    sold = (
        fact_window.where(F.col("event_date").between(F.lit(first_day), F.lit(snapshot_date)))
        .groupBy("store_id", "product_id")
        .agg(F.sum("quantity").alias("_net_units"))
    )
    average = F.greatest(
        F.coalesce(F.col("_net_units"), F.lit(0)).cast("double") / F.lit(float(window_days)), F.lit(0.0)
    )
    cover = (
        snapshot.join(sold, on=["store_id", "product_id"], how="left")
        .withColumn("avg_daily_units_sold", average)
        .withColumn(
            "days_of_cover",
            F.when(F.col("avg_daily_units_sold") > 0, F.col("on_hand_qty") / F.col("avg_daily_units_sold")),
        )
    )
    return _conform(cover, tables.GOLD_AGG_INVENTORY_COVER)
