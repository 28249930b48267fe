"""Governance as code: grants, column masks, the row filter and the partner share generated per
environment from the registry, and the provisioning plan that applies them."""

from __future__ import annotations

from types import SimpleNamespace

import dagster as dg
import pytest

from retail_assets.lib.deployment import provisioning
from retail_assets.lib.deployment.governance import grants, policies, principals, sharing, steps
from retail_assets.lib.deployment.governance.principals import Principals
from retail_assets.lib.deployment.governance.securables import ARTIFACTS, LANDING
from retail_assets.lib.registry.tables import (
    GOLD_AGG_DAILY_STORE_SALES,
    GOLD_DIM_CUSTOMER,
    GOLD_DIM_STORE,
    TABLES,
    Layer,
)
from retail_assets.tooling.cli import main as cli_main

APP_ID = "6f1c3a52-9d0e-4b8a-a7c2-3e5d1f0b9a11"


@pytest.fixture(autouse=True)
def _no_deployment_config(monkeypatch):
    monkeypatch.delenv(principals.PIPELINE_PRINCIPAL_ENV, raising=False)
    monkeypatch.delenv(sharing.RECIPIENTS_ENV, raising=False)


def privileges_of(statements: list[grants.Grant], principal: str) -> dict[str, set[str]]:
    held: dict[str, set[str]] = {}
    for g in statements:
        if g.principal == principal and not g.revoke:
            held.setdefault(g.name, set()).update(g.privileges)
    return held


# ---- principals ---------------------------------------------------------------------------------


def test_pipeline_principal_is_the_application_id_when_configured(monkeypatch):
    monkeypatch.setenv(principals.PIPELINE_PRINCIPAL_ENV, APP_ID.upper())
    who = Principals.for_env("prod")
    assert who.pipeline == APP_ID and who.pipeline_is_application
    assert who.pipeline_predicate() == f"current_user() = '{APP_ID}'"
    assert "service principal" in who.pipeline_note


def test_pipeline_principal_falls_back_to_a_named_group_and_says_so():
    who = Principals.for_env("pr_42")
    assert who.pipeline == "pr_42_retail_pipeline" and not who.pipeline_is_application
    assert who.pipeline_predicate() == "is_account_group_member('pr_42_retail_pipeline')"
    assert principals.PIPELINE_PRINCIPAL_ENV in who.pipeline_note


@pytest.mark.parametrize("bad", ["prod; DROP TABLE x", "pr`od", "", "a-b"])
def test_names_that_could_break_out_of_sql_are_refused(bad):
    with pytest.raises(ValueError):
        Principals.for_env(bad)
    with pytest.raises(ValueError):
        Principals.for_env("prod", pipeline=bad or "x'y")


# ---- grants -------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["prod", "pr_42"])
def test_analysts_read_gold_and_nothing_else(env):
    statements = grants.grants_for(env, "retail")
    held = privileges_of(statements, f"{env}_analysts")
    gold_tables = {t.catalog_name("retail", env) for t in TABLES if t.layer is Layer.GOLD}
    assert held == {
        "retail": {"USE CATALOG"},
        f"retail.{env}_gold": {"USE SCHEMA"},
        **dict.fromkeys(gold_tables, {"SELECT"}),
    }
    revoked = {g.name for g in statements if g.principal == f"{env}_analysts" and g.revoke}
    assert revoked == {f"retail.{env}_{layer.value}" for layer in grants.PII_LAYERS}


def test_pipeline_uses_its_schemas_and_volumes_but_creates_no_schema(monkeypatch):
    monkeypatch.setenv(principals.PIPELINE_PRINCIPAL_ENV, APP_ID)
    statements = grants.grants_for("prod", "retail")
    held = privileges_of(statements, APP_ID)
    assert held["retail"] == {"USE CATALOG"}  # provisioning creates the schemas
    for layer in Layer:
        assert held[f"retail.prod_{layer.value}"] == {"USE SCHEMA", "CREATE TABLE", "SELECT", "MODIFY"}
    assert held[LANDING.full_name("retail", "prod")] == {"READ VOLUME"}
    assert held[ARTIFACTS.full_name("retail", "prod")] == {"READ VOLUME", "WRITE VOLUME"}
    functions = {f.full_name for f in policies.policies_for("prod", "retail").functions}
    assert {name for name, privs in held.items() if privs == {"EXECUTE"}} == functions
    assert not any("ALL PRIVILEGES" in privs for privs in held.values())


