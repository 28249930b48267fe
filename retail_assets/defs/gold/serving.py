"""Gold serving shapes for BI: current snapshots of the dimensions and the denormalized sales
table, each one SELECT declared in the registry (`TableSpec.view`). On delta-spark (Unity
Catalog, or Spark's session catalog locally) they are catalog views; on delta-rs, tables."""

from __future__ import annotations

from retail_assets.defs.gold.assets import DIMENSIONS, L
from retail_assets.lib.orchestration.factories import Upstream, build_serving_asset, window
from retail_assets.lib.registry import tables

dim_customer_current = build_serving_asset(
    spec=tables.GOLD_DIM_CUSTOMER_CURRENT, upstream=[Upstream(tables.GOLD_DIM_CUSTOMER)]
)
dim_product_current = build_serving_asset(
    spec=tables.GOLD_DIM_PRODUCT_CURRENT, upstream=[Upstream(tables.GOLD_DIM_PRODUCT)]
)
dim_store_current = build_serving_asset(spec=tables.GOLD_DIM_STORE_CURRENT, upstream=[Upstream(tables.GOLD_DIM_STORE)])
sales_denormalized = build_serving_asset(
    spec=tables.GOLD_SALES_DENORMALIZED,
    upstream=[
        Upstream(tables.GOLD_FACT_SALES),
        Upstream(tables.GOLD_DIM_DATE),
        # the dimension versions the fact's lines name, as the fact reads them
        *(Upstream(d, window(0, L)) for d in DIMENSIONS),
    ],
)
