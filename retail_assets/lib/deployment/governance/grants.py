"""Unity Catalog grants of one environment, generated from the table registry.

Who may read what follows from where personal data lives: Bronze, Silver and quarantine hold raw
customer records (names, e-mail, phone, the original payloads); Gold holds e-mail and phone only
hashed and masked, and its remaining personal columns behind column masks (`policies`). So:

- analysts: USE CATALOG, USE SCHEMA on Gold and SELECT on each Gold table, nothing else; every
  privilege they hold on another layer's schema is revoked, so provisioning also repairs a grant
  someone added by hand. Table by table, so a new Gold table is reviewed as a new grant;
- data engineers: USE SCHEMA and SELECT on every layer, READ VOLUME on the volumes;
- store managers: SELECT on the store-filtered Gold tables only (the row filter narrows them);
- the pipeline's service principal: USE CATALOG; USE SCHEMA, CREATE TABLE, SELECT and MODIFY on
  its schemas; READ VOLUME on the landing volume; READ and WRITE VOLUME on the artifacts volume
  (the wheel it installs, the steps it stages); EXECUTE on the mask and filter functions.
  No CREATE SCHEMA: provisioning, run by an administrator, creates the schemas, and the
  pipeline's `CREATE SCHEMA IF NOT EXISTS` then finds them.

`retail-assets grants --env prod --catalog retail` prints them as SQL; provisioning applies the
same grants as Unity Catalog permission changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from retail_assets.lib.deployment.governance.policies import Policies, policies_for
from retail_assets.lib.deployment.governance.principals import Principals, checked
from retail_assets.lib.deployment.governance.securables import VOLUMES, layers, quoted, schema_full_name
from retail_assets.lib.registry.tables import TABLES, Layer, TableSpec

PII_LAYERS = tuple(layer for layer in Layer if layer.holds_raw_pii)
ANALYST_LAYERS = tuple(layer for layer in Layer if layer.for_analysts)

PIPELINE_SCHEMA_PRIVILEGES = ("USE SCHEMA", "CREATE TABLE", "SELECT", "MODIFY")
READER_SCHEMA_PRIVILEGES = ("USE SCHEMA", "SELECT")
ALL_PRIVILEGES = "ALL PRIVILEGES"


@dataclass(frozen=True)
class Grant:
    """One GRANT (or REVOKE): privileges on a securable to a principal."""

    privileges: tuple[str, ...]  # as SQL spells them: "USE SCHEMA"
    securable_type: str  # CATALOG, SCHEMA, TABLE, VOLUME or FUNCTION
    securable: tuple[str, ...]  # name parts, e.g. ("retail", "prod_gold", "fact_sales")
    principal: str
    revoke: bool = False

    @property
    def name(self) -> str:
        return ".".join(self.securable)

    def sql(self) -> str:
        target = quoted(*self.securable)
        privileges = ", ".join(self.privileges)
        if self.revoke:
            return f"REVOKE {privileges} ON {self.securable_type} {target} FROM `{self.principal}`;"
        return f"GRANT {privileges} ON {self.securable_type} {target} TO `{self.principal}`;"


def grants_for(
    env: str,
    catalog: str,
    *,
    tables: Iterable[TableSpec] = TABLES,
    principals: Principals | None = None,
    policies: Policies | None = None,
) -> list[Grant]:
    """Every grant of one deployment environment, in the order they should run."""
    catalog = checked(catalog, "catalog")
    who = principals or Principals.for_env(env)
    tables = list(tables)
    policies = policies or policies_for(who.env, catalog, principals=who, tables=tables)
    filtered = [f.table for f in policies.row_filters]

    def parts(spec: TableSpec) -> tuple[str, ...]:
        return tuple(spec.catalog_name(catalog, who.env).split("."))

    readers = [who.pipeline, who.data_engineers, who.analysts] + ([who.store_managers] if filtered else [])
    grants = [Grant(("USE CATALOG",), "CATALOG", (catalog,), p) for p in readers]
    for layer in layers(tables):
        schema = tuple(schema_full_name(catalog, layer, who.env).split("."))
        grants.append(Grant(PIPELINE_SCHEMA_PRIVILEGES, "SCHEMA", schema, who.pipeline))
        grants.append(Grant(READER_SCHEMA_PRIVILEGES, "SCHEMA", schema, who.data_engineers))
        if layer in ANALYST_LAYERS:
            grants.append(Grant(("USE SCHEMA",), "SCHEMA", schema, who.analysts))
            grants.extend(
                Grant(("SELECT",), "TABLE", parts(spec), who.analysts) for spec in tables if spec.layer is layer
            )
            if any(spec.layer is layer for spec in filtered):
                grants.append(Grant(("USE SCHEMA",), "SCHEMA", schema, who.store_managers))
                grants.extend(
                    Grant(("SELECT",), "TABLE", parts(spec), who.store_managers)
                    for spec in filtered
                    if spec.layer is layer
                )
        else:
            grants.append(Grant((ALL_PRIVILEGES,), "SCHEMA", schema, who.analysts, revoke=True))
        for volume in (v for v in VOLUMES if v.layer is layer):
            name = tuple(volume.full_name(catalog, who.env).split("."))
            grants.append(Grant(volume.pipeline_privileges, "VOLUME", name, who.pipeline))
            grants.append(Grant(("READ VOLUME",), "VOLUME", name, who.data_engineers))
    grants.extend(
        Grant(("EXECUTE",), "FUNCTION", tuple(f.full_name.split(".")), who.pipeline) for f in policies.functions
    )
    return grants


def grants_sql(env: str, catalog: str, *, principals: Principals | None = None) -> str:
    """The grants of one environment as a SQL script."""
    who = principals or Principals.for_env(env)
    header = [
        f"-- Unity Catalog grants for environment {env!r}, catalog {catalog!r}; generated by retail-assets from the table registry",
        f"-- {who.pipeline_note}",
    ]
    return "\n".join([*header, *(g.sql() for g in grants_for(env, catalog, principals=who))]) + "\n"
