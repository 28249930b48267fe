"""Bronze records no parser could read become `quarantine.ingest_rejects`; what each Bronze table
took in is counted per arrival day for the conservation check."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from retail_assets.lib.registry.tables import (
    BRONZE_POS_TRANSACTIONS,
    QUARANTINE_INGEST_REJECTS,
)
from retail_assets.lib.transforms.silver.judging import conform, sql_string
from retail_assets.lib.transforms.silver.sales import PARSED_LINES, lines_judgement


def ingest_rejects(bronze: DataFrame, *, source_table: str, batch_id: str) -> DataFrame:
    """Bronze rows that could not be parsed at all, as `quarantine.ingest_rejects` rows."""
    out = bronze.filter("_parse_error IS NOT NULL").selectExpr(
        f"{sql_string(source_table)} AS source_table",
        "_source",
        "CAST(NULL AS STRING) AS record_key",
        "_parse_error AS rule",
        "coalesce(_parse_reason, _parse_error) AS reason",
        "_raw_record AS original_record",
        "_raw_bytes AS original_bytes",
        "CAST(NULL AS DATE) AS event_date",
        "_arrival_date",
        f"{sql_string(batch_id)} AS _batch_id",
    )
    return conform(out, QUARANTINE_INGEST_REJECTS)


def with_history(current: DataFrame, previous: DataFrame, *, run_id: str, now: str) -> DataFrame:
    """Today's violations of some arrival days (`current`), and the history of those days'
    earlier rows (`previous`, materialized: the table is about to be overwritten).

    A record quarantined before but no longer (today's rules and master data let it pass: it is in
    Silver now) keeps its row, stamped `replayed_at` = `now` and `replayed_by` = `run_id`; rows
    released earlier keep their stamps. A record quarantined again drops its released row: its
    current row says where it is."""
    record = ["source_table", "_source", "record_key"]
    held = current.select(*record).distinct()
    released = (
        previous.where("replayed_at IS NULL")
        .join(held, record, "left_anti")
        .withColumn("replayed_at", F.lit(now).cast("timestamp"))
        .withColumn("replayed_by", F.lit(run_id))
    )
    earlier = previous.where("replayed_at IS NOT NULL").join(held, record, "left_anti")
    return current.unionByName(released.select(*current.columns)).unionByName(earlier.select(*current.columns))


def count_records_in(bronze_df: DataFrame, source_table: str) -> DataFrame:
    """Records in, per arrival date: DataFrame(_arrival_date date, records bigint).

    The unit is the one every output counts in, so that per arrival date
    records = accepted + ingest_rejects + violations + duplicates holds exactly:
    - file tables: one Bronze row (one non-blank physical line, or one empty-file row);
    - `pos_transactions`: one transaction line of a readable event; an unparseable message
      (one ingest reject) or an event whose `lines` cannot be read (one violation) counts once.
    """
    if source_table in (BRONZE_POS_TRANSACTIONS.key, BRONZE_POS_TRANSACTIONS.name):
        parsed = bronze_df.selectExpr("_arrival_date", "_parse_error", "lines", f"{PARSED_LINES} AS _lines")
        per_row = parsed.selectExpr(
            "_arrival_date",
            f"CASE WHEN _parse_error IS NOT NULL OR ({lines_judgement()[0]}) IS NOT NULL THEN 1 ELSE size(_lines) END AS n",
        )
    else:
        per_row = bronze_df.selectExpr("_arrival_date", "1 AS n")
    return per_row.groupBy("_arrival_date").agg(F.sum("n").cast("bigint").alias("records"))
