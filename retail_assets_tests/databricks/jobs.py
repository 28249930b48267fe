"""Jobs the emulator tests launch.

They are built by functions so `dg.build_reconstructable_job` can rebuild them on the emulated
cluster exactly as a Databricks cluster rebuilds a code location: by importing it again there,
with only the environment the step launcher forwarded.
"""

from __future__ import annotations

import dagster as dg

from retail_assets.defs.maintenance.jobs import lakehouse_maintenance
from retail_assets.definitions import build_definitions
from retail_assets.lib.environments import resources_for
from retail_assets.lib.factories import STEP_LAUNCHER, daily_partitions
from retail_assets.lib.settings import get_environment
from retail_assets.lib.tables import BRONZE_STORES

CHAIN = [dg.AssetKey(["bronze", "stores"]), dg.AssetKey(["silver", "stores"]), dg.AssetKey(["gold", "dim_store"])]
CHECKED = dg.AssetKey(["silver", "stores"])
EXPLOSION = "store master data refused on the cluster"


def chain_job() -> dg.JobDefinition:
    """Bronze → Silver → Gold for stores, with the Silver table's checks (one step each)."""
    job = dg.define_asset_job(
        "databricks_stores_chain",
        selection=dg.AssetSelection.assets(*CHAIN).without_checks() | dg.AssetSelection.checks_for_assets(CHECKED),
        executor_def=dg.in_process_executor,
    )
    return dg.Definitions.merge(build_definitions(), dg.Definitions(jobs=[job])).resolve_job_def(job.name)


def bronze_stores_job() -> dg.JobDefinition:
    """Bronze stores alone: one arrival partition materialized again."""
    job = dg.define_asset_job("databricks_bronze_stores", selection=dg.AssetSelection.assets(CHAIN[0]).without_checks(), executor_def=dg.in_process_executor)
    return dg.Definitions.merge(build_definitions(), dg.Definitions(jobs=[job])).resolve_job_def(job.name)


def maintenance_job() -> dg.JobDefinition:
    """The deployment's `lakehouse_maintenance` graph, its one op on a job cluster.

    In-process only because an ephemeral test instance cannot run the deployment's multiprocess
    executor; the op still runs remotely through the step launcher.
    """
    job = lakehouse_maintenance.graph.to_job(name="databricks_maintenance", executor_def=dg.in_process_executor, tags=lakehouse_maintenance.tags)
    return dg.Definitions(jobs=[job], resources=resources_for(get_environment())).resolve_job_def(job.name)


@dg.asset(key=["emulator", "exploding"], required_resource_keys={"lakehouse", STEP_LAUNCHER}, partitions_def=daily_partitions())
def exploding(context) -> None:
    rows = context.resources.lakehouse.engine.read_arrow(BRONZE_STORES, columns=["_source"]).num_rows
    raise ValueError(f"{EXPLOSION}: {rows} bronze rows looked at")


def failing_job() -> dg.JobDefinition:
    job = dg.define_asset_job("databricks_exploding", selection=[exploding], executor_def=dg.in_process_executor)
    return dg.Definitions(assets=[exploding], jobs=[job], resources=resources_for(get_environment())).resolve_job_def(job.name)
