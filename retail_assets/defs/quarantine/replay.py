"""The quarantine replay job: re-evaluate the records quarantined under chosen rules on chosen
arrival days against today's rules and master data (`lib/orchestration/replay.py`).

Launch it from the UI (Launchpad) or the CLI with its config, e.g.

    ops:
      replay_quarantined:
        config: {rules: [invalid_value], first_day: "2026-11-02", last_day: "2026-11-04"}

Each stage run it starts is an ordinary run of that stage's job, tagged `retail/replay` with this
run's id; the records that now pass are in Silver and Gold afterwards, and their quarantine rows
stay, stamped with when and by which run they were released.
"""

# No `from __future__ import annotations`: Dagster reads the op's config annotation at runtime.
import datetime as dt

import dagster as dg

from retail_assets.lib.engine import PartitionRange
from retail_assets.lib.orchestration import replay
from retail_assets.lib.orchestration.stage_runs import contiguous, execute_stage
from retail_assets.lib.registry.tables import GOLD_DIM_CUSTOMER

REPLAY_TAG = "retail/replay"


class ReplayConfig(dg.Config):
    rules: list[str]  # names of rule_violations rules
    first_day: str  # arrival days whose quarantined records are re-evaluated (ISO dates)
    last_day: str = ""  # default: first_day


def _dimensions_day(instance: dg.DagsterInstance, fallback: dt.date) -> dt.date:
    """The newest arrival day the dimensions were built for (they are rebuilt whole as of it)."""
    event = instance.get_latest_materialization_event(dg.AssetKey(["gold", GOLD_DIM_CUSTOMER.name]))
    partition = event and event.asset_materialization and event.asset_materialization.partition
    return max(dt.date.fromisoformat(partition), fallback) if partition else fallback


@dg.op(required_resource_keys={"lakehouse"}, tags={"kind": "delta"})
def replay_quarantined(context: dg.OpExecutionContext, config: ReplayConfig) -> dg.Output[dict]:
    first = dt.date.fromisoformat(config.first_day)
    days = PartitionRange(first, dt.date.fromisoformat(config.last_day or config.first_day))
    engine = context.resources.lakehouse.engine
    try:
        chosen = replay.plan(engine, config.rules, days)
    except ValueError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    context.log.info(f"{chosen.records.num_rows} records quarantined under {', '.join(config.rules)} on {days}")
    run_ids: set[str] = set()
    if chosen.records.num_rows:
        for stage, stage_days in chosen.runs(_dimensions_day(context.instance, days.end)):
            job = context.repository_def.get_job(stage)
            for partition in contiguous(stage_days):
                key = partition.start.isoformat() if partition.start == partition.end else partition
                result = execute_stage(job, key, context.instance, tags={REPLAY_TAG: context.run_id})
                run_ids.add(result.run_id)
                if not result.success:
                    raise dg.Failure(f"the replay's {stage} run for {partition} failed (run {result.run_id})")
                context.log.info(f"{stage} {partition}: run {result.run_id}")
    figures = replay.outcome(engine, chosen, run_ids) if chosen.records.num_rows else {"chosen": 0}
    return dg.Output(figures, metadata={**figures, "stage_runs": len(run_ids)})


@dg.job(
    description="Re-evaluate the records quarantined under chosen rules on chosen arrival days against today's "
    "rules and master data; those that pass enter Silver and Gold through the stage jobs, and their quarantine "
    "rows record when and by which run they were released.",
    tags={REPLAY_TAG: "true"},
)
def replay_quarantine():
    replay_quarantined()
