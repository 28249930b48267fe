"""Schedules for a clock instead of sensors: stopped by default; the hourly one ingests today's
arrival partition, the two-hourly one transforms, in one run, every day today's arrivals can
change, as the graph's lateness windows say."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from retail_assets.definitions import defs
from retail_assets.defs.operations.schedules import ingest_hourly, transform_every_two_hours
from retail_assets.lib.orchestration.stage_runs import RANGE_END, RANGE_START
from retail_assets.lib.registry.freshness import FRESHNESS_CHECK
from retail_assets.lib.registry.tables import TABLES

AT = dt.datetime(2026, 11, 5, 10, 20, tzinfo=dt.UTC)


def _key(spec) -> dg.AssetKey:
    return dg.AssetKey([spec.layer.value, spec.name])


def test_schedules_are_stopped_by_default_and_target_the_layers():
    schedules = {s.name: s for s in defs.schedules}
    assert {"ingest_hourly", "transform_every_two_hours"} <= set(schedules)
    assert all(
        schedules[n].default_status is dg.DefaultScheduleStatus.STOPPED
        for n in ("ingest_hourly", "transform_every_two_hours")
    )
    assert schedules["ingest_hourly"].cron_schedule == "5 * * * *"
    assert schedules["transform_every_two_hours"].cron_schedule == "20 */2 * * *"
    transform = defs.resolve_job_def("transform_lakehouse").asset_layer.executable_asset_keys
    ingest = defs.resolve_job_def("ingest_lakehouse").asset_layer.executable_asset_keys
    assert ingest == {_key(t) for t in TABLES if t.layer.value == "bronze"}
    assert {_key(t) for t in TABLES} - ingest <= transform and not transform & ingest
    graph = defs.resolve_asset_graph()
    job_checks = defs.resolve_job_def("transform_lakehouse").asset_layer.asset_graph.asset_check_keys
    assert job_checks and not [k for k in job_checks if k.name == FRESHNESS_CHECK]
    assert {k for k in graph.asset_check_keys if k.name == FRESHNESS_CHECK}  # the sensor's, not the schedule's


def test_ingest_takes_todays_arrival_partition(monkeypatch):
    monkeypatch.delenv("RETAIL_DB_JDBC_URL", raising=False)
    request = ingest_hourly(dg.build_schedule_context(scheduled_execution_time=AT))
    assert request.partition_key == "2026-11-05" and request.run_key.startswith("ingest_lakehouse:")
    # without an operational database its Bronze table is left out of the run, the others stay
    assert dg.AssetKey(["bronze", "orders_changes"]) not in request.asset_selection
    assert dg.AssetKey(["bronze", "pos_transactions"]) in request.asset_selection
    monkeypatch.setenv("RETAIL_DB_JDBC_URL", "jdbc:postgresql://127.0.0.1:5432/retail")
    assert ingest_hourly(dg.build_schedule_context(scheduled_execution_time=AT)).asset_selection is None


def test_transform_covers_every_business_day_todays_arrivals_feed():
    request = transform_every_two_hours(dg.build_schedule_context(scheduled_execution_time=AT))
    first, last = dt.date.fromisoformat(request.tags[RANGE_START]), dt.date.fromisoformat(request.tags[RANGE_END])
    # the business days whose Silver sales read arrival day AT through the declared window
    sales = defs.resolve_asset_graph().get(dg.AssetKey(["silver", "sales_lines"]))
    window = sales.partition_mappings[dg.AssetKey(["bronze", "sales_files"])]
    today = AT.date()
    fed = {today - dt.timedelta(days=o) for o in range(window.start_offset, window.end_offset + 1)}
    assert {d for d in fed if d <= today} == {first + dt.timedelta(days=i) for i in range((last - first).days + 1)}
    # a second tick is another run
    later = transform_every_two_hours(dg.build_schedule_context(scheduled_execution_time=AT + dt.timedelta(hours=2)))
    assert later.run_key != request.run_key
