"""The table registry: every fact about every lakehouse table and source, declared once.

Assets, checks, Delta schemas, table metadata, the stages' jobs, the landing-zone sources, the
Silver refinements of master data, column lineage and the bench's Gold comparison are all
derived from these entries (the functions at the end). A new table is one `TableSpec` here
plus its transformation function.

Longer than the project's usual module: it is a declaration table, one entry per table, and
splitting it would scatter what it exists to keep in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import Enum

import pyarrow as pa


class Layer(str, Enum):
    """A Medallion layer, and the policy its tables share."""

    BRONZE = "bronze"
    QUARANTINE = "quarantine"
    SILVER = "silver"
    GOLD = "gold"

    @property
    def raw(self) -> bool:
        """Records as the sources sent them, as text: append-only, no value rules."""
        return self is Layer.BRONZE

    @property
    def started_by_sensors(self) -> bool:
        """Materialized when sources deliver (sensors), not when inputs update (automation)."""
        return self is Layer.BRONZE

    @property
    def blocking_checks(self) -> bool:
        """A failed key or value check stops the tables downstream."""
        return self in (Layer.SILVER, Layer.GOLD)

    @property
    def holds_raw_pii(self) -> bool:
        """Tables keep personal data as the sources sent it (never granted to analysts)."""
        return self in (Layer.BRONZE, Layer.SILVER, Layer.QUARANTINE)

    @property
    def for_analysts(self) -> bool:
        return self is Layer.GOLD


class Partitioning(str, Enum):
    """Which calendar a table's daily partitions follow (SPEC §4)."""

    ARRIVAL_DATE = "arrival_date"  # the day a file landed or an offset range was read
    EVENT_DATE = "event_date"  # the business day of the transaction


@dataclass(frozen=True)
class Column:
    name: str
    # Spark SQL type name: string, int, bigint, double, boolean, date, timestamp, binary, decimal(p,s), array<t>
    type: str
    nullable: bool = True
    description: str = ""
    # Column lineage: the (table, column) pairs a derived column is computed from.
    derived_from: tuple[tuple[TableSpec, str], ...] = ()
    # Personal data: masked for everyone but data engineers and the pipeline where it reaches Gold
    # (`lib/deployment/governance/policies.py`).
    pii: bool = False


@dataclass(frozen=True)
class LandingSource:
    """A landing-zone folder whose files a Bronze table takes in."""

    folder: str
    formats: str  # as a person reads it: "CSV", "CSV or JSON Lines"
    # Columns a CSV header must name for its lines to mean anything; a header without them makes
    # every line of the file a `malformed_row`.
    key_fields: tuple[str, ...]


@dataclass(frozen=True)
class View:
    """A serving shape: a table that is one SELECT over other registered tables.

    Where the engine names tables in a catalog (delta-spark: Unity Catalog, Spark's session
    catalog locally) it is a catalog view of that SELECT; elsewhere (delta-rs) the SELECT's rows
    are written as a Delta table of the same name and schema. `select` is Spark SQL naming each
    table it reads as `{name}` (its registry name); `rows_of` is the table whose rows it serves
    one for one (`where` filters them), which its `serves_its_source` check counts against.
    """

    reads: tuple[TableSpec, ...]
    select: str
    rows_of: TableSpec
    where: str | None = None

    def __post_init__(self) -> None:
        named = set(re.findall(r"\{(\w+)\}", self.select))
        known = {t.name for t in self.reads}
        if named != known or self.rows_of not in self.reads:
            raise ValueError(f"a view's SELECT names {sorted(named)}, it declares it reads {sorted(known)}")

    def sql(self, names: dict[str, str]) -> str:
        """The SELECT with each table it reads named as `names` says (registry name -> SQL name)."""
        return self.select.format(**names)


@dataclass(frozen=True, eq=False)  # registry entries are singletons: identity is equality
class TableSpec:
    layer: Layer
    name: str
    grain: str
    partitioning: Partitioning
    partition_column: str
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]
    description: str = ""
    # Columns whose values legitimately differ between two runs over the same input
    # (run ids, wall-clock times); excluded from idempotency comparisons.
    volatile_columns: tuple[str, ...] = ()
    # Columns that must never be negative / must hold one of a set of values.
    non_negative: tuple[str, ...] = ()
    accepted_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Coded columns whose values outside the list are kept and flagged (`unexpected_value`, a
    # warn-level rule), not refused: a new category is news, not bad data.
    expected_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # A rebuilt table is recomputed whole by every run (dimensions built from the full change
    # history) and replaced in one commit; all others overwrite only their own partition.
    rebuild: bool = False
    # With `rebuild`: a run changes only the rows of the keys its days touched, re-derived from
    # their inputs and written as a MERGE on the primary key (`TableOutput.deletes`); a run
    # tagged `retail/full_refresh=true` rebuilds the table whole, the reference both must equal.
    by_key: bool = False
    # The stage whose job materializes the table, and the one whose job runs its checks when
    # that is another (`lib/registry/stages.py`).
    stage: str = ""
    checked_in: str | None = None
    # Bronze: the landing-zone folder it ingests (None for the Kafka stream and the database).
    landing: LandingSource | None = None
    # Silver master data and inventory: the Bronze table they type, validate and deduplicate,
    # and the columns that must name a known master record (column -> Silver master table).
    refines: TableSpec | None = None
    references: tuple[tuple[str, TableSpec], ...] = ()
    # Serving shapes (Gold for BI): the SELECT the table is, over other tables.
    view: View | None = None

    @property
    def key(self) -> str:
        return f"{self.layer.value}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.key} has no column {name!r}")

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, arrow_type(c.type), nullable=c.nullable) for c in self.columns])

    def spark_ddl(self) -> str:
        return ", ".join(f"`{c.name}` {c.type}" for c in self.columns)

    @property
    def business_columns(self) -> list[str]:
        """The columns that carry the record's content (lineage and audit columns aside)."""
        return [c.name for c in self.columns if c.name not in LINEAGE_COLUMNS and not c.name.startswith("_")]

    @property
    def identity(self) -> tuple[str, ...]:
        """The business key without the version (`updated_at`) of change records."""
        return tuple(k for k in self.primary_key if k != "updated_at")

    @property
    def versioned(self) -> bool:
        """Change records: one row per version of a business key, ordered by `updated_at`."""
        return "updated_at" in self.primary_key

    @property
    def attributes(self) -> list[str]:
        """A master record's descriptive columns: its business columns without key and version."""
        return [c for c in self.business_columns if c not in self.identity and c != "updated_at"]

    def catalog_name(self, catalog: str, env: str) -> str:
        """Unity Catalog three-part name, `{catalog}.{env}_{layer}.{table}` (SPEC §3)."""
        return f"{catalog}.{catalog_schema(self.layer, env)}.{self.name}"


