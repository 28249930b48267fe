"""Parsing landing-zone files and Kafka messages into Bronze rows (pyarrow, no Spark).

Bronze keeps every record exactly as it came: one row per non-blank physical line of a file and
one row per Kafka message, whether or not it parses. A record that cannot be parsed still gets
its row, with `_parse_error` (a rule from `lib/rules.py`) and a `_parse_reason` a person can act
on; Silver turns those rows into `quarantine.ingest_rejects`. Nothing here raises on bad
content — one broken line never costs the lines around it.

Contract fields are kept as text (null when absent or empty); fields the contract does not
name yet go to `_extra` as a JSON object, so a new source column neither fails a run nor
vanishes (SPEC §5).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from retail_assets.lib import rules
from retail_assets.lib.landing import LandingFile
from retail_assets.lib.tables import (
    BRONZE_CUSTOMERS,
    BRONZE_INVENTORY,
    BRONZE_POS_TRANSACTIONS,
    BRONZE_PRODUCTS,
    BRONZE_SALES_FILES,
    BRONZE_STORES,
    POS_EVENT_FIELDS,
    TableSpec,
)

CSV_SUFFIXES = (".csv",)
JSON_SUFFIXES = (".jsonl", ".json")
UTF8_BOM = b"\xef\xbb\xbf"

# Columns a CSV header must name for its lines to mean anything; a header without them makes
# every line of the file a `malformed_row`. Other contract columns may be absent (null =
# unchanged for master data; Silver rejects a sales line that lacks a required value).
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    BRONZE_SALES_FILES.name: ("transaction_id", "line_number"),
    BRONZE_CUSTOMERS.name: ("customer_id",),
    BRONZE_PRODUCTS.name: ("product_id",),
    BRONZE_STORES.name: ("store_id",),
    BRONZE_INVENTORY.name: ("snapshot_date", "store_id", "product_id"),
}


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
        return pa.table({name: pa.array(columns[name], type=schema.field(name).type) for name in schema.names}, schema=schema)


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
        rows.add(0, "", error=rules.MALFORMED_ROW, reason=f"unsupported file type {suffix or '(no suffix)'!r}; expected one of {expected}")
        return rows.table()
    lines = list(_physical_lines(data))
    if not lines:
        rows.add(0, "", error=rules.EMPTY_FILE, reason="file is empty (zero bytes)" if not data else "file holds only blank lines")
    elif suffix in CSV_SUFFIXES:
        _parse_csv(rows, lines, KEY_FIELDS.get(spec.name, contract_fields(spec)[:1]))
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
        mine["_source_file"].to_pylist(), mine["_source"].to_pylist(), mine["_source_line"].to_pylist(), mine["_raw_record"].to_pylist()
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


def _scalar_text(value: Any) -> str | None:
    # `_text` for the values events carry; ints (the common non-string) skip json.dumps
    return value if value is None or type(value) is str else str(value) if type(value) is int else _text(value)


def _pos_event(value: bytes, text: str) -> tuple[dict[str, Any] | None, str | None, str | None, str | None]:
    """(object, lines as JSON text, rule, reason) of one message value, decoded as `text`.

    Fast path: orjson parses the bytes and re-serializes them; when that gives the bytes back the
    text is compact canonical JSON, so no object in it repeats a key and `json.loads` would read
    the same object. Anything else (spacing, escapes, a repeated key, an error) is judged by the
    strict reader, `_json_object`, so the verdict and the reason never depend on the path taken.
    """
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        obj = None
    if type(obj) is dict and orjson.dumps(obj) == value:
        lines = obj.get("lines")
        return obj, None if lines is None else orjson.dumps(lines).decode(), None, None
    obj, rule, reason = _json_object(text)
    if obj is None:
        return None, None, rule, reason
    lines = obj.get("lines")
    return obj, None if lines is None else json.dumps(lines, ensure_ascii=False, separators=(",", ":")), None, None


class PosEvents:
    """Bronze `pos_transactions` rows, one per Kafka message, gathered column by column.

    `add` never raises on a message's content: a value that is empty, not UTF-8, not JSON or not
    an object still gets its row, with `_parse_error` and `_parse_reason`. `lines` keeps the
    event's `lines` value as compact JSON text, whatever it holds (Silver decides whether it is a
    readable array); top-level keys the contract does not name go to `_extra`.
    """

    # Rows held as Python objects before they move into Arrow buffers: bounds the memory a large
    # range takes to that of its Arrow table (Python strings cost several times their bytes).
    BATCH_ROWS = 16_384

    def __init__(self, *, batch_id: str, ingested_at: dt.datetime) -> None:
        self.batch_id = batch_id
        self.ingested_at = ingested_at
        self._schema = BRONZE_POS_TRANSACTIONS.arrow_schema()
        self._batches: list[pa.RecordBatch] = []
        self._start_batch()

    def _start_batch(self) -> None:
        self._columns: dict[str, list[Any]] = {
            name: [] for name in BRONZE_POS_TRANSACTIONS.column_names if name not in ("_batch_id", "_ingested_at", "_kafka_timestamp")
        }
        self._timestamp_ms: list[int | None] = []

    def __len__(self) -> int:
        return sum(b.num_rows for b in self._batches) + len(self._timestamp_ms)

    def add(self, value: bytes | None, *, topic: str, partition: int, offset: int, timestamp_ms: int | None, arrival_date: dt.date) -> None:
        """One message; `timestamp_ms` is its Kafka timestamp (None or negative: none)."""
        if len(self._timestamp_ms) >= self.BATCH_ROWS:
            self._seal_batch()
        c = self._columns
        c["_topic"].append(topic)
        c["_partition"].append(partition)
        c["_offset"].append(offset)
        c["_source"].append(f"{topic}/{partition}/{offset}")
        c["_arrival_date"].append(arrival_date)
        self._timestamp_ms.append(timestamp_ms if timestamp_ms is not None and timestamp_ms >= 0 else None)
        obj = lines = rule = reason = raw_bytes = None
        if not value:
            text = ""
            rule, reason = rules.INVALID_JSON, "message has no value (null or zero bytes), expected a JSON object"
        else:
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError as err:
                text, raw_bytes = value.decode("utf-8", errors="backslashreplace"), value
                rule, reason = rules.INVALID_ENCODING, "message value " + _encoding_problem(err)
            else:
                obj, lines, rule, reason = _pos_event(value, text)
        c["_raw_record"].append(text)
        c["_raw_bytes"].append(raw_bytes)
        c["_parse_error"].append(rule)
        c["_parse_reason"].append(reason)
        c["lines"].append(lines)
        if obj is None:
            for f in _POS_SCALARS:
                c[f].append(None)
            c["_extra"].append(None)
            return
        for f in _POS_SCALARS:
            c[f].append(_scalar_text(obj.get(f)))
        c["_extra"].append(_extra_json({k: v for k, v in obj.items() if k not in _POS_FIELD_SET}))

    def _seal_batch(self) -> None:
        schema, n = self._schema, len(self._timestamp_ms)
        if not n:
            return
        ms = pa.array(self._timestamp_ms, pa.int64())
        constant = {
            "_batch_id": pa.array([self.batch_id] * n, pa.string()),
            "_ingested_at": pa.array([self.ingested_at] * n, schema.field("_ingested_at").type),
            "_kafka_timestamp": pc.multiply(ms, 1000).cast(schema.field("_kafka_timestamp").type),
        }
        arrays = [constant[f.name] if f.name in constant else pa.array(self._columns[f.name], f.type) for f in schema]
        self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
        self._start_batch()

    def table(self) -> pa.Table:
        """The rows so far as an Arrow table in registry schema."""
        self._seal_batch()
        return pa.Table.from_batches(self._batches, schema=self._schema)


def pos_event_batches(messages: Iterator[Any], *, batch_id: str, ingested_at: dt.datetime, arrival_date: dt.date) -> Iterator[pa.RecordBatch]:
    """Bronze rows of Kafka messages as Arrow batches: the parse a Spark task runs on its share."""
    events = PosEvents(batch_id=batch_id, ingested_at=ingested_at)
    for msg in messages:
        events.add(msg.value(), topic=msg.topic(), partition=msg.partition(), offset=msg.offset(), timestamp_ms=msg.timestamp()[1], arrival_date=arrival_date)
    yield from events.table().to_batches()
