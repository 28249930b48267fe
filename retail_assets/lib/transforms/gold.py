"""Gold transformations: dimensions, the sales fact and the business aggregates.

Every function is pure PySpark (DataFrame in, DataFrame out: no collect, no Python UDFs) and
returns exactly the columns of its registry table, in registry order and cast to registry
types. Dimensions are rebuilt from the full Silver change history on every run, and every
window below is ordered by a total order, so the output depends only on the set of input rows,
never on their order or partitioning (SPEC §4: day-by-day runs and any backfill give the same
table).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from retail_assets.lib.registry.tables import (
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
    SILVER_PRODUCTS,
    SILVER_STORES,
    UNKNOWN_MEMBER_ID,
    UNKNOWN_MEMBER_SK,
    TableSpec,
)

# valid_from of the unknown member: earlier than any business event.
UNKNOWN_MEMBER_VALID_FROM = datetime(1900, 1, 1, tzinfo=UTC)

# The dimensions' descriptive columns are the Silver master records' (the registry's `attributes`).
CUSTOMER_ATTRIBUTES = SILVER_CUSTOMERS.attributes
PRODUCT_ATTRIBUTES = SILVER_PRODUCTS.attributes
STORE_ATTRIBUTES = SILVER_STORES.attributes

SALE = "sale"
RETURN = "return"

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
]
_SIGNED_COLUMNS = ("quantity", "gross_amount", "discount_amount", "net_amount")
_MONEY = "decimal(18,2)"


# ---------------------------------------------------------------------------------------------
# Column helpers
# ---------------------------------------------------------------------------------------------


def normalize_email(email: Column) -> Column:
    """Trimmed, lower-cased e-mail; the form both the hash and the mask are taken from."""
    return F.lower(F.trim(email))


def hash_email(email: Column) -> Column:
    """SHA-256 hex of the normalized e-mail; null for a null or blank e-mail."""
    normalized = normalize_email(email)
    return F.when(normalized != "", F.sha2(normalized, 256))


def mask_email(email: Column) -> Column:
    """`j***@example.com`: first character of the local part, `***@`, then the domain.

    The domain is what follows the last `@`. A value without `@` keeps only its first
    character (`j***`); a null or blank e-mail gives null.
    """
    normalized = normalize_email(email)
    local = F.regexp_extract(normalized, r"^(.*)@([^@]*)$", 1)
    domain = F.regexp_extract(normalized, r"^(.*)@([^@]*)$", 2)
    has_at = normalized.contains("@")
    return (
        F.when(normalized.isNull() | (normalized == ""), F.lit(None).cast("string"))
        .when(has_at, F.concat(F.substring(local, 1, 1), F.lit("***@"), domain))
        .otherwise(F.concat(F.substring(normalized, 1, 1), F.lit("***")))
    )


def phone_digits(phone: Column) -> Column:
    """The digits of a phone number, every separator and `+` dropped; null when none."""
    digits = F.regexp_replace(phone, r"[^0-9]", "")
    return F.when(digits != "", digits)


def hash_phone(phone: Column) -> Column:
    """SHA-256 hex of the phone digits; null when the phone has no digit."""
    return F.sha2(phone_digits(phone), 256)


def mask_phone(phone: Column) -> Column:
    """The phone digits with all but the last two replaced by `*` (`*********23`)."""
    return F.regexp_replace(phone_digits(phone), r"[0-9](?=[0-9]{2})", "*")


def surrogate_key(*columns: str | Column) -> Column:
    """Deterministic bigint surrogate key: xxhash64 of the columns, never the unknown member's -1."""
    hashed = F.xxhash64(*columns)
    # A hash of exactly -1 would collide with the unknown member; re-hash with a salt.
    return F.when(hashed == F.lit(UNKNOWN_MEMBER_SK), F.xxhash64(F.lit("retail_assets.sk"), *columns)).otherwise(hashed)


def date_sk(day: Column) -> Column:
    """yyyymmdd as int."""
    return (F.year(day) * 10000 + F.month(day) * 100 + F.dayofmonth(day)).cast("int")


def _timestamp_literal(value: datetime) -> Column:
    # A naive datetime is taken as UTC, the lakehouse's only time zone (never the machine's).
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return F.lit(value.astimezone(UTC).isoformat()).cast("timestamp")


def _conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    return df.select(*[F.col(c.name).cast(c.type).alias(c.name) for c in spec.columns])


