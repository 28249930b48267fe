"""Schedules, for deployments that prefer a clock to sensors (SPEC §11). Both are stopped by
default: the sensors and automation already do this work as data arrives; turn the sensors off
when turning these on.

- `ingest_hourly` (minute 5 of every hour): one run of `ingest_lakehouse` (every Bronze table
  and its checks: the stages `ingest_pos_stream`, `ingest_database` and `ingest_bronze`) over
  today's arrival partition: whatever reached the topic, the operational database and the
  landing zone since the last run. Without a database its table is left out of the run.
- `transform_every_two_hours` (minute 20 of every second hour): one run of `transform_lakehouse`
  (every table below Bronze, and the KPI report) over the days today's arrivals can change: the
  arrival days and business days today-L … today (L the lateness window; business day D reads
  arrival days D-1 … D+L, so today's arrivals change business days today-L … today+1, and
  tomorrow has no partition yet). Arrival-date tables re-done for earlier days are overwritten
  with the same rows.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from retail_assets.lib import settings
from retail_assets.lib.orchestration.stage_runs import RANGE_END, RANGE_START
from retail_assets.lib.registry.freshness import FRESHNESS_CHECK
from retail_assets.lib.registry.stages import STAGE
from retail_assets.lib.registry.tables import TABLES

SCHEDULE_TIMEZONE = "UTC"  # the daily partitions' calendar
INGEST_JOB = "ingest_lakehouse"
TRANSFORM_JOB = "transform_lakehouse"

_bronze = [dg.AssetKey([t.layer.value, t.name]) for t in TABLES if t.layer.started_by_sensors]
_freshness = dg.AssetSelection.checks(
    *(dg.AssetCheckKey(dg.AssetKey([t.layer.value, t.name]), FRESHNESS_CHECK) for t in TABLES)
)
ingest_lakehouse = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.assets(*_bronze) - _freshness,
    description="Every Bronze table and its checks over one arrival day, as `ingest_hourly` launches it.",
)
transform_lakehouse = dg.define_asset_job(
    TRANSFORM_JOB,
    # the tables below Bronze (dim_date reads nothing) and what reads them (the KPI report)
    selection=dg.AssetSelection.assets(
        *(dg.AssetKey([t.layer.value, t.name]) for t in TABLES if t.layer.value != "bronze")
    ).downstream()
    - _freshness,
    description="Every table below Bronze (and the KPI report) over a range of days in one run, as "
    "`transform_every_two_hours` launches it.",
)


def _today(context: dg.ScheduleEvaluationContext) -> dt.date:
    return context.scheduled_execution_time.astimezone(dt.UTC).date()


@dg.schedule(
    name="ingest_hourly",
    cron_schedule="5 * * * *",
    execution_timezone=SCHEDULE_TIMEZONE,
    job=ingest_lakehouse,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every hour: today's Kafka offsets and landing files into Bronze, in one run.",
)
def ingest_hourly(context: dg.ScheduleEvaluationContext):
    # A Bronze table of a source this deployment lacks (the database, `Stage.optional_source`)
    # would only fail the run.
    absent = {
        dg.AssetKey([t.layer.value, t.name])
        for t in TABLES
        if STAGE[t.stage].optional_source == "database" and not settings.database_configured()
    }
    return dg.RunRequest(
        run_key=f"{INGEST_JOB}:{context.scheduled_execution_time.isoformat()}",
        partition_key=_today(context).isoformat(),
        asset_selection=[k for k in _bronze if k not in absent] if absent else None,
    )


@dg.schedule(
    name="transform_every_two_hours",
    cron_schedule="20 */2 * * *",
    execution_timezone=SCHEDULE_TIMEZONE,
    job=transform_lakehouse,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every two hours: every table below Bronze over the days today's arrivals can "
    "change (today minus the lateness window … today), in one run.",
)
def transform_every_two_hours(context: dg.ScheduleEvaluationContext):
    today = _today(context)
    first = max(today - dt.timedelta(days=settings.lateness_days()), dt.date.fromisoformat(settings.partitions_start()))
    return dg.RunRequest(
        run_key=f"{TRANSFORM_JOB}:{context.scheduled_execution_time.isoformat()}",
        tags={RANGE_START: first.isoformat(), RANGE_END: today.isoformat()},
    )
