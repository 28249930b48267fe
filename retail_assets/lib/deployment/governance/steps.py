"""The steps of a provisioning plan (`retail_assets.lib.deployment.provisioning`): each ensures one thing,
checks before it changes, and reports what it did.

Catalog objects go through Unity Catalog's REST API, the wheel through the Files API, and what
only SQL expresses (functions, masks, row filters) through the SQL warehouse. An object created
meanwhile by a concurrent run counts as done; a step that needs a table that does not exist yet
reports `pending`.

Longer than the project's usual module: one short class per provisioning step, beside the
checks and error handling they share.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from retail_assets.lib.deployment.governance.grants import ALL_PRIVILEGES, Grant
from retail_assets.lib.deployment.governance.policies import SqlFunction, TableMasks, TableRowFilter
from retail_assets.lib.deployment.governance.securables import Volume, quoted, sql_string
from retail_assets.lib.deployment.governance.sharing import Recipient, Share

if TYPE_CHECKING:
    from retail_assets.lib.deployment.workspace import DatabricksWorkspaceResource


class Status(str, Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    PENDING = "pending"


@dataclass(frozen=True)
class Outcome:
    status: Status
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.status.value}: {self.detail}" if self.detail else self.status.value


PENDING_TABLE = Outcome(Status.PENDING, "table not created yet; run provisioning again after its first materialization")


class ProvisioningError(RuntimeError):
    """A precondition provisioning cannot create itself; the message says who must act."""


class Step(ABC):
    phase: ClassVar[str]

    @property
    @abstractmethod
    def description(self) -> str: ...

    @abstractmethod
    def sql(self) -> list[str]:
        """The SQL that states what this step ensures (for review; `apply` may use REST)."""

    @abstractmethod
    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome: ...


SCHEMAS, WHEEL, GRANTS, POLICIES, SHARING = (
    "schemas and volumes",
    "wheel",
    "functions and grants",
    "masks and row filters",
    "sharing",
)
PHASES = (SCHEMAS, WHEEL, GRANTS, POLICIES, SHARING)


def _errors() -> Any:
    from databricks.sdk import errors  # noqa: PLC0415 - no SDK import when the definitions load

    return errors


def _exists(get: Callable[[], Any]) -> Any | None:
    """What `get` returns, or None when the object does not exist."""
    try:
        return get()
    except _errors().NotFound:
        return None


def _created(create: Callable[[], Any]) -> Outcome:
    """Create; an object created meanwhile (by a concurrent run) counts as done. Unity Catalog
    answers 409 with `<OBJECT>_ALREADY_EXISTS`, which the SDK raises as a ResourceConflict."""
    errors = _errors()
    try:
        create()
    except (errors.ResourceAlreadyExists, errors.AlreadyExists):
        return Outcome(Status.UNCHANGED, "created meanwhile by another run")
    except errors.ResourceConflict as exc:
        if not str(getattr(exc, "error_code", "") or "").endswith("ALREADY_EXISTS"):
            raise
        return Outcome(Status.UNCHANGED, "created meanwhile by another run")
    return Outcome(Status.CREATED)


def _table(ws: DatabricksWorkspaceResource, full_name: str) -> Any | None:
    return _exists(lambda: ws.client().tables.get(full_name))


def _same_name(a: str | None, b: str) -> bool:
    return (a or "").replace("`", "").lower() == b.lower()


@dataclass(frozen=True)
class CatalogExists(Step):
    phase: ClassVar[str] = SCHEMAS
    catalog: str

    @property
    def description(self) -> str:
        return f"catalog {self.catalog} exists"

    def sql(self) -> list[str]:
        return [
            f"-- prerequisite, once per metastore by an administrator: CREATE CATALOG IF NOT EXISTS `{self.catalog}`;"
        ]

    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome:
        if _exists(lambda: ws.client().catalogs.get(self.catalog)) is None:
            raise ProvisioningError(
                f"catalog {self.catalog} does not exist: an administrator creates it once per metastore (README, Deploy to Databricks)"
            )
        return Outcome(Status.UNCHANGED)


@dataclass(frozen=True)
class EnsureSchema(Step):
    phase: ClassVar[str] = SCHEMAS
    catalog: str
    schema: str

    @property
    def description(self) -> str:
        return f"schema {self.catalog}.{self.schema}"

    def sql(self) -> list[str]:
        return [f"CREATE SCHEMA IF NOT EXISTS {quoted(self.catalog, self.schema)};"]

    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome:
        w = ws.client()
        if _exists(lambda: w.schemas.get(f"{self.catalog}.{self.schema}")) is not None:
            return Outcome(Status.UNCHANGED)
        return _created(
            lambda: w.schemas.create(self.schema, self.catalog, comment="Created by retail-assets provisioning")
        )


@dataclass(frozen=True)
class EnsureVolume(Step):
    phase: ClassVar[str] = SCHEMAS
    catalog: str
    env: str
    volume: Volume

    @property
    def full_name(self) -> str:
        return self.volume.full_name(self.catalog, self.env)

    @property
    def description(self) -> str:
        return f"volume {self.full_name} ({self.volume.path(self.catalog, self.env)})"

    def sql(self) -> list[str]:
        return [
            f"CREATE VOLUME IF NOT EXISTS {quoted(*self.full_name.split('.'))} COMMENT {sql_string(self.volume.comment)};"
        ]

    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome:
        from databricks.sdk.service.catalog import VolumeType  # noqa: PLC0415

        w = ws.client()
        if _exists(lambda: w.volumes.read(self.full_name)) is not None:
            return Outcome(Status.UNCHANGED)
        schema = self.volume.schema(self.env)
        return _created(
            lambda: w.volumes.create(
                self.catalog, schema, self.volume.name, VolumeType.MANAGED, comment=self.volume.comment
            )
        )


@dataclass(frozen=True)
class UploadWheel(Step):
    phase: ClassVar[str] = WHEEL
    local: Path
    target: str

    @property
    def description(self) -> str:
        return f"wheel {self.local.name} in {self.target}"

    def sql(self) -> list[str]:
        return [f"-- Files API: PUT /api/2.0/fs/files{self.target} (overwrite) from {self.local}"]

    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome:
        content = self.local.read_bytes()
        # Always written: a wheel rebuilt under the same version must not leave the old one in place.
        ws.upload(self.target, content, overwrite=True)
        return Outcome(Status.UPDATED, f"uploaded {len(content):,} bytes")


@dataclass(frozen=True)
class CreateFunction(Step):
    phase: ClassVar[str] = GRANTS
    function: SqlFunction

    @property
    def description(self) -> str:
        return f"function {self.function.full_name}"

    def sql(self) -> list[str]:
        return [self.function.sql() + ";"]

    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome:
        current = _exists(lambda: ws.client().functions.get(self.function.full_name))
        if current is not None and " ".join((current.routine_definition or "").split()) == " ".join(
            self.function.body.split()
        ):
            return Outcome(Status.UNCHANGED)
        ws.sql(self.function.sql())
        return Outcome(Status.CREATED if current is None else Status.UPDATED)


def _privilege(name: str) -> str:
    """A privilege as the REST API spells it (`USE_SCHEMA`); SQL spells it `USE SCHEMA`."""
    return name.replace(" ", "_")


def _held(privileges: Iterable[Any] | None) -> set[str]:
    """Privilege names of an assignment, whichever SDK enum (catalog's or sharing's) carries them."""
    return {str(getattr(p, "value", p)) for p in privileges or []}


@dataclass(frozen=True)
class ApplyGrants(Step):
    """Every grant and revoke on one securable, as one permissions change against its current grants."""

    phase: ClassVar[str] = GRANTS
    securable_type: str
    full_name: str
    grants: tuple[Grant, ...]

    @property
    def description(self) -> str:
        who = ", ".join(f"{'-' if g.revoke else ''}{g.principal}" for g in self.grants)
        return f"grants on {self.securable_type.lower()} {self.full_name} ({who})"

    def sql(self) -> list[str]:
        return [g.sql() for g in self.grants]

    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome:
        from databricks.sdk.service.catalog import PermissionsChange, Privilege  # noqa: PLC0415

        w = ws.client()
        if self.securable_type == "TABLE" and _table(ws, self.full_name) is None:
            return PENDING_TABLE
        current: dict[str, set[str]] = {}
        for assignment in w.grants.get(self.securable_type, self.full_name).privilege_assignments or []:
            current.setdefault((assignment.principal or "").lower(), set()).update(_held(assignment.privileges))
        changes, done = [], []
        for grant in self.grants:
            held = current.get(grant.principal.lower(), set())
            wanted = {_privilege(p) for p in grant.privileges}
            if grant.revoke:
                gone = sorted(held if _privilege(ALL_PRIVILEGES) in wanted else held & wanted)
                if gone:
                    changes.append(PermissionsChange(principal=grant.principal, remove=[Privilege(p) for p in gone]))
                    done.append(f"{grant.principal} -{','.join(gone)}")
            else:
                missing = sorted(wanted - held)
                if missing:
                    changes.append(PermissionsChange(principal=grant.principal, add=[Privilege(p) for p in missing]))
                    done.append(f"{grant.principal} +{','.join(missing)}")
        if not changes:
            return Outcome(Status.UNCHANGED)
        w.grants.update(self.securable_type, self.full_name, changes=changes)
        return Outcome(Status.UPDATED, "; ".join(done))


@dataclass(frozen=True)
class SetMasks(Step):
    phase: ClassVar[str] = POLICIES
    masks: TableMasks

    @property
    def description(self) -> str:
        return f"column masks on {self.masks.full_name} ({', '.join(m.column for m in self.masks.masks)})"

    def sql(self) -> list[str]:
        return [s + ";" for s in self.masks.statements()]

    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome:
        table = _table(ws, self.masks.full_name)
        if table is None:
            return PENDING_TABLE
        bound = {c.name: (c.mask.function_name if c.mask else None) for c in table.columns or []}
        changed = []
        for mask, statement in zip(self.masks.masks, self.masks.statements(), strict=True):
            if not _same_name(bound.get(mask.column), mask.function.full_name):
                ws.sql(statement)
                changed.append(mask.column)
        return Outcome(Status.UPDATED, f"masked {', '.join(changed)}") if changed else Outcome(Status.UNCHANGED)


@dataclass(frozen=True)
class SetRowFilter(Step):
    phase: ClassVar[str] = POLICIES
    row_filter: TableRowFilter

    @property
    def description(self) -> str:
        return f"row filter {self.row_filter.function.name} on {self.row_filter.full_name} ({', '.join(self.row_filter.columns)})"

    def sql(self) -> list[str]:
        return [self.row_filter.statement() + ";"]

    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome:
        table = _table(ws, self.row_filter.full_name)
        if table is None:
            return PENDING_TABLE
        current = table.row_filter
        if (
            current is not None
            and _same_name(current.function_name, self.row_filter.function.full_name)
            and [c.lower() for c in current.input_column_names or []] == [c.lower() for c in self.row_filter.columns]
        ):
            return Outcome(Status.UNCHANGED)
        ws.sql(self.row_filter.statement())
        return Outcome(Status.UPDATED)


@dataclass(frozen=True)
class EnsureShare(Step):
    phase: ClassVar[str] = SHARING
    share: Share

    @property
    def description(self) -> str:
        return f"share {self.share.name}"

    def sql(self) -> list[str]:
        return self.share.statements()[:1]

    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome:
        w = ws.client()
        if _exists(lambda: w.shares.get(self.share.name)) is not None:
            return Outcome(Status.UNCHANGED)
        return _created(lambda: w.shares.create(self.share.name, comment=self.share.comment))


@dataclass(frozen=True)
class ShareTable(Step):
    phase: ClassVar[str] = SHARING
    share: str
    full_name: str

    @property
    def description(self) -> str:
        return f"share {self.share} holds {self.full_name}"

    def sql(self) -> list[str]:
        return [f"ALTER SHARE `{self.share}` ADD TABLE {quoted(*self.full_name.split('.'))};"]

    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome:
        from databricks.sdk.service.sharing import (  # noqa: PLC0415
            SharedDataObject,
            SharedDataObjectDataObjectType,
            SharedDataObjectUpdate,
            SharedDataObjectUpdateAction,
        )

        w = ws.client()
        shared = w.shares.get(self.share, include_shared_data=True).objects or []
        if any(_same_name(o.name, self.full_name) for o in shared):
            return Outcome(Status.UNCHANGED)
        if _table(ws, self.full_name) is None:
            return PENDING_TABLE
        table = SharedDataObject(name=self.full_name, data_object_type=SharedDataObjectDataObjectType.TABLE)
        w.shares.update(
            self.share, updates=[SharedDataObjectUpdate(action=SharedDataObjectUpdateAction.ADD, data_object=table)]
        )
        return Outcome(Status.UPDATED, "added")


@dataclass(frozen=True)
class EnsureRecipient(Step):
    phase: ClassVar[str] = SHARING
    recipient: Recipient

    @property
    def description(self) -> str:
        kind = f"Databricks {self.recipient.sharing_id}" if self.recipient.sharing_id else "open sharing"
        return f"recipient {self.recipient.name} ({kind})"

    def sql(self) -> list[str]:
        return [self.recipient.sql()]

    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome:
        from databricks.sdk.service.sharing import AuthenticationType  # noqa: PLC0415

        w = ws.client()
        current = _exists(lambda: w.recipients.get(self.recipient.name))
        if current is not None:
            found = (current.data_recipient_global_metastore_id or "").lower() or None
            if found != self.recipient.sharing_id:
                raise ProvisioningError(
                    f"recipient {self.recipient.name} exists with sharing identifier {found or 'none (open sharing)'}, "
                    f"not {self.recipient.sharing_id or 'none (open sharing)'}: rename one of them"
                )
            return Outcome(Status.UNCHANGED)
        kind = AuthenticationType.DATABRICKS if self.recipient.sharing_id else AuthenticationType.TOKEN
        outcome = _created(
            lambda: w.recipients.create(
                self.recipient.name,
                kind,
                data_recipient_global_metastore_id=self.recipient.sharing_id,
                comment="retail-assets partner",
            )
        )
        if outcome.status is Status.CREATED and kind is AuthenticationType.TOKEN:
            # The activation link is a credential: never logged, the admin sends it to the partner.
            return Outcome(
                Status.CREATED,
                f"send the partner its activation link (Catalog Explorer, or `databricks recipients get {self.recipient.name}`)",
            )
        return outcome


@dataclass(frozen=True)
class GrantShare(Step):
    phase: ClassVar[str] = SHARING
    share: str
    recipient: str

    @property
    def description(self) -> str:
        return f"recipient {self.recipient} reads share {self.share}"

    def sql(self) -> list[str]:
        return [f"GRANT SELECT ON SHARE `{self.share}` TO RECIPIENT `{self.recipient}`;"]

    def apply(self, ws: DatabricksWorkspaceResource) -> Outcome:
        from databricks.sdk.service.sharing import PermissionsChange  # noqa: PLC0415

        w = ws.client()
        for assignment in w.shares.share_permissions(self.share).privilege_assignments or []:
            if (assignment.principal or "").lower() == self.recipient and "SELECT" in _held(assignment.privileges):
                return Outcome(Status.UNCHANGED)
        w.shares.update_permissions(self.share, changes=[PermissionsChange(principal=self.recipient, add=["SELECT"])])
        return Outcome(Status.UPDATED, "SELECT granted")
