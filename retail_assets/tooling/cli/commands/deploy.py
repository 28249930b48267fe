"""The Databricks deployment from the command line: the Unity Catalog grants (`grants`) and
provisioning one environment (`provision`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from retail_assets.tooling.cli import preflight
from retail_assets.tooling.cli.commands.options import example


def pipeline_principal_option():
    return click.option(
        "--pipeline-principal",
        envvar="RETAIL_DATABRICKS_PIPELINE_PRINCIPAL",
        show_envvar=True,
        help="Application id of the service principal the job clusters run as; unset: the account group {env}_retail_pipeline.",
    )


@click.command(
    short_help="Print the Unity Catalog GRANT statements of one environment.",
    epilog=example("retail-assets grants --env prod --catalog retail > grants.sql"),
)
@click.option("--env", required=True, help="Deployment environment, e.g. dev, staging, prod, pr_42.")
@click.option("--catalog", required=True, help="Unity Catalog catalog holding the {env}_{layer} schemas.")
@pipeline_principal_option()
def grants(env: str, catalog: str, pipeline_principal: str | None) -> int:
    """Print the Unity Catalog GRANT statements of one environment (SQL). The masks, row filter
    and partner share come with `retail-assets provision --dry-run`."""
    from retail_assets.lib.deployment.governance.grants import grants_sql
    from retail_assets.lib.deployment.governance.principals import Principals

    print(grants_sql(env, catalog, principals=Principals.for_env(env, pipeline_principal or "")), end="")
    return 0


@click.command(
    short_help="Create an environment's schemas, volumes, grants, masks, row filter and partner share.",
    epilog=example(
        "retail-assets provision --env pr_42 --catalog retail --dry-run",
        "retail-assets provision --env pr_42 --catalog retail --upload-wheel dist/retail_assets-0.1.0-py3-none-any.whl",
    ),
)
@click.option("--env", required=True, help="Deployment environment, e.g. prod or a branch deployment's pr_42.")
@click.option(
    "--catalog", required=True, help="Unity Catalog catalog holding the {env}_{layer} schemas (it must exist)."
)
@click.option(
    "--upload-wheel",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Project wheel to upload to /Volumes/{catalog}/{env}_bronze/artifacts/ once the volume exists.",
)
@click.option("--dry-run", is_flag=True, help="Print every step and its SQL; connect to nothing.")
@pipeline_principal_option()
@click.option(
    "--recipients",
    envvar="RETAIL_SHARE_RECIPIENTS",
    show_envvar=True,
    help="Delta Sharing recipients of {env}_partner_gold, comma-separated: NAME (open sharing) or NAME=<cloud>:<region>:<metastore uuid>; none: no recipient.",
)
def provision(
    env: str,
    catalog: str,
    upload_wheel: Path | None,
    dry_run: bool,
    pipeline_principal: str | None,
    recipients: str | None,
) -> int:
    """Provision one environment, branch deployments included, idempotently: its schemas, the
    landing and artifacts volumes, the project wheel, the grants, the column masks and row
    filter on Gold and the partner share. Each step prints what it ensures and its outcome
    (created, updated, unchanged, or pending until the table's first materialization).

    Runs with the workspace credentials of DATABRICKS_HOST and DATABRICKS_CLIENT_ID /
    DATABRICKS_CLIENT_SECRET (or DATABRICKS_TOKEN) as an administrator of the catalog; masks and
    the row filter go through the SQL warehouse RETAIL_DATABRICKS_WAREHOUSE_ID."""
    from retail_assets.lib.deployment import provisioning
    from retail_assets.lib.deployment.governance.principals import Principals
    from retail_assets.lib.deployment.governance.sharing import parse_recipients

    who = Principals.for_env(env, pipeline_principal or "")
    steps = provisioning.plan(
        env, catalog, principals=who, recipients=parse_recipients(recipients or ""), wheel=upload_wheel
    )
    width = len(str(len(steps)))
    print(f"provisioning {who.env} in catalog {catalog.lower()}: {len(steps)} steps; {who.pipeline_note}")
    if dry_run:
        for number, step in enumerate(steps, 1):
            print(f"[{number:>{width}}/{len(steps)}] {step.phase}: {step.description}")
            for statement in step.sql():
                print("    " + statement.replace("\n", "\n    "))
        print("dry run: nothing was changed")
        return 0
    preflight.run_checks([_workspace_configured()])
    import dagster as dg

    from retail_assets.lib.deployment.workspace import DatabricksWorkspaceResource

    numbers = {id(step): number for number, step in enumerate(steps, 1)}

    def show(step: provisioning.Step, outcome: provisioning.Outcome) -> None:
        print(f"[{numbers[id(step)]:>{width}}/{len(steps)}] {step.description} … {outcome}", flush=True)

    with dg.build_resources({"databricks": DatabricksWorkspaceResource.from_env()}) as resources:
        try:
            report = provisioning.apply(steps, resources.databricks, on_result=show)
        except provisioning.ProvisioningFailed as failed:
            print(
                f"[{numbers[id(failed.step)]:>{width}}/{len(steps)}] {failed.step.description} … FAILED",
                file=sys.stderr,
            )
            print(f"error: {failed.cause}", file=sys.stderr)
            print("the steps before it stay applied; fix the cause and run the same command again", file=sys.stderr)
            return 1
    counts = ", ".join(f"{n} {status}" for status, n in report.counts().items())
    print(f"done: {counts}")
    if report.pending:
        print(
            f"{len(report.pending)} pending until their tables exist: run this command (or the provision_environment job) again after the first materialization"
        )
    return 0


def _workspace_configured() -> preflight.Check:
    def check() -> None:
        from retail_assets.lib.deployment import workspace

        missing = [name for name in (workspace.HOST_ENV, workspace.WAREHOUSE_ENV) if not os.environ.get(name)]
        if not (
            os.environ.get(workspace.CLIENT_ID_ENV) and os.environ.get(workspace.CLIENT_SECRET_ENV)
        ) and not os.environ.get(workspace.TOKEN_ENV):
            missing.append(f"{workspace.CLIENT_ID_ENV} and {workspace.CLIENT_SECRET_ENV} (or {workspace.TOKEN_ENV})")
        if missing:
            raise preflight.Preflight(f"provisioning needs the workspace: set {', '.join(missing)} (or use --dry-run)")

    return check
