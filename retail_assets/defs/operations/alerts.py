"""Alerts on failures, so nobody has to watch the UI (SPEC §11).

Two sensors read the instance's run status changes after their cursor (a storage id), so every
finished run is looked at once:
- `run_failure_alerts`: a failed run, its failed steps with their assets and errors. A run that
  failed only because blocking checks failed is left to the check alert, which says more.
- `check_failure_alerts`: the failed checks of every finished run, succeeded or failed: a
  blocking (error-level) check always, a warn-level check when its figures cross the configured
  share (`Alerts.warn_share`).
Each run gives at most one message per sensor, sent to every configured channel (`Alerts`). On
their first tick the sensors start from the newest run status change: history is not replayed.
Both are stopped by default unless a channel is configured (`RETAIL_ALERT_*`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from retail_assets.lib.orchestration.alerts import Alert, Alerts, alerts_resource

RUN_FAILURE_ALERTS = "run_failure_alerts"
CHECK_FAILURE_ALERTS = "check_failure_alerts"
ALERT_INTERVAL_S = 30
# A tick looks at this many finished runs at most; the rest wait for the next tick.
RUNS_PER_TICK = 50
CHECK_FAILED = "DagsterAssetCheckFailedError"
FINISHED = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE)


def _status_changes(
    instance: dg.DagsterInstance, event_types: Sequence[dg.DagsterEventType], after: int
) -> list[dg.EventLogRecord]:
    records: list[dg.EventLogRecord] = []
    for event_type in event_types:
        records += instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after),
            limit=RUNS_PER_TICK,
            ascending=True,
        ).records
    return sorted(records, key=lambda r: r.storage_id)[:RUNS_PER_TICK]


def _newest(instance: dg.DagsterInstance, event_types: Sequence[dg.DagsterEventType]) -> int:
    newest = 0
    for event_type in event_types:
        page = instance.fetch_run_status_changes(event_type, limit=1, ascending=False).records
        newest = max([newest, *(r.storage_id for r in page)])
    return newest


def _partitions(run: dg.DagsterRun) -> str:
    tags = run.tags
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if start and end:
        return start if start == end else f"{start} … {end}"
    return "unpartitioned"


def _job(run: dg.DagsterRun) -> str:
    """The job's name; Dagster's implicit asset job (the UI's Materialize) said as such."""
    return "materialization" if run.job_name.startswith("__") else f"job {run.job_name}"


def _error_line(error: Any) -> str:
    """The user's error of a step failure (Dagster wraps it), as `Type: first line`."""
    while error.cause is not None and error.cls_name in ("DagsterExecutionStepExecutionError", "RetryRequested"):
        error = error.cause
    first = (error.message or "").strip().splitlines()[0] if (error.message or "").strip() else ""
    return f"{error.cls_name}: {first}"[:500]


def _step_assets(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, list[str]]:
    """Step key → the assets it materializes, from the run's execution plan."""
    plan = (
        instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id) if run.execution_plan_snapshot_id else None
    )
    found: dict[str, list[str]] = {}
    for step in plan.steps if plan else ():
        keys = [o.properties.asset_key for o in step.outputs if o.properties and o.properties.asset_key]
        found[step.key] = [k.to_user_string() for k in keys]
    return found


