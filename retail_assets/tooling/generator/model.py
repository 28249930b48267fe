"""Public result types, the Kafka message file format and the defect-manifest vocabulary."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import BRONZE_POS_TRANSACTIONS, landing_sources

from .config import GeneratorConfig

KAFKA_FILE = "kafka/pos_transactions.jsonl"
MANIFEST_FILE = "manifest.json"
LANDING_DIR = "landing"

# Manifest `source` → the Bronze table the record lands in.
SOURCE_TABLES: dict[str, str] = {folder: spec.key for folder, spec in landing_sources().items()} | {
    "kafka": BRONZE_POS_TRANSACTIONS.key
}

# Manifest `expected` values.
INGEST_REJECTS = rules.INGEST_REJECTS
RULE_VIOLATIONS = rules.RULE_VIOLATIONS
DUPLICATE = rules.DUPLICATES
ACCEPTED = "accepted"
FLAGGED = rules.FLAGGED  # accepted, its warn-level rule named in `quality_flags` (orphans: an inferred member)

# Defect kinds (manifest `defect`) → (expected outcome, rule). SPEC §7.
DEFECT_KINDS: dict[str, tuple[str, str | None]] = {
    "malformed_row": (INGEST_REJECTS, rules.MALFORMED_ROW),  # wrong column count
    "broken_quoting": (INGEST_REJECTS, rules.MALFORMED_ROW),  # an unclosed `"`
    "invalid_json": (INGEST_REJECTS, rules.INVALID_JSON),
    "not_an_object": (INGEST_REJECTS, rules.NOT_AN_OBJECT),
    "invalid_encoding": (INGEST_REJECTS, rules.INVALID_ENCODING),
    "empty_file": (INGEST_REJECTS, rules.EMPTY_FILE),  # zero bytes
    "header_only_file": (INGEST_REJECTS, rules.EMPTY_FILE),
    "missing_key": (RULE_VIOLATIONS, rules.MISSING_KEY),
    "invalid_type": (RULE_VIOLATIONS, rules.INVALID_TYPE),
    "negative_price": (RULE_VIOLATIONS, rules.NEGATIVE_PRICE),
    "discount_out_of_range": (RULE_VIOLATIONS, rules.DISCOUNT_OUT_OF_RANGE),
    "zero_quantity": (RULE_VIOLATIONS, rules.ZERO_QUANTITY),
    "unknown_store": (FLAGGED, rules.UNKNOWN_STORE),
    "unknown_product": (FLAGGED, rules.UNKNOWN_PRODUCT),
    "unknown_customer": (FLAGGED, rules.UNKNOWN_CUSTOMER),
    "late_event": (RULE_VIOLATIONS, rules.LATE_EVENT),
    "future_event": (RULE_VIOLATIONS, rules.FUTURE_EVENT),
    "duplicate": (DUPLICATE, rules.DUPLICATE),
    "out_of_order_change": (ACCEPTED, None),
    "null_update": (ACCEPTED, None),
    "new_column": (ACCEPTED, None),
}


@dataclass(frozen=True, slots=True)
class KafkaMessage:
    """One message for topic `retail.pos.transactions`; `index` = its position (offset on one partition)."""

    index: int
    key: str | None
    timestamp_ms: int
    value: bytes

    @property
    def arrival_date(self) -> date:
        """UTC date of the Kafka timestamp: the arrival partition the generator intends."""
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC).date()

    def to_json_line(self) -> str:
        return json.dumps(
            {
                "index": self.index,
                "key": self.key,
                "timestamp_ms": self.timestamp_ms,
                "value_b64": base64.b64encode(self.value).decode("ascii"),
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class GenerationResult:
    config: GeneratorConfig
    out_dir: Path
    landing_root: Path
    kafka_path: Path
    manifest_path: Path
    kafka_messages: list[KafkaMessage]
    manifest: list[dict[str, Any]]
    counts: dict[str, int]
    arrival_dates: list[date]  # every arrival date of a landing file or a Kafka timestamp, sorted
    files: list[str] = field(default_factory=list)  # landing-relative paths written, sorted

    def summary(self) -> str:
        c = self.counts
        lines = [
            f"landing: {self.landing_root}",
            f"  arrival dates: {self.arrival_dates[0]} .. {self.arrival_dates[-1]} ({len(self.arrival_dates)})"
            if self.arrival_dates
            else "  arrival dates: none",
            f"  sales: {c['sales_files']} files, {c['sales_lines_in_files']} lines",
            f"  customers: {c['customers_files']} files, {c['customers_records']} records; "
            f"products: {c['products_files']} files, {c['products_records']} records; "
            f"stores: {c['stores_files']} files, {c['stores_records']} records",
            f"  inventory: {c['inventory_files']} files, {c['inventory_records']} rows",
            f"kafka: {self.kafka_path} ({c['kafka_events']} messages, {c['kafka_lines']} lines)",
            f"clean transactions: {c['clean_transactions']}, clean sales lines: {c['clean_sales_lines']}",
            f"manifest: {self.manifest_path} ({len(self.manifest)} entries)",
        ]
        return "\n".join(lines)


def read_kafka_messages(path: str | Path) -> list[KafkaMessage]:
    """Load `kafka/pos_transactions.jsonl` back into `KafkaMessage`s (in file order)."""
    messages = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            obj = json.loads(line)
            messages.append(
                KafkaMessage(
                    index=int(obj["index"]),
                    key=obj.get("key"),
                    timestamp_ms=int(obj["timestamp_ms"]),
                    value=base64.b64decode(obj["value_b64"]),
                )
            )
    return messages


def load_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Load `manifest.json` (a JSON list of entries)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
