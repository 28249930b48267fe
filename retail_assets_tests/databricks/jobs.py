"""Jobs the emulator tests launch.

They are built by functions so `dg.build_reconstructable_job` can rebuild them on the emulated
cluster exactly as a Databricks cluster rebuilds a code location: by importing it again there,
with only the environment the step launcher forwarded.
"""

from __future__ import annotations

import dagster as dg

from retail_assets.definitions import build_definitions
from retail_assets.defs.maintenance.jobs import lakehouse_maintenance
from retail_assets.lib.orchestration.environments import resources_for
from retail_assets.lib.orchestration.factories import STEP_LAUNCHER, daily_partitions
from retail_assets.lib.registry.tables import BRONZE_STORES
from retail_assets.lib.settings import get_environment

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
    job = dg.define_asset_job(
        "databricks_bronze_stores",
        selection=dg.AssetSelection.assets(CHAIN[0]).without_checks(),
        executor_def=dg.in_process_executor,
    )
    return dg.Definitions.merge(build_definitions(), dg.Definitions(jobs=[job])).resolve_job_def(job.name)


def bronze_orders_job() -> dg.JobDefinition:
    """Bronze from the operational database alone: one arrival day's changes."""
    job = dg.define_asset_job(
        "databricks_bronze_orders",
        selection=dg.AssetSelection.assets(dg.AssetKey(["bronze", "orders_changes"])).without_checks(),
        executor_def=dg.in_process_executor,
    )
    return dg.Definitions.merge(build_definitions(), dg.Definitions(jobs=[job])).resolve_job_def(job.name)


def maintenance_job() -> dg.JobDefinition:
    """The deployment's `lakehouse_maintenance` graph, its one op on a job cluster.

    In-process only because an ephemeral test instance cannot run the deployment's multiprocess
    executor; the op still runs remotely through the step launcher.
    """
    job = lakehouse_maintenance.graph.to_job(
        name="databricks_maintenance", executor_def=dg.in_process_executor, tags=lakehouse_maintenance.tags
    )
    return dg.Definitions(jobs=[job], resources=resources_for(get_environment())).resolve_job_def(job.name)


@dg.asset(
    key=["emulator", "exploding"],
    required_resource_keys={"lakehouse", STEP_LAUNCHER},
    partitions_def=daily_partitions(),
)
def exploding(context) -> None:
    rows = context.resources.lakehouse.engine.read_arrow(BRONZE_STORES, columns=["_source"]).num_rows
    raise ValueError(f"{EXPLOSION}: {rows} bronze rows looked at")


def failing_job() -> dg.JobDefinition:
    job = dg.define_asset_job("databricks_exploding", selection=[exploding], executor_def=dg.in_process_executor)
    return dg.Definitions(assets=[exploding], jobs=[job], resources=resources_for(get_environment())).resolve_job_def(
        job.name
    )


def _light(name: str, upstream: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(key=["emulator", name], deps=upstream, required_resource_keys={STEP_LAUNCHER})
    def _asset(context) -> dg.MaterializeResult:
        import os

        # (the launcher's step main sets DATABRICKS_TOKEN to "" when absent: a name, no credential)
        seen = sorted(name for name, value in os.environ.items() if name.startswith("DATABRICKS_") and value)
        return dg.MaterializeResult(
            metadata={
                "runtime": os.environ.get("DATABRICKS_RUNTIME_VERSION", ""),
                "databricks variables": ",".join(seen),
            }
        )

    return _asset


_FIRST = _light("first", [])
_SECOND = _light("second", [_FIRST.key])
LIGHT = [_FIRST, _SECOND, _light("third", [_SECOND.key])]


def light_stage_job() -> dg.JobDefinition:
    """Three dependent steps that do nothing but start on a cluster: how many clusters a run of
    several steps creates, without the cost of their work."""
    job = dg.define_asset_job("databricks_light_stage", selection=LIGHT, executor_def=dg.in_process_executor)
    return dg.Definitions(assets=LIGHT, jobs=[job], resources=resources_for(get_environment())).resolve_job_def(
        job.name
    )


def bronze_pos_job() -> dg.JobDefinition:
    """Bronze point-of-sale events alone: the Kafka sensor's lane starts with it."""
    from retail_assets.lib.orchestration.factories import asset_key
    from retail_assets.lib.registry.tables import BRONZE_POS_TRANSACTIONS

    job = dg.define_asset_job(
        "databricks_bronze_pos",
        selection=dg.AssetSelection.assets(asset_key(BRONZE_POS_TRANSACTIONS)).without_checks(),
        executor_def=dg.in_process_executor,
    )
    return dg.Definitions.merge(build_definitions(), dg.Definitions(jobs=[job])).resolve_job_def(job.name)
