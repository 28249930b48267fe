"""The Unity Catalog and SQL warehouse emulation (`unity_catalog.py`), driven through
databricks-sdk's `WorkspaceClient` as the project's provisioning and sensors call it."""

from __future__ import annotations

import json
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, DatabricksError, NotFound, ResourceConflict
from databricks.sdk.service.catalog import PermissionsChange, Privilege, VolumeType
from databricks.sdk.service.sharing import (
    AuthenticationType,
    SharedDataObject,
    SharedDataObjectDataObjectType,
    SharedDataObjectUpdate,
    SharedDataObjectUpdateAction,
)
from databricks.sdk.service.sharing import PermissionsChange as SharePermissionsChange
from databricks.sdk.service.sql import Disposition, Format, StatementParameterListItem, StatementState

from retail_assets.lib.deployment.governance.grants import grants_for
from retail_assets.lib.deployment.governance.policies import policies_for
from retail_assets.lib.deployment.governance.securables import VOLUMES
from retail_assets.lib.engine.spark import REMOTE_ENV
from retail_assets.lib.registry.tables import TABLES
from retail_assets_tests.databricks.emulator import ApiError
from retail_assets_tests.databricks.unity_catalog import UnityCatalog, route

WAREHOUSE = "wh-1"
GOLD = "retail.prod_gold"


