"""Silver master data and inventory: each refines one Bronze table, typed and checked as its
registry entry says (`TableSpec.refines`), deduplicated within each arrival day."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import (
    SILVER_INVENTORY,
    TableSpec,
)
from retail_assets.lib.transforms.silver.judging import (
    CUSTOMER,
    PRODUCT,
    STORE,
    Typed,
    check,
    coded_values,
    conform,
    declared_checks,
    dedup,
    duplicate_rows,
    judge,
    missing,
    orphan,
    sql_string,
    typed_date,
    typed_decimal,
    typed_int,
    typed_timestamp,
    violation_rows,
    with_columns,
    with_known,
)


@dataclass(frozen=True)
class SplitResult:
    accepted: DataFrame  # the Silver table's schema
    violations: DataFrame  # QUARANTINE_RULE_VIOLATIONS schema
    duplicates: DataFrame  # DUPLICATE_COLUMNS
    # One row per parsed record with its outcome; the three frames above all derive from it.
    classified: DataFrame
    spec: TableSpec

    @property
    def classification(self) -> DataFrame:
        """What the outputs are derived from (`split_outputs`). A caller that writes or counts
        several outputs computes it once and derives them from the computed copy; otherwise Spark
        plans and runs the whole rule set once per action."""
        return self.classified


def known_keys(customers: DataFrame, products: DataFrame, stores: DataFrame) -> DataFrame:
    """(kind, key, first_arrival_date): when each master key first arrived in Silver."""
    parts = [
        frame.selectExpr(f"{sql_string(kind)} AS kind", f"{column} AS key", "_arrival_date")
        for kind, column, frame in (
            (CUSTOMER, "customer_id", customers),
            (PRODUCT, "product_id", products),
            (STORE, "store_id", stores),
        )
    ]
    union = parts[0].unionByName(parts[1]).unionByName(parts[2])
    return union.groupBy("kind", "key").agg(F.min("_arrival_date").alias("first_arrival_date"))


@dataclass(frozen=True)
class _Shape:
    """How a Silver refinement types its Bronze table: read off its registry entry."""

    silver: TableSpec

    @property
    def bronze(self) -> TableSpec:
        if self.silver.refines is None:
            raise ValueError(f"{self.silver.key} does not refine a Bronze table of its own")
        return self.silver.refines

    @property
    def identity(self) -> tuple[str, ...]:
        return self.silver.identity

    @property
    def versioned(self) -> bool:
        return self.silver.versioned

    def _typed(self, type_: str) -> tuple[str, ...]:
        return tuple(c for c in self.attributes if self.silver.column(c).type == type_ and c != "updated_at")

    @property
    def required(self) -> tuple[str, ...]:
        """Set on every record, besides identity and version (non-nullable in the registry)."""
        return tuple(
            c
            for c in self.attributes
            if not self.silver.column(c).nullable and c not in self.identity and c != "updated_at"
        )

    @property
    def dates(self) -> tuple[str, ...]:
        return self._typed("date")

    @property
    def prices(self) -> tuple[str, ...]:
        """decimal(12,2) money columns: a negative one breaks `negative_price`."""
        return self._typed("decimal(12,2)")

    @property
    def counts(self) -> tuple[str, ...]:
        """int columns: a negative one breaks `invalid_value`."""
        return self._typed("int")

    @property
    def references(self) -> tuple[tuple[str, str], ...]:
        """(kind, column) of each column that must name a known master record."""
        return tuple((master.identity[0].removesuffix("_id"), column) for column, master in self.silver.references)

    @property
    def attributes(self) -> list[str]:
        """The Silver table's business columns (its lineage columns aside)."""
        return self.silver.business_columns


def clean_master_data(bronze: DataFrame, spec: TableSpec, *, batch_id: str) -> SplitResult:
    """Bronze change records → their Silver table (`spec`: customers, products or stores), one
    row per distinct change; what is typed and checked is read off the registry entry.

    `bronze` may hold records of other sources in its Bronze table's shape (the CRM's customer
    changes, `orders.crm_customer_records`); one carrying `_is_deleted` true is a deletion
    (`is_deleted`), judged like any change record."""
    if spec.references:
        raise ValueError(f"{spec.key} references master data: clean it with its known keys")
    return _clean(bronze, _Shape(spec), batch_id=batch_id)


