"""Checks a command runs before it touches anything: each failure is one line saying what to do.

A command lists the checks it needs (`run_checks`); the first that fails raises `Preflight`,
which the command line prints as `error: …` and exits 2, with nothing created, deleted or started.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from retail_assets.lib import settings

JAVA_MAJOR = 17  # Spark 4 and Kafka 4 both need 17 or newer
JAVA_INSTALL = "apt-get install openjdk-17-jre-headless"


class Preflight(RuntimeError):
    """A check failed: the message is one line a person can act on."""


Check = Callable[[], None]


def run_checks(checks: Iterable[Check]) -> None:
    for check in checks:
        check()


def java() -> Check:
    def check() -> None:
        home = os.environ.get("JAVA_HOME")
        binary = str(Path(home) / "bin" / "java") if home else shutil.which("java")
        if not binary or not Path(binary).exists():
            where = f"JAVA_HOME={home} has no bin/java" if home else "`java` is not on PATH"
            raise Preflight(
                f"Java {JAVA_MAJOR}+ is needed (Spark and the Kafka broker run on it) and {where}: install it ({JAVA_INSTALL}) or set JAVA_HOME"
            )
        try:
            done = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Preflight(
                f"{binary} -version failed ({exc}); install Java {JAVA_MAJOR}+ ({JAVA_INSTALL}) or set JAVA_HOME"
            ) from None
        major = java_major(done.stderr + done.stdout)
        if major is None or major < JAVA_MAJOR:
            found = f"Java {major}" if major else "a Java whose version it could not read"
            raise Preflight(
                f"{binary} is {found}; Java {JAVA_MAJOR}+ is needed: install it ({JAVA_INSTALL}) or point JAVA_HOME at one"
            )

    return check


def java_major(version_output: str) -> int | None:
    """The major version in `java -version` output (`"17.0.9"` → 17, `"1.8.0_392"` → 8)."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def jvm_artifacts(*bundles: str) -> Check:
    def check() -> None:
        from retail_assets.lib.engine import jvm

        missing = [b for b in bundles if not jvm.is_fetched(b)]
        if missing:
            raise Preflight(
                f"the JVM artifacts of {', '.join(missing)} are not in {jvm.cache_root()} (or are for other pins): "
                "fetch them once with `python -m retail_assets.lib.engine.jvm fetch` (needs Maven: apt-get install maven)"
            )

    return check


def modules(extra: str, *names: str) -> Check:
    """The optional dependencies of a command (`pip install -e '.[extra]'`)."""

    def check() -> None:
        import importlib.util

        missing = [n for n in names if importlib.util.find_spec(n) is None]
        if missing:
            raise Preflight(
                f"this command needs {', '.join(missing)}, from the project's `{extra}` extra: .venv/bin/pip install -e '.[{extra}]'"
            )

    return check


def postgres() -> Check:
    """Debian's PostgreSQL binaries (`retail-assets database`, the database tests)."""

    def check() -> None:
        from retail_assets.lib.sources.database import DatabaseUnavailable
        from retail_assets.tooling.database import postgres_bin_dir

        try:
            postgres_bin_dir()
        except DatabaseUnavailable as exc:
            raise Preflight(str(exc)) from None

    return check


def port_free(port: int | None, what: str, option: str) -> Check:
    def check() -> None:
        from retail_assets.tooling.broker import port_is_free

        if port and not port_is_free(port):
            raise Preflight(
                f"port {port} ({what}) is already in use on 127.0.0.1: stop what holds it, or pass {option} with a free port"
            )

    return check


def settings_valid(*, local: bool = True) -> Check:
    """Every `RETAIL_*` value the project reads parses; with `local`, the environment is local."""

    def check() -> None:
        readers = {
            "RETAIL_ENV": settings.get_environment,
            "RETAIL_LATENESS_DAYS": settings.lateness_days,
            "RETAIL_LOCAL_ENGINE": settings.local_engine,
            "RETAIL_SENSORS_DEFAULT": settings.sensors_running_by_default,
            "RETAIL_KAFKA_LAG_THRESHOLD": settings.kafka_lag_threshold,
            "RETAIL_KAFKA_MAX_WAIT_SECONDS": settings.kafka_max_wait_seconds,
            "RETAIL_PARTITIONS_START": lambda: dt.date.fromisoformat(settings.partitions_start()),
        }
        for name, read in readers.items():
            try:
                read()
            except ValueError as exc:
                text = str(exc)
                raise Preflight(
                    text if name in text else f"{name}={os.environ.get(name)!r} is not valid: {text}"
                ) from None
        if local and settings.get_environment() is not settings.Environment.LOCAL:
            raise Preflight(
                f"{settings.ENV_VAR}={os.environ.get(settings.ENV_VAR)} selects Databricks; this command runs the local environment: "
                f"unset {settings.ENV_VAR} (or set it to local)"
            )

    return check


def writable(root: Path, what: str, option: str) -> Check:
    """`root` can be created or written (nothing is created to find out)."""

    def check() -> None:
        existing = root
        while not existing.exists():
            if existing.parent == existing:
                break
            existing = existing.parent
        if existing.exists() and not existing.is_dir():
            raise Preflight(f"{what} {root} is not a folder ({existing} is a file): pass {option} with a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise Preflight(
                f"{what} {root} cannot be written ({existing} is not writable by this user): pass {option} with a folder you own"
            )

    return check
