"""Provisioning an environment against the workspace emulator's Unity Catalog, SQL warehouse and
Files API: schemas, volumes, the wheel, grants, masks, the row filter and the partner share, as
`retail-assets provision` and the `provision_environment` job apply them, twice.

What this cannot prove: that Databricks enforces the grants, masks and filter (the emulator
records them; nothing is enforced), and the open-source Unity Catalog server is not run: Maven
Central holds only its client (`io.unitycatalog:unitycatalog-client`), not the server, so there
is no local server to execute these statements against.
"""

from __future__ import annotations

import secrets

import pytest
from databricks.sdk.errors import NotFound

from retail_assets.lib.deployment import provisioning
from retail_assets.lib.deployment.governance import principals, sharing, steps
from retail_assets.lib.deployment.governance.principals import Principals
from retail_assets.lib.deployment.governance.sharing import Recipient
from retail_assets.lib.deployment.workspace import DatabricksWorkspaceResource
from retail_assets.lib.registry.tables import GOLD_AGG_DAILY_STORE_SALES, GOLD_DIM_CUSTOMER, TABLES, Layer
from retail_assets.tooling.cli import main as cli_main
from retail_assets_tests.databricks.emulator import WorkspaceEmulator
from retail_assets_tests.databricks.unity_catalog import UnityCatalog

pytestmark = pytest.mark.databricks

WAREHOUSE = "0a1b2c3d4e5f6071"
APP_ID = "6f1c3a52-9d0e-4b8a-a7c2-3e5d1f0b9a11"
GLOBEX = "aws:us-west-2:19a84bee-54bc-43a2-87de-023d0ec16016"
RECIPIENTS = (Recipient("acme"), Recipient("globex", GLOBEX))
ENV = "pr_42"
GOLD_TABLES = [t for t in TABLES if t.layer is Layer.GOLD]


@pytest.fixture
def emulator(tmp_path):
    token = secrets.token_hex(16)
    with WorkspaceEmulator(
        tmp_path / "workspace", token=token, catalog=UnityCatalog(catalogs=("retail",), warehouses=(WAREHOUSE,))
    ) as ws:
        ws.test_token = token
        yield ws


@pytest.fixture
def workspace(emulator) -> DatabricksWorkspaceResource:
    return DatabricksWorkspaceResource(host=emulator.host, token=emulator.test_token, warehouse_id=WAREHOUSE)


@pytest.fixture
def wheel(tmp_path):
    path = tmp_path / "dist" / "retail_assets-0.1.0-py3-none-any.whl"
    path.parent.mkdir()
    path.write_bytes(b"PK\x03\x04 not really a wheel, but bytes to ship")
    return path


def plan(wheel=None, env=ENV):
    return provisioning.plan(
        env, "retail", principals=Principals.for_env(env, APP_ID), recipients=RECIPIENTS, wheel=wheel
    )


def statuses(report: provisioning.Report) -> dict[str, provisioning.Status]:
    return {step.description: outcome.status for step, outcome in report.results}


def changing_calls(emulator: WorkspaceEmulator, since: int) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in emulator.calls[since:] if method != "GET"]


def test_a_branch_deployment_is_provisioned_from_nothing(emulator, workspace, wheel):
    target = f"/Volumes/retail/{ENV}_bronze/artifacts/{wheel.name}"
    # the issue: a branch deployment's clusters install the wheel from a volume that does not exist yet
    with pytest.raises(NotFound):
        workspace.upload(target, wheel.read_bytes())

    report = provisioning.apply(plan(wheel), workspace)

    state = emulator.catalog.snapshot()
    assert {s["full_name"] for s in state["schemas"]} >= {f"retail.{ENV}_{layer.value}" for layer in Layer}
    assert {v["full_name"] for v in state["volumes"]} == {
        f"retail.{ENV}_bronze.landing",
        f"retail.{ENV}_bronze.artifacts",
        f"retail.{ENV}_gold.reports",
    }
    assert (
        emulator.volumes_root / "retail" / f"{ENV}_bronze" / "artifacts" / wheel.name
    ).read_bytes() == wheel.read_bytes()
    assert {f["full_name"] for f in state["functions"]} == {
        f"retail.{ENV}_gold.{n}" for n in ("mask_pii_string", "mask_pii_date", "store_region_filter")
    }

    granted = {(g["securable_type"], g["full_name"], g["principal"]): set(g["privileges"]) for g in state["grants"]}
    assert granted[("CATALOG", "retail", APP_ID)] == {"USE_CATALOG"}
    assert granted[("SCHEMA", f"retail.{ENV}_silver", APP_ID)] == {"USE_SCHEMA", "CREATE_TABLE", "SELECT", "MODIFY"}
    assert granted[("VOLUME", f"retail.{ENV}_bronze.landing", APP_ID)] == {"READ_VOLUME"}
    assert granted[("VOLUME", f"retail.{ENV}_bronze.artifacts", APP_ID)] == {"READ_VOLUME", "WRITE_VOLUME"}
    assert granted[("FUNCTION", f"retail.{ENV}_gold.mask_pii_string", APP_ID)] == {"EXECUTE"}
    analysts = {(t, n): p for (t, n, who), p in granted.items() if who == f"{ENV}_analysts"}
    assert analysts == {("CATALOG", "retail"): {"USE_CATALOG"}, ("SCHEMA", f"retail.{ENV}_gold"): {"USE_SCHEMA"}}

    # nothing to bind to before the first materialization: pending, not failed
    pending = {step.description for step in report.pending}
    assert len(pending) == len(GOLD_TABLES) + 2 + 2  # table grants, masks + row filter, shared tables
    assert not any(t["column_masks"] or t["row_filter"] for t in state["tables"])
    (share,) = state["shares"]
    assert share["name"] == f"{ENV}_partner_gold" and share["objects"] == []
    assert {
        (r["name"], r["authentication_type"], r["data_recipient_global_metastore_id"]) for r in state["recipients"]
    } == {
        ("acme", "TOKEN", None),
        ("globex", "DATABRICKS", GLOBEX),
    }
    assert {(g["recipient"], tuple(g["privileges"])) for g in state["share_grants"]} == {
        ("acme", ("SELECT",)),
        ("globex", ("SELECT",)),
    }


