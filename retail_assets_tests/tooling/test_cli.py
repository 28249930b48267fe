"""The command line: the instance it prepares loads, and its commands parse."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from retail_assets.definitions import AUTOMATION_SENSOR
from retail_assets.defs.bronze.sensors import LANE_TAGS
from retail_assets.lib.registry.stages import STAGES
from retail_assets.lib.settings import project_root
from retail_assets.tooling import cli


def test_dagster_home_config_is_a_valid_instance(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = cli.dagster_home(tmp_path)
    assert home == (tmp_path / "dagster_home").resolve()
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    queue = instance.get_concurrency_config().run_queue_config
    assert queue.max_concurrent_runs == 3
    limits = {(limit["key"], limit["value"]): limit["limit"] for limit in queue.tag_concurrency_limits}
    # one Kafka run at a time, and automation always leaves a slot for the sensors' runs
    assert limits[("retail/lane", LANE_TAGS["retail/lane"])] == 1
    assert limits[("dagster/sensor_name", AUTOMATION_SENSOR)] < queue.max_concurrent_runs
    # the queue is looked at every second (Dagster's default is five)
    assert instance.run_coordinator.dequeue_interval_seconds == 1


def dagster_cli(
    tmp_path: Path, monkeypatch, args: list[str], *, partitions_start: dt.date
) -> tuple[Path, subprocess.CompletedProcess]:
    """Run the `dagster` command line against a fresh instance configured as `retail-assets`
    writes it (returns its home), on a data root under `tmp_path`; it must succeed."""
    # `cli.dagster_home` keeps a DAGSTER_HOME already in the environment: give it this test's.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    home = cli.dagster_home(tmp_path)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RETAIL_DATA_ROOT": str(tmp_path),
        "RETAIL_PARTITIONS_START": partitions_start.isoformat(),
    }
    dagster = str(Path(sys.executable).with_name("dagster"))
    done = subprocess.run([dagster, *args], cwd=project_root(), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return home, done


def test_dagster_asset_materialize_builds_one_partition_from_the_command_line(tmp_path, monkeypatch):
    """`dagster asset materialize --select … --partition …` as the README shows it."""
    day = dt.date.today() - dt.timedelta(days=1)
    args = [
        "asset",
        "materialize",
        "-m",
        "retail_assets.definitions",
        "--select",
        "gold/dim_date",
        "--partition",
        day.isoformat(),
    ]
    home, _ = dagster_cli(tmp_path, monkeypatch, args, partitions_start=day - dt.timedelta(days=3))

    instance = dg.DagsterInstance.from_config(str(home))
    records = instance.fetch_materializations(dg.AssetKey(["gold", "dim_date"]), limit=5).records
    assert [r.asset_materialization.partition for r in records] == [day.isoformat()]
    assert records[0].asset_materialization.metadata["dagster/row_count"].value == 1
    # The asset's checks ran in the same run, and passed.
    evaluations = [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(records[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    assert {e.check_name for e in evaluations} == {
        "primary_key_unique_not_null",
        "column_schema_matches_registry",
        "values_within_rules",
        "fresh",  # the table's freshness, evaluated after its materialization
    }
    assert all(e.passed for e in evaluations)
    assert (tmp_path / "lakehouse" / "gold" / "dim_date" / "_delta_log").is_dir()


def test_dagster_job_backfill_queues_one_run_per_partition_of_a_range_from_the_command_line(tmp_path, monkeypatch):
    """`dagster job backfill -w workspace.yaml -j … --from … --to … --noprompt` as the README shows it:
    it records the backfill and queues one run of the stage job per partition, which the daemon of
    a running `dagster dev` then launches."""
    first = dt.date.today() - dt.timedelta(days=3)
    partitions = [(first + dt.timedelta(days=i)).isoformat() for i in range(3)]
    job = "refine_master_data"
    args = [
        "job",
        "backfill",
        "-w",
        "workspace.yaml",
        "-j",
        job,
        "--from",
        partitions[0],
        "--to",
        partitions[-1],
        "--noprompt",
    ]
    home, done = dagster_cli(tmp_path, monkeypatch, args, partitions_start=first - dt.timedelta(days=2))

    instance = dg.DagsterInstance.from_config(str(home))
    [backfill] = instance.get_backfills()
    assert backfill.job_name == job
    assert backfill.partition_names == partitions
    assert f"Launched backfill job `{backfill.backfill_id}`" in done.stdout
    runs = [
        r.dagster_run for r in instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
    ]
    assert sorted(run.tags["dagster/partition"] for run in runs) == partitions
    assert {run.job_name for run in runs} == {job}
    # Queued, not run: the instance's run queue hands them to `dagster dev`'s daemon.
    assert {run.status for run in runs} == {dg.DagsterRunStatus.QUEUED}
    # Each run builds the stage's tables and runs their checks.
    stage = next(s for s in STAGES if s.job_name == job)
    steps = {step.key for step in instance.get_execution_plan_snapshot(runs[0].execution_plan_snapshot_id).steps}
    assert {"__".join(key.path) for key in stage.asset_keys()} <= steps
    assert {f"{t.layer.value}_{t.name}_checks" for t in stage.tables} <= steps
