"""Backfill policies: what a request over several partitions becomes (a UI backfill, `dagster
asset materialize --partition-range`, automation's catch-up) follows from how each asset's
compute function handles a range (`RangeMode`): one run over the range, or one run per day."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from retail_assets.lib.orchestration.factories import RangeMode, TableOutput, build_table_asset
from retail_assets.lib.orchestration.stage_runs import stage_takes_ranges
from retail_assets.lib.registry.freshness import FRESHNESS_CHECK
from retail_assets.lib.registry.stages import STAGES, configured_stages
from retail_assets.lib.registry.tables import GOLD_DIM_DATE
from retail_assets.tooling.main_job import planned_runs

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]


@pytest.fixture(scope="module")
def defs():
    from retail_assets.definitions import build_definitions

    return build_definitions()


def test_every_asset_runs_a_range_in_one_run_but_the_kafka_stream(defs):
    graph = defs.resolve_asset_graph()
    policies = {
        "/".join(key.path): graph.get(key).backfill_policy
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable
    }
    per_day = {key for key, policy in policies.items() if policy.max_partitions_per_run == 1}
    assert per_day == {"bronze/pos_transactions", "bronze/orders_changes"}
    assert all(p is not None and (p.max_partitions_per_run in (None, 1)) for p in policies.values()), policies
    assert [s.job_name for s in STAGES if not stage_takes_ranges(defs, s.job_name)] == [
        "ingest_pos_stream",
        "ingest_database",
    ]
    # the main job's plan follows the policies: the stream a run per day, every other stage one run;
    # without an operational database its stage is left out
    runs = planned_runs(defs, DAYS, DAYS)
    assert "ingest_database" not in {stage.job_name for stage, _ in runs}
    assert len(runs) == len(DAYS) + len(configured_stages(set())) - 1


def test_the_policy_is_the_range_mode_of_the_compute_function():
    for mode, per_run in ((RangeMode.ONE_DAY_PER_RUN, 1), (RangeMode.EACH_DAY, None), (RangeMode.WHOLE_RANGE, None)):
        asset = build_table_asset(spec=GOLD_DIM_DATE, upstream=[], compute=lambda run: TableOutput(None), ranges=mode)
        assert asset.backfill_policy.max_partitions_per_run == per_run, mode


def test_dagster_asset_materialize_takes_a_partition_range(tmp_path):
    """The command line's range: one run, a materialization and the checks per day."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RETAIL_DATA_ROOT": str(tmp_path / "data"),
        "RETAIL_KAFKA_BOOTSTRAP": "127.0.0.1:9",
    }

    def materialize_range(selection: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "retail_assets.definitions"]
            + ["--select", selection, "--partition-range", f"{DAYS[0]}...{DAYS[-1]}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    done = materialize_range("gold/dim_date")
    assert done.returncode == 0, done.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_run_records()
        assert len(runs) == 1 and runs[0].dagster_run.status is dg.DagsterRunStatus.SUCCESS
        key = dg.AssetKey(["gold", "dim_date"])
        materialized = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=10).records
        assert sorted(r.partition_key for r in materialized) == DAYS
        evaluations = [
            e.event_specific_data
            for e in (
                r.event_log_entry.dagster_event
                for r in instance.get_records_for_run(
                    runs[0].dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
                ).records
            )
        ]
        # each day's checks on that day; the table's freshness on the table
        assert {e.partition for e in evaluations if e.check_name != FRESHNESS_CHECK} == set(DAYS)
        assert {e.partition for e in evaluations if e.check_name == FRESHNESS_CHECK} == {None}
        assert all(e.passed for e in evaluations)

    # the Kafka stream takes one day per run: the command line refuses it a range, saying why
    refused = materialize_range("bronze/pos_transactions")
    assert refused.returncode != 0 and "single_run" in refused.stderr + refused.stdout
