"""The code location loads, and every registry table is a partitioned asset with checks."""

from __future__ import annotations

import dagster as dg
import pytest

from retail_assets.definitions import build_definitions
from retail_assets.lib.settings import ENV_VAR, Environment, get_environment
from retail_assets.lib.tables import TABLES


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions()


def test_every_table_is_a_partitioned_asset_with_checks(defs):
    graph = defs.resolve_asset_graph()
    check_keys = graph.asset_check_keys
    for spec in TABLES:
        key = dg.AssetKey([spec.layer.value, spec.name])
        assert key in graph.get_all_asset_keys(), f"{spec.key} is not an asset"
        node = graph.get(key)
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition), f"{spec.key} is not daily partitioned"
        assert node.group_name == spec.layer.value
        assert spec.grain in (node.description or "")
        checks = {c.name for c in check_keys if c.asset_key == key}
        assert checks, f"{spec.key} has no asset check"
        # Bronze is started by sensors; everything downstream follows by itself.
        assert (node.automation_condition is None) == (spec.layer.value == "bronze"), spec.key


def test_lateness_window_is_expressed_in_partition_mappings(defs):
    graph = defs.resolve_asset_graph()
    sales = graph.get(dg.AssetKey(["silver", "sales_lines"]))
    mapping = sales.partition_mappings[dg.AssetKey(["bronze", "sales_files"])]
    assert isinstance(mapping, dg.TimeWindowPartitionMapping)
    assert (mapping.start_offset, mapping.end_offset) == (-1, 2)


def test_definitions_validate(defs):
    dg.Definitions.validate_loadable(defs)
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"ingest_bronze", "build_gold"}


def test_stages_cover_every_table_once():
    from retail_assets.lib.pipeline import STAGES

    staged = [t.key for stage in STAGES for t in stage.tables]
    assert sorted(staged) == sorted(t.key for t in TABLES)
    for stage in STAGES:
        assert {t.partitioning for t in stage.tables} == {stage.partitioning}, stage.job_name


def test_environment_selection(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert get_environment() is Environment.LOCAL
    monkeypatch.setenv(ENV_VAR, "moon")
    with pytest.raises(ValueError, match="not a known environment"):
        get_environment()
