"""The SCD dimensions, rebuilt from the whole Silver change history, and the calendar.

Inferred members (late-arriving master data). A sales line naming a store, product or customer
no master record of which has arrived is kept (flagged `unknown_*` in Silver) and keyed to an
inferred member: a row for that business key with unknown attributes. Its surrogate key is the
hash of the business key alone, and so is the key of the version that holds the key's
first-arrived master record: when that record arrives, it fills the inferred member in under the
same surrogate key, so the fact lines keyed to it never change, and SCD2 history continues from
there. Later versions are keyed by (business key, valid_from), as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from retail_assets.lib.registry import tables
from retail_assets.lib.transforms.gold.common import (
    UNKNOWN_MEMBER_VALID_FROM,
    _conform,
    _default_sk_column,
    _require,
    _timestamp_literal,
    date_sk,
    surrogate_key,
)
from retail_assets.lib.transforms.gold.privacy import hash_email, hash_phone, mask_email, mask_phone

# A change record that deletes its key (`silver.customers`): it ends the key's history, it is
# not an attribute of a version.
DELETED = "is_deleted"

# The dimensions' descriptive columns are the Silver master records' (the registry's `attributes`).
CUSTOMER_ATTRIBUTES = [a for a in tables.SILVER_CUSTOMERS.attributes if a != DELETED]


PRODUCT_ATTRIBUTES = tables.SILVER_PRODUCTS.attributes


STORE_ATTRIBUTES = tables.SILVER_STORES.attributes


def _first_copy_per_change(changes: DataFrame, key: str) -> DataFrame:
    """One record per (key, updated_at): the earliest arrival (then the smallest `_source`)."""
    first = Window.partitionBy(key, "updated_at").orderBy(F.col("_arrival_date").asc(), F.col("_source").asc())
    return changes.withColumn("_copy", F.row_number().over(first)).where(F.col("_copy") == 1).drop("_copy")


def inferred_keys(lines: DataFrame, key: str, rule: str) -> DataFrame:
    """(`key`, inferred_since): the business keys Silver lines named with no master record (the
    lines flagged `rule`), each with the first arrival date of such a line."""
    flagged = lines.where(F.array_contains("quality_flags", rule) & F.col(key).isNotNull())
    return flagged.groupBy(key).agg(F.min("_arrival_date").alias("inferred_since"))


def _no_inferred(changes: DataFrame, key: str) -> DataFrame:
    types = {f.name: f.dataType for f in changes.schema.fields}
    return changes.sparkSession.createDataFrame([], T.StructType([T.StructField(key, types[key]), _SINCE]))


_SINCE = T.StructField("inferred_since", T.DateType())


def _inferred_members(inferred: DataFrame, known_keys: DataFrame, *, key: str, sk_column: str, columns) -> DataFrame:
    """One row per inferred key with no master record: attributes unknown, valid from 1900."""
    waiting = inferred.join(known_keys, key, "left_anti")
    return waiting.select(
        surrogate_key(key).alias(sk_column),
        F.col(key),
        *[F.lit(None).cast(t).alias(a) for a, t in columns.items()],
        F.lit(True).alias("is_inferred"),
        "inferred_since",
        _timestamp_literal(UNKNOWN_MEMBER_VALID_FROM).alias("valid_from"),
        F.lit(None).cast("timestamp").alias("valid_to"),
        F.lit(True).alias("is_current"),
        F.lit(1).cast("int").alias("version"),
        F.lit(False).alias(DELETED),
    )


def build_scd2(
    changes: DataFrame,
    *,
    key: str,
    attributes: Sequence[str],
    processed_at: datetime,
    arrival_date: date,
    sk_column: str | None = None,
    inferred: DataFrame | None = None,
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
    - `sk_column` (default: `key` with `_id` replaced by `_sk`) = xxhash64(key) for the version
      holding the key's first-arrived record (earliest `_arrival_date`, then `updated_at`), and
      xxhash64(key, valid_from) for the others; never -1;
    - `inferred` (key, inferred_since; `inferred_keys`): a key in it without change records gets
      an inferred member (sk xxhash64(key), null attributes, valid from 1900-01-01, current,
      version 1, `is_inferred`); a key with records carries its `inferred_since`;
    - plus one unknown-member row: sk -1, key `__unknown__`, null attributes, valid from
      1900-01-01T00:00Z, current, version 1;
    - deletions (records with `is_deleted` true, when `changes` has the column): the version
      valid at a deletion ends at it (`valid_to` = its `updated_at`, not current) and is marked
      `is_deleted`; no version follows it until a later record of the key (a re-created key)
      opens one, after a gap. A deletion's attributes make no version, repeated deletions count
      once, a key with only deletions has no row; the first version's surrogate key is anchored
      on the key's first-arrived record that is not a deletion.

    Returns `sk_column, key, *attributes, is_inferred, inferred_since, valid_from, valid_to,
    is_current, version, is_deleted, _processed_at, _arrival_date`, attribute types as in `changes`.
    """
    attributes = list(attributes)
    sk_column = sk_column or _default_sk_column(key)
    _require(changes, [key, *attributes, "updated_at", "_arrival_date", "_source"], "change records")

    deleted = F.col(DELETED) if DELETED in changes.columns else F.lit(False)
    records = changes.where(
        F.col(key).isNotNull() & (F.col(key) != F.lit(tables.UNKNOWN_MEMBER_ID)) & F.col("updated_at").isNotNull()
    ).select(
        key, *attributes, "updated_at", "_arrival_date", "_source", F.coalesce(deleted, F.lit(False)).alias("_del")
    )
    records = _first_copy_per_change(records, key)

    # (key, updated_at) is unique from here on, so this order is total.
    history = Window.partitionBy(key).orderBy("updated_at")
    so_far = history.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    filled = records.select(
        key,
        "updated_at",
        "_del",
        # a deletion carries the values it ends, never new ones
        *[F.last(F.when(~F.col("_del"), F.col(a)), ignorenulls=True).over(so_far).alias(a) for a in attributes],
    )

    changed = F.lag("updated_at").over(history).isNull()  # the first record is always a version
    for a in (*attributes, "_del"):
        changed = changed | ~F.col(a).eqNullSafe(F.lag(a).over(history))
    versions = filled.withColumn("_changed", changed).where(F.col("_changed")).drop("_changed")

    # The version holding the first-arrived record keeps the key's own hash: the inferred
    # member's, if sales named the key first.
    first_arrived = (
        records.where(~F.col("_del")).groupBy(key).agg(F.min(F.struct("_arrival_date", "updated_at")).alias("_first"))
    )
    validity = Window.partitionBy(key).orderBy("valid_from")
    known = (
        versions.withColumnRenamed("updated_at", "valid_from")
        .withColumn("valid_to", F.lead("valid_from").over(validity))
        .withColumn(DELETED, F.coalesce(F.lead("_del").over(validity), F.lit(False)))
        .where(~F.col("_del"))
        .withColumn("version", F.row_number().over(validity).cast("int"))
        .withColumn("is_current", F.col("valid_to").isNull())
        .join(first_arrived, key)
    )
    anchor = (F.col("valid_from") <= F.col("_first.updated_at")) & (
        F.col("valid_to").isNull() | (F.col("_first.updated_at") < F.col("valid_to"))
    )
    known = known.withColumn(
        sk_column, F.when(anchor, surrogate_key(key)).otherwise(surrogate_key(key, "valid_from"))
    ).drop("_first")
    inferred = _no_inferred(changes, key) if inferred is None else inferred.select(key, "inferred_since")
    known = known.join(F.broadcast(inferred), key, "left").withColumn("is_inferred", F.lit(False))

    types = {f.name: f.dataType for f in changes.schema.fields}
    waiting = _inferred_members(
        inferred,
        records.select(key).distinct(),  # a key with only deletions is no inferred member either
        key=key,
        sk_column=sk_column,
        columns={a: types[a] for a in attributes},
    )
    unknown = changes.sparkSession.range(1).select(
        F.lit(tables.UNKNOWN_MEMBER_SK).cast("bigint").alias(sk_column),
        F.lit(tables.UNKNOWN_MEMBER_ID).cast(types[key]).alias(key),
        *[F.lit(None).cast(types[a]).alias(a) for a in attributes],
        F.lit(False).alias("is_inferred"),
        F.lit(None).cast("date").alias("inferred_since"),
        _timestamp_literal(UNKNOWN_MEMBER_VALID_FROM).alias("valid_from"),
        F.lit(None).cast("timestamp").alias("valid_to"),
        F.lit(True).alias("is_current"),
        F.lit(1).cast("int").alias("version"),
        F.lit(False).alias(DELETED),
    )

    columns = [
        sk_column,
        key,
        *attributes,
        "is_inferred",
        "inferred_since",
        "valid_from",
        "valid_to",
        "is_current",
        "version",
        DELETED,
    ]
    return (
        known.select(F.col(sk_column).cast("bigint").alias(sk_column), *columns[1:])
        .unionByName(waiting.select(F.col(sk_column).cast("bigint").alias(sk_column), *columns[1:]))
        .unionByName(unknown)
        .withColumn("_processed_at", _timestamp_literal(processed_at))
        .withColumn("_arrival_date", F.lit(arrival_date).cast("date"))
    )


