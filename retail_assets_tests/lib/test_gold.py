"""Gold transformations on hand-sized inputs with hand-computed expectations."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from retail_assets.lib.registry import rules, tables
from retail_assets.lib.transforms import gold

PROCESSED_AT = datetime(2024, 1, 10, 6, 0, tzinfo=UTC)
RUN_DAY = date(2024, 1, 10)
D1, D2 = date(2024, 1, 2), date(2024, 1, 3)


def ts(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2024, 1, day, hour, minute, tzinfo=UTC)


def utc(value: datetime | None) -> datetime | None:
    # Spark hands back naive datetimes in the process's local zone.
    return None if value is None else value.astimezone(UTC)


def make_df(spark, spec: tables.TableSpec, records: list[dict]):
    unknown = {k for r in records for k in r} - set(spec.column_names)
    assert not unknown, f"{spec.key} has no columns {unknown}"
    return spark.createDataFrame([tuple(r.get(c) for c in spec.column_names) for r in records], spec.spark_ddl())


def change(day_arrived: int, source: str, **fields) -> dict:
    """A Silver master-data change record."""
    return {"_arrival_date": date(2024, 1, day_arrived), "_source": source, "_batch_id": f"run-{day_arrived}", **fields}


def rows_by(df, *key: str) -> dict:
    return {tuple(r[k] for k in key): r.asDict() for r in df.collect()}


def sorted_rows(df) -> list[tuple]:
    return sorted((tuple(r) for r in df.collect()), key=repr)


def xxhash64(spark, *values) -> int:
    return spark.range(1).select(F.xxhash64(*[F.lit(v) for v in values])).first()[0]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# SCD type 2
# ---------------------------------------------------------------------------------------------

PRODUCT_CHANGES = [
    change(
        1,
        "products/a.csv:2",
        product_id="P1",
        name="Apple",
        category="Fruit",
        brand="B",
        unit_cost=Decimal("1.00"),
        list_price=Decimal("2.00"),
        status="active",
        updated_at=ts(1),
    ),
    change(3, "products/c.csv:2", product_id="P1", category="Snack", updated_at=ts(3)),
    # Arrives last but happened on day 2: slots in between, day 3 inherits its cost.
    change(4, "products/d.csv:2", product_id="P1", unit_cost=Decimal("1.50"), updated_at=ts(2)),
    # All-null update: nothing changed.
    change(4, "products/d.csv:3", product_id="P1", updated_at=ts(4)),
    # Re-states current values; only technical columns differ: no new version.
    change(
        5,
        "products/e.jsonl:1",
        product_id="P1",
        category="Snack",
        list_price=Decimal("2.00"),
        updated_at=ts(5),
        extra_attributes='{"aisle": "7"}',
    ),
    # Same (key, updated_at) as the day-3 change, arriving later: the earliest copy wins.
    change(6, "products/f.csv:2", product_id="P1", category="Wrong", updated_at=ts(3)),
    change(
        2,
        "products/b.csv:2",
        product_id="P2",
        name="Pear",
        category="Fruit",
        brand="C",
        unit_cost=Decimal("0.80"),
        list_price=Decimal("1.20"),
        status="active",
        updated_at=ts(2),
    ),
]


def build_products(spark, records):
    return gold.build_dim_product(
        make_df(spark, tables.SILVER_PRODUCTS, records), processed_at=PROCESSED_AT, arrival_date=RUN_DAY
    )


def test_scd2_out_of_order_null_noop_and_duplicate_changes(spark):
    dim = build_products(spark, PRODUCT_CHANGES)
    assert dim.columns == tables.GOLD_DIM_PRODUCT.column_names
    rows = rows_by(dim, "product_id", "version")
    assert len(rows) == 5  # P1 × 3, P2 × 1, unknown member

    expected_p1 = [
        # version, valid_from, valid_to, category, unit_cost
        (1, ts(1), ts(2), "Fruit", Decimal("1.00")),
        (2, ts(2), ts(3), "Fruit", Decimal("1.50")),
        (3, ts(3), None, "Snack", Decimal("1.50")),
    ]
    for version, valid_from, valid_to, category, unit_cost in expected_p1:
        row = rows[("P1", version)]
        assert utc(row["valid_from"]) == valid_from
        assert utc(row["valid_to"]) == valid_to
        assert row["is_current"] is (valid_to is None)
        assert (row["category"], row["unit_cost"]) == (category, unit_cost)
        assert (row["name"], row["brand"], row["list_price"], row["status"]) == (
            "Apple",
            "B",
            Decimal("2.00"),
            "active",
        )
        # the version holding the first-arrived record is keyed by the business key alone
        assert row["product_sk"] == (xxhash64(spark, "P1") if version == 1 else xxhash64(spark, "P1", valid_from))
        assert row["is_inferred"] is False and row["inferred_since"] is None
        assert utc(row["_processed_at"]) == PROCESSED_AT and row["_arrival_date"] == RUN_DAY

    p2 = rows[("P2", 1)]
    assert (p2["name"], utc(p2["valid_from"]), p2["valid_to"], p2["is_current"]) == ("Pear", ts(2), None, True)

    unknown = rows[(tables.UNKNOWN_MEMBER_ID, 1)]
    assert unknown["product_sk"] == tables.UNKNOWN_MEMBER_SK
    assert utc(unknown["valid_from"]) == datetime(1900, 1, 1, tzinfo=UTC)
    assert unknown["valid_to"] is None and unknown["is_current"] is True
    assert all(unknown[a] is None for a in gold.PRODUCT_ATTRIBUTES)


def test_scd2_same_table_whatever_input_order_and_partitioning(spark):
    shuffled = list(PRODUCT_CHANGES)
    random.Random(7).shuffle(shuffled)
    in_order = build_products(spark, PRODUCT_CHANGES).coalesce(1)
    variants = [
        in_order,
        build_products(spark, list(reversed(PRODUCT_CHANGES))),
        gold.build_dim_product(
            make_df(spark, tables.SILVER_PRODUCTS, shuffled).repartition(3),
            processed_at=PROCESSED_AT,
            arrival_date=RUN_DAY,
        ),
    ]
    expected = sorted_rows(in_order)
    for variant in variants[1:]:
        assert sorted_rows(variant) == expected

    # Invariants: one current row per key, contiguous non-overlapping validity, unique keys.
    by_key: dict[str, list[dict]] = {}
    for row in in_order.collect():
        by_key.setdefault(row["product_id"], []).append(row.asDict())
    assert len(by_key[tables.UNKNOWN_MEMBER_ID]) == 1
    sks = [r["product_sk"] for rs in by_key.values() for r in rs]
    assert len(sks) == len(set(sks))
    for product_id, versions in by_key.items():
        versions.sort(key=lambda r: r["version"])
        assert sum(r["is_current"] for r in versions) == 1, product_id
        assert [r["version"] for r in versions] == list(range(1, len(versions) + 1))
        for earlier, later in zip(versions, versions[1:]):
            assert earlier["valid_from"] < later["valid_from"]
            assert earlier["valid_to"] == later["valid_from"]
        if product_id != tables.UNKNOWN_MEMBER_ID:
            assert all(r["product_sk"] != tables.UNKNOWN_MEMBER_SK for r in versions)


def test_build_scd2_generic_names_its_surrogate_key(spark):
    changes = make_df(spark, tables.SILVER_PRODUCTS, PRODUCT_CHANGES[:1])
    history = gold.build_scd2(
        changes, key="product_id", attributes=["name"], processed_at=PROCESSED_AT, arrival_date=RUN_DAY
    )
    assert history.columns == [
        "product_sk",
        "product_id",
        "name",
        "is_inferred",
        "inferred_since",
        "valid_from",
        "valid_to",
        "is_current",
        "version",
        "is_deleted",
        "_processed_at",
        "_arrival_date",
    ]
    assert history.count() == 2


# ---------------------------------------------------------------------------------------------
# dim_customer: PII
# ---------------------------------------------------------------------------------------------

RAW_EMAIL = " Jane.Doe@Example.COM "
RAW_PHONE = "+33 6 12-34-56-78"


def test_dim_customer_hashes_and_masks_pii(spark):
    records = [
        change(
            1,
            "customers/a.csv:2",
            customer_id="C1",
            first_name="Jane",
            last_name="Doe",
            email=RAW_EMAIL,
            phone=RAW_PHONE,
            city="Paris",
            country="FR",
            birth_date=date(1990, 5, 1),
            loyalty_tier="gold",
            updated_at=ts(1),
        ),
        change(2, "customers/b.csv:2", customer_id="C1", email="jd@new.org", updated_at=ts(2)),
        change(2, "customers/b.csv:3", customer_id="C2", first_name="Al", phone="12", updated_at=ts(2)),
    ]
    dim = gold.build_dim_customer(
        make_df(spark, tables.SILVER_CUSTOMERS, records), processed_at=PROCESSED_AT, arrival_date=RUN_DAY
    )
    assert dim.columns == tables.GOLD_DIM_CUSTOMER.column_names
    rows = rows_by(dim, "customer_id", "version")
    assert len(rows) == 4  # an e-mail change alone is a new version

    first, second = rows[("C1", 1)], rows[("C1", 2)]
    assert first["email_hash"] == sha256("jane.doe@example.com")
    assert first["email_masked"] == "j***@example.com"
    assert first["phone_hash"] == sha256("33612345678")
    assert first["phone_masked"] == "*********78"
    assert second["email_hash"] == sha256("jd@new.org")
    assert second["email_masked"] == "j***@new.org"
    assert (second["phone_hash"], second["phone_masked"]) == (first["phone_hash"], first["phone_masked"])
    assert (second["city"], second["loyalty_tier"], second["birth_date"]) == ("Paris", "gold", date(1990, 5, 1))

    c2 = rows[("C2", 1)]
    assert (c2["email_hash"], c2["email_masked"]) == (None, None)
    assert (c2["phone_hash"], c2["phone_masked"]) == (sha256("12"), "12")

    raw_fragments = ["jane.doe", "jd@new.org", RAW_PHONE, "33612345678", "12-34-56"]
    for row in dim.collect():
        for value in row:
            text = str(value).lower()
            assert not any(fragment.lower() in text for fragment in raw_fragments), value


def test_mask_helpers_edge_cases(spark):
    df = spark.createDataFrame(
        [("a@b.c", "0612"), ("noat", "1"), ("", "abc"), (None, None), ("x@y@z.org", "(06) 12 34 56 78")],
        "email string, phone string",
    )
    out = df.select(
        gold.mask_email(F.col("email")), gold.hash_email(F.col("email")), gold.mask_phone(F.col("phone"))
    ).collect()
    assert [tuple(r) for r in out] == [
        ("a***@b.c", sha256("a@b.c"), "**12"),
        ("n***", sha256("noat"), "1"),
        (None, None, None),
        (None, None, None),
        ("x***@z.org", sha256("x@y@z.org"), "********78"),
    ]


# ---------------------------------------------------------------------------------------------
# dim_store (SCD1) and dim_date
# ---------------------------------------------------------------------------------------------


def test_dim_store_keeps_latest_non_null_attribute(spark):
    records = [
        change(
            1,
            "stores/a.csv:2",
            store_id="S1",
            name="Main",
            city="Paris",
            region="IDF",
            format="supermarket",
            opened_on=date(2020, 1, 1),
            status="open",
            updated_at=ts(1),
        ),
        change(2, "stores/b.csv:2", store_id="S1", status="renovating", updated_at=ts(3)),
        # Older than the status change: its city applies, its status does not.
        change(3, "stores/c.csv:2", store_id="S1", city="Lyon", status="closed", updated_at=ts(2)),
        change(1, "stores/a.csv:3", store_id="S2", name="Two", updated_at=ts(1)),
    ]
    results = [
        gold.build_dim_store(make_df(spark, tables.SILVER_STORES, rs), processed_at=PROCESSED_AT, arrival_date=RUN_DAY)
        for rs in (records, list(reversed(records)))
    ]
    dim = results[0]
    assert dim.columns == tables.GOLD_DIM_STORE.column_names
    assert sorted_rows(results[1]) == sorted_rows(dim)
    rows = rows_by(dim, "store_id")
    assert set(rows) == {("S1",), ("S2",), (tables.UNKNOWN_MEMBER_ID,)}
    s1 = rows[("S1",)]
    assert (s1["name"], s1["city"], s1["region"], s1["format"], s1["opened_on"], s1["status"]) == (
        "Main",
        "Lyon",
        "IDF",
        "supermarket",
        date(2020, 1, 1),
        "renovating",
    )
    assert utc(s1["updated_at"]) == ts(3)
    assert s1["store_sk"] == xxhash64(spark, "S1")
    unknown = rows[(tables.UNKNOWN_MEMBER_ID,)]
    assert unknown["store_sk"] == tables.UNKNOWN_MEMBER_SK and unknown["name"] is None and unknown["updated_at"] is None


def test_dim_date_iso_calendar(spark):
    days = [date(2024, 12, 30), date(2024, 12, 28), date(2021, 1, 3), date(2024, 12, 30), date(2024, 2, 29)]
    dim = gold.build_dim_date(days, spark)
    assert dim.columns == tables.GOLD_DIM_DATE.column_names
    assert sorted_rows(dim) == sorted(
        [
            (20241230, date(2024, 12, 30), 2024, 4, 12, "December", 30, 1, "Monday", 1, False),
            (20241228, date(2024, 12, 28), 2024, 4, 12, "December", 28, 6, "Saturday", 52, True),
            (20210103, date(2021, 1, 3), 2021, 1, 1, "January", 3, 7, "Sunday", 53, True),
            (20240229, date(2024, 2, 29), 2024, 1, 2, "February", 29, 4, "Thursday", 9, False),
        ],
        key=repr,
    )


# ---------------------------------------------------------------------------------------------
# fact_sales
# ---------------------------------------------------------------------------------------------


def silver_line(
    tx: str, event_time: datetime, store: str, product: str, customer: str | None, qty: int, price: str
) -> dict:
    gross = Decimal(qty) * Decimal(price)
    return {
        "transaction_id": tx,
        "line_number": 1,
        "event_time": event_time,
        "event_date": event_time.date(),
        "store_id": store,
        "product_id": product,
        "customer_id": customer,
        "quantity": qty,
        "unit_price": Decimal(price),
        "discount": Decimal("0"),
        "gross_amount": gross,
        "discount_amount": Decimal("0.00"),
        "net_amount": gross,
        "payment_method": "card",
        "channel": "store_file",
        "_source": f"sales/{tx}.csv:2",
        "_arrival_date": event_time.date(),
        "_batch_id": "run",
    }


def test_fact_sales_point_in_time_join(spark):
    dim_customer = gold.build_dim_customer(
        make_df(
            spark,
            tables.SILVER_CUSTOMERS,
            [
                change(2, "c.csv:2", customer_id="C1", first_name="Jane", city="Paris", updated_at=ts(2, 10)),
                change(3, "c.csv:3", customer_id="C1", city="Lyon", updated_at=ts(3, 10)),
            ],
        ),
        processed_at=PROCESSED_AT,
        arrival_date=RUN_DAY,
    )
    dim_product = build_products(
        spark,
        [
            change(1, "p.csv:2", product_id="P1", name="Apple", unit_cost=Decimal("1.00"), updated_at=ts(1)),
            change(3, "p.csv:3", product_id="P1", unit_cost=Decimal("2.00"), updated_at=ts(3, 12)),
        ],
    )
    dim_store = gold.build_dim_store(
        make_df(spark, tables.SILVER_STORES, [change(1, "s.csv:2", store_id="S1", name="Main", updated_at=ts(1))]),
        processed_at=PROCESSED_AT,
        arrival_date=RUN_DAY,
    )
    sales = make_df(
        spark,
        tables.SILVER_SALES_LINES,
        [
            silver_line("T1", ts(2, 10), "S1", "P1", "C1", 2, "3.00"),  # exactly at C1 v1's valid_from
            silver_line("T2", ts(3, 10), "S1", "P1", "C1", 1, "3.00"),  # exactly at C1 v2's valid_from
            silver_line("T3", ts(1, 9), "S1", "P1", "C1", 1, "3.00"),  # before C1's first version
            silver_line("T4", ts(2, 11), "S9", "P9", None, 1, "3.00"),  # anonymous, unknown product and store
            silver_line("T5", ts(3, 12), "S1", "P1", "C9", 1, "3.00"),  # unknown customer; P1 v2 boundary
        ],
    )
    returns = make_df(spark, tables.SILVER_RETURNS, [silver_line("T6", ts(3, 13), "S1", "P1", "C1", 1, "3.00")])

    c1v1, c1v2 = xxhash64(spark, "C1"), xxhash64(spark, "C1", ts(3, 10))
    p1v1, p1v2 = xxhash64(spark, "P1"), xxhash64(spark, "P1", ts(3, 12))
    s1 = xxhash64(spark, "S1")
    # keys the dimensions do not hold (no inferred member built yet) and an anonymous customer: -1
    p9 = s9 = c9 = tables.UNKNOWN_MEMBER_SK
    expected = {
        # (transaction_id, line_type): customer_sk, product_sk, store_sk, quantity, net_amount, date_sk
        ("T1", "sale"): (c1v1, p1v1, s1, 2, Decimal("6.00"), 20240102),
        ("T2", "sale"): (c1v2, p1v1, s1, 1, Decimal("3.00"), 20240103),
        ("T3", "sale"): (c1v1, p1v1, s1, 1, Decimal("3.00"), 20240101),
        ("T4", "sale"): (tables.UNKNOWN_MEMBER_SK, p9, s9, 1, Decimal("3.00"), 20240102),
        ("T5", "sale"): (c9, p1v2, s1, 1, Decimal("3.00"), 20240103),
        ("T6", "return"): (c1v2, p1v2, s1, -1, Decimal("-3.00"), 20240103),
    }

    fact = gold.build_fact_sales(sales, returns, dim_customer, dim_product, dim_store, processed_at=PROCESSED_AT)
    assert fact.columns == tables.GOLD_FACT_SALES.column_names
    rows = rows_by(fact, "transaction_id", "line_type")
    assert len(rows) == sales.count() + returns.count() == 6
    got = {
        k: (r["customer_sk"], r["product_sk"], r["store_sk"], r["quantity"], r["net_amount"], r["date_sk"])
        for k, r in rows.items()
    }
    assert got == expected
    t6 = rows[("T6", "return")]
    assert (t6["gross_amount"], t6["discount_amount"], t6["unit_price"]) == (
        Decimal("-3.00"),
        Decimal("0.00"),
        Decimal("3.00"),
    )
    assert rows[("T4", "sale")]["customer_id"] is None

    # A broken dimension (every version twice) still neither drops nor duplicates a line.
    doubled = gold.build_fact_sales(
        sales,
        returns,
        dim_customer.unionByName(dim_customer),
        dim_product.unionByName(dim_product),
        dim_store.unionByName(dim_store),
        processed_at=PROCESSED_AT,
    )
    assert doubled.count() == 6


def test_an_inferred_member_takes_the_attributes_of_the_record_that_arrives_under_its_key(spark):
    """A key sales named before its record: an inferred member keyed by the business key; the
    record, arriving later (earlier-dated or not), fills it in under that key, and the history
    goes on from there; a record dated earlier that arrives later still becomes its own version."""
    lines = make_df(
        spark,
        tables.SILVER_SALES_LINES,
        [{**silver_line("T1", ts(2, 9), "S1", "P7", None, 1, "3.00"), "quality_flags": [rules.UNKNOWN_PRODUCT]}],
    )
    inferred = gold.inferred_keys(lines, "product_id", rules.UNKNOWN_PRODUCT)
    before = rows_by(build_products_inferred(spark, [], inferred), "product_id", "version")
    member = before[("P7", 1)]
    assert (member["is_inferred"], member["name"], member["inferred_since"]) == (True, None, date(2024, 1, 2))
    assert member["product_sk"] == xxhash64(spark, "P7") and member["is_current"] is True
    assert utc(member["valid_from"]) == datetime(1900, 1, 1, tzinfo=UTC)

    arrived = [
        change(5, "p.csv:2", product_id="P7", name="Jam", unit_cost=Decimal("1.00"), updated_at=ts(3)),
        change(6, "p.csv:3", product_id="P7", unit_cost=Decimal("1.20"), updated_at=ts(4)),
        # dated before the first record, arriving after it: a version of its own, not the member
        change(7, "p.csv:4", product_id="P7", name="Old Jam", updated_at=ts(1)),
    ]
    after = rows_by(build_products_inferred(spark, arrived, inferred), "product_id", "version")
    assert sorted(v for k, v in after if k == "P7") == [1, 2, 3]
    by_sk = {r["product_sk"]: r for r in after.values()}
    filled = by_sk[member["product_sk"]]
    assert (filled["name"], filled["unit_cost"], filled["is_inferred"]) == ("Jam", Decimal("1.00"), False)
    assert filled["inferred_since"] == date(2024, 1, 2) and utc(filled["valid_from"]) == ts(3)
    assert after[("P7", 1)]["name"] == "Old Jam" and after[("P7", 1)]["product_sk"] == xxhash64(spark, "P7", ts(1))
    assert after[("P7", 3)]["product_sk"] == xxhash64(spark, "P7", ts(4))


def build_products_inferred(spark, records, inferred):
    return gold.build_dim_product(
        make_df(spark, tables.SILVER_PRODUCTS, records),
        processed_at=PROCESSED_AT,
        arrival_date=RUN_DAY,
        inferred=inferred,
    )


# ---------------------------------------------------------------------------------------------
# Aggregates
# ---------------------------------------------------------------------------------------------

SK = {"S1": 11, "S2": 12}


def fact_row(
    tx: str,
    line: int,
    line_type: str,
    day: date,
    hour: int,
    store: str,
    product: str,
    product_sk: int,
    customer: str | None,
    qty: int,
    price: str,
    discount: str = "0.00",
) -> dict:
    """A Gold fact row; pass `qty`/`discount` signed (negative for returns)."""
    gross = Decimal(qty) * Decimal(price)
    return {
        "transaction_id": tx,
        "line_number": line,
        "line_type": line_type,
        "date_sk": int(day.strftime("%Y%m%d")),
        "event_time": datetime(day.year, day.month, day.day, hour, tzinfo=UTC),
        "event_date": day,
        "customer_sk": tables.UNKNOWN_MEMBER_SK if customer is None else 1,
        "product_sk": product_sk,
        "store_sk": SK.get(store, tables.UNKNOWN_MEMBER_SK),
        "customer_id": customer,
        "product_id": product,
        "store_id": store,
        "quantity": qty,
        "unit_price": Decimal(price),
        "gross_amount": gross,
        "discount_amount": Decimal(discount),
        "net_amount": gross - Decimal(discount),
        "payment_method": "card",
        "channel": "pos_stream",
        "_processed_at": PROCESSED_AT,
    }


FACT = [
    fact_row("T1", 1, "sale", D1, 9, "S1", "P1", 101, "C1", 2, "10.00", "2.00"),  # net 18.00
    fact_row("T1", 2, "sale", D1, 9, "S1", "P2", 201, "C1", 1, "5.00"),  # net 5.00
    fact_row("T2", 1, "sale", D1, 10, "S1", "P1", 101, None, 1, "10.00"),  # net 10.00, anonymous
    fact_row("T2", 2, "sale", D1, 10, "S1", "P3", -1, None, 1, "3.00"),  # net 3.00, sk unknown at fact time
    fact_row("T3", 1, "return", D1, 11, "S1", "P1", 101, "C2", -1, "10.00"),  # net -10.00
    fact_row("T4", 1, "return", D1, 12, "S2", "P2", 201, "C1", -2, "5.00"),  # net -10.00, store with returns only
    fact_row("T5", 1, "sale", D2, 9, "S1", "P1", 101, "C2", 3, "10.00"),  # net 30.00
    fact_row("T6", 1, "sale", D2, 15, "S1", "P1", 102, "C1", 1, "10.01"),  # net 10.01, new product version
    fact_row("T6", 2, "return", D2, 15, "S1", "P2", 201, "C1", -1, "5.00"),  # net -5.00
    fact_row("T7", 1, "sale", D2, 16, "S2", "P9", -1, "C3", 1, "8.00"),  # net 8.00, product never known
]

DIM_PRODUCT = [
    {
        "product_sk": 101,
        "product_id": "P1",
        "category": "Food",
        "unit_cost": Decimal("4.00"),
        "valid_from": ts(1),
        "valid_to": ts(3, 12),
        "is_current": False,
        "version": 1,
    },
    {
        "product_sk": 102,
        "product_id": "P1",
        "category": "Snacks",
        "unit_cost": Decimal("6.00"),
        "valid_from": ts(3, 12),
        "is_current": True,
        "version": 2,
    },
    {
        "product_sk": 201,
        "product_id": "P2",
        "category": "Drinks",
        "unit_cost": None,
        "valid_from": ts(1),
        "is_current": True,
        "version": 1,
    },
    {
        "product_sk": 301,
        "product_id": "P3",
        "category": "Home",
        "unit_cost": Decimal("1.00"),
        "valid_from": ts(2, 12),
        "is_current": True,
        "version": 1,
    },
    {
        "product_sk": tables.UNKNOWN_MEMBER_SK,
        "product_id": tables.UNKNOWN_MEMBER_ID,
        "valid_from": datetime(1900, 1, 1, tzinfo=UTC),
        "is_current": True,
        "version": 1,
    },
]


@pytest.fixture(scope="module")
def fact(spark):
    return make_df(spark, tables.GOLD_FACT_SALES, FACT).cache()


def test_agg_daily_store_sales(fact):
    agg = gold.agg_daily_store_sales(fact)
    assert agg.columns == tables.GOLD_AGG_DAILY_STORE_SALES.column_names
    d = Decimal
    assert sorted_rows(agg) == sorted(
        [
            # event_date, store, channel, sk, revenue, returns, net, transactions, units, units_returned, customers
            (D1, "S1", "pos_stream", 11, d("36.00"), d("10.00"), d("26.00"), 2, 5, 1, 1),
            (D1, "S2", "pos_stream", 12, d("0.00"), d("10.00"), d("-10.00"), 0, 0, 2, 0),
            (D2, "S1", "pos_stream", 11, d("40.01"), d("5.00"), d("35.01"), 2, 4, 1, 2),
            (D2, "S2", "pos_stream", 12, d("8.00"), d("0.00"), d("8.00"), 1, 1, 0, 1),
        ],
        key=repr,
    )


def test_agg_product_performance(spark, fact):
    agg = gold.agg_product_performance(fact, make_df(spark, tables.GOLD_DIM_PRODUCT, DIM_PRODUCT))
    assert agg.columns == tables.GOLD_AGG_PRODUCT_PERFORMANCE.column_names
    d = Decimal
    assert sorted_rows(agg) == sorted(
        [
            # event_date, product, category, sold, returned, revenue, returns, net, margin, transactions
            (D1, "P1", "Food", 3, 1, d("28.00"), d("10.00"), d("18.00"), d("10.00"), 2),  # 18 - (2+1-1)×4
            (D1, "P2", "Drinks", 1, 2, d("5.00"), d("10.00"), d("-5.00"), None, 1),  # no cost known
            (D1, "P3", "Home", 1, 0, d("3.00"), d("0.00"), d("3.00"), d("2.00"), 1),  # current version
            (D2, "P1", "Snacks", 4, 0, d("40.01"), d("0.00"), d("40.01"), d("22.01"), 2),  # 40.01 - (3×4 + 1×6)
            (D2, "P2", "Drinks", 0, 1, d("0.00"), d("5.00"), d("-5.00"), None, 0),
            (D2, "P9", None, 1, 0, d("8.00"), d("0.00"), d("8.00"), None, 1),  # never in the dimension
        ],
        key=repr,
    )


def test_customer_daily_value_and_lifetime_value(fact):
    daily = gold.customer_daily_value(fact)
    assert daily.columns == tables.GOLD_CUSTOMER_DAILY_VALUE.column_names
    d = Decimal
    # Anonymous lines never count; C2's day 1 holds only a return: a row, no order.
    assert sorted_rows(daily) == sorted(
        [
            (D1, "C1", d("13.00"), 1),  # T1 18.00 + 5.00, T4's return -10.00
            (D1, "C2", d("-10.00"), 0),
            (D2, "C1", d("5.01"), 1),  # T6: a sale 10.01 and a return -5.00, one order
            (D2, "C2", d("30.00"), 1),
            (D2, "C3", d("8.00"), 1),
        ],
        key=repr,
    )
    clv = gold.agg_customer_lifetime_value(daily)
    assert clv.columns == tables.GOLD_AGG_CUSTOMER_LIFETIME_VALUE.column_names
    # customer, total_spend, orders, first and last purchase, average order value, last active day
    assert sorted_rows(clv) == sorted(
        [
            ("C1", d("18.01"), 2, D1, D2, d("9.01"), D2),  # 18.01 / 2 = 9.005 → 9.01
            ("C2", d("20.00"), 1, D2, D2, d("20.00"), D2),  # day 1's return counts in the spend
            ("C3", d("8.00"), 1, D2, D2, d("8.00"), D2),
        ],
        key=repr,
    )
    # C2 only returned something by day 1: no order, no row
    day1 = gold.agg_customer_lifetime_value(daily.where(F.col("event_date") == D1))
    assert sorted_rows(day1) == [("C1", d("13.00"), 1, D1, D1, d("13.00"), D1)]


def test_agg_inventory_cover(spark, fact):
    def snapshot(day: date, store: str, product: str, qty: int, arrived: int, source: str) -> dict:
        return {
            "snapshot_date": day,
            "store_id": store,
            "product_id": product,
            "on_hand_qty": qty,
            "_arrival_date": date(2024, 1, arrived),
            "_source": source,
            "_batch_id": "run",
        }

    inventory = make_df(
        spark,
        tables.SILVER_INVENTORY,
        [
            snapshot(D2, "S1", "P1", 12, 3, "inventory/3.csv:2"),
            snapshot(D2, "S1", "P1", 15, 4, "inventory/4.csv:2"),  # re-sent later: this copy wins
            snapshot(D2, "S1", "P2", 4, 3, "inventory/3.csv:3"),  # sold 1, returned 1: nothing net
            snapshot(D2, "S2", "P2", 7, 3, "inventory/3.csv:4"),  # only returns: floored at 0
            snapshot(D2, "S1", "P5", 9, 3, "inventory/3.csv:5"),  # never sold
            snapshot(D2, "S2", "P9", 1, 3, "inventory/3.csv:6"),
            snapshot(D1, "S1", "P1", 100, 2, "inventory/2.csv:2"),  # another snapshot day
        ],
    )
    two_days = gold.agg_inventory_cover(inventory, fact, snapshot_date=D2, window_days=2)
    assert two_days.columns == tables.GOLD_AGG_INVENTORY_COVER.column_names
    assert sorted_rows(two_days) == sorted(
        [
            (D2, "S1", "P1", 15, 3.0, 5.0),  # (2 + 4) units / 2 days
            (D2, "S1", "P2", 4, 0.0, None),
            (D2, "S2", "P2", 7, 0.0, None),
            (D2, "S1", "P5", 9, 0.0, None),
            (D2, "S2", "P9", 1, 0.5, 2.0),
        ],
        key=repr,
    )
    one_day = rows_by(
        gold.agg_inventory_cover(inventory, fact, snapshot_date=D2, window_days=1), "store_id", "product_id"
    )
    assert (one_day[("S1", "P1")]["avg_daily_units_sold"], one_day[("S1", "P1")]["days_of_cover"]) == (4.0, 3.75)
