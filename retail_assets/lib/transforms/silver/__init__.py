"""Bronze → Silver: typing, validation, deduplication and the quarantine split.

Every function is pure Spark (no UDFs, no collect): DataFrames in, DataFrames out. Each Bronze
record ends in exactly one place (docs/architecture.md, "Where every record goes"):

- unparseable (Bronze `_parse_error`)      → `ingest_rejects` (`rejects.py`)
- parsed, fails a `drop` rule              → `violations`: the first rule by the precedence of
                                             `lib/registry/rules.py`, the reason lists them all
- parsed, fails only `warn` rules          → the accepted rows, the rules in `quality_flags`
- fails a `fail` rule                      → nothing: the run stops (`refuse_fatal`)
- exact re-send of a record kept earlier   → `duplicates` (counted, not stored in Silver)
- everything else                          → the accepted Silver rows

- an order change replaced by a newer one, a cancelled order line, an order header change
                                           → counted per arrival day (`orders.py`), as duplicates are

`judging.py` is how records are judged; `sales.py` the sales lines (files and Kafka events);
`orders.py` the operational database's online orders and CRM customers; `refinements.py`
master data and inventory.
"""

from retail_assets.lib.transforms.silver.judging import DUPLICATE_COLUMNS, FatalRecords, conform, refuse_fatal
from retail_assets.lib.transforms.silver.orders import (
    MERGED_OUTCOMES,
    crm_customer_records,
    merged_order_changes,
    order_change_outcomes,
    sales_candidates_from_orders,
)
from retail_assets.lib.transforms.silver.refinements import (
    SplitResult,
    clean_inventory,
    clean_master_data,
    known_keys,
    split_outputs,
)
from retail_assets.lib.transforms.silver.rejects import count_records_in, ingest_rejects, with_history
from retail_assets.lib.transforms.silver.sales import (
    CANDIDATE_COLUMNS,
    POS_LINE_FIELDS,
    SalesResult,
    candidates_judged_with,
    clean_sales,
    sales_candidates_from_events,
    sales_candidates_from_files,
    sales_outputs,
)

__all__ = [
    "CANDIDATE_COLUMNS",
    "DUPLICATE_COLUMNS",
    "FatalRecords",
    "MERGED_OUTCOMES",
    "POS_LINE_FIELDS",
    "SalesResult",
    "SplitResult",
    "candidates_judged_with",
    "clean_inventory",
    "clean_master_data",
    "clean_sales",
    "conform",
    "count_records_in",
    "crm_customer_records",
    "merged_order_changes",
    "order_change_outcomes",
    "ingest_rejects",
    "refuse_fatal",
    "known_keys",
    "sales_candidates_from_events",
    "sales_candidates_from_files",
    "sales_candidates_from_orders",
    "sales_outputs",
    "split_outputs",
    "with_history",
]
