"""Fixtures for the end-to-end tests against a running `dagster dev`.

`retail_assets.tooling.devserver.start_dagster_dev(root, env=...)` starts the project the way a user
does (`retail-assets ui`: local Kafka broker + `dagster dev`, webserver and daemon) on free
loopback ports with a temporary data root and DAGSTER_HOME, and stops its whole process group
on exit. The session fixture `dagster_dev` is one such instance with every sensor stopped, for
tests that drive materializations themselves; tests that need other settings start their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from retail_assets.lib.settings import project_root
from retail_assets.tooling.devserver import DagsterDev, start_dagster_dev

__all__ = ["DagsterDev", "start_dagster_dev"]

# Test outputs a person looks at after a run (screenshots); ignored by git.
ARTIFACTS = project_root() / "test-artifacts"


def partitions_start(today: dt.date | None = None) -> dt.date:
    """A first partition a week back: enough history for the tests, few partitions to draw."""
    return (today or dt.date.today()) - dt.timedelta(days=7)


@pytest.fixture(scope="session")
def dagster_dev(tmp_path_factory) -> Iterator[DagsterDev]:
    """`dagster dev` with every project sensor stopped: materializations happen only on request."""
    env = {"RETAIL_SENSORS_DEFAULT": "stopped", "RETAIL_PARTITIONS_START": partitions_start().isoformat()}
    with start_dagster_dev(tmp_path_factory.mktemp("dagster_dev"), env) as dev:
        yield dev


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
