"""Parsing landing-zone files and Kafka messages into Bronze rows (pyarrow, no Spark).

Bronze keeps every record exactly as it came: one row per non-blank physical line of a file and
one row per Kafka message, whether or not it parses. A record that cannot be parsed still gets
its row, with `_parse_error` (a rule from `lib/registry/rules.py`) and a `_parse_reason` a person can act
on; Silver turns those rows into `quarantine.ingest_rejects`. Nothing here raises on bad
content — one broken line never costs the lines around it.

Contract fields are kept as text (null when absent or empty); fields the contract does not
name yet go to `_extra` as a JSON object, so a new source column neither fails a run nor
vanishes (SPEC §5).

`files.py` parses landing files, `events.py` Kafka messages, `rows.py` builds the rows.
"""

from retail_assets.lib.transforms.ingest.events import PosEvents, collector_paused, pos_event_batches
from retail_assets.lib.transforms.ingest.files import compare_with_held, parse_landing_file
from retail_assets.lib.transforms.ingest.rows import CSV_SUFFIXES, JSON_SUFFIXES, UTF8_BOM, contract_fields

__all__ = [
    "CSV_SUFFIXES",
    "JSON_SUFFIXES",
    "PosEvents",
    "UTF8_BOM",
    "collector_paused",
    "compare_with_held",
    "contract_fields",
    "parse_landing_file",
    "pos_event_batches",
]
