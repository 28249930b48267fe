"""The Bronze exactly-once check proven incrementally: the checked partitions against the files
of other partitions whose range of `_source` (the Delta log's statistics) meets theirs, on both
engines, with the power to fail of the check over the whole table."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from retail_assets.defs.bronze.checks import EXACTLY_ONCE_CHECK
from retail_assets.lib.engine import DeltaRsEngine, DeltaSparkEngine, PartitionRange
from retail_assets.lib.engine.base import FILE_RANGES, string_upper_bound
from retail_assets.lib.orchestration.factories import CheckRun
from retail_assets.lib.registry.tables import BRONZE_SALES_FILES
from retail_assets.lib.transforms import quality

DAYS = [dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(5)]
D1, D2, D3, D4, D5 = DAYS


@pytest.fixture(params=["delta_rs", "delta_spark"])
def engine(request, spark, tmp_path):
    if request.param == "delta_rs":
        return DeltaRsEngine(tmp_path / "lakehouse", spark=spark)
    return DeltaSparkEngine.local(tmp_path / "lakehouse", "dev", spark=spark)


def source(day: dt.date, line: int) -> str:
    """A landing `path:line`, longer than either writer keeps of a string statistic."""
    return f"sales/{day}/pos_store_0001_register_01_{day:%Y%m%d}_export.csv:{line}"


def bronze(rows: list[tuple[dt.date, str]]) -> pa.Table:
    """Bronze sales rows: (arrival day, `_source`)."""
    spec = BRONZE_SALES_FILES
    blank = dict.fromkeys(spec.column_names)
    records = [
        {
            **blank,
            "_source_file": src.rpartition(":")[0],
            "_source_line": line,
            "_source": src,
            "_raw_record": "T1,1",
            "_ingested_at": dt.datetime(2026, 11, 6, tzinfo=dt.UTC),
            "_batch_id": "run",
            "_arrival_date": day,
        }
        for line, (day, src) in enumerate(rows, 1)
    ]
    return pa.Table.from_pylist(records, schema=spec.arrow_schema())


def day_rows(day: dt.date, lines: int = 12) -> list[tuple[dt.date, str]]:
    return [(day, source(day, n)) for n in range(1, lines + 1)]


@pytest.fixture
def table(engine):
    """Five arrival days of Bronze, one file each, every record held once."""
    engine.overwrite_partitions(
        BRONZE_SALES_FILES, bronze([r for d in DAYS for r in day_rows(d)]), PartitionRange(D1, D5)
    )
    return engine


def check(engine, start: dt.date, end: dt.date | None = None, *, read: list | None = None) -> quality.CheckOutcome:
    """The Bronze check as Dagster evaluates it, over `start`…`end`; `read` collects the files it reads."""
    run = CheckRun(
        context=None,
        lakehouse=SimpleNamespace(engine=engine),
        spec=BRONZE_SALES_FILES,
        partition=PartitionRange(start, end or start),
    )
    if read is None:
        return EXACTLY_ONCE_CHECK.evaluate(run)
    read_files = engine.read_files

    def spy(spec, files, **kwargs):
        read.append(list(files))
        return read_files(spec, files, **kwargs)

    engine.read_files = spy
    try:
        return EXACTLY_ONCE_CHECK.evaluate(run)
    finally:
        del engine.read_files


def whole_table(engine) -> quality.CheckOutcome:
    """The check as it was: every partition's `_source`, whichever day is checked."""
    return quality.exactly_once(engine.read(BRONZE_SALES_FILES, columns=["_source", "_arrival_date"]), "_arrival_date")


def current_files(engine) -> set[str]:
    """The names of the table's data files in its current version, as the engine reads them."""
    if isinstance(engine, DeltaRsEngine):
        uris = DeltaTable(engine.location(BRONZE_SALES_FILES)).file_uris()
    else:
        uris = engine.read(BRONZE_SALES_FILES).inputFiles()
    return {u.rsplit("/", 1)[-1] for u in uris}


def test_file_ranges_bound_every_file_of_the_current_version(table):
    before = current_files(table)
    # the day rewritten: its old file leaves the current version
    table.overwrite_partitions(BRONZE_SALES_FILES, bronze(day_rows(D3, 20)), PartitionRange.single(D3))
    ranges = table.file_ranges(BRONZE_SALES_FILES, "_source")
    assert ranges.schema == FILE_RANGES
    assert {f.rsplit("/", 1)[-1] for f in ranges["file"].to_pylist()} == current_files(table) != before
    assert sorted(ranges["partition"].to_pylist()) == DAYS
    for f in ranges.to_pylist():
        held = table.read_files(BRONZE_SALES_FILES, [f["file"]], columns=["_source", "_arrival_date"]).collect()
        assert {r["_arrival_date"] for r in held} == {f["partition"]}
        assert len(held) == (20 if f["partition"] == D3 else 12)
        # every `_source` (45 characters and more: the writers log a prefix) within the bounds
        assert all(f["min"] <= r["_source"] <= f["max"] for r in held)


