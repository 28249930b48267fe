"""The Files API (`/api/2.0/fs/files{path}`, `/api/2.0/fs/directories{path}`) on Unity Catalog
volumes, backed by `<root>/volumes/<catalog>/<schema>/<volume>/...`.

Emulated, as databricks-sdk's `FilesAPI` calls it: upload (PUT, raw body, `overwrite`, parents
created), download (GET, raw body, `Range: bytes=a-b` answered 206), metadata (HEAD:
Content-Length, Content-Type, Last-Modified), delete; directories: create (PUT, like
`mkdir -p`), metadata (HEAD), list (GET, `page_size` ≤ 1000 and an opaque `page_token`),
delete (empty directories only). A path must be `/Volumes/<catalog>/<schema>/<volume>/...`
(anything else: 400) of a volume that exists — in `emulator.catalog` when the Unity Catalog
emulation is present, else among those made with `create_volume` (otherwise 404 NOT_FOUND).
Catalog, schema and volume names are case-insensitive (their folders are lower case).

Listing entries carry `path`, `is_directory`, `name`; files also `file_size` and
`last_modified` (ms). A directory's `path` ends with "/" (as Databricks returns it).

Not emulated: the experimental client's multipart / resumable uploads and presigned URLs
(`POST /api/2.0/fs/files…?action=initiate-upload`, `fs/create-upload-part-urls`), the
`If-Unmodified-Since` header, permissions (every authenticated caller may read and write every
volume). Error codes follow the HTTP status Databricks documents (404 for a missing file or
directory, 409 for an existing file without overwrite); their exact wording is the emulator's.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
import shutil
from collections.abc import Mapping
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .dbfs import WRITING, write_atomically
from .errors import ApiError, RawResponse

if TYPE_CHECKING:
    from .workspace import WorkspaceEmulator

VOLUME = re.compile(r"/Volumes/(?P<catalog>[^/]+)/(?P<schema>[^/]+)/(?P<volume>[^/]+)(?P<rest>/.*)?")
MAX_PAGE = 1000  # Databricks' default and largest page of a directory listing
RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def not_found(what: str) -> ApiError:
    return ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", what)


class FilesApi:
    root: Path
    volumes_root: Path
    catalog: Any
    files_page_size: int
    _volumes: set[tuple[str, str, str]]

    # ---- volumes, for tests and the Unity Catalog emulation ---------------------------------

    def volume_exists(self, catalog: str, schema: str, volume: str) -> bool:
        if self.catalog is not None:
            return bool(self.catalog.volume_exists(catalog, schema, volume))
        return (catalog.lower(), schema.lower(), volume.lower()) in self._volumes

    def create_volume(self, catalog: str, schema: str, name: str) -> Path:
        """A volume and its folder (returned). With `emulator.catalog`, the volume is created
        there, with its catalog and schema when they do not exist yet."""
        if self.catalog is not None:
            for create, args in (
                ("create_catalog", (catalog,)),
                ("create_schema", (catalog, schema)),
                ("create_volume", (catalog, schema, name)),
            ):
                if hasattr(self.catalog, create):
                    try:
                        getattr(self.catalog, create)(*args)
                    except ApiError as exc:
                        if exc.status != HTTPStatus.CONFLICT:  # 409: it exists already
                            raise
        else:
            self._volumes.add((catalog.lower(), schema.lower(), name.lower()))
        folder = self.volumes_root / catalog.lower() / schema.lower() / name.lower()
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def volume_path(self, path: str) -> Path:
        """Where `/Volumes/c/s/v/x` (or `dbfs:/Volumes/...`) is on disk; whether the volume exists
        is not checked (drop files there for a test; the API will then serve them)."""
        p = path[len("dbfs:") :] if path.startswith("dbfs:") else path
        p = posixpath.normpath("/" + p.lstrip("/"))
        match = VOLUME.fullmatch(p)
        if match is None:
            raise ValueError(f"not a volume path (/Volumes/<catalog>/<schema>/<volume>/...): {path}")
        return self._volume_folder(match) / (match["rest"] or "/").lstrip("/")

    def _volume_folder(self, match: re.Match) -> Path:
        # Unity Catalog names are case-insensitive and stored in lower case.
        return self.volumes_root / match["catalog"].lower() / match["schema"].lower() / match["volume"].lower()

    def _volume_target(self, path: str) -> Path:
        """The disk path of a Files API path, once it is known to name an existing volume."""
        if not path.startswith("/"):
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", f"Path must be absolute: {path}")
        normal = posixpath.normpath(path)
        if not (normal == "/Volumes" or normal.startswith("/Volumes/")):
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                f"Invalid path {path}: the Files API accepts Unity Catalog volume paths /Volumes/<catalog>/<schema>/<volume>/... only",
            )
        match = VOLUME.fullmatch(normal)
        if match is None:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                f"Invalid path {path}: it names no volume (/Volumes/<catalog>/<schema>/<volume>/...)",
            )
        catalog, schema, volume = match["catalog"], match["schema"], match["volume"]
        if not self.volume_exists(catalog, schema, volume):
            raise not_found(f"Volume '{catalog}.{schema}.{volume}' does not exist.")
        folder = self._volume_folder(match)
        folder.mkdir(parents=True, exist_ok=True)  # a volume made through the catalog's REST API
        return folder / (match["rest"] or "/").lstrip("/")

    # ---- files ---------------------------------------------------------------------------

    def files_upload(self: WorkspaceEmulator, p: Mapping[str, Any], m: re.Match) -> RawResponse:
        target = self._volume_target(m["path"])
        overwrite = str(p.get("overwrite", "true")).lower() != "false"
        if target.is_dir():
            raise ApiError(HTTPStatus.CONFLICT, "ALREADY_EXISTS", f"A directory already exists at {m['path']}.")
        if target.exists() and not overwrite:
            raise ApiError(
                HTTPStatus.CONFLICT, "ALREADY_EXISTS", f"The file being created already exists: {m['path']}."
            )
        try:
            write_atomically(target, self.request.body)
        except (FileExistsError, NotADirectoryError):
            raise ApiError(
                HTTPStatus.CONFLICT,
                "ALREADY_EXISTS",
                f"A file exists where a parent directory of {m['path']} should be.",
            ) from None
        return RawResponse(HTTPStatus.NO_CONTENT)

    def _file(self, m: re.Match) -> Path:
        target = self._volume_target(m["path"])
        if not target.is_file():
            raise not_found(f"The file being accessed is not found: {m['path']}.")
        return target

    @staticmethod
    def _file_headers(target: Path, length: int | None = None) -> dict[str, str]:
        stat = target.stat()
        return {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(stat.st_size if length is None else length),
            "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
        }

    def files_download(self: WorkspaceEmulator, p: Mapping[str, Any], m: re.Match) -> RawResponse:
        target = self._file(m)
        data = target.read_bytes()
        wanted = self.request.header("Range")
        if wanted:
            match = RANGE.fullmatch(wanted.strip())
            if match is None or (not match[1] and not match[2]):
                raise ApiError(
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                    "INVALID_PARAMETER_VALUE",
                    f"Unsupported Range {wanted!r}",
                )
            if match[1]:
                start, end = int(match[1]), int(match[2]) if match[2] else len(data) - 1
            else:  # the last N bytes
                start, end = max(0, len(data) - int(match[2])), len(data) - 1
            if start >= len(data) or end < start:
                raise ApiError(
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                    "INVALID_PARAMETER_VALUE",
                    f"Range {wanted!r} outside a {len(data)}-byte file",
                )
            part = data[start : end + 1]
            headers = self._file_headers(target, len(part)) | {
                "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}"
            }
            return RawResponse(HTTPStatus.PARTIAL_CONTENT, headers, part)
        return RawResponse(HTTPStatus.OK, self._file_headers(target, len(data)), data)

    def files_get_metadata(self, p: Mapping[str, Any], m: re.Match) -> RawResponse:
        return RawResponse(HTTPStatus.OK, self._file_headers(self._file(m)))

    def files_delete(self, p: Mapping[str, Any], m: re.Match) -> RawResponse:
        target = self._volume_target(m["path"])
        if target.is_dir():
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                f"{m['path']} is a directory: delete it with DELETE /api/2.0/fs/directories",
            )
        if not target.exists():
            raise not_found(f"The file being deleted is not found: {m['path']}.")
        target.unlink()
        return RawResponse(HTTPStatus.NO_CONTENT)

    # ---- directories ---------------------------------------------------------------------

    def directories_create(self, p: Mapping[str, Any], m: re.Match) -> RawResponse:
        target = self._volume_target(m["path"])
        try:
            target.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ApiError(
                HTTPStatus.CONFLICT, "ALREADY_EXISTS", f"A file exists at {m['path']} or one of its parents."
            ) from None
        return RawResponse(HTTPStatus.NO_CONTENT)

    def _directory(self, m: re.Match) -> Path:
        target = self._volume_target(m["path"])
        if not target.is_dir():
            raise not_found(f"The directory being accessed is not found: {m['path']}.")
        return target

    def directories_get_metadata(self, p: Mapping[str, Any], m: re.Match) -> RawResponse:
        self._directory(m)
        return RawResponse(HTTPStatus.OK)

    def directories_list(self, p: Mapping[str, Any], m: re.Match) -> dict[str, Any]:
        folder = self._directory(m)
        base = posixpath.normpath(m["path"]).rstrip("/")
        size = int(p.get("page_size") or MAX_PAGE)
        if size < 0:
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", f"page_size must not be negative: {size}")
        size = min(size or MAX_PAGE, MAX_PAGE, self.files_page_size)
        after = ""
        if p.get("page_token"):
            try:
                token = json.loads(base64.urlsafe_b64decode(p["page_token"].encode()))
                after = token["after"]
                if token["path"] != base:
                    raise ValueError(token["path"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(
                    HTTPStatus.BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    "Invalid page_token: it belongs to no listing of this directory.",
                ) from None
        names = sorted(c.name for c in folder.iterdir() if not c.name.endswith(WRITING))
        remaining = [n for n in names if n > after]
        page, more = remaining[:size], len(remaining) > size
        contents = []
        for name in page:
            child = folder / name
            try:
                stat = child.stat()
            except FileNotFoundError:
                continue  # deleted while listing
            if child.is_dir():
                contents.append({"path": f"{base}/{name}/", "is_directory": True, "name": name})
            else:
                contents.append(
                    {
                        "path": f"{base}/{name}",
                        "is_directory": False,
                        "file_size": stat.st_size,
                        "last_modified": int(stat.st_mtime * 1000),
                        "name": name,
                    }
                )
        out: dict[str, Any] = {"contents": contents}
        if more:
            out["next_page_token"] = base64.urlsafe_b64encode(
                json.dumps({"path": base, "after": page[-1]}).encode()
            ).decode()
        return out

    def directories_delete(self, p: Mapping[str, Any], m: re.Match) -> RawResponse:
        target = self._directory(m)
        if VOLUME.fullmatch(posixpath.normpath(m["path"]))["rest"] in (None, "/"):
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                f"{m['path']} is the root of a volume: drop the volume instead.",
            )
        if any(target.iterdir()):
            raise ApiError(
                HTTPStatus.CONFLICT,
                "DIRECTORY_NOT_EMPTY",
                f"The directory is not empty: {m['path']}. Delete its contents first.",
            )
        shutil.rmtree(target)
        return RawResponse(HTTPStatus.NO_CONTENT)


_FILES = re.compile(r"/api/2\.0/fs/files(?P<path>/.*)")
_DIRECTORIES = re.compile(r"/api/2\.0/fs/directories(?P<path>/.*)")

PATTERN_ROUTES = [
    ("PUT", _FILES, FilesApi.files_upload),
    ("GET", _FILES, FilesApi.files_download),
    ("HEAD", _FILES, FilesApi.files_get_metadata),
    ("DELETE", _FILES, FilesApi.files_delete),
    ("PUT", _DIRECTORIES, FilesApi.directories_create),
    ("HEAD", _DIRECTORIES, FilesApi.directories_get_metadata),
    ("GET", _DIRECTORIES, FilesApi.directories_list),
    ("DELETE", _DIRECTORIES, FilesApi.directories_delete),
]
