"""Fixtures shared by the whole suite: one Spark session, a fresh lakehouse per test."""

from __future__ import annotations

import pytest

from retail_assets.lib.engine import DeltaRsEngine
from retail_assets.lib.spark import get_spark

# Longest modules first. `.ci/run` hands whole modules to two workers in collection order; a
# long module collected last (the simulated weeks, the `dagster dev` tests) would otherwise run
# alone at the end while the other worker idles.
LONG_FIRST = ("slow", "e2e", "reliability")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        marks = {m.name for m in item.iter_markers()}
        return next((i for i, name in enumerate(LONG_FIRST) if name in marks), len(LONG_FIRST))

    items.sort(key=rank)


@pytest.fixture(scope="session")
def spark():
    session = get_spark(master="local[2]")
    yield session


@pytest.fixture(scope="module")
def monkeymodule():
    """`monkeypatch` for module-scoped fixtures (a simulated week's environment)."""
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture
def engine(spark, tmp_path):
    return DeltaRsEngine(tmp_path / "lakehouse", spark=spark)


@pytest.fixture(scope="session")
def kafka_broker():
    """One local Kafka-protocol broker (SPEC §8) on a free loopback port for the session.

    Its storage is memory only; tests that need a clean log use their own topic name.
    """
    from retail_assets.lib.broker import LocalBroker

    with LocalBroker() as broker:
        yield broker
