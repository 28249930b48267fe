"""Each data-quality rule passes on good data and fails when the data is broken on purpose."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from retail_assets.lib.registry.tables import GOLD_DIM_PRODUCT, SILVER_SALES_LINES
from retail_assets.lib.transforms import quality
from retail_assets.lib.transforms.gold import integrity

UTC = dt.UTC


def sales_row(tx="T1", line=1, qty=2, price="1.50", payment="cash", **over):
    gross = Decimal(price) * qty
    row = dict(
        transaction_id=tx,
        line_number=line,
        event_time=dt.datetime(2026, 11, 1, 10, tzinfo=UTC),
        event_date=dt.date(2026, 11, 1),
        store_id="S1",
        product_id="P1",
        customer_id=None,
        quantity=qty,
        unit_price=Decimal(price),
        discount=Decimal("0"),
        gross_amount=gross,
        discount_amount=Decimal("0.00"),
        net_amount=gross,
        payment_method=payment,
        channel="store_file",
        quality_flags=[],
        extra_attributes=None,
        _source=f"f.csv:{line}",
        _arrival_date=dt.date(2026, 11, 1),
        _batch_id="b",
    )
    row.update(over)
    return row


@pytest.fixture
def sales(spark):
    def make(rows):
        return spark.createDataFrame(rows, SILVER_SALES_LINES.spark_ddl())

    return make


def test_primary_key(sales):
    assert quality.primary_key(sales([sales_row(line=1), sales_row(line=2)]), ("transaction_id", "line_number")).passed
    dup = quality.primary_key(sales([sales_row(line=1), sales_row(line=1)]), ("transaction_id", "line_number"))
    assert not dup.passed and dup.metadata["duplicate_keys"] == 1
    null = quality.primary_key(sales([sales_row(tx=None)]), ("transaction_id", "line_number"))
    assert not null.passed and null.metadata["null_keys"] == 1
    # three copies are two duplicates; rows with a null key part are null, not duplicates
    mixed = quality.primary_key(
        sales(
            [
                sales_row(line=1),
                sales_row(line=1),
                sales_row(line=1),
                sales_row(line=2),
                sales_row(tx=None),
                sales_row(tx=None),
            ]
        ),
        ("transaction_id", "line_number"),
    )
    assert mixed.metadata == {"rows": 6, "null_keys": 2, "duplicate_keys": 2}
    empty = quality.primary_key(sales([]), ("transaction_id", "line_number"))
    assert empty.passed and empty.metadata == {"rows": 0, "null_keys": 0, "duplicate_keys": 0}


def test_value_rules(sales):
    assert quality.value_rules(sales([sales_row()]), SILVER_SALES_LINES).passed
    negative = quality.value_rules(sales([sales_row(qty=-1)]), SILVER_SALES_LINES)
    assert not negative.passed and negative.metadata["negative_quantity"] == 1
    coded = quality.value_rules(sales([sales_row(channel="carrier_pigeon")]), SILVER_SALES_LINES)
    assert not coded.passed and coded.metadata["not_accepted_channel"] == 1
    # an unexpected payment method is a warning Silver keeps (flagged), not a broken value rule
    assert quality.value_rules(sales([sales_row(payment="barter")]), SILVER_SALES_LINES).passed
    required = quality.value_rules(sales([sales_row(store_id=None)]), SILVER_SALES_LINES)
    assert not required.passed and required.metadata["null_store_id"] == 1


def test_column_schema():
    good = [(c.name, c.type) for c in SILVER_SALES_LINES.columns]
    assert quality.column_schema(good, SILVER_SALES_LINES).passed
    drift = quality.column_schema(good[:-1] + [("surprise", "string"), ("quantity", "bigint")], SILVER_SALES_LINES)
    assert not drift.passed
    assert drift.metadata["missing"] == 1 and drift.metadata["unexpected"] == 1 and drift.metadata["retyped"] == 1


def test_exactly_once(spark):
    ok = spark.createDataFrame([("a:1", dt.date(2026, 11, 1)), ("a:2", dt.date(2026, 11, 1))], "_source string, d date")
    assert quality.exactly_once(ok, "d").passed
    twice = spark.createDataFrame(
        [("a:1", dt.date(2026, 11, 1)), ("a:1", dt.date(2026, 11, 2))], "_source string, d date"
    )
    outcome = quality.exactly_once(twice, "d")
    assert not outcome.passed and outcome.metadata["split_across_partitions"] == 1
    same_day = spark.createDataFrame(
        [("a:1", dt.date(2026, 11, 1)), ("a:1", dt.date(2026, 11, 1)), ("a:2", dt.date(2026, 11, 2))],
        "_source string, d date",
    )
    outcome = quality.exactly_once(same_day, "d")
    assert not outcome.passed
    assert (
        outcome.metadata["repeated_sources"],
        outcome.metadata["split_across_partitions"],
        outcome.metadata["source_records"],
    ) == (1, 0, 2)


def test_keys_sharing_a_hash_are_not_repeats(sales, spark, monkeypatch):
    """Key and source-record checks group by a 64-bit hash of the key; whatever shares a hash is
    counted again by its values. With a hash every key shares, the figures are still exact."""
    from pyspark.sql import functions as F

    monkeypatch.setattr(quality, "key_hash", lambda *columns: F.lit(7).cast("bigint"))
    distinct = quality.primary_key(
        sales([sales_row(line=1), sales_row(line=2), sales_row(line=3)]), ("transaction_id", "line_number")
    )
    assert distinct.passed and distinct.metadata == {"rows": 3, "null_keys": 0, "duplicate_keys": 0}
    repeated = quality.primary_key(
        sales([sales_row(line=1), sales_row(line=1), sales_row(line=1), sales_row(line=2), sales_row(tx=None)]),
        ("transaction_id", "line_number"),
    )
    assert not repeated.passed and repeated.metadata == {"rows": 5, "null_keys": 1, "duplicate_keys": 2}

    d1, d2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
    once = quality.exactly_once(
        spark.createDataFrame([("a:1", d1), ("a:2", d1), ("a:3", d2)], "_source string, d date"), "d"
    )
    assert once.passed and once.metadata == {"source_records": 3, "repeated_sources": 0, "split_across_partitions": 0}
    rows = [("a:1", d1), ("a:1", d2), ("a:2", d1), ("a:2", d1), ("a:3", d2), ("a:4", d1)]
    twice = quality.exactly_once(spark.createDataFrame(rows, "_source string, d date"), "d")
    assert not twice.passed and twice.metadata == {
        "source_records": 4,
        "repeated_sources": 2,
        "split_across_partitions": 1,
    }


def test_referential_integrity_counts_unresolved_null_and_unknown_keys(spark):
    dim_store = spark.createDataFrame([(-1,), (1,), (2,)], "store_sk bigint")
    dim_product = spark.createDataFrame([(-1,), (10,), (10,)], "product_sk bigint")  # keys repeat across versions
    fact = spark.createDataFrame([(1, 10), (2, -1), (-1, 10)], "store_sk bigint, product_sk bigint")
    references = {"store_sk": (dim_store, "store_sk"), "product_sk": (dim_product, "product_sk")}
    ok = integrity.referential_integrity(fact, references)
    assert ok.passed
    assert ok.metadata == {
        "rows": 3,
        "store_sk_unresolved": 0,
        "store_sk_unknown_member": 1,
        "product_sk_unresolved": 0,
        "product_sk_unknown_member": 1,
    }

    broken = fact.unionByName(
        spark.createDataFrame([(3, 10), (None, 11), (1, 10)], "store_sk bigint, product_sk bigint")
    )
    outcome = integrity.referential_integrity(broken, references)
    assert not outcome.passed
    assert (
        outcome.metadata["rows"],
        outcome.metadata["store_sk_unresolved"],
        outcome.metadata["product_sk_unresolved"],
    ) == (6, 2, 1)
    assert "2 × store_sk" in outcome.description and "1 × product_sk" in outcome.description


def test_conservation_and_reject_rate():
    assert quality.conservation(records_in=10, accepted=6, rejected=1, violations=2, duplicates=1).passed
    lost = quality.conservation(records_in=10, accepted=5, rejected=1, violations=2, duplicates=1)
    assert not lost.passed and lost.metadata["unaccounted"] == 1 and "lost" in lost.description
    assert quality.reject_rate(quarantined=1, records_in=100, max_rate=0.05).passed
    assert not quality.reject_rate(quarantined=6, records_in=100, max_rate=0.05).passed


def _dim(spark, rows):
    return spark.createDataFrame(
        rows, "product_sk bigint, product_id string, valid_from timestamp, valid_to timestamp, is_current boolean"
    )


def test_scd2_integrity(spark):
    t = [dt.datetime(2026, 11, d, tzinfo=UTC) for d in (1, 2, 3)]
    unknown = (-1, "__unknown__", dt.datetime(1900, 1, 1, tzinfo=UTC), None, True)
    good = [unknown, (1, "P1", t[0], t[1], False), (2, "P1", t[1], None, True), (3, "P2", t[0], None, True)]
    assert integrity.scd2_integrity(_dim(spark, good), key="product_id", surrogate_key="product_sk").passed
    two_current = [unknown, (1, "P1", t[0], t[1], True), (2, "P1", t[1], None, True)]
    out = integrity.scd2_integrity(_dim(spark, two_current), key="product_id", surrogate_key="product_sk")
    assert not out.passed and out.metadata["keys_without_exactly_one_current"] == 1
    overlap = [unknown, (1, "P1", t[0], t[2], False), (2, "P1", t[1], None, True)]
    out = integrity.scd2_integrity(_dim(spark, overlap), key="product_id", surrogate_key="product_sk")
    assert not out.passed and out.metadata["gaps_or_overlaps"] == 1
    no_unknown = good[1:]
    assert not integrity.scd2_integrity(_dim(spark, no_unknown), key="product_id", surrogate_key="product_sk").passed


def test_referential_integrity(spark):
    dim = spark.createDataFrame([(-1,), (10,)], "product_sk bigint")
    fact_ok = spark.createDataFrame([(10,), (-1,)], "product_sk bigint")
    ok = integrity.referential_integrity(fact_ok, {"product_sk": (dim, "product_sk")})
    assert ok.passed and ok.metadata["product_sk_unknown_member"] == 1
    fact_bad = spark.createDataFrame([(10,), (11,)], "product_sk bigint")
    bad = integrity.referential_integrity(fact_bad, {"product_sk": (dim, "product_sk")})
    assert not bad.passed and bad.metadata["product_sk_unresolved"] == 1


def test_reconciliation():
    assert quality.reconciliation({"net": (Decimal("10.50"), Decimal("10.50"))}).passed
    out = quality.reconciliation({"net": (Decimal("10.50"), Decimal("10.49"))})
    assert not out.passed and out.metadata["net_gold"] == 10.5


def test_no_raw_pii(spark):
    phones = spark.createDataFrame([("+44 20 7946 0123",)], "phone string")
    clean = spark.createDataFrame(
        [("j***@example.com", "a" * 64, "*********23", "T0120261101000042")],
        "email_masked string, email_hash string, phone_masked string, transaction_id string",
    )
    assert integrity.no_raw_pii(clean, phones).passed
    leaked_email = spark.createDataFrame([("jane.doe@example.com",)], "email_masked string")
    assert not integrity.no_raw_pii(leaked_email, phones).passed
    leaked_phone = spark.createDataFrame([("442079460123",)], "note string")
    out = integrity.no_raw_pii(leaked_phone, phones)
    assert not out.passed and out.metadata["values_with_raw_pii"] == 1


def test_dim_product_schema_in_registry():
    # SCD2 dimensions carry the validity columns the integrity check reads.
    assert {"valid_from", "valid_to", "is_current", "product_sk"} <= set(GOLD_DIM_PRODUCT.column_names)
