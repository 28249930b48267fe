"""Fixtures shared by the whole suite: one Spark session, a fresh lakehouse per test."""

from __future__ import annotations

import pytest

from retail_assets.lib.engine import DeltaRsEngine
from retail_assets.lib.spark import get_spark


@pytest.fixture(scope="session")
def spark():
    session = get_spark(master="local[2]")
    yield session


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
