"""Kafka through Spark's batch source, under the same offset contract as `lib/sources/kafka.py`.

The Bronze asset can read its offset ranges with `spark.read.format("kafka")` and explicit
`startingOffsets`/`endingOffsets` instead of a confluent-kafka consumer (`reader="spark"`: the
default on Databricks, whose runtime ships the connector; locally the connector comes from
`lib/engine/jvm.py`). The ranges themselves still come from `kafka.pending_ranges` and
`kafka.merge_ranges` (the resume point lives in Bronze). The messages stay on the executors:
`parse_ranges` hands each task's Arrow batches to a parser there, checking as it goes that every
offset lies in its range and comes once, and the rows go to Bronze without passing the driver.
`failOnDataLoss` makes a range the broker no longer retains fail the run instead of silently
skipping offsets (SPEC §5).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from retail_assets.lib.sources.kafka import MessageColumns, OffsetRange, OffsetsNotRetained, merge_ranges

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Databricks shades the Kafka client inside its runtime; JAAS modules carry this prefix there.
DATABRICKS_SHADED_PREFIX = "kafkashaded."
LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def offsets_json(topic: str, ranges: Sequence[OffsetRange], *, ending: bool) -> str:
    """`startingOffsets` / `endingOffsets` JSON: `{"topic": {"partition": offset}}` (end exclusive)."""
    return json.dumps({topic: {str(r.partition): (r.end if ending else r.start) for r in ranges}}, sort_keys=True)


def jaas_config(mechanism: str, username: str, password: str, *, shaded_prefix: str = DATABRICKS_SHADED_PREFIX) -> str:
    module = LOGIN_MODULES.get(mechanism.upper())
    if module is None:
        raise ValueError(f"unsupported SASL mechanism {mechanism!r}; use one of {sorted(LOGIN_MODULES)}")
    escape = lambda v: v.replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731
    return f'{shaded_prefix}{module} required username="{escape(username)}" password="{escape(password)}";'


def source_options(
    client_config: Mapping[str, Any],
    topic: str,
    ranges: Sequence[OffsetRange],
    *,
    shaded_prefix: str = DATABRICKS_SHADED_PREFIX,
) -> dict[str, str]:
    """Options of one bounded Kafka batch read of exactly `ranges`.

    `assign` (not `subscribe`) names only the partitions being read, so starting and ending
    offsets cover every assigned partition as Spark requires.
    """
    todo = merge_ranges(list(ranges))
    if not todo:
        raise ValueError("no offset range to read")
    options = {
        "kafka.bootstrap.servers": str(client_config["bootstrap.servers"]),
        "kafka.security.protocol": str(client_config.get("security.protocol", "PLAINTEXT")),
        "assign": json.dumps({topic: [r.partition for r in todo]}),
        "startingOffsets": offsets_json(topic, todo, ending=False),
        "endingOffsets": offsets_json(topic, todo, ending=True),
        "failOnDataLoss": "true",
        "includeHeaders": "false",
    }
    mechanism = client_config.get("sasl.mechanism")
    if mechanism:
        options["kafka.sasl.mechanism"] = str(mechanism)
        username, password = client_config.get("sasl.username"), client_config.get("sasl.password")
        if username is None or password is None:
            raise ValueError(f"SASL mechanism {mechanism} needs a username and a password")
        options["kafka.sasl.jaas.config"] = jaas_config(
            str(mechanism), str(username), str(password), shaded_prefix=shaded_prefix
        )
    if client_config.get("ssl.ca.location"):
        # The JVM client takes a truststore, not a PEM path; Databricks clusters trust public CAs.
        options["kafka.ssl.truststore.type"] = "PEM"
        options["kafka.ssl.truststore.location"] = str(client_config["ssl.ca.location"])
    return options


class OffsetGuard:
    """Every (partition, offset) seen lies in its requested range and comes once; gaps are
    allowed (transaction markers and compaction leave them, as in the confluent reader)."""

    def __init__(self, ranges: Sequence[OffsetRange]) -> None:
        self._bounds = {r.partition: r for r in merge_ranges(list(ranges))}
        self._seen: set[tuple[int, int]] = set()

    def see(self, partition: int, offset: int) -> None:
        r = self._bounds.get(partition)
        if r is None or not (r.start <= offset < r.end):
            raise OffsetsNotRetained(
                f"Kafka source returned offset {offset} of partition {partition}, outside the requested ranges {list(self._bounds.values())}"
            )
        if (partition, offset) in self._seen:
            raise ValueError(f"Kafka source returned offset {offset} of partition {partition} twice")
        self._seen.add((partition, offset))


def check_offsets(ranges: Sequence[OffsetRange], seen: Sequence[tuple[int, int]]) -> None:
    guard = OffsetGuard(ranges)
    for p, off in seen:
        guard.see(p, off)


def load_ranges(
    spark: SparkSession,
    client_config: Mapping[str, Any],
    topic: str,
    ranges: Sequence[OffsetRange],
    *,
    shaded_prefix: str = DATABRICKS_SHADED_PREFIX,
) -> DataFrame:
    """The messages of the ranges as one bounded batch query, lazily: `topic, partition, offset,
    value, timestamp`, one Spark partition per Kafka partition."""
    reader = spark.read.format("kafka")
    for key, value in source_options(client_config, topic, ranges, shaded_prefix=shaded_prefix).items():
        reader = reader.option(key, value)
    return reader.load().select("topic", "partition", "offset", "value", "timestamp")


def message_columns(batches: Iterator[pa.RecordBatch], guard: OffsetGuard) -> Iterator[MessageColumns]:
    """A task's Arrow batches of Kafka rows as message columns, each offset checked by `guard`."""
    for batch in batches:
        partitions, offsets = batch.column("partition").to_pylist(), batch.column("offset").to_pylist()
        for partition, offset in zip(partitions, offsets):
            guard.see(partition, offset)
        timestamps = batch.column("timestamp")
        if pa.types.is_timestamp(timestamps.type):
            # Kafka timestamps are milliseconds; a missing one is the negative "none" of a consumer's
            timestamps = pc.fill_null(pc.divide(timestamps.cast(pa.timestamp("us")).cast(pa.int64()), 1000), -1)
        yield MessageColumns(
            batch.column("topic").to_pylist(),
            partitions,
            offsets,
            batch.column("value").to_pylist(),
            timestamps.to_pylist(),
        )


def parse_ranges(
    spark: SparkSession,
    client_config: Mapping[str, Any],
    topic: str,
    ranges: Sequence[OffsetRange],
    parse: Callable[[Iterator[MessageColumns]], Iterator[pa.RecordBatch]],
    schema: str,
    *,
    shaded_prefix: str = DATABRICKS_SHADED_PREFIX,
) -> DataFrame:
    """`parse(messages)` over every message of the ranges exactly once, on the executors: a lazy
    DataFrame of `schema` (DDL) rows that a write computes once, never collected by the driver."""
    if not merge_ranges(list(ranges)):
        raise ValueError("no offset range to read")
    checked = list(ranges)

    def each_task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from parse(message_columns(batches, OffsetGuard(checked)))

    return load_ranges(spark, client_config, topic, ranges, shaded_prefix=shaded_prefix).mapInArrow(each_task, schema)
