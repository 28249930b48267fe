"""DBFS (`/api/2.0/dbfs/*`) on the emulator's `<root>/dbfs` folder, and secrets.

DBFS is what dagster-databricks' step launcher uploads through (create / add-block / close) and
reads back from; put, read, get-status, list, mkdirs and delete are there too, with DBFS' 1 MB
block limits. With `dbfs_root_enabled=False` every DBFS call fails as on a workspace whose DBFS
root is disabled (see `DBFS_DISABLED`).
"""

from __future__ import annotations

import base64
import posixpath
import shutil
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ApiError

if TYPE_CHECKING:
    from .workspace import WorkspaceEmulator

WRITING = ".writing"  # suffix of a file being written; listings skip it
MAX_BLOCK_BYTES = 1024 * 1024  # DBFS add-block and read refuse more than 1 MB
DBFS_DISABLED = (
    "DBFS root is disabled on this workspace: access to DBFS root and DBFS mounts is not allowed. "
    "Use Unity Catalog volumes (/Volumes/<catalog>/<schema>/<volume>/...) through the Files API instead."
)


def normalize_dbfs(path: str) -> str:
    """`dbfs:/a`, `dbfs:///a`, `//a`, `/a` all name DBFS path `/a`."""
    p = str(path)
    if p.startswith("dbfs:"):
        p = p[len("dbfs:") :]
    return posixpath.normpath("/" + p.lstrip("/"))


def is_volume_path(path: str) -> bool:
    """`/Volumes/...` or `dbfs:/Volumes/...`: a Unity Catalog volume, reachable without DBFS root."""
    p = normalize_dbfs(path) if str(path).startswith("dbfs:") else posixpath.normpath(str(path)) if path else ""
    return p == "/Volumes" or p.startswith("/Volumes/")


def uses_dbfs_root(path: str) -> bool:
    """A path a cluster reads from DBFS root: `dbfs:/x` or `/dbfs/x`, but not a volume."""
    p = str(path)
    if p.startswith("dbfs:"):
        return not is_volume_path(p)
    return p == "/dbfs" or p.startswith("/dbfs/")


