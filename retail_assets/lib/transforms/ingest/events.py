"""Kafka point-of-sale messages into Bronze rows, in Arrow batches, one per message."""

from __future__ import annotations

import array
import contextlib
import datetime as dt
import gc
import itertools
import json
import operator
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import (
    BRONZE_POS_TRANSACTIONS,
    POS_EVENT_FIELDS,
)
from retail_assets.lib.sources.kafka import MessageColumns
from retail_assets.lib.transforms.ingest.files import _json_object
from retail_assets.lib.transforms.ingest.rows import _encoding_problem, _extra_json, _text

_POS_SCALARS = tuple(f for f in POS_EVENT_FIELDS if f != "lines")


_POS_FIELD_SET = frozenset(POS_EVENT_FIELDS)


_NO_OBJECT: dict[str, Any] = dict.fromkeys(POS_EVENT_FIELDS)  # what an unreadable message holds; never mutated


_contract_fields = operator.itemgetter(*POS_EVENT_FIELDS)


def _contract_values(obj: dict[str, Any]) -> tuple[Any, ...]:
    """The event's value of each contract field (None when absent)."""
    try:
        return _contract_fields(obj)  # events name every field, null when it has no value
    except KeyError:
        return tuple(obj.get(f) for f in POS_EVENT_FIELDS)


def _text_column(values: Sequence[Any]) -> pa.Array:
    """`_text` of each value as a string array: strings as sent, other values as JSON, empty
    strings null. The values events carry are strings, so Arrow takes the list as it is."""
    try:
        column = pa.array(values, pa.string())
    except pa.ArrowTypeError:
        try:
            inferred = pa.array(values)  # a field sent as a JSON integer in every event
        except (pa.ArrowException, OverflowError):
            inferred = None
        if inferred is None or not pa.types.is_integer(inferred.type):
            return pa.array([_scalar_text(v) for v in values], pa.string())
        return inferred.cast(pa.string())  # the JSON text of an integer
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)


def _scalar_text(value: Any) -> str | None:
    # `_text`, with the integers events carry spared a trip through `json.dumps`
    return str(value) if type(value) is int else _text(value)


_collector_lock = threading.Lock()


_collector_pauses = 0