def _clean(
    bronze: DataFrame, shape: _Shape, *, batch_id: str, known: DataFrame | None = None, lateness_days: int = 0
) -> SplitResult:
    fields = [c.name for c in shape.bronze.columns if not c.name.startswith("_")]
    df = bronze.filter("_parse_error IS NULL").selectExpr(
        f"{sql_string(shape.bronze.key)} AS source_table",
        "_source",
        "_source_file",
        "_source_line",
        "_arrival_date",
        "_raw_record",
        "_extra",
        *[f"nullif(trim({f}), '') AS {f}" for f in fields],
        *([_deleted(bronze)] if DELETED in shape.silver.column_names else []),
    )
    typed: list[Typed] = []
    checks = [missing(k) for k in (*shape.identity, *shape.required)]
    if shape.versioned:
        checks.append(missing("updated_at"))
        typed.append(typed_timestamp("updated_at", "v_updated_at", "_event_date"))
    typed += [typed_date(name, f"v_{name}") for name in shape.dates]
    for name in shape.prices:
        typed.append(typed_decimal(name, f"v_{name}", f"_{name}_exact", 12, 2))
        checks.append(check(rules.NEGATIVE_PRICE, column=name, exact=f"_{name}_exact"))
    for name in shape.counts:
        typed.append(typed_int(name, f"v_{name}"))
        checks.append(check(rules.INVALID_VALUE, "negative", column=name, value=f"v_{name}"))
    checks += [c for t in typed for c in t.checks]
    checks += coded_values(shape.silver)
    checks += [c for kind, column in shape.references for c in orphan(kind, column, lateness_days)]

    columns = {k: v for t in typed for k, v in t.columns.items()}
    key_text = [f"coalesce({k}, '')" for k in shape.identity]
    if shape.versioned:
        columns["record_key"] = f"concat({', '.join(key_text)}, '@', coalesce(updated_at, ''))"
    else:
        columns["_event_date"] = columns["v_snapshot_date"]  # the business date of a snapshot
        columns["record_key"] = f"concat_ws(':', {', '.join(key_text)})"
    df = with_columns(df, columns)
    if shape.references:
        if known is None:
            raise ValueError(f"cleaning {shape.bronze.key} needs known_keys")
        df = with_known(df, known, dict(shape.references))
    df = judge(df, [*checks, *declared_checks(df, shape.silver)])

    value_of = _value_columns(df, shape)
    attributes = shape.attributes
    identity = [value_of[k] for k in shape.identity] + (["v_updated_at"] if shape.versioned else [])
    content = {value_of[a]: a for a in attributes if value_of[a] not in identity}
    # Master data is deduplicated within an arrival day (a record re-sent on a later day is
    # that day's change too), so any range of days is cleaned in one pass.
    classified = dedup(df, ["_arrival_date", *identity], ("_source_file", "_source_line"), content)
    return split_outputs(classified, shape.silver, batch_id=batch_id)


# A Silver change record that deletes its key; Bronze rows carry it as `_is_deleted` (none of the
# landing zone's do: a file's record is never a deletion).
DELETED = "is_deleted"


def _deleted(bronze: DataFrame) -> str:
    return f"coalesce(_{DELETED}, false) AS {DELETED}" if f"_{DELETED}" in bronze.columns else f"false AS {DELETED}"


def _value_columns(df: DataFrame, shape: _Shape) -> dict[str, str]:
    """Each Silver column → the classified column holding its typed value."""
    return {c.name: (f"v_{c.name}" if f"v_{c.name}" in df.columns else c.name) for c in shape.silver.columns}


def split_outputs(classified: DataFrame, spec: TableSpec, *, batch_id: str) -> SplitResult:
    """The Silver table `spec`, violations and duplicates of one refinement's classification."""
    shape = _Shape(spec)
    value_of = _value_columns(classified, shape)
    accepted = classified.filter("_rule IS NULL AND NOT _duplicate").selectExpr(
        *[f"{value_of[a]} AS {a}" for a in shape.attributes],
        "_flags AS quality_flags",
        "_extra AS extra_attributes",
        "_source",
        "_arrival_date",
        f"{sql_string(batch_id)} AS _batch_id",
    )
    return SplitResult(
        accepted=conform(accepted, shape.silver),
        violations=violation_rows(classified, batch_id=batch_id),
        duplicates=duplicate_rows(classified),
        classified=classified,
        spec=spec,
    )


def clean_inventory(bronze: DataFrame, known_keys: DataFrame, *, lateness_days: int, batch_id: str) -> SplitResult:
    """Bronze inventory snapshots → Silver inventory (one row per store, product and day);
    stores and products must be known by the snapshot's arrival + L (`known_keys`)."""
    return _clean(bronze, _Shape(SILVER_INVENTORY), batch_id=batch_id, known=known_keys, lateness_days=lateness_days)