def test_engineers_read_every_layer_and_the_volumes():
    held = privileges_of(grants.grants_for("prod", "retail"), "prod_data_engineers")
    for layer in Layer:
        assert held[f"retail.prod_{layer.value}"] == {"USE SCHEMA", "SELECT"}
    assert held[LANDING.full_name("retail", "prod")] == held[ARTIFACTS.full_name("retail", "prod")] == {"READ VOLUME"}
    assert not any(p & {"MODIFY", "CREATE TABLE", "WRITE VOLUME"} for p in held.values())


def test_store_managers_read_only_the_filtered_tables():
    held = privileges_of(grants.grants_for("prod", "retail"), "prod_store_managers")
    assert held == {
        "retail": {"USE CATALOG"},
        "retail.prod_gold": {"USE SCHEMA"},
        GOLD_AGG_DAILY_STORE_SALES.catalog_name("retail", "prod"): {"SELECT"},
    }


def test_environments_never_share_principals_or_schemas():
    statements = [g.sql() for g in grants.grants_for("pr_42", "retail")]
    statements += policies.policies_for("pr_42", "retail").statements()
    statements += sharing.partner_share("pr_42", "retail", recipients=()).statements()
    assert not [s for s in statements if "prod_" in s.replace("_product", "")]


def test_grants_sql_spells_every_securable_type():
    script = grants.grants_sql("prod", "retail")
    assert "GRANT SELECT ON TABLE `retail`.`prod_gold`.`fact_sales` TO `prod_analysts`;" in script
    assert "REVOKE ALL PRIVILEGES ON SCHEMA `retail`.`prod_silver` FROM `prod_analysts`;" in script
    assert (
        "GRANT READ VOLUME, WRITE VOLUME ON VOLUME `retail`.`prod_bronze`.`artifacts` TO `prod_retail_pipeline`;"
        in script
    )
    assert "GRANT EXECUTE ON FUNCTION `retail`.`prod_gold`.`mask_pii_string` TO `prod_retail_pipeline`;" in script


# ---- masks and the row filter -------------------------------------------------------------------


def test_personal_columns_left_in_gold_are_masked_by_type():
    found = policies.policies_for("prod", "retail")
    (customer,) = found.masks
    assert customer.table is GOLD_DIM_CUSTOMER
    by_column = {m.column: m.function for m in customer.masks}
    assert set(by_column) == {"first_name", "last_name", "city", "birth_date"}
    for column, function in by_column.items():
        assert function.returns == GOLD_DIM_CUSTOMER.column(column).type.upper() == function.params[0][1]
    assert by_column["birth_date"].name == "mask_pii_date" and "trunc(value, 'YEAR')" in by_column["birth_date"].body
    assert (
        "ALTER TABLE `retail`.`prod_gold`.`dim_customer` ALTER COLUMN `first_name` SET MASK `retail`.`prod_gold`.`mask_pii_string`"
        in customer.statements()
    )


def test_masks_cover_only_gold_and_leave_store_city_alone():
    for spec in policies.GOLD_PII:
        assert spec.layer is Layer.GOLD
        for column in policies.GOLD_PII[spec]:
            spec.column(column)  # declared columns exist in the registry
    assert GOLD_DIM_STORE not in policies.GOLD_PII  # a store's city is not personal data
    assert policies.GOLD_PII[GOLD_DIM_CUSTOMER] == ("first_name", "last_name", "city", "birth_date")
    # e-mail and phone reach Gold only hashed and masked: nothing raw to mask
    assert not {"email", "phone"} & set(GOLD_DIM_CUSTOMER.column_names)


def test_masks_show_clear_values_to_engineers_and_the_pipeline_only(monkeypatch):
    monkeypatch.setenv(principals.PIPELINE_PRINCIPAL_ENV, APP_ID)
    found = policies.policies_for("prod", "retail")
    for function in (f for f in found.functions if f.name.startswith("mask_")):
        assert "is_account_group_member('prod_data_engineers')" in function.body
        assert f"current_user() = '{APP_ID}'" in function.body
        assert "prod_analysts" not in function.body
        assert function.sql().startswith(f"CREATE OR REPLACE FUNCTION `retail`.`prod_gold`.`{function.name}`(value ")


def test_row_filter_shows_store_managers_their_region():
    found = policies.policies_for("prod", "retail")
    (row_filter,) = found.row_filters
    assert row_filter.table is GOLD_AGG_DAILY_STORE_SALES and row_filter.columns == ("store_id",)
    body = row_filter.function.body
    assert GOLD_DIM_STORE.catalog_name("retail", "prod").split(".")[-1] in body and "s.region" in body
    assert "concat('prod_store_managers_'" in body
    assert "is_account_group_member('prod_analysts')" in body  # analysts read all of Gold
    assert row_filter.statement() == (
        "ALTER TABLE `retail`.`prod_gold`.`agg_daily_store_sales` SET ROW FILTER `retail`.`prod_gold`.`store_region_filter` ON (`store_id`)"
    )


