"""The command line: the instance it prepares loads, and its commands parse."""

from __future__ import annotations

import dagster as dg
import pytest

from retail_assets import cli


def test_dagster_home_config_is_a_valid_instance(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = cli.dagster_home(tmp_path)
    assert home == (tmp_path / "dagster_home").resolve()
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2


def test_unknown_command_is_refused():
    with pytest.raises(SystemExit):
        cli.main(["no-such-command"])
