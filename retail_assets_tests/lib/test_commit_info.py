"""The delta-spark engine reports a write's own commit, never a later one.

Each write leaves a marker of its own in its commit (Delta's `userMetadata`) and its
`CommitInfo` is that commit's version and row count. Proven on real Delta tables through the
suite's Spark session: with auto-compaction made to fire (its `OPTIMIZE` commits right after the
write, in the write's own call) and with another writer committing between the write and the
engine's look-up.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from retail_assets.lib.engine import DeltaSparkEngine, PartitionRange, delta_sql
from retail_assets.lib.engine import delta_spark as ds
from retail_assets.lib.registry.tables import SILVER_STORES

DAY = dt.date(2026, 11, 2)


@pytest.fixture
def engine(spark, tmp_path):
    return DeltaSparkEngine.local(tmp_path / "lakehouse", "dev", spark=spark)


@pytest.fixture
def session_conf(spark):
    """Set Spark session confs for one test; the suite's session is shared, so they are restored."""
    before: dict[str, str | None] = {}

    def set_conf(key: str, value: str) -> None:
        before.setdefault(key, spark.conf.get(key, None))
        spark.conf.set(key, value)

    yield set_conf
    for key, value in before.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


def stores(n: int, tag: str, day: dt.date = DAY) -> pa.Table:
    """`n` Silver store rows of `day`, their ids tagged so a test can tell writes apart."""
    at = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)
    rows = [
        dict(
            store_id=f"{tag}-{i}",
            name=f"Store {i}",
            city="Lyon",
            region="FR",
            format="mall",
            opened_on=dt.date(2020, 1, 1),
            status="open",
            updated_at=at,
            quality_flags=[],
            extra_attributes=None,
            _source="test",
            _arrival_date=day,
            _batch_id=tag,
        )
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=SILVER_STORES.arrow_schema())


def history(spark, engine) -> dict[int, dict]:
    rows = spark.sql(delta_sql.history_sql(engine.location(SILVER_STORES), 50)).collect()
    return {r["version"]: r.asDict(recursive=True) for r in rows}


def test_auto_compaction_after_a_write_is_not_reported_as_the_write(spark, engine, session_conf):
    # Every table has `delta.autoOptimize.autoCompact`; compaction fires once a partition the
    # commit touched holds this many small files (50 by default).
    session_conf("spark.databricks.delta.autoCompact.minNumFiles", "2")
    day = PartitionRange.single(DAY)

    first = engine.overwrite_partitions(SILVER_STORES, stores(2, "a"), day)  # one file in the day
    assert (first.version, first.rows_written) == (1, 2)

    # An append of a Spark DataFrame: its row count can only come from the commit's metrics. The
    # day now holds two files, so auto-compaction commits right after it, within this call.
    appended = engine.append(SILVER_STORES, spark.createDataFrame(stores(3, "b")))
    seen = history(spark, engine)
    compaction = seen[max(seen)]
    assert compaction["operation"] == "OPTIMIZE" and compaction["operationParameters"]["auto"] == "true"
    assert compaction["userMetadata"] is None and "numOutputRows" not in compaction["operationMetrics"]
    write = seen[appended.version]
    assert appended.version == max(seen) - 1 == 2
    assert write["operation"] == "WRITE" and write["operationParameters"]["mode"] == "Append"
    assert write["userMetadata"].startswith(ds.COMMIT_MARKER_PREFIX)
    assert appended.rows_written == int(write["operationMetrics"]["numOutputRows"]) == 3
    assert engine.version(SILVER_STORES) == compaction["version"]  # the table's version is still the latest

    # A `replaceWhere` overwrite that leaves two files in the day (optimized writes off, two
    # Spark partitions): auto-compaction again commits right after it.
    session_conf("spark.databricks.delta.optimizeWrite.enabled", "false")
    frame = spark.createDataFrame(stores(4, "c")).repartition(2)
    replaced = engine.overwrite_partitions(SILVER_STORES, frame, day)
    seen = history(spark, engine)
    compaction = seen[max(seen)]
    assert compaction["operation"] == "OPTIMIZE" and compaction["operationParameters"]["auto"] == "true"
    assert compaction["operationMetrics"]["numRemovedFiles"] == "2"  # the overwrite's two files
    write = seen[replaced.version]
    assert replaced.version == max(seen) - 1 == compaction["version"] - 1
    assert write["operation"] == "WRITE" and write["operationParameters"]["mode"] == "Overwrite"
    assert DAY.isoformat() in write["operationParameters"]["predicate"]
    assert replaced.rows_written == int(write["operationMetrics"]["numOutputRows"]) == 4
    assert replaced.preview.num_rows == 4 and set(replaced.preview.column("_batch_id").to_pylist()) == {"c"}
    # Every write carries a marker of its own.
    markers = [seen[v]["userMetadata"] for v in (first.version, appended.version, replaced.version)]
    assert len(set(markers)) == 3


