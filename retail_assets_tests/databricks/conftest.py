"""A Databricks workspace emulator per module, and the environment of a Databricks deployment
pointed at it."""

from __future__ import annotations

import secrets

import pytest
from databricks.sdk import WorkspaceClient

from retail_assets.lib import cluster
from retail_assets_tests.databricks.emulator import WorkspaceEmulator


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    token = secrets.token_hex(16)
    with WorkspaceEmulator(tmp_path_factory.mktemp("workspace"), token=token) as emulator:
        # What an administrator does once per workspace: the secret scope the cluster reads.
        client = WorkspaceClient(host=emulator.host, token=token, auth_type="pat")
        client.secrets.create_scope("retail-assets")
        for name, key in cluster.CLUSTER_SECRETS.items():
            value = {"DATABRICKS_HOST": emulator.host, "DATABRICKS_TOKEN": token}[name]
            client.secrets.put_secret("retail-assets", key, string_value=value)
        yield emulator
