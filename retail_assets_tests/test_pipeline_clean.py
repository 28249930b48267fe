"""Clean data through every stage job: every check of the graph is evaluated and passes, and
nothing is quarantined. (The defect week is `test_pipeline.py`; the two run on different workers.)"""

from __future__ import annotations

import pytest

from retail_assets.lib.registry.freshness import FRESHNESS_CHECK
from retail_assets.lib.registry.tables import QUARANTINE_INGEST_REJECTS, QUARANTINE_RULE_VIOLATIONS
from retail_assets_tests.simulated_week import Week, run_simulated_week

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clean_week(tmp_path_factory, spark, monkeymodule, postgres) -> Week:
    # One business day (and its lateness window) shows that clean data passes every check, run
    # one partition per run (what the UI's default backfill does; the defect week runs ranges).
    return run_simulated_week(
        tmp_path_factory.mktemp("clean"),
        spark,
        defects=False,
        monkeypatch=monkeymodule,
        postgres=postgres,
        n_days=1,
        by_range=False,
    )


def test_clean_week_passes_every_check(clean_week):
    failed = [
        (s.stage, s.partition, s.checks_failed, s.checks_warned)
        for s in clean_week.summaries
        if not s.success or s.checks_failed or s.checks_warned
    ]
    assert failed == []
    evaluated = {(asset, check) for s in clean_week.summaries for asset, check, _, _ in s.evaluations}
    graph = clean_week.defs.resolve_asset_graph()
    # every check but freshness, which is the freshness sensor's, not a stage's
    every_check = {("/".join(k.asset_key.path), k.name) for k in graph.asset_check_keys if k.name != FRESHNESS_CHECK}
    assert evaluated == every_check
    assert clean_week.engine.read_arrow(QUARANTINE_RULE_VIOLATIONS).num_rows == 0
    assert clean_week.engine.read_arrow(QUARANTINE_INGEST_REJECTS).num_rows == 0
