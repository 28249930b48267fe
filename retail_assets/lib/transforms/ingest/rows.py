"""Bronze rows as ingestion builds them: contract fields as text, unannounced fields as JSON,
the original bytes where they are not UTF-8."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa

from retail_assets.lib.registry.tables import (
    TableSpec,
)
from retail_assets.lib.sources.landing import LandingFile


class _Line:
    __slots__ = ("no", "text", "raw", "encoding_error")

    def __init__(self, no: int, text: str, raw: bytes | None, encoding_error: str | None) -> None:
        self.no = no  # 1-based physical line number
        self.text = text  # decoded, non-UTF-8 bytes backslash-escaped
        self.raw = raw  # the exact bytes, only when they are not UTF-8
        self.encoding_error = encoding_error


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
