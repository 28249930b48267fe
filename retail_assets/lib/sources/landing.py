"""Landing-zone scanning: which files are complete and ready to be ingested, and on which day
they arrived.

A file counts once it is complete: temporary names (`.tmp`, `.part`, …) are still being
written, names starting with `.` or `_` are never read (hidden files, `_SUCCESS` markers), and a
file modified less than `stable_seconds` ago may still be growing. Arrival date is the nearest
`YYYY-MM-DD` folder a file sits in, else the UTC date of its modification time.

The scan walks the tree with `os.scandir` and trusts directory-entry types, so it costs one
`stat` per candidate file and never resolves individual paths: symlinks are skipped outright,
which is what keeps every file it returns inside the landing root.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from retail_assets.lib.engine.base import PartitionRange

TEMPORARY_SUFFIXES = (".tmp", ".part", ".inprogress", ".crdownload")
IGNORED_PREFIXES = (".", "_")

_DATE_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class LandingFile:
    path: Path  # absolute path: on disk, or in a volume (`/Volumes/...`) for a listing through the Files API
    relative: str  # '/'-separated, relative to the landing root: `sales/2026-10-01/pos_S001_20261001.csv`
    source: str  # landing folder: sales, customers, products, stores, inventory
    arrival_date: dt.date
    size: int
    mtime: float


def _date_folder(name: str) -> dt.date | None:
    if not _DATE_FOLDER.match(name):
        return None
    try:
        return dt.date.fromisoformat(name)
    except ValueError:  # 2026-13-45 looks like a date folder but is not one
        return None


def arrival_date_of(relative_path: str, mtime: float) -> dt.date:
    """The nearest `YYYY-MM-DD` folder component of the path, else the UTC date of `mtime`."""
    for part in reversed(relative_path.split("/")[:-1]):
        day = _date_folder(part)
        if day is not None:
            return day
    return dt.datetime.fromtimestamp(mtime, dt.UTC).date()


def _acceptable_name(name: str) -> bool:
    if name.startswith(IGNORED_PREFIXES) or name.lower().endswith(TEMPORARY_SUFFIXES):
        return False
    if _CONTROL.search(name):
        return False
    try:
        # names with bytes that are not UTF-8 come back with surrogate escapes; a Bronze
        # `_source` must be text, so such a file is left for a person to rename
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _inside(child: Path, root: Path) -> bool:
    return child == root or root in child.parents


def scan_landing(
    landing_root: str | Path,
    source: str,
    *,
    partitions: PartitionRange | None = None,
    stable_seconds: float = 0,
    now: float | None = None,
) -> list[LandingFile]:
    """Complete files under `<landing_root>/<source>/`, sorted by relative path.

    With `partitions`, only files whose arrival date falls inside the range. With
    `stable_seconds > 0`, files modified after `now - stable_seconds` are still being written and
    are left for a later scan.
    """
    root = Path(landing_root).absolute()
    top = root / source
    if not top.is_dir():
        return []
    # The only place a path could leave the landing root without a symlink entry below is the
    # source folder itself (or the root) being a link somewhere else.
    resolved_root = root.resolve()
    if not _inside(top.resolve(), resolved_root):
        return []
    cutoff = None
    if stable_seconds > 0:
        cutoff = (time.time() if now is None else now) - stable_seconds

    found: list[LandingFile] = []
    # (directory path, relative prefix with trailing '/', nearest date folder so far)
    stack: list[tuple[str, str, dt.date | None]] = [(str(top), f"{source}/", None)]
    while stack:
        directory, prefix, folder_day = stack.pop()
        try:
            entries = os.scandir(directory)
        except OSError:  # vanished or unreadable between listing and opening: next scan retries
            continue
        with entries:
            for entry in entries:
                name = entry.name
                if not _acceptable_name(name):
                    continue
                try:
                    if entry.is_symlink():
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        day = _date_folder(name)
                        stack.append((entry.path, f"{prefix}{name}/", day or folder_day))
                        continue
                    if not entry.is_file(follow_symlinks=False):
                        continue  # sockets, fifos, devices
                    st = entry.stat(follow_symlinks=False)
                except OSError:  # deleted while we looked
                    continue
                if cutoff is not None and st.st_mtime > cutoff:
                    continue
                arrival = folder_day or dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).date()
                if partitions is not None and not (partitions.start <= arrival <= partitions.end):
                    continue
                found.append(
                    LandingFile(
                        path=Path(entry.path),
                        relative=f"{prefix}{name}",
                        source=source,
                        arrival_date=arrival,
                        size=st.st_size,
                        mtime=st.st_mtime,
                    )
                )
    found.sort(key=lambda f: f.relative)
    return found


def listed_landing_file(
    landing_root: str,
    path: str,
    *,
    size: int,
    mtime: float,
    partitions: PartitionRange | None = None,
    stable_seconds: float = 0,
    now: float | None = None,
) -> LandingFile | None:
    """The `LandingFile` of one file a listing returned (the Files API on a volume), judged by the
    rules `scan_landing` applies on disk; None for a file that does not count (yet)."""
    root = landing_root.rstrip("/") + "/"
    if not path.startswith(root):
        return None
    relative = path[len(root) :]
    parts = relative.split("/")
    if len(parts) < 2 or not all(parts) or not all(_acceptable_name(p) for p in parts):
        return None
    if stable_seconds > 0 and mtime > (time.time() if now is None else now) - stable_seconds:
        return None
    arrival = arrival_date_of(relative, mtime)
    if partitions is not None and not (partitions.start <= arrival <= partitions.end):
        return None
    return LandingFile(
        path=Path(path), relative=relative, source=parts[0], arrival_date=arrival, size=size, mtime=mtime
    )
