"""Clusters, instance pools and library statuses (`/api/2.1/clusters/*`,
`/api/2.0/instance-pools/*`, `/api/2.0/libraries/cluster-status`).

Emulated: an all-purpose cluster (`clusters/create`, or `ws.create_cluster(...)`) moves PENDING →
RUNNING after the start-up delay, `clusters/delete` terminates it, `clusters/start` starts a
TERMINATED one again; `clusters/get` / `list` report it. A job cluster is made per submitted run
(`cluster_source` JOB) and is TERMINATED when its run ends. Instance pools are records a
`new_cluster` may name (`instance_pool_id`, `driver_instance_pool_id`); a cluster from a pool
starts after `pool_startup_seconds` instead of `startup_seconds`. A cluster spec is validated
when it is created or submitted: a known `spark_version` (see `runtimes.py`), an existing pool,
and — with `require_unity_catalog_access_mode` — a Unity Catalog access mode.

Not emulated: machines (one "cluster" is a process per run, see `jobs.py`), autoscaling,
node types, policies, init scripts, cluster permissions, idle auto-termination.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from .errors import ApiError
from .runtimes import Runtime, runtimes

if TYPE_CHECKING:
    from .workspace import WorkspaceEmulator

# Access modes in which a cluster reaches Unity Catalog (the DATA_SECURITY_MODE_* names are the
# newer names, "dedicated" and "standard", and AUTO lets Databricks pick one of them).
UC_ACCESS_MODES = frozenset(
    {
        "SINGLE_USER",
        "USER_ISOLATION",
        "DATA_SECURITY_MODE_DEDICATED",
        "DATA_SECURITY_MODE_STANDARD",
        "DATA_SECURITY_MODE_AUTO",
    }
)
_serial = itertools.count(1)


@dataclass
class EmulatedCluster:
    cluster_id: str
    spec: dict[str, Any]
    source: str  # "API" (all-purpose) or "JOB"
    state: str = "PENDING"
    state_message: str = "Starting Spark"
    ready_at: float = 0.0  # monotonic time at which a PENDING cluster is RUNNING
    start_time: int = field(default_factory=lambda: int(time.time() * 1000))
    terminated_time: int = 0

    def refresh(self) -> str:
        if self.state == "PENDING" and time.monotonic() >= self.ready_at:
            self.state, self.state_message = "RUNNING", ""
        return self.state

    @property
    def instance_pool_id(self) -> str | None:
        return self.spec.get("instance_pool_id")


@dataclass(frozen=True)
class ClusterStart:
    """One start of a job cluster (`WorkspaceEmulator.clusters_created`)."""

    cluster_id: str
    run_id: int
    spark_version: str
    instance_pool_id: str | None

    @property
    def from_pool(self) -> bool:
        return self.instance_pool_id is not None


class ComputeApi:
    clusters: dict[str, EmulatedCluster]
    instance_pools: dict[str, dict[str, Any]]
    clusters_created: list[ClusterStart]
    cluster_runs: dict[str, list[int]]
    cluster_library_statuses: dict[str, list[dict[str, Any]]]
    startup_seconds: float
    pool_startup_seconds: float
    require_unity_catalog_access_mode: bool
    _lock: threading.Lock

    # ---- for tests -----------------------------------------------------------------------

    def create_cluster(self: WorkspaceEmulator, *, spark_version: str, state: str = "RUNNING", **spec: Any) -> str:
        """An all-purpose cluster, RUNNING (or TERMINATED) at once; returns its id."""
        cluster = self._new_cluster({"spark_version": spark_version, **spec}, source="API")
        if state == "RUNNING":
            cluster.state, cluster.state_message = "RUNNING", ""
        elif state == "TERMINATED":
            self._terminate(cluster, "Terminated by the test")
        else:
            raise ValueError(f"state must be RUNNING or TERMINATED, not {state}")
        return cluster.cluster_id

    def create_instance_pool(self, instance_pool_name: str, *, node_type_id: str = "i3.xlarge", **spec: Any) -> str:
        pool_id = f"0101-000000-pool{next(_serial):04d}"
        self.instance_pools[pool_id] = {
            "instance_pool_id": pool_id,
            "instance_pool_name": instance_pool_name,
            "node_type_id": node_type_id,
            **spec,
            "state": "ACTIVE",
        }
        return pool_id

    # ---- validation ----------------------------------------------------------------------

    def runtime(self, spark_version: Any) -> Runtime:
        known = runtimes()
        if spark_version not in known:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                f"Invalid spark version {spark_version!r}. Known versions: {', '.join(sorted(known))}",
            )
        return known[spark_version]

    def _validate_spec(self, spec: Mapping[str, Any]) -> Runtime:
        runtime = self.runtime(spec.get("spark_version"))
        for key in ("instance_pool_id", "driver_instance_pool_id"):
            pool = spec.get(key)
            if pool is not None and pool not in self.instance_pools:
                raise ApiError(
                    HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", f"Instance pool {pool} ({key}) does not exist."
                )
        if spec.get("driver_instance_pool_id") and not spec.get("instance_pool_id"):
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                "driver_instance_pool_id requires instance_pool_id for the workers.",
            )
        return runtime

    def check_access_mode(self, spec: Mapping[str, Any]) -> None:
        """A cluster that is to read and write Unity Catalog tables needs a UC access mode.

        Databricks starts such a cluster and fails its first Unity Catalog statement with
        `[UC_NOT_ENABLED]`; the emulator refuses the cluster up front, with that error's words.
        """
        if not self.require_unity_catalog_access_mode:
            return
        mode = spec.get("data_security_mode") or "NONE"
        if mode not in UC_ACCESS_MODES:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                f"[UC_NOT_ENABLED] Unity Catalog is not enabled on this cluster: data_security_mode {mode} is not a Unity "
                f"Catalog access mode (use one of {', '.join(sorted(UC_ACCESS_MODES))}).",
            )

    # ---- cluster state -------------------------------------------------------------------

    def _new_cluster(
        self: WorkspaceEmulator, spec: Mapping[str, Any], *, source: str, cluster_id: str | None = None
    ) -> EmulatedCluster:
        self._validate_spec(spec)
        cluster_id = cluster_id or f"0101-{next(_serial):06d}-emul{self._new_id():04d}"
        cluster = EmulatedCluster(cluster_id, dict(spec), source)
        cluster.ready_at = time.monotonic() + self._startup_delay(spec)
        with self._lock:
            self.clusters[cluster_id] = cluster
            self.cluster_runs.setdefault(cluster_id, [])
        return cluster

    def _startup_delay(self, spec: Mapping[str, Any]) -> float:
        return self.pool_startup_seconds if spec.get("instance_pool_id") else self.startup_seconds

    def _start(self, cluster: EmulatedCluster) -> None:
        with self._lock:
            if cluster.refresh() in ("RUNNING", "PENDING"):
                return
            cluster.state, cluster.state_message = "PENDING", "Starting Spark"
            cluster.ready_at = time.monotonic() + self._startup_delay(cluster.spec)
            cluster.start_time, cluster.terminated_time = int(time.time() * 1000), 0

    def _terminate(self, cluster: EmulatedCluster, reason: str) -> None:
        cluster.state, cluster.state_message = "TERMINATED", reason
        cluster.terminated_time = int(time.time() * 1000)

    def _cluster(self, cluster_id: Any) -> EmulatedCluster:
        cluster = self.clusters.get(str(cluster_id))
        if cluster is None:
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", f"Cluster {cluster_id} does not exist")
        return cluster

    def _cluster_json(self, cluster: EmulatedCluster) -> dict[str, Any]:
        state = cluster.refresh()
        out = {
            **cluster.spec,
            "cluster_id": cluster.cluster_id,
            "cluster_name": cluster.spec.get(
                "cluster_name", f"job-cluster-{cluster.cluster_id}" if cluster.source == "JOB" else ""
            ),
            "state": state,
            "state_message": cluster.state_message,
            "cluster_source": cluster.source,
            "start_time": cluster.start_time,
            "spark_context_id": abs(hash(cluster.cluster_id)) % 10**12,
        }
        if cluster.terminated_time:
            out["terminated_time"] = cluster.terminated_time
        return out

    # ---- REST ----------------------------------------------------------------------------

    def clusters_create(self, p: Mapping[str, Any]) -> dict[str, Any]:
        spec = {k: v for k, v in p.items() if k not in ("apply_policy_default_values",)}
        return {"cluster_id": self._new_cluster(spec, source="API").cluster_id}

    def clusters_get(self, p: Mapping[str, Any]) -> dict[str, Any]:
        return self._cluster_json(self._cluster(p["cluster_id"]))

    def clusters_list(self, p: Mapping[str, Any]) -> dict[str, Any]:
        return {"clusters": [self._cluster_json(c) for c in list(self.clusters.values())]}

    def clusters_start(self, p: Mapping[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(p["cluster_id"])
        state = cluster.refresh()
        if cluster.source == "JOB":
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                f"Cluster {cluster.cluster_id} is a job cluster and cannot be started.",
            )
        if state != "TERMINATED":
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_STATE",
                f"Cluster {cluster.cluster_id} is in unexpected state {state.capitalize()}.",
            )
        self._start(cluster)
        return {}

    def clusters_delete(self, p: Mapping[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(p["cluster_id"])
        if cluster.refresh() != "TERMINATED":
            self._terminate(cluster, "Terminated by the user (clusters/delete)")
        return {}

    def clusters_spark_versions(self, p: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "versions": [
                {"key": r.key, "name": f"{r.version_number} (includes Apache Spark {r.spark}, Scala 2.13)"}
                for r in runtimes().values()
            ]
        }

    def instance_pools_create(self, p: Mapping[str, Any]) -> dict[str, Any]:
        if not p.get("instance_pool_name") or not p.get("node_type_id"):
            raise ApiError(
                HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", "instance_pool_name and node_type_id are required"
            )
        spec = {k: v for k, v in p.items() if k not in ("instance_pool_name", "node_type_id")}
        return {
            "instance_pool_id": self.create_instance_pool(
                p["instance_pool_name"], node_type_id=p["node_type_id"], **spec
            )
        }

    def instance_pools_get(self, p: Mapping[str, Any]) -> dict[str, Any]:
        pool = self.instance_pools.get(p.get("instance_pool_id", ""))
        if pool is None:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                f"Instance pool {p.get('instance_pool_id')} does not exist.",
            )
        return pool

    def instance_pools_list(self, p: Mapping[str, Any]) -> dict[str, Any]:
        return {"instance_pools": list(self.instance_pools.values())}

    def libraries_cluster_status(self, p: Mapping[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(p["cluster_id"])
        return {
            "cluster_id": cluster.cluster_id,
            "library_statuses": list(self.cluster_library_statuses.get(cluster.cluster_id, [])),
        }


ROUTES = {
    ("POST", "/api/2.1/clusters/create"): ComputeApi.clusters_create,
    ("GET", "/api/2.1/clusters/get"): ComputeApi.clusters_get,
    ("GET", "/api/2.1/clusters/list"): ComputeApi.clusters_list,
    ("POST", "/api/2.1/clusters/start"): ComputeApi.clusters_start,
    ("POST", "/api/2.1/clusters/delete"): ComputeApi.clusters_delete,
    ("GET", "/api/2.1/clusters/spark-versions"): ComputeApi.clusters_spark_versions,
    ("POST", "/api/2.0/instance-pools/create"): ComputeApi.instance_pools_create,
    ("GET", "/api/2.0/instance-pools/get"): ComputeApi.instance_pools_get,
    ("GET", "/api/2.0/instance-pools/list"): ComputeApi.instance_pools_list,
    ("GET", "/api/2.0/libraries/cluster-status"): ComputeApi.libraries_cluster_status,
}
