"""Job `provision_environment`: the deployment's own schemas, volumes, grants, masks, row filter and
partner share (`lib/deployment/provisioning.py`), applied from the Dagster UI.

The ops run in the code server and reach the workspace through the `databricks` resource (REST
and the SQL warehouse): no op requires the step launcher, so none starts a cluster. The
environment is the deployment's own (`RETAIL_DEPLOYMENT_ENV`, or `pr_<n>` in a branch
deployment) and the catalog `RETAIL_UC_CATALOG`: a deployment provisions itself, never another.

CI provisions a new environment before its first run (`retail-assets provision --upload-wheel`,
since the clusters install the wheel from the artifacts volume); this job is for re-applying:
after the first materialization, when masks, table grants and shared tables that were pending
can be bound, or to repair a grant changed by hand. Every step checks before it changes, so
running it again is always safe.
"""

# No `from __future__ import annotations`: Dagster reads the op's config annotation at runtime.
from pathlib import Path

import dagster as dg

from retail_assets.lib import settings
from retail_assets.lib.deployment import cluster, provisioning
from retail_assets.lib.deployment.governance.principals import PIPELINE_PRINCIPAL_ENV, Principals
from retail_assets.lib.deployment.workspace import DatabricksWorkspaceResource

WORKSPACE = "databricks"


class ProvisionConfig(dg.Config):
    wheel_file: str = ""  # a wheel on the code server's disk to upload; empty: CI uploaded it


# A principal allowed to manage the catalog's grants and shares (CI's provisioning identity). The
# code server's own principal is the pipeline's, which by design may not change grants or own
# the partner share: without these, the job runs as it and those steps are refused.
ADMIN_CLIENT_ID_ENV = "RETAIL_PROVISIONING_CLIENT_ID"
ADMIN_CLIENT_SECRET_ENV = "RETAIL_PROVISIONING_CLIENT_SECRET"


def provisioning_workspace(context: dg.OpExecutionContext) -> DatabricksWorkspaceResource:
    workspace = getattr(context.resources, WORKSPACE)
    if workspace is None:
        raise dg.Failure(
            "provision_environment needs a Databricks workspace: it runs in the databricks environment (RETAIL_ENV=databricks)"
        )
    if not settings.env(ADMIN_CLIENT_ID_ENV, ""):
        context.log.warning(
            f"provisioning as the code server's principal ({workspace.client_id or 'token'}); set {ADMIN_CLIENT_ID_ENV} and "
            f"{ADMIN_CLIENT_SECRET_ENV} to a principal that manages the catalog, or grant and share steps are refused"
        )
        return workspace
    return DatabricksWorkspaceResource(
        host=workspace.host,
        client_id=dg.EnvVar(ADMIN_CLIENT_ID_ENV).get_value(),
        client_secret=dg.EnvVar(ADMIN_CLIENT_SECRET_ENV).get_value(),
        warehouse_id=workspace.warehouse_id,
    )


def principals() -> Principals:
    """The deployment's principals; the pipeline's is the clusters' own principal unless
    `RETAIL_DATABRICKS_PIPELINE_PRINCIPAL` names it, so grants and mask exemptions go to the
    identity the steps really run as."""
    return Principals.for_env(
        settings.deployment_env(), pipeline=settings.env(PIPELINE_PRINCIPAL_ENV, "") or cluster.run_as() or None
    )


def _apply_phases(context: dg.OpExecutionContext, *phases: str, wheel: Path | None = None) -> None:
    workspace = provisioning_workspace(context)
    env, catalog = settings.deployment_env(), cluster.catalog()
    steps = [s for s in provisioning.plan(env, catalog, principals=principals(), wheel=wheel) if s.phase in phases]

    def log(step: provisioning.Step, outcome: provisioning.Outcome) -> None:
        pending = outcome.status is provisioning.Status.PENDING
        (context.log.warning if pending else context.log.info)(f"{step.description} … {outcome}")

    try:
        report = provisioning.apply(steps, workspace, on_result=log)
    except provisioning.ProvisioningFailed as failed:
        raise dg.Failure(
            description=f"{failed}. The {len(failed.results)} steps before it stay applied; fix the cause and run the job again.",
            metadata={"failed step": failed.step.description, "sql": dg.MetadataValue.md("\n".join(failed.step.sql()))},
        ) from failed
    rows = "\n".join(f"| {step.description} | {outcome} |" for step, outcome in report.results)
    context.add_output_metadata(
        {
            "environment": env,
            "catalog": catalog,
            **report.counts(),
            "steps": dg.MetadataValue.md(f"| step | outcome |\n|---|---|\n{rows}"),
        }
    )


@dg.op(required_resource_keys={WORKSPACE}, out=dg.Out(dg.Nothing), tags={"kind": "databricks"})
def create_schemas_and_volumes(context: dg.OpExecutionContext) -> None:
    """The catalog must exist; the layer schemas and the landing and artifacts volumes are created."""
    who = principals()
    context.log.info(who.pipeline_note)
    if cluster.run_as() and cluster.run_as().lower() != who.pipeline:
        context.log.warning(
            f"the clusters run as {cluster.run_as()} but the grants go to {who.pipeline}: set {PIPELINE_PRINCIPAL_ENV} to the clusters' principal"
        )
    _apply_phases(context, provisioning.SCHEMAS)


@dg.op(
    required_resource_keys={WORKSPACE},
    ins={"after": dg.In(dg.Nothing)},
    out=dg.Out(dg.Nothing),
    tags={"kind": "databricks"},
)
def upload_wheel(context: dg.OpExecutionContext, config: ProvisionConfig) -> None:
    """The project wheel in the artifacts volume, when one is given."""
    if not config.wheel_file:
        context.log.info(f"no wheel_file configured: the clusters install {cluster.wheel_path()}, uploaded by CI")
        return
    _apply_phases(context, provisioning.WHEEL, wheel=Path(config.wheel_file))


@dg.op(
    required_resource_keys={WORKSPACE},
    ins={"after": dg.In(dg.Nothing)},
    out=dg.Out(dg.Nothing),
    tags={"kind": "databricks"},
)
def apply_grants(context: dg.OpExecutionContext) -> None:
    """The mask and filter functions, then every grant (pending for tables not created yet)."""
    _apply_phases(context, provisioning.GRANTS)


@dg.op(
    required_resource_keys={WORKSPACE},
    ins={"after": dg.In(dg.Nothing)},
    out=dg.Out(dg.Nothing),
    tags={"kind": "databricks"},
)
def apply_masks_and_row_filters(context: dg.OpExecutionContext) -> None:
    """Column masks on Gold's personal data and the store-region row filter, on the tables that exist."""
    _apply_phases(context, provisioning.POLICIES)


@dg.op(
    required_resource_keys={WORKSPACE},
    ins={"after": dg.In(dg.Nothing)},
    out=dg.Out(dg.Nothing),
    tags={"kind": "databricks"},
)
def share_with_partners(context: dg.OpExecutionContext) -> None:
    """The partner share, the Gold aggregates in it, its recipients (`RETAIL_SHARE_RECIPIENTS`) and their grants."""
    _apply_phases(context, provisioning.SHARING)


@dg.job(
    description="Provision this deployment's Unity Catalog environment: schemas, volumes, wheel, grants, masks, row filter, partner share. Idempotent.",
    tags={"retail/maintenance": "provisioning"},
)
def provision_environment():
    schemas = create_schemas_and_volumes()
    upload_wheel(schemas)
    share_with_partners(apply_masks_and_row_filters(apply_grants(schemas)))
