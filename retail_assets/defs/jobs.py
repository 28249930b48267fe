"""Jobs a user can launch per partition from the UI or the CLI, in dependency order.

Arrival-date jobs take the day data landed; event-date jobs the business day.
"""

from __future__ import annotations

import dagster as dg

from retail_assets.lib.registry.stages import STAGES

stage_jobs = [
    dg.define_asset_job(name=stage.job_name, selection=stage.selection(), description=stage.description)
    for stage in STAGES
]