# ---- the partner share --------------------------------------------------------------------------


def test_partner_share_holds_unprotected_aggregates_without_a_person_grain():
    found = policies.policies_for("prod", "retail")
    share = sharing.partner_share("prod", "retail", recipients=(), policies=found)
    names = [spec.name for spec, _ in share.tables]
    # pinned: a new aggregate reaches partners only after this list is reviewed
    assert names == ["agg_product_performance", "agg_inventory_cover"]
    assert not {spec for spec, _ in share.tables} & found.protected_tables()
    assert share.name == "prod_partner_gold"


def test_recipients_from_configuration(monkeypatch):
    monkeypatch.setenv(sharing.RECIPIENTS_ENV, " acme , globex=AWS:us-west-2:19a84bee-54bc-43a2-87de-023d0ec16016,")
    share = sharing.partner_share("prod", "retail")
    assert share.recipients == (
        sharing.Recipient("acme"),
        sharing.Recipient("globex", "aws:us-west-2:19a84bee-54bc-43a2-87de-023d0ec16016"),
    )
    statements = share.statements()
    assert "CREATE RECIPIENT IF NOT EXISTS `acme`;" in statements
    assert (
        "CREATE RECIPIENT IF NOT EXISTS `globex` USING ID 'aws:us-west-2:19a84bee-54bc-43a2-87de-023d0ec16016';"
        in statements
    )
    assert "GRANT SELECT ON SHARE `prod_partner_gold` TO RECIPIENT `globex`;" in statements
    assert "ALTER SHARE `prod_partner_gold` ADD TABLE `retail`.`prod_gold`.`agg_inventory_cover`;" in statements


@pytest.mark.parametrize("bad", ["acme,acme", "acme=not-an-id", "ac me", "x`y"])
def test_bad_recipients_are_refused(bad):
    with pytest.raises(ValueError):
        sharing.parse_recipients(bad)


# ---- the provisioning plan ----------------------------------------------------------------------


def test_plan_orders_steps_so_each_finds_what_it_needs(tmp_path):
    wheel = tmp_path / "retail_assets-0.1.0-py3-none-any.whl"
    planned = provisioning.plan("pr_42", "retail", recipients=(sharing.Recipient("acme"),), wheel=wheel)
    kinds = [type(s).__name__ for s in planned]
    first = {kind: kinds.index(kind) for kind in dict.fromkeys(kinds)}
    assert list(first) == [
        "CatalogExists", "EnsureSchema", "EnsureVolume", "UploadWheel", "CreateFunction", "ApplyGrants",
        "SetMasks", "SetRowFilter", "EnsureShare", "ShareTable", "EnsureRecipient", "GrantShare",
    ]  # fmt: skip
    assert [s.phase for s in planned] == sorted((s.phase for s in planned), key=provisioning.PHASES.index)
    upload = planned[kinds.index("UploadWheel")]
    assert upload.target == f"/Volumes/retail/pr_42_bronze/artifacts/{wheel.name}"
    assert {s.schema for s in planned if isinstance(s, steps.EnsureSchema)} == {
        f"pr_42_{layer.value}" for layer in Layer
    }
    for step in planned:
        assert step.description and step.sql(), step


def test_plan_refuses_what_is_not_a_wheel(tmp_path):
    with pytest.raises(ValueError, match="not a wheel"):
        provisioning.plan("prod", "retail", wheel=tmp_path / "retail_assets.zip")


class FakeGrants:
    """Unity Catalog permissions of one securable, as the REST API reports and changes them."""

    def __init__(self, held: dict[str, list[str]]) -> None:
        self.held = {p: set(v) for p, v in held.items()}
        self.updates: list[list] = []

    def get(self, securable_type, full_name):
        from databricks.sdk.service.catalog import Privilege, PrivilegeAssignment

        assignments = [
            PrivilegeAssignment(principal=p, privileges=[Privilege(x) for x in sorted(v)]) for p, v in self.held.items()
        ]
        return SimpleNamespace(privilege_assignments=assignments)

    def update(self, securable_type, full_name, *, changes):
        self.updates.append(changes)
        for change in changes:
            held = self.held.setdefault(change.principal, set())
            held |= {p.value for p in change.add or []}
            held -= {p.value for p in change.remove or []}


