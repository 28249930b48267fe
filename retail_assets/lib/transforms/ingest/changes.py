"""The operational database's change records as Bronze rows (PySpark).

A change record is typed by the database, so nothing here can fail to parse: each becomes one
row with its audit columns, `_source` = `postgresql:<schema>.changes/<change_id>`, and the whole
change as a JSON object in `_raw_record` (built by the database's query, `batch_query`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from retail_assets.lib.registry.tables import TableSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def source_prefix(schema: str) -> str:
    return f"postgresql:{schema}.changes/"


def bronze_changes(
    changes: DataFrame,
    spec: TableSpec,
    *,
    schema: str,
    batch_id: str,
    ingested_at: dt.datetime,
    arrival_date: dt.date,
) -> DataFrame:
    """`change_id, table_name, op, row_data, changed_at, _raw_record` rows as `spec`'s columns."""
    from pyspark.sql import functions as F  # noqa: PLC0415

    audit = {
        "_source": F.concat(F.lit(source_prefix(schema)), F.col("change_id").cast("string")),
        "_raw_bytes": F.lit(None).cast("binary"),
        "_parse_error": F.lit(None).cast("string"),
        "_parse_reason": F.lit(None).cast("string"),
        "_extra": F.lit(None).cast("string"),
        "_ingested_at": F.lit(ingested_at).cast("timestamp"),
        "_batch_id": F.lit(batch_id),
        "_arrival_date": F.lit(arrival_date).cast("date"),
    }
    columns = [(audit[c.name] if c.name in audit else F.col(c.name)).cast(c.type).alias(c.name) for c in spec.columns]
    return changes.select(*columns)
