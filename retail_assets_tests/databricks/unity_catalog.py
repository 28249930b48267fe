"""Unity Catalog's REST API and a SQL warehouse (Statement Execution API), emulated for tests
(SPEC §10, §12).

`UnityCatalog` holds one metastore's state in memory; `ROUTES` (method, full-match path regex,
`handler(emulator, params, match)`) serve it over the loopback workspace of
`retail_assets_tests.databricks.emulator` (its `.catalog` and `.spark_remote`) as databricks-sdk's
`WorkspaceClient` calls it. What is emulated:

- catalogs (get, list, create; a new catalog has the `default` and `information_schema` schemas,
  as on Databricks), schemas (create, get, list, delete), volumes (MANAGED or EXTERNAL:
  create, read, list, delete), tables (get, list, exists) — tables exist once the pipeline
  (or a test) calls `register_table`; nothing reads Delta metadata;
- SQL functions (recorded from `CREATE FUNCTION`; REST get/list/delete), column masks and row
  filters (recorded on the table and shown by `tables.get`);
- grants per securable (CATALOG, SCHEMA, TABLE, VOLUME, FUNCTION; SHARE = its recipients):
  `permissions` get/update and `effective-permissions` (inheritance from catalog and schema).
  Privilege names are checked against the privileges Unity Catalog accepts on each securable
  type (privilege model 1.0); removing/revoking ALL PRIVILEGES removes every privilege the
  principal holds on that securable. Principals are any names, unless `principals=` lists the
  known ones;
- Delta Sharing: shares (create, get, list, update with ADD / REMOVE / UPDATE of TABLE objects,
  delete), share permissions (SELECT for recipients), recipients (TOKEN or DATABRICKS with
  `data_recipient_global_metastore_id`; create, get, list, delete, share-permissions);
- a SQL warehouse: `POST /api/2.0/sql/statements`, `GET .../{id}`, `.../{id}/cancel`,
  `.../{id}/result/chunks/0`, warehouses get/list. Only `disposition=INLINE`,
  `format=JSON_ARRAY`. Unity Catalog governance statements run against this state:
  `CREATE [OR REPLACE] FUNCTION … RETURN …`, `DROP FUNCTION`, `ALTER TABLE … {ALTER|CHANGE}
  [COLUMN] c SET MASK f [USING COLUMNS (…)] | DROP MASK`, `ALTER TABLE … SET ROW FILTER f ON (…)
  | DROP ROW FILTER`, `CREATE SCHEMA`, `CREATE [EXTERNAL] VOLUME`, `DROP VOLUME`, `GRANT` /
  `REVOKE` (same state as the REST grants), `CREATE SHARE`, `ALTER SHARE s {ADD|REMOVE} [TABLE]`,
  `DROP SHARE`, `CREATE RECIPIENT [USING ID …]`, `DROP RECIPIENT`, `GRANT|REVOKE SELECT ON SHARE s
  {TO|FROM} RECIPIENT r`, `SHOW GRANTS [principal] ON …` (inherited grants included),
  `SHOW GRANTS ON SHARE s`, `SHOW GRANTS TO RECIPIENT r`. Every other statement (SELECT,
  DESCRIBE HISTORY, …) runs on a real Spark: a fresh Spark Connect session per statement on the
  emulator's `spark_remote` (a warehouse keeps no session state between statements either), with
  `spark_conf` applied (by default UTC session time and ANSI mode, as a SQL warehouse has).
  Named parameters (`:name`; the string `value` read as its `type`, STRING by default; a
  malformed value fails the statement) are bound with `EXECUTE IMMEDIATE … USING`, since Spark
  4.2's Connect server leaves `spark.sql(args=…)` unbound. Results come back as Databricks sends
  them: one inline chunk, every value a string (timestamps ISO-8601 UTC with milliseconds and
  `Z`, dates `yyyy-MM-dd`, decimals with their scale, complex types as JSON, binary as base64)
  or null, and no `data_array` when there are no rows. A failing
  statement is state FAILED with `error {error_code, message}` in an HTTP 200 (BAD_REQUEST and
  Spark's `[ERROR_CLASS] … SQLSTATE: …` message for a SQL error). `wait_timeout="0s"` answers
  PENDING and the result is fetched with `get_statement`. Every statement is recorded in
  `UnityCatalog.statements`.

What is not emulated: no permission is enforced — any caller may do anything, masks and row
filters are recorded but a SELECT on Spark returns unmasked, unfiltered rows, and ownership is
a fixed `owner` name; no pagination (everything comes in one page); no Delta metadata, table
creation through REST, storage credentials, external locations, metastore-level grants, tags,
views or models; `shares.get` returns objects only with `include_shared_data=true`; governance
statements do not take parameter markers; Spark resolves the table names of a SELECT with its own
catalogs, not with this state. Error codes follow Unity Catalog's `<OBJECT>_DOES_NOT_EXIST` /
`<OBJECT>_ALREADY_EXISTS` with HTTP 404 / 409 (databricks-sdk raises NotFound / ResourceConflict),
invalid values are 400 INVALID_PARAMETER_VALUE; where Databricks' exact wording is not known the
message is close to it, not verbatim.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

# The emulator imports this module; its ApiError is looked up when raised, so either module may
# be imported first.
from retail_assets_tests.databricks import emulator as _emulator

METASTORE_ID = "8d3a7f5e-0c4b-4e0e-9d1a-5f0c2b7e9a11"
_IDS = uuid.UUID("0b8f5c1e-7a42-4c3b-9a57-2f6d8e1c4b90")  # uuid5 namespace: ids derive from names

SECURABLE_TYPES = ("CATALOG", "SCHEMA", "TABLE", "VOLUME", "FUNCTION", "SHARE")

# Privileges Unity Catalog accepts on each securable type (privilege model 1.0). A catalog or a
# schema also takes the privileges of the objects it contains, which they inherit.
_SCHEMA_CHILD_PRIVILEGES = frozenset(
    {
        "CREATE_FUNCTION",
        "CREATE_TABLE",
        "CREATE_MATERIALIZED_VIEW",
        "CREATE_MODEL",
        "CREATE_VOLUME",
        "EXTERNAL_USE_SCHEMA",
        "USE_SCHEMA",
        "EXECUTE",
        "MODIFY",
        "SELECT",
        "READ_VOLUME",
        "WRITE_VOLUME",
        "REFRESH",
        "MANAGE",
        "APPLY_TAG",
        "ALL_PRIVILEGES",
    }
)
PRIVILEGES: dict[str, frozenset[str]] = {
    "CATALOG": _SCHEMA_CHILD_PRIVILEGES | {"USE_CATALOG", "CREATE_SCHEMA", "BROWSE"},
    "SCHEMA": _SCHEMA_CHILD_PRIVILEGES,
    "TABLE": frozenset({"ALL_PRIVILEGES", "APPLY_TAG", "MANAGE", "MODIFY", "SELECT"}),
    "VOLUME": frozenset({"ALL_PRIVILEGES", "APPLY_TAG", "MANAGE", "READ_VOLUME", "WRITE_VOLUME"}),
    "FUNCTION": frozenset({"ALL_PRIVILEGES", "EXECUTE", "MANAGE"}),
    "SHARE": frozenset({"SELECT"}),
}
# Every privilege name the API knows (databricks-sdk's `catalog.Privilege`).
KNOWN_PRIVILEGES = frozenset().union(*PRIVILEGES.values()) | {
    "ACCESS",
    "CREATE",
    "CREATE_CATALOG",
    "CREATE_CLEAN_ROOM",
    "CREATE_CONNECTION",
    "CREATE_EXTERNAL_LOCATION",
    "CREATE_EXTERNAL_TABLE",
    "CREATE_EXTERNAL_VOLUME",
    "CREATE_FOREIGN_CATALOG",
    "CREATE_FOREIGN_SECURABLE",
    "CREATE_MANAGED_STORAGE",
    "CREATE_PROVIDER",
    "CREATE_RECIPIENT",
    "CREATE_SERVICE_CREDENTIAL",
    "CREATE_SHARE",
    "CREATE_STORAGE_CREDENTIAL",
    "CREATE_VIEW",
    "EXECUTE_CLEAN_ROOM_TASK",
    "MANAGE_ALLOWLIST",
    "MODIFY_CLEAN_ROOM",
    "READ_FILES",
    "READ_PRIVATE_FILES",
    "SET_SHARE_PERMISSION",
    "USAGE",
    "USE_CONNECTION",
    "USE_MARKETPLACE_ASSETS",
    "USE_PROVIDER",
    "USE_RECIPIENT",
    "USE_SHARE",
    "WRITE_FILES",
    "WRITE_PRIVATE_FILES",
}
_KIND = {
    "CATALOG": "CATALOG_STANDARD",
    "SCHEMA": "SCHEMA_STANDARD",
    "TABLE": "TABLE_DELTA",
    "VOLUME": "VOLUME_STANDARD",
    "FUNCTION": "FUNCTION_STANDARD",
    "SHARE": "SHARE",
}

# A SQL warehouse's own defaults, applied to each statement's Spark session.
WAREHOUSE_SPARK_CONF = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "true"}
WAIT_TIMEOUT = re.compile(r"^(\d+)s$")
WAREHOUSE_ID = re.compile(r"^[0-9a-f]{16}$")


def _api_error(status: HTTPStatus, code: str, message: str) -> Exception:
    return _emulator.ApiError(status, code, message)


def _bad(message: str) -> Exception:
    return _api_error(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)


def _missing(what: str, name: str) -> Exception:
    label = {"FUNCTION": "Routine or Model"}.get(what, what.capitalize())
    return _api_error(HTTPStatus.NOT_FOUND, f"{what}_DOES_NOT_EXIST", f"{label} '{name}' does not exist.")


def _exists(what: str, name: str) -> Exception:
    return _api_error(HTTPStatus.CONFLICT, f"{what}_ALREADY_EXISTS", f"{what.capitalize()} '{name}' already exists")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_IDS, "/".join(parts)))


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("true", "1")


def _privilege(name: str) -> str:
    """`USE CATALOG`, `use_catalog`, `ALL` → the API's spelling, `USE_CATALOG`."""
    p = re.sub(r"\s+", "_", str(name).strip()).upper()
    return "ALL_PRIVILEGES" if p == "ALL" else p


def _spoken(privilege: str) -> str:
    return privilege.replace("_", " ")


def _quote(parts: Iterable[str]) -> str:
    return ".".join(f"`{p}`" for p in parts)


def type_name(type_text: str) -> str:
    """Unity Catalog's `type_name` of a Spark SQL type (`decimal(12,2)` → `DECIMAL`)."""
    t = type_text.strip().lower()
    base = re.split(r"[<(\s]", t, maxsplit=1)[0]
    return {
        "string": "STRING",
        "varchar": "STRING",
        "char": "CHAR",
        "int": "INT",
        "integer": "INT",
        "bigint": "LONG",
        "long": "LONG",
        "smallint": "SHORT",
        "short": "SHORT",
        "tinyint": "BYTE",
        "byte": "BYTE",
        "double": "DOUBLE",
        "float": "FLOAT",
        "real": "FLOAT",
        "boolean": "BOOLEAN",
        "date": "DATE",
        "timestamp": "TIMESTAMP",
        "timestamp_ltz": "TIMESTAMP",
        "timestamp_ntz": "TIMESTAMP_NTZ",
        "binary": "BINARY",
        "decimal": "DECIMAL",
        "dec": "DECIMAL",
        "numeric": "DECIMAL",
        "array": "ARRAY",
        "map": "MAP",
        "struct": "STRUCT",
        "void": "NULL",
        "interval": "INTERVAL",
        "variant": "VARIANT",
    }.get(base, "USER_DEFINED_TYPE")


def _decimal_precision(type_text: str) -> tuple[int, int] | None:
    m = re.match(r"^\s*(?:decimal|dec|numeric)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$", type_text, re.I)
    if not m:
        return None
    return int(m.group(1) or 10), int(m.group(2) or 0)


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutedStatement:
    """One statement a client sent to the warehouse, as it ended."""

    statement_id: str
    warehouse_id: str
    statement: str
    parameters: dict[str, str | None]
    parameter_types: dict[str, str]
    state: str  # SUCCEEDED or FAILED
    engine: str  # "unity_catalog" (governance, interpreted here) or "spark"
    error: str | None = None
    row_count: int = 0


