"""A Databricks workspace emulator per module, as a workspace created today is: DBFS root
disabled, Unity Catalog volumes, a SQL warehouse, and the pipeline's service principal signing in
with OAuth (machine to machine). Plus the project's real wheel, built once per test process."""

from __future__ import annotations

import os
import secrets

import pytest

from retail_assets.lib.engine.spark import REMOTE_ENV, local_conf
from retail_assets_tests.databricks.emulator import WorkspaceEmulator
from retail_assets_tests.wheel import build_wheel

# The pipeline's service principal: its application id is its OAuth client id.
PIPELINE_CLIENT_ID = "7b0e5c0a-3f52-4c59-9d8e-2a41c6f0b1d3"
PIPELINE_SECRET = secrets.token_hex(24)
WAREHOUSE_ID = "5e1a0c2f9d3b4a71"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    # An administrator's token, for what a test does as the workspace's admin (dropping files in
    # a volume); the project itself signs in as the service principal.
    token = secrets.token_hex(16)
    # The clusters compute on this test process's Spark Connect server (the suite's conftest
    # starts one per process): Delta jars loaded, JIT warm, nothing to start per step. The
    # project's own name for that server goes with it: a step's `get_spark()` on a thread other
    # than the task's (checks run side by side) finds no active Connect session there, and
    # attaches to the server instead of starting a JVM, as on a cluster the builder hands back
    # the cluster's session.
    remote = os.environ.get(REMOTE_ENV)
    emulator = WorkspaceEmulator(
        tmp_path_factory.mktemp("workspace"),
        token=token,
        spark_remote=remote,
        runtime_spark_conf=local_conf(),
        cluster_env={REMOTE_ENV: remote} if remote else {},
        dbfs_root_enabled=False,
        service_principals={PIPELINE_CLIENT_ID: PIPELINE_SECRET},
    )
    with emulator:
        emulator.catalog.create_warehouse(WAREHOUSE_ID)
        yield emulator


@pytest.fixture(scope="session")
def project_wheel(tmp_path_factory):
    """The wheel CI builds from this checkout (its metadata is what the emulated cluster checks)."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))
