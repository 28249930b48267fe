"""Intermediate results shared between runs on one machine, and within one process.

A backfill refines Silver sales by business day and then screens the same Bronze records by
arrival day: two runs, one classification of the same rows (likewise the master data and the
inventory, refined and then screened by arrival day). The first run writes what it
computed as Parquet under the engine's scratch directory, named by a digest of everything the
result is a function of; a later run with the same key reads it instead of computing it again.
A key that differs in anything (a Bronze commit, another set of days read, changed master
data, other rules code) names another checkpoint, so nothing stale is ever read.

A checkpoint appears whole or not at all (written beside its place, then renamed into it), so
concurrent runs may write the same key; the first rename wins and the other reads it.

Callers never build keys: they ask the engine (`LakehouseEngine.shared_result`,
`LakehouseEngine.computed_once`) with the tables a result reads and its parameters; the key is
those tables' committed versions and the days read, the parameters, and a digest of the whole
`retail_assets` package (any code change names other results).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import retail_assets

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Of each kind, the newest few are kept; none is removed while a run could still be reading it.
KEEP = 4
MIN_AGE_S = 6 * 3600


def digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


@functools.cache
def package_digest() -> str:
    """Of every Python file of the `retail_assets` package: the code a result is computed by is
    part of its key, all of it (a rule moved to another module must not reuse old results)."""
    root = Path(retail_assets.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


class SharedResult:
    """How a run computes one intermediate result: through a checkpoint other runs on this
    machine can read (keyed before the rows are read), or, without a scratch directory, once in
    the Spark session."""

    def __init__(self, checkpoint: SharedCheckpoint | None) -> None:
        self.checkpoint = checkpoint

    @property
    def shared(self) -> bool:
        return self.checkpoint is not None

    def computed(self, df: DataFrame) -> DataFrame:
        return self.checkpoint.materialize(df) if self.checkpoint is not None else df.localCheckpoint()


T = TypeVar("T")


class ProcessResults:
    """Results a process computes once per key (an asset and its checks in one run read the same
    committed versions); a bounded number of keys is kept."""

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self._results: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Mapping[str, Any], compute: Callable[[], T]) -> T:
        name = digest(key)
        with self._lock:
            if name in self._results:
                self._results.move_to_end(name)
                return self._results[name]
        value = compute()
        with self._lock:
            self._results[name] = value
            while len(self._results) > self.keep:
                self._results.popitem(last=False)
        return value


class SharedCheckpoint:
    def __init__(self, directory: Path, key: Mapping[str, Any]) -> None:
        self.directory = directory
        self.key = dict(key)
        self.path = directory / digest(key)

    @property
    def exists(self) -> bool:
        return self.path.is_dir()

    def materialize(self, df: DataFrame) -> DataFrame:
        """`df` computed once: read from the checkpoint if one has its key, else written to it."""
        if not self.exists:
            self._write(df)
        return df.sparkSession.read.parquet(str(self.path))

    def _write(self, df: DataFrame) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = self.directory / f".{self.path.name}.{uuid.uuid4().hex}"
        df.write.parquet(str(staging))
        # what the digest stands for, for whoever looks; Spark skips files named with "_"
        (staging / "_key.json").write_text(json.dumps(self.key, indent=1, sort_keys=True, default=str))
        try:
            staging.rename(self.path)
        except OSError:  # another run wrote the same key first: its result is the same
            shutil.rmtree(staging, ignore_errors=True)
        self._prune()

    def _prune(self) -> None:
        now = time.time()
        entries = []
        for p in self.directory.iterdir():
            try:
                entries.append((p.stat().st_mtime, p))
            except FileNotFoundError:  # another run's prune
                continue
        kept = 1  # this one
        for mtime, p in sorted(entries, reverse=True):
            if p == self.path:
                continue
            if not p.name.startswith(".") and kept < KEEP:
                kept += 1
            elif now - mtime > MIN_AGE_S:
                shutil.rmtree(p, ignore_errors=True)