def test_provisioning_run_twice_leaves_the_same_state(emulator, workspace, wheel):
    provisioning.apply(plan(wheel), workspace)
    first = emulator.catalog.snapshot()
    since = len(emulator.calls)
    again = provisioning.apply(plan(wheel), workspace)
    assert emulator.catalog.snapshot() == first
    assert {s for s in statuses(again).values()} == {
        provisioning.Status.UNCHANGED,
        provisioning.Status.PENDING,
        provisioning.Status.UPDATED,
    }
    assert [d for d, s in statuses(again).items() if s is provisioning.Status.UPDATED] == [
        f"wheel {wheel.name} in /Volumes/retail/{ENV}_bronze/artifacts/{wheel.name}"
    ]
    assert [path for _, path in changing_calls(emulator, since)] == [
        f"/api/2.0/fs/files/Volumes/retail/{ENV}_bronze/artifacts/{wheel.name}"
    ]

    # the pipeline's first materialization creates the Gold tables; the next run binds what was pending
    for spec in GOLD_TABLES:
        emulator.catalog.register_table_spec(spec, "retail", ENV)
    completed = provisioning.apply(plan(), workspace)
    assert not completed.pending
    state = emulator.catalog.snapshot()
    tables = {t["full_name"]: t for t in state["tables"]}
    masks = tables[GOLD_DIM_CUSTOMER.catalog_name("retail", ENV)]["column_masks"]
    assert {c: m["function_name"] for c, m in masks.items()} == {
        "first_name": f"retail.{ENV}_gold.mask_pii_string",
        "last_name": f"retail.{ENV}_gold.mask_pii_string",
        "city": f"retail.{ENV}_gold.mask_pii_string",
        "birth_date": f"retail.{ENV}_gold.mask_pii_date",
    }
    assert tables[GOLD_AGG_DAILY_STORE_SALES.catalog_name("retail", ENV)]["row_filter"] == {
        "function_name": f"retail.{ENV}_gold.store_region_filter",
        "input_column_names": ["store_id"],
    }
    (share,) = state["shares"]
    assert [o["name"] for o in share["objects"]] == [
        f"retail.{ENV}_gold.agg_inventory_cover",
        f"retail.{ENV}_gold.agg_product_performance",
    ]
    selects = {
        g["full_name"]
        for g in state["grants"]
        if g["principal"] == f"{ENV}_analysts" and g["securable_type"] == "TABLE"
    }
    assert selects == {t.catalog_name("retail", ENV) for t in GOLD_TABLES}

    # and once complete, a further run changes nothing at all
    settled = emulator.catalog.snapshot()
    since, statements = len(emulator.calls), len(emulator.catalog.statements)
    last = provisioning.apply(plan(), workspace)
    assert set(statuses(last).values()) == {provisioning.Status.UNCHANGED}
    assert emulator.catalog.snapshot() == settled
    assert changing_calls(emulator, since) == [] and len(emulator.catalog.statements) == statements


