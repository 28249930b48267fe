"""dagster-databricks' step launcher, staging through a Unity Catalog volume instead of DBFS.

`DatabricksPySparkStepLauncher` uploads each step (the launcher's `databricks_step_main.py`, the
zipped package, the pickled step and its config) to DBFS root, points the task at `/dbfs/...`
paths and reads the step's events back through the DBFS API. Workspaces created today have no
DBFS root, and clusters in a Unity Catalog access mode cannot use it. This launcher is the same
class with one difference: every staged file lives under a volume path
(`/Volumes/<catalog>/<schema>/<volume>/...`), uploaded and read back through the Files API, and
the cluster reads and writes it through its `/Volumes` mount. Submitting, polling, cancelling
and replaying events are the library's own code.

Credentials are the code server's only: a service principal's OAuth M2M secret (or a token for a
quick try) read through `dg.EnvVar` when a run initializes the launcher. On the cluster the step
is already launched and the resource is an `OnClusterStepLauncher` that needs no credentials, so
none are sent to the cluster.
"""

from __future__ import annotations

import io
import os
from typing import IO, Any

import dagster as dg
from dagster_databricks import databricks_pyspark_step_launcher
from dagster_databricks.databricks import DatabricksClient
from dagster_databricks.databricks_pyspark_step_launcher import DatabricksPySparkStepLauncher

from retail_assets.lib.deployment.cluster import ACCESS_MODE, launcher_config, run_as
from retail_assets.lib.orchestration.retries import retried_when_transient

VOLUME_PREFIX = "/Volumes/"
# Set by the Databricks runtime on every cluster node (and by the tests' emulated cluster).
RUNTIME_ENV = "DATABRICKS_RUNTIME_VERSION"


class StagingNotOnVolume(ValueError):
    """The staging prefix is not a Unity Catalog volume path."""


class MissingCredentials(RuntimeError):
    """The code server has no Databricks credentials to launch a step with."""


class ClusterRefused(RuntimeError):
    """An existing cluster the steps would run on is not one they may run on."""


def volume_staging_prefix(prefix: str) -> str:
    parts = prefix.rstrip("/").split("/")
    # "", "Volumes", catalog, schema, volume[, folder…]
    if not prefix.startswith(VOLUME_PREFIX) or len(parts) < 5 or not all(parts[2:5]):
        raise StagingNotOnVolume(
            f"staging prefix {prefix!r} is not inside a Unity Catalog volume (/Volumes/<catalog>/<schema>/<volume>/...); "
            "steps stage through a volume because DBFS root is disabled on current workspaces"
        )
    return prefix.rstrip("/")


class VolumeFilesClient(DatabricksClient):
    """`DatabricksClient` whose file calls go to the Files API (volume paths) instead of DBFS."""

    def put_file(self, file_obj: IO, dbfs_path: str, overwrite: bool = False, block_size: int = 1024**2) -> None:
        self.workspace_client.files.upload(dbfs_path, io.BytesIO(file_obj.read()), overwrite=overwrite)

    def read_file(self, dbfs_path: str, block_size: int = 1024**2) -> bytes:
        from databricks.sdk.errors import NotFound  # noqa: PLC0415

        try:
            response = self.workspace_client.files.download(dbfs_path)
        except NotFound:
            # Polled before the cluster wrote it (its events, stdout): nothing yet.
            return b""
        with response.contents as stream:
            return stream.read()


