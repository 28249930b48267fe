"""Gold transformations: dimensions, the sales fact and the business aggregates.

Every function is pure PySpark (DataFrame in, DataFrame out: no collect, no Python UDFs) and
returns exactly the columns of its registry table, in registry order and cast to registry
types. A dimension run derives again the whole Silver change history of the keys it touches
(`rebuild_touched_keys`; a full refresh, of every key), and every window below is ordered by a
total order, so the output depends only on the set of input rows,
never on their order or partitioning (SPEC §4: day-by-day runs and any backfill give the same
table).

`dimensions.py`, `fact.py`, `aggregates.py`; `privacy.py` hashes and masks; `common.py` keys;
`integrity.py` the rules Gold's checks evaluate on the star schema.
"""

from retail_assets.lib.transforms.gold.aggregates import (
    agg_customer_lifetime_value,
    agg_daily_store_sales,
    agg_inventory_cover,
    agg_product_performance,
    customer_daily_value,
    customer_lifetime_value_changes,
)
from retail_assets.lib.transforms.gold.common import RETURN, SALE, UNKNOWN_MEMBER_VALID_FROM, date_sk, surrogate_key
from retail_assets.lib.transforms.gold.dimensions import (
    CUSTOMER_ATTRIBUTES,
    PRODUCT_ATTRIBUTES,
    STORE_ATTRIBUTES,
    build_dim_customer,
    build_dim_date,
    build_dim_product,
    build_dim_store,
    build_scd2,
    inferred_keys,
    rebuild_touched_keys,
)
from retail_assets.lib.transforms.gold.fact import build_fact_sales
from retail_assets.lib.transforms.gold.privacy import (
    hash_email,
    hash_phone,
    mask_email,
    mask_phone,
    normalize_email,
    phone_digits,
)

__all__ = [
    "CUSTOMER_ATTRIBUTES",
    "PRODUCT_ATTRIBUTES",
    "RETURN",
    "SALE",
    "STORE_ATTRIBUTES",
    "UNKNOWN_MEMBER_VALID_FROM",
    "agg_customer_lifetime_value",
    "agg_daily_store_sales",
    "agg_inventory_cover",
    "agg_product_performance",
    "build_dim_customer",
    "build_dim_date",
    "build_dim_product",
    "build_dim_store",
    "build_fact_sales",
    "build_scd2",
    "customer_daily_value",
    "customer_lifetime_value_changes",
    "inferred_keys",
    "rebuild_touched_keys",
    "date_sk",
    "hash_email",
    "hash_phone",
    "mask_email",
    "mask_phone",
    "normalize_email",
    "phone_digits",
    "surrogate_key",
]
