"""Bronze checks: keys, schema, and that every source record is held exactly once."""

from __future__ import annotations

from retail_assets.lib.orchestration.factories import TableCheck, build_table_checks, standard_checks
from retail_assets.lib.registry.tables import TABLES, Layer
from retail_assets.lib.transforms import quality

EXACTLY_ONCE_CHECK = TableCheck(
    quality.EXACTLY_ONCE,
    "Every source record (file line or Kafka offset) is held by one row of one partition, across the whole table.",
    lambda r: quality.exactly_once(
        r.read_all(r.spec, columns=["_source", r.spec.partition_column]), r.spec.partition_column
    ),
    blocking=True,
    range_safe=True,  # the whole table, whichever day is checked
)

bronze_checks = [
    build_table_checks(spec, [*standard_checks(spec), EXACTLY_ONCE_CHECK])
    for spec in TABLES
    if spec.layer is Layer.BRONZE
]