def test_file_ranges_follow_the_log_past_a_checkpoint(table, tmp_path):
    log = tmp_path / "lakehouse" / "bronze" / "sales_files" / "_delta_log"
    if isinstance(table, DeltaSparkEngine):
        table.spark.sql(
            f"ALTER TABLE {table.location(BRONZE_SALES_FILES)} SET TBLPROPERTIES ('delta.checkpointInterval' = '2')"
        )
    for lines in (13, 14, 15):  # files added and removed before the checkpoint
        table.overwrite_partitions(BRONZE_SALES_FILES, bronze(day_rows(D3, lines)), PartitionRange.single(D3))
    if isinstance(table, DeltaRsEngine):
        DeltaTable(table.location(BRONZE_SALES_FILES)).create_checkpoint()
    (checkpoint,) = sorted(log.glob("*.checkpoint.parquet"))[-1:]
    table.overwrite_partitions(BRONZE_SALES_FILES, bronze(day_rows(D4, 16)), PartitionRange.single(D4))
    # as the log's clean-up leaves it: no commit before the newest checkpoint
    for commit in log.glob("*.json"):
        if commit.name < checkpoint.name[:20]:
            commit.unlink()
    ranges = table.file_ranges(BRONZE_SALES_FILES, "_source")
    assert {f.rsplit("/", 1)[-1] for f in ranges["file"].to_pylist()} == current_files(table)
    assert sorted(ranges["partition"].to_pylist()) == DAYS
    table.overwrite_partitions(
        BRONZE_SALES_FILES, bronze([*day_rows(D5), (D5, source(D4, 15))]), PartitionRange.single(D5)
    )
    assert check(table, D3).passed and not check(table, D4).passed


def test_a_clean_table_passes_reading_only_the_checked_day(table):
    read: list = []
    outcome = check(table, D3, read=read)
    assert outcome.passed, outcome.description
    assert outcome.metadata == {
        "source_records": 12,
        "repeated_sources": 0,
        "split_across_partitions": 0,
        "other_partition_files_read": 0,
        "other_partition_files_skipped": 4,
    }
    # one file of the five: the other days' ranges of `_source` cannot meet this day's
    assert len(read) == 1 and len(read[0]) == 1 and f"_arrival_date={D3}" in read[0][0]
    assert whole_table(table).passed


def test_a_record_held_by_another_partition_fails_the_check_of_either(table):
    # day 4 holds, besides its own lines, a line day 2 holds already
    copied = (D4, source(D2, 7))
    table.overwrite_partitions(BRONZE_SALES_FILES, bronze([*day_rows(D4), copied]), PartitionRange.single(D4))
    assert not whole_table(table).passed
    # day 4's range of `_source` now reaches back into day 2's (over day 3's): the files read
    for day, records, days_read in ((D2, 12, {D2, D4}), (D4, 13, {D2, D3, D4})):
        read: list = []
        outcome = check(table, day, read=read)
        assert not outcome.passed, day
        assert outcome.metadata["source_records"] == records
        assert (outcome.metadata["repeated_sources"], outcome.metadata["split_across_partitions"]) == (1, 1)
        assert outcome.metadata["other_partition_files_read"] == len(days_read) - 1
        assert outcome.metadata["other_partition_files_skipped"] == 5 - len(days_read)
        assert {dt.date.fromisoformat(f.split("_arrival_date=")[1][:10]) for f in read[0]} == days_read
    # a day holding neither copy passes; a range with a day holding one fails
    assert check(table, D1).passed and check(table, D5).passed and not check(table, D1, D2).passed


def test_a_record_held_twice_within_the_checked_partition_fails(table):
    rows = day_rows(D3)
    table.overwrite_partitions(BRONZE_SALES_FILES, bronze([*rows, rows[4]]), PartitionRange.single(D3))
    outcome = check(table, D3)
    assert not outcome.passed
    assert (outcome.metadata["repeated_sources"], outcome.metadata["split_across_partitions"]) == (1, 0)
    assert outcome.metadata["other_partition_files_skipped"] == 4
    assert check(table, D2).passed and not check(table, D2, D4).passed