class VolumeStagedStepLauncher(DatabricksPySparkStepLauncher):
    """The dagster-databricks launcher with staging under a Unity Catalog volume."""

    def __init__(self, **config: Any) -> None:
        config["staging_prefix"] = volume_staging_prefix(config["staging_prefix"])
        super().__init__(**config)
        # The same credentials, the same host; only the file calls differ.
        self.databricks_runner._client = VolumeFilesClient(
            host=config.get("databricks_host"),
            token=config.get("databricks_token"),
            oauth_client_id=(config.get("oauth_credentials") or {}).get("client_id"),
            oauth_client_secret=(config.get("oauth_credentials") or {}).get("client_secret"),
        )

    def launch_step(self, step_context: Any) -> Any:
        # The Databricks API throttling (429) or failing (5xx) past the SDK's own retries fails
        # the launch transiently: the step is retried with backoff, as a transient failure on the
        # cluster is.
        with retried_when_transient(step_context.previous_attempt_count, step_context.log):
            self._check_existing_cluster()
            yield from super().launch_step(step_context)

    def _check_existing_cluster(self) -> None:
        """An existing cluster must be dedicated (`SINGLE_USER`) to the pipeline's principal, as
        the job clusters this project creates are: checked once, before the first step."""
        existing = self.run_config["cluster"].get("existing")
        if not existing or getattr(self, "_checked_cluster", None) == existing:
            return
        details = self.databricks_runner.client.workspace_client.clusters.get(existing)
        mode = details.data_security_mode.value if details.data_security_mode else "NONE"
        if mode not in (ACCESS_MODE, "DATA_SECURITY_MODE_DEDICATED"):
            raise ClusterRefused(
                f"cluster {existing} ({details.cluster_name}) is in access mode {mode}; the pipeline's steps run on a dedicated cluster "
                f"(data_security_mode {ACCESS_MODE}) assigned to its service principal"
            )
        principal = run_as()
        if principal and (details.single_user_name or "").lower() != principal.lower():
            raise ClusterRefused(
                f"cluster {existing} is assigned to {details.single_user_name!r}, not to the pipeline's principal {principal!r}"
            )
        self._checked_cluster = existing

    def _dbfs_path(self, run_id: str, step_key: str, filename: str) -> str:
        return "/".join([self.staging_prefix, run_id, self._sanitize_step_key(step_key), os.path.basename(filename)])

    def _internal_dbfs_path(self, run_id: str, step_key: str, filename: str) -> str:
        # The cluster sees the same path through its /Volumes mount.
        return self._dbfs_path(run_id, step_key, filename)


class OnClusterStepLauncher(dg.StepLauncher):
    """The launcher resource as a cluster re-initializes it: the step already runs there."""

    def launch_step(self, step_context: Any) -> Any:
        raise dg.DagsterInvariantViolationError(
            f"step {step_context.step.key} is already running on a Databricks cluster; it cannot be launched again from there"
        )


def code_server_credentials() -> dict[str, Any]:
    """The launcher's credentials, from the code server's environment through `dg.EnvVar`."""
    from retail_assets.lib.deployment.workspace import (  # noqa: PLC0415
        CLIENT_ID_ENV,
        CLIENT_SECRET_ENV,
        HOST_ENV,
        TOKEN_ENV,
    )

    host = dg.EnvVar(HOST_ENV).get_value()
    if not host:
        raise MissingCredentials(f"{HOST_ENV} is not set")
    client_id = dg.EnvVar(CLIENT_ID_ENV).get_value()
    if client_id and dg.EnvVar(TOKEN_ENV).get_value():
        # databricks-sdk refuses two authentication methods at once, and dagster-databricks
        # passes no auth type to choose: say which to drop instead of failing inside the SDK.
        raise MissingCredentials(
            f"both {CLIENT_ID_ENV} (OAuth) and {TOKEN_ENV} are set: unset {TOKEN_ENV}, the service principal signs in with OAuth"
        )
    if client_id:
        secret = dg.EnvVar(CLIENT_SECRET_ENV).get_value()
        if not secret:
            raise MissingCredentials(f"{CLIENT_ID_ENV} is set but {CLIENT_SECRET_ENV} is not")
        return {"databricks_host": host, "oauth_credentials": {"client_id": client_id, "client_secret": secret}}
    token = dg.EnvVar(TOKEN_ENV).get_value()
    if not token:
        raise MissingCredentials(
            f"no Databricks credentials: set {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV} (a service principal), or {TOKEN_ENV}"
        )
    return {"databricks_host": host, "databricks_token": token}


@dg.resource(
    config_schema=databricks_pyspark_step_launcher.config_schema,
    description="dagster-databricks' step launcher staging through a Unity Catalog volume; credentials from the code server's environment.",
)
def volume_step_launcher(context: dg.InitResourceContext) -> dg.StepLauncher:
    if os.environ.get(RUNTIME_ENV):
        return OnClusterStepLauncher()
    config = dict(context.resource_config)
    config.pop("databricks_token", None)
    config.pop("oauth_credentials", None)
    config.pop("azure_credentials", None)
    config.update(code_server_credentials())
    return VolumeStagedStepLauncher(**config)


def step_launcher() -> dg.ResourceDefinition:
    """The `step_launcher` resource of the `databricks` environment: steps on job clusters (or the
    configured pool or cluster), staged on a Unity Catalog volume."""
    return volume_step_launcher.configured(launcher_config())