def _require(df: DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing columns {missing}; it has {df.columns}")


def _default_sk_column(key: str) -> str:
    return f"{key[: -len('_id')]}_sk" if key.endswith("_id") else f"{key}_sk"


def _zero(type_: str = _MONEY) -> Column:
    return F.lit(0).cast(type_)


# ---------------------------------------------------------------------------------------------
# Dimensions
# ---------------------------------------------------------------------------------------------


def _first_copy_per_change(changes: DataFrame, key: str) -> DataFrame:
    """One record per (key, updated_at): the earliest arrival (then the smallest `_source`)."""
    first = Window.partitionBy(key, "updated_at").orderBy(F.col("_arrival_date").asc(), F.col("_source").asc())
    return changes.withColumn("_copy", F.row_number().over(first)).where(F.col("_copy") == 1).drop("_copy")


def build_scd2(
    changes: DataFrame,
    *,
    key: str,
    attributes: Sequence[str],
    processed_at: datetime,
    arrival_date: date,
    sk_column: str | None = None,
) -> DataFrame:
    """SCD type 2 history of `key` from Silver change records.

    `changes` carries `key`, the `attributes`, `updated_at`, `_arrival_date` and `_source`
    (other columns are ignored, so technical columns never create a version). Rules:

    - exact re-sends of a change, i.e. several records with the same (key, updated_at), count
      once: the earliest arrival (`_arrival_date`, then `_source`) is kept;
    - records are ordered by `updated_at`, and a null attribute means "unchanged": each record's
      value is the last non-null value at or before it, so a late, out-of-order change slots in
      at its `updated_at` and every later version inherits from it;
    - consecutive records with identical tracked values collapse into one version (no-op and
      all-null changes never create a version);
    - `valid_from` = `updated_at`, `valid_to` = the next version's `valid_from` (null for the
      current one), `is_current`, `version` 1.. per key;
    - `sk_column` (default: `key` with `_id` replaced by `_sk`) = xxhash64(key, valid_from),
      never -1;
    - plus one unknown-member row: sk -1, key `__unknown__`, null attributes, valid from
      1900-01-01T00:00Z, current, version 1.

    Returns `sk_column, key, *attributes, valid_from, valid_to, is_current, version,
    _processed_at, _arrival_date`, attribute types as in `changes`.
    """
    attributes = list(attributes)
    sk_column = sk_column or _default_sk_column(key)
    _require(changes, [key, *attributes, "updated_at", "_arrival_date", "_source"], "change records")

    records = changes.where(
        F.col(key).isNotNull() & (F.col(key) != F.lit(UNKNOWN_MEMBER_ID)) & F.col("updated_at").isNotNull()
    ).select(key, *attributes, "updated_at", "_arrival_date", "_source")
    records = _first_copy_per_change(records, key)

    # (key, updated_at) is unique from here on, so this order is total.
    history = Window.partitionBy(key).orderBy("updated_at")
    so_far = history.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    filled = records.select(
        key,
        "updated_at",
        *[F.last(a, ignorenulls=True).over(so_far).alias(a) for a in attributes],
    )

    changed = F.lag("updated_at").over(history).isNull()  # the first record is always a version
    for a in attributes:
        changed = changed | ~F.col(a).eqNullSafe(F.lag(a).over(history))
    versions = filled.withColumn("_changed", changed).where(F.col("_changed")).drop("_changed")

    validity = Window.partitionBy(key).orderBy("valid_from")
    known = (
        versions.withColumnRenamed("updated_at", "valid_from")
        .withColumn("valid_to", F.lead("valid_from").over(validity))
        .withColumn("version", F.row_number().over(validity).cast("int"))
        .withColumn("is_current", F.col("valid_to").isNull())
        .withColumn(sk_column, surrogate_key(key, "valid_from"))
    )

    types = {f.name: f.dataType for f in changes.schema.fields}
    unknown = changes.sparkSession.range(1).select(
        F.lit(UNKNOWN_MEMBER_SK).cast("bigint").alias(sk_column),
        F.lit(UNKNOWN_MEMBER_ID).cast(types[key]).alias(key),
        *[F.lit(None).cast(types[a]).alias(a) for a in attributes],
        _timestamp_literal(UNKNOWN_MEMBER_VALID_FROM).alias("valid_from"),
        F.lit(None).cast("timestamp").alias("valid_to"),
        F.lit(True).alias("is_current"),
        F.lit(1).cast("int").alias("version"),
    )

    columns = [sk_column, key, *attributes, "valid_from", "valid_to", "is_current", "version"]
    return (
        known.select(F.col(sk_column).cast("bigint").alias(sk_column), *columns[1:])
        .unionByName(unknown)
        .withColumn("_processed_at", _timestamp_literal(processed_at))
        .withColumn("_arrival_date", F.lit(arrival_date).cast("date"))
    )


def build_dim_customer(silver_customers: DataFrame, *, processed_at: datetime, arrival_date: date) -> DataFrame:
    """`gold.dim_customer` (SCD2) from every `silver.customers` change record.

    Versions are detected on the raw attributes (an e-mail or phone change is a new version);
    the raw e-mail and phone are then replaced by their hash and mask and never reach Gold.
    """
    history = build_scd2(
        silver_customers,
        key="customer_id",
        attributes=CUSTOMER_ATTRIBUTES,
        processed_at=processed_at,
        arrival_date=arrival_date,
        sk_column="customer_sk",
    )
    pii_free = (
        history.withColumn("email_hash", hash_email(F.col("email")))
        .withColumn("email_masked", mask_email(F.col("email")))
        .withColumn("phone_hash", hash_phone(F.col("phone")))
        .withColumn("phone_masked", mask_phone(F.col("phone")))
        .drop("email", "phone")
    )
    return _conform(pii_free, GOLD_DIM_CUSTOMER)


def build_dim_product(silver_products: DataFrame, *, processed_at: datetime, arrival_date: date) -> DataFrame:
    """`gold.dim_product` (SCD2) from every `silver.products` change record."""
    history = build_scd2(
        silver_products,
        key="product_id",
        attributes=PRODUCT_ATTRIBUTES,
        processed_at=processed_at,
        arrival_date=arrival_date,
        sk_column="product_sk",
    )
    return _conform(history, GOLD_DIM_PRODUCT)


def build_dim_store(silver_stores: DataFrame, *, processed_at: datetime, arrival_date: date) -> DataFrame:
    """`gold.dim_store` (SCD1): one row per store with the latest non-null value of each attribute.

    Duplicate (store_id, updated_at) records count once (earliest arrival), as in SCD2;
    `updated_at` is the latest change; `store_sk` = xxhash64(store_id); plus the unknown member.
    """
    _require(silver_stores, ["store_id", *STORE_ATTRIBUTES, "updated_at", "_arrival_date", "_source"], "store changes")
    records = silver_stores.where(
        F.col("store_id").isNotNull()
        & (F.col("store_id") != F.lit(UNKNOWN_MEMBER_ID))
        & F.col("updated_at").isNotNull()
    )
    records = _first_copy_per_change(records, "store_id")
    latest = records.groupBy("store_id").agg(
        # max_by skips rows whose ordering value is null: the latest non-null value wins.
        *[F.max_by(a, F.when(F.col(a).isNotNull(), F.col("updated_at"))).alias(a) for a in STORE_ATTRIBUTES],
        F.max("updated_at").alias("updated_at"),
    )
    known = latest.withColumn("store_sk", surrogate_key("store_id"))
    types = {f.name: f.dataType for f in silver_stores.schema.fields}
    unknown = silver_stores.sparkSession.range(1).select(
        F.lit(UNKNOWN_MEMBER_ID).alias("store_id"),
        *[F.lit(None).cast(types[a]).alias(a) for a in STORE_ATTRIBUTES],
        F.lit(None).cast("timestamp").alias("updated_at"),
        F.lit(UNKNOWN_MEMBER_SK).cast("bigint").alias("store_sk"),
    )
    dim = (
        known.unionByName(unknown)
        .withColumn("_processed_at", _timestamp_literal(processed_at))
        .withColumn("_arrival_date", F.lit(arrival_date).cast("date"))
    )
    return _conform(dim, GOLD_DIM_STORE)


def build_dim_date(days: Iterable[date], spark: SparkSession) -> DataFrame:
    """`gold.dim_date`: one row per distinct day given (ISO weeks, Monday = 1, weekend = Sat/Sun)."""
    rows = [(d,) for d in sorted(set(days))]
    calendar = spark.createDataFrame(rows, "date date")
    day_of_week = F.weekday("date") + 1  # weekday(): Monday = 0
    dim = calendar.select(
        date_sk(F.col("date")).alias("date_sk"),
        "date",
        F.year("date").alias("year"),
        F.quarter("date").alias("quarter"),
        F.month("date").alias("month"),
        F.date_format("date", "MMMM").alias("month_name"),
        F.dayofmonth("date").alias("day_of_month"),
        day_of_week.alias("day_of_week"),
        F.date_format("date", "EEEE").alias("day_name"),
        F.weekofyear("date").alias("iso_week"),  # ISO 8601 week number
        (day_of_week >= 6).alias("is_weekend"),
    )
    return _conform(dim, GOLD_DIM_DATE)


# ---------------------------------------------------------------------------------------------
# Fact
# ---------------------------------------------------------------------------------------------


def _point_in_time_sk(lines: DataFrame, dim: DataFrame, *, key: str, sk_column: str) -> DataFrame:
    """Add `sk_column`: the `dim` version of `lines[key]` valid at `event_time`.

    An as-of lookup done as one window over the union of versions and lines per key, rather
    than a range join, so each line comes out exactly once whatever the dimension holds:
    - the version with the greatest valid_from <= event_time, if event_time < its valid_to;
    - a key whose first version starts after the event gets its first version (late-arriving
      dimension member);
    - a null key, or one absent from the dimension, gets the unknown member (-1).
    """
    line_struct = T.StructType(list(lines.schema.fields))
    version_type = T.StructType(
        [
            T.StructField("sk", T.LongType()),
            T.StructField("valid_from", T.TimestampType()),
            T.StructField("valid_to", T.TimestampType()),
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
                & (F.col("_valid.valid_to").isNull() | (F.col("_t") < F.col("_valid.valid_to"))),
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
    the unknown member, so the customer/product is still attributed. An anonymous line (null
    customer_id) or a key absent from the dimension gets -1. `dim_store` is SCD1: joined on
    store_id, -1 when absent. No line is ever dropped or duplicated: the output has exactly
    count(sales_lines) + count(returns) rows.
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


# ---------------------------------------------------------------------------------------------
# Aggregates
# ---------------------------------------------------------------------------------------------


def _is_sale() -> Column:
    return F.col("line_type") == F.lit(SALE)


def _is_return() -> Column:
    return F.col("line_type") == F.lit(RETURN)


def _sum_where(condition: Column, value: Column, type_: str) -> Column:
    return F.coalesce(F.sum(F.when(condition, value)), _zero(type_)).cast(type_)


def agg_daily_store_sales(fact: DataFrame) -> DataFrame:
    """`gold.agg_daily_store_sales`: one row per (event_date, store_id) present in `fact`.

    revenue = net of sale lines; returns_amount = net of return lines as a positive amount;
    net_revenue = revenue - returns_amount; transactions = distinct transactions with a sale
    line; units / units_returned = sold / returned units (both positive); unique_customers =
    distinct identified customers on sale lines. Zero where nothing qualifies.
    """
    daily = fact.groupBy("event_date", "store_id").agg(
        F.max("store_sk").alias("store_sk"),
        _sum_where(_is_sale(), F.col("net_amount"), _MONEY).alias("revenue"),
        _sum_where(_is_return(), -F.col("net_amount"), _MONEY).alias("returns_amount"),
        F.count_distinct(F.when(_is_sale(), F.col("transaction_id"))).alias("transactions"),
        _sum_where(_is_sale(), F.col("quantity").cast("bigint"), "bigint").alias("units"),
        _sum_where(_is_return(), -F.col("quantity").cast("bigint"), "bigint").alias("units_returned"),
        F.count_distinct(F.when(_is_sale(), F.col("customer_id"))).alias("unique_customers"),
    )
    return _conform(
        daily.withColumn("net_revenue", F.col("revenue") - F.col("returns_amount")), GOLD_AGG_DAILY_STORE_SALES
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
        (F.col("product_sk") != F.lit(UNKNOWN_MEMBER_SK)) & (F.col("product_id") != F.lit(UNKNOWN_MEMBER_ID))
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
    return _conform(performance, GOLD_AGG_PRODUCT_PERFORMANCE)


def agg_customer_lifetime_value(fact_history: DataFrame, *, as_of: date) -> DataFrame:
    """`gold.agg_customer_lifetime_value` as of the end of `as_of`, over every fact row up to it.

    Identified customers only. total_spend = signed net of all lines (returns subtract);
    orders = distinct transactions with a sale line; first/last purchase = min/max event_date
    of sale lines; average_order_value = round(total_spend / orders, 2). Customers without
    an order (only returns) are left out.
    """
    history = fact_history.where((F.col("event_date") <= F.lit(as_of)) & F.col("customer_id").isNotNull())
    clv = (
        history.groupBy("customer_id")
        .agg(
            F.sum("net_amount").alias("total_spend"),
            F.count_distinct(F.when(_is_sale(), F.col("transaction_id"))).alias("orders"),
            F.min(F.when(_is_sale(), F.col("event_date"))).alias("first_purchase"),
            F.max(F.when(_is_sale(), F.col("event_date"))).alias("last_purchase"),
        )
        .where(F.col("orders") > 0)
        .withColumn("average_order_value", F.round(F.col("total_spend") / F.col("orders"), 2))
        .withColumn("as_of_date", F.lit(as_of))
    )
    return _conform(clv, GOLD_AGG_CUSTOMER_LIFETIME_VALUE)


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
    return _conform(cover, GOLD_AGG_INVENTORY_COVER)
