"""When downstream partitions materialize by themselves (declarative automation).

Bronze is started by the sensors; every other table follows its inputs: a partition is
requested when a partition it reads was updated, never while an input is still being written
or one of its blocking checks failed. Late data updates older business dates, so the condition
looks back over the lateness window rather than only at the newest partition.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg


def follow_upstream(lookback_days: int, *, not_triggered_by: tuple[dg.AssetKey, ...] = ()) -> dg.AutomationCondition:
    """`not_triggered_by`: inputs whose updates alone should not rebuild the table (the calendar,
    which only ever gains new days); they still gate it through their checks."""
    blocking_check_failed = dg.AutomationCondition.any_checks_match(dg.AutomationCondition.check_failed(), blocking_only=True)
    updated = dg.AutomationCondition.any_deps_updated()
    if not_triggered_by:
        updated = updated.ignore(dg.AssetSelection.assets(*not_triggered_by))
    return (
        dg.AutomationCondition.in_latest_time_window(lookback_delta=dt.timedelta(days=lookback_days))
        & updated.since_last_handled()
        & ~dg.AutomationCondition.any_deps_match(blocking_check_failed)
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"an input partition updated (last {lookback_days} days), inputs settled, no blocking check failed")


def fill_missing(lookback_days: int) -> dg.AutomationCondition:
    """For tables with no inputs (the calendar): create recent partitions that do not exist yet."""
    return (
        dg.AutomationCondition.in_latest_time_window(lookback_delta=dt.timedelta(days=lookback_days))
        & dg.AutomationCondition.missing().since_last_handled()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"partition missing (last {lookback_days} days)")