def test_a_grant_made_by_hand_is_repaired(emulator, workspace):
    provisioning.apply(plan(), workspace)
    workspace.sql(f"GRANT SELECT ON SCHEMA retail.{ENV}_silver TO `{ENV}_analysts`")
    workspace.sql(f"REVOKE READ VOLUME ON VOLUME retail.{ENV}_bronze.artifacts FROM `{APP_ID}`")
    report = provisioning.apply(plan(), workspace)
    changed = {
        d: o for d, o in ((s.description, o) for s, o in report.results) if o.status is provisioning.Status.UPDATED
    }
    assert len(changed) == 2
    state = emulator.catalog.snapshot()
    silver = [
        g for g in state["grants"] if g["full_name"] == f"retail.{ENV}_silver" and g["principal"] == f"{ENV}_analysts"
    ]
    assert silver == []
    artifacts = [
        g for g in state["grants"] if g["full_name"] == f"retail.{ENV}_bronze.artifacts" and g["principal"] == APP_ID
    ]
    assert artifacts[0]["privileges"] == ["READ_VOLUME", "WRITE_VOLUME"]


def test_a_missing_catalog_stops_provisioning_with_what_to_do(workspace):
    planned = provisioning.plan(ENV, "elsewhere", recipients=())
    with pytest.raises(
        provisioning.ProvisioningFailed, match="catalog elsewhere does not exist: an administrator creates it"
    ):
        provisioning.apply(planned, workspace)


def test_the_command_provisions_and_reports_each_step(emulator, wheel, monkeypatch, capsys):
    monkeypatch.setenv("DATABRICKS_HOST", emulator.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", emulator.test_token)
    monkeypatch.setenv("RETAIL_DATABRICKS_WAREHOUSE_ID", WAREHOUSE)
    monkeypatch.delenv("DATABRICKS_CLIENT_ID", raising=False)
    monkeypatch.setenv(principals.PIPELINE_PRINCIPAL_ENV, APP_ID)
    monkeypatch.setenv(sharing.RECIPIENTS_ENV, "acme")
    argv = ["provision", "--env", "pr_7", "--catalog", "retail", "--upload-wheel", str(wheel)]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "schema retail.pr_7_gold … created" in out
    assert f"wheel {wheel.name} in /Volumes/retail/pr_7_bronze/artifacts/{wheel.name} … updated: uploaded" in out
    assert (
        "column masks on retail.pr_7_gold.dim_customer (first_name, last_name, city, birth_date) … pending: table not created yet"
        in out
    )
    assert f"service principal {APP_ID}" in out
    first = emulator.catalog.snapshot()
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "schema retail.pr_7_gold … unchanged" in out and "… created" not in out
    assert emulator.catalog.snapshot() == first


def test_the_job_provisions_its_own_deployment(emulator, workspace, monkeypatch):
    from retail_assets.defs.maintenance.provisioning import provision_environment

    monkeypatch.setenv("RETAIL_DEPLOYMENT_ENV", "pr_9")
    monkeypatch.setenv("RETAIL_UC_CATALOG", "retail")
    monkeypatch.setenv(principals.PIPELINE_PRINCIPAL_ENV, APP_ID)
    monkeypatch.delenv(sharing.RECIPIENTS_ENV, raising=False)
    assert provision_environment.execute_in_process(resources={"databricks": workspace}).success
    assert {f"retail.pr_9_{layer.value}" for layer in Layer} <= {
        s["full_name"] for s in emulator.catalog.snapshot()["schemas"]
    }

    for spec in GOLD_TABLES:  # the first materialization
        emulator.catalog.register_table_spec(spec, "retail", "pr_9")
    result = provision_environment.execute_in_process(resources={"databricks": workspace})
    assert result.success
    state = emulator.catalog.snapshot()
    assert any(t["row_filter"] for t in state["tables"]) and any(t["column_masks"] for t in state["tables"])
    outcomes = result.get_step_success_events()
    assert {e.step_key for e in outcomes} == {
        "create_schemas_and_volumes", "upload_wheel", "apply_grants", "apply_masks_and_row_filters", "share_with_partners",
    }  # fmt: skip

    assert provision_environment.execute_in_process(resources={"databricks": workspace}).success
    assert emulator.catalog.snapshot() == state


def test_an_object_created_meanwhile_by_another_run_counts_as_done(emulator, workspace):
    client = workspace.client()
    client.schemas.create(f"{ENV}_gold", "retail")
    looked_up = client.schemas.get

    def not_yet(full_name):  # the other run creates it between this run's look-up and its create
        looked_up(full_name)
        raise NotFound(f"Schema '{full_name}' does not exist.")

    client.schemas.get = not_yet
    outcome = steps.EnsureSchema("retail", f"{ENV}_gold").apply(workspace)
    assert outcome == provisioning.Outcome(provisioning.Status.UNCHANGED, "created meanwhile by another run")
