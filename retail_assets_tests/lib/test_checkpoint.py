"""Shared checkpoints: written once per key, read back by later runs, never a stale one."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

from pyspark.sql import functions as F

import retail_assets
from retail_assets.lib.engine import checkpoint
from retail_assets.lib.engine import checkpoint as cp
from retail_assets.lib.engine.checkpoint import SharedCheckpoint


def _rows(df):
    return sorted(map(tuple, df.collect()))


def test_a_key_is_computed_once_and_read_back(spark, tmp_path):
    df = spark.createDataFrame([(1, "a"), (2, "b")], "n int, s string")
    first = SharedCheckpoint(tmp_path, {"bronze": [3, ["2026-11-01"]], "code": "x"})
    assert not first.exists
    assert _rows(first.materialize(df)) == [(1, "a"), (2, "b")]
    assert first.exists and [p.name for p in tmp_path.iterdir()] == [first.path.name]

    # the same key (in any order) is read: the frame given is never evaluated
    poisoned = spark.range(1).select(F.raise_error(F.lit("classified again")).alias("n"))
    again = SharedCheckpoint(tmp_path, {"code": "x", "bronze": [3, ["2026-11-01"]]})
    assert _rows(again.materialize(poisoned)) == [(1, "a"), (2, "b")]

    # anything different in the key is another checkpoint, computed from its own frame
    other = SharedCheckpoint(tmp_path, {"bronze": [4, ["2026-11-01"]], "code": "x"})
    assert not other.exists
    assert _rows(other.materialize(spark.createDataFrame([(3, "c")], "n int, s string"))) == [(3, "c")]
    assert len(list(tmp_path.iterdir())) == 2


def test_a_run_that_loses_the_race_reads_the_winners(spark, tmp_path):
    key = {"k": 1}
    winner = SharedCheckpoint(tmp_path, key)
    winner.materialize(spark.createDataFrame([(1,)], "n int"))
    late = SharedCheckpoint(tmp_path, key)
    late._write(spark.createDataFrame([(1,)], "n int"))  # wrote while the winner was renaming
    assert [p.name for p in tmp_path.iterdir()] == [winner.path.name]  # its staging copy is gone
    assert _rows(late.materialize(spark.createDataFrame([(9,)], "n int"))) == [(1,)]


def test_old_checkpoints_are_pruned_young_ones_kept(spark, tmp_path):
    df = spark.createDataFrame([(1,)], "n int")
    old = time.time() - cp.MIN_AGE_S - 60
    written = []
    for i in range(cp.KEEP + 2):
        c = SharedCheckpoint(tmp_path, {"i": i})
        c.materialize(df)
        os.utime(c.path, (old + i, old + i))
        written.append(c)
    crashed = tmp_path / ".abandoned-staging"
    crashed.mkdir()
    os.utime(crashed, (old, old))
    young = tmp_path / "young"
    young.mkdir()  # too recent to remove though beyond the newest KEEP: a run may be reading it

    newest = SharedCheckpoint(tmp_path, {"i": "new"})
    newest.materialize(df)
    left = {p.name for p in tmp_path.iterdir()}
    # the new one, the young one, and the newest old ones up to KEEP in all
    assert left == {newest.path.name, "young", *(c.path.name for c in written[-(cp.KEEP - 2) :])}


def test_a_result_key_names_every_input_version_and_the_whole_package(tmp_path, monkeypatch):
    """Any change to any module of the package, not only the transforms', names other results."""

    copy = tmp_path / "retail_assets"
    shutil.copytree(Path(retail_assets.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(checkpoint, "retail_assets", SimpleNamespace(__file__=str(copy / "__init__.py")))
    checkpoint.package_digest.cache_clear()
    before = checkpoint.package_digest()
    module = copy / "lib" / "orchestration" / "automation.py"  # far from the rules
    module.write_text(module.read_text() + "\n# changed\n")
    checkpoint.package_digest.cache_clear()
    assert checkpoint.package_digest() != before
    checkpoint.package_digest.cache_clear()
