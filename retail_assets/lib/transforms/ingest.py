"""Parsing landing-zone files and Kafka messages into Bronze rows (pyarrow, no Spark).

Bronze keeps every record exactly as it came: one row per non-blank physical line of a file and
one row per Kafka message, whether or not it parses. A record that cannot be parsed still gets
its row, with `_parse_error` (a rule from `lib/registry/rules.py`) and a `_parse_reason` a person can act
on; Silver turns those rows into `quarantine.ingest_rejects`. Nothing here raises on bad
content — one broken line never costs the lines around it.

Contract fields are kept as text (null when absent or empty); fields the contract does not
name yet go to `_extra` as a JSON object, so a new source column neither fails a run nor
vanishes (SPEC §5).
"""

from __future__ import annotations

import array
import contextlib
import csv
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
    TableSpec,
)
from retail_assets.lib.sources.kafka import MessageColumns
from retail_assets.lib.sources.landing import LandingFile

CSV_SUFFIXES = (".csv",)
JSON_SUFFIXES = (".jsonl", ".json")
UTF8_BOM = b"\xef\xbb\xbf"


def contract_fields(spec: TableSpec) -> list[str]:
    """The source fields a Bronze table keeps as columns (everything not prefixed `_`)."""
    return [c.name for c in spec.columns if not c.name.startswith("_")]


def _text(value: Any) -> str | None:
    """A JSON value as Bronze text: strings as sent, scalars as JSON, nested values as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    return json.dumps(value, ensure_ascii=False)


def _extra_json(extra: dict[str, Any]) -> str | None:
    return json.dumps(extra, sort_keys=True, ensure_ascii=False) if extra else None


def _encoding_problem(err: UnicodeDecodeError) -> str:
    bad = err.object[err.start : err.start + 1].hex()
    return f"is not valid UTF-8: byte 0x{bad} at byte offset {err.start} ({err.reason})"


class _Line:
    __slots__ = ("no", "text", "raw", "encoding_error")

    def __init__(self, no: int, text: str, raw: bytes | None, encoding_error: str | None) -> None:
        self.no = no  # 1-based physical line number
        self.text = text  # decoded, non-UTF-8 bytes backslash-escaped
        self.raw = raw  # the exact bytes, only when they are not UTF-8
        self.encoding_error = encoding_error


def _physical_lines(data: bytes) -> Iterator[_Line]:
    """Non-blank physical lines split on LF (one trailing CR dropped), BOM at file start removed."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    try:
        # The common case: the whole file is UTF-8, decode once. LF never occurs inside a
        # multi-byte UTF-8 sequence, so splitting text and splitting bytes agree.
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        for i, part in enumerate(text.split("\n"), start=1):
            if part.endswith("\r"):
                part = part[:-1]
            if part.strip():
                yield _Line(i, part, None, None)
        return
    for i, part in enumerate(data.split(b"\n"), start=1):
        if part.endswith(b"\r"):
            part = part[:-1]
        if not part.strip():
            continue
        try:
            yield _Line(i, part.decode("utf-8"), None, None)
        except UnicodeDecodeError as err:
            yield _Line(i, part.decode("utf-8", errors="backslashreplace"), part, _encoding_problem(err))