def test_another_writers_later_commits_are_not_reported_as_the_write(spark, engine, monkeypatch):
    """Between the write and the engine's look-up another writer appends, then commits more
    than the look-up's first window of history (property changes): the commit reported is
    still the write's, found again by its marker."""
    name = delta_sql.quote_name(engine.location(SILVER_STORES))
    day = PartitionRange.single(DAY + dt.timedelta(days=1))
    engine.overwrite_partitions(SILVER_STORES, stores(1, "a"), PartitionRange.single(DAY))

    def save_then_others_commit(spec, frame, *args, **kw):
        ds.DeltaSparkEngine._save(engine, spec, frame, *args, **kw)
        # Into the same day, so a read of the table's latest version would show them.
        spark.createDataFrame(stores(7, "other", day.start)).writeTo(engine.location(SILVER_STORES)).append()
        for i in range(ds.HISTORY_WINDOW):
            spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ('test.other_writer' = '{i}')")

    monkeypatch.setattr(engine, "_save", save_then_others_commit)
    commit = engine.overwrite_partitions(SILVER_STORES, spark.createDataFrame(stores(2, "mine", day.start)), day)

    seen = history(spark, engine)
    assert commit.version == 2 and max(seen) == commit.version + 1 + ds.HISTORY_WINDOW
    assert seen[commit.version + 1]["operationParameters"]["mode"] == "Append"  # the other writer's rows
    assert commit.rows_written == int(seen[commit.version]["operationMetrics"]["numOutputRows"]) == 2
    # The preview is of the write's own version: the other writer's rows are not in it.
    assert set(commit.preview.column("_batch_id").to_pylist()) == {"mine"}


def test_a_write_whose_commit_is_missing_fails_loudly(engine, monkeypatch):
    engine.overwrite_partitions(SILVER_STORES, stores(1, "a"), PartitionRange.single(DAY))
    monkeypatch.setattr(engine, "_save", lambda *args, **kw: None)  # a "write" that committed nothing
    with pytest.raises(RuntimeError, match="no commit of this write"):
        engine.overwrite_partitions(SILVER_STORES, stores(1, "lost"), PartitionRange.single(DAY))
    with pytest.raises(RuntimeError, match="no commit of this write"):
        engine.overwrite_table(SILVER_STORES, stores(1, "lost"))
    with pytest.raises(RuntimeError, match="no commit of this write"):
        engine.append(SILVER_STORES, stores(1, "lost"))  # rows went in, so there must be a commit


def test_an_empty_append_that_delta_does_not_record_reports_no_rows(spark, engine):
    """Delta skips the commit of an append that adds no file; one with an idempotent-writer id
    commits (its `txn`) and is reported as its own commit."""
    engine.overwrite_partitions(SILVER_STORES, stores(1, "a"), PartitionRange.single(DAY))
    for empty in (stores(0, "none"), spark.createDataFrame(stores(1, "x")).limit(0)):
        commit = engine.append(SILVER_STORES, empty)
        assert (commit.version, commit.rows_written, commit.preview.num_rows) == (1, 0, 0)
    assert max(history(spark, engine)) == 1  # nothing was committed
    commit = engine.append(SILVER_STORES, stores(0, "none"), app_id="probe", app_version=1)
    seen = history(spark, engine)
    assert (commit.version, commit.rows_written) == (2, 0) and seen[2]["userMetadata"].startswith(
        ds.COMMIT_MARKER_PREFIX
    )
    assert engine.app_transaction_version(SILVER_STORES, "probe") == 1
