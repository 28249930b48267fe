"""Gold checks: SCD2 history, no raw PII, referential integrity and reconciliation."""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column
from pyspark.sql import functions as F

from retail_assets.lib import quality
from retail_assets.lib.factories import CheckRun, TableCheck, build_table_checks, standard_checks
from retail_assets.lib.tables import (
    GOLD_AGG_CUSTOMER_LIFETIME_VALUE,
    GOLD_AGG_DAILY_STORE_SALES,
    GOLD_AGG_INVENTORY_COVER,
    GOLD_AGG_PRODUCT_PERFORMANCE,
    GOLD_DIM_CUSTOMER,
    GOLD_DIM_DATE,
    GOLD_DIM_PRODUCT,
    GOLD_DIM_STORE,
    GOLD_FACT_SALES,
    SILVER_CUSTOMERS,
    SILVER_INVENTORY,
    SILVER_RETURNS,
    SILVER_SALES_LINES,
    TABLES,
    Layer,
)


def scd2_check(key: str, surrogate_key: str) -> TableCheck:
    return TableCheck(
        quality.SCD2_INTEGRITY,
        "Exactly one current version per key, validity intervals contiguous and never overlapping, one unknown member.",
        lambda r: quality.scd2_integrity(r.frame, key=key, surrogate_key=surrogate_key),
        blocking=True,
    )


NO_RAW_PII_CHECK = TableCheck(
    quality.NO_RAW_PII,
    "No string column holds a raw e-mail address or phone number; only hashes and masks.",
    lambda r: quality.no_raw_pii(r.frame, r.read_all(SILVER_CUSTOMERS).select("phone")),
    blocking=True,
    reads=(SILVER_CUSTOMERS,),
    range_safe=True,
)


def fact_references(run: CheckRun) -> quality.CheckOutcome:
    return quality.referential_integrity(
        run.frame,
        {
            "customer_sk": (run.read_all(GOLD_DIM_CUSTOMER), "customer_sk"),
            "product_sk": (run.read_all(GOLD_DIM_PRODUCT), "product_sk"),
            "store_sk": (run.read_all(GOLD_DIM_STORE), "store_sk"),
            "date_sk": (run.read(GOLD_DIM_DATE), "date_sk"),
        },
    )


def _sum_net(df, condition=None):
    if condition is not None:
        df = df.filter(condition)
    return df.agg(F.coalesce(F.sum("net_amount"), F.lit(0)).alias("s"), F.count(F.lit(1)).alias("n")).first()


def fact_reconciles(run: CheckRun) -> quality.CheckOutcome:
    sales, returns = _sum_net(run.read(SILVER_SALES_LINES)), _sum_net(run.read(SILVER_RETURNS))
    fact_sales = _sum_net(run.frame, is_sale())
    fact_returns = _sum_net(run.frame, F.col("line_type") == "return")
    return quality.reconciliation(
        {
            "sales_lines": (fact_sales["n"], sales["n"]),
            "return_lines": (fact_returns["n"], returns["n"]),
            "sales_net_amount": (fact_sales["s"], sales["s"]),
            "returns_net_amount": (-fact_returns["s"], returns["s"]),
        }
    )


def aggregate_reconciles(measure: str, fact_aggregate: Callable[[], Column], *, history: bool = False) -> TableCheck:
    """The aggregate's total of `measure` equals `fact_aggregate` over the fact's rows."""

    def evaluate(run: CheckRun) -> quality.CheckOutcome:
        fact = run.read_all(GOLD_FACT_SALES).filter(F.col("event_date") <= F.lit(run.day)) if history else run.read(GOLD_FACT_SALES)
        gold = run.frame.agg(F.coalesce(F.sum(measure), F.lit(0))).first()[0]
        expected = fact.agg(F.coalesce(fact_aggregate(), F.lit(0))).first()[0]
        return quality.reconciliation({measure: (gold, expected)})

    return TableCheck(
        quality.RECONCILIATION,
        f"The day's total `{measure}` equals the same total computed from `gold.fact_sales`.",
        evaluate,
        blocking=False,
        reads=(GOLD_FACT_SALES,),
    )


def is_sale() -> Column:
    return F.col("line_type") == "sale"


def inventory_rows_match(run: CheckRun) -> quality.CheckOutcome:
    snapshot = run.read(SILVER_INVENTORY, 0, run.lateness_days).filter(F.col("snapshot_date") == F.lit(run.day))
    expected = snapshot.select("store_id", "product_id").distinct().count()
    return quality.reconciliation({"store_product_rows": (run.frame.count(), expected)})


EXTRA_CHECKS: dict[str, list[TableCheck]] = {
    GOLD_DIM_CUSTOMER.key: [scd2_check("customer_id", "customer_sk"), NO_RAW_PII_CHECK],
    GOLD_DIM_PRODUCT.key: [scd2_check("product_id", "product_sk")],
    GOLD_FACT_SALES.key: [
        TableCheck(
            quality.REFERENTIAL_INTEGRITY,
            "Every customer, product, store and date key names a dimension row (the unknown member included).",
            fact_references,
            blocking=True,
            reads=(GOLD_DIM_CUSTOMER, GOLD_DIM_PRODUCT, GOLD_DIM_STORE, GOLD_DIM_DATE),
            range_safe=True,
        ),
        TableCheck(
            quality.RECONCILIATION,
            "Line counts and net amounts of sales and returns equal Silver's for the day.",
            fact_reconciles,
            blocking=True,
            reads=(SILVER_SALES_LINES, SILVER_RETURNS),
        ),
        NO_RAW_PII_CHECK,
    ],
    GOLD_AGG_DAILY_STORE_SALES.key: [aggregate_reconciles("revenue", lambda: F.sum(F.when(is_sale(), F.col("net_amount"))))],
    GOLD_AGG_PRODUCT_PERFORMANCE.key: [aggregate_reconciles("net_revenue", lambda: F.sum("net_amount"))],
    GOLD_AGG_CUSTOMER_LIFETIME_VALUE.key: [
        aggregate_reconciles(
            "orders",
            lambda: F.count_distinct(F.when(is_sale() & F.col("customer_id").isNotNull(), F.col("transaction_id"))),
            history=True,
        )
    ],
    GOLD_AGG_INVENTORY_COVER.key: [
        TableCheck(
            quality.RECONCILIATION,
            "One row per store and product in the day's Silver inventory snapshot.",
            inventory_rows_match,
        )
    ],
}

gold_checks = [
    build_table_checks(spec, [*standard_checks(spec), *EXTRA_CHECKS.get(spec.key, [])]) for spec in TABLES if spec.layer is Layer.GOLD
]