def fake_workspace(**apis) -> SimpleNamespace:
    client = SimpleNamespace(**apis)
    return SimpleNamespace(client=lambda: client)


def test_grants_are_changed_against_the_current_grants_once():
    statements = grants.grants_for("prod", "retail")
    silver = [g for g in statements if g.name == "retail.prod_silver"]
    step = steps.ApplyGrants("SCHEMA", "retail.prod_silver", tuple(silver))
    # someone granted analysts SELECT on Silver by hand; the engineers already hold theirs
    api = FakeGrants({"prod_analysts": ["SELECT", "USE_SCHEMA"], "prod_data_engineers": ["USE_SCHEMA", "SELECT"]})
    first = step.apply(fake_workspace(grants=api))
    assert first.status is provisioning.Status.UPDATED
    assert "prod_analysts -SELECT,USE_SCHEMA" in first.detail and "prod_data_engineers" not in first.detail
    assert api.held["prod_analysts"] == set()
    assert api.held["prod_retail_pipeline"] == {"USE_SCHEMA", "CREATE_TABLE", "SELECT", "MODIFY"}
    assert step.apply(fake_workspace(grants=api)).status is provisioning.Status.UNCHANGED
    assert len(api.updates) == 1


def test_policies_on_a_table_not_created_yet_are_pending():
    from databricks.sdk.errors import NotFound

    def missing(name):
        raise NotFound(f"Table '{name}' does not exist.")

    ws = fake_workspace(tables=SimpleNamespace(get=missing))
    found = policies.policies_for("prod", "retail")
    assert steps.SetMasks(found.masks[0]).apply(ws) == steps.PENDING_TABLE
    assert steps.SetRowFilter(found.row_filters[0]).apply(ws) == steps.PENDING_TABLE
    table_grant = next(g for g in grants.grants_for("prod", "retail") if g.securable_type == "TABLE")
    assert steps.ApplyGrants("TABLE", table_grant.name, (table_grant,)).apply(ws).status is provisioning.Status.PENDING


def test_a_failed_step_stops_the_run_and_keeps_what_was_done():
    class Boom(steps.CatalogExists):
        def apply(self, ws):
            raise PermissionError("no CREATE SCHEMA")

    done = steps.EnsureShare(sharing.partner_share("prod", "retail", recipients=()))
    ws = fake_workspace(shares=SimpleNamespace(get=lambda name: object()))
    with pytest.raises(provisioning.ProvisioningFailed, match="no CREATE SCHEMA") as failed:
        provisioning.apply([done, Boom("retail")], ws)
    assert [outcome.status for _, outcome in failed.value.results] == [provisioning.Status.UNCHANGED]


# ---- command and job ----------------------------------------------------------------------------


def test_provision_dry_run_prints_every_step_and_its_sql(capsys):
    assert cli_main(["provision", "--env", "pr_7", "--catalog", "retail", "--dry-run", "--recipients", "acme"]) == 0
    out = capsys.readouterr().out
    planned = provisioning.plan("pr_7", "retail", recipients=(sharing.Recipient("acme"),))
    for step in planned:
        assert step.description in out
    assert "CREATE SCHEMA IF NOT EXISTS `retail`.`pr_7_bronze`;" in out
    assert "SET ROW FILTER" in out and "GRANT SELECT ON SHARE `pr_7_partner_gold` TO RECIPIENT `acme`;" in out
    assert "nothing was changed" in out


def test_provision_without_a_workspace_is_a_one_line_error(monkeypatch, capsys):
    for name in (
        "DATABRICKS_HOST",
        "DATABRICKS_TOKEN",
        "DATABRICKS_CLIENT_ID",
        "DATABRICKS_CLIENT_SECRET",
        "RETAIL_DATABRICKS_WAREHOUSE_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    assert cli_main(["provision", "--env", "pr_7", "--catalog", "retail"]) == 2
    assert "DATABRICKS_HOST" in capsys.readouterr().err


def test_grants_command_takes_the_pipeline_application_id(capsys):
    assert cli_main(["grants", "--env", "prod", "--catalog", "retail", "--pipeline-principal", APP_ID]) == 0
    out = capsys.readouterr().out
    assert f"GRANT READ VOLUME ON VOLUME `retail`.`prod_bronze`.`landing` TO `{APP_ID}`;" in out


def test_provision_job_locally_explains_it_needs_the_workspace():
    from retail_assets.defs.maintenance.provisioning import provision_environment

    result = provision_environment.execute_in_process(
        resources={"databricks": dg.ResourceDefinition.none_resource()}, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "RETAIL_ENV=databricks" in str(failure.step_failure_data.error)
