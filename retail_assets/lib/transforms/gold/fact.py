"""The star-schema sales fact: Silver sales and returns keyed to the dimension versions valid at
the sale (a point-in-time join)."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from retail_assets.lib.registry.tables import (
    GOLD_FACT_SALES,
    UNKNOWN_MEMBER_ID,
    UNKNOWN_MEMBER_SK,
)
from retail_assets.lib.transforms.gold.common import (
    RETURN,
    SALE,
    _conform,
    _require,
    _timestamp_literal,
    date_sk,
)

# Silver sales/returns columns the fact carries; the amounts are negated for returns.
_LINE_COLUMNS = [
    "transaction_id",
    "line_number",
    "event_time",
    "event_date",
    "store_id",
    "product_id",
    "customer_id",
    "quantity",
    "unit_price",
    "gross_amount",
    "discount_amount",
    "net_amount",
    "payment_method",
    "channel",
    "quality_flags",
]


_SIGNED_COLUMNS = ("quantity", "gross_amount", "discount_amount", "net_amount")


def _point_in_time_sk(lines: DataFrame, dim: DataFrame, *, key: str, sk_column: str) -> DataFrame:
    """Add `sk_column`: the `dim` version of `lines[key]` valid at `event_time`.

    An as-of lookup done as one window over the union of versions and lines per key, rather
    than a range join, so each line comes out exactly once whatever the dimension holds:
    - the version with the greatest valid_from <= event_time, if event_time < its valid_to;
    - a key whose first version starts after the event gets its first version (late-arriving
      dimension member);
    - a null key (an anonymous customer), or one the dimension does not hold yet, gets the
      unknown member (-1). A key sales named before its master record has an inferred member in
      the dimension (`dimensions.py`), so -1 for a named key only means the dimension has not
      been rebuilt since the line arrived: the next build of the day, after it, keys the line;
    - a line after the key's deletion (`is_deleted`: its last version ends at the delete) keeps
      that last version: the sale was the deleted customer's.
    """
    line_struct = T.StructType(list(lines.schema.fields))
    version_type = T.StructType(
        [
            T.StructField("sk", T.LongType()),
            T.StructField("valid_from", T.TimestampType()),
            T.StructField("valid_to", T.TimestampType()),
            T.StructField("deleted", T.BooleanType()),
        ]
    )
    versions = dim.where(
        F.col(key).isNotNull()
        & (F.col(key) != F.lit(UNKNOWN_MEMBER_ID))
        & (F.col(sk_column) != F.lit(UNKNOWN_MEMBER_SK))
    ).select(
        F.col(key).cast("string").alias("_k"),
        F.col("valid_from").alias("_t"),
        F.lit(0).alias("_kind"),  # versions sort before lines at the same instant: valid_from is inclusive
        F.struct(
            F.col(sk_column).cast("bigint").alias("sk"),
            F.col("valid_from").alias("valid_from"),
            F.col("valid_to").alias("valid_to"),
            (F.col("is_deleted") if "is_deleted" in dim.columns else F.lit(False)).alias("deleted"),
        ).alias("_v"),
        F.lit(None).cast(line_struct).alias("_line"),
    )
    keyed = lines.where(F.col(key).isNotNull()).select(
        F.col(key).cast("string").alias("_k"),
        F.col("event_time").alias("_t"),
        F.lit(1).alias("_kind"),
        F.lit(None).cast(version_type).alias("_v"),
        F.struct(*[F.col(c) for c in lines.columns]).alias("_line"),
    )
    timeline = Window.partitionBy("_k").orderBy(F.col("_t"), F.col("_kind"), F.col("_v.sk"))
    valid = F.last("_v", ignorenulls=True).over(timeline.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    first = F.first("_v", ignorenulls=True).over(
        timeline.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    )
    resolved = (
        versions.unionByName(keyed)
        .withColumn("_valid", valid)
        .withColumn("_first", first)
        .where(F.col("_kind") == 1)
        .select(
            "_line.*",
            F.when(
                F.col("_valid").isNotNull()
                & (
                    F.col("_valid.valid_to").isNull()
                    | (F.col("_t") < F.col("_valid.valid_to"))
                    | F.coalesce(F.col("_valid.deleted"), F.lit(False))
                ),
                F.col("_valid.sk"),
            )
            .when(F.col("_valid").isNull() & F.col("_first").isNotNull(), F.col("_first.sk"))
            .otherwise(F.lit(UNKNOWN_MEMBER_SK).cast("bigint"))
            .alias(sk_column),
        )
    )
    anonymous = lines.where(F.col(key).isNull()).withColumn(sk_column, F.lit(UNKNOWN_MEMBER_SK).cast("bigint"))
    return resolved.unionByName(anonymous)


def build_fact_sales(
    sales_lines: DataFrame,
    returns: DataFrame,
    dim_customer: DataFrame,
    dim_product: DataFrame,
    dim_store: DataFrame,
    *,
    processed_at: datetime,
) -> DataFrame:
    """`gold.fact_sales`: Silver sales lines and returns at line grain with surrogate keys.

    Sales keep their positive amounts (`line_type` 'sale'); returns get 'return' and negated
    quantity, gross, discount and net amounts (unit_price stays positive).

    Customer and product keys come from a point-in-time join on `event_time`: the version
    with valid_from <= event_time < coalesce(valid_to, +inf). Late-arriving dimension: when
    the business key exists but the event precedes its first version (the master record
    arrived, or was dated, after the sale), the line takes that first version rather than
    the unknown member, so the customer/product is still attributed. A key with no master
    record gets its inferred member; an anonymous line (null customer_id) gets -1. `dim_store`
    is SCD1: joined on store_id (the inferred member included), -1 when absent. No line is ever
    dropped or duplicated: the output has exactly count(sales_lines) + count(returns) rows.
    """
    _require(sales_lines, _LINE_COLUMNS, "sales_lines")
    _require(returns, _LINE_COLUMNS, "returns")
    sales = sales_lines.select(*_LINE_COLUMNS, F.lit(SALE).alias("line_type"))
    returned = returns.select(
        *[(-F.col(c)).alias(c) if c in _SIGNED_COLUMNS else F.col(c) for c in _LINE_COLUMNS],
        F.lit(RETURN).alias("line_type"),
    )
    lines = sales.unionByName(returned)
    lines = _point_in_time_sk(lines, dim_customer, key="customer_id", sk_column="customer_sk")
    lines = _point_in_time_sk(lines, dim_product, key="product_id", sk_column="product_sk")

    # SCD1 has one row per store; the aggregate guarantees it even for a broken input.
    stores = (
        dim_store.where(
            (F.col("store_id") != F.lit(UNKNOWN_MEMBER_ID)) & (F.col("store_sk") != F.lit(UNKNOWN_MEMBER_SK))
        )
        .groupBy("store_id")
        .agg(F.max("store_sk").alias("store_sk"))
    )
    fact = (
        lines.join(F.broadcast(stores), on="store_id", how="left")
        .withColumn("store_sk", F.coalesce(F.col("store_sk"), F.lit(UNKNOWN_MEMBER_SK).cast("bigint")))
        .withColumn("date_sk", date_sk(F.col("event_date")))
        .withColumn("_processed_at", _timestamp_literal(processed_at))
    )
    return _conform(fact, GOLD_FACT_SALES)
