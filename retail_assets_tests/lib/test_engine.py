"""Both local engines, delta-rs and delta-spark: partition overwrite, rebuild, append with
idempotent-writer ids, reads — the same contract on the same folder layout."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from retail_assets.lib.engine import DeltaRsEngine, DeltaSparkEngine, PartitionRange, RowStream
from retail_assets.lib.registry.tables import GOLD_DIM_DATE, GOLD_DIM_STORE

D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)


@pytest.fixture(params=["delta_rs", "delta_spark"])
def engine(request, spark, tmp_path):
    if request.param == "delta_rs":
        return DeltaRsEngine(tmp_path / "lakehouse", spark=spark)
    return DeltaSparkEngine.local(tmp_path / "lakehouse", "dev", spark=spark)


def dates(*days: dt.date) -> pa.Table:
    rows = [
        dict(
            date_sk=int(d.strftime("%Y%m%d")),
            date=d,
            year=d.year,
            quarter=4,
            month=d.month,
            month_name="November",
            day_of_month=d.day,
            day_of_week=d.isoweekday(),
            day_name=d.strftime("%A"),
            iso_week=44,
            is_weekend=d.isoweekday() > 5,
        )
        for d in days
    ]
    return pa.Table.from_pylist(rows, schema=GOLD_DIM_DATE.arrow_schema())


def test_missing_table_reads_empty_with_schema(engine):
    df = engine.read(GOLD_DIM_DATE, PartitionRange.single(D1))
    assert df.count() == 0
    assert df.columns == GOLD_DIM_DATE.column_names
    assert engine.version(GOLD_DIM_DATE) is None


def test_partition_overwrite_replaces_only_its_partition(engine):
    engine.overwrite_partitions(GOLD_DIM_DATE, dates(D1), PartitionRange.single(D1))
    engine.overwrite_partitions(GOLD_DIM_DATE, dates(D2), PartitionRange.single(D2))
    first = engine.read_arrow(GOLD_DIM_DATE).sort_by("date")
    before = engine.version(GOLD_DIM_DATE)
    commit = engine.overwrite_partitions(GOLD_DIM_DATE, dates(D1), PartitionRange.single(D1))
    again = engine.read_arrow(GOLD_DIM_DATE).sort_by("date")
    assert again.equals(first)
    # delta-spark creates the table by DDL (version 0) before the first write; delta-rs by it.
    assert commit.version == before + 1 and commit.rows_written == 1
    assert engine.history(GOLD_DIM_DATE, 1)[0]["version"] == before + 1
    # Spark sees the same rows
    assert engine.read(GOLD_DIM_DATE).count() == 2


def test_rows_outside_the_partition_are_refused(engine):
    with pytest.raises(ValueError, match="outside the partitions"):
        engine.overwrite_partitions(GOLD_DIM_DATE, dates(D2), PartitionRange.single(D1))
    assert engine.read_arrow(GOLD_DIM_DATE).num_rows == 0


def test_not_null_and_schema_mismatch_are_refused(engine):
    bad = dates(D1).drop_columns(["day_name"])
    with pytest.raises(ValueError, match="missing \\['day_name'\\]"):
        engine.overwrite_partitions(GOLD_DIM_DATE, bad, PartitionRange.single(D1))
    nulls = dates(D1).set_column(8, "day_name", pa.array([None], pa.string()))
    with pytest.raises(ValueError, match="NOT NULL"):
        engine.overwrite_partitions(GOLD_DIM_DATE, nulls, PartitionRange.single(D1))


def test_rows_streamed_to_the_write_land_in_one_commit_and_a_failed_stream_commits_nothing(engine):
    def stream(*parts: pa.Table, failure: Exception | None = None) -> RowStream:
        def batches():
            for part in parts:
                yield from part.to_batches()
            if failure is not None:
                raise failure

        return RowStream(GOLD_DIM_DATE.arrow_schema(), batches())

    engine.overwrite_partitions(GOLD_DIM_DATE, dates(D1), PartitionRange.single(D1))
    before = engine.version(GOLD_DIM_DATE)
    both = PartitionRange(D1, D2)
    commit = engine.overwrite_partitions(GOLD_DIM_DATE, stream(dates(D1), dates(D2)), both)
    assert (commit.version, commit.rows_written, commit.preview.num_rows) == (before + 1, 2, 2)
    assert engine.read_arrow(GOLD_DIM_DATE).sort_by("date").equals(dates(D1, D2))
    # The producer's own exception, not the writer's account of it; and no commit.
    with pytest.raises(ConnectionError, match="broker went away"):
        engine.overwrite_partitions(GOLD_DIM_DATE, stream(dates(D1), failure=ConnectionError("broker went away")), both)
    with pytest.raises(ValueError, match="outside the partitions"):
        engine.overwrite_partitions(GOLD_DIM_DATE, stream(dates(D1), dates(D2)), PartitionRange.single(D1))
    assert engine.version(GOLD_DIM_DATE) == before + 1
    assert engine.read_arrow(GOLD_DIM_DATE).num_rows == 2


def stores(ids: list[str], day: dt.date, *, first_sk: int = 0, name: str | None = None) -> pa.Table:
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    return pa.Table.from_pylist(
        [
            dict(
                store_sk=first_sk + i,
                store_id=s,
                name=name,
                city=None,
                region=None,
                format=None,
                opened_on=None,
                status=None,
                updated_at=now,
                is_inferred=False,
                inferred_since=None,
                _processed_at=now,
                _arrival_date=day,
            )
            for i, s in enumerate(ids)
        ],
        schema=GOLD_DIM_STORE.arrow_schema(),
    )


def test_rebuild_replaces_the_whole_table(engine):
    engine.write(GOLD_DIM_STORE, stores(["S1", "S2"], D1), PartitionRange.single(D1))
    engine.write(GOLD_DIM_STORE, stores(["S1"], D2), PartitionRange.single(D2))
    assert engine.read_arrow(GOLD_DIM_STORE)["store_id"].to_pylist() == ["S1"]


def test_merge_upserts_and_deletes_by_primary_key_in_one_commit(engine, spark):
    engine.write(GOLD_DIM_STORE, stores(["S1", "S2", "S3"], D1), PartitionRange.single(D1))
    before = engine.version(GOLD_DIM_STORE)
    upserts = pa.concat_tables([stores(["S1"], D2, name="Renamed"), stores(["S4"], D2, first_sk=3)])
    # S1's key is also among the deletes: an upserted key is kept
    deletes = spark.createDataFrame([(1,), (0,)], "store_sk bigint")
    commit = engine.merge(GOLD_DIM_STORE, spark.createDataFrame(upserts), deletes)

    assert (commit.version, commit.operation, commit.rows_written, commit.rows_deleted) == (before + 1, "merge", 2, 1)
    assert engine.version(GOLD_DIM_STORE) == before + 1
    rows = {r["store_id"]: (r["name"], r["_arrival_date"]) for r in engine.read_arrow(GOLD_DIM_STORE).to_pylist()}
    # S2 deleted, S1 replaced (its partition moved), S3 untouched, S4 added
    assert rows == {"S1": ("Renamed", D2), "S3": (None, D1), "S4": (None, D2)}


def test_merge_into_a_missing_table_creates_it(engine, spark):
    commit = engine.merge(
        GOLD_DIM_STORE, spark.createDataFrame(stores(["S1"], D1)), spark.createDataFrame([], "store_sk bigint")
    )
    assert commit.rows_written == 1
    assert engine.read_arrow(GOLD_DIM_STORE)["store_id"].to_pylist() == ["S1"]


def test_append_records_an_idempotent_writer_version(engine):
    engine.append(GOLD_DIM_DATE, dates(D1), app_id="kafka-bronze", app_version=7)
    assert engine.app_transaction_version(GOLD_DIM_DATE, "kafka-bronze") == 7
    # Delta is Delta: the other engine's reader sees the writer's transaction.
    assert DeltaTable(engine.root / "gold" / "dim_date").transaction_version("kafka-bronze") == 7


def test_stored_schema_round_trips_registry_types(engine):
    engine.overwrite_partitions(GOLD_DIM_DATE, dates(D1), PartitionRange.single(D1))
    assert engine.stored_schema(GOLD_DIM_DATE) == [(c.name, c.type) for c in GOLD_DIM_DATE.columns]
