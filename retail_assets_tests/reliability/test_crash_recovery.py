"""Hard kills (SIGKILL of the run process) in the middle of a write, then a re-run: every table
must equal the fault-free run's table, compared by content.

A Delta write is data files first, then one commit to the log. The driver below kills its own
process at the worst moment it can reach deterministically: with the data files of the write
already in the table folder and the commit not yet made ("torn"), or right after a commit that
is only the first of two ("after_commit"). Readers must never see the torn files, and the
re-run must neither lose nor double a row. Every test runs on both local engines; on delta-spark
(marked `parity`) the result must equal the delta-rs reference lakehouse.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from retail_assets.lib.engine import LakehouseEngine, PartitionRange
from retail_assets.lib.registry.stages import STAGE
from retail_assets.lib.registry.tables import (
    BRONZE_POS_TRANSACTIONS,
    BRONZE_SALES_FILES,
    GOLD_DIM_CUSTOMER,
    GOLD_DIM_PRODUCT,
    GOLD_DIM_STORE,
    KAFKA_TOPIC,
    SILVER_RETURNS,
    SILVER_SALES_LINES,
    TableSpec,
)
from retail_assets.tooling.broker import LocalBroker, ensure_topic, produce
from retail_assets.tooling.main_job import run_stage
from retail_assets_tests.reliability import hostile
from retail_assets_tests.simulated_week import build_defs, local_engine, snapshot

pytestmark = pytest.mark.reliability


# argv: table folder to kill in (e.g. `silver/returns`), kill mode, partition, asset keys (`layer/table`)
DRIVER = textwrap.dedent(
    """
    import os, signal, sys, uuid
    import dagster as dg
    import pyarrow.parquet as pq
    import retail_assets.lib.engine.local as local
    from retail_assets.lib.engine.delta_spark import DeltaSparkEngine

    target, mode, partition, keys = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

    def tear(path, data):
        # the data files of the write are on disk, the commit is not (rows streamed to the
        # write are read to their end first: for Kafka, every message consumed and parsed)
        data = data.read_all() if hasattr(data, "read_all") else data
        os.makedirs(path, exist_ok=True)
        pq.write_table(data, os.path.join(path, f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"))
        os.kill(os.getpid(), signal.SIGKILL)

    real_write = local.write_deltalake

    def write(path, data, **kw):
        if str(path).endswith(target):
            if mode == "torn":
                tear(path, data)
            real_write(path, data, **kw)
            os.kill(os.getpid(), signal.SIGKILL)
        real_write(path, data, **kw)

    local.write_deltalake = write
    real_save = DeltaSparkEngine._save

    def save(self, spec, frame, *args, **kw):
        path = str(self.path(spec))
        if path.endswith(target):
            if mode == "torn":
                tear(path, frame.toArrow())
            real_save(self, spec, frame, *args, **kw)
            os.kill(os.getpid(), signal.SIGKILL)
        real_save(self, spec, frame, *args, **kw)

    DeltaSparkEngine._save = save

    def killed_merge(real_merge):
        # a table written by key (the dimensions) changes by MERGE, not by a write
        def merge(self, spec, source):
            path = str(self.path(spec) if isinstance(self, DeltaSparkEngine) else self.location(spec))
            if path.endswith(target):
                if mode == "torn":
                    tear(path, source.toArrow())
                real_merge(self, spec, source)
                os.kill(os.getpid(), signal.SIGKILL)
            return real_merge(self, spec, source)

        return merge

    for engine_class in (local.DeltaRsEngine, DeltaSparkEngine):
        engine_class._merge = killed_merge(engine_class._merge)
    from retail_assets.definitions import build_definitions

    job = build_definitions().resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        asset_selection=[dg.AssetKey(k.split("/")) for k in keys],
        partition_key=partition,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    sys.exit(0 if result.success else 3)
    """
)


def kill_during_write(root: Path, bootstrap: str, target: TableSpec, mode: str, *assets: TableSpec) -> None:
    env = {**os.environ, "RETAIL_DATA_ROOT": str(root), "RETAIL_KAFKA_BOOTSTRAP": bootstrap}
    keys = [f"{s.layer.value}/{s.name}" for s in assets]
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, f"{target.layer.value}/{target.name}", mode, hostile.D, *keys],
        env=env,
        timeout=600,
        capture_output=True,
        text=True,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def copy_lake(source: Path, dest: Path, *tables: TableSpec) -> None:
    """The landing zone and the given tables of a lakehouse."""
    shutil.copytree(source / "landing", dest / "landing")
    for spec in tables:
        shutil.copytree(
            source / "lakehouse" / spec.layer.value / spec.name, dest / "lakehouse" / spec.layer.value / spec.name
        )


def materialize(defs: dg.Definitions, *specs: TableSpec, partition: str = hostile.D) -> dg.ExecuteInProcessResult:
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey([s.layer.value, s.name]) for s in specs],
        partition_key=partition,
        instance=dg.DagsterInstance.ephemeral(),
    )


def torn_files(engine: LakehouseEngine, spec: TableSpec) -> list[Path]:
    """Parquet files in the table folder that the Delta log does not reference."""
    from deltalake import DeltaTable

    folder = engine.root / spec.layer.value / spec.name
    uris = DeltaTable(str(folder)).file_uris() if (folder / "_delta_log").is_dir() else []
    referenced = {Path(u.removeprefix("file://")).resolve() for u in uris}
    return [p for p in folder.rglob("*.parquet") if p.resolve() not in referenced]


def test_kill_during_bronze_write_from_files(hostile_lake, tmp_path, monkeypatch, engine_name):
    copy_lake(hostile_lake.root, tmp_path)
    engine = local_engine(engine_name, tmp_path, hostile_lake.engine.spark)

    kill_during_write(tmp_path, "127.0.0.1:9", BRONZE_SALES_FILES, "torn", BRONZE_SALES_FILES)
    assert torn_files(engine, BRONZE_SALES_FILES), "the kill must leave uncommitted data files behind"
    assert engine.read_arrow(BRONZE_SALES_FILES).num_rows == 0  # readers see no part of the torn write

    assert materialize(build_defs(tmp_path, "127.0.0.1:9", monkeypatch), BRONZE_SALES_FILES).success
    expected = snapshot(hostile_lake.engine, BRONZE_SALES_FILES)
    assert expected.num_rows > 50
    assert snapshot(engine, BRONZE_SALES_FILES).equals(expected)

    # killed right after the commit: the re-run overwrites the partition, never appends twice
    kill_during_write(tmp_path, "127.0.0.1:9", BRONZE_SALES_FILES, "after_commit", BRONZE_SALES_FILES)
    assert materialize(build_defs(tmp_path, "127.0.0.1:9", monkeypatch), BRONZE_SALES_FILES).success
    assert snapshot(engine, BRONZE_SALES_FILES).equals(expected)


def test_kill_during_bronze_write_from_kafka(hostile_lake, tmp_path, monkeypatch, engine_name):
    messages, _ = hostile.kafka_messages()
    engine = local_engine(engine_name, tmp_path, hostile_lake.engine.spark)
    with LocalBroker() as broker:
        # the same messages in the same order on one partition land on the same offsets
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC, partitions=1)
        produce(broker.bootstrap_servers, KAFKA_TOPIC, messages)
        kill_during_write(tmp_path, broker.bootstrap_servers, BRONZE_POS_TRANSACTIONS, "torn", BRONZE_POS_TRANSACTIONS)
        assert torn_files(engine, BRONZE_POS_TRANSACTIONS)
        assert engine.read_arrow(BRONZE_POS_TRANSACTIONS).num_rows == 0
        assert materialize(build_defs(tmp_path, broker.bootstrap_servers, monkeypatch), BRONZE_POS_TRANSACTIONS).success
    expected = snapshot(hostile_lake.engine, BRONZE_POS_TRANSACTIONS)
    assert expected.num_rows == len(messages)
    assert snapshot(engine, BRONZE_POS_TRANSACTIONS).equals(expected)


def _stale(engine: LakehouseEngine, spec: TableSpec, keep: int) -> pa.Table:
    """Replace the table's partition with its first `keep` rows: a state an older run left."""
    day = PartitionRange.single(hostile.D)
    stale = engine.read_arrow(spec, None if spec.rebuild else day).slice(0, keep)
    engine.write(spec, stale, day)
    return snapshot(engine, spec)


def test_kill_during_silver_partition_overwrite(hostile_lake, tmp_path, monkeypatch, engine_name):
    """Sales lines and returns are two commits of one step: killed after the first and in the
    middle of the second, the re-run still leaves both equal to the fault-free run."""
    inputs = STAGE["ingest_pos_stream"].tables + STAGE["ingest_bronze"].tables + STAGE["refine_master_data"].tables
    copy_lake(hostile_lake.root, tmp_path, *inputs, SILVER_SALES_LINES, SILVER_RETURNS)
    engine = local_engine(engine_name, tmp_path, hostile_lake.engine.spark)
    stale_lines = _stale(engine, SILVER_SALES_LINES, 3)
    stale_returns = _stale(engine, SILVER_RETURNS, 0)

    kill_during_write(tmp_path, "127.0.0.1:9", SILVER_RETURNS, "torn", SILVER_SALES_LINES, SILVER_RETURNS)
    assert torn_files(engine, SILVER_RETURNS)
    # sales lines were committed whole, returns not at all: no half-written partition is visible
    assert snapshot(engine, SILVER_SALES_LINES).equals(snapshot(hostile_lake.engine, SILVER_SALES_LINES))
    assert snapshot(engine, SILVER_RETURNS).equals(stale_returns)
    assert not snapshot(engine, SILVER_SALES_LINES).equals(stale_lines)

    defs = build_defs(tmp_path, "127.0.0.1:9", monkeypatch)
    assert run_stage(defs, STAGE["refine_sales"], hostile.D, dg.DagsterInstance.ephemeral()).success
    for spec in (SILVER_SALES_LINES, SILVER_RETURNS):
        expected = snapshot(hostile_lake.engine, spec)
        assert expected.num_rows > 0, spec.key
        assert snapshot(engine, spec).equals(expected), spec.key


def test_kill_during_scd2_update(hostile_lake, tmp_path, monkeypatch, engine_name):
    # the master data, and the sales lines that name keys with no record yet (inferred members)
    inputs = (*STAGE["refine_master_data"].tables, SILVER_SALES_LINES, SILVER_RETURNS)
    copy_lake(hostile_lake.root, tmp_path, *inputs, GOLD_DIM_CUSTOMER)
    engine = local_engine(engine_name, tmp_path, hostile_lake.engine.spark)
    stale = _stale(engine, GOLD_DIM_CUSTOMER, 1)

    kill_during_write(tmp_path, "127.0.0.1:9", GOLD_DIM_CUSTOMER, "torn", GOLD_DIM_CUSTOMER)
    assert torn_files(engine, GOLD_DIM_CUSTOMER)
    assert snapshot(engine, GOLD_DIM_CUSTOMER).equals(stale)  # the old history stays readable, whole

    defs = build_defs(tmp_path, "127.0.0.1:9", monkeypatch)
    assert run_stage(defs, STAGE["build_dimensions"], hostile.D, dg.DagsterInstance.ephemeral()).success
    for spec in (GOLD_DIM_CUSTOMER, GOLD_DIM_PRODUCT, GOLD_DIM_STORE):
        expected = snapshot(hostile_lake.engine, spec)
        assert expected.num_rows > 1, spec.key
        assert snapshot(engine, spec).equals(expected), spec.key
    # C001 changed twice: two versions, one of them current
    dim = engine.read_arrow(GOLD_DIM_CUSTOMER)
    versions = dim.filter(pc.equal(dim["customer_id"], "C001"))
    assert versions.num_rows == 2 and versions["is_current"].to_pylist().count(True) == 1
