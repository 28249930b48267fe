"""Table maintenance: compact and cluster small files, then delete unreferenced ones.

Daily partition overwrites leave many small files and every replaced file behind. On Databricks
this runs `OPTIMIZE … ZORDER BY (key)` and `VACUUM … RETAIN n HOURS` on each Unity Catalog table
(on a job cluster, through the step launcher); locally the same statements run on the
`delta_spark` engine, and delta-rs does the same compaction, Z-ordering and vacuum on the
`delta_rs` engine's tables.
"""

# No `from __future__ import annotations`: Dagster reads the op's config annotation at runtime.
import dagster as dg

from retail_assets.lib.engine.delta_sql import DEFAULT_VACUUM_RETAIN_HOURS
from retail_assets.lib.orchestration.factories import STEP_LAUNCHER
from retail_assets.lib.registry.tables import TABLES


class MaintenanceConfig(dg.Config):
    zorder: bool = True
    vacuum: bool = True
    # Never below the deleted-file retention: readers and time travel still need those files.
    retain_hours: int = DEFAULT_VACUUM_RETAIN_HOURS
    tables: list[str] = []  # "layer.table" keys; empty = every registered table


@dg.op(required_resource_keys={"lakehouse", STEP_LAUNCHER}, tags={"kind": "delta"})
def optimize_and_vacuum(context: dg.OpExecutionContext, config: MaintenanceConfig) -> None:
    engine = context.resources.lakehouse.engine
    wanted = set(config.tables)
    unknown = wanted - {t.key for t in TABLES}
    if unknown:
        raise ValueError(f"unknown tables {sorted(unknown)}")
    for spec in TABLES:
        if wanted and spec.key not in wanted:
            continue
        # Kept apart: both engines report `sql` / `skipped` for each statement.
        done = {"optimize": engine.optimize(spec, zorder=config.zorder)}
        if config.vacuum:
            done["vacuum"] = engine.vacuum(spec, config.retain_hours)
        context.log.info(f"maintenance {spec.key}: {done}")


@dg.job(
    description="OPTIMIZE (Z-ordered by key) and VACUUM every lakehouse table.", tags={"retail/maintenance": "true"}
)
def lakehouse_maintenance():
    optimize_and_vacuum()


weekly_maintenance = dg.ScheduleDefinition(
    job=lakehouse_maintenance,
    cron_schedule="0 3 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Sunday 03:00 UTC, when no partition runs compete for the tables.",
)
