"""What a cluster's library installation would do with a task's `libraries`.

Emulated: a `whl` library is opened as the wheel it must be (a zip whose file name is a valid
wheel name, with exactly one `*.dist-info/METADATA` naming the same distribution and version),
its tags and `Requires-Python` are checked against the runtime's interpreter, and its
unconditional `Requires-Dist` entries (markers evaluated for the runtime's Python, extras not
requested) are resolved against what the runtime provides and what this virtualenv has:

- a requirement on a package the runtime provides (pyspark, delta-spark, databricks-sdk, pandas,
  pyarrow) that the runtime's version does not satisfy fails the installation — pip would
  install another version over the runtime's (for pyspark: another Spark). Databricks itself
  lets pip do that; the emulator refuses, which is the point of checking. For pyspark and
  delta-spark the specifier is checked even when an environment marker (other than an extra)
  makes the requirement conditional;
- any other requirement must be installed in this virtualenv in a satisfying version, since the
  emulator installs nothing (a real cluster would fetch it from PyPI).

A `pypi` library naming pyspark or delta-spark fails; any other must be installed here and
match its pin. JVM libraries (jar, maven), eggs and requirements files are refused.

Not emulated: the installation itself. The cluster's Python is this virtualenv, where the
project is already installed; a wheel is inspected, never installed, and its status says so.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from .runtimes import SPARK_PACKAGES, Runtime, installed_version

METADATA = re.compile(r"[^/]+\.dist-info/METADATA")


class LibraryError(Exception):
    """Why a library cannot be installed; the message is the run's reason."""


@dataclass(frozen=True)
class WheelInfo:
    name: str
    version: str
    requires_dist: tuple[str, ...]
    requires_python: str | None
    tags: frozenset[Tag]


def read_wheel(path: Path, shown: str) -> WheelInfo:
    """The metadata of the wheel at `path` (`shown` is how the task named it)."""
    if not path.is_file():
        raise LibraryError(f"wheel {shown} does not exist")
    try:
        name, version, _build, tags = parse_wheel_filename(path.name)
    except InvalidWheelFilename as exc:
        raise LibraryError(f"{shown} is not a valid wheel file name: {exc}") from None
    try:
        with zipfile.ZipFile(path) as zf:
            metadata = [n for n in zf.namelist() if METADATA.fullmatch(n)]
            if len(metadata) != 1:
                found = "no *.dist-info/METADATA" if not metadata else f"{len(metadata)} *.dist-info/METADATA files"
                raise LibraryError(f"{shown} is not a wheel: {found} in it")
            raw = zf.read(metadata[0])
    except zipfile.BadZipFile:
        raise LibraryError(f"{shown} is not a wheel: not a zip archive") from None
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    meta_name, meta_version = message.get("Name"), message.get("Version")
    if not meta_name or not meta_version:
        raise LibraryError(f"{shown} is not a wheel: its METADATA has no Name or Version")
    if canonicalize_name(meta_name) != name or Version(meta_version) != version:
        raise LibraryError(
            f"{shown} is invalid: its file name says {name} {version}, its METADATA {meta_name} {meta_version}"
        )
    return WheelInfo(
        meta_name,
        meta_version,
        tuple(message.get_all("Requires-Dist") or ()),
        message.get("Requires-Python"),
        frozenset(tags),
    )


def supported_tags(runtime: Runtime) -> set[Tag]:
    python = tuple(int(x) for x in runtime.python.split(".")[:2])
    return set(cpython_tags(python_version=python)) | set(compatible_tags(python_version=python))


