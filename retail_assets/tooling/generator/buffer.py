"""The landing zone buffered in memory: files as lists of lines, written out once at the end."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class Marked(str):
    """A line (or Kafka value) that carries manifest entries; its position is resolved on write."""

    entries: list[dict[str, Any]]

    def __new__(cls, text: str, entries: list[dict[str, Any]]):
        obj = super().__new__(cls, text)
        obj.entries = entries
        return obj


def csv_field(value: str | None) -> str:
    if value is None:
        return ""
    if any(ch in value for ch in ',"\r\n') or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_line(values: Iterable[str | None]) -> str:
    return ",".join(csv_field(v) for v in values)


def json_line(obj: Any) -> str:
    # ensure_ascii=False: UTF-8 text as is; lone surrogates (escaped raw bytes) survive for encoding
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class BufferedFile:
    __slots__ = ("path", "source", "fmt", "header", "lines", "crlf", "zero_bytes")

    def __init__(self, path: str, source: str, fmt: str, header: str | None, crlf: bool = False):
        self.path = path  # relative to the landing root, '/' separators
        self.source = source  # sales | customers | products | stores | inventory
        self.fmt = fmt  # csv | jsonl
        self.header = header
        self.lines: list[str] = []
        self.crlf = crlf
        self.zero_bytes = False

    @property
    def arrival(self) -> str:
        return self.path.split("/")[1]

    @property
    def first_data_line(self) -> int:
        """Physical (1-based) line number of lines[0]."""
        return 2 if self.header is not None else 1

    def content(self) -> bytes:
        if self.zero_bytes:
            return b""
        nl = "\r\n" if self.crlf else "\n"
        parts = [] if self.header is None else [self.header]
        parts.extend(self.lines)
        text = nl.join(parts) + nl
        return text.encode("utf-8", "surrogateescape")


class LandingBuffer:
    def __init__(self) -> None:
        self.files: dict[str, BufferedFile] = {}

    def get(self, path: str) -> BufferedFile | None:
        return self.files.get(path)

    def file(self, path: str, source: str, fmt: str, header: str | None, crlf: bool = False) -> BufferedFile:
        f = self.files.get(path)
        if f is None:
            f = self.files[path] = BufferedFile(path, source, fmt, header, crlf)
        return f

    def write(self, root: Path) -> None:
        made: set[Path] = set()
        for path in sorted(self.files):
            target = root / path
            if target.parent not in made:
                target.parent.mkdir(parents=True, exist_ok=True)
                made.add(target.parent)
            # written under a hidden temporary name, then renamed: a watcher never sees half a file
            tmp = target.with_name("." + target.name + ".tmp")
            with open(tmp, "wb", buffering=1 << 20) as fh:
                fh.write(self.files[path].content())
            os.replace(tmp, target)
