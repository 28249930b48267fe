"""The Databricks workspace as the Dagster code server reaches it: REST through databricks-sdk.

Sensors and provisioning run in the code server, never on a cluster (SPEC §12), so what they
need from the workspace goes through its APIs: files of a Unity Catalog volume through the Files
API, table contents through a SQL warehouse (Statement Execution API), catalog objects through
Unity Catalog's REST API. No JVM, no `/Volumes` mount.

Credentials are a service principal's OAuth machine-to-machine secret (`DATABRICKS_CLIENT_ID`,
`DATABRICKS_CLIENT_SECRET`), read through `dg.EnvVar`; a personal access token
(`DATABRICKS_TOKEN`) is accepted for a quick try from a laptop. The client is built on first use,
never when the definitions load. Only the code server holds this resource: no asset requires it,
so a cluster never initializes it and never needs its secret.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr

from retail_assets.lib import settings

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

HOST_ENV = "DATABRICKS_HOST"
CLIENT_ID_ENV = "DATABRICKS_CLIENT_ID"
CLIENT_SECRET_ENV = "DATABRICKS_CLIENT_SECRET"
TOKEN_ENV = "DATABRICKS_TOKEN"
WAREHOUSE_ENV = "RETAIL_DATABRICKS_WAREHOUSE_ID"


class WorkspaceUnavailable(RuntimeError):
    """The workspace could not be reached or refused a call; the message says which and why."""


class StatementFailed(RuntimeError):
    """A SQL warehouse statement failed; `error_code` and the message are the warehouse's."""

    def __init__(self, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


def _sdk_errors() -> tuple[type[BaseException], ...]:
    try:
        from databricks.sdk.errors import DatabricksError  # noqa: PLC0415
    except ImportError:  # pragma: no cover - databricks-sdk is a required dependency
        return ()
    return (DatabricksError,)


# What a sensor tick turns into a skip reason (a workspace or warehouse that did not answer, or
# refused), so the next tick tries again instead of the tick failing.
WORKSPACE_ERRORS: tuple[type[BaseException], ...] = (WorkspaceUnavailable, StatementFailed, *_sdk_errors())


@dataclass(frozen=True)
class RemoteFile:
    """One file of a volume as the Files API lists it."""

    path: str  # absolute, `/Volumes/<catalog>/<schema>/<volume>/...`
    size: int
    modified: float  # seconds since the epoch


class DatabricksWorkspaceResource(dg.ConfigurableResource):
    """REST access to the workspace for the code server: Files API, SQL warehouse, Unity Catalog."""

    host: str = Field(description="Workspace URL, e.g. https://<workspace>.cloud.databricks.com.")
    client_id: str | None = Field(default=None, description="OAuth M2M: the service principal's application id.")
    client_secret: str | None = Field(
        default=None, description="OAuth M2M: the service principal's secret (a dg.EnvVar)."
    )
    token: str | None = Field(
        default=None, description="A personal access token, only when no service principal is configured."
    )
    warehouse_id: str | None = Field(
        default=None, description="SQL warehouse the sensors read Bronze's committed state through."
    )
    statement_timeout_s: int = Field(
        default=20, description="How long a statement may run before it is cancelled and the call fails (5-50 s)."
    )
    request_timeout_s: float = Field(
        default=10.0, description="Bound on one HTTP call; with retries, a call gives up after three times this."
    )

    _client: Any = PrivateAttr(default=None)

    @classmethod
    def from_env(cls) -> DatabricksWorkspaceResource:
        """The workspace of the `databricks` environment: OAuth M2M when a client id is set."""
        oauth = bool(settings.env(CLIENT_ID_ENV, ""))
        return cls(
            host=dg.EnvVar(HOST_ENV),
            client_id=dg.EnvVar(CLIENT_ID_ENV) if oauth else None,
            client_secret=dg.EnvVar(CLIENT_SECRET_ENV) if oauth else None,
            token=None if oauth else dg.EnvVar(TOKEN_ENV),
            warehouse_id=settings.env(WAREHOUSE_ENV, "") or None,
        )

    def auth_kwargs(self) -> dict[str, str]:
        if self.client_id:
            if not self.client_secret:
                raise WorkspaceUnavailable(
                    f"{CLIENT_ID_ENV} is set but {CLIENT_SECRET_ENV} is not: OAuth M2M needs both"
                )
            return {"client_id": self.client_id, "client_secret": self.client_secret, "auth_type": "oauth-m2m"}
        if self.token:
            return {"token": self.token, "auth_type": "pat"}
        raise WorkspaceUnavailable(
            f"no Databricks credentials: set {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV} (a service principal), or {TOKEN_ENV}"
        )

    def client(self) -> WorkspaceClient:
        if self._client is None:
            from databricks.sdk import WorkspaceClient  # noqa: PLC0415
            from databricks.sdk.config import Config  # noqa: PLC0415

            # Bounded: a sensor tick must end well inside Dagster's tick timeout, retries included.
            config = Config(
                host=self.host,
                http_timeout_seconds=int(self.request_timeout_s),
                retry_timeout_seconds=int(3 * self.request_timeout_s),
                **self.auth_kwargs(),
            )
            self._client = WorkspaceClient(config=config)
        return self._client

    # ---- Files API -----------------------------------------------------------------------

    def list_files(self, folder: str) -> Iterator[RemoteFile]:
        """Every file under `folder`, recursively; nothing when the folder does not exist."""
        from databricks.sdk.errors import NotFound  # noqa: PLC0415

        pending = [folder.rstrip("/")]
        while pending:
            current = pending.pop()
            try:
                entries = list(self.client().files.list_directory_contents(current))
            except NotFound:
                if current == folder.rstrip("/"):
                    return
                continue  # removed between listing its parent and itself
            for entry in entries:
                if entry.is_directory:
                    pending.append(entry.path.rstrip("/"))
                else:
                    yield RemoteFile(entry.path, int(entry.file_size or 0), (entry.last_modified or 0) / 1000)

    def folder_exists(self, folder: str) -> bool:
        from databricks.sdk.errors import NotFound  # noqa: PLC0415

        try:
            self.client().files.get_directory_metadata(folder.rstrip("/"))
        except NotFound:
            return False
        return True

    def upload(self, path: str, content: bytes, *, overwrite: bool = True) -> None:
        self.client().files.upload(path, io.BytesIO(content), overwrite=overwrite)

    # ---- SQL warehouse -------------------------------------------------------------------

    def sql(self, statement: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, str | None]]:
        """Rows of one statement on the SQL warehouse, values as the API returns them (strings)."""
        from databricks.sdk.service.sql import (  # noqa: PLC0415
            Disposition,
            ExecuteStatementRequestOnWaitTimeout,
            Format,
            StatementParameterListItem,
            StatementState,
        )

        if not self.warehouse_id:
            raise WorkspaceUnavailable(f"no SQL warehouse configured: set {WAREHOUSE_ENV}")
        params = [
            StatementParameterListItem(name=k, value=None if v is None else str(v))
            for k, v in (parameters or {}).items()
        ]
        response = self.client().statement_execution.execute_statement(
            statement,
            self.warehouse_id,
            parameters=params or None,
            wait_timeout=f"{max(5, min(50, self.statement_timeout_s))}s",
            # A warehouse still starting (or a slow statement) is cancelled, not left running.
            on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CANCEL,
            format=Format.JSON_ARRAY,
            disposition=Disposition.INLINE,
        )
        state = response.status.state if response.status else None
        if state in (StatementState.PENDING, StatementState.RUNNING, StatementState.CANCELED):
            raise WorkspaceUnavailable(
                f"warehouse {self.warehouse_id} gave no result within {self.statement_timeout_s}s (statement {state.value}); it may be starting"
            )
        if state != StatementState.SUCCEEDED:
            error = response.status.error if response.status else None
            detail = f"{error.error_code}: {error.message}" if error else "no error reported"
            raise StatementFailed(
                f"statement {state.value if state else 'UNKNOWN'} on warehouse {self.warehouse_id}: {detail}",
                error.error_code if error else None,
            )
        columns = (
            [c.name for c in (response.manifest.schema.columns or [])]
            if response.manifest and response.manifest.schema
            else []
        )
        rows = list(_rows(response.result.data_array if response.result else None))
        chunk = response.result
        while chunk is not None and chunk.next_chunk_index is not None:
            chunk = self.client().statement_execution.get_statement_result_chunk_n(
                response.statement_id, chunk.next_chunk_index
            )
            rows.extend(_rows(chunk.data_array))
        return [dict(zip(columns, row, strict=True)) for row in rows]


def _rows(data: Sequence[Sequence[str | None]] | None) -> Iterator[Sequence[str | None]]:
    yield from data or []