class _Workspace:
    """A loopback server around `ROUTES` only, dispatching as the workspace emulator does
    (percent-decoded path, full match, `handler(emulator, params, match)`)."""

    def __init__(self) -> None:
        self.emulator = SimpleNamespace(catalog=UnityCatalog(), spark_remote=os.environ.get(REMOTE_ENV))
        workspace = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                workspace.dispatch(self)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="uc-emulator", daemon=True)
        self.thread.start()
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"

    def dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlparse(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            params = {**{k: v[-1] for k, v in parse_qs(url.query).items()}, **(json.loads(raw) if raw else {})}
            found = route(handler.command, unquote(url.path))
            if found is None:
                raise ApiError(
                    HTTPStatus.NOT_FOUND, "ENDPOINT_NOT_FOUND", f"No API found for '{handler.command} {url.path}'"
                )
            status, payload = HTTPStatus.OK, found[0](self.emulator, params, found[1])
        except ApiError as exc:
            status, payload = exc.status, {"error_code": exc.code, "message": exc.message}
        except (ValueError, KeyError, TypeError) as exc:
            status, payload = HTTPStatus.BAD_REQUEST, {"error_code": "INVALID_PARAMETER_VALUE", "message": str(exc)}
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def workspace():
    ws = _Workspace()
    yield ws
    ws.close()


@pytest.fixture
def uc(workspace) -> UnityCatalog:
    """A fresh metastore per test: catalog `retail` with schema `prod_gold`, warehouse `wh-1`."""
    workspace.emulator.catalog = UnityCatalog(catalogs=("retail",), warehouses=(WAREHOUSE,))
    workspace.emulator.catalog.create_schema("retail", "prod_gold")
    return workspace.emulator.catalog


@pytest.fixture
def w(workspace, uc) -> WorkspaceClient:
    return WorkspaceClient(host=workspace.host, token="t", auth_type="pat")


def sql(w: WorkspaceClient, statement: str, **kwargs):
    return w.statement_execution.execute_statement(
        statement, WAREHOUSE, wait_timeout="30s", format=Format.JSON_ARRAY, disposition=Disposition.INLINE, **kwargs
    )


def succeeded(w: WorkspaceClient, statement: str, **kwargs):
    response = sql(w, statement, **kwargs)
    assert response.status.state == StatementState.SUCCEEDED, (statement, response.status.error)
    return response


needs_spark = pytest.mark.skipif(
    not os.environ.get(REMOTE_ENV), reason="the suite's Spark Connect server is not running"
)


# ---- catalogs, schemas, volumes, tables -----------------------------------------------------


def test_schema_create_twice_conflicts_and_lists(w, uc):
    created = w.schemas.create("prod_silver", "retail", comment="Silver")
    assert created.full_name == "retail.prod_silver" and created.catalog_name == "retail"
    with pytest.raises(ResourceConflict, match="already exists"):
        w.schemas.create("prod_silver", "retail")
    assert w.schemas.get("retail.prod_silver").comment == "Silver"
    assert [s.name for s in w.schemas.list("retail")] == ["default", "information_schema", "prod_gold", "prod_silver"]
    with pytest.raises(NotFound):
        w.schemas.create("x", "no_such_catalog")
    with pytest.raises(NotFound):
        w.schemas.get("retail.nope")
    assert [c.name for c in w.catalogs.list()] == ["retail"] and w.catalogs.get("retail").name == "retail"

    w.schemas.delete("retail.prod_silver")
    assert not uc.schema_exists("retail", "prod_silver")


def test_volumes_create_read_list_delete(w, uc):
    landing = w.volumes.create("retail", "prod_gold", "landing", VolumeType.MANAGED)
    assert (
        landing.full_name == "retail.prod_gold.landing"
        and landing.volume_type == VolumeType.MANAGED
        and landing.storage_location
    )
    w.volumes.create("retail", "prod_gold", "raw", VolumeType.EXTERNAL, storage_location="s3://bucket/raw")
    with pytest.raises(BadRequest):  # an external volume names its location
        w.volumes.create("retail", "prod_gold", "bad", VolumeType.EXTERNAL)
    with pytest.raises(ResourceConflict):
        w.volumes.create("retail", "prod_gold", "landing", VolumeType.MANAGED)
    with pytest.raises(NotFound):
        w.volumes.create("retail", "nope", "landing", VolumeType.MANAGED)

    assert [(v.name, v.volume_type, v.storage_location) for v in w.volumes.list("retail", "prod_gold")] == [
        ("landing", VolumeType.MANAGED, landing.storage_location),
        ("raw", VolumeType.EXTERNAL, "s3://bucket/raw"),
    ]
    assert w.volumes.read("retail.prod_gold.raw").storage_location == "s3://bucket/raw"
    assert uc.volume_exists("retail", "prod_gold", "landing")
    w.volumes.delete("retail.prod_gold.landing")
    assert not uc.volume_exists("retail", "prod_gold", "landing")
    with pytest.raises(NotFound):
        w.volumes.read("retail.prod_gold.landing")


def test_tables_are_the_registered_ones(w, uc):
    uc.register_table(f"{GOLD}.fact_sales", [("transaction_id", "string"), ("net_amount", "decimal(18,2)")])
    table = w.tables.get(f"{GOLD}.fact_sales")
    assert [(c.name, c.type_text, c.type_name.value, c.position) for c in table.columns] == [
        ("transaction_id", "string", "STRING", 0),
        ("net_amount", "decimal(18,2)", "DECIMAL", 1),
    ]
    assert table.columns[1].type_precision == 18 and table.columns[1].type_scale == 2
    assert [t.name for t in w.tables.list("retail", "prod_gold")] == ["fact_sales"]
    assert w.tables.exists(f"{GOLD}.fact_sales").table_exists
    assert not w.tables.exists(f"{GOLD}.nope").table_exists
    with pytest.raises(NotFound):
        w.tables.get(f"{GOLD}.nope")
    with pytest.raises(ApiError) as missing:  # a table goes into an existing schema
        uc.register_table("retail.nope.t", [("a", "int")])
    assert (missing.value.status, missing.value.code) == (HTTPStatus.NOT_FOUND, "SCHEMA_DOES_NOT_EXIST")


# ---- grants -------------------------------------------------------------------------------


def test_grants_update_is_idempotent_and_get_reflects_it(w, uc):
    add = [PermissionsChange(principal="prod_analysts", add=[Privilege.USE_SCHEMA, Privilege.SELECT])]
    first = w.grants.update("schema", GOLD, changes=add)
    again = w.grants.update("schema", GOLD, changes=add)
    assert first == again
    assignments = w.grants.get("schema", GOLD).privilege_assignments
    assert [(a.principal, sorted(p.value for p in a.privileges)) for a in assignments] == [
        ("prod_analysts", ["SELECT", "USE_SCHEMA"])
    ]

    remove = [PermissionsChange(principal="prod_analysts", remove=[Privilege.SELECT])]
    w.grants.update("SCHEMA", GOLD, changes=remove)
    w.grants.update("SCHEMA", GOLD, changes=remove)
    assert [p.value for p in w.grants.get("schema", GOLD).privilege_assignments[0].privileges] == ["USE_SCHEMA"]

    # Removing ALL PRIVILEGES clears whatever the principal held; the principal disappears.
    w.grants.update(
        "schema", GOLD, changes=[PermissionsChange(principal="prod_analysts", remove=[Privilege.ALL_PRIVILEGES])]
    )
    assert not w.grants.get("schema", GOLD).privilege_assignments
    assert uc.snapshot()["grants"] == []

    w.grants.update(
        "catalog", "retail", changes=[PermissionsChange(principal="prod_analysts", add=[Privilege.USE_CATALOG])]
    )
    uc.register_table(f"{GOLD}.fact_sales", [("a", "int")])
    w.grants.update(
        "table", f"{GOLD}.fact_sales", changes=[PermissionsChange(principal="prod_analysts", add=[Privilege.SELECT])]
    )
    effective = w.grants.get_effective("table", f"{GOLD}.fact_sales").privilege_assignments
    assert [(p.privilege.value, p.inherited_from_name) for p in effective[0].privileges] == [
        ("SELECT", None),
        ("USE_CATALOG", "retail"),
    ]


def test_invalid_privilege_or_missing_securable_rejected(w, uc):
    uc.register_table(f"{GOLD}.fact_sales", [("a", "int")])
    with pytest.raises(BadRequest, match="USE CATALOG is not applicable"):
        w.grants.update("schema", GOLD, changes=[PermissionsChange(principal="p", add=[Privilege.USE_CATALOG])])
    with pytest.raises(BadRequest, match="WRITE VOLUME is not applicable"):
        w.grants.update(
            "table", f"{GOLD}.fact_sales", changes=[PermissionsChange(principal="p", add=[Privilege.WRITE_VOLUME])]
        )
    with pytest.raises(BadRequest, match="Invalid privilege"):
        w.api_client.do(
            "PATCH",
            f"/api/2.1/unity-catalog/permissions/schema/{GOLD}",
            body={"changes": [{"principal": "p", "add": ["READ_EVERYTHING"]}]},
        )
    with pytest.raises(NotFound):
        w.grants.update("table", f"{GOLD}.nope", changes=[PermissionsChange(principal="p", add=[Privilege.SELECT])])
    # Nothing of a refused update applied.
    assert uc.snapshot()["grants"] == []


# ---- Delta Sharing ------------------------------------------------------------------------


def _add(table: str) -> list[SharedDataObjectUpdate]:
    return [
        SharedDataObjectUpdate(
            action=SharedDataObjectUpdateAction.ADD,
            data_object=SharedDataObject(name=table, data_object_type=SharedDataObjectDataObjectType.TABLE),
        )
    ]


def test_share_add_table_twice_fails_and_recipients_get_select(w, uc):
    uc.register_table(f"{GOLD}.agg_daily_store_sales", [("store_id", "string")])
    w.shares.create("gold_share", comment="Gold KPIs")
    w.shares.update("gold_share", updates=_add(f"{GOLD}.agg_daily_store_sales"))
    objects = w.shares.get("gold_share", include_shared_data=True).objects
    assert [(o.name, o.data_object_type.value, o.shared_as) for o in objects] == [
        (f"{GOLD}.agg_daily_store_sales", "TABLE", "prod_gold.agg_daily_store_sales")
    ]
    with pytest.raises(ResourceConflict, match="already exists in share"):
        w.shares.update("gold_share", updates=_add(f"{GOLD}.agg_daily_store_sales"))
    with pytest.raises(NotFound):
        w.shares.update("gold_share", updates=_add(f"{GOLD}.not_written_yet"))
    with pytest.raises(ResourceConflict):
        w.shares.create("gold_share")
    assert [s.name for s in w.shares.list()] == ["gold_share"]

    partner = w.recipients.create(
        "partner", AuthenticationType.DATABRICKS, data_recipient_global_metastore_id="aws:us-west-2:0000-1111"
    )
    assert partner.activated and partner.cloud == "aws"
    token = w.recipients.create("analyst_token", AuthenticationType.TOKEN)
    assert token.tokens and token.activation_url and not token.activated
    with pytest.raises(BadRequest):  # a Databricks recipient names its metastore
        w.recipients.create("bad", AuthenticationType.DATABRICKS)
    assert [r.name for r in w.recipients.list()] == ["analyst_token", "partner"]

    grant = [SharePermissionsChange(principal="partner", add=["SELECT"])]
    w.shares.update_permissions("gold_share", changes=grant)
    w.shares.update_permissions("gold_share", changes=grant)
    assert [
        (a.principal, [p.value for p in a.privileges])
        for a in w.shares.share_permissions("gold_share").privilege_assignments
    ] == [("partner", ["SELECT"])]
    with pytest.raises(NotFound):
        w.shares.update_permissions(
            "gold_share", changes=[SharePermissionsChange(principal="stranger", add=["SELECT"])]
        )
    with pytest.raises(BadRequest):
        w.shares.update_permissions("gold_share", changes=[SharePermissionsChange(principal="partner", add=["MODIFY"])])
    assert [p.share_name for p in w.recipients.share_permissions("partner").permissions_out] == ["gold_share"]


# ---- SQL warehouse ------------------------------------------------------------------------


@needs_spark
def test_select_with_parameters_returns_strings(w, uc):
    response = succeeded(
        w,
        "SELECT :n + 1 AS n, :s AS s, CAST(NULL AS STRING) AS z, DATE'2024-01-02' AS d, "
        "CAST(1.5 AS DECIMAL(5,2)) AS m, TIMESTAMP'2024-01-02 03:04:05' AS ts, array('a', 'b') AS arr, true AS b",
        parameters=[
            StatementParameterListItem(name="n", value="41", type="INT"),
            StatementParameterListItem(name="s", value="hi"),
        ],
    )
    assert response.result.data_array == [
        ["42", "hi", None, "2024-01-02", "1.50", "2024-01-02T03:04:05.000Z", '["a","b"]', "true"]
    ]
    columns = response.manifest.schema.columns
    assert [(c.name, c.type_name.value, c.type_text, c.position) for c in columns][:5] == [
        ("n", "INT", "INT", 0),
        ("s", "STRING", "STRING", 1),
        ("z", "STRING", "STRING", 2),
        ("d", "DATE", "DATE", 3),
        ("m", "DECIMAL", "DECIMAL(5,2)", 4),
    ]
    assert response.manifest.total_row_count == 1 and not response.manifest.truncated
    assert uc.statements[-1].engine == "spark" and uc.statements[-1].parameters == {"n": "41", "s": "hi"}

    empty = succeeded(
        w,
        "SELECT id FROM range(3) WHERE id > :lo",
        parameters=[StatementParameterListItem(name="lo", value="5", type="BIGINT")],
    )
    assert empty.result.data_array is None and empty.manifest.total_row_count == 0

    limited = succeeded(w, "SELECT id FROM range(10)", row_limit=3)
    assert limited.result.data_array == [["0"], ["1"], ["2"]] and limited.manifest.truncated

    # Submitted without waiting: PENDING, then the result by id.
    pending = w.statement_execution.execute_statement("SELECT 7 AS x", WAREHOUSE, wait_timeout="0s")
    assert pending.status.state == StatementState.PENDING
    assert w.statement_execution.get_statement(pending.statement_id).result.data_array == [["7"]]


@needs_spark
def test_failing_statement_is_failed_not_an_http_error(w, uc):
    response = sql(w, "SELECT * FROM sales_files_not_written_yet")
    assert response.status.state == StatementState.FAILED
    assert (
        "TABLE_OR_VIEW_NOT_FOUND" in response.status.error.message
        and response.status.error.error_code.value == "BAD_REQUEST"
    )
    assert uc.statements[-1].state == "FAILED"

    malformed = sql(
        w, "SELECT :d AS d", parameters=[StatementParameterListItem(name="d", value="not a date", type="DATE")]
    )
    assert malformed.status.state == StatementState.FAILED and "CAST_INVALID_INPUT" in malformed.status.error.message
    unbound = sql(w, "SELECT :a AS a, :b AS b", parameters=[StatementParameterListItem(name="a", value="1")])
    assert "UNBOUND_SQL_PARAMETER" in unbound.status.error.message


def test_unknown_warehouse_is_an_api_error(w, uc):
    with pytest.raises(BadRequest, match="not a valid endpoint id"):
        w.statement_execution.execute_statement("SELECT 1", "no-such-warehouse", wait_timeout="30s")
    with pytest.raises(NotFound):
        w.statement_execution.execute_statement("SELECT 1", "0123456789abcdef", wait_timeout="30s")
    with pytest.raises(BadRequest):  # the API takes 0s or 5s-50s
        w.statement_execution.execute_statement("SELECT 1", WAREHOUSE, wait_timeout="2s")
    assert uc.statements == []


PROVISIONING = [
    "CREATE SCHEMA IF NOT EXISTS retail.prod_gold",
    "CREATE VOLUME IF NOT EXISTS retail.prod_gold.exports COMMENT 'extracts'",
    "CREATE OR REPLACE FUNCTION retail.prod_gold.mask_email(email STRING) RETURNS STRING "
    "RETURN CASE WHEN is_account_group_member('prod_data_engineers') THEN email ELSE '***' END",
    "CREATE OR REPLACE FUNCTION retail.prod_gold.region_filter(region STRING) RETURNS BOOLEAN RETURN region = 'EU'",
    "ALTER TABLE retail.prod_gold.dim_customer ALTER COLUMN email_masked SET MASK retail.prod_gold.mask_email",
    "ALTER TABLE retail.prod_gold.dim_customer SET ROW FILTER retail.prod_gold.region_filter ON (country)",
    "GRANT USE SCHEMA, SELECT ON SCHEMA `retail`.`prod_gold` TO `prod_analysts`;",
    "GRANT EXECUTE ON FUNCTION retail.prod_gold.mask_email TO `prod_analysts`",
    "GRANT READ VOLUME ON VOLUME retail.prod_gold.exports TO `prod_analysts`",
    "CREATE SHARE IF NOT EXISTS gold_share COMMENT 'Gold for partners'",
    "CREATE RECIPIENT IF NOT EXISTS partner USING ID 'azure:westeurope:1234-5678'",
    "GRANT SELECT ON SHARE gold_share TO RECIPIENT partner",
]


def test_governance_statements_change_the_state_and_rerun_leaves_it(w, uc):
    uc.register_table(
        f"{GOLD}.dim_customer", [("customer_sk", "bigint"), ("email_masked", "string"), ("country", "string")]
    )
    before = uc.snapshot()
    for statement in PROVISIONING:
        succeeded(w, statement)
    succeeded(w, "ALTER SHARE gold_share ADD TABLE retail.prod_gold.dim_customer WITH HISTORY")
    after = uc.snapshot()
    assert after != before
    assert all(s.engine == "unity_catalog" for s in uc.statements)

    table = w.tables.get(f"{GOLD}.dim_customer")
    assert table.columns[1].mask.function_name == "retail.prod_gold.mask_email"
    assert (table.row_filter.function_name, table.row_filter.input_column_names) == (
        "retail.prod_gold.region_filter",
        ["country"],
    )
    assert w.functions.get("retail.prod_gold.region_filter").routine_definition == "region = 'EU'"
    # SQL grants and REST grants are one state.
    assert [p.value for p in w.grants.get("schema", GOLD).privilege_assignments[0].privileges] == [
        "SELECT",
        "USE_SCHEMA",
    ]
    assert [p.value for p in w.grants.get("volume", f"{GOLD}.exports").privilege_assignments[0].privileges] == [
        "READ_VOLUME"
    ]
    assert [o.name for o in w.shares.get("gold_share", include_shared_data=True).objects] == [f"{GOLD}.dim_customer"]

    rows = succeeded(w, "SHOW GRANTS `prod_analysts` ON TABLE retail.prod_gold.dim_customer").result.data_array
    assert rows == [["prod_analysts", "SELECT", "SCHEMA", GOLD], ["prod_analysts", "USE SCHEMA", "SCHEMA", GOLD]]
    assert succeeded(w, "SHOW GRANTS ON SHARE gold_share").result.data_array == [
        ["partner", "SELECT", "SHARE", "gold_share"]
    ]

    # Provisioning run again: the same state. Adding the table to the share again fails, as on Databricks.
    for statement in PROVISIONING:
        succeeded(w, statement)
    assert uc.snapshot() == after
    again = sql(w, "ALTER SHARE gold_share ADD TABLE retail.prod_gold.dim_customer")
    assert again.status.state == StatementState.FAILED and "already exists" in again.status.error.message
    assert uc.snapshot() == after
    assert json.loads(json.dumps(after)) == after


def test_masks_and_filters_need_a_known_table_and_function(w, uc):
    succeeded(w, "CREATE FUNCTION retail.prod_gold.f(x STRING) RETURNS STRING RETURN x")
    missing_table = sql(w, "ALTER TABLE retail.prod_gold.dim_customer ALTER COLUMN email SET MASK retail.prod_gold.f")
    assert (
        missing_table.status.state == StatementState.FAILED
        and "TABLE_OR_VIEW_NOT_FOUND" in missing_table.status.error.message
    )
    uc.register_table(f"{GOLD}.dim_customer", [("email", "string")])
    missing_function = sql(w, "ALTER TABLE retail.prod_gold.dim_customer SET ROW FILTER retail.prod_gold.g ON (email)")
    assert "ROUTINE_NOT_FOUND" in missing_function.status.error.message
    missing_column = sql(w, "ALTER TABLE retail.prod_gold.dim_customer ALTER COLUMN phone SET MASK retail.prod_gold.f")
    assert "UNRESOLVED_COLUMN" in missing_column.status.error.message
    again = sql(w, "CREATE FUNCTION retail.prod_gold.f(x STRING) RETURNS STRING RETURN x")
    assert "ROUTINE_ALREADY_EXISTS" in again.status.error.message
    # Names resolve in the statement's catalog and schema.
    succeeded(w, "ALTER TABLE dim_customer ALTER COLUMN email SET MASK f", catalog="retail", schema="prod_gold")
    assert uc.snapshot()["tables"][0]["column_masks"] == {
        "email": {"function_name": "retail.prod_gold.f", "using_column_names": []}
    }
    succeeded(w, "ALTER TABLE retail.prod_gold.dim_customer ALTER COLUMN email DROP MASK")
    assert uc.snapshot()["tables"][0]["column_masks"] == {}


def test_snapshot_is_stable_for_identical_state():
    """The project's generated governance (volumes, mask and filter functions, masks, row filter,
    grants), applied through the warehouse twice and in two table orders, gives one snapshot."""

    def run(uc: UnityCatalog, statement: str) -> None:
        response = uc.execute_statement(
            {"statement": statement, "warehouse_id": WAREHOUSE, "wait_timeout": "30s"}, None
        )
        assert response["status"]["state"] == "SUCCEEDED", (statement, response["status"])

    def provisioned(order) -> UnityCatalog:
        uc = UnityCatalog(catalogs=("retail",), warehouses=(WAREHOUSE,))
        for schema in sorted({spec.catalog_name("retail", "prod").split(".")[1] for spec in TABLES}):
            run(uc, f"CREATE SCHEMA IF NOT EXISTS `retail`.`{schema}`")
        for volume in VOLUMES:
            run(uc, f"CREATE VOLUME IF NOT EXISTS {volume.full_name('retail', 'prod')}")
        for spec in order(list(TABLES)):
            uc.register_table_spec(spec, "retail", "prod")
        provision(uc)
        return uc

    def provision(uc: UnityCatalog) -> None:
        for statement in policies_for("prod", "retail").statements():
            run(uc, statement)
        for grant in grants_for("prod", "retail"):
            run(uc, grant.sql())

    once = provisioned(lambda specs: specs)
    reversed_order = provisioned(lambda specs: specs[::-1])
    assert once.snapshot() == reversed_order.snapshot()
    provision(once)  # the whole script again
    assert once.snapshot() == reversed_order.snapshot()

    state = once.snapshot()
    analysts = [g for g in state["grants"] if g["principal"] == "prod_analysts"]
    assert {g["securable_type"] for g in analysts} >= {"CATALOG", "SCHEMA", "TABLE"}
    assert all(
        g["full_name"].startswith("retail.prod_gold") for g in analysts if g["securable_type"] in ("SCHEMA", "TABLE")
    )
    assert any(t["column_masks"] for t in state["tables"]) and any(t["row_filter"] for t in state["tables"])
    assert json.loads(json.dumps(state)) == state


def test_routes_answer_unknown_objects_with_databricks_errors(w, uc):
    with pytest.raises(NotFound):
        w.catalogs.get("nope")
    with pytest.raises(NotFound):
        w.shares.get("nope")
    with pytest.raises(NotFound):
        w.recipients.get("nope")
    with pytest.raises(NotFound):
        w.functions.get("retail.prod_gold.nope")
    with pytest.raises(DatabricksError):
        w.statement_execution.get_statement("00000000-0000-0000-0000-000000000000")
