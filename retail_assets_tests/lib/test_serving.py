"""Serving shapes (`TableSpec.view`): the current snapshots of the dimensions and the
denormalized sales table, a catalog view on the delta-spark engine and a table on delta-rs,
with the same rows either way."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from deltalake import DeltaTable

from retail_assets.lib.engine import DeltaRsEngine, DeltaSparkEngine, PartitionRange
from retail_assets.lib.registry import tables
from retail_assets.lib.transforms import gold
from retail_assets.lib.transforms.gold import integrity
from retail_assets_tests.lib.test_gold import (
    PROCESSED_AT,
    RUN_DAY,
    build_products,
    change,
    make_df,
    silver_line,
    ts,
    xxhash64,
)

DAYS = PartitionRange(date(2024, 1, 1), date(2024, 1, 3))
SERVING = tables.serving_shapes()


@pytest.fixture(params=["delta_rs", "delta_spark"])
def engine(request, spark, tmp_path):
    if request.param == "delta_rs":
        return DeltaRsEngine(tmp_path / "lakehouse", spark=spark)
    return DeltaSparkEngine.local(tmp_path / "lakehouse", "dev", spark=spark)


def line(*args) -> dict:
    return {**silver_line(*args), "quality_flags": []}


def star(spark) -> dict[tables.TableSpec, object]:
    """A small star: P1 changes cost on day 3 at noon, C1 moves city on day 3, S1 is one store."""
    customers = gold.build_dim_customer(
        make_df(
            spark,
            tables.SILVER_CUSTOMERS,
            [
                change(1, "c.csv:2", customer_id="C1", first_name="Jane", loyalty_tier="gold", updated_at=ts(1)),
                change(3, "c.csv:3", customer_id="C1", loyalty_tier="platinum", updated_at=ts(3, 10)),
            ],
        ),
        processed_at=PROCESSED_AT,
        arrival_date=RUN_DAY,
    )
    products = build_products(
        spark,
        [
            change(1, "p.csv:2", product_id="P1", name="Apple", unit_cost=Decimal("1.00"), updated_at=ts(1)),
            change(3, "p.csv:3", product_id="P1", unit_cost=Decimal("2.00"), updated_at=ts(3, 12)),
        ],
    )
    stores = gold.build_dim_store(
        make_df(
            spark,
            tables.SILVER_STORES,
            [change(1, "s.csv:2", store_id="S1", name="Main", region="N", updated_at=ts(1))],
        ),
        processed_at=PROCESSED_AT,
        arrival_date=RUN_DAY,
    )
    sales = make_df(
        spark,
        tables.SILVER_SALES_LINES,
        [
            line("T1", ts(2, 9), "S1", "P1", "C1", 2, "3.00"),
            line("T2", ts(3, 11), "S1", "P1", "C1", 1, "3.00"),  # before P1's new cost
            line("T3", ts(3, 13), "S1", "P1", None, 1, "3.00"),  # after it; anonymous
        ],
    )
    returns = make_df(spark, tables.SILVER_RETURNS, [line("T4", ts(3, 14), "S1", "P1", "C1", 1, "3.00")])
    fact = gold.build_fact_sales(sales, returns, customers, products, stores, processed_at=PROCESSED_AT)
    return {
        tables.GOLD_DIM_CUSTOMER: customers,
        tables.GOLD_DIM_PRODUCT: products,
        tables.GOLD_DIM_STORE: stores,
        tables.GOLD_DIM_DATE: gold.build_dim_date(DAYS.days(), spark),
        tables.GOLD_FACT_SALES: fact,
    }


def written(engine, spark) -> None:
    for spec, frame in star(spark).items():
        engine.write(spec, frame, DAYS)


def served(engine, spec) -> dict:
    key = spec.primary_key
    return {tuple(r[k] for k in key): r.asDict() for r in engine.read(spec).collect()}


def test_every_serving_shape_is_a_select_over_gold_tables():
    assert {s.name for s in SERVING} == {
        "dim_customer_current",
        "dim_product_current",
        "dim_store_current",
        "sales_denormalized",
    }
    for spec in SERVING:
        assert spec.layer is tables.Layer.GOLD and all(t.layer is tables.Layer.GOLD for t in spec.view.reads)
        # analysts query by the business key of a snapshot, by the fact's key for the sales table
        assert set(spec.view.rows_of.primary_key) <= set(spec.column_names)
    with pytest.raises(ValueError, match="names"):
        tables.View(reads=(tables.GOLD_FACT_SALES,), select="SELECT * FROM {fact}", rows_of=tables.GOLD_FACT_SALES)


def test_serving_shapes_hold_the_versions_valid_at_each_sale(engine, spark):
    written(engine, spark)
    for spec in SERVING:
        engine.publish(spec, DAYS)

    sales = served(engine, tables.GOLD_SALES_DENORMALIZED)
    assert len(sales) == engine.read(tables.GOLD_FACT_SALES).count() == 4
    # the product version valid at each sale, not the current one
    assert sales[("T2", 1, "sale")]["product_unit_cost"] == Decimal("1.00")
    assert sales[("T3", 1, "sale")]["product_unit_cost"] == Decimal("2.00")
    assert sales[("T1", 1, "sale")]["customer_loyalty_tier"] == "gold"
    assert sales[("T4", 1, "return")]["customer_loyalty_tier"] == "platinum"
    # the anonymous customer is the unknown member: the line is kept, its attributes empty
    assert sales[("T3", 1, "sale")]["customer_sk"] == tables.UNKNOWN_MEMBER_SK
    assert sales[("T2", 1, "sale")]["store_name"] == "Main"
    assert sales[("T2", 1, "sale")]["day_name"] == "Wednesday"
    assert sum(r["net_amount"] for r in sales.values()) == Decimal("9.00")  # 6 + 3 + 3 - 3

    products = served(engine, tables.GOLD_DIM_PRODUCT_CURRENT)
    assert products[("P1",)]["unit_cost"] == Decimal("2.00")
    assert products[("P1",)]["product_sk"] == xxhash64(spark, "P1", ts(3, 12))
    assert (tables.UNKNOWN_MEMBER_ID,) in products and len(products) == 2
    customers = served(engine, tables.GOLD_DIM_CUSTOMER_CURRENT)
    assert customers[("C1",)]["loyalty_tier"] == "platinum" and customers[("C1",)]["first_name"] == "Jane"
    assert len(served(engine, tables.GOLD_DIM_STORE_CURRENT)) == 2

    for spec in SERVING:
        assert engine.stored_schema(spec) == [(c.name, c.type) for c in spec.columns]


def test_a_view_on_delta_spark_a_table_on_delta_rs(spark, tmp_path):
    spec = tables.GOLD_SALES_DENORMALIZED
    rs = DeltaRsEngine(tmp_path / "rs", spark=spark)
    ds = DeltaSparkEngine.local(tmp_path / "ds", "dev", spark=spark)
    for engine in (rs, ds):
        written(engine, spark)
        commit = engine.publish(spec, DAYS)
    # delta-rs: a Delta table of the SELECT's rows, with its commits
    assert DeltaTable(rs.location(spec)).version() == rs.version(spec) == 0
    assert rs.optimize(spec).get("skipped") is None
    # delta-spark: a view in the catalog, no folder, no commits, nothing to maintain
    assert commit.version is None and commit.operation == "CREATE VIEW"
    table = spark.catalog.getTable(ds.location(spec))
    assert table.tableType == "VIEW"
    assert not (tmp_path / "ds" / "gold" / spec.name).exists()
    assert ds.version(spec) is None and ds.history(spec) == []
    assert ds.optimize(spec) == ds.vacuum(spec) == {"skipped": "a view has no files"}
    # the same rows either way
    assert sorted(map(tuple, rs.read(spec).collect()), key=repr) == sorted(
        map(tuple, ds.read(spec).collect()), key=repr
    )


def test_a_view_serves_its_inputs_as_they_stand_and_a_stale_table_fails_its_check(engine, spark):
    spec = tables.GOLD_SALES_DENORMALIZED
    written(engine, spark)
    engine.publish(spec, DAYS)
    fact = engine.read(tables.GOLD_FACT_SALES)

    def check():
        days = DAYS.days()
        return integrity.serves_source(
            engine.read(spec), engine.read(tables.GOLD_FACT_SALES), fact_key, "event_date", days
        )

    fact_key = tables.GOLD_FACT_SALES.primary_key
    assert all(o.passed for o in check().values())

    # the fact's day 3 is rebuilt without T3: a view shows it at once, a table once published again
    day3 = fact.where("event_date = '2024-01-03' AND transaction_id != 'T3'").toArrow()
    engine.write(tables.GOLD_FACT_SALES, day3, PartitionRange.single(date(2024, 1, 3)))
    outcome = check()[date(2024, 1, 3)]
    if engine.is_view(spec):
        assert outcome.passed and outcome.metadata["rows"] == 2
    else:
        assert not outcome.passed and outcome.metadata["unexpected"] == 1 and outcome.metadata["missing"] == 0
        assert check()[date(2024, 1, 2)].passed
        engine.publish(spec, PartitionRange.single(date(2024, 1, 3)))
        assert check()[date(2024, 1, 3)].passed
    assert engine.read(spec).count() == 3

    # a type 1 rename of the store: every line names it; a table holds the old name until published
    stores = engine.read(tables.GOLD_DIM_STORE).toArrow()
    renamed = stores.set_column(stores.schema.get_field_index("name"), "name", [["High St"] * stores.num_rows])
    engine.write(tables.GOLD_DIM_STORE, renamed.cast(stores.schema), DAYS)

    def current():
        fresh = engine.view_rows(spec, DAYS)
        return integrity.served_rows_current(engine.read(spec), fresh, spec, "event_date", DAYS.days())

    stale = current()
    if engine.is_view(spec):
        assert all(o.passed for o in stale.values())
    else:
        assert [stale[d].metadata["stale_rows"] for d in DAYS.days()] == [0, 1, 2]
        engine.publish(spec, DAYS)
        assert all(o.passed for o in current().values())
    assert {r["store_name"] for r in engine.read(spec).collect()} == {"High St"}


def test_a_repeated_join_key_fails_the_serving_check(spark):
    """The check counts by the source's key: a line a join repeats is an unexpected row."""
    fact = star(spark)[tables.GOLD_FACT_SALES]
    key = tables.GOLD_FACT_SALES.primary_key
    outcomes = integrity.serves_source(fact.unionByName(fact.limit(1)), fact, key, "event_date", DAYS.days())
    assert sum(o.metadata["unexpected"] for o in outcomes.values()) == 1
    assert [o.passed for o in outcomes.values()].count(False) == 1
    whole = integrity.serves_source(fact.limit(3), fact, key, None, [RUN_DAY])
    assert not whole[RUN_DAY].passed and whole[RUN_DAY].metadata["missing"] == 1


def test_a_local_view_is_stated_again_in_a_session_catalog_that_forgot_it(spark, tmp_path):
    spec = tables.GOLD_DIM_PRODUCT_CURRENT
    first = DeltaSparkEngine.local(tmp_path / "lakehouse", "dev", spark=spark)
    written(first, spark)
    first.publish(spec, DAYS)
    spark.sql(f"DROP VIEW {first.location(spec)}")  # what a new JVM's catalog holds of it
    again = DeltaSparkEngine.local(tmp_path / "lakehouse", "dev", spark=spark)
    assert again.exists(spec)
    assert again.read(spec).count() == 2
    # a view over inputs never written does not exist
    assert not DeltaSparkEngine.local(tmp_path / "empty", "dev", spark=spark).exists(spec)
