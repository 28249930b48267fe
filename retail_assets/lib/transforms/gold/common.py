"""What the Gold transformations share: surrogate keys, the unknown member's validity, conforming
an output to its registry table."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from retail_assets.lib.registry.tables import (
    UNKNOWN_MEMBER_SK,
    TableSpec,
)

# valid_from of the unknown member: earlier than any business event.
UNKNOWN_MEMBER_VALID_FROM = datetime(1900, 1, 1, tzinfo=UTC)


SALE = "sale"


RETURN = "return"


_MONEY = "decimal(18,2)"


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