def run_failure_alert(instance: dg.DagsterInstance, run: dg.DagsterRun, alerts: Alerts) -> Alert | None:
    failures = [e.dagster_event for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
    errors = [(f.step_key, f.event_specific_data.error) for f in failures if f and f.event_specific_data]
    if errors and all(error.cls_name == CHECK_FAILED for _, error in errors):
        return None  # the check alert names the checks and their figures
    assets = _step_assets(instance, run)
    lines = [f"Run {run.run_id} ({_job(run)}), partitions {_partitions(run)}."]
    for step_key, error in errors:
        named = ", ".join(assets.get(step_key or "", [])) or step_key
        lines.append(f"Step {step_key} ({named}) failed: {_error_line(error)}")
    if not errors:
        ended = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        reason = ended[-1].dagster_event.message if ended and ended[-1].dagster_event else None
        lines.append(f"The run failed outside any step: {reason or 'no reason recorded'}")
    return Alert(
        subject=f"retail-assets: run failed: {_job(run)} {_partitions(run)} (run {run.run_id[:8]})",
        lines=lines,
        links=[("Run", alerts.run_url(run.run_id))],
    )


def _figures(evaluation: Any, limit: int = 10) -> dict[str, Any]:
    figures = {}
    for name, value in (evaluation.metadata or {}).items():
        plain = getattr(value, "value", value)
        if name != "partition" and isinstance(plain, (int, float, str)) and len(str(plain)) <= 80:
            figures[name] = plain
    return dict(list(figures.items())[:limit])


def worth_an_alert(evaluation: Any, warn_share: float) -> bool:
    """A failed check that should reach people: error level always; warn level when it failed
    against a threshold of its own, gives no share of rows, or its share reaches `warn_share`."""
    if evaluation.passed:
        return False
    if evaluation.severity == dg.AssetCheckSeverity.ERROR:
        return True
    figures = _figures(evaluation, limit=100)
    if "threshold" in figures:
        return True
    rows, flagged = figures.get("rows"), figures.get("flagged_rows")
    if isinstance(rows, int) and isinstance(flagged, int) and rows > 0:
        return flagged / rows >= warn_share
    return True


def check_failure_alert(instance: dg.DagsterInstance, run: dg.DagsterRun, alerts: Alerts) -> Alert | None:
    entries = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [e.dagster_event.event_specific_data for e in entries if e.dagster_event]
    failed = [e for e in evaluations if worth_an_alert(e, alerts.warn_share)]
    if not failed:
        return None
    lines = [f"Run {run.run_id} ({_job(run)}), partitions {_partitions(run)}."]
    links = [("Run", alerts.run_url(run.run_id))]
    for e in failed:
        level = "blocking" if e.blocking else e.severity.value.lower()
        recorded = (e.metadata or {}).get("partition")
        partition = e.partition or getattr(recorded, "value", recorded) or _partitions(run)
        figures = ", ".join(f"{k}={v}" for k, v in _figures(e).items())
        lines.append(
            f"{e.asset_key.to_user_string()} · {e.check_name} ({level}) failed on {partition}: {e.description or ''}".rstrip(
                ": "
            )
        )
        if figures:
            lines.append(f"    figures: {figures}")
        link = (f"Checks of {e.asset_key.to_user_string()}", alerts.asset_url(e.asset_key, "checks"))
        if link not in links:
            links.append(link)
    first = failed[0]
    more = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
    return Alert(
        subject=f"retail-assets: check failed: {first.asset_key.to_user_string()} {first.check_name}{more} "
        f"({_partitions(run)}, run {run.run_id[:8]})",
        lines=lines,
        links=links,
    )


def _alert_sensor(
    name: str,
    event_types: Sequence[dg.DagsterEventType],
    compose: Callable[[dg.DagsterInstance, dg.DagsterRun, Alerts], Alert | None],
    description: str,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        minimum_interval_seconds=ALERT_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING if alerts_resource().enabled else dg.DefaultSensorStatus.STOPPED,
        description=description,
    )
    def _sensor(context: dg.SensorEvaluationContext, alerts: Alerts):
        instance = context.instance
        if context.cursor is None:
            context.update_cursor(str(_newest(instance, event_types)))
            return dg.SkipReason("started: alerts on runs that finish from now on")
        if not alerts.enabled:
            return dg.SkipReason("no alert channel is configured (RETAIL_ALERT_SLACK_* or RETAIL_ALERT_SMTP_*)")
        sent = 0
        for record in _status_changes(instance, event_types, int(context.cursor)):
            run = instance.get_run_by_id(record.run_id) if record.run_id else None
            alert = compose(instance, run, alerts) if run is not None else None
            if alert is not None:
                alerts.send(alert, context.log)
                sent += 1
            context.update_cursor(str(record.storage_id))  # sent is not sent again if a later send fails
        return dg.SensorResult() if sent else dg.SkipReason("nothing to alert on")

    return _sensor


run_failure_alerts = _alert_sensor(
    RUN_FAILURE_ALERTS,
    (dg.DagsterEventType.RUN_FAILURE,),
    run_failure_alert,
    "Sends a message (Slack, e-mail) for each failed run: its job, partitions, failed steps with their assets and errors, and a link to it.",
)
check_failure_alerts = _alert_sensor(
    CHECK_FAILURE_ALERTS,
    FINISHED,
    check_failure_alert,
    "Sends a message (Slack, e-mail) for each finished run with failed blocking checks, or warn checks past their threshold: each check with its partition and figures.",
)
