"""A Databricks workspace emulator per module, and the environment of a Databricks deployment
pointed at it."""

from __future__ import annotations

import os
import secrets

import pytest
from databricks.sdk import WorkspaceClient

from retail_assets.lib import cluster
from retail_assets.lib.spark import REMOTE_ENV, local_conf
from retail_assets_tests.databricks.emulator import WorkspaceEmulator


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
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
    )
    with emulator:
        # What an administrator does once per workspace: the secret scope the cluster reads.
        client = WorkspaceClient(host=emulator.host, token=token, auth_type="pat")
        client.secrets.create_scope("retail-assets")
        for name, key in cluster.CLUSTER_SECRETS.items():
            value = {"DATABRICKS_HOST": emulator.host, "DATABRICKS_TOKEN": token}[name]
            client.secrets.put_secret("retail-assets", key, string_value=value)
        yield emulator
