"""Provisioning of one deployment environment (branch deployments included), as a plan of steps.

`plan(env, catalog)` lists what an environment needs, in order: its schemas and volumes, the
project wheel in the artifacts volume, the mask and filter functions, the grants, the column
masks and row filters, and the partner share with its recipients. Each step says what it
ensures and which SQL states the same; `apply(plan, workspace)` runs the steps through the
workspace's Unity Catalog REST API, its Files API and, for what only SQL can express (functions,
masks, row filters), its SQL warehouse.

Every step checks before it changes, so applying a plan twice leaves the same state and the
second run reports `unchanged` throughout: objects are created when absent (an `ALREADY_EXISTS`
from a concurrent run counts as done), grants are permission changes computed against the
current grants, a table joins the share only when it is not in it yet. Masks, row filters,
table grants and shared tables need the table: before its first materialization the step
reports `pending` and a later run (the `provision_environment` job) completes it.

Provisioning runs as an administrator (the catalog's owner, with CREATE SHARE and CREATE
RECIPIENT on the metastore): it creates the schemas, so the pipeline's principal needs no
CREATE SCHEMA, and it binds masks to tables the pipeline owns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from retail_assets.lib.deployment.governance.grants import Grant, grants_for
from retail_assets.lib.deployment.governance.policies import Policies, policies_for
from retail_assets.lib.deployment.governance.principals import Principals, checked
from retail_assets.lib.deployment.governance.securables import ARTIFACTS, VOLUMES, layers, schema_full_name
from retail_assets.lib.deployment.governance.sharing import Recipient, partner_share
from retail_assets.lib.deployment.governance.steps import (
    GRANTS,
    PHASES,
    POLICIES,
    SCHEMAS,
    SHARING,
    WHEEL,
    ApplyGrants,
    CatalogExists,
    CreateFunction,
    EnsureRecipient,
    EnsureSchema,
    EnsureShare,
    EnsureVolume,
    GrantShare,
    Outcome,
    SetMasks,
    SetRowFilter,
    ShareTable,
    Status,
    Step,
    UploadWheel,
)
from retail_assets.lib.registry.tables import TABLES, TableSpec

if TYPE_CHECKING:
    from retail_assets.lib.deployment.workspace import DatabricksWorkspaceResource

# What callers (the command, the job) use besides plan and apply.
__all__ = [
    "GRANTS",
    "PHASES",
    "POLICIES",
    "SCHEMAS",
    "SHARING",
    "WHEEL",
    "Outcome",
    "ProvisioningFailed",
    "Report",
    "Status",
    "Step",
    "apply",
    "plan",
]


class ProvisioningFailed(RuntimeError):
    """A step failed; the steps before it were applied and stay applied (re-running is safe)."""

    def __init__(self, step: Step, cause: BaseException, results: list[tuple[Step, Outcome]]) -> None:
        super().__init__(f"{step.description}: {type(cause).__name__}: {cause}")
        self.step, self.cause, self.results = step, cause, results


# ---- the plan -----------------------------------------------------------------------------------


def plan(
    env: str,
    catalog: str,
    *,
    principals: Principals | None = None,
    recipients: Iterable[Recipient] | None = None,
    wheel: Path | None = None,
    tables: Iterable[TableSpec] = TABLES,
) -> list[Step]:
    """Every step of one environment, in the order they must run."""
    catalog = checked(catalog, "catalog")
    who = principals or Principals.for_env(env)
    tables = list(tables)
    policies: Policies = policies_for(who.env, catalog, principals=who, tables=tables)
    steps: list[Step] = [CatalogExists(catalog)]
    present = layers(tables)
    steps += [EnsureSchema(catalog, schema_full_name(catalog, layer, who.env).split(".")[1]) for layer in present]
    steps += [EnsureVolume(catalog, who.env, v) for v in VOLUMES if v.layer in present]
    if wheel is not None:
        if wheel.suffix != ".whl":
            raise ValueError(f"{wheel} is not a wheel (*.whl)")
        steps.append(UploadWheel(wheel, f"{ARTIFACTS.path(catalog, who.env)}/{wheel.name}"))
    steps += [CreateFunction(f) for f in policies.functions]
    by_securable: dict[tuple[str, str], list[Grant]] = {}
    for grant in grants_for(who.env, catalog, principals=who, policies=policies, tables=tables):
        by_securable.setdefault((grant.securable_type, grant.name), []).append(grant)
    steps += [ApplyGrants(kind, name, tuple(grants)) for (kind, name), grants in by_securable.items()]
    steps += [SetMasks(m) for m in policies.masks]
    steps += [SetRowFilter(f) for f in policies.row_filters]
    share = partner_share(who.env, catalog, recipients=recipients, principals=who, policies=policies, tables=tables)
    steps.append(EnsureShare(share))
    steps += [ShareTable(share.name, full) for _, full in share.tables]
    steps += [EnsureRecipient(r) for r in share.recipients]
    steps += [GrantShare(share.name, r.name) for r in share.recipients]
    return steps


@dataclass
class Report:
    """What `apply` did, step by step."""

    results: list[tuple[Step, Outcome]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counted = Counter(outcome.status for _, outcome in self.results)
        return {s.value: counted[s] for s in Status if counted[s]}

    @property
    def pending(self) -> list[Step]:
        return [step for step, outcome in self.results if outcome.status is Status.PENDING]


def apply(
    steps: Iterable[Step],
    workspace: DatabricksWorkspaceResource,
    *,
    on_result: Callable[[Step, Outcome], None] | None = None,
) -> Report:
    """Apply the steps in order; the first failure stops the run (`ProvisioningFailed`)."""
    report = Report()
    for step in steps:
        try:
            outcome = step.apply(workspace)
        except Exception as exc:
            raise ProvisioningFailed(step, exc, report.results) from exc
        report.results.append((step, outcome))
        if on_result is not None:
            on_result(step, outcome)
    return report
