"""What the sensors decide, as plain functions: which landing files are new, and when Kafka lag
is worth a Bronze run.

Both decisions derive "already ingested" from committed Bronze data (SPEC §5), never from the
sensor cursor alone: the cursor only remembers what was *requested*, so a request whose run
failed is made again, and a request whose run committed is never repeated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

import pyarrow.compute as pc

from retail_assets.lib.engine import LakehouseEngine
from retail_assets.lib.engine.delta_sql import quote_name
from retail_assets.lib.registry.tables import TableSpec
from retail_assets.lib.sources.kafka import LogBehindBronze, OffsetRange, check_log_not_behind, pending_ranges
from retail_assets.lib.sources.landing import LandingFile, listed_landing_file, scan_landing

if TYPE_CHECKING:
    from retail_assets.lib.deployment.workspace import DatabricksWorkspaceResource

# ---------------------------------------------------------------------------------------------
# What Bronze already holds
# ---------------------------------------------------------------------------------------------

# (table location, Delta version) → files held (offsets committed). A committed version never
# changes, so a tick reads Bronze again only after a new commit.
_HELD_CACHE: dict[tuple[str, int], frozenset[str]] = {}
_OFFSETS_CACHE: dict[tuple[str, int], dict[int, int]] = {}
_MAX_CACHE: dict[tuple[str, int, str], int] = {}


def held_files(engine: LakehouseEngine, spec: TableSpec) -> frozenset[str]:
    """Landing files (relative paths) that Bronze table `spec` holds, in any arrival partition."""
    version = engine.version(spec)
    if version is None:
        return frozenset()
    key = (engine.storage_id(spec), version)
    if key not in _HELD_CACHE:
        table = engine.read_arrow(spec, columns=["_source_file"])
        _remember(
            _HELD_CACHE, key, frozenset(pc.unique(table["_source_file"]).to_pylist()) if table.num_rows else frozenset()
        )
    return _HELD_CACHE[key]


def _remember(cache: dict, key: object, value: object, limit: int = 64) -> None:
    cache[key] = value
    while len(cache) > limit:
        cache.pop(next(iter(cache)))


def committed_offsets(engine: LakehouseEngine, spec: TableSpec) -> dict[int, int]:
    """Per Kafka partition, the highest offset Bronze holds (the resume point is this + 1)."""
    if engine.version(spec) is None:
        return {}
    held = engine.read_arrow(spec, columns=["_partition", "_offset"])
    if held.num_rows == 0:
        return {}
    grouped = held.group_by("_partition").aggregate([("_offset", "max")])
    return dict(zip(grouped["_partition"].to_pylist(), grouped["_offset_max"].to_pylist()))


def committed_max(engine: LakehouseEngine, spec: TableSpec, column: str) -> int:
    """The highest value of an integer column Bronze holds (the database's high-water mark); 0
    while the table is empty or absent."""
    version = engine.version(spec)
    if version is None:
        return 0
    key = (engine.storage_id(spec), version, column)
    if key not in _MAX_CACHE:
        values = engine.read_arrow(spec, columns=[column])[column]
        _remember(_MAX_CACHE, key, int(pc.max(values).as_py() or 0) if len(values) else 0)
    return _MAX_CACHE[key]


# ---------------------------------------------------------------------------------------------
# Landing zone
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LandingBatch:
    """New complete files of one arrival day: one Bronze run for that day's partition."""

    day: dt.date
    files: tuple[LandingFile, ...]

    @property
    def sources(self) -> list[str]:
        return sorted({f.source for f in self.files})

    @property
    def run_key(self) -> str:
        # Size and mtime are part of the identity: a file replaced under the same name is new.
        digest = hashlib.sha1()
        for f in sorted(self.files, key=lambda f: f.relative):
            digest.update(f"{f.relative}|{f.size}|{f.mtime:.6f}\n".encode())
        return f"landing:{self.day.isoformat()}:{digest.hexdigest()[:20]}"

    def describe(self) -> str:
        counts = defaultdict(int)
        for f in self.files:
            counts[f.source] += 1
        parts = ", ".join(f"{n} {source}" for source, n in sorted(counts.items()))
        return f"{len(self.files)} new landing file(s) arrived on {self.day}: {parts}"


def new_landing_batches(
    view: LakehouseView,
    bronze_by_source: Mapping[str, TableSpec],
    *,
    stable_seconds: float,
    now: float | None = None,
) -> tuple[list[LandingBatch], int]:
    """Complete landing files not yet in Bronze, grouped by arrival day; and how many files were seen."""
    by_day: dict[dt.date, list[LandingFile]] = defaultdict(list)
    seen = 0
    for source, spec in bronze_by_source.items():
        files = view.landing_files(source, stable_seconds=stable_seconds, now=now)
        seen += len(files)
        if not files:
            continue
        # A file is held once in Bronze, in any partition (a touched loose file may change day).
        held = view.held_files(spec)
        for f in files:
            if f.relative not in held:
                by_day[f.arrival_date].append(f)
    batches = [LandingBatch(day, tuple(files)) for day, files in sorted(by_day.items())]
    return batches, seen


# ---------------------------------------------------------------------------------------------
# Where the sensors look: this machine, or a Databricks workspace through its APIs
# ---------------------------------------------------------------------------------------------


class LakehouseView(Protocol):
    """What the sensors read: the landing zone's files and Bronze's committed state."""

    landing_root: str

    def landing_files(self, source: str, *, stable_seconds: float, now: float | None = None) -> list[LandingFile]: ...

    def held_files(self, spec: TableSpec) -> frozenset[str]: ...

    def committed_offsets(self, spec: TableSpec) -> dict[int, int]: ...

    def committed_max(self, spec: TableSpec, column: str) -> int: ...


@dataclass(frozen=True)
class LocalView:
    """The landing folder on disk and Bronze through the lakehouse engine."""

    engine: LakehouseEngine
    landing_root: str

    def landing_files(self, source: str, *, stable_seconds: float, now: float | None = None) -> list[LandingFile]:
        return scan_landing(self.landing_root, source, stable_seconds=stable_seconds, now=now)

    def held_files(self, spec: TableSpec) -> frozenset[str]:
        return held_files(self.engine, spec)

    def committed_offsets(self, spec: TableSpec) -> dict[int, int]:
        return committed_offsets(self.engine, spec)

    def committed_max(self, spec: TableSpec, column: str) -> int:
        return committed_max(self.engine, spec, column)


# How the warehouse says a table (or its schema) does not exist yet: Spark's error classes.
TABLE_MISSING = ("[TABLE_OR_VIEW_NOT_FOUND]", "[SCHEMA_NOT_FOUND]")


@dataclass(frozen=True)
class WorkspaceView:
    """The landing volume through the Files API and Bronze through a SQL warehouse: what a
    Dagster code server can reach of a Databricks workspace (no JVM, no /Volumes mount).

    A tick costs one listing per landing folder and, per Bronze table, one `DESCRIBE HISTORY`
    statement; the table's contents are read again only after a new commit. Only that first
    statement may find the table missing; any other failure is raised, never read as "Bronze
    holds nothing" (which would request every file, or every offset, again)."""

    workspace: DatabricksWorkspaceResource
    landing_root: str  # /Volumes/<catalog>/<schema>/<volume>[/...]
    catalog: str
    env: str

    def landing_files(self, source: str, *, stable_seconds: float, now: float | None = None) -> list[LandingFile]:
        found = []
        for f in self.workspace.list_files(f"{self.landing_root.rstrip('/')}/{source}"):
            landing = listed_landing_file(
                self.landing_root, f.path, size=f.size, mtime=f.modified, stable_seconds=stable_seconds, now=now
            )
            if landing is not None and landing.source == source:
                found.append(landing)
        return sorted(found, key=lambda f: f.relative)

    def _name(self, spec: TableSpec) -> str:
        return quote_name(spec.catalog_name(self.catalog, self.env))

    def version(self, spec: TableSpec) -> int | None:
        """The table's latest version; None while it does not exist."""
        from retail_assets.lib.deployment.workspace import StatementFailed  # noqa: PLC0415

        try:
            rows = self.workspace.sql(f"DESCRIBE HISTORY {self._name(spec)} LIMIT 1")
        except StatementFailed as exc:
            if any(code in str(exc) for code in TABLE_MISSING):
                return None
            raise
        return int(rows[0]["version"]) if rows else None

    def _key(self, spec: TableSpec, version: int) -> tuple[str, int]:
        return (f"{self.workspace.host}/{self.catalog}.{self.env}:{spec.key}", version)

    def held_files(self, spec: TableSpec) -> frozenset[str]:
        version = self.version(spec)
        if version is None:
            return frozenset()
        key = self._key(spec, version)
        if key not in _HELD_CACHE:
            rows = self.workspace.sql(f"SELECT DISTINCT _source_file FROM {self._name(spec)} VERSION AS OF {version}")
            _remember(_HELD_CACHE, key, frozenset(r["_source_file"] for r in rows if r["_source_file"] is not None))
        return _HELD_CACHE[key]

    def committed_offsets(self, spec: TableSpec) -> dict[int, int]:
        version = self.version(spec)
        if version is None:
            return {}
        key = self._key(spec, version)
        if key not in _OFFSETS_CACHE:
            rows = self.workspace.sql(
                f"SELECT _partition, MAX(_offset) AS _offset FROM {self._name(spec)} VERSION AS OF {version} GROUP BY _partition"
            )
            _remember(
                _OFFSETS_CACHE,
                key,
                {int(r["_partition"]): int(r["_offset"]) for r in rows if r["_partition"] is not None},
            )
        return dict(_OFFSETS_CACHE[key])

    def committed_max(self, spec: TableSpec, column: str) -> int:
        version = self.version(spec)
        if version is None:
            return 0
        key = (*self._key(spec, version), column)
        if key not in _MAX_CACHE:
            rows = self.workspace.sql(f"SELECT MAX(`{column}`) AS high FROM {self._name(spec)} VERSION AS OF {version}")
            _remember(_MAX_CACHE, key, int(rows[0]["high"]) if rows and rows[0]["high"] is not None else 0)
        return _MAX_CACHE[key]


# ---------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------


@dataclass
class KafkaCursor:
    """What the Kafka sensor remembers between ticks."""

    # When the sensor first saw offsets waiting (epoch seconds); None when Bronze was caught up.
    pending_since: float | None = None
    # The run key of the last request and the watermarks it was made for.
    last_run_key: str | None = None
    requested_high: dict[int, int] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps({**asdict(self), "requested_high": {str(k): v for k, v in self.requested_high.items()}})

    @classmethod
    def loads(cls, text: str | None) -> KafkaCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(
            raw.get("pending_since"),
            raw.get("last_run_key"),
            {int(k): int(v) for k, v in (raw.get("requested_high") or {}).items()},
        )


# Run statuses before the run has taken its watermarks.
NOT_STARTED = ("QUEUED", "NOT_STARTED", "STARTING")


@dataclass(frozen=True)
class KafkaDecision:
    request: bool
    reason: str
    ranges: tuple[OffsetRange, ...]
    run_key: str | None
    cursor: KafkaCursor


def ranges_label(ranges: Iterable[OffsetRange]) -> str:
    return ",".join(str(r) for r in ranges)


def decide_kafka_run(
    *,
    topic: str,
    high: Mapping[int, int],
    committed: Mapping[int, int],
    cursor: KafkaCursor,
    now: float,
    lag_threshold: int,
    max_wait_s: float,
    last_run_status: str | None,
    blocked_by: str | None = None,
) -> KafkaDecision:
    """Whether the offsets Bronze does not hold yet are worth a run now.

    `last_run_status` is the status of the run made for `cursor.last_run_key` (None if there is
    none). A run that has not started yet reads every offset up to the watermark it takes when
    it starts, so nothing more is requested until it has; a started run is waited for only if it
    already covers the log's end. At most one run works and one waits, and a waiting run always
    takes everything pending. `blocked_by` names another run writing the same tables and day
    (not this sensor's); the sensor waits for it rather than race it.
    """
    try:
        check_log_not_behind(topic, high, committed)
    except LogBehindBronze as exc:
        return KafkaDecision(False, str(exc), (), None, KafkaCursor(None, cursor.last_run_key, cursor.requested_high))
    pending = tuple(pending_ranges(high, committed))
    lag = sum(r.count for r in pending)
    if lag == 0:
        caught_up = ", ".join(f"p{p}@{hw}" for p, hw in sorted(high.items())) or "no partitions yet"
        return KafkaDecision(
            False,
            f"Bronze holds every offset of {topic} ({caught_up})",
            (),
            None,
            KafkaCursor(None, cursor.last_run_key, cursor.requested_high),
        )
    pending_since = cursor.pending_since if cursor.pending_since is not None else now
    waited = now - pending_since
    covered = bool(cursor.requested_high) and all(cursor.requested_high.get(p, -1) >= hw for p, hw in high.items())
    keep = KafkaCursor(pending_since, cursor.last_run_key, cursor.requested_high)
    if last_run_status in NOT_STARTED:
        reason = f"{lag} offsets pending; run {cursor.last_run_key} is {last_run_status.lower()} and reads up to the log's end when it starts"
        return KafkaDecision(False, reason, pending, None, keep)
    if covered and last_run_status in ("STARTED", "CANCELING"):
        return KafkaDecision(
            False,
            f"{lag} offsets pending; run {cursor.last_run_key} for them is {last_run_status.lower()}",
            pending,
            None,
            keep,
        )
    if blocked_by is not None:
        return KafkaDecision(False, f"{lag} offsets pending; waiting for {blocked_by}", pending, None, keep)
    if lag < lag_threshold and waited < max_wait_s:
        reason = f"{lag} offsets pending ({ranges_label(pending)}), below the lag threshold {lag_threshold}; oldest seen {waited:.0f}s ago (max {max_wait_s:.0f}s)"
        return KafkaDecision(False, reason, pending, None, keep)
    run_key = f"kafka:{topic}:{ranges_label(pending)}"
    if cursor.last_run_key is not None and cursor.last_run_key.split(":retry@")[0] == run_key:
        # The same range was requested before and its run ended without committing it (failed
        # or canceled): ask again under a new key, since run keys never repeat a request.
        run_key = f"{run_key}:retry@{int(now)}"
    why = (
        f"lag {lag} >= {lag_threshold}"
        if lag >= lag_threshold
        else f"oldest pending offset waited {waited:.0f}s >= {max_wait_s:.0f}s"
    )
    reason = f"{lag} offsets pending on {topic} ({ranges_label(pending)}): {why}"
    return KafkaDecision(True, reason, pending, run_key, KafkaCursor(pending_since, run_key, dict(high)))
