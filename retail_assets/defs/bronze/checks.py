"""Bronze checks: keys, schema, and that every source record is held exactly once."""

from __future__ import annotations

from retail_assets.lib.orchestration.factories import CheckRun, TableCheck, build_table_checks, standard_checks
from retail_assets.lib.registry.tables import TABLES, Layer
from retail_assets.lib.transforms import quality


def _exactly_once(r: CheckRun) -> quality.CheckOutcome:
    """The checked partitions' records against the other partitions' files whose range of
    `_source` (the Delta log's statistics, an index kept by every commit) meets theirs: the cost
    follows the checked days, not the table's history. Where the engine cannot tell the ranges,
    the whole table is read."""
    columns = ["_source", r.spec.partition_column]
    ranges = r.engine.file_ranges(r.spec, "_source")
    if ranges is None:
        return quality.exactly_once(r.read_all(r.spec, columns=columns), r.spec.partition_column)
    files = quality.files_to_compare(ranges, r.partition.days())
    return quality.exactly_once(
        r.engine.read_files(r.spec, files.read, columns=columns), r.spec.partition_column, files
    )


EXACTLY_ONCE_CHECK = TableCheck(
    quality.EXACTLY_ONCE,
    "Every source record (file line or Kafka offset) is held by one row of one partition, across the whole table.",
    _exactly_once,
    blocking=True,
    # a record held twice fails the check of each partition holding it, so of any range holding one
    range_safe=True,
)

bronze_checks = [
    build_table_checks(spec, [*standard_checks(spec), EXACTLY_ONCE_CHECK])
    for spec in TABLES
    if spec.layer is Layer.BRONZE
]
