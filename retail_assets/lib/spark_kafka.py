"""Kafka through Spark's batch source, under the same offset contract as `lib/kafka.py`.

On Databricks the cluster ships the Spark Kafka connector, so the Bronze asset reads its offset
ranges with `spark.read.format("kafka")` and explicit `startingOffsets`/`endingOffsets` instead
of a confluent-kafka consumer. The ranges themselves still come from `kafka.pending_ranges` and
`kafka.merge_ranges` (the resume point lives in Bronze), and the read is checked to have returned
each offset at most once and nothing outside its range. `failOnDataLoss` makes a range the broker
no longer retains fail the run instead of silently skipping offsets (SPEC §5).

Building the options is a pure function; only `read_ranges` needs the connector jar, i.e. a
Databricks cluster (it is not on the local classpath, SPEC §9).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retail_assets.lib.kafka import OffsetRange, OffsetsNotRetained, merge_ranges

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

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
        options["kafka.sasl.jaas.config"] = jaas_config(str(mechanism), str(username), str(password), shaded_prefix=shaded_prefix)
    if client_config.get("ssl.ca.location"):
        # The JVM client takes a truststore, not a PEM path; Databricks clusters trust public CAs.
        options["kafka.ssl.truststore.type"] = "PEM"
        options["kafka.ssl.truststore.location"] = str(client_config["ssl.ca.location"])
    return options


@dataclass(frozen=True)
class SparkKafkaMessage:
    """A Spark Kafka row with the accessors of a confluent-kafka `Message` the Bronze parser uses."""

    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None
    _timestamp: dt.datetime | None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        if self._timestamp is None:
            return (0, -1)
        ts = self._timestamp if self._timestamp.tzinfo else self._timestamp.replace(tzinfo=dt.UTC)
        return (1, int(ts.timestamp() * 1000))  # 1 = TIMESTAMP_CREATE_TIME


def check_offsets(ranges: Sequence[OffsetRange], seen: Sequence[tuple[int, int]]) -> None:
    """Every (partition, offset) read lies in its range and appears once; gaps are allowed
    (transaction markers and compaction leave them, as in the confluent reader)."""
    bounds = {r.partition: r for r in merge_ranges(list(ranges))}
    once: set[tuple[int, int]] = set()
    for p, off in seen:
        r = bounds.get(p)
        if r is None or not (r.start <= off < r.end):
            raise OffsetsNotRetained(f"Kafka source returned offset {off} of partition {p}, outside the requested ranges {list(bounds.values())}")
        if (p, off) in once:
            raise ValueError(f"Kafka source returned offset {off} of partition {p} twice")
        once.add((p, off))


def read_ranges(
    spark: SparkSession,
    client_config: Mapping[str, Any],
    topic: str,
    ranges: Sequence[OffsetRange],
    *,
    shaded_prefix: str = DATABRICKS_SHADED_PREFIX,
) -> Iterator[SparkKafkaMessage]:
    """Every message of the ranges, in partition/offset order, read by one bounded batch query."""
    if not merge_ranges(list(ranges)):
        return
    reader = spark.read.format("kafka")
    for key, value in source_options(client_config, topic, ranges, shaded_prefix=shaded_prefix).items():
        reader = reader.option(key, value)
    rows = reader.load().select("topic", "partition", "offset", "value", "timestamp").orderBy("partition", "offset").collect()
    check_offsets(ranges, [(r["partition"], r["offset"]) for r in rows])
    for r in rows:
        yield SparkKafkaMessage(r["topic"], r["partition"], r["offset"], None if r["value"] is None else bytes(r["value"]), r["timestamp"])
