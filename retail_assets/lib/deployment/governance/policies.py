"""Column masks and row filters on Gold, per environment.

Gold keeps e-mail and phone only hashed and masked (SPEC §3), but the customer dimension still
holds names, the birth date and the home city. Data engineers and the pipeline see them; everyone
else reads them through masks: names and city as `***`, the birth date truncated to its year
(age bands still work). Store managers see the daily store sales of their own region only.

Masks and filters are SQL functions in the environment's Gold schema, bound to tables with
`ALTER TABLE … SET MASK / SET ROW FILTER`. A table exists only after its first materialization,
so provisioning binds what exists and reports the rest as pending; the pipeline's writes keep a
table (and so its masks) in place, and re-running provisioning after the first run completes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from retail_assets.lib.deployment.governance.principals import Principals, checked
from retail_assets.lib.deployment.governance.securables import quoted, sql_string
from retail_assets.lib.registry.tables import (
    GOLD_AGG_DAILY_STORE_SALES,
    GOLD_DIM_STORE,
    TABLES,
    Layer,
    TableSpec,
    catalog_schema,
)

# The personal data that remains in Gold, table by table, as the registry's columns declare it.
# A serving shape is a view: Unity Catalog masks its base table's columns for whoever reads
# them through it, and takes no mask of its own.
GOLD_PII: dict[TableSpec, tuple[str, ...]] = {
    spec: tuple(c.name for c in spec.columns if c.pii)
    for spec in TABLES
    if spec.layer is Layer.GOLD and spec.view is None and any(c.pii for c in spec.columns)
}

# What a restricted reader sees instead of a masked value, by the column's type.
MASKED_VALUE = {
    "string": ("mask_pii_string", "'***'"),
    "date": ("mask_pii_date", "trunc(value, 'YEAR')"),  # the year only: age bands, no birthday
}

# Tables filtered by store: the columns the filter function receives, in its parameter order.
STORE_REGION_FILTERED: dict[TableSpec, tuple[str, ...]] = {
    GOLD_AGG_DAILY_STORE_SALES: ("store_id",),
}
STORE_REGION_FILTER = "store_region_filter"


@dataclass(frozen=True)
class SqlFunction:
    """A SQL UDF in an environment's Gold schema."""

    catalog: str
    schema: str
    name: str
    params: tuple[tuple[str, str], ...]  # (name, SQL type)
    returns: str
    body: str  # the RETURN expression
    comment: str

    @property
    def full_name(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.name}"

    def sql(self) -> str:
        params = ", ".join(f"{name} {type_}" for name, type_ in self.params)
        return (
            f"CREATE OR REPLACE FUNCTION {quoted(self.catalog, self.schema, self.name)}({params})\n"
            f"RETURNS {self.returns}\nCOMMENT {sql_string(self.comment)}\nRETURN {self.body}"
        )


@dataclass(frozen=True)
class ColumnMask:
    column: str
    function: SqlFunction


@dataclass(frozen=True)
class TableMasks:
    """Every masked column of one table."""

    table: TableSpec
    full_name: str
    masks: tuple[ColumnMask, ...]

    def statements(self) -> list[str]:
        target = quoted(*self.full_name.split("."))
        return [
            f"ALTER TABLE {target} ALTER COLUMN `{m.column}` SET MASK {quoted(*m.function.full_name.split('.'))}"
            for m in self.masks
        ]


@dataclass(frozen=True)
class TableRowFilter:
    table: TableSpec
    full_name: str
    function: SqlFunction
    columns: tuple[str, ...]

    def statement(self) -> str:
        columns = ", ".join(f"`{c}`" for c in self.columns)
        return f"ALTER TABLE {quoted(*self.full_name.split('.'))} SET ROW FILTER {quoted(*self.function.full_name.split('.'))} ON ({columns})"


@dataclass(frozen=True)
class Policies:
    """The functions, masks and row filters of one environment."""

    functions: tuple[SqlFunction, ...]
    masks: tuple[TableMasks, ...]
    row_filters: tuple[TableRowFilter, ...]

    def protected_tables(self) -> set[TableSpec]:
        """Tables with a mask or a row filter (Delta Sharing cannot share them)."""
        return {m.table for m in self.masks} | {f.table for f in self.row_filters}

    def statements(self) -> list[str]:
        return [
            *(f.sql() for f in self.functions),
            *(s for m in self.masks for s in m.statements()),
            *(f.statement() for f in self.row_filters),
        ]


def policies_for(
    env: str, catalog: str, *, principals: Principals | None = None, tables: Iterable[TableSpec] = TABLES
) -> Policies:
    catalog = checked(catalog, "catalog")
    who = principals or Principals.for_env(env)
    tables = list(tables)
    gold = catalog_schema(Layer.GOLD, who.env)
    functions: dict[str, SqlFunction] = {}

    def mask_function(column_type: str) -> SqlFunction:
        if column_type not in MASKED_VALUE:
            raise ValueError(f"no column mask for type {column_type!r}; add one to MASKED_VALUE")
        name, masked = MASKED_VALUE[column_type]
        if name not in functions:
            functions[name] = SqlFunction(
                catalog,
                gold,
                name,
                (("value", column_type.upper()),),
                column_type.upper(),
                f"CASE WHEN {who.unrestricted_predicate()} THEN value ELSE {masked} END",
                f"Column mask: personal data in clear for {who.data_engineers} and the pipeline only.",
            )
        return functions[name]

    masks = []
    for spec, columns in GOLD_PII.items():
        if spec not in tables:
            continue
        masks.append(
            TableMasks(
                spec,
                spec.catalog_name(catalog, who.env),
                tuple(ColumnMask(c, mask_function(spec.column(c).type)) for c in columns),
            )
        )

    row_filters = []
    filtered = {spec: columns for spec, columns in STORE_REGION_FILTERED.items() if spec in tables}
    if filtered:
        region_filter = store_region_filter(catalog, who)
        functions[region_filter.name] = region_filter
        for spec, columns in filtered.items():
            for column in columns:
                spec.column(column)  # a registry change that drops the column fails here
            row_filters.append(TableRowFilter(spec, spec.catalog_name(catalog, who.env), region_filter, columns))
    return Policies(tuple(functions.values()), tuple(masks), tuple(row_filters))


def store_region_filter(catalog: str, who: Principals) -> SqlFunction:
    """True for the rows of a store in the reader's region; analysts, data engineers and the
    pipeline see every row. The region comes from the store dimension (the aggregates carry the
    store id only)."""
    dim_store = quoted(*GOLD_DIM_STORE.catalog_name(catalog, who.env).split("."))
    region_group = f"concat('{who.store_managers}_', regexp_replace(lower(s.region), '[^a-z0-9]+', '_'))"
    body = (
        f"{who.unrestricted_predicate(analysts=True)}\n"
        f"  OR EXISTS (SELECT 1 FROM {dim_store} AS s WHERE s.store_id = store_key AND is_account_group_member({region_group}))"
    )
    return SqlFunction(
        catalog,
        catalog_schema(Layer.GOLD, who.env),
        STORE_REGION_FILTER,
        (("store_key", "STRING"),),
        "BOOLEAN",
        body,
        f"Row filter: members of {who.store_managers}_<region> see the stores of that region.",
    )
