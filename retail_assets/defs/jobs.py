"""Jobs a user can launch per partition from the UI or the CLI, in dependency order.

Arrival-date jobs take the day data landed; event-date jobs the business day.
"""

from __future__ import annotations

import dagster as dg

from retail_assets.defs.gold.report import KPI_REPORT
from retail_assets.lib.registry.stages import STAGES

# Assets that are no registry table, in the stage whose tables they read last: the KPI report
# renders from Gold, so the stage that builds Gold (and the main job) renders it too.
BEYOND_THE_REGISTRY = {"build_gold": (KPI_REPORT,)}

stage_jobs = [
    dg.define_asset_job(
        name=stage.job_name,
        selection=stage.selection() | dg.AssetSelection.assets(*BEYOND_THE_REGISTRY.get(stage.job_name, ())),
        description=stage.description,
    )
    for stage in STAGES
]