class SqlError(Exception):
    """A statement the warehouse refuses: Spark's error class, message and SQLSTATE."""

    def __init__(
        self, error_class: str, message: str, sqlstate: str = "42000", error_code: str = "BAD_REQUEST"
    ) -> None:
        super().__init__(f"[{error_class}] {message} SQLSTATE: {sqlstate}")
        self.error_class, self.error_code = error_class, error_code


@dataclass
class _Context:
    """The namespace a statement's one- and two-part names resolve in."""

    catalog: str | None
    schema: str | None

    def resolve(self, parts: Sequence[str], depth: int) -> tuple[str, ...]:
        parts = tuple(p.lower() for p in parts)
        if len(parts) > depth or not parts:
            raise SqlError("INVALID_IDENTIFIER", f"The identifier {_quote(parts)} is invalid.", "42602")
        missing = depth - len(parts)
        defaults = (self.catalog, self.schema or "default")[: depth - 1]
        prefix = defaults[:missing]
        if any(p is None for p in prefix):
            raise SqlError(
                "NO_DEFAULT_CATALOG", f"No catalog to resolve {_quote(parts)} in: name it with three parts.", "42000"
            )
        return tuple(str(p).lower() for p in prefix) + parts


class UnityCatalog:
    """One metastore: `UnityCatalog(catalogs=("retail",), warehouses=("wh-1",))`."""

    def __init__(
        self,
        *,
        catalogs: Iterable[str] = (),
        warehouses: Iterable[str] = (),
        principals: Iterable[str] | None = None,
        owner: str = "emulator@example.com",
        storage_root: str = "emulated://metastore",
        default_catalog: str | None = None,
        spark_conf: Mapping[str, str] | None = None,
    ) -> None:
        self.owner = owner
        self.storage_root = storage_root.rstrip("/")
        self.default_catalog = default_catalog
        self.principals = None if principals is None else set(principals)
        self.spark_conf = dict(WAREHOUSE_SPARK_CONF if spark_conf is None else spark_conf)
        self.catalogs: dict[str, dict[str, Any]] = {}
        self.schemas: dict[tuple[str, str], dict[str, Any]] = {}
        self.volumes: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.tables: dict[str, dict[str, Any]] = {}
        self.functions: dict[str, dict[str, Any]] = {}
        self.grants: dict[tuple[str, str], dict[str, set[str]]] = {}
        self.shares: dict[str, dict[str, Any]] = {}
        self.recipients: dict[str, dict[str, Any]] = {}
        self.share_grants: dict[str, dict[str, set[str]]] = {}
        self.warehouses: set[str] = set()
        self.statements: list[ExecutedStatement] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        for name in catalogs:
            self.create_catalog(name)
        for warehouse in warehouses:
            self.create_warehouse(warehouse)

    # ---- catalogs, schemas, volumes ------------------------------------------------------

    def create_catalog(
        self, name: str, *, comment: str | None = None, properties: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        name = name.lower()
        with self._lock:
            if name in self.catalogs:
                raise _exists("CATALOG", name)
            self.catalogs[name] = {"comment": comment, "properties": dict(properties or {}), "created_at": _now_ms()}
            # What Databricks creates with every catalog.
            self.create_schema(name, "default", comment="Default schema (auto-created)")
            self.create_schema(name, "information_schema", comment="Information schema (auto-created)")
            return self.catalog_info(name)

    def _catalog(self, name: str) -> dict[str, Any]:
        try:
            return self.catalogs[name.lower()]
        except KeyError:
            raise _missing("CATALOG", name.lower()) from None

    def catalog_info(self, name: str) -> dict[str, Any]:
        c = self._catalog(name)
        info = {
            "name": name.lower(),
            "full_name": name.lower(),
            "catalog_type": "MANAGED_CATALOG",
            "isolation_mode": "OPEN",
            "owner": self.owner,
            "metastore_id": METASTORE_ID,
            "securable_type": "CATALOG",
            "properties": c["properties"],
            "created_at": c["created_at"],
            "created_by": self.owner,
            "updated_at": c["created_at"],
            "updated_by": self.owner,
        }
        return info | ({"comment": c["comment"]} if c["comment"] else {})

    def schema_exists(self, catalog: str, name: str) -> bool:
        return (catalog.lower(), name.lower()) in self.schemas

    def create_schema(
        self,
        catalog: str,
        name: str,
        *,
        comment: str | None = None,
        properties: Mapping[str, str] | None = None,
        exist_ok: bool = False,
    ) -> dict[str, Any]:
        catalog, name = catalog.lower(), name.lower()
        with self._lock:
            self._catalog(catalog)
            if (catalog, name) in self.schemas:
                if exist_ok:
                    return self.schema_info(catalog, name)
                raise _exists("SCHEMA", name)
            self.schemas[(catalog, name)] = {
                "comment": comment,
                "properties": dict(properties or {}),
                "created_at": _now_ms(),
            }
            return self.schema_info(catalog, name)

    def _schema(self, catalog: str, name: str) -> dict[str, Any]:
        self._catalog(catalog)
        try:
            return self.schemas[(catalog.lower(), name.lower())]
        except KeyError:
            raise _missing("SCHEMA", f"{catalog}.{name}".lower()) from None

    def schema_info(self, catalog: str, name: str) -> dict[str, Any]:
        s = self._schema(catalog, name)
        catalog, name = catalog.lower(), name.lower()
        info = {
            "name": name,
            "catalog_name": catalog,
            "full_name": f"{catalog}.{name}",
            "catalog_type": "MANAGED_CATALOG",
            "owner": self.owner,
            "metastore_id": METASTORE_ID,
            "schema_id": _id("schema", catalog, name),
            "properties": s["properties"],
            "created_at": s["created_at"],
            "created_by": self.owner,
            "updated_at": s["created_at"],
            "updated_by": self.owner,
        }
        return info | ({"comment": s["comment"]} if s["comment"] else {})

    def delete_schema(self, catalog: str, name: str, *, force: bool = False) -> None:
        catalog, name = catalog.lower(), name.lower()
        with self._lock:
            self._schema(catalog, name)
            prefix = f"{catalog}.{name}."
            children = [t for t in self.tables if t.startswith(prefix)] + [
                f for f in self.functions if f.startswith(prefix)
            ]
            children += [".".join(v) for v in self.volumes if v[:2] == (catalog, name)]
            if children and not force:
                raise _api_error(
                    HTTPStatus.BAD_REQUEST,
                    "SCHEMA_NOT_EMPTY",
                    f"Schema '{catalog}.{name}' is not empty. Contains: {sorted(children)[:5]}",
                )
            for t in [t for t in self.tables if t.startswith(prefix)]:
                self._drop_table(t)
            for f in [f for f in self.functions if f.startswith(prefix)]:
                self._drop_function(f)
            for v in [v for v in self.volumes if v[:2] == (catalog, name)]:
                self._drop_volume(v)
            del self.schemas[(catalog, name)]
            self.grants.pop(("SCHEMA", f"{catalog}.{name}"), None)

    def volume_exists(self, catalog: str, schema: str, volume: str) -> bool:
        return (catalog.lower(), schema.lower(), volume.lower()) in self.volumes

    def create_volume(
        self,
        catalog: str,
        schema: str,
        name: str,
        *,
        volume_type: str = "MANAGED",
        storage_location: str | None = None,
        comment: str | None = None,
        exist_ok: bool = False,
    ) -> dict[str, Any]:
        key = (catalog.lower(), schema.lower(), name.lower())
        volume_type = str(volume_type or "").upper()
        if volume_type not in ("MANAGED", "EXTERNAL"):
            raise _bad(f"volume_type must be MANAGED or EXTERNAL, got {volume_type or None!r}")
        if volume_type == "EXTERNAL" and not storage_location:
            raise _bad("storage_location is required for an EXTERNAL volume")
        if volume_type == "MANAGED" and storage_location:
            raise _bad("storage_location cannot be set for a MANAGED volume")
        with self._lock:
            self._schema(catalog, schema)
            if key in self.volumes:
                if exist_ok:
                    return self.volume_info(*key)
                raise _exists("VOLUME", ".".join(key))
            location = storage_location or f"{self.storage_root}/{key[0]}/{key[1]}/__volumes/{key[2]}"
            self.volumes[key] = {
                "volume_type": volume_type,
                "storage_location": location,
                "comment": comment,
                "created_at": _now_ms(),
            }
            return self.volume_info(*key)

    def _volume(self, catalog: str, schema: str, name: str) -> dict[str, Any]:
        self._schema(catalog, schema)
        try:
            return self.volumes[(catalog.lower(), schema.lower(), name.lower())]
        except KeyError:
            raise _missing("VOLUME", f"{catalog}.{schema}.{name}".lower()) from None

    def volume_info(self, catalog: str, schema: str, name: str) -> dict[str, Any]:
        v = self._volume(catalog, schema, name)
        c, s, n = catalog.lower(), schema.lower(), name.lower()
        info = {
            "name": n,
            "catalog_name": c,
            "schema_name": s,
            "full_name": f"{c}.{s}.{n}",
            "volume_type": v["volume_type"],
            "storage_location": v["storage_location"],
            "volume_id": _id("volume", c, s, n),
            "owner": self.owner,
            "metastore_id": METASTORE_ID,
            "created_at": v["created_at"],
            "created_by": self.owner,
            "updated_at": v["created_at"],
            "updated_by": self.owner,
        }
        return info | ({"comment": v["comment"]} if v["comment"] else {})

    def delete_volume(self, catalog: str, schema: str, name: str) -> None:
        with self._lock:
            self._volume(catalog, schema, name)
            self._drop_volume((catalog.lower(), schema.lower(), name.lower()))

    def _drop_volume(self, key: tuple[str, str, str]) -> None:
        del self.volumes[key]
        self.grants.pop(("VOLUME", ".".join(key)), None)

    # ---- tables --------------------------------------------------------------------------

    def register_table(
        self,
        full_name: str,
        columns: Iterable[tuple[str, str] | tuple[str, str, bool]],
        *,
        table_type: str = "MANAGED",
        storage_location: str | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """A table the pipeline wrote: created, or its columns replaced (schema evolution); its
        masks, row filter and grants stay. The schema must exist, as on Databricks."""
        parts = full_name.lower().split(".")
        if len(parts) != 3:
            raise _bad(f"a table's full name has three parts, got {full_name!r}")
        cols = [(c[0], c[1], bool(c[2]) if len(c) > 2 else True) for c in columns]
        with self._lock:
            self._schema(parts[0], parts[1])
            name = ".".join(parts)
            existing = self.tables.get(name)
            self.tables[name] = {
                "columns": cols,
                "table_type": table_type.upper(),
                "storage_location": storage_location or (existing or {}).get("storage_location"),
                "comment": comment,
                "masks": (existing or {}).get("masks", {}),
                "row_filter": (existing or {}).get("row_filter"),
                "created_at": (existing or {}).get("created_at", _now_ms()),
            }
            return self.table_info(name)

    def register_table_spec(self, spec: Any, catalog: str, env: str) -> dict[str, Any]:
        """`register_table` for an entry of `retail_assets.lib.registry.tables`, under its Unity Catalog name."""
        return self.register_table(
            spec.catalog_name(catalog, env),
            [(c.name, c.type, c.nullable) for c in spec.columns],
            table_type="VIEW" if spec.view is not None else "MANAGED",
            comment=spec.description,
        )

    def table_exists(self, full_name: str) -> bool:
        return full_name.lower() in self.tables

    def _table(self, full_name: str) -> dict[str, Any]:
        parts = full_name.lower().split(".")
        if len(parts) != 3:
            raise _bad(f"Invalid table name '{full_name}': a table's full name has three parts")
        self._schema(parts[0], parts[1])
        try:
            return self.tables[full_name.lower()]
        except KeyError:
            raise _missing("TABLE", full_name.lower()) from None

    def table_info(self, full_name: str, *, omit_columns: bool = False) -> dict[str, Any]:
        t = self._table(full_name)
        c, s, n = full_name.lower().split(".")
        info: dict[str, Any] = {
            "name": n,
            "catalog_name": c,
            "schema_name": s,
            "full_name": f"{c}.{s}.{n}",
            "table_type": t["table_type"],
            "data_source_format": "DELTA",
            "table_id": _id("table", c, s, n),
            "owner": self.owner,
            "metastore_id": METASTORE_ID,
            "created_at": t["created_at"],
            "created_by": self.owner,
            "updated_at": t["created_at"],
            "updated_by": self.owner,
        }
        if t["storage_location"]:
            info["storage_location"] = t["storage_location"]
        if t["comment"]:
            info["comment"] = t["comment"]
        if not omit_columns:
            info["columns"] = [
                self._column_info(i, col, t["masks"].get(col[0].lower())) for i, col in enumerate(t["columns"])
            ]
        if t["row_filter"]:
            info["row_filter"] = dict(t["row_filter"])
        return info

    @staticmethod
    def _column_info(position: int, column: tuple[str, str, bool], mask: dict[str, Any] | None) -> dict[str, Any]:
        name, text, nullable = column
        info: dict[str, Any] = {
            "name": name,
            "type_text": text.lower(),
            "type_name": type_name(text),
            "position": position,
            "nullable": nullable,
            "type_json": json.dumps({"name": name, "type": text.lower(), "nullable": nullable, "metadata": {}}),
        }
        precision = _decimal_precision(text)
        if precision:
            info["type_precision"], info["type_scale"] = precision
        if mask:
            info["mask"] = dict(mask)
        return info

    def drop_table(self, full_name: str) -> None:
        with self._lock:
            self._table(full_name)
            self._drop_table(full_name.lower())

    def _drop_table(self, name: str) -> None:
        del self.tables[name]
        self.grants.pop(("TABLE", name), None)
        for share in self.shares.values():
            share["objects"].pop(name, None)

    # ---- functions, masks, row filters ---------------------------------------------------

    def create_function(
        self,
        full_name: str,
        parameters: Sequence[tuple[str, str]],
        return_type: str,
        body: str,
        *,
        replace: bool = False,
        if_not_exists: bool = False,
        comment: str | None = None,
        language: str = "SQL",
        sql: str | None = None,
    ) -> dict[str, Any]:
        parts = full_name.lower().split(".")
        if len(parts) != 3:
            raise _bad(f"a function's full name has three parts, got {full_name!r}")
        name = ".".join(parts)
        with self._lock:
            self._schema(parts[0], parts[1])
            existing = self.functions.get(name)
            if existing is not None and not replace:
                if if_not_exists:
                    return self.function_info(name)
                raise _exists("FUNCTION", name)
            self.functions[name] = {
                "parameters": [(p.lower(), t) for p, t in parameters],
                "return_type": return_type,
                "body": body,
                "language": language.upper(),
                "comment": comment,
                "sql": sql,
                "created_at": (existing or {}).get("created_at", _now_ms()),
                "updated_at": _now_ms(),
            }
            return self.function_info(name)

    def _function(self, full_name: str) -> dict[str, Any]:
        parts = full_name.lower().split(".")
        if len(parts) != 3:
            raise _bad(f"Invalid function name '{full_name}'")
        self._schema(parts[0], parts[1])
        try:
            return self.functions[full_name.lower()]
        except KeyError:
            raise _missing("FUNCTION", full_name.lower()) from None

    def function_info(self, full_name: str) -> dict[str, Any]:
        f = self._function(full_name)
        c, s, n = full_name.lower().split(".")
        info = {
            "name": n,
            "catalog_name": c,
            "schema_name": s,
            "full_name": f"{c}.{s}.{n}",
            "specific_name": n,
            "input_params": {
                "parameters": [
                    {
                        "name": p,
                        "type_text": t.lower(),
                        "type_name": type_name(t),
                        "position": i,
                        "parameter_mode": "IN",
                        "parameter_type": "PARAM",
                    }
                    for i, (p, t) in enumerate(f["parameters"])
                ]
            },
            "data_type": type_name(f["return_type"]),
            "full_data_type": f["return_type"].lower(),
            "routine_body": "SQL" if f["language"] == "SQL" else "EXTERNAL",
            "routine_definition": f["body"],
            "external_language": None if f["language"] == "SQL" else f["language"],
            "is_deterministic": True,
            "is_null_call": False,
            "parameter_style": "S",
            "security_type": "DEFINER",
            "sql_data_access": "CONTAINS_SQL",
            "function_id": _id("function", c, s, n),
            "owner": self.owner,
            "metastore_id": METASTORE_ID,
            "created_at": f["created_at"],
            "created_by": self.owner,
            "updated_at": f["updated_at"],
            "updated_by": self.owner,
        }
        info = {k: v for k, v in info.items() if v is not None}
        return info | ({"comment": f["comment"]} if f["comment"] else {})

    def drop_function(self, full_name: str) -> None:
        with self._lock:
            self._function(full_name)
            self._drop_function(full_name.lower())

    def _drop_function(self, name: str) -> None:
        del self.functions[name]
        self.grants.pop(("FUNCTION", name), None)

    def _column(self, table: dict[str, Any], table_name: str, column: str) -> str:
        for name, _, _ in table["columns"]:
            if name.lower() == column.lower():
                return name
        raise SqlError(
            "UNRESOLVED_COLUMN.WITH_SUGGESTION",
            f"A column, variable, or function parameter with name `{column}` cannot be resolved. "
            f"Did you mean one of the following? [{', '.join(f'`{c[0]}`' for c in table['columns'][:5])}].",
            "42703",
        )

    def _arity(self, function: str, given: int) -> None:
        expected = len(self.functions[function]["parameters"])
        if expected != given:
            raise SqlError(
                "WRONG_NUM_ARGS.WITHOUT_SUGGESTION",
                f"The `{function}` requires {expected} parameters but the actual number is {given}.",
                "42605",
            )

    def set_column_mask(self, table: str, column: str, function: str, using: Sequence[str] = ()) -> None:
        with self._lock:
            self._require("TABLE", table)
            self._require("FUNCTION", function)
            t = self.tables[table.lower()]
            name = self._column(t, table, column)
            using_names = [self._column(t, table, c) for c in using]
            self._arity(function.lower(), 1 + len(using_names))
            t["masks"][name.lower()] = {"function_name": function.lower(), "using_column_names": using_names}

    def drop_column_mask(self, table: str, column: str) -> None:
        with self._lock:
            self._require("TABLE", table)
            t = self.tables[table.lower()]
            name = self._column(t, table, column)
            t["masks"].pop(name.lower(), None)

    def set_row_filter(self, table: str, function: str, columns: Sequence[str]) -> None:
        with self._lock:
            self._require("TABLE", table)
            self._require("FUNCTION", function)
            t = self.tables[table.lower()]
            names = [self._column(t, table, c) for c in columns]
            self._arity(function.lower(), len(names))
            t["row_filter"] = {"function_name": function.lower(), "input_column_names": names}

    def drop_row_filter(self, table: str) -> None:
        with self._lock:
            self._require("TABLE", table)
            self.tables[table.lower()]["row_filter"] = None

    # ---- grants --------------------------------------------------------------------------

    def _require(self, securable_type: str, full_name: str) -> None:
        """The securable exists, else the API's 404."""
        parts = full_name.lower().split(".")
        if securable_type == "CATALOG":
            self._catalog(full_name)
        elif securable_type == "SCHEMA":
            if len(parts) != 2:
                raise _bad(f"Invalid schema name '{full_name}'")
            self._schema(*parts)
        elif securable_type == "TABLE":
            self._table(full_name)
        elif securable_type == "VOLUME":
            if len(parts) != 3:
                raise _bad(f"Invalid volume name '{full_name}'")
            self._volume(*parts)
        elif securable_type == "FUNCTION":
            self._function(full_name)
        elif securable_type == "SHARE":
            self._share(full_name)
        else:
            raise _bad(
                f"Securable type {securable_type} is not supported by the emulator; known: {', '.join(SECURABLE_TYPES)}"
            )

    @staticmethod
    def _securable_type(value: str) -> str:
        t = str(value).upper()
        if t not in SECURABLE_TYPES:
            raise _bad(f"Invalid securable type '{value}'; the emulator knows {', '.join(SECURABLE_TYPES)}")
        return t

    def _check_privileges(self, securable_type: str, full_name: str, privileges: Iterable[str]) -> list[str]:
        checked = []
        for raw in privileges:
            p = _privilege(raw)
            if p not in KNOWN_PRIVILEGES:
                raise _bad(f"Invalid privilege: {raw}")
            if p not in PRIVILEGES[securable_type]:
                raise _bad(
                    f"Privilege {_spoken(p)} is not applicable to this entity [{full_name}:{securable_type}/{_KIND[securable_type]}]. "
                    "If this seems unexpected, please check the privilege version of the metastore in use [1.0]."
                )
            checked.append(p)
        return checked

    def _check_principal(self, principal: str | None) -> str:
        if not principal:
            raise _bad("principal is required")
        if self.principals is not None and principal not in self.principals:
            raise _api_error(
                HTTPStatus.BAD_REQUEST, "PRINCIPAL_DOES_NOT_EXIST", f"Could not find principal with name {principal}"
            )
        return principal

    def update_grants(
        self, securable_type: str, full_name: str, changes: Iterable[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """`changes` as the API takes them, `[{principal, add: [...], remove: [...]}]`; all are
        checked before any applies. Returns the securable's privilege assignments."""
        securable_type = self._securable_type(securable_type)
        name = full_name.lower()
        if securable_type == "SHARE":
            return self.update_share_permissions(name, changes)
        with self._lock:
            self._require(securable_type, name)
            checked = []
            for change in changes:
                principal = self._check_principal(change.get("principal"))
                add = self._check_privileges(securable_type, name, change.get("add") or [])
                remove = self._check_privileges(securable_type, name, change.get("remove") or [])
                checked.append((principal, add, remove))
            assignments = self.grants.setdefault((securable_type, name), {})
            for principal, add, remove in checked:
                held = assignments.setdefault(principal, set())
                held.update(add)
                if "ALL_PRIVILEGES" in remove:
                    held.clear()
                held.difference_update(remove)
                if not held:
                    del assignments[principal]
            if not assignments:
                del self.grants[(securable_type, name)]
            return self.privilege_assignments(securable_type, name)

    def privilege_assignments(
        self, securable_type: str, full_name: str, principal: str | None = None
    ) -> list[dict[str, Any]]:
        securable_type = self._securable_type(securable_type)
        with self._lock:
            self._require(securable_type, full_name)
            held = (
                self.share_grants
                if securable_type == "SHARE"
                else {k[1]: v for k, v in self.grants.items() if k[0] == securable_type}
            ).get(full_name.lower(), {})
            return [
                {"principal": p, "privileges": sorted(privs)}
                for p, privs in sorted(held.items())
                if principal is None or p == principal
            ]

    def _ancestors(self, securable_type: str, full_name: str) -> list[tuple[str, str]]:
        parts = full_name.lower().split(".")
        chain = [(securable_type, full_name.lower())]
        if securable_type in ("TABLE", "VOLUME", "FUNCTION"):
            chain += [("SCHEMA", ".".join(parts[:2])), ("CATALOG", parts[0])]
        elif securable_type == "SCHEMA":
            chain += [("CATALOG", parts[0])]
        return chain

    def effective_privileges(
        self, securable_type: str, full_name: str, principal: str | None = None
    ) -> list[dict[str, Any]]:
        securable_type = self._securable_type(securable_type)
        with self._lock:
            self._require(securable_type, full_name)
            found: dict[str, list[dict[str, Any]]] = {}
            for level, (t, name) in enumerate(self._ancestors(securable_type, full_name)):
                for p, privs in sorted(self.grants.get((t, name), {}).items()):
                    for priv in sorted(privs):
                        entry: dict[str, Any] = {"privilege": priv}
                        if level:
                            entry |= {"inherited_from_type": t, "inherited_from_name": name}
                        found.setdefault(p, []).append(entry)
            return [
                {"principal": p, "privileges": privs}
                for p, privs in sorted(found.items())
                if principal is None or p == principal
            ]

    # ---- Delta Sharing -------------------------------------------------------------------

    def create_share(self, name: str, *, comment: str | None = None, exist_ok: bool = False) -> dict[str, Any]:
        name = name.lower()
        with self._lock:
            if name in self.shares:
                if exist_ok:
                    return self.share_info(name)
                raise _exists("SHARE", name)
            now = _now_ms()
            self.shares[name] = {"comment": comment, "objects": {}, "created_at": now, "updated_at": now}
            return self.share_info(name)

    def _share(self, name: str) -> dict[str, Any]:
        try:
            return self.shares[name.lower()]
        except KeyError:
            raise _missing("SHARE", name.lower()) from None

    def share_info(self, name: str, *, include_shared_data: bool = True) -> dict[str, Any]:
        s = self._share(name)
        info: dict[str, Any] = {
            "name": name.lower(),
            "owner": self.owner,
            "created_at": s["created_at"],
            "created_by": self.owner,
            "updated_at": s["updated_at"],
            "updated_by": self.owner,
        }
        if s["comment"]:
            info["comment"] = s["comment"]
        if include_shared_data:
            info["objects"] = [dict(o) for _, o in sorted(s["objects"].items())]
        return info

    def update_share(
        self, name: str, updates: Iterable[Mapping[str, Any]], *, comment: str | None = None
    ) -> dict[str, Any]:
        """`updates` as the API takes them, `[{action: ADD|REMOVE|UPDATE, data_object: {...}}]`:
        TABLE objects only, all checked before any applies."""
        with self._lock:
            share = self._share(name)
            planned: list[tuple[str, str, dict[str, Any]]] = []
            seen: set[str] = set()
            for update in updates:
                action = str(update.get("action") or "").upper()
                obj = dict(update.get("data_object") or {})
                if action not in ("ADD", "REMOVE", "UPDATE"):
                    raise _bad(f"Invalid action {update.get('action')!r}: ADD, REMOVE or UPDATE")
                kind = str(obj.get("data_object_type") or "TABLE").upper()
                if kind != "TABLE":
                    raise _bad(f"data_object_type {kind} is not emulated: only TABLE objects can be shared")
                if not obj.get("name"):
                    raise _bad("data_object.name is required")
                table = str(obj["name"]).lower()
                parts = table.split(".")
                if len(parts) != 3:
                    raise _bad(f"Invalid table name '{obj['name']}': a shared table is named with three parts")
                shared_as = str(obj.get("shared_as") or ".".join(parts[1:])).lower()
                if table in seen:
                    raise _bad(
                        f"UpdateShare duplicate updates on the same data object with data object type: TABLE, names: [{shared_as}]."
                    )
                seen.add(table)
                current = share["objects"].get(table)
                if action == "ADD":
                    self._table(table)
                    if current is not None:
                        raise _api_error(
                            HTTPStatus.CONFLICT,
                            "RESOURCE_ALREADY_EXISTS",
                            f"Data object '{table}' already exists in share '{name.lower()}'.",
                        )
                    if any(o["shared_as"] == shared_as for o in share["objects"].values()):
                        raise _api_error(
                            HTTPStatus.CONFLICT,
                            "RESOURCE_ALREADY_EXISTS",
                            f"A data object is already shared as '{shared_as}' in share '{name.lower()}'.",
                        )
                elif current is None:
                    raise _api_error(
                        HTTPStatus.NOT_FOUND,
                        "RESOURCE_DOES_NOT_EXIST",
                        f"Data object '{table}' does not exist in share '{name.lower()}'.",
                    )
                elif action == "UPDATE" and obj.get("shared_as") and shared_as != current["shared_as"]:
                    raise _bad("Updating shared_as of a shared table is not supported")
                planned.append((action, table, obj | {"shared_as": shared_as}))
            for action, table, obj in planned:
                if action == "REMOVE":
                    del share["objects"][table]
                    continue
                entry = share["objects"].get(table) or {
                    "name": table,
                    "data_object_type": "TABLE",
                    "shared_as": obj["shared_as"],
                    "added_at": _now_ms(),
                    "added_by": self.owner,
                    "status": "ACTIVE",
                    "history_data_sharing_status": "DISABLED",
                    "cdf_enabled": False,
                }
                for key in ("comment", "history_data_sharing_status", "cdf_enabled", "start_version", "partitions"):
                    if obj.get(key) is not None:
                        entry[key] = obj[key]
                share["objects"][table] = entry
            if comment is not None:
                share["comment"] = comment
            share["updated_at"] = _now_ms()
            return self.share_info(name)

    def delete_share(self, name: str) -> None:
        with self._lock:
            self._share(name)
            del self.shares[name.lower()]
            self.share_grants.pop(name.lower(), None)

    def create_recipient(
        self,
        name: str,
        *,
        authentication_type: str = "TOKEN",
        data_recipient_global_metastore_id: str | None = None,
        comment: str | None = None,
        exist_ok: bool = False,
    ) -> dict[str, Any]:
        name = name.lower()
        auth = str(authentication_type or "").upper()
        if auth not in ("TOKEN", "DATABRICKS"):
            raise _bad(
                f"authentication_type must be TOKEN or DATABRICKS (the emulated ones), got {authentication_type!r}"
            )
        if auth == "DATABRICKS" and not data_recipient_global_metastore_id:
            raise _bad("data_recipient_global_metastore_id is required for a DATABRICKS recipient")
        if auth == "TOKEN" and data_recipient_global_metastore_id:
            raise _bad("data_recipient_global_metastore_id is only for a DATABRICKS recipient")
        if auth == "DATABRICKS" and len(str(data_recipient_global_metastore_id).split(":")) != 3:
            raise _bad(
                f"data_recipient_global_metastore_id must be <cloud>:<region>:<metastore-uuid>, got {data_recipient_global_metastore_id!r}"
            )
        with self._lock:
            if name in self.recipients:
                if exist_ok:
                    return self.recipient_info(name)
                raise _exists("RECIPIENT", name)
            now = _now_ms()
            self.recipients[name] = {
                "authentication_type": auth,
                "data_recipient_global_metastore_id": data_recipient_global_metastore_id,
                "comment": comment,
                "created_at": now,
            }
            return self.recipient_info(name)

    def _recipient(self, name: str) -> dict[str, Any]:
        try:
            return self.recipients[name.lower()]
        except KeyError:
            raise _missing("RECIPIENT", name.lower()) from None

    def recipient_info(self, name: str) -> dict[str, Any]:
        r = self._recipient(name)
        info: dict[str, Any] = {
            "name": name.lower(),
            "authentication_type": r["authentication_type"],
            "owner": self.owner,
            "metastore_id": METASTORE_ID,
            "created_at": r["created_at"],
            "created_by": self.owner,
            "updated_at": r["created_at"],
            "updated_by": self.owner,
        }
        if r["comment"]:
            info["comment"] = r["comment"]
        if r["authentication_type"] == "DATABRICKS":
            cloud, region, _ = r["data_recipient_global_metastore_id"].split(":")
            info |= {
                "data_recipient_global_metastore_id": r["data_recipient_global_metastore_id"],
                "cloud": cloud,
                "region": region,
                "activated": True,
            }
        else:
            token = _id("recipient-token", name.lower())
            url = f"https://emulated.databricks.test/delta_sharing/retrieve_config.html?{token}"
            info |= {
                "activated": False,
                "activation_url": url,
                "tokens": [
                    {
                        "id": token,
                        "activation_url": url,
                        "created_at": r["created_at"],
                        "created_by": self.owner,
                        "expiration_time": r["created_at"] + 90 * 86_400_000,
                        "updated_at": r["created_at"],
                        "updated_by": self.owner,
                    }
                ],
            }
        return info

    def delete_recipient(self, name: str) -> None:
        with self._lock:
            self._recipient(name)
            del self.recipients[name.lower()]
            for grants in self.share_grants.values():
                grants.pop(name.lower(), None)

    def update_share_permissions(self, share: str, changes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Recipients' privileges on a share (SELECT): `[{principal: recipient, add, remove}]`."""
        name = share.lower()
        with self._lock:
            self._share(name)
            checked = []
            for change in changes:
                recipient = str(change.get("principal") or "").lower()
                if not recipient:
                    raise _bad("principal is required")
                self._recipient(recipient)
                add = self._check_privileges("SHARE", name, change.get("add") or [])
                remove = self._check_privileges("SHARE", name, change.get("remove") or [])
                checked.append((recipient, add, remove))
            grants = self.share_grants.setdefault(name, {})
            for recipient, add, remove in checked:
                held = grants.setdefault(recipient, set())
                held.update(add)
                held.difference_update(remove)
                if not held:
                    del grants[recipient]
            if not grants:
                del self.share_grants[name]
            return self.privilege_assignments("SHARE", name)

    # ---- SQL warehouse -------------------------------------------------------------------

    def create_warehouse(self, warehouse_id: str) -> None:
        with self._lock:
            self.warehouses.add(warehouse_id)

    def warehouse_info(self, warehouse_id: str) -> dict[str, Any]:
        self._warehouse(warehouse_id)
        return {
            "id": warehouse_id,
            "name": f"emulated warehouse {warehouse_id}",
            "state": "RUNNING",
            "cluster_size": "2X-Small",
            "warehouse_type": "PRO",
            "enable_serverless_compute": True,
            "num_clusters": 1,
            "creator_name": self.owner,
            "odbc_params": {
                "hostname": "127.0.0.1",
                "path": f"/sql/1.0/warehouses/{warehouse_id}",
                "port": 443,
                "protocol": "https",
            },
        }

    def _warehouse(self, warehouse_id: str | None) -> str:
        if not warehouse_id:
            raise _bad("warehouse_id is required")
        if warehouse_id not in self.warehouses:
            if not WAREHOUSE_ID.match(warehouse_id):
                raise _bad(f"{warehouse_id} is not a valid endpoint id.")
            raise _api_error(
                HTTPStatus.NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", f"Warehouse {warehouse_id} does not exist."
            )
        return warehouse_id

    def execute_statement(self, params: Mapping[str, Any], spark_remote: str | None) -> dict[str, Any]:
        """`POST /api/2.0/sql/statements`: run it, record it, answer as the API does."""
        statement = params.get("statement")
        if not statement or not str(statement).strip():
            raise _bad("statement is required")
        warehouse_id = self._warehouse(params.get("warehouse_id"))
        disposition = str(params.get("disposition") or "INLINE").upper()
        fmt = str(params.get("format") or "JSON_ARRAY").upper()
        if disposition != "INLINE":
            raise _bad(f"disposition {disposition} is not emulated: only INLINE")
        if fmt != "JSON_ARRAY":
            raise _bad(f"format {fmt} is not supported with disposition INLINE: use JSON_ARRAY")
        wait = str(params.get("wait_timeout") or "10s")
        m = WAIT_TIMEOUT.match(wait)
        if not m or not (int(m.group(1)) == 0 or 5 <= int(m.group(1)) <= 50):
            raise _bad(f"wait_timeout must be 0s or between 5s and 50s, got {wait!r}")
        if str(params.get("on_wait_timeout") or "CONTINUE").upper() not in ("CONTINUE", "CANCEL"):
            raise _bad(f"on_wait_timeout must be CONTINUE or CANCEL, got {params.get('on_wait_timeout')!r}")
        row_limit = params.get("row_limit")
        row_limit = None if row_limit in (None, "") else int(row_limit)
        if row_limit is not None and row_limit < 0:
            raise _bad("row_limit must not be negative")
        values: dict[str, str | None] = {}
        types: dict[str, str] = {}
        for item in params.get("parameters") or []:
            if not item.get("name"):
                raise _bad("every parameter needs a name")
            values[item["name"]] = item.get("value")
            types[item["name"]] = str(item.get("type") or "STRING").upper()
        ctx = _Context(params.get("catalog") or self.default_catalog, params.get("schema"))

        statement_id = str(uuid.uuid4())
        engine = "unity_catalog"
        try:
            outcome = self._governance(str(statement), ctx)
            if outcome is None:
                engine = "spark"
                outcome = _spark_execute(spark_remote, str(statement), values, types, ctx, row_limit, self.spark_conf)
            columns, rows, truncated = outcome
            response = _succeeded(statement_id, columns, rows, truncated)
            error = None
        except SqlError as exc:
            response = {
                "statement_id": statement_id,
                "status": {"state": "FAILED", "error": {"error_code": exc.error_code, "message": str(exc)}},
            }
            error, rows = str(exc), []
        with self._lock:
            self._responses[statement_id] = response
            self.statements.append(
                ExecutedStatement(
                    statement_id,
                    warehouse_id,
                    str(statement),
                    values,
                    types,
                    response["status"]["state"],
                    engine,
                    error,
                    len(rows),
                )
            )
        if int(m.group(1)) == 0:
            return {"statement_id": statement_id, "status": {"state": "PENDING"}}
        return response

    def statement_response(self, statement_id: str) -> dict[str, Any]:
        try:
            return self._responses[statement_id]
        except KeyError:
            raise _api_error(
                HTTPStatus.NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", f"Statement {statement_id} does not exist."
            ) from None

    # ---- governance statements -----------------------------------------------------------

    def _governance(
        self, statement: str, ctx: _Context
    ) -> tuple[list[dict[str, Any]], list[list[str | None]], bool] | None:
        """Run a Unity Catalog statement against this state; None when it is not one."""
        try:
            p = _Parser(statement)
        except SqlError:
            return None  # Spark reports what it cannot parse
        with self._lock:
            try:
                result = self._dispatch_governance(p, ctx)
            except _emulator.ApiError as exc:
                raise SqlError(exc.code, exc.message, "42000") from None
        if result is None:
            return None
        if not p.done():
            raise SqlError("PARSE_SYNTAX_ERROR", f"Syntax error at or near '{p.peek_text()}'.", "42601")
        columns, rows = result
        return [_string_column(c, i) for i, c in enumerate(columns)], rows, False

    def _dispatch_governance(self, p: _Parser, ctx: _Context) -> tuple[list[str], list[list[str | None]]] | None:
        if p.accept("CREATE"):
            replace = p.accept("OR", "REPLACE")
            if p.accept("FUNCTION"):
                return self._sql_create_function(p, ctx, replace)
            if replace:
                return None
            if p.accept("SCHEMA") or p.accept("DATABASE"):
                return self._sql_create_schema(p, ctx)
            if p.accept("EXTERNAL", "VOLUME"):
                return self._sql_create_volume(p, ctx, external=True)
            if p.accept("VOLUME"):
                return self._sql_create_volume(p, ctx, external=False)
            if p.accept("SHARE"):
                if_not_exists = p.accept("IF", "NOT", "EXISTS")
                name = p.single_name()
                comment = p.string() if p.accept("COMMENT") else None
                self._sql_exists_check("SHARE", name, name in self.shares, if_not_exists)
                self.create_share(name, comment=comment, exist_ok=True)
                return [], []
            if p.accept("RECIPIENT"):
                return self._sql_create_recipient(p)
            return None
        if p.accept("DROP"):
            for kind in ("FUNCTION", "VOLUME", "SHARE", "RECIPIENT"):
                if p.accept(kind):
                    return self._sql_drop(p, ctx, kind)
            return None
        if p.accept("ALTER", "TABLE"):
            return self._sql_alter_table(p, ctx)
        if p.accept("ALTER", "SHARE"):
            return self._sql_alter_share(p, ctx)
        if p.at("GRANT") or p.at("REVOKE"):
            return self._sql_grant(p, ctx)
        if p.accept("SHOW", "GRANTS") or p.accept("SHOW", "GRANT"):
            return self._sql_show_grants(p, ctx)
        return None

    def _sql_exists_check(self, kind: str, name: str, exists: bool, if_not_exists: bool) -> None:
        if exists and not if_not_exists:
            raise SqlError(
                f"{kind}_ALREADY_EXISTS", f"Cannot create {kind.lower()} `{name}` because it already exists.", "42000"
            )

    def _sql_require(self, kind: str, parts: tuple[str, ...]) -> None:
        """Spark's error for a missing object (the schema's first, as Databricks reports it)."""
        if parts and parts[0] not in self.catalogs:
            raise SqlError(
                "CATALOG_NOT_FOUND",
                f"The catalog `{parts[0]}` not found. Verify the spelling and correctness of the catalog.",
                "42P08",
            )
        if kind == "CATALOG":
            return
        if (parts[0], parts[1]) not in self.schemas:
            raise SqlError(
                "SCHEMA_NOT_FOUND",
                f"The schema {_quote(parts[:2])} cannot be found. Verify the spelling and correctness of the schema and catalog.",
                "42704",
            )
        name = ".".join(parts)
        if kind == "TABLE" and name not in self.tables:
            raise SqlError(
                "TABLE_OR_VIEW_NOT_FOUND",
                f"The table or view {_quote(parts)} cannot be found. Verify the spelling and correctness of the schema and catalog.",
                "42P01",
            )
        if kind == "FUNCTION" and name not in self.functions:
            raise SqlError(
                "ROUTINE_NOT_FOUND",
                f"The routine {_quote(parts)} cannot be found. Verify the spelling and correctness of the schema and catalog.",
                "42883",
            )
        if kind == "VOLUME" and parts not in self.volumes:
            raise SqlError(
                "VOLUME_NOT_FOUND",
                f"The volume {_quote(parts)} cannot be found. Verify the spelling and correctness of the schema and catalog.",
                "42704",
            )

    def _sql_create_function(
        self, p: _Parser, ctx: _Context, replace: bool
    ) -> tuple[list[str], list[list[str | None]]]:
        if p.accept("TEMPORARY") or p.accept("TEMP"):
            raise SqlError("UNSUPPORTED_FEATURE", "Temporary functions are not emulated.", "0A000")
        if_not_exists = p.accept("IF", "NOT", "EXISTS")
        parts = ctx.resolve(p.name(), 3)
        self._sql_require("SCHEMA", parts)
        parameters = []
        for tokens in p.parenthesized_list():
            if not tokens:
                continue
            stop = next(
                (i for i, t in enumerate(tokens) if t.kind == "word" and t.text.upper() in ("DEFAULT", "COMMENT")),
                len(tokens),
            )
            if stop < 2:
                raise SqlError("PARSE_SYNTAX_ERROR", "A function parameter needs a name and a type.", "42601")
            parameters.append((tokens[0].value, p.text(tokens[1], tokens[stop - 1])))
        p.expect("RETURNS")
        stops = {
            "LANGUAGE",
            "DETERMINISTIC",
            "NOT",
            "COMMENT",
            "CONTAINS",
            "READS",
            "MODIFIES",
            "SQL",
            "RETURN",
            "AS",
            "ENVIRONMENT",
            "DEFAULT",
        }
        return_type = p.text_until(stops)
        comment, language = None, "SQL"
        while True:
            if p.accept("COMMENT"):
                comment = p.string()
            elif p.accept("LANGUAGE"):
                language = p.word()
            elif p.accept("NOT", "DETERMINISTIC") or p.accept("DETERMINISTIC") or p.accept("CONTAINS", "SQL"):
                pass
            elif p.accept("READS", "SQL", "DATA") or p.accept("MODIFIES", "SQL", "DATA") or p.accept("SQL", "SECURITY"):
                if p.at("DEFINER") or p.at("INVOKER"):
                    p.word()
            elif p.accept("ENVIRONMENT"):
                p.parenthesized_list()
            else:
                break
        if p.accept("RETURN"):
            body = p.rest()
        elif p.accept("AS"):
            body = p.string()
        else:
            raise SqlError(
                "PARSE_SYNTAX_ERROR", f"Syntax error at or near '{p.peek_text()}': expected RETURN or AS.", "42601"
            )
        full = ".".join(parts)
        if full in self.functions and not replace and not if_not_exists:
            raise SqlError(
                "ROUTINE_ALREADY_EXISTS",
                f"Cannot create the function {_quote(parts)} because it already exists. Choose a different name, drop or replace the existing function, or add the IF NOT EXISTS clause to tolerate a pre-existing function.",
                "42723",
            )
        self.create_function(
            full,
            parameters,
            return_type,
            body,
            replace=replace,
            if_not_exists=True,
            comment=comment,
            language=language,
            sql=p.sql,
        )
        return [], []

    def _sql_create_schema(self, p: _Parser, ctx: _Context) -> tuple[list[str], list[list[str | None]]]:
        if_not_exists = p.accept("IF", "NOT", "EXISTS")
        parts = ctx.resolve(p.name(), 2)
        comment, properties = None, {}
        while not p.done():
            if p.accept("COMMENT"):
                comment = p.string()
            elif p.accept("MANAGED", "LOCATION") or p.accept("LOCATION"):
                p.string()
            elif p.accept("WITH", "DBPROPERTIES") or p.accept("WITH", "PROPERTIES") or p.accept("DBPROPERTIES"):
                for tokens in p.parenthesized_list():
                    eq = next(i for i, t in enumerate(tokens) if t.text == "=")
                    properties[p.text(tokens[0], tokens[eq - 1]).strip("'\"`")] = tokens[eq + 1].value
            else:
                raise SqlError("PARSE_SYNTAX_ERROR", f"Syntax error at or near '{p.peek_text()}'.", "42601")
        self._sql_require("CATALOG", parts)
        if parts in self.schemas and not if_not_exists:
            raise SqlError(
                "SCHEMA_ALREADY_EXISTS",
                f"Cannot create schema {_quote(parts)} because it already exists. Choose a different name, drop the existing schema, or add the IF NOT EXISTS clause to tolerate pre-existing schema.",
                "42P06",
            )
        self.create_schema(*parts, comment=comment, properties=properties, exist_ok=True)
        return [], []

    def _sql_create_volume(
        self, p: _Parser, ctx: _Context, *, external: bool
    ) -> tuple[list[str], list[list[str | None]]]:
        if_not_exists = p.accept("IF", "NOT", "EXISTS")
        parts = ctx.resolve(p.name(), 3)
        location, comment = None, None
        while not p.done():
            if p.accept("LOCATION"):
                location = p.string()
            elif p.accept("COMMENT"):
                comment = p.string()
            else:
                raise SqlError("PARSE_SYNTAX_ERROR", f"Syntax error at or near '{p.peek_text()}'.", "42601")
        if external and not location:
            raise SqlError("PARSE_SYNTAX_ERROR", "An EXTERNAL volume needs a LOCATION.", "42601")
        self._sql_require("SCHEMA", parts)
        if parts in self.volumes and not if_not_exists:
            raise SqlError(
                "VOLUME_ALREADY_EXISTS", f"Cannot create volume {_quote(parts)} because it already exists.", "42000"
            )
        self.create_volume(
            *parts,
            volume_type="EXTERNAL" if location else "MANAGED",
            storage_location=location,
            comment=comment,
            exist_ok=True,
        )
        return [], []

    def _sql_create_recipient(self, p: _Parser) -> tuple[list[str], list[list[str | None]]]:
        if_not_exists = p.accept("IF", "NOT", "EXISTS")
        name = p.single_name()
        sharing_id, comment = None, None
        while not p.done():
            if p.accept("USING", "ID"):
                sharing_id = p.string()
            elif p.accept("COMMENT"):
                comment = p.string()
            elif p.accept("PROPERTIES"):
                p.parenthesized_list()
            else:
                raise SqlError("PARSE_SYNTAX_ERROR", f"Syntax error at or near '{p.peek_text()}'.", "42601")
        self._sql_exists_check("RECIPIENT", name, name in self.recipients, if_not_exists)
        self.create_recipient(
            name,
            authentication_type="DATABRICKS" if sharing_id else "TOKEN",
            data_recipient_global_metastore_id=sharing_id,
            comment=comment,
            exist_ok=True,
        )
        if sharing_id:
            return [], []
        info = self.recipient_info(name)
        return ["activation_link"], [[info["activation_url"]]]

    def _sql_drop(self, p: _Parser, ctx: _Context, kind: str) -> tuple[list[str], list[list[str | None]]]:
        if_exists = p.accept("IF", "EXISTS")
        if kind in ("SHARE", "RECIPIENT"):
            name = p.single_name()
            store = self.shares if kind == "SHARE" else self.recipients
            if name not in store:
                if if_exists:
                    return [], []
                raise SqlError(f"{kind}_NOT_FOUND", f"The {kind.lower()} `{name}` cannot be found.", "42704")
            (self.delete_share if kind == "SHARE" else self.delete_recipient)(name)
            return [], []
        parts = ctx.resolve(p.name(), 3)
        exists = ".".join(parts) in self.functions if kind == "FUNCTION" else parts in self.volumes
        if not exists:
            if if_exists:
                return [], []
            self._sql_require(kind, parts)
        if kind == "FUNCTION":
            self.drop_function(".".join(parts))
        else:
            self.delete_volume(*parts)
        return [], []

    def _sql_alter_table(self, p: _Parser, ctx: _Context) -> tuple[list[str], list[list[str | None]]] | None:
        # Names resolve only once the statement is known to be a mask or a row filter: any
        # other ALTER TABLE goes to Spark as it was written.
        raw = p.name()
        if p.accept("ALTER") or p.accept("CHANGE"):
            p.accept("COLUMN")
            column = p.ident()
            if not (p.at("SET", "MASK") or p.at("DROP", "MASK")):
                return None
            parts = ctx.resolve(raw, 3)
            table = ".".join(parts)
            if p.accept("SET", "MASK"):
                function = ctx.resolve(p.name(), 3)
                using = [p.column_name(t) for t in p.parenthesized_list()] if p.accept("USING", "COLUMNS") else []
                self._sql_require("TABLE", parts)
                self._sql_require("FUNCTION", function)
                self.set_column_mask(table, column, ".".join(function), using)
                return [], []
            if p.accept("DROP", "MASK"):
                self._sql_require("TABLE", parts)
                self.drop_column_mask(table, column)
                return [], []
            return None
        if not (p.at("SET", "ROW", "FILTER") or p.at("DROP", "ROW", "FILTER")):
            return None
        parts = ctx.resolve(raw, 3)
        table = ".".join(parts)
        if p.accept("SET", "ROW", "FILTER"):
            function = ctx.resolve(p.name(), 3)
            p.expect("ON")
            columns = [p.column_name(t) for t in p.parenthesized_list() if t]
            self._sql_require("TABLE", parts)
            self._sql_require("FUNCTION", function)
            self.set_row_filter(table, ".".join(function), columns)
            return [], []
        if p.accept("DROP", "ROW", "FILTER"):
            self._sql_require("TABLE", parts)
            self.drop_row_filter(table)
            return [], []
        return None

    def _sql_alter_share(self, p: _Parser, ctx: _Context) -> tuple[list[str], list[list[str | None]]]:
        share = p.single_name()
        if share not in self.shares:
            raise SqlError("SHARE_NOT_FOUND", f"The share `{share}` cannot be found.", "42704")
        if p.accept("ADD"):
            action = "ADD"
        elif p.accept("REMOVE"):
            action = "REMOVE"
        else:
            raise SqlError(
                "UNSUPPORTED_FEATURE", f"ALTER SHARE … {p.peek_text()} is not emulated: ADD or REMOVE [TABLE].", "0A000"
            )
        if p.at("SCHEMA") or p.at("VIEW") or p.at("MODEL") or p.at("VOLUME") or p.at("MATERIALIZED"):
            raise SqlError(
                "UNSUPPORTED_FEATURE", f"Sharing a {p.peek_text().upper()} is not emulated: only TABLE.", "0A000"
            )
        p.accept("TABLE")
        parts = ctx.resolve(p.name(), 3)
        obj: dict[str, Any] = {"name": ".".join(parts), "data_object_type": "TABLE"}
        while action == "ADD" and not p.done():
            if p.accept("COMMENT"):
                obj["comment"] = p.string()
            elif p.accept("AS"):
                obj["shared_as"] = ".".join(p.name())
            elif p.accept("WITH", "HISTORY"):
                obj["history_data_sharing_status"] = "ENABLED"
            elif p.accept("WITHOUT", "HISTORY"):
                obj["history_data_sharing_status"] = "DISABLED"
            elif p.accept("WITH", "CHANGE", "DATA", "FEED"):
                obj["cdf_enabled"] = True
            elif p.accept("PARTITION"):
                p.parenthesized_list()
            else:
                raise SqlError("PARSE_SYNTAX_ERROR", f"Syntax error at or near '{p.peek_text()}'.", "42601")
        if action == "ADD":
            self._sql_require("TABLE", parts)
        self.update_share(share, [{"action": action, "data_object": obj}])
        return [], []

    def _sql_securable(self, p: _Parser, ctx: _Context) -> tuple[str, tuple[str, ...]]:
        if p.accept("CATALOG"):
            if p.at("TO") or p.at("FROM") or p.done():
                if ctx.catalog is None:
                    raise SqlError("NO_DEFAULT_CATALOG", "No current catalog.", "42000")
                return "CATALOG", (ctx.catalog.lower(),)
            return "CATALOG", ctx.resolve(p.name(), 1)
        if p.accept("SCHEMA") or p.accept("DATABASE"):
            return "SCHEMA", ctx.resolve(p.name(), 2)
        if p.accept("VOLUME"):
            return "VOLUME", ctx.resolve(p.name(), 3)
        if p.accept("FUNCTION"):
            return "FUNCTION", ctx.resolve(p.name(), 3)
        if p.accept("SHARE"):
            return "SHARE", (p.single_name(),)
        for unsupported in (
            ("METASTORE",),
            ("EXTERNAL", "LOCATION"),
            ("STORAGE", "CREDENTIAL"),
            ("SERVICE", "CREDENTIAL"),
            ("CONNECTION",),
            ("CLEAN", "ROOM"),
        ):
            if p.at(*unsupported):
                raise SqlError("UNSUPPORTED_FEATURE", f"Grants on {' '.join(unsupported)} are not emulated.", "0A000")
        p.accept("TABLE") or p.accept("VIEW") or p.accept("MATERIALIZED", "VIEW")
        return "TABLE", ctx.resolve(p.name(), 3)

    def _sql_grant(self, p: _Parser, ctx: _Context) -> tuple[list[str], list[list[str | None]]]:
        revoke = p.accept("REVOKE")
        if not revoke:
            p.expect("GRANT")
        privileges, words = [], []
        while not p.at("ON"):
            token = p.next()
            if token.text == ",":
                privileges.append(" ".join(words))
                words = []
            elif token.kind == "word":
                words.append(token.text)
            else:
                raise SqlError("PARSE_SYNTAX_ERROR", f"Syntax error at or near '{token.text}'.", "42601")
        privileges.append(" ".join(words))
        if not all(privileges):
            raise SqlError("PARSE_SYNTAX_ERROR", "Syntax error at or near 'ON': a privilege is missing.", "42601")
        p.expect("ON")
        securable_type, parts = self._sql_securable(p, ctx)
        p.expect("FROM" if revoke else "TO")
        to_recipient = p.accept("RECIPIENT")
        principal = p.ident()
        name = ".".join(parts)
        if securable_type == "SHARE":
            if not to_recipient:
                raise SqlError("UNSUPPORTED_FEATURE", "Grants on a share go TO RECIPIENT in the emulator.", "0A000")
            if name not in self.shares:
                raise SqlError("SHARE_NOT_FOUND", f"The share `{name}` cannot be found.", "42704")
            if principal.lower() not in self.recipients:
                raise SqlError("RECIPIENT_NOT_FOUND", f"The recipient `{principal}` cannot be found.", "42704")
        elif to_recipient:
            raise SqlError("PARSE_SYNTAX_ERROR", "Only a share is granted TO RECIPIENT.", "42601")
        else:
            self._sql_require(securable_type, parts)
        change = {"principal": principal, "remove" if revoke else "add": privileges}
        self.update_grants(securable_type, name, [change])
        return [], []

    def _sql_show_grants(self, p: _Parser, ctx: _Context) -> tuple[list[str], list[list[str | None]]]:
        if p.accept("TO", "RECIPIENT"):
            recipient = p.single_name()
            if recipient not in self.recipients:
                raise SqlError("RECIPIENT_NOT_FOUND", f"The recipient `{recipient}` cannot be found.", "42704")
            rows = [
                [share, _spoken(priv)]
                for share, grants in sorted(self.share_grants.items())
                for priv in sorted(grants.get(recipient, ()))
            ]
            return ["share_name", "privilege"], rows
        principal = None if p.at("ON") else p.ident()
        p.expect("ON")
        securable_type, parts = self._sql_securable(p, ctx)
        name = ".".join(parts)
        if securable_type == "SHARE":
            if name not in self.shares:
                raise SqlError("SHARE_NOT_FOUND", f"The share `{name}` cannot be found.", "42704")
            rows = [
                [r, _spoken(priv), "SHARE", name]
                for r, privs in sorted(self.share_grants.get(name, {}).items())
                for priv in sorted(privs)
            ]
            return ["recipient", "actionType", "objectType", "objectKey"], rows
        self._sql_require(securable_type, parts)
        rows = []
        for t, key in reversed(self._ancestors(securable_type, name)):
            for who, privs in sorted(self.grants.get((t, key), {}).items()):
                if principal is None or who == principal:
                    rows += [[who, _spoken(priv), t, key] for priv in sorted(privs)]
        rows.sort(key=lambda r: (r[0], SECURABLE_TYPES.index(r[2]), r[1]))
        return ["principal", "actionType", "objectType", "objectKey"], rows

    # ---- snapshot ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole declarative state, JSON-able and in a stable order: no timestamps, no
        generated ids, no statement log. Two runs of an idempotent provisioning compare equal."""
        with self._lock:
            return {
                "catalogs": [
                    {"name": n, "comment": c["comment"], "properties": dict(sorted(c["properties"].items()))}
                    for n, c in sorted(self.catalogs.items())
                ],
                "schemas": [
                    {
                        "full_name": f"{c}.{s}",
                        "comment": v["comment"],
                        "properties": dict(sorted(v["properties"].items())),
                    }
                    for (c, s), v in sorted(self.schemas.items())
                ],
                "volumes": [
                    {
                        "full_name": ".".join(k),
                        "volume_type": v["volume_type"],
                        "storage_location": v["storage_location"],
                        "comment": v["comment"],
                    }
                    for k, v in sorted(self.volumes.items())
                ],
                "tables": [
                    {
                        "full_name": n,
                        "table_type": t["table_type"],
                        "columns": [[c[0], c[1].lower(), c[2]] for c in t["columns"]],
                        "column_masks": {
                            col: {
                                "function_name": m["function_name"],
                                "using_column_names": list(m["using_column_names"]),
                            }
                            for col, m in sorted(t["masks"].items())
                        },
                        "row_filter": None
                        if not t["row_filter"]
                        else {
                            "function_name": t["row_filter"]["function_name"],
                            "input_column_names": list(t["row_filter"]["input_column_names"]),
                        },
                    }
                    for n, t in sorted(self.tables.items())
                ],
                "functions": [
                    {
                        "full_name": n,
                        "parameters": [list(x) for x in f["parameters"]],
                        "return_type": f["return_type"],
                        "body": f["body"],
                        "language": f["language"],
                        "comment": f["comment"],
                    }
                    for n, f in sorted(self.functions.items())
                ],
                "grants": [
                    {"securable_type": t, "full_name": n, "principal": who, "privileges": sorted(privs)}
                    for (t, n), held in sorted(self.grants.items())
                    for who, privs in sorted(held.items())
                ],
                "shares": [
                    {
                        "name": n,
                        "comment": s["comment"],
                        "objects": [
                            {
                                k: o.get(k)
                                for k in (
                                    "name",
                                    "data_object_type",
                                    "shared_as",
                                    "comment",
                                    "history_data_sharing_status",
                                    "cdf_enabled",
                                )
                            }
                            for _, o in sorted(s["objects"].items())
                        ],
                    }
                    for n, s in sorted(self.shares.items())
                ],
                "recipients": [
                    {
                        "name": n,
                        "authentication_type": r["authentication_type"],
                        "data_recipient_global_metastore_id": r["data_recipient_global_metastore_id"],
                        "comment": r["comment"],
                    }
                    for n, r in sorted(self.recipients.items())
                ],
                "share_grants": [
                    {"share": s, "recipient": r, "privileges": sorted(privs)}
                    for s, held in sorted(self.share_grants.items())
                    for r, privs in sorted(held.items())
                ],
                "warehouses": sorted(self.warehouses),
            }


# ---------------------------------------------------------------------------------------------
# SQL text
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|--[^\n]*|/\*.*?\*/)
  | (?P<qident>`(?:[^`]|``)*`)
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
  | (?P<dollar>\$\$.*?\$\$)
  | (?P<sym2>::|<=|>=|<>|!=|\|\|)
  | (?P<param>:[A-Za-z_][A-Za-z0-9_]*)
  | (?P<word>[A-Za-z0-9_$]+)
  | (?P<sym>.)
    """,
    re.S | re.X,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int

    @property
    def value(self) -> str:
        if self.kind == "qident":
            return self.text[1:-1].replace("``", "`")
        if self.kind == "string":
            body = self.text[1:-1]
            quote = self.text[0]
            body = body.replace(quote * 2, quote)
            return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)
        if self.kind == "dollar":
            return self.text[2:-2]
        return self.text


class _Parser:
    """Tokens of one statement and the few moves the governance grammar needs."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.tokens: list[_Token] = []
        pos = 0
        while pos < len(sql):
            m = _TOKEN.match(sql, pos)
            if m is None or m.end() == pos:
                raise SqlError("PARSE_SYNTAX_ERROR", f"Syntax error at position {pos}.", "42601")
            if m.lastgroup != "ws":
                kind = "sym" if m.lastgroup == "sym2" else str(m.lastgroup)
                self.tokens.append(_Token(kind, m.group(), m.start(), m.end()))
            pos = m.end()
        while self.tokens and self.tokens[-1].text == ";":
            self.tokens.pop()
        self.i = 0

    def peek(self, k: int = 0) -> _Token | None:
        return self.tokens[self.i + k] if self.i + k < len(self.tokens) else None

    def peek_text(self) -> str:
        token = self.peek()
        return token.text if token else "end of input"

    def done(self) -> bool:
        return self.i >= len(self.tokens)

    def next(self) -> _Token:
        token = self.peek()
        if token is None:
            raise SqlError("PARSE_SYNTAX_ERROR", "Syntax error at or near end of input.", "42601")
        self.i += 1
        return token

    def at(self, *words: str) -> bool:
        for k, word in enumerate(words):
            token = self.peek(k)
            if token is None or token.kind != "word" or token.text.upper() != word:
                return False
        return True

    def accept(self, *words: str) -> bool:
        if self.at(*words):
            self.i += len(words)
            return True
        return False

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            raise SqlError(
                "PARSE_SYNTAX_ERROR",
                f"Syntax error at or near '{self.peek_text()}': expected {' '.join(words)}.",
                "42601",
            )

    def word(self) -> str:
        token = self.next()
        if token.kind != "word":
            raise SqlError("PARSE_SYNTAX_ERROR", f"Syntax error at or near '{token.text}'.", "42601")
        return token.text

    def ident(self) -> str:
        token = self.next()
        if token.kind not in ("word", "qident"):
            raise SqlError("PARSE_SYNTAX_ERROR", f"Syntax error at or near '{token.text}': expected a name.", "42601")
        return token.value

    def name(self) -> list[str]:
        parts = [self.ident()]
        while (token := self.peek()) is not None and token.text == ".":
            self.i += 1
            parts.append(self.ident())
        return parts

    def single_name(self) -> str:
        parts = self.name()
        if len(parts) != 1:
            raise SqlError(
                "INVALID_IDENTIFIER", f"{_quote(parts)} is not a valid name here: a one-part name is expected.", "42602"
            )
        return parts[0].lower()

    def string(self) -> str:
        token = self.next()
        if token.kind not in ("string", "dollar"):
            raise SqlError(
                "PARSE_SYNTAX_ERROR", f"Syntax error at or near '{token.text}': expected a string literal.", "42601"
            )
        return token.value

    def parenthesized_list(self) -> list[list[_Token]]:
        """`( a b, c (d, e) )` → [[a, b], [c, (, d, ,, e, )]]: items split on top-level commas."""
        if (token := self.next()).text != "(":
            raise SqlError("PARSE_SYNTAX_ERROR", f"Syntax error at or near '{token.text}': expected '('.", "42601")
        items: list[list[_Token]] = [[]]
        depth = 0
        while True:
            token = self.next()
            if token.text in ("(", "<"):
                depth += 1
            elif token.text in (")", ">"):
                if depth == 0 and token.text == ")":
                    return items if items != [[]] else []
                depth -= 1
            elif token.text == "," and depth == 0:
                items.append([])
                continue
            items[-1].append(token)

    def column_name(self, tokens: list[_Token]) -> str:
        if len(tokens) != 1 or tokens[0].kind not in ("word", "qident"):
            raise SqlError("PARSE_SYNTAX_ERROR", "Syntax error: expected a column name.", "42601")
        return tokens[0].value

    def text(self, first: _Token, last: _Token) -> str:
        return self.sql[first.start : last.end]

    def text_until(self, stops: set[str]) -> str:
        first = self.peek()
        last = None
        depth = 0
        while (token := self.peek()) is not None:
            if depth == 0 and token.kind == "word" and token.text.upper() in stops:
                break
            depth += token.text in ("(", "<")
            depth -= token.text in (")", ">")
            last = self.next()
        if first is None or last is None:
            raise SqlError("PARSE_SYNTAX_ERROR", "Syntax error: a type is missing.", "42601")
        return self.text(first, last)

    def rest(self) -> str:
        token = self.peek()
        if token is None:
            raise SqlError("PARSE_SYNTAX_ERROR", "Syntax error at or near end of input.", "42601")
        last = self.tokens[-1]
        self.i = len(self.tokens)
        return self.sql[token.start : last.end].strip()


# ---------------------------------------------------------------------------------------------
# Statements on Spark
# ---------------------------------------------------------------------------------------------


def _string_column(name: str, position: int) -> dict[str, Any]:
    return {"name": name, "type_name": "STRING", "type_text": "STRING", "position": position}


def _succeeded(
    statement_id: str, columns: list[dict[str, Any]], rows: list[list[str | None]], truncated: bool
) -> dict[str, Any]:
    n = len(rows)
    schema: dict[str, Any] = {"column_count": len(columns)}
    if columns:
        schema["columns"] = columns
    byte_count = len(json.dumps(rows)) if rows else 0
    result: dict[str, Any] = {"chunk_index": 0, "row_offset": 0, "row_count": n, "byte_count": byte_count}
    if rows:
        result["data_array"] = rows
    return {
        "statement_id": statement_id,
        "status": {"state": "SUCCEEDED"},
        "manifest": {
            "format": "JSON_ARRAY",
            "schema": schema,
            "total_row_count": n,
            "total_chunk_count": 1,
            "total_byte_count": byte_count,
            "chunks": [{"chunk_index": 0, "row_offset": 0, "row_count": n, "byte_count": byte_count}],
            "truncated": truncated,
        },
        "result": result,
    }


PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PARAMETER_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\s*\(\s*\d+\s*(,\s*\d+\s*)?\))?$")


def _sql_string(value: str) -> str:
    """A Spark SQL string literal of `value` (backslash escapes, as Spark's parser reads them)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parameter_sql(name: str, value: str | None, type_text: str) -> str:
    """The typed value one statement parameter binds, as SQL: the warehouse reads the string
    `value` as `type` (STRING by default), a malformed value failing the statement."""
    if not PARAMETER_NAME.match(name):
        raise SqlError(
            "INVALID_PARAMETER_MARKER_VALUE.INVALID_NAME", f"`{name}` is not a valid parameter name.", "22023"
        )
    t = re.sub(r"\s+", " ", type_text.strip().upper())
    if not PARAMETER_TYPE.match(t):
        raise SqlError(
            "INVALID_PARAMETER_MARKER_VALUE.INVALID_TYPE",
            f"The type {type_text!r} of parameter `{name}` is not a SQL type.",
            "22023",
        )
    if t == "STRING" and value is not None:
        return _sql_string(value)
    return f"CAST({'NULL' if value is None else _sql_string(value)} AS {t})"


def _with_parameters(statement: str, values: Mapping[str, str | None], types: Mapping[str, str]) -> str:
    """`statement` with its named parameters bound. Spark 4.2's Connect server leaves the `args`
    of `spark.sql` unbound (UNBOUND_SQL_PARAMETER); `EXECUTE IMMEDIATE … USING` binds them."""
    if not values:
        return statement
    using = ", ".join(f"{_parameter_sql(n, v, types.get(n, 'STRING'))} AS {n}" for n, v in values.items())
    return f"EXECUTE IMMEDIATE {_sql_string(statement.strip().rstrip(';'))} USING {using}"


def _sql_type_text(data_type: Any) -> str:
    from pyspark.sql import types as T

    if isinstance(data_type, T.ArrayType):
        return f"ARRAY<{_sql_type_text(data_type.elementType)}>"
    if isinstance(data_type, T.MapType):
        return f"MAP<{_sql_type_text(data_type.keyType)}, {_sql_type_text(data_type.valueType)}>"
    if isinstance(data_type, T.StructType):
        return "STRUCT<" + ", ".join(f"{f.name}: {_sql_type_text(f.dataType)}" for f in data_type.fields) + ">"
    if isinstance(data_type, T.NullType):
        return "VOID"
    return data_type.simpleString().upper()


def _column_manifest(name: str, data_type: Any, position: int) -> dict[str, Any]:
    from pyspark.sql import types as T

    names = [
        (T.ByteType, "BYTE"),
        (T.ShortType, "SHORT"),
        (T.IntegerType, "INT"),
        (T.LongType, "LONG"),
        (T.FloatType, "FLOAT"),
        (T.DoubleType, "DOUBLE"),
        (T.DecimalType, "DECIMAL"),
        (T.CharType, "CHAR"),
        (T.StringType, "STRING"),
        (T.BooleanType, "BOOLEAN"),
        (T.DateType, "DATE"),
        (T.TimestampNTZType, "TIMESTAMP_NTZ"),
        (T.TimestampType, "TIMESTAMP"),
        (T.BinaryType, "BINARY"),
        (T.ArrayType, "ARRAY"),
        (T.MapType, "MAP"),
        (T.StructType, "STRUCT"),
        (T.NullType, "NULL"),
        (T.DayTimeIntervalType, "INTERVAL"),
        (T.YearMonthIntervalType, "INTERVAL"),
    ]
    type_name_ = next((n for cls, n in names if isinstance(data_type, cls)), "USER_DEFINED_TYPE")
    info: dict[str, Any] = {
        "name": name,
        "type_name": type_name_,
        "type_text": _sql_type_text(data_type),
        "position": position,
    }
    if isinstance(data_type, T.DecimalType):
        info["type_precision"], info["type_scale"] = data_type.precision, data_type.scale
    return info


def _as_string(column: str, data_type: Any) -> str:
    """A Spark SQL expression rendering one value as the Statement Execution API's JSON_ARRAY does."""
    from pyspark.sql import types as T

    if isinstance(data_type, (T.StringType, T.CharType, T.VarcharType)):
        return column
    if isinstance(data_type, T.TimestampNTZType):
        return f"date_format({column}, \"yyyy-MM-dd'T'HH:mm:ss.SSS\")"
    if isinstance(data_type, T.TimestampType):
        return f"date_format(to_utc_timestamp({column}, current_timezone()), \"yyyy-MM-dd'T'HH:mm:ss.SSS'Z'\")"
    if isinstance(data_type, T.BinaryType):
        return f"base64({column})"
    if isinstance(data_type, (T.ArrayType, T.MapType, T.StructType, T.VariantType)):
        return f"to_json({column})"
    return f"CAST({column} AS STRING)"


def _spark_message(exc: BaseException) -> str:
    text = str(exc).split("\n\nJVM stacktrace:", 1)[0].strip()
    return text[:4000]


def _spark_execute(
    remote: str | None,
    statement: str,
    values: Mapping[str, str | None],
    types: Mapping[str, str],
    ctx: _Context,
    row_limit: int | None,
    spark_conf: Mapping[str, str],
) -> tuple[list[dict[str, Any]], list[list[str | None]], bool]:
    """Run one statement in a Spark Connect session of its own and render its rows as strings."""
    if not remote:
        raise SqlError(
            "INTERNAL_ERROR",
            "The emulated warehouse has no Spark Connect server (`spark_remote` is None) to run this statement on.",
            "XX000",
            "INTERNAL_ERROR",
        )
    from pyspark.errors import PySparkException
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    text = _with_parameters(statement, values, types)
    # Built directly rather than through the builder: a session of its own, which never becomes
    # the default or active session of the test process.
    try:
        session = ConnectSession(connection=remote)
    except Exception as exc:  # noqa: BLE001 - the warehouse is down, as the API reports it
        raise SqlError(
            "INTERNAL_ERROR", f"Spark Connect server {remote} unavailable: {exc}", "XX000", "INTERNAL_ERROR"
        ) from None
    try:
        for key, value in spark_conf.items():
            session.conf.set(key, value)
        if values:
            # Parse-time parameter substitution (Spark 4.2's default) loses EXECUTE IMMEDIATE's
            # arguments over Connect too; the constants-only substitution binds them.
            session.conf.set("spark.sql.legacy.parameterSubstitution.constantsOnly", "true")
        if ctx.catalog:
            session.sql(f"USE CATALOG `{ctx.catalog}`")
        if ctx.schema:
            session.sql(f"USE SCHEMA `{ctx.schema}`")
        df = session.sql(text)
        fields = list(df.schema.fields)
        if row_limit is not None:
            df = df.limit(row_limit + 1)
        if fields:
            renamed = [f"_c{i}" for i in range(len(fields))]
            df = df.toDF(*renamed).selectExpr(
                *(f"{_as_string(c, f.dataType)} AS {c}" for c, f in zip(renamed, fields, strict=True))
            )
        rows = [[None if v is None else str(v) for v in row] for row in df.collect()]
    except PySparkException as exc:
        raise _SparkFailure(exc) from None
    finally:
        session.stop()
    truncated = row_limit is not None and len(rows) > row_limit
    if truncated:
        rows = rows[:row_limit]
    return [_column_manifest(f.name, f.dataType, i) for i, f in enumerate(fields)], rows, truncated


class _SparkFailure(SqlError):
    """A statement Spark refused, with Spark's own `[ERROR_CLASS] … SQLSTATE: …` message."""

    def __init__(self, exc: BaseException) -> None:
        Exception.__init__(self, _spark_message(exc))
        error_class = getattr(exc, "getCondition", lambda: None)() or getattr(exc, "getErrorClass", lambda: None)()
        self.error_class = error_class or "INTERNAL_ERROR"
        sqlstate = getattr(exc, "getSqlState", lambda: None)() or ""
        self.error_code = "INTERNAL_ERROR" if sqlstate.startswith("XX") or not error_class else "BAD_REQUEST"


# ---------------------------------------------------------------------------------------------
# REST routes
# ---------------------------------------------------------------------------------------------

Handler = Callable[[Any, dict[str, Any], "re.Match[str]"], dict[str, Any]]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []
UC = r"/api/2\.1/unity-catalog"
_NAME = r"(?P<name>[^/]+)"


def _route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append((method, re.compile(f"^{pattern}$"), handler))
        return handler

    return register


def _arg(match: re.Match[str], group: str = "name") -> str:
    return unquote(match.group(group))


def _required(params: Mapping[str, Any], *names: str) -> list[Any]:
    missing = [n for n in names if params.get(n) in (None, "")]
    if missing:
        raise _bad(f"Missing required field: {', '.join(missing)}")
    return [params[n] for n in names]


def _split(full_name: str, depth: int, what: str) -> list[str]:
    parts = full_name.lower().split(".")
    if len(parts) != depth:
        raise _bad(f"Invalid {what} name '{full_name}': expected {depth} dot-separated parts")
    return parts


# catalogs


@_route("GET", f"{UC}/catalogs")
def _catalogs_list(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    uc: UnityCatalog = emulator.catalog
    with uc._lock:
        return {"catalogs": [uc.catalog_info(n) for n in sorted(uc.catalogs)]}


@_route("POST", f"{UC}/catalogs")
def _catalogs_create(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    (name,) = _required(params, "name")
    return emulator.catalog.create_catalog(name, comment=params.get("comment"), properties=params.get("properties"))


@_route("GET", f"{UC}/catalogs/{_NAME}")
def _catalogs_get(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return emulator.catalog.catalog_info(_arg(match))


# schemas


@_route("POST", f"{UC}/schemas")
def _schemas_create(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    name, catalog = _required(params, "name", "catalog_name")
    return emulator.catalog.create_schema(
        catalog, name, comment=params.get("comment"), properties=params.get("properties")
    )


@_route("GET", f"{UC}/schemas")
def _schemas_list(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    uc: UnityCatalog = emulator.catalog
    (catalog,) = _required(params, "catalog_name")
    with uc._lock:
        uc._catalog(catalog)
        return {"schemas": [uc.schema_info(c, s) for c, s in sorted(uc.schemas) if c == catalog.lower()]}


@_route("GET", f"{UC}/schemas/{_NAME}")
def _schemas_get(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return emulator.catalog.schema_info(*_split(_arg(match), 2, "schema"))


@_route("DELETE", f"{UC}/schemas/{_NAME}")
def _schemas_delete(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    emulator.catalog.delete_schema(*_split(_arg(match), 2, "schema"), force=_truthy(params.get("force")))
    return {}


# volumes


@_route("POST", f"{UC}/volumes")
def _volumes_create(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    catalog, schema, name = _required(params, "catalog_name", "schema_name", "name")
    return emulator.catalog.create_volume(
        catalog,
        schema,
        name,
        volume_type=params.get("volume_type") or "",
        storage_location=params.get("storage_location"),
        comment=params.get("comment"),
    )


@_route("GET", f"{UC}/volumes")
def _volumes_list(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    uc: UnityCatalog = emulator.catalog
    catalog, schema = (v.lower() for v in _required(params, "catalog_name", "schema_name"))
    with uc._lock:
        uc._schema(catalog, schema)
        return {"volumes": [uc.volume_info(*k) for k in sorted(uc.volumes) if k[:2] == (catalog, schema)]}


@_route("GET", f"{UC}/volumes/{_NAME}")
def _volumes_read(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return emulator.catalog.volume_info(*_split(_arg(match), 3, "volume"))


@_route("DELETE", f"{UC}/volumes/{_NAME}")
def _volumes_delete(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    emulator.catalog.delete_volume(*_split(_arg(match), 3, "volume"))
    return {}


# tables


@_route("GET", f"{UC}/tables")
def _tables_list(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    uc: UnityCatalog = emulator.catalog
    catalog, schema = (v.lower() for v in _required(params, "catalog_name", "schema_name"))
    omit = _truthy(params.get("omit_columns"))
    with uc._lock:
        uc._schema(catalog, schema)
        prefix = f"{catalog}.{schema}."
        return {"tables": [uc.table_info(n, omit_columns=omit) for n in sorted(uc.tables) if n.startswith(prefix)]}


@_route("GET", f"{UC}/tables/{_NAME}/exists")
def _tables_exists(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    uc: UnityCatalog = emulator.catalog
    catalog, schema, _ = _split(_arg(match), 3, "table")
    with uc._lock:
        uc._schema(catalog, schema)
        return {"table_exists": uc.table_exists(_arg(match))}


@_route("GET", f"{UC}/tables/{_NAME}")
def _tables_get(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return emulator.catalog.table_info(_arg(match))


@_route("DELETE", f"{UC}/tables/{_NAME}")
def _tables_delete(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    emulator.catalog.drop_table(_arg(match))
    return {}


# functions


@_route("GET", f"{UC}/functions")
def _functions_list(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    uc: UnityCatalog = emulator.catalog
    catalog, schema = (v.lower() for v in _required(params, "catalog_name", "schema_name"))
    with uc._lock:
        uc._schema(catalog, schema)
        prefix = f"{catalog}.{schema}."
        return {"functions": [uc.function_info(n) for n in sorted(uc.functions) if n.startswith(prefix)]}


@_route("GET", f"{UC}/functions/{_NAME}")
def _functions_get(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return emulator.catalog.function_info(_arg(match))


@_route("DELETE", f"{UC}/functions/{_NAME}")
def _functions_delete(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    emulator.catalog.drop_function(_arg(match))
    return {}


# grants


@_route("GET", f"{UC}/permissions/(?P<type>[^/]+)/{_NAME}")
def _permissions_get(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return {
        "privilege_assignments": emulator.catalog.privilege_assignments(
            _arg(match, "type"), _arg(match), params.get("principal")
        )
    }


@_route("PATCH", f"{UC}/permissions/(?P<type>[^/]+)/{_NAME}")
def _permissions_update(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return {
        "privilege_assignments": emulator.catalog.update_grants(
            _arg(match, "type"), _arg(match), params.get("changes") or []
        )
    }


@_route("GET", f"{UC}/effective-permissions/(?P<type>[^/]+)/{_NAME}")
def _permissions_effective(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return {
        "privilege_assignments": emulator.catalog.effective_privileges(
            _arg(match, "type"), _arg(match), params.get("principal")
        )
    }


# shares


@_route("POST", f"{UC}/shares")
def _shares_create(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    (name,) = _required(params, "name")
    return emulator.catalog.create_share(name, comment=params.get("comment"))


@_route("GET", f"{UC}/shares")
def _shares_list(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    uc: UnityCatalog = emulator.catalog
    with uc._lock:
        return {"shares": [uc.share_info(n, include_shared_data=False) for n in sorted(uc.shares)]}


@_route("GET", f"{UC}/shares/{_NAME}")
def _shares_get(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return emulator.catalog.share_info(_arg(match), include_shared_data=_truthy(params.get("include_shared_data")))


@_route("PATCH", f"{UC}/shares/{_NAME}")
def _shares_update(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    if params.get("new_name") or params.get("storage_root"):
        raise _bad("renaming a share or changing its storage_root is not emulated")
    return emulator.catalog.update_share(_arg(match), params.get("updates") or [], comment=params.get("comment"))


@_route("DELETE", f"{UC}/shares/{_NAME}")
def _shares_delete(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    emulator.catalog.delete_share(_arg(match))
    return {}


@_route("GET", f"{UC}/shares/{_NAME}/permissions")
def _share_permissions_get(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return {"privilege_assignments": emulator.catalog.privilege_assignments("SHARE", _arg(match))}


@_route("PATCH", f"{UC}/shares/{_NAME}/permissions")
def _share_permissions_update(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    assignments = emulator.catalog.update_share_permissions(_arg(match), params.get("changes") or [])
    return {} if _truthy(params.get("omit_permissions_list")) else {"privilege_assignments": assignments}


# recipients


@_route("POST", f"{UC}/recipients")
def _recipients_create(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    name, auth = _required(params, "name", "authentication_type")
    return emulator.catalog.create_recipient(
        name,
        authentication_type=auth,
        data_recipient_global_metastore_id=params.get("data_recipient_global_metastore_id"),
        comment=params.get("comment"),
    )


@_route("GET", f"{UC}/recipients")
def _recipients_list(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    uc: UnityCatalog = emulator.catalog
    wanted = params.get("data_recipient_global_metastore_id")
    with uc._lock:
        infos = [uc.recipient_info(n) for n in sorted(uc.recipients)]
    return {"recipients": [r for r in infos if not wanted or r.get("data_recipient_global_metastore_id") == wanted]}


@_route("GET", f"{UC}/recipients/{_NAME}")
def _recipients_get(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return emulator.catalog.recipient_info(_arg(match))


@_route("DELETE", f"{UC}/recipients/{_NAME}")
def _recipients_delete(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    emulator.catalog.delete_recipient(_arg(match))
    return {}


@_route("GET", f"{UC}/recipients/{_NAME}/share-permissions")
def _recipient_share_permissions(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    uc: UnityCatalog = emulator.catalog
    name = _arg(match).lower()
    with uc._lock:
        uc._recipient(name)
        return {
            "permissions_out": [
                {
                    "share_name": share,
                    "privilege_assignments": [{"principal": name, "privileges": sorted(grants[name])}],
                }
                for share, grants in sorted(uc.share_grants.items())
                if name in grants
            ]
        }


# SQL warehouse


@_route("POST", r"/api/2\.0/sql/statements/?")
def _statements_execute(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return emulator.catalog.execute_statement(params, getattr(emulator, "spark_remote", None))


@_route("GET", r"/api/2\.0/sql/statements/(?P<id>[^/]+)")
def _statements_get(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return emulator.catalog.statement_response(_arg(match, "id"))


@_route("POST", r"/api/2\.0/sql/statements/(?P<id>[^/]+)/cancel")
def _statements_cancel(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    emulator.catalog.statement_response(_arg(match, "id"))  # finished already: nothing to cancel
    return {}


@_route("GET", r"/api/2\.0/sql/statements/(?P<id>[^/]+)/result/chunks/(?P<chunk>\d+)")
def _statements_chunk(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    response = emulator.catalog.statement_response(_arg(match, "id"))
    if response["status"]["state"] != "SUCCEEDED" or int(match.group("chunk")) != 0:
        raise _bad(f"Chunk {match.group('chunk')} does not exist for statement {_arg(match, 'id')}")
    return response["result"]


@_route("GET", r"/api/2\.0/sql/warehouses")
def _warehouses_list(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    uc: UnityCatalog = emulator.catalog
    return {"warehouses": [uc.warehouse_info(w) for w in sorted(uc.warehouses)]}


@_route("GET", r"/api/2\.0/sql/warehouses/(?P<id>[^/]+)")
def _warehouses_get(emulator: Any, params: dict[str, Any], match: re.Match[str]) -> dict[str, Any]:
    return emulator.catalog.warehouse_info(_arg(match, "id"))


def route(method: str, path: str) -> tuple[Handler, re.Match[str]] | None:
    """The handler of one request, for an emulator that dispatches on `ROUTES`."""
    for m, pattern, handler in ROUTES:
        if m == method and (match := pattern.fullmatch(path)):
            return handler, match
    return None