def build_dim_customer(
    silver_customers: DataFrame,
    *,
    processed_at: datetime,
    arrival_date: date,
    inferred: DataFrame | None = None,
) -> DataFrame:
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
        inferred=inferred,
    )
    pii_free = (
        history.withColumn("email_hash", hash_email(F.col("email")))
        .withColumn("email_masked", mask_email(F.col("email")))
        .withColumn("phone_hash", hash_phone(F.col("phone")))
        .withColumn("phone_masked", mask_phone(F.col("phone")))
        .drop("email", "phone")
    )
    return _conform(pii_free, tables.GOLD_DIM_CUSTOMER)


def build_dim_product(
    silver_products: DataFrame,
    *,
    processed_at: datetime,
    arrival_date: date,
    inferred: DataFrame | None = None,
) -> DataFrame:
    """`gold.dim_product` (SCD2) from every `silver.products` change record."""
    history = build_scd2(
        silver_products,
        key="product_id",
        attributes=PRODUCT_ATTRIBUTES,
        processed_at=processed_at,
        arrival_date=arrival_date,
        sk_column="product_sk",
        inferred=inferred,
    )
    return _conform(history, tables.GOLD_DIM_PRODUCT)


def build_dim_store(
    silver_stores: DataFrame,
    *,
    processed_at: datetime,
    arrival_date: date,
    inferred: DataFrame | None = None,
) -> DataFrame:
    """`gold.dim_store` (SCD1): one row per store with the latest non-null value of each attribute.

    Duplicate (store_id, updated_at) records count once (earliest arrival), as in SCD2;
    `updated_at` is the latest change; `store_sk` = xxhash64(store_id); plus an inferred member
    for each store of `inferred` without records, and the unknown member.
    """
    _require(silver_stores, ["store_id", *STORE_ATTRIBUTES, "updated_at", "_arrival_date", "_source"], "store changes")
    records = silver_stores.where(
        F.col("store_id").isNotNull()
        & (F.col("store_id") != F.lit(tables.UNKNOWN_MEMBER_ID))
        & F.col("updated_at").isNotNull()
    )
    records = _first_copy_per_change(records, "store_id")
    latest = records.groupBy("store_id").agg(
        # max_by skips rows whose ordering value is null: the latest non-null value wins.
        *[F.max_by(a, F.when(F.col(a).isNotNull(), F.col("updated_at"))).alias(a) for a in STORE_ATTRIBUTES],
        F.max("updated_at").alias("updated_at"),
    )
    inferred = _no_inferred(silver_stores, "store_id") if inferred is None else inferred
    known = (
        latest.withColumn("store_sk", surrogate_key("store_id"))
        .join(F.broadcast(inferred.select("store_id", "inferred_since")), "store_id", "left")
        .withColumn("is_inferred", F.lit(False))
    )
    types = {f.name: f.dataType for f in silver_stores.schema.fields}
    waiting = _inferred_members(
        inferred,
        latest.select("store_id"),
        key="store_id",
        sk_column="store_sk",
        columns={a: types[a] for a in STORE_ATTRIBUTES},
    ).select(
        "store_id",
        *STORE_ATTRIBUTES,
        F.lit(None).cast("timestamp").alias("updated_at"),
        "store_sk",
        "is_inferred",
        "inferred_since",
    )
    unknown = silver_stores.sparkSession.range(1).select(
        F.lit(tables.UNKNOWN_MEMBER_ID).alias("store_id"),
        *[F.lit(None).cast(types[a]).alias(a) for a in STORE_ATTRIBUTES],
        F.lit(None).cast("timestamp").alias("updated_at"),
        F.lit(tables.UNKNOWN_MEMBER_SK).cast("bigint").alias("store_sk"),
        F.lit(False).alias("is_inferred"),
        F.lit(None).cast("date").alias("inferred_since"),
    )
    dim = (
        known.unionByName(waiting)
        .unionByName(unknown)
        .withColumn("_processed_at", _timestamp_literal(processed_at))
        .withColumn("_arrival_date", F.lit(arrival_date).cast("date"))
    )
    return _conform(dim, tables.GOLD_DIM_STORE)


