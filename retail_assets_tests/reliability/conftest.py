"""A small lakehouse built once from hostile inputs: one arrival day of landing files and Kafka
events (see `hostile.py`) run through every stage job. It is the fault-free reference the crash
tests compare against and the Gold the security tests scan."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg
import pytest

from retail_assets.lib.engine import DeltaRsEngine
from retail_assets.lib.registry.stages import configured_stages
from retail_assets.lib.registry.tables import KAFKA_TOPIC
from retail_assets.tooling.broker import LocalBroker, ensure_topic, produce
from retail_assets.tooling.main_job import RunSummary, run_stage
from retail_assets_tests.reliability import hostile
from retail_assets_tests.simulated_week import ENGINE_SETTINGS, build_defs


@dataclass
class HostileLake:
    root: Path
    engine: DeltaRsEngine
    defs: dg.Definitions
    instance: dg.DagsterInstance
    summaries: list[RunSummary]
    expected: list[hostile.Expected]  # refs resolved to Bronze `_source`
    kafka_values: dict[str, bytes | None]  # Bronze `_source` of each message → the bytes sent
    day: str


def run_all_stages(defs: dg.Definitions, instance: dg.DagsterInstance, day: str, *, stages=None) -> list[RunSummary]:
    # Every file and event arrives on `day` and (apart from late and future ones) happens on it,
    # so one partition of each stage builds the whole lakehouse.
    # The hostile inputs have no operational database: its stage is left out.
    return [run_stage(defs, stage, day, instance) for stage in (stages or configured_stages(set()))]


@pytest.fixture(scope="session")
def hostile_lake(tmp_path_factory, spark) -> HostileLake:
    root = tmp_path_factory.mktemp("hostile_lake")
    landing = hostile.landing_files()
    hostile.write_landing(root / "landing", landing)
    messages, kafka_expected = hostile.kafka_messages()
    with pytest.MonkeyPatch.context() as mp, LocalBroker() as broker:
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC, partitions=1)
        placed = produce(broker.bootstrap_servers, KAFKA_TOPIC, messages)
        # the delta-rs reference every engine's crash-recovery result is compared with
        defs = build_defs(root, broker.bootstrap_servers, mp, **ENGINE_SETTINGS["delta_rs"])
        instance = dg.DagsterInstance.ephemeral()
        summaries = run_all_stages(defs, instance, hostile.D)
    resolved = [replace(e, ref=placed[int(e.ref.split("#")[1])]) for e in kafka_expected]
    values = {placed[m.index]: m.value for m in messages}
    return HostileLake(
        root,
        DeltaRsEngine(root / "lakehouse", spark=spark),
        defs,
        instance,
        summaries,
        landing.expected + resolved,
        values,
        hostile.D,
    )
