"""Landing-zone files (CSV and JSON Lines) into Bronze rows, one per non-blank physical line."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import (
    TableSpec,
)
from retail_assets.lib.sources.landing import LandingFile
from retail_assets.lib.transforms.ingest.rows import (
    CSV_SUFFIXES,
    JSON_SUFFIXES,
    UTF8_BOM,
    _BronzeRows,
    _encoding_problem,
    _extra_json,
    _Line,
    _text,
    contract_fields,
)


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