class _BronzeRows:
    """Column-wise accumulator for the rows of one file (lists, turned into Arrow once)."""

    def __init__(self, spec: TableSpec, file: LandingFile, *, batch_id: str, ingested_at: dt.datetime) -> None:
        self.spec = spec
        self.file = file
        self.batch_id = batch_id
        self.ingested_at = ingested_at
        self.fields = contract_fields(spec)
        self.values: dict[str, list[Any]] = {f: [] for f in self.fields}
        self.lines: list[int] = []
        self.raw: list[str] = []
        self.raw_bytes: list[bytes | None] = []
        self.errors: list[str | None] = []
        self.reasons: list[str | None] = []
        self.extra: list[str | None] = []

    def add(
        self,
        line_no: int,
        raw: str,
        raw_bytes: bytes | None = None,
        *,
        error: str | None = None,
        reason: str | None = None,
        values: dict[str, str | None] | None = None,
        extra: str | None = None,
    ) -> None:
        self.lines.append(line_no)
        self.raw.append(raw)
        self.raw_bytes.append(raw_bytes)
        self.errors.append(error)
        self.reasons.append(reason)
        self.extra.append(extra)
        values = values or {}
        for f in self.fields:
            self.values[f].append(values.get(f))

    def reject(self, line: _Line, error: str, reason: str) -> None:
        self.add(line.no, line.text, line.raw, error=error, reason=reason)

    def table(self) -> pa.Table:
        n = len(self.lines)
        rel = self.file.relative
        columns: dict[str, list[Any]] = dict(self.values)
        columns.update(
            _source_file=[rel] * n,
            _source_line=self.lines,
            _source=[f"{rel}:{no}" for no in self.lines],
            _raw_record=self.raw,
            _raw_bytes=self.raw_bytes,
            _parse_error=self.errors,
            _parse_reason=self.reasons,
            _extra=self.extra,
            _ingested_at=[self.ingested_at] * n,
            _batch_id=[self.batch_id] * n,
            _arrival_date=[self.file.arrival_date] * n,
        )
        schema = self.spec.arrow_schema()
        return pa.table(
            {name: pa.array(columns[name], type=schema.field(name).type) for name in schema.names}, schema=schema
        )


def _header_problem(names: list[str], key_fields: tuple[str, ...]) -> str | None:
    blank = [str(i) for i, n in enumerate(names, start=1) if not n]
    if blank:
        return f"has an empty column name at position {', '.join(blank)}"
    seen: set[str] = set()
    repeated = sorted({n for n in names if n in seen or seen.add(n)})
    if repeated:
        return f"repeats column {', '.join(repeated)}"
    missing = [k for k in key_fields if k not in names]
    if missing:
        return f"lacks key column {', '.join(missing)} (found: {', '.join(names)})"
    return None


def _split_csv(text: str) -> list[str]:
    # Fast path: with no quote and no stray CR the csv module would split on commas too.
    if '"' not in text and "\r" not in text:
        return text.split(",")
    return next(csv.reader([text], strict=True))


def _parse_csv(rows: _BronzeRows, lines: list[_Line], key_fields: tuple[str, ...]) -> None:
    header, data = lines[0], lines[1:]
    names: list[str] = []
    if header.encoding_error:
        problem = header.encoding_error
    else:
        try:
            names = [n.strip() for n in _split_csv(header.text)]
            problem = _header_problem(names, key_fields)
        except csv.Error as err:
            problem = f"is not readable CSV: {err}"
    header_problem = f"header (line {header.no}) {problem}" if problem else None
    if not data:
        reason = "file has a header line but no data lines" + (f"; its {header_problem}" if header_problem else "")
        rows.add(0, header.text, header.raw, error=rules.EMPTY_FILE, reason=reason)
        return

    contract = set(rows.fields)
    positions = [(name, i) for i, name in enumerate(names) if name in contract]
    extras = sorted((name, i) for i, name in enumerate(names) if name not in contract)
    width = len(names)
    for line in data:
        if line.encoding_error:
            rows.reject(line, rules.INVALID_ENCODING, f"line {line.encoding_error}")
            continue
        if header_problem:
            rows.reject(line, rules.MALFORMED_ROW, f"the file's {header_problem}, so none of its lines can be read")
            continue
        try:
            fields = _split_csv(line.text)
        except csv.Error as err:
            rows.reject(line, rules.MALFORMED_ROW, f"broken quoting: {err}")
            continue
        if len(fields) != width:
            rows.reject(line, rules.MALFORMED_ROW, f"line has {len(fields)} fields, header has {width}")
            continue
        values = {name: fields[i] or None for name, i in positions}
        extra = _extra_json({name: fields[i] or None for name, i in extras}) if extras else None
        rows.add(line.no, line.text, values=values, extra=extra)


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key makes the record ambiguous (json.loads would silently keep the last value).
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated = sorted({k for k, _ in pairs if k in seen or seen.add(k)})
        raise _RepeatedKey(f"invalid JSON: an object repeats key {', '.join(repr(k) for k in repeated)}")
    return obj


