"""Deterministic synthetic data for the retail lakehouse (SPEC §2, §7).

    from retail_assets.tooling.generator import GeneratorConfig, generate
    result = generate(GeneratorConfig.preset("tiny", defects=True), Path("/tmp/demo"))

writes `landing/` (sales, customers, products, stores, inventory), `kafka/pos_transactions.jsonl`
and `manifest.json` (one entry per injected defect; `[]` in clean mode). Pure standard library.
"""

from .cli import main
from .config import PRESETS, GeneratorConfig
from .model import (
    ACCEPTED,
    DEFECT_KINDS,
    DUPLICATE,
    FLAGGED,
    INGEST_REJECTS,
    KAFKA_FILE,
    MANIFEST_FILE,
    RULE_VIOLATIONS,
    SOURCE_TABLES,
    GenerationResult,
    KafkaMessage,
    load_manifest,
    read_kafka_messages,
)
from .run import generate

__all__ = [
    "ACCEPTED",
    "DEFECT_KINDS",
    "DUPLICATE",
    "FLAGGED",
    "INGEST_REJECTS",
    "KAFKA_FILE",
    "MANIFEST_FILE",
    "PRESETS",
    "RULE_VIOLATIONS",
    "SOURCE_TABLES",
    "GenerationResult",
    "GeneratorConfig",
    "KafkaMessage",
    "generate",
    "load_manifest",
    "main",
    "read_kafka_messages",
]