_collector_was_enabled = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a batch of messages is parsed (in any thread).

    Parsed JSON holds no reference cycles, so the collector has nothing to find in it, yet every
    few hundred new dicts and lists it runs, and each full pass walks every object the process
    holds (a Dagster run holds millions): with it on, parsing costs about three times as much.
    """
    global _collector_pauses, _collector_was_enabled
    with _collector_lock:
        if _collector_pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_pauses += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_pauses -= 1
            if _collector_pauses == 0 and _collector_was_enabled:
                gc.enable()


def _utf8_array(values: list[bytes | None]) -> pa.StringArray:
    """A string array of UTF-8 byte strings (None: null), built over one joined buffer.

    `pa.array` grows its buffer by copying, and fresh memory is what a run has: on these
    columns (the raw text of every message) building from a join costs a third of it. The
    bytes must be valid UTF-8; every caller's are (orjson read them, or Python encoded them).
    """
    n = len(values)
    nulls = values.count(None)
    filled = values if not nulls else [b"" if v is None else v for v in values]
    offsets = array.array("i", itertools.accumulate(map(len, filled), initial=0))
    validity = None
    if nulls:
        validity = pa.array([v is not None for v in values], pa.bool_()).buffers()[1]
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(b"".join(filled)), validity, nulls)


class _Verdict:
    """What the strict reader makes of a message orjson did not read back to its own bytes."""

    __slots__ = ("obj", "lines", "text", "raw", "rule", "reason")

    def __init__(self, value: bytes | None) -> None:
        self.obj: dict[str, Any] = _NO_OBJECT
        self.lines = self.raw = self.rule = self.reason = None
        if not value:
            self.text = ""
            self.rule, self.reason = (
                rules.INVALID_JSON,
                "message has no value (null or zero bytes), expected a JSON object",
            )
            return
        try:
            self.text = value.decode("utf-8")
        except UnicodeDecodeError as err:
            self.text, self.raw = value.decode("utf-8", errors="backslashreplace"), value
            self.rule, self.reason = rules.INVALID_ENCODING, "message value " + _encoding_problem(err)
            return
        obj, self.rule, self.reason = _json_object(self.text)
        if obj is not None:
            self.obj = obj
            lines = obj.get("lines")
            self.lines = None if lines is None else json.dumps(lines, ensure_ascii=False, separators=(",", ":"))


class PosEvents:
    """Bronze `pos_transactions` rows, one per Kafka message.

    `add` keeps a message's value and coordinates; every `BATCH_ROWS` messages are parsed
    together into one Arrow batch, a column at a time. Parsing never raises on a message's
    content: a value that is empty, not UTF-8, not JSON or not an object still gets its row,
    with `_parse_error` and `_parse_reason`. `lines` keeps the event's `lines` value as compact
    JSON text, whatever it holds (Silver decides whether it is a readable array); top-level keys
    the contract does not name go to `_extra`.

    Fast path: orjson parses a value and re-serializes the object; when that gives the bytes
    back, the text is compact canonical JSON, so no object in it repeats a key and `json.loads`
    would read the same object. Anything else (spacing, escapes, a repeated key, an error) is
    judged by the strict reader (`_Verdict`), so the verdict and the reason never depend on the
    path taken.
    """

    # Messages held before they are parsed into Arrow buffers: bounds the memory a large range
    # takes to that of its Arrow table (Python objects cost several times their bytes).
    BATCH_ROWS = 16_384

    def __init__(self, *, batch_id: str, ingested_at: dt.datetime) -> None:
        self.batch_id = batch_id
        self.ingested_at = ingested_at
        self._schema = BRONZE_POS_TRANSACTIONS.arrow_schema()
        self._batches: list[pa.RecordBatch] = []
        self._start_batch()

    def _start_batch(self) -> None:
        self._values: list[bytes | None] = []
        self._topics: list[str] = []
        self._partitions: list[int] = []
        self._offsets: list[int] = []
        self._timestamp_ms: list[int | None] = []
        self._arrival: list[dt.date] = []

    def add(
        self,
        value: bytes | None,
        *,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None,
        arrival_date: dt.date,
    ) -> None:
        """One message; `timestamp_ms` is its Kafka timestamp (None or negative: none)."""
        if len(self._values) >= self.BATCH_ROWS:
            self.seal()
        self._values.append(value)
        self._topics.append(topic)
        self._partitions.append(partition)
        self._offsets.append(offset)
        self._timestamp_ms.append(timestamp_ms)
        self._arrival.append(arrival_date)

    def add_columns(self, messages: MessageColumns, *, arrival_date: dt.date) -> None:
        """A run of messages at once, all arriving on `arrival_date`."""
        if len(self._values) >= self.BATCH_ROWS:
            self.seal()
        self._values += messages.values
        self._topics += messages.topics
        self._partitions += messages.partitions
        self._offsets += messages.offsets
        self._timestamp_ms += messages.timestamps_ms
        self._arrival += [arrival_date] * len(messages)

    def seal(self) -> None:
        """Parse the messages held so far into a batch."""
        if self._values:
            with collector_paused():
                self._batches.append(self._parse_batch())
        self._start_batch()

    def _parse_batch(self) -> pa.RecordBatch:
        values, n = self._values, len(self._values)
        loads, dumps, not_json = orjson.loads, orjson.dumps, orjson.JSONDecodeError
        objs: list[dict[str, Any]] = []
        keep = objs.append
        slow: dict[int, _Verdict] = {}
        for value in values:
            try:
                obj = loads(value)
            except not_json:
                obj = None
            if type(obj) is dict and dumps(obj) == value:
                keep(obj)
            else:
                slow[len(objs)] = verdict = _Verdict(value)
                keep(verdict.obj)
        fields = dict(zip(POS_EVENT_FIELDS, zip(*map(_contract_values, objs))))
        lines: list[bytes | None] = [None if part is None else dumps(part) for part in fields["lines"]]
        text: list[bytes | None] = values if not slow else list(values)
        raw: list[bytes | None] = [None] * n
        rule: list[str | None] = [None] * n
        reason: list[str | None] = [None] * n
        for i, verdict in slow.items():
            text[i], raw[i], rule[i], reason[i] = verdict.text.encode(), verdict.raw, verdict.rule, verdict.reason
            lines[i] = None if verdict.lines is None else verdict.lines.encode()
        schema = self._schema
        topic, partition, offset = (
            pa.array(self._topics, pa.string()),
            pa.array(self._partitions, pa.int32()),
            pa.array(self._offsets, pa.int64()),
        )
        ms = pa.array(self._timestamp_ms, pa.int64())
        ms = pc.if_else(pc.less(ms, 0), pa.scalar(None, pa.int64()), ms)  # negative: no timestamp
        columns = {
            **{f: _text_column(fields[f]) for f in _POS_SCALARS},
            "lines": _utf8_array(lines),
            "_topic": topic,
            "_partition": partition,
            "_offset": offset,
            "_kafka_timestamp": pc.multiply(ms, 1000).cast(schema.field("_kafka_timestamp").type),
            "_source": pc.binary_join_element_wise(topic, partition.cast(pa.string()), offset.cast(pa.string()), "/"),
            "_raw_record": _utf8_array(text),
            "_raw_bytes": pa.array(raw, pa.binary()),
            "_parse_error": pa.array(rule, pa.string()),
            "_parse_reason": pa.array(reason, pa.string()),
            "_extra": pa.array(
                [
                    None
                    if o.keys() <= _POS_FIELD_SET
                    else _extra_json({k: v for k, v in o.items() if k not in _POS_FIELD_SET})
                    for o in objs
                ],
                pa.string(),
            ),
            "_ingested_at": pa.repeat(pa.scalar(self.ingested_at, schema.field("_ingested_at").type), n),
            "_batch_id": pa.repeat(pa.scalar(self.batch_id, pa.string()), n),
            "_arrival_date": pa.array(self._arrival, pa.date32()),
        }
        return pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)

    def take_batches(self) -> list[pa.RecordBatch]:
        """The batches parsed so far, handed over (and no longer held here)."""
        taken, self._batches = self._batches, []
        return taken

    def table(self) -> pa.Table:
        """The rows so far as an Arrow table in registry schema."""
        self.seal()
        return pa.Table.from_batches(self._batches, schema=self._schema)


def pos_event_batches(
    batches: Iterator[MessageColumns], *, batch_id: str, ingested_at: dt.datetime, arrival_date: dt.date
) -> Iterator[pa.RecordBatch]:
    """Bronze rows of runs of Kafka messages as Arrow batches, each batch handed on as soon as it
    is parsed: the parse of a run's ranges here, or of a Spark task's share on Databricks."""
    events = PosEvents(batch_id=batch_id, ingested_at=ingested_at)
    for messages in batches:
        events.add_columns(messages, arrival_date=arrival_date)
        yield from events.take_batches()
    events.seal()
    yield from events.take_batches()
