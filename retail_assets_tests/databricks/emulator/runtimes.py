"""The Databricks Runtimes the emulator knows, and what each provides to a task's Python.

A runtime is named by its `spark_version` key, as in a cluster spec. Only the runtime whose
Spark has the minor version of the pyspark installed here can really be emulated: the emulated
cluster's Python *is* this virtualenv. The others are still known, so that a submit naming them
is validated and a library that would replace their Spark is refused, before the emulator says
it cannot run them.

The package versions of the newest runtime are the ones installed in this virtualenv (its
pyspark being the runtime's Spark). Those of the older runtimes are stand-ins that follow
the shape of their release notes (the Spark version is exact; the others are approximate and
not checked against Databricks' published lists): only pyspark and delta-spark matter for the
checks the emulator makes.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, version

from packaging.markers import default_environment
from packaging.utils import canonicalize_name
from packaging.version import Version

# spark_version key → Apache Spark version of that runtime.
RUNTIME_SPARK: dict[str, str] = {
    "17.3.x-scala2.13": "4.0.0",
    "18.x-scala2.13": "4.1.0",
    "19.x-scala2.13": "4.2.0",
}
# Packages a runtime ships in its Python, besides pyspark (which is its Spark).
PROVIDED = ("delta-spark", "databricks-sdk", "pandas", "pyarrow")
# Stand-ins for the runtimes this virtualenv is not (see the module docstring).
_OLDER = {
    "17.3.x-scala2.13": (
        "3.12.3",
        {"delta-spark": "4.0.0", "databricks-sdk": "0.49.0", "pandas": "2.2.3", "pyarrow": "19.0.1"},
    ),
    "18.x-scala2.13": (
        "3.12.3",
        {"delta-spark": "4.0.0", "databricks-sdk": "0.67.0", "pandas": "2.2.3", "pyarrow": "21.0.0"},
    ),
}
# Packages whose replacement would replace the runtime's Spark (or its Delta Lake).
SPARK_PACKAGES = frozenset({"pyspark", "delta-spark"})


def installed_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Runtime:
    key: str  # the spark_version key, e.g. "19.x-scala2.13"
    spark: str  # Apache Spark version
    python: str  # full Python version of the runtime's interpreter
    packages: Mapping[str, str] = field(default_factory=dict)  # canonical name → version

    @property
    def spark_minor(self) -> tuple[int, int]:
        return minor(self.spark)

    @property
    def version_number(self) -> str:
        """What DATABRICKS_RUNTIME_VERSION holds on a cluster: "17.3", "19.x" → "19"."""
        number = self.key.split("-", 1)[0]
        return number.removesuffix(".x")

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values of the runtime's interpreter (Linux, CPython)."""
        env = dict(default_environment())
        major_minor = ".".join(self.python.split(".")[:2])
        env.update(
            python_version=major_minor,
            python_full_version=self.python,
            implementation_version=self.python,
            sys_platform="linux",
            platform_system="Linux",
            os_name="posix",
            implementation_name="cpython",
            platform_python_implementation="CPython",
        )
        return env


def minor(v: str) -> tuple[int, int]:
    release = Version(v).release
    return release[0], (release[1] if len(release) > 1 else 0)


@cache
def runtimes() -> dict[str, Runtime]:
    known: dict[str, Runtime] = {}
    for key, spark in RUNTIME_SPARK.items():
        if key in _OLDER:
            python, packages = _OLDER[key]
            provided = dict(packages)
        else:
            python = platform.python_version()
            provided = {name: v for name in PROVIDED if (v := installed_version(name)) is not None}
        provided["pyspark"] = spark
        known[key] = Runtime(key, spark, python, {canonicalize_name(k): v for k, v in provided.items()})
    return known


def emulation_problem(runtime: Runtime) -> str | None:
    """Why the emulated cluster cannot run `runtime`, or None when it can."""
    installed = installed_version("pyspark")
    if installed is None:
        return "pyspark is not installed in the emulated cluster's Python"
    if minor(installed) != runtime.spark_minor:
        return (
            f"the emulator cannot run Databricks Runtime {runtime.key}: it ships Spark {runtime.spark}, and the emulated "
            f"cluster's Python (this virtualenv) has pyspark {installed}; use a runtime with Spark "
            f"{'.'.join(map(str, minor(installed)))} ({', '.join(k for k, r in runtimes().items() if r.spark_minor == minor(installed)) or 'none known'})"
        )
    return None