def _json_object(text: str) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """(object, rule, reason): the parsed object, or the ingest rule it breaks."""
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        return None, rules.INVALID_JSON, f"invalid JSON at column {err.colno}: {err.msg}"
    except _RepeatedKey as err:
        return None, rules.INVALID_JSON, str(err)
    except RecursionError:
        return None, rules.INVALID_JSON, "invalid JSON: nested too deeply to read"
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
        return None, rules.NOT_AN_OBJECT, f"JSON value is {kind}, expected an object"
    return value, None, None


def _parse_jsonl(rows: _BronzeRows, lines: list[_Line]) -> None:
    contract = rows.fields
    known = set(contract)
    for line in lines:
        if line.encoding_error:
            rows.reject(line, rules.INVALID_ENCODING, f"line {line.encoding_error}")
            continue
        obj, rule, reason = _json_object(line.text)
        if obj is None:
            rows.reject(line, rule, reason)
            continue
        values = {f: _text(obj.get(f)) for f in contract}
        extra = _extra_json({k: v for k, v in obj.items() if k not in known})
        rows.add(line.no, line.text, values=values, extra=extra)


def parse_landing_file(file: LandingFile, spec: TableSpec, *, batch_id: str, ingested_at: dt.datetime) -> pa.Table:
    """Every non-blank physical line of the file as one Bronze row of `spec` (its Arrow schema).

    CSV (`.csv`): line 1 is the header; each later line is parsed on its own (strict quoting),
    so a line with a broken quote or the wrong number of fields is one `malformed_row` reject.
    JSON Lines (`.jsonl`, `.json`): one object per line. A zero-byte or header-only file is one
    `empty_file` reject at line 0. Raises only when the file cannot be read from disk.
    """
    data = file.path.read_bytes()
    rows = _BronzeRows(spec, file, batch_id=batch_id, ingested_at=ingested_at)
    suffix = file.path.suffix.lower()
    if suffix not in CSV_SUFFIXES + JSON_SUFFIXES:
        expected = ", ".join(CSV_SUFFIXES + JSON_SUFFIXES)
        rows.add(
            0,
            "",
            error=rules.MALFORMED_ROW,
            reason=f"unsupported file type {suffix or '(no suffix)'!r}; expected one of {expected}",
        )
        return rows.table()
    lines = list(_physical_lines(data))
    if not lines:
        rows.add(
            0,
            "",
            error=rules.EMPTY_FILE,
            reason="file is empty (zero bytes)" if not data else "file holds only blank lines",
        )
    elif suffix in CSV_SUFFIXES:
        _parse_csv(rows, lines, spec.landing.key_fields if spec.landing else contract_fields(spec)[:1])
    else:
        _parse_jsonl(rows, lines)
    return rows.table()


def compare_with_held(held: pa.Table, parsed: pa.Table) -> tuple[pa.Table, dict[str, str]]:
    """What one Bronze arrival partition already holds against a fresh parse of its files.

    Returns `(carried, changed)`. `carried`: held rows of files no longer in the scan (archived,
    deleted, or touched into another arrival date after ingestion); a re-run keeps them, since
    overwriting the partition without them would lose records Bronze already had. `changed`:
    file → what differs, for files whose content is no longer what Bronze ingested (a new export
    renamed over an ingested one); Bronze must not silently swap records it already holds.
    Lines appended to an ingested file are neither: they are new records.
    """
    if held.num_rows == 0:
        return held, {}
    present = pc.unique(parsed["_source_file"])
    carried = held.filter(pc.invert(pc.is_in(held["_source_file"], value_set=present)))
    mine = held.filter(pc.is_in(held["_source_file"], value_set=present))
    now = dict(zip(parsed["_source"].to_pylist(), parsed["_raw_record"].to_pylist()))
    changed: dict[str, str] = {}
    for file, source, line, raw in zip(
        mine["_source_file"].to_pylist(),
        mine["_source"].to_pylist(),
        mine["_source_line"].to_pylist(),
        mine["_raw_record"].to_pylist(),
    ):
        if file in changed:
            continue
        if source not in now:
            changed[file] = f"line {line} is gone"
        elif now[source] != raw:
            changed[file] = f"line {line} differs"
    return carried, changed


# ---------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------

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
