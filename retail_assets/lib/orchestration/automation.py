"""When downstream partitions materialize by themselves (declarative automation).

Bronze is started by the sensors; every other table follows its inputs: a partition is
requested when a partition it reads was updated, never while an input is still being written
or one of its blocking checks failed.

"Updated since" is judged against the last time automation *requested* the partition, not the
last time anything wrote it: a Kafka run writes today's Silver and fact rows itself (see
`defs/bronze/sensors.py`), and a dimension rebuilt while that run was writing the fact must still
rebuild it afterwards; were the run's own write to count as handling, an input update landing
in the same evaluation interval would be lost.

Two paces. The newest partition (today) follows at once: fresh point-of-sale data reaches Gold
within a run or two. Older partitions inside the lateness window change only through late data;
they catch up together on a short cron (`CATCH_UP_CRON`), so one late event does not cost a run
per table and day the moment it lands. Tables that reconcile across days (the quarantine ledger
with its conservation check) follow only on that cron, every partition together, so the check
always sees the Silver partitions of the same wave.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

CATCH_UP_CRON = "*/5 * * * *"


def follow_upstream(
    lookback_days: int, *, not_triggered_by: tuple[dg.AssetKey, ...] = (), newest_at_once: bool = True
) -> dg.AutomationCondition:
    """`not_triggered_by`: inputs whose updates alone should not rebuild the table (the calendar,
    which only ever gains new days); they still gate it through their checks.
    `newest_at_once=False`: even the newest partition waits for the catch-up cron."""
    blocking_check_failed = dg.AutomationCondition.any_checks_match(
        dg.AutomationCondition.check_failed(), blocking_only=True
    )
    updated = dg.AutomationCondition.any_deps_updated()
    if not_triggered_by:
        updated = updated.ignore(dg.AssetSelection.assets(*not_triggered_by))
    window = dg.AutomationCondition.in_latest_time_window(lookback_delta=dt.timedelta(days=lookback_days))
    catch_up = dg.AutomationCondition.cron_tick_passed(CATCH_UP_CRON)
    if newest_at_once:
        when = dg.AutomationCondition.in_latest_time_window() | catch_up
        pace = f"today at once, older days on '{CATCH_UP_CRON}'"
    else:
        when = catch_up
        pace = f"on '{CATCH_UP_CRON}'"
    return (
        window
        & updated.since(dg.AutomationCondition.newly_requested() | dg.AutomationCondition.initial_evaluation())
        & when
        & ~dg.AutomationCondition.any_deps_match(blocking_check_failed)
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(
        f"an input partition updated (last {lookback_days} days; {pace}), inputs settled, no blocking check failed"
    )


def fill_missing(lookback_days: int) -> dg.AutomationCondition:
    """For tables with no inputs (the calendar): create recent partitions that do not exist yet."""
    return (
        dg.AutomationCondition.in_latest_time_window(lookback_delta=dt.timedelta(days=lookback_days))
        & dg.AutomationCondition.missing().since_last_handled()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"partition missing (last {lookback_days} days)")