def catalog_schema(layer: Layer, env: str) -> str:
    """Unity Catalog schema of a layer in one deployment environment: `{env}_{layer}`."""
    if not env or not env.replace("_", "").isalnum():
        raise ValueError(f"deployment environment name must be alphanumeric (underscores allowed), got {env!r}")
    return f"{env.lower()}_{layer.value}"


def arrow_type(spark_type: str) -> pa.DataType:
    t = spark_type.strip().lower()
    simple = {
        "string": pa.string(),
        "int": pa.int32(),
        "bigint": pa.int64(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        # Delta stores timestamps as UTC microseconds; Spark reads them back with tz=UTC.
        "timestamp": pa.timestamp("us", tz="UTC"),
        "binary": pa.binary(),
    }
    if t in simple:
        return simple[t]
    if t.startswith("array<") and t.endswith(">"):
        return pa.list_(arrow_type(t[len("array<") : -1]))
    if t.startswith("decimal(") and t.endswith(")"):
        precision, scale = (int(x) for x in t[len("decimal(") : -1].split(","))
        return pa.decimal128(precision, scale)
    raise ValueError(f"unsupported column type {spark_type!r}")


# ---------------------------------------------------------------------------------------------
# Shared column groups
# ---------------------------------------------------------------------------------------------

ARRIVAL_DATE = Column(
    "_arrival_date", "date", False, "Day the record arrived (file landed / offsets read); the partition."
)
INGEST_AUDIT = (
    Column(
        "_source",
        "string",
        False,
        "Where the record came from: `path:line` for files, `topic/partition/offset` for Kafka.",
    ),
    Column("_raw_record", "string", False, "The original record as text (non-UTF-8 bytes backslash-escaped)."),
    Column("_raw_bytes", "binary", True, "The exact original bytes, kept only when they are not valid UTF-8."),
    Column(
        "_parse_error",
        "string",
        True,
        "Ingest rule the record broke when it could not be parsed at all; null when parsed.",
    ),
    Column("_parse_reason", "string", True, "Readable explanation of `_parse_error`."),
    Column(
        "_extra",
        "string",
        True,
        "JSON object of fields the source sent that the contract does not name yet (schema evolution).",
    ),
    Column("_ingested_at", "timestamp", False, "When the ingesting run wrote the record."),
    Column("_batch_id", "string", False, "Dagster run id of the ingesting run."),
    ARRIVAL_DATE,
)
FILE_AUDIT = (
    Column("_source_file", "string", False, "Landing-zone path relative to the landing root."),
    Column("_source_line", "bigint", False, "1-based physical line number in the file (0 for a whole-file record)."),
)
SILVER_LINEAGE = (
    Column(
        "quality_flags",
        "array<string>",
        False,
        "Warn-level rules the record broke: kept, flagged (`lib/registry/rules.py`). `unknown_store`, "
        "`unknown_product`, `unknown_customer`: keyed in Gold to an inferred member until its master record arrives.",
    ),
    Column("extra_attributes", "string", True, "JSON object of unannounced source fields, carried forward."),
    Column("_source", "string", False, "Bronze `_source` of the record this row came from."),
    Column("_arrival_date", "date", False, "Arrival partition of the Bronze record."),
    Column("_batch_id", "string", False, "Dagster run id that wrote this row."),
)
VOLATILE = ("_ingested_at", "_batch_id", "_processed_at")
LINEAGE_COLUMNS = tuple(c.name for c in SILVER_LINEAGE)

SALES_FIELDS = (
    "transaction_id",
    "line_number",
    "event_time",
    "store_id",
    "product_id",
    "customer_id",
    "quantity",
    "unit_price",
    "discount",
    "payment_method",
)
CUSTOMER_FIELDS = (
    "customer_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "city",
    "country",
    "birth_date",
    "loyalty_tier",
    "updated_at",
)
PRODUCT_FIELDS = ("product_id", "name", "category", "brand", "unit_cost", "list_price", "status", "updated_at")
STORE_FIELDS = ("store_id", "name", "city", "region", "format", "opened_on", "status", "updated_at")
INVENTORY_FIELDS = ("snapshot_date", "store_id", "product_id", "on_hand_qty")
POS_EVENT_FIELDS = (
    "schema_version",
    "transaction_id",
    "event_time",
    "store_id",
    "customer_id",
    "payment_method",
    "lines",
)

PAYMENT_METHODS = ("cash", "card", "mobile", "gift_card")
LOYALTY_TIERS = ("none", "silver", "gold", "platinum")
PRODUCT_STATUSES = ("active", "discontinued")
PRODUCT_CATEGORIES = (
    "Bakery",
    "Dairy",
    "Produce",
    "Beverages",
    "Snacks",
    "Pantry",
    "Frozen",
    "Household",
    "Personal Care",
    "Electronics",
)
STORE_STATUSES = ("open", "closed", "renovating")
STORE_FORMATS = ("hypermarket", "supermarket", "express", "online")
# How a sales line reached the lakehouse: a POS batch file, the POS event stream, or the web shop's
# orders in the operational database.
CHANNELS = ("store_file", "pos_stream", "online")

KAFKA_TOPIC = "retail.pos.transactions"
# The operational database's schema, the business tables its change capture records, their ops.
DATABASE_SCHEMA = "orders"
CAPTURED_TABLES = ("customers", "online_orders", "order_lines")
CHANGE_OPS = ("I", "U", "D")


def _raw_columns(fields: tuple[str, ...]) -> tuple[Column, ...]:
    return tuple(Column(f, "string", True, f"`{f}` exactly as the source sent it.") for f in fields)


def _bronze(name: str, grain: str, fields: tuple[str, ...], description: str, landing: LandingSource) -> TableSpec:
    return TableSpec(
        layer=Layer.BRONZE,
        name=name,
        grain=grain,
        partitioning=Partitioning.ARRIVAL_DATE,
        partition_column="_arrival_date",
        primary_key=("_source",),
        columns=_raw_columns(fields) + FILE_AUDIT + INGEST_AUDIT,
        description=description,
        volatile_columns=VOLATILE,
        stage="ingest_bronze",
        landing=landing,
    )


# ---------------------------------------------------------------------------------------------
# Bronze
# ---------------------------------------------------------------------------------------------

BRONZE_SALES_FILES = _bronze(
    "sales_files",
    "one row per physical line of a POS batch export file",
    SALES_FIELDS,
    "POS batch exports from the landing zone `sales/` folder, append-only, original line kept.",
    LandingSource("sales", "CSV", ("transaction_id", "line_number")),
)
BRONZE_CUSTOMERS = _bronze(
    "customers",
    "one row per customer change record line",
    CUSTOMER_FIELDS,
    "Customer change records from the landing zone `customers/` folder.",
    LandingSource("customers", "CSV or JSON Lines", ("customer_id",)),
)
BRONZE_PRODUCTS = _bronze(
    "products",
    "one row per product change record line",
    PRODUCT_FIELDS,
    "Product change records from the landing zone `products/` folder.",
    LandingSource("products", "CSV or JSON Lines", ("product_id",)),
)
BRONZE_STORES = _bronze(
    "stores",
    "one row per store change record line",
    STORE_FIELDS,
    "Store change records from the landing zone `stores/` folder.",
    LandingSource("stores", "CSV or JSON Lines", ("store_id",)),
)
BRONZE_INVENTORY = _bronze(
    "inventory",
    "one row per inventory snapshot line",
    INVENTORY_FIELDS,
    "Daily on-hand inventory snapshots from the landing zone `inventory/` folder.",
    LandingSource("inventory", "CSV", ("snapshot_date", "store_id", "product_id")),
)
BRONZE_POS_TRANSACTIONS = TableSpec(
    layer=Layer.BRONZE,
    name="pos_transactions",
    grain="one row per Kafka message (one POS transaction event)",
    partitioning=Partitioning.ARRIVAL_DATE,
    partition_column="_arrival_date",
    primary_key=("_source",),
    columns=(
        *_raw_columns(("schema_version", "transaction_id", "event_time", "store_id", "customer_id", "payment_method")),
        Column("lines", "string", True, "The event's `lines` array as JSON text."),
        Column("_topic", "string", False, "Kafka topic."),
        Column("_partition", "int", False, "Kafka partition."),
        Column("_offset", "bigint", False, "Kafka offset."),
        Column("_kafka_timestamp", "timestamp", True, "Kafka record timestamp."),
        *INGEST_AUDIT,
    ),
    description=f"Point-of-sale events read from Kafka topic `{KAFKA_TOPIC}` in exact offset ranges.",
    volatile_columns=VOLATILE,
    stage="ingest_pos_stream",
    # One run per arrival day in order; the next stage checks every Bronze table at once.
    checked_in="ingest_bronze",
)

BRONZE_ORDERS_CHANGES = TableSpec(
    layer=Layer.BRONZE,
    name="orders_changes",
    grain="one row per change record of the operational database (an insert, update or delete of one row)",
    partitioning=Partitioning.ARRIVAL_DATE,
    partition_column="_arrival_date",
    primary_key=("_source",),
    columns=(
        Column("change_id", "bigint", False, "Position of the change in the change table's total order."),
        Column("table_name", "string", False, f"Business table changed: {', '.join(CAPTURED_TABLES)}."),
        Column("op", "string", False, "I (insert), U (update) or D (delete)."),
        Column("row_data", "string", False, "The new row (I, U) or the deleted row (D), as JSON text."),
        Column("changed_at", "timestamp", False, "When the database recorded the change."),
        *INGEST_AUDIT,
    ),
    description=f"Online orders, order lines and CRM customers changing in the operational database (schema "
    f"`{DATABASE_SCHEMA}`): every insert, update and delete its change capture recorded, read through JDBC in exact "
    "change_id ranges; the high-water mark is the highest change_id committed here.",
    volatile_columns=VOLATILE,
    # Its own stage, checked there too: a deployment without a database leaves the stage out,
    # and no other stage then checks a table that never exists there.
    stage="ingest_database",
    # No Silver table refines the online orders yet.
)

# ---------------------------------------------------------------------------------------------
# Quarantine
# ---------------------------------------------------------------------------------------------

QUARANTINE_COLUMNS = (
    Column("source_table", "string", False, "Bronze table the record came from, e.g. `bronze.sales_files`."),
    Column("_source", "string", False, "Bronze `_source` of the record (file:line or topic/partition/offset)."),
    Column("record_key", "string", True, "Business key of the record when it could be read, e.g. `T000123:2`."),
    Column("rule", "string", False, "Name of the rule the record broke."),
    Column("reason", "string", False, "Readable explanation a person can act on."),
    Column("original_record", "string", False, "The full original record as text."),
    Column("original_bytes", "binary", True, "Exact original bytes when they are not valid UTF-8."),
    Column("event_date", "date", True, "Business date of the record when known."),
    Column("_arrival_date", "date", False, "Arrival partition of the record."),
    Column("_batch_id", "string", False, "Dagster run id that wrote the row."),
)
QUARANTINE_INGEST_REJECTS = TableSpec(
    layer=Layer.QUARANTINE,
    name="ingest_rejects",
    grain="one row per source record that could not be parsed at all",
    partitioning=Partitioning.ARRIVAL_DATE,
    partition_column="_arrival_date",
    primary_key=("source_table", "_source"),
    columns=QUARANTINE_COLUMNS,
    description="Records no parser could read: malformed CSV rows, invalid JSON, non-UTF-8 bytes, empty files.",
    volatile_columns=VOLATILE,
    stage="ingest_bronze",
)
QUARANTINE_RULE_VIOLATIONS = TableSpec(
    layer=Layer.QUARANTINE,
    name="rule_violations",
    grain="one row per parsed record (or transaction line) that failed a Silver rule",
    partitioning=Partitioning.ARRIVAL_DATE,
    partition_column="_arrival_date",
    primary_key=("source_table", "_source", "record_key", "rule"),
    columns=(
        *QUARANTINE_COLUMNS,
        Column(
            "replayed_at",
            "timestamp",
            True,
            "When the record left quarantine: a later run found it passing today's rules and master data "
            "(it is in Silver since). Null while it is quarantined.",
        ),
        Column("replayed_by", "string", True, "Dagster run id of the screening run that released it."),
    ),
    description="Parsed records rejected by a Silver rule of severity drop (bad values, missing keys, late and future "
    "events), with the history of those released since (`replayed_at`).",
    volatile_columns=VOLATILE,
    stage="screen_arrivals",
)
QUARANTINE_DUPLICATES = TableSpec(
    layer=Layer.QUARANTINE,
    name="duplicates",
    grain="one row per parsed record (or transaction line) counted as a duplicate of a copy kept earlier",
    partitioning=Partitioning.ARRIVAL_DATE,
    partition_column="_arrival_date",
    primary_key=("source_table", "_source", "record_key"),
    columns=(
        Column("source_table", "string", False, "Bronze table the record came from, e.g. `bronze.sales_files`."),
        Column(
            "_source", "string", False, "Bronze `_source` of the dropped copy (file:line or topic/partition/offset)."
        ),
        Column("record_key", "string", False, "Business key both copies carry, e.g. `T000123:2`."),
        Column("kept_source", "string", False, "Bronze `_source` of the copy that was kept (in Silver)."),
        Column("kept_arrival_date", "date", False, "Arrival date of the kept copy."),
        Column("event_date", "date", True, "Business date of the record."),
        Column("_arrival_date", "date", False, "Arrival partition of the dropped copy."),
        Column("_batch_id", "string", False, "Dagster run id that wrote the row."),
    ),
    description="The ledger of exact re-sends: every record counted as a duplicate, with the copy that was kept. "
    "The conservation check counts these rows.",
    volatile_columns=VOLATILE,
    stage="screen_arrivals",
)

# ---------------------------------------------------------------------------------------------
# Silver
# ---------------------------------------------------------------------------------------------

_SALES_LINE_COLUMNS = (
    Column("transaction_id", "string", False),
    Column("line_number", "int", False),
    Column("event_time", "timestamp", False, "Event instant in UTC."),
    Column("event_date", "date", False, "Business date: the calendar date of `event_time` in the store's own offset."),
    Column("store_id", "string", False),
    Column("product_id", "string", False),
    Column("customer_id", "string", True, "Null for an anonymous customer."),
    Column("quantity", "int", False, "Units; always positive (returns store returned units)."),
    Column("unit_price", "decimal(12,2)", False),
    Column("discount", "decimal(5,4)", False, "Fraction 0..1."),
    Column("gross_amount", "decimal(18,2)", False, "quantity × unit_price."),
    Column("discount_amount", "decimal(18,2)", False, "gross_amount × discount, rounded half-up to cents."),
    Column("net_amount", "decimal(18,2)", False, "gross_amount − discount_amount."),
    Column("payment_method", "string", True),
    Column(
        "channel",
        "string",
        False,
        "`store_file` (batch export), `pos_stream` (Kafka) or `online` (the web shop's orders, operational database).",
    ),
    *SILVER_LINEAGE,
)
SILVER_SALES_LINES = TableSpec(
    layer=Layer.SILVER,
    name="sales_lines",
    grain="one row per sold transaction line (quantity > 0), batch and stream unified",
    partitioning=Partitioning.EVENT_DATE,
    partition_column="event_date",
    primary_key=("transaction_id", "line_number"),
    columns=_SALES_LINE_COLUMNS,
    description="Typed, validated, deduplicated sales lines.",
    volatile_columns=VOLATILE,
    non_negative=("quantity", "unit_price", "gross_amount", "discount_amount", "net_amount"),
    accepted_values={"channel": CHANNELS},
    expected_values={"payment_method": PAYMENT_METHODS},
    stage="refine_sales",
)
SILVER_RETURNS = TableSpec(
    layer=Layer.SILVER,
    name="returns",
    grain="one row per returned transaction line (source quantity < 0), amounts stored positive",
    partitioning=Partitioning.EVENT_DATE,
    partition_column="event_date",
    primary_key=("transaction_id", "line_number"),
    columns=_SALES_LINE_COLUMNS,
    description="Typed, validated, deduplicated return lines; quantity and amounts are positive returned values.",
    volatile_columns=VOLATILE,
    non_negative=("quantity", "unit_price", "gross_amount", "discount_amount", "net_amount"),
    accepted_values={"channel": CHANNELS},
    expected_values={"payment_method": PAYMENT_METHODS},
    stage="refine_sales",
)


def _silver_master(
    name: str, key: str, typed: tuple[Column, ...], grain: str, description: str, refines: TableSpec, **kw
) -> TableSpec:
    return TableSpec(
        layer=Layer.SILVER,
        name=name,
        grain=grain,
        partitioning=Partitioning.ARRIVAL_DATE,
        partition_column="_arrival_date",
        primary_key=(key, "updated_at"),
        columns=(
            *typed,
            Column("updated_at", "timestamp", False, "When the change happened at the source (UTC)."),
            *SILVER_LINEAGE,
        ),
        description=description,
        volatile_columns=VOLATILE,
        stage="refine_master_data",
        refines=refines,
        **kw,
    )


SILVER_CUSTOMERS = _silver_master(
    "customers",
    "customer_id",
    (
        Column("customer_id", "string", False),
        Column("first_name", "string"),
        Column("last_name", "string"),
        Column("email", "string", True, "Raw e-mail (PII; never copied to Gold)."),
        Column("phone", "string", True, "Raw phone (PII; never copied to Gold)."),
        Column("city", "string"),
        Column("country", "string"),
        Column("birth_date", "date"),
        Column("loyalty_tier", "string"),
        Column(
            "is_deleted",
            "boolean",
            False,
            "A deletion: the CRM erased the customer at `updated_at` (its attributes are the row as deleted); "
            "false for every other change record.",
        ),
    ),
    "one row per distinct customer change record (a deletion included); null attribute = unchanged",
    "Typed, validated, deduplicated customer change records: the landing zone's files and the CRM's inserts, "
    "updates and deletes (`bronze.orders_changes`, table `customers`).",
    BRONZE_CUSTOMERS,
    expected_values={"loyalty_tier": LOYALTY_TIERS},
)
SILVER_PRODUCTS = _silver_master(
    "products",
    "product_id",
    (
        Column("product_id", "string", False),
        Column("name", "string"),
        Column("category", "string"),
        Column("brand", "string"),
        Column("unit_cost", "decimal(12,2)"),
        Column("list_price", "decimal(12,2)"),
        Column("status", "string"),
    ),
    "one row per distinct product change record; null attribute = unchanged",
    "Typed, validated, deduplicated product change records.",
    BRONZE_PRODUCTS,
    non_negative=("unit_cost", "list_price"),
    expected_values={"status": PRODUCT_STATUSES, "category": PRODUCT_CATEGORIES},
)
SILVER_STORES = _silver_master(
    "stores",
    "store_id",
    (
        Column("store_id", "string", False),
        Column("name", "string"),
        Column("city", "string"),
        Column("region", "string"),
        Column("format", "string"),
        Column("opened_on", "date"),
        Column("status", "string"),
    ),
    "one row per distinct store change record; null attribute = unchanged",
    "Typed, validated, deduplicated store change records.",
    BRONZE_STORES,
    accepted_values={"format": STORE_FORMATS},
    expected_values={"status": STORE_STATUSES},
)
SILVER_INVENTORY = TableSpec(
    layer=Layer.SILVER,
    name="inventory",
    grain="one row per store, product and snapshot date",
    partitioning=Partitioning.ARRIVAL_DATE,
    partition_column="_arrival_date",
    primary_key=("snapshot_date", "store_id", "product_id"),
    columns=(
        Column("snapshot_date", "date", False),
        Column("store_id", "string", False),
        Column("product_id", "string", False),
        Column("on_hand_qty", "int", False),
        *SILVER_LINEAGE,
    ),
    description="Typed, validated, deduplicated daily on-hand snapshots.",
    volatile_columns=VOLATILE,
    non_negative=("on_hand_qty",),
    stage="screen_arrivals",
    refines=BRONZE_INVENTORY,
    references=(("store_id", SILVER_STORES), ("product_id", SILVER_PRODUCTS)),
)

# ---------------------------------------------------------------------------------------------
# Gold
# ---------------------------------------------------------------------------------------------

UNKNOWN_MEMBER_SK = -1
UNKNOWN_MEMBER_ID = "__unknown__"

# A business key sales referenced before any master record of it arrived gets an inferred member:
# its row, attributes unknown, is the one the key's first master record fills in, under the same
# surrogate key, so the fact lines keyed to it never change.
_INFERRED = (
    Column(
        "is_inferred",
        "boolean",
        False,
        "Inferred member: sales named the key before any master record of it arrived; attributes unknown until one does.",
    ),
    Column(
        "inferred_since",
        "date",
        True,
        "Arrival date of the first sales line that named the key with no master record; kept once the record arrives.",
    ),
)
_SCD2 = (
    *_INFERRED,
    Column(
        "valid_from",
        "timestamp",
        False,
        "Start of validity (inclusive), the change's `updated_at`; 1900-01-01 for an inferred member.",
    ),
    Column("valid_to", "timestamp", True, "End of validity (exclusive); null for the current version."),
    Column("is_current", "boolean", False),
    Column("version", "int", False, "1-based version number per business key, by `updated_at`."),
    Column("_processed_at", "timestamp", False),
)
GOLD_DIM_CUSTOMER = TableSpec(
    layer=Layer.GOLD,
    name="dim_customer",
    grain="one row per customer version (SCD type 2) plus the unknown member",
    partitioning=Partitioning.ARRIVAL_DATE,
    partition_column="_arrival_date",
    primary_key=("customer_sk",),
    columns=(
        Column(
            "customer_sk",
            "bigint",
            False,
            "Deterministic surrogate key: hash of customer_id for the version holding the key's first-arrived "
            "record (or its inferred member), of customer_id and valid_from for the others; -1 = unknown.",
        ),
        Column("customer_id", "string", False),
        Column("first_name", "string", pii=True),
        Column("last_name", "string", pii=True),
        Column("email_hash", "string", True, "SHA-256 of the lower-cased e-mail.", ((SILVER_CUSTOMERS, "email"),)),
        Column(
            "email_masked",
            "string",
            True,
            "E-mail with the local part masked, e.g. `j***@example.com`.",
            ((SILVER_CUSTOMERS, "email"),),
        ),
        Column("phone_hash", "string", True, "SHA-256 of the phone digits.", ((SILVER_CUSTOMERS, "phone"),)),
        Column(
            "phone_masked",
            "string",
            True,
            "Phone with all but the last two digits masked.",
            ((SILVER_CUSTOMERS, "phone"),),
        ),
        Column("city", "string", pii=True),
        Column("country", "string"),
        Column("birth_date", "date", pii=True),
        Column("loyalty_tier", "string"),
        *_SCD2,
        Column(
            "is_deleted",
            "boolean",
            False,
            "The CRM deleted the customer at `valid_to`: the last version, closed, with no current version after it.",
        ),
        Column("_arrival_date", "date", False, "Arrival partition of the run that last wrote the row."),
    ),
    description=(
        "Customer dimension with full history. A run re-derives the history of the keys whose change records "
        "arrived on its days (late, out-of-order changes slot in) from every Silver record of those keys, so any "
        "run order gives the same table as a rebuild from all of them. A deletion closes the key's version valid "
        "at it and marks it `is_deleted`."
    ),
    volatile_columns=("_processed_at", "_arrival_date"),
    rebuild=True,
    by_key=True,
    stage="build_dimensions",
)
GOLD_DIM_PRODUCT = TableSpec(
    layer=Layer.GOLD,
    name="dim_product",
    grain="one row per product version (SCD type 2) plus the unknown member",
    partitioning=Partitioning.ARRIVAL_DATE,
    partition_column="_arrival_date",
    primary_key=("product_sk",),
    columns=(
        Column(
            "product_sk",
            "bigint",
            False,
            "Deterministic surrogate key: hash of product_id for the version holding the key's first-arrived "
            "record (or its inferred member), of product_id and valid_from for the others; -1 = unknown.",
        ),
        Column("product_id", "string", False),
        Column("name", "string"),
        Column("category", "string"),
        Column("brand", "string"),
        Column("unit_cost", "decimal(12,2)"),
        Column("list_price", "decimal(12,2)"),
        Column("status", "string"),
        *_SCD2,
        Column("_arrival_date", "date", False, "Arrival partition of the run that last wrote the row."),
    ),
    description=(
        "Product dimension with full history. A run re-derives the history of the keys whose change records "
        "arrived on its days (late, out-of-order changes slot in) from every Silver record of those keys, so any "
        "run order gives the same table as a rebuild from all of them."
    ),
    volatile_columns=("_processed_at", "_arrival_date"),
    rebuild=True,
    by_key=True,
    stage="build_dimensions",
)
GOLD_DIM_STORE = TableSpec(
    layer=Layer.GOLD,
    name="dim_store",
    grain="one row per store (SCD type 1, latest attributes) plus the unknown member",
    partitioning=Partitioning.ARRIVAL_DATE,
    partition_column="_arrival_date",
    primary_key=("store_sk",),
    columns=(
        Column(
            "store_sk",
            "bigint",
            False,
            "Deterministic surrogate key: hash of store_id (inferred members too); -1 = unknown.",
        ),
        Column("store_id", "string", False),
        Column("name", "string"),
        Column("city", "string"),
        Column("region", "string"),
        Column("format", "string"),
        Column("opened_on", "date"),
        Column("status", "string"),
        Column("updated_at", "timestamp", True, "`updated_at` of the latest change applied."),
        *_INFERRED,
        Column("_processed_at", "timestamp", False),
        Column("_arrival_date", "date", False, "Arrival partition of the run that last wrote the row."),
    ),
    description=(
        "Store dimension, overwritten in place with the latest value of each attribute; a run rewrites the "
        "stores whose change records arrived on its days."
    ),
    volatile_columns=("_processed_at", "_arrival_date"),
    rebuild=True,
    by_key=True,
    stage="build_dimensions",
)
GOLD_DIM_DATE = TableSpec(
    layer=Layer.GOLD,
    name="dim_date",
    grain="one row per calendar day",
    partitioning=Partitioning.EVENT_DATE,
    partition_column="date",
    primary_key=("date_sk",),
    columns=(
        Column("date_sk", "int", False, "yyyymmdd."),
        Column("date", "date", False),
        Column("year", "int", False),
        Column("quarter", "int", False),
        Column("month", "int", False),
        Column("month_name", "string", False),
        Column("day_of_month", "int", False),
        Column("day_of_week", "int", False, "ISO: Monday = 1 … Sunday = 7."),
        Column("day_name", "string", False),
        Column("iso_week", "int", False),
        Column("is_weekend", "boolean", False),
    ),
    description="Calendar dimension.",
    stage="build_gold",
)
GOLD_FACT_SALES = TableSpec(
    layer=Layer.GOLD,
    name="fact_sales",
    grain="one row per transaction line, sales and returns",
    partitioning=Partitioning.EVENT_DATE,
    partition_column="event_date",
    primary_key=("transaction_id", "line_number", "line_type"),
    columns=(
        Column("transaction_id", "string", False),
        Column("line_number", "int", False),
        Column("line_type", "string", False, "`sale` or `return`."),
        Column("date_sk", "int", False),
        Column("event_time", "timestamp", False),
        Column("event_date", "date", False),
        Column(
            "customer_sk",
            "bigint",
            False,
            "Customer version valid at event_time (an inferred member before the customer's record arrives); -1 = anonymous.",
        ),
        Column(
            "product_sk",
            "bigint",
            False,
            "Product version valid at event_time (or its inferred member); -1 until the dimension holds the key.",
        ),
        Column("store_sk", "bigint", False, "The store (or its inferred member); -1 until the dimension holds it."),
        Column("customer_id", "string", True, "Degenerate business key (null = anonymous)."),
        Column("product_id", "string", False),
        Column("store_id", "string", False),
        Column("quantity", "int", False, "Signed units: negative for returns."),
        Column("unit_price", "decimal(12,2)", False),
        Column("gross_amount", "decimal(18,2)", False, "Signed: negative for returns."),
        Column("discount_amount", "decimal(18,2)", False, "Signed: negative for returns."),
        Column("net_amount", "decimal(18,2)", False, "Signed: negative for returns."),
        Column("payment_method", "string", True),
        Column("channel", "string", False),
        Column(
            "quality_flags",
            "array<string>",
            False,
            "The Silver line's warn-level rules (`unknown_product`: keyed to an inferred member, ...).",
        ),
        Column("_processed_at", "timestamp", False),
    ),
    description="Star-schema sales fact; dimension keys from a point-in-time join. A key with no master record yet "
    "maps to its inferred member, an anonymous customer to the unknown member: no line is ever dropped.",
    volatile_columns=("_processed_at",),
    accepted_values={"line_type": ("sale", "return")},
    stage="build_gold",
)


def _measure(
    name: str, type: str, description: str = "", *, nullable: bool = False, also: tuple[tuple[TableSpec, str], ...] = ()
) -> Column:
    """An aggregate column computed from the fact's columns (its lineage)."""
    return Column(
        name, type, nullable, description, derived_from=(*((GOLD_FACT_SALES, c) for c in _FACT_MEASURES[name]), *also)
    )


# Aggregate columns and the fact columns they sum or count.
_FACT_MEASURES = {
    "revenue": ("net_amount", "line_type"),
    "returns_amount": ("net_amount", "line_type"),
    "net_revenue": ("net_amount",),
    "transactions": ("transaction_id",),
    "units": ("quantity",),
    "units_sold": ("quantity",),
    "units_returned": ("quantity",),
    "unique_customers": ("customer_id",),
    "gross_margin": ("net_amount",),
    "net_spend": ("net_amount",),
    "orders": ("transaction_id", "line_type"),
}

GOLD_AGG_DAILY_STORE_SALES = TableSpec(
    layer=Layer.GOLD,
    name="agg_daily_store_sales",
    grain="one row per store, business day and sales channel",
    partitioning=Partitioning.EVENT_DATE,
    partition_column="event_date",
    primary_key=("event_date", "store_id", "channel"),
    columns=(
        Column("event_date", "date", False),
        Column("store_id", "string", False),
        Column(
            "channel",
            "string",
            False,
            "How the lines reached the lakehouse (`CHANNELS`).",
            ((GOLD_FACT_SALES, "channel"),),
        ),
        Column("store_sk", "bigint", False),
        _measure("revenue", "decimal(18,2)", "Net amount of sales lines."),
        _measure("returns_amount", "decimal(18,2)", "Net amount of return lines, positive."),
        _measure("net_revenue", "decimal(18,2)", "revenue − returns_amount."),
        _measure("transactions", "bigint", "Distinct transactions with at least one sales line."),
        _measure("units", "bigint", "Units sold (returns not subtracted)."),
        _measure("units_returned", "bigint"),
        _measure("unique_customers", "bigint", "Distinct identified customers."),
    ),
    description="Daily store sales per channel (the web shop's online orders apart from the tills').",
    stage="build_gold",
    accepted_values={"channel": CHANNELS},
    non_negative=("revenue", "returns_amount", "transactions", "units", "units_returned", "unique_customers"),
)
GOLD_AGG_PRODUCT_PERFORMANCE = TableSpec(
    layer=Layer.GOLD,
    name="agg_product_performance",
    grain="one row per product and business day",
    partitioning=Partitioning.EVENT_DATE,
    partition_column="event_date",
    primary_key=("event_date", "product_id"),
    columns=(
        Column("event_date", "date", False),
        Column("product_id", "string", False),
        Column("category", "string", True),
        _measure("units_sold", "bigint"),
        _measure("units_returned", "bigint"),
        _measure("revenue", "decimal(18,2)"),
        _measure("returns_amount", "decimal(18,2)"),
        _measure("net_revenue", "decimal(18,2)"),
        _measure(
            "gross_margin",
            "decimal(18,2)",
            "net_revenue − net units × unit_cost of the version valid at the sale.",
            nullable=True,
            also=((GOLD_DIM_PRODUCT, "unit_cost"),),
        ),
        _measure("transactions", "bigint"),
    ),
    description="Daily product performance.",
    stage="build_gold",
    non_negative=("units_sold", "units_returned", "revenue", "returns_amount", "transactions"),
)
GOLD_CUSTOMER_DAILY_VALUE = TableSpec(
    layer=Layer.GOLD,
    name="customer_daily_value",
    grain="one row per identified customer and business day with lines (sales or returns)",
    partitioning=Partitioning.EVENT_DATE,
    partition_column="event_date",
    primary_key=("event_date", "customer_id"),
    columns=(
        Column("event_date", "date", False),
        Column("customer_id", "string", False),
        _measure("net_spend", "decimal(18,2)", "Net amount of the customer's lines that day, returns subtracted."),
        _measure("orders", "bigint", "Distinct transactions with a sales line that day; 0: only returns."),
    ),
    description="What each identified customer spent on a business day (one row per customer and day with "
    "lines), the state `agg_customer_lifetime_value` is summed from: a day's run reads only that day of "
    "`fact_sales`.",
    stage="build_gold",
    non_negative=("orders",),
)


def _from_daily_value(name: str, type: str, description: str, *columns: str) -> Column:
    """A lifetime figure computed from `customer_daily_value`'s columns (its lineage)."""
    return Column(name, type, False, description, tuple((GOLD_CUSTOMER_DAILY_VALUE, c) for c in columns))


GOLD_AGG_CUSTOMER_LIFETIME_VALUE = TableSpec(
    layer=Layer.GOLD,
    name="agg_customer_lifetime_value",
    grain="one row per identified customer with an order, over every business day materialized",
    partitioning=Partitioning.EVENT_DATE,
    partition_column="last_active_date",
    primary_key=("customer_id",),
    columns=(
        Column("customer_id", "string", False),
        _from_daily_value(
            "total_spend", "decimal(18,2)", "Net amount of all the customer's lines, returns subtracted.", "net_spend"
        ),
        _from_daily_value(
            "orders",
            "bigint",
            "Transactions with a sales line, summed over the days (a transaction whose lines carry two business "
            "dates counts on each).",
            "orders",
        ),
        _from_daily_value("first_purchase", "date", "First business day with an order.", "event_date", "orders"),
        _from_daily_value("last_purchase", "date", "Last business day with an order.", "event_date", "orders"),
        _from_daily_value(
            "average_order_value", "decimal(18,2)", "total_spend / orders, rounded to cents.", "net_spend", "orders"
        ),
        _from_daily_value(
            "last_active_date",
            "date",
            "Last business day with any line of the customer's (sales or returns); the partition.",
            "event_date",
        ),
    ),
    description="Customer lifetime value, one row per identified customer with an order: lifetime figures over "
    "every business day materialized so far, so the table grows with customers, not with days. A day's run "
    "recomputes only the customers with lines that day (and those whose row names that day as first or last "
    "purchase or last activity) from their `customer_daily_value` rows and MERGEs them by customer: a late sale "
    "re-runs its day and its customer's figures, in whatever order days run. A customer left with only returns "
    "has no row.",
    rebuild=True,
    by_key=True,
    stage="build_gold",
    non_negative=("orders",),
)
GOLD_AGG_INVENTORY_COVER = TableSpec(
    layer=Layer.GOLD,
    name="agg_inventory_cover",
    grain="one row per store, product and snapshot day",
    partitioning=Partitioning.EVENT_DATE,
    partition_column="snapshot_date",
    primary_key=("snapshot_date", "store_id", "product_id"),
    columns=(
        Column("snapshot_date", "date", False),
        Column("store_id", "string", False),
        Column("product_id", "string", False),
        Column("on_hand_qty", "int", False),
        Column(
            "avg_daily_units_sold", "double", False, "Net units sold per day over the 7 days ending on snapshot_date."
        ),
        Column("days_of_cover", "double", True, "on_hand_qty / avg_daily_units_sold; null when nothing sold."),
    ),
    description="Inventory cover: how many days current stock lasts at the recent sales rate.",
    stage="build_gold",
    non_negative=("on_hand_qty",),
)

# ---------------------------------------------------------------------------------------------
# Serving shapes: what BI tools read, each one SELECT over the star schema
# ---------------------------------------------------------------------------------------------

# History columns a current snapshot leaves out: every row is the current version.
_HISTORY_ONLY = ("valid_to", "is_current", "version", "is_deleted")


def _current_snapshot(dimension: TableSpec) -> TableSpec:
    """The dimension's current version of every business key (the unknown member included)."""
    key = dimension.primary_key[0].removesuffix("_sk") + "_id"
    columns = tuple(
        replace(c, derived_from=((dimension, c.name),), description=c.description)
        for c in dimension.columns
        if c.name not in _HISTORY_ONLY
    )
    versioned = "is_current" in dimension.column_names
    where = "is_current" if versioned else None
    listed = ", ".join(f"`{c.name}`" for c in columns)
    return TableSpec(
        layer=Layer.GOLD,
        name=f"{dimension.name}_current",
        grain=f"one row per {key.removesuffix('_id')}: its current attributes (an inferred member's while it waits), plus the unknown member",
        partitioning=dimension.partitioning,
        partition_column=dimension.partition_column,
        primary_key=(key,),
        columns=columns,
        description=f"Current snapshot of `{dimension.key}` for BI: "
        + ("its current versions." if versioned else "the dimension as it stands (type 1 keeps only the latest)."),
        volatile_columns=dimension.volatile_columns,
        rebuild=True,
        stage=dimension.stage,
        view=View(
            reads=(dimension,),
            select=f"SELECT {listed} FROM {{{dimension.name}}}" + (f" WHERE {where}" if where else ""),
            rows_of=dimension,
            where=where,
        ),
    )


GOLD_DIM_CUSTOMER_CURRENT = _current_snapshot(GOLD_DIM_CUSTOMER)
GOLD_DIM_PRODUCT_CURRENT = _current_snapshot(GOLD_DIM_PRODUCT)
GOLD_DIM_STORE_CURRENT = _current_snapshot(GOLD_DIM_STORE)

# The dimension attributes the denormalized sales table carries, under the names it gives them:
# (dimension, its key in the fact, {dimension column: column name}). Personal data stays in the
# customer dimension, behind its masks.
_DENORMALIZED = (
    (
        GOLD_DIM_DATE,
        "date_sk",
        {c: c for c in ("year", "quarter", "month", "month_name", "day_of_week", "day_name", "iso_week", "is_weekend")},
    ),
    (
        GOLD_DIM_STORE,
        "store_sk",
        {"name": "store_name", "city": "store_city", "region": "store_region", "format": "store_format"},
    ),
    (
        GOLD_DIM_PRODUCT,
        "product_sk",
        {
            "name": "product_name",
            "category": "product_category",
            "brand": "product_brand",
            "unit_cost": "product_unit_cost",
            "list_price": "product_list_price",
        },
    ),
    (GOLD_DIM_CUSTOMER, "customer_sk", {"loyalty_tier": "customer_loyalty_tier", "country": "customer_country"}),
)


def _denormalized_sales() -> TableSpec:
    fact = GOLD_FACT_SALES
    kept = [c for c in fact.columns if c.name != "_processed_at"]
    joined = [
        (dimension, key, f"d{i}", dimension.column(source), name)
        for i, (dimension, key, attributes) in enumerate(_DENORMALIZED)
        for source, name in attributes.items()
    ]
    select = ",\n  ".join(
        [f"f.`{c.name}`" for c in kept]
        + [f"{alias}.`{source.name}` AS `{name}`" for _, _, alias, source, name in joined]
    )
    joins = "\n".join(
        f"LEFT JOIN {{{dimension.name}}} d{i} ON f.`{key}` = d{i}.`{key}`"
        for i, (dimension, key, _) in enumerate(_DENORMALIZED)
    )
    return TableSpec(
        layer=Layer.GOLD,
        name="sales_denormalized",
        grain="one row per transaction line, sales and returns (the fact's grain)",
        partitioning=fact.partitioning,
        partition_column=fact.partition_column,
        primary_key=fact.primary_key,
        columns=(
            *(replace(c, derived_from=((fact, c.name),)) for c in kept),
            *(
                Column(name, source.type, True, source.description, ((dimension, source.name),))
                for dimension, _, _, source, name in joined
            ),
        ),
        description="The sales fact with the attributes of the dimension versions valid at each sale (joined by "
        "surrogate key), for BI tools that want one wide table.",
        accepted_values=fact.accepted_values,
        stage=fact.stage,
        view=View(
            reads=(fact, *(d for d, _, _ in _DENORMALIZED)),
            select=f"SELECT\n  {select}\nFROM {{{fact.name}}} f\n{joins}",
            rows_of=fact,
        ),
    )


GOLD_SALES_DENORMALIZED = _denormalized_sales()

TABLES: tuple[TableSpec, ...] = (
    BRONZE_SALES_FILES,
    BRONZE_CUSTOMERS,
    BRONZE_PRODUCTS,
    BRONZE_STORES,
    BRONZE_INVENTORY,
    BRONZE_POS_TRANSACTIONS,
    BRONZE_ORDERS_CHANGES,
    QUARANTINE_INGEST_REJECTS,
    QUARANTINE_RULE_VIOLATIONS,
    QUARANTINE_DUPLICATES,
    SILVER_SALES_LINES,
    SILVER_RETURNS,
    SILVER_CUSTOMERS,
    SILVER_PRODUCTS,
    SILVER_STORES,
    SILVER_INVENTORY,
    GOLD_DIM_CUSTOMER,
    GOLD_DIM_PRODUCT,
    GOLD_DIM_STORE,
    GOLD_DIM_DATE,
    GOLD_FACT_SALES,
    GOLD_AGG_DAILY_STORE_SALES,
    GOLD_AGG_PRODUCT_PERFORMANCE,
    GOLD_CUSTOMER_DAILY_VALUE,
    GOLD_AGG_CUSTOMER_LIFETIME_VALUE,
    GOLD_AGG_INVENTORY_COVER,
    GOLD_DIM_CUSTOMER_CURRENT,
    GOLD_DIM_PRODUCT_CURRENT,
    GOLD_DIM_STORE_CURRENT,
    GOLD_SALES_DENORMALIZED,
)
TABLES_BY_KEY: dict[str, TableSpec] = {t.key: t for t in TABLES}


# ---------------------------------------------------------------------------------------------
# Derived lists: every module that needs a set of tables asks here.
# ---------------------------------------------------------------------------------------------


def tables_in(layer: Layer, tables: tuple[TableSpec, ...] = TABLES) -> tuple[TableSpec, ...]:
    return tuple(t for t in tables if t.layer is layer)


def landing_sources(tables: tuple[TableSpec, ...] = TABLES) -> dict[str, TableSpec]:
    """Landing-zone folders and the Bronze table each feeds."""
    return {t.landing.folder: t for t in tables if t.landing is not None}


def refinements(tables: tuple[TableSpec, ...] = TABLES) -> tuple[TableSpec, ...]:
    """Silver tables that type, validate and deduplicate one Bronze table of their own."""
    return tuple(t for t in tables if t.refines is not None)


def master_data(tables: tuple[TableSpec, ...] = TABLES) -> tuple[TableSpec, ...]:
    """Silver change records of the master data (customers, products, stores)."""
    return tuple(t for t in refinements(tables) if t.versioned)


def serving_shapes(tables: tuple[TableSpec, ...] = TABLES) -> tuple[TableSpec, ...]:
    """Tables that are one SELECT over others: catalog views where the engine has a catalog."""
    return tuple(t for t in tables if t.view is not None)


LANDING_SOURCES = landing_sources()


def table(key: str) -> TableSpec:
    try:
        return TABLES_BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown table {key!r}; known: {sorted(TABLES_BY_KEY)}") from None