DimensionBuild = Callable[..., DataFrame]  # build_dim_customer, build_dim_product, build_dim_store


def rebuild_touched_keys(
    build: DimensionBuild,
    *,
    key: str,
    sk_column: str,
    arrived: DataFrame,
    inferred: DataFrame,
    changes: DataFrame,
    current: DataFrame,
    processed_at: datetime,
    arrival_date: date,
) -> tuple[DataFrame, DataFrame]:
    """An incremental run of a dimension: the rows to upsert and the surrogate keys to delete.

    The keys touched are those of `arrived` (the change records that arrived on the run's days)
    and of `inferred` (`inferred_keys` of the Silver lines that arrived then). Their history is
    derived again by `build` from every change record of theirs (`changes` is read for those
    keys only), so a late, out-of-order change slots in among their versions exactly as a full
    rebuild would place it; each one's `inferred_since` is the earliest of what the dimension
    holds (`current`) and the lines now. Every row of theirs in `current` is deleted unless
    derived again (a MERGE keeps the re-derived ones under their surrogate keys). Rows of the
    other keys are not read again: the table after the MERGE equals `build` over all records,
    in whatever order the days run, once every day has run.
    """
    valid = F.col(key).isNotNull() & (F.col(key) != F.lit(tables.UNKNOWN_MEMBER_ID))
    touched = arrived.select(key).unionByName(inferred.select(key)).where(valid).distinct()
    held = current.join(F.broadcast(touched), key, "left_semi")
    since = (
        held.where(F.col("inferred_since").isNotNull())
        .select(key, "inferred_since")
        .unionByName(inferred.select(key, "inferred_since"))
        .groupBy(key)
        .agg(F.min("inferred_since").alias("inferred_since"))
    )
    rows = build(
        changes.join(F.broadcast(touched), key, "left_semi"),
        processed_at=processed_at,
        arrival_date=arrival_date,
        inferred=since,
    )
    return rows, held.select(sk_column)


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
    return _conform(dim, tables.GOLD_DIM_DATE)