def test_records_longer_than_the_logged_statistics_are_compared(table):
    # day 2's greatest `_source`, far longer than its file's logged max, held by day 5 too
    longest = (D2, source(D2, 9) + "x" * 60)
    table.overwrite_partitions(BRONZE_SALES_FILES, bronze([*day_rows(D2), longest]), PartitionRange.single(D2))
    table.overwrite_partitions(BRONZE_SALES_FILES, bronze([*day_rows(D5), (D5, longest[1])]), PartitionRange.single(D5))
    for day in (D2, D5):
        outcome = check(table, day)
        assert not outcome.passed and outcome.metadata["split_across_partitions"] == 1, day


def test_without_ranges_the_whole_table_is_read(table, monkeypatch):
    table.overwrite_partitions(
        BRONZE_SALES_FILES, bronze([*day_rows(D4), (D4, source(D2, 7))]), PartitionRange.single(D4)
    )
    monkeypatch.setattr(table, "file_ranges", lambda spec, column: None)
    outcome = check(table, D1)  # as before: a record held twice anywhere fails every day's check
    assert not outcome.passed and "other_partition_files_read" not in outcome.metadata


def ranges(*files: tuple[dt.date, str | None, str | None]) -> pa.Table:
    rows = [{"partition": d, "file": f"f{i}", "min": lo, "max": hi} for i, (d, lo, hi) in enumerate(files)]
    return pa.Table.from_pylist(rows, schema=FILE_RANGES)


def test_files_to_compare_keeps_every_file_whose_range_meets_a_checked_one():
    files = ranges(
        (D2, "k", "m"),  # f0 checked
        (D2, "p", "q"),  # f1 checked
        (D1, "a", "j"),  # f2 below both
        (D1, "j", "k"),  # f3 touches f0's start
        (D3, "m0", "o"),  # f4 between the two checked ranges
        (D3, "n", "p"),  # f5 reaches f1's start
        (D4, "q", None),  # f6 unbounded above
        (D4, None, "b"),  # f7 unbounded below, below both
        (D5, None, None),  # f8 no statistics
        (D5, "r", "z"),  # f9 above both
    )
    chosen = quality.files_to_compare(files, [D2])
    assert chosen.checked == ("f0", "f1")
    assert chosen.compared == ("f3", "f5", "f6", "f8") and chosen.skipped == 4
    # a checked file without statistics may hold anything: every other file is compared
    unbounded = quality.files_to_compare(ranges((D1, "a", "b"), (D2, None, None), (D3, "x", "y")), [D2])
    assert unbounded.compared == ("f0", "f2") and unbounded.skipped == 0
    below = quality.files_to_compare(ranges((D1, "a", "b"), (D2, None, "c"), (D3, "x", "y")), [D2])
    assert below.compared == ("f0",) and below.skipped == 1
    # Kafka offsets as text: days whose offsets differ in length have ranges that interleave
    kafka = ranges((D1, "t/0/0", "t/0/99"), (D2, "t/0/100", "t/0/199"), (D3, "t/0/1000", "t/0/1099"))
    assert quality.files_to_compare(kafka, [D2]).compared == ("f0", "f2")
    assert quality.files_to_compare(ranges((D1, "a", "b")), [D3]) == quality.SourceFiles((D3,), (), (), 1)


@pytest.mark.parametrize(
    "true_max",
    ["sales/2026-11-01/pos_0001_20261101.csv:999", "a" * 32 + "\U0001f600z", "é" * 40, "ab\U0010ffff\U0010ffffc"],
)
def test_a_logged_max_widened_stays_above_the_true_one(true_max):
    """However a writer truncated it: bare, delta-rs's raised last character (here of a 32
    character prefix), delta-spark's tie-breakers, or older Delta's U+FFFD sorting below the
    character it replaced."""
    for length in (4, 16, 32):
        prefix = true_max[:length]
        logged = [prefix, prefix + "\x7f", prefix + "\U0010ffff", prefix + "\ufffd", true_max]
        if prefix[-1] != "\U0010ffff":
            logged.append(prefix[:-1] + chr(ord(prefix[-1]) + 1))
        for value in logged:
            bound = string_upper_bound(value)
            assert bound is None or bound > true_max, (value, bound)
    assert string_upper_bound("b") is None and string_upper_bound(None) is None
    assert string_upper_bound("sales/x.csv:99") == "sales/x.csv::"