class DbfsApi:
    dbfs_root: Path
    dbfs_root_enabled: bool

    def dbfs_file(self, dbfs_path: str) -> Path:
        return self.dbfs_root / normalize_dbfs(dbfs_path).lstrip("/")

    def _local(self: WorkspaceEmulator, path: str) -> Path:
        if not path or not str(path).startswith(("/", "dbfs:")):
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", f"Path must be absolute: {path}")
        return self.dbfs_file(path)

    def _status(self, path: Path, dbfs_path: str) -> dict[str, Any]:
        if not path.exists():
            raise ApiError(
                HTTPStatus.NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {dbfs_path}."
            )
        return {
            "path": normalize_dbfs(dbfs_path),
            "is_dir": path.is_dir(),
            "file_size": 0 if path.is_dir() else path.stat().st_size,
            "modification_time": int(path.stat().st_mtime * 1000),
        }

    def dbfs_get_status(self, p: Mapping[str, Any]) -> dict[str, Any]:
        return self._status(self._local(p["path"]), p["path"])

    def dbfs_list(self, p: Mapping[str, Any]) -> dict[str, Any]:
        path = self._local(p["path"])
        self._status(path, p["path"])
        if path.is_file():
            return {"files": [self._status(path, p["path"])]}
        base = normalize_dbfs(p["path"]).rstrip("/")
        return {"files": [self._status(c, f"{base}/{c.name}") for c in sorted(path.iterdir())]}

    def dbfs_mkdirs(self, p: Mapping[str, Any]) -> dict[str, Any]:
        path = self._local(p["path"])
        if path.is_file():
            raise ApiError(HTTPStatus.BAD_REQUEST, "RESOURCE_ALREADY_EXISTS", f"A file exists at {p['path']}")
        path.mkdir(parents=True, exist_ok=True)
        return {}

    def dbfs_create(self: WorkspaceEmulator, p: Mapping[str, Any]) -> dict[str, Any]:
        path = self._local(p["path"])
        if path.exists() and not p.get("overwrite", False):
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "RESOURCE_ALREADY_EXISTS",
                f"A file or directory already exists at the input path {p['path']}.",
            )
        handle = self._new_id()
        with self._lock:
            self._handles[handle] = (p["path"], bytearray())
        return {"handle": handle}

    def dbfs_add_block(self: WorkspaceEmulator, p: Mapping[str, Any]) -> dict[str, Any]:
        block = base64.b64decode(p["data"])
        if len(block) > MAX_BLOCK_BYTES:
            raise ApiError(HTTPStatus.BAD_REQUEST, "MAX_BLOCK_SIZE_EXCEEDED", "Block size exceeds 1 MB")
        with self._lock:
            if int(p["handle"]) not in self._handles:
                raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_STATE", f"Unknown handle {p['handle']}")
            self._handles[int(p["handle"])][1].extend(block)
        return {}

    def dbfs_close(self: WorkspaceEmulator, p: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            if int(p["handle"]) not in self._handles:
                raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_STATE", f"Unknown handle {p['handle']}")
            dbfs_path, content = self._handles.pop(int(p["handle"]))
        write_atomically(self._local(dbfs_path), bytes(content))
        return {}

    def dbfs_put(self, p: Mapping[str, Any]) -> dict[str, Any]:
        path = self._local(p["path"])
        if path.exists() and not p.get("overwrite", False):
            raise ApiError(HTTPStatus.BAD_REQUEST, "RESOURCE_ALREADY_EXISTS", f"A file already exists at {p['path']}.")
        write_atomically(path, base64.b64decode(p.get("contents", "")))
        return {}

    def dbfs_read(self, p: Mapping[str, Any]) -> dict[str, Any]:
        path = self._local(p["path"])
        self._status(path, p["path"])
        if path.is_dir():
            raise ApiError(HTTPStatus.BAD_REQUEST, "NOT_A_FILE", f"{p['path']} is a directory")
        offset, length = int(p.get("offset", 0)), int(p.get("length", 0) or MAX_BLOCK_BYTES)
        if length > MAX_BLOCK_BYTES:
            raise ApiError(HTTPStatus.BAD_REQUEST, "MAX_READ_SIZE_EXCEEDED", "Cannot read more than 1 MB at once")
        with path.open("rb") as f:
            f.seek(offset)
            chunk = f.read(length)
        return {"bytes_read": len(chunk), "data": base64.b64encode(chunk).decode()}

    def dbfs_delete(self, p: Mapping[str, Any]) -> dict[str, Any]:
        path = self._local(p["path"])
        if path.is_dir():
            if any(path.iterdir()) and not p.get("recursive", False):
                raise ApiError(HTTPStatus.BAD_REQUEST, "IO_ERROR", f"{p['path']} is a non-empty directory")
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        return {}


class SecretsApi:
    secrets: dict[tuple[str, str], str]

    def secrets_create_scope(self, p: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def secrets_put(self, p: Mapping[str, Any]) -> dict[str, Any]:
        self.secrets[(p["scope"], p["key"])] = p["string_value"]
        return {}


def write_atomically(path: Path, content: bytes) -> None:
    """Written under a temporary name and renamed, so a concurrent read never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{WRITING}")
    tmp.write_bytes(content)
    tmp.replace(path)


ROUTES = {
    ("GET", "/api/2.0/dbfs/get-status"): DbfsApi.dbfs_get_status,
    ("GET", "/api/2.0/dbfs/list"): DbfsApi.dbfs_list,
    ("GET", "/api/2.0/dbfs/read"): DbfsApi.dbfs_read,
    ("POST", "/api/2.0/dbfs/mkdirs"): DbfsApi.dbfs_mkdirs,
    ("POST", "/api/2.0/dbfs/create"): DbfsApi.dbfs_create,
    ("POST", "/api/2.0/dbfs/add-block"): DbfsApi.dbfs_add_block,
    ("POST", "/api/2.0/dbfs/close"): DbfsApi.dbfs_close,
    ("POST", "/api/2.0/dbfs/put"): DbfsApi.dbfs_put,
    ("POST", "/api/2.0/dbfs/delete"): DbfsApi.dbfs_delete,
    ("POST", "/api/2.0/secrets/scopes/create"): SecretsApi.secrets_create_scope,
    ("POST", "/api/2.0/secrets/put"): SecretsApi.secrets_put,
}