def wheel_problem(wheel: WheelInfo, runtime: Runtime, shown: str) -> str | None:
    """Why pip on `runtime` would refuse, or break the runtime with, this wheel."""
    label = f"{wheel.name} {wheel.version} ({shown})"
    if not wheel.tags & supported_tags(runtime):
        return f"{shown} is not a supported wheel on this platform (Python {runtime.python}, Linux)"
    if wheel.requires_python:
        try:
            allowed = SpecifierSet(wheel.requires_python)
        except InvalidSpecifier:
            return f"{label} has an invalid Requires-Python {wheel.requires_python!r}"
        if not allowed.contains(runtime.python, prereleases=True):
            return f"{label} requires a different Python: {runtime.python} not in {wheel.requires_python!r}"
    env = runtime.marker_environment()
    for line in wheel.requires_dist:
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            return f"{label} has an invalid Requires-Dist {line!r}: {exc}"
        name = canonicalize_name(req.name)
        marker = str(req.marker) if req.marker else ""
        if "extra" in marker and not req.marker.evaluate({**env, "extra": ""}):
            continue  # only with an extra nobody requested
        applies = req.marker is None or req.marker.evaluate({**env, "extra": ""})
        if name in runtime.packages and (applies or name in SPARK_PACKAGES):
            provided = runtime.packages[name]
            if not req.specifier.contains(provided, prereleases=True):
                what = "Spark" if name == "pyspark" else name
                return (
                    f"{label} requires {line}, but Databricks Runtime {runtime.key} provides {name} {provided}: "
                    f"installing it would replace the runtime's own {what}"
                )
            continue
        if not applies:
            continue
        installed = installed_version(name)
        if installed is None:
            return (
                f"{label} requires {line}, which is not installed on the emulated cluster "
                "(its Python is the test virtualenv and the emulator installs nothing)"
            )
        if not req.specifier.contains(installed, prereleases=True):
            return f"{label} requires {line}, but the emulated cluster has {name} {installed}"
    return None


def pypi_problem(spec: str) -> str | None:
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        return f"{spec}: not a valid requirement ({exc})"
    name = canonicalize_name(req.name)
    if name in SPARK_PACKAGES:
        return f"{spec} would replace the Databricks Runtime's own Spark"
    installed = installed_version(name)
    if installed is None:
        return f"{spec}: no such package on the emulated cluster"
    if req.specifier and not req.specifier.contains(installed, prereleases=True):
        return f"{spec} conflicts with {name}=={installed} on the cluster"
    return None


def install_libraries(
    libraries: list[dict[str, Any]], runtime: Runtime, locate: Callable[[str], Path]
) -> tuple[list[dict[str, Any]], str | None]:
    """Library statuses as `libraries/cluster-status` reports them, and the first failure.

    `locate` maps a library path (`dbfs:/…`, `/Volumes/…`) onto the emulator's disk, raising
    LibraryError when the path cannot be read from a cluster.
    """
    statuses: list[dict[str, Any]] = []
    problem: str | None = None
    for lib in libraries:
        status: dict[str, Any] = {"library": lib, "is_library_for_all_clusters": False}
        statuses.append(status)
        if problem is not None:
            status.update(status="SKIPPED", messages=["An earlier library failed to install."])
            continue
        messages: list[str] = []
        try:
            if "pypi" in lib:
                failure = pypi_problem(lib["pypi"]["package"])
            elif "whl" in lib:
                path = lib["whl"]
                wheel = read_wheel(locate(path), path)
                failure = wheel_problem(wheel, runtime, path)
                messages.append(f"{wheel.name}=={wheel.version}")
                present = installed_version(wheel.name)
                if present is not None:
                    messages.append(
                        f"emulated: the cluster's Python runs the virtualenv's {canonicalize_name(wheel.name)} {present}, not the wheel's files"
                    )
            elif "jar" in lib or "maven" in lib:
                failure = f"JVM libraries cannot be emulated: {lib}"
            elif "egg" in lib:
                failure = f"Python eggs are not supported on Databricks Runtime {runtime.key}: {lib['egg']}"
            else:
                failure = f"library type not emulated: {lib}"
        except LibraryError as exc:
            failure = str(exc)
        if failure is None:
            status.update(status="INSTALLED", messages=messages)
        else:
            problem = failure
            status.update(status="FAILED", messages=[*messages, failure])
    return statuses, problem
