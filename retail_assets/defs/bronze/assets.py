"""Bronze: source records exactly as they arrived, one partition per arrival date."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Iterator

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from retail_assets.defs.sources.assets import LANDING_ZONE, POS_TOPIC
from retail_assets.lib.engine import RowStream
from retail_assets.lib.orchestration.factories import (
    RangeMode,
    TableOutput,
    TableRun,
    build_table_asset,
    observed_by_day,
)
from retail_assets.lib.orchestration.resources import KafkaResource
from retail_assets.lib.registry.tables import BRONZE_POS_TRANSACTIONS, LANDING_SOURCES, TableSpec
from retail_assets.lib.sources import kafka as kafka_lib
from retail_assets.lib.sources.landing import scan_landing
from retail_assets.lib.transforms.ingest import compare_with_held, parse_landing_file, pos_event_batches


def files_held_elsewhere(run: TableRun, spec: TableSpec) -> set[str]:
    """Landing files Bronze already holds in another arrival partition.

    A file's arrival date is fixed by its folder, but a loose file's comes from its mtime and a
    touched file would otherwise be ingested a second time under a new date.
    """
    held = run.engine.read_arrow(spec, columns=["_source_file", "_arrival_date"])
    if held.num_rows == 0:
        return set()
    elsewhere = held.filter(pc.not_equal(held["_arrival_date"], pa.scalar(run.day, pa.date32())))
    return set(pc.unique(elsewhere["_source_file"]).to_pylist())


def landing_compute(source: str, spec: TableSpec):
    def compute(run: TableRun) -> TableOutput:
        files = scan_landing(
            run.lakehouse.landing_path,
            source,
            partitions=run.partition,
            stable_seconds=run.lakehouse.landing_stable_seconds,
        )
        held = files_held_elsewhere(run, spec)
        fresh = [f for f in files if f.relative not in held]
        for f in files:
            if f.relative in held:
                run.context.log.warning(
                    f"{f.relative} is already in {spec.key} under another arrival date; not ingested again"
                )
        ingested_at = dt.datetime.now(dt.UTC)
        parsed = [parse_landing_file(f, spec, batch_id=run.run_id, ingested_at=ingested_at) for f in fresh]
        data = pa.concat_tables(parsed) if parsed else spec.arrow_schema().empty_table()
        carried, changed = compare_with_held(run.engine.read_arrow(spec, run.partition), data)
        if changed:
            listed = "; ".join(f"{name}: {what}" for name, what in sorted(changed.items()))
            # Not retried: the landing zone needs a person, and the partition stays as it was.
            raise dg.Failure(
                description=(
                    f"{len(changed)} landing file(s) of {run.day} no longer hold what {spec.key} ingested from them ({listed}). "
                    "Bronze keeps the records it ingested first; restore the original file, or give the new export a new "
                    "file name, then re-run this partition."
                ),
                allow_retries=False,
            )
        gone = sorted(set(carried["_source_file"].to_pylist()))
        if gone:
            run.context.log.warning(
                f"{len(gone)} file(s) ingested into {run.day} are no longer in the landing zone; keeping their records"
            )
            data = pa.concat_tables([data, carried.cast(data.schema)])
        parse_errors = data.num_rows - data["_parse_error"].null_count
        return TableOutput(
            data,
            {
                "files": len(fresh),
                "files_already_ingested": len(files) - len(fresh),
                "files_kept_from_earlier_runs": len(gone),
                "records": data.num_rows,
                "unparseable_records": parse_errors,
                "bytes": sum(f.size for f in fresh),
            },
        )

    return compute


landing_assets = [
    build_table_asset(spec=spec, upstream=[], sources=[LANDING_ZONE[source]], compute=landing_compute(source, spec))
    for source, spec in LANDING_SOURCES.items()
]


def pos_transactions_compute(run: TableRun) -> TableOutput:
    kafka: KafkaResource = run.resource("kafka")
    with kafka_failures(run, kafka):
        return read_pos_transactions(run, kafka)


@contextlib.contextmanager
def kafka_failures(run: TableRun, kafka: KafkaResource) -> Iterator[None]:
    """Kafka's failures as the run should report them, whether the ranges are read while the
    asset computes or while its rows are written."""
    try:
        yield
    except (kafka_lib.OffsetsNotRetained, kafka_lib.LogBehindBronze) as exc:
        # Retrying cannot bring back offsets the broker has dropped.
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except kafka_lib.KafkaUnavailable as exc:
        # Transient (lib/orchestration/retries.py): a broker outage is usually short, and nothing
        # is committed before every message of the ranges has been read, so a retry starts clean.
        raise kafka_lib.KafkaUnavailable(
            f"Kafka at {kafka.bootstrap_servers} is unavailable ({exc}); nothing was written to "
            f"{BRONZE_POS_TRANSACTIONS.key} for {run.day}. The step is retried with backoff; if it keeps failing, "
            "check that the broker is up and reachable, then re-run the partition."
        ) from exc


def read_pos_transactions(run: TableRun, kafka: KafkaResource) -> TableOutput:
    """Re-read the ranges this partition already holds; the newest partition also takes
    everything after the highest committed offset up to the watermark at run start."""
    spec = BRONZE_POS_TRANSACTIONS
    held = run.engine.read_arrow(spec, columns=["_partition", "_offset", "_arrival_date"])
    day = pa.scalar(run.day, pa.date32())
    mine = held.filter(pc.equal(held["_arrival_date"], day))
    later = held.filter(pc.greater(held["_arrival_date"], day)).num_rows
    ranges = recorded_ranges(mine)
    marks = None
    if later:
        run.context.log.info(
            f"later arrival partitions hold newer offsets; re-reading only the {len(ranges)} ranges recorded for {run.day}"
        )
    else:
        marks = kafka_lib.watermarks(kafka.client_config(), kafka.topic, timeout=kafka.request_timeout_s)
        high = {p: hw for p, (_, hw) in marks.items()}
        committed = committed_max(held)
        if not ranges:
            # Nothing recorded here to re-read (that would fail as not retained): a log ending
            # before what Bronze holds would hand out offsets already ingested.
            kafka_lib.check_log_not_behind(kafka.topic, high, committed)
        ranges += kafka_lib.pending_ranges(high, committed)
    ranges = kafka_lib.merge_ranges(ranges)
    ingested_at, arrival = dt.datetime.now(dt.UTC), run.day
    listed = {"offset_ranges": ", ".join(str(r) for r in ranges) or "none"}
    parse = functools.partial(pos_event_batches, batch_id=run.run_id, ingested_at=ingested_at, arrival_date=arrival)
    if kafka.reader == "spark":
        if not ranges:
            return TableOutput(run.engine.empty_frame(spec), {**listed, "messages": 0, "unparseable_messages": 0})
        # The messages stay on Spark's executors, parsed there and written from there.
        frame = kafka.parse_on_spark(run.engine.spark, ranges, parse, spec.spark_ddl(), known_watermarks=marks)
        observed, figures = observed_by_day(
            frame,
            spec.partition_column,
            [run.day],
            messages=F.lit(1),
            unparseable_messages=F.col("_parse_error").isNotNull().cast("int"),
        )
        return TableOutput(
            observed, listed, by_partition=lambda: {d: {k: int(v) for k, v in f.items()} for d, f in figures().items()}
        )

    # Parsed batches go to the Delta writer as they come, so writing overlaps reading and parsing.
    counted = {"messages": 0, "unparseable_messages": 0}

    def batches() -> Iterator[pa.RecordBatch]:
        with kafka_failures(run, kafka):
            for batch in parse(kafka.read_ranges(ranges, known_watermarks=marks)):
                counted["messages"] += batch.num_rows
                counted["unparseable_messages"] += batch.num_rows - batch.column("_parse_error").null_count
                yield batch

    return TableOutput(RowStream(spec.arrow_schema(), batches()), listed, by_partition=lambda: {run.day: dict(counted)})


def recorded_ranges(held: pa.Table) -> list[kafka_lib.OffsetRange]:
    """Per Kafka partition, the contiguous offset range a Bronze partition holds."""
    if held.num_rows == 0:
        return []
    grouped = held.group_by("_partition").aggregate([("_offset", "min"), ("_offset", "max")])
    return sorted(
        kafka_lib.OffsetRange(p, lo, hi + 1)
        for p, lo, hi in zip(
            grouped["_partition"].to_pylist(), grouped["_offset_min"].to_pylist(), grouped["_offset_max"].to_pylist()
        )
    )


def committed_max(held: pa.Table) -> dict[int, int]:
    if held.num_rows == 0:
        return {}
    grouped = held.group_by("_partition").aggregate([("_offset", "max")])
    return dict(zip(grouped["_partition"].to_pylist(), grouped["_offset_max"].to_pylist()))


pos_transactions = build_table_asset(
    spec=BRONZE_POS_TRANSACTIONS,
    upstream=[],
    sources=[POS_TOPIC],
    compute=pos_transactions_compute,
    # the newest day takes what is on the topic beyond every day before it
    ranges=RangeMode.ONE_DAY_PER_RUN,
    kinds={"kafka", "spark", "delta"},
    resources=frozenset({"kafka"}),
    # One Kafka ingestion at a time: two runs reading the same pending offsets into different
    # arrival days would hold them twice.
    pool="bronze_kafka",
)
