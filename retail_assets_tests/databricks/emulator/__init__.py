"""A Databricks workspace on loopback, for tests only (SPEC §10).

It speaks the REST subset that dagster-databricks' step launcher, the project's code server and
databricks-sdk's `WorkspaceClient` call, each described in its module:

- `dbfs`: DBFS (create / add-block / close, put, read, get-status, list, mkdirs, delete) and
  secrets (scopes/create, put); DBFS root can be disabled (`dbfs_root_enabled=False`);
- `files`: the Files API on Unity Catalog volumes (`/Volumes/<catalog>/<schema>/<volume>/...`);
- `jobs`: runs/submit, get, get-output, cancel — each task run in a fresh Python process with
  only a cluster's environment, in a private mount namespace where `/Volumes` (and `/dbfs`)
  are the emulator's folders, as a cluster's FUSE mounts;
- `compute`: all-purpose clusters, job clusters, instance pools, runtimes, library statuses;
- `libraries` / `runtimes`: what library installation on a known Databricks Runtime would do;
- `oauth`: OAuth machine-to-machine tokens for service principals, next to the PAT.

Regex routes of another emulated API (Unity Catalog + SQL warehouse,
`retail_assets_tests/databricks/unity_catalog.py`: `ROUTES` and `UnityCatalog`) are wired in by
`workspace._extra_routes()` and `WorkspaceEmulator.catalog` when that module exists.

What it cannot stand in for: the cluster's Python environment is this project's virtualenv
(which has the project installed, standing in for the wheel library: wheels are inspected, not
installed), so only the runtime whose Spark matches the installed pyspark runs tasks; Spark is
a local session or the Spark Connect server given as `spark_remote`; Unity Catalog is whatever
`catalog` emulates (tables are otherwise Spark's session catalog on the emulator's disk).
Delta itself is real: steps write through Delta Lake's Spark jar (delta-spark), as on Databricks.
"""

from __future__ import annotations

from .compute import UC_ACCESS_MODES, ClusterStart, EmulatedCluster
from .dbfs import DBFS_DISABLED, MAX_BLOCK_BYTES, normalize_dbfs
from .errors import ApiError, RawResponse, Request
from .jobs import CLUSTER_BASE_ENV, CLUSTER_MAIN, TASK_KEY, ClusterIsolationError, EmulatedRun
from .libraries import LibraryError, WheelInfo, install_libraries, read_wheel
from .oauth import IssuedToken
from .runtimes import RUNTIME_SPARK, Runtime, runtimes
from .workspace import PATTERN_ROUTES, ROUTES, UNITY_CATALOG_MODULE, WorkspaceEmulator, _extra_routes

__all__ = [
    "CLUSTER_BASE_ENV",
    "CLUSTER_MAIN",
    "DBFS_DISABLED",
    "MAX_BLOCK_BYTES",
    "PATTERN_ROUTES",
    "ROUTES",
    "RUNTIME_SPARK",
    "TASK_KEY",
    "UC_ACCESS_MODES",
    "UNITY_CATALOG_MODULE",
    "ApiError",
    "ClusterIsolationError",
    "ClusterStart",
    "EmulatedCluster",
    "EmulatedRun",
    "IssuedToken",
    "LibraryError",
    "RawResponse",
    "Request",
    "Runtime",
    "WheelInfo",
    "WorkspaceEmulator",
    "_extra_routes",
    "install_libraries",
    "normalize_dbfs",
    "read_wheel",
    "runtimes",
]
