"""The data-quality rules that send a record to quarantine, declared once, in precedence order.

Each rule is one `Rule`: its name (what quarantine rows carry), the outcome of a record that
breaks it (the quarantine table it goes to, or counted as a duplicate), what it means, and the
Bronze tables whose records it judges. A record that breaks several rules is quarantined once,
under the first of them in `RULES`, with a reason that names them all. The ingest parsers, the
Silver validations, the generator's defect manifest and the tests all use these names.
"""

from __future__ import annotations

from dataclasses import dataclass

from retail_assets.lib.registry.tables import (
    BRONZE_POS_TRANSACTIONS,
    BRONZE_SALES_FILES,
    QUARANTINE_INGEST_REJECTS,
    QUARANTINE_RULE_VIOLATIONS,
    Layer,
    landing_sources,
    tables_in,
)

# The outcomes of a record that breaks a rule.
INGEST_REJECTS = QUARANTINE_INGEST_REJECTS.name
RULE_VIOLATIONS = QUARANTINE_RULE_VIOLATIONS.name
DUPLICATES = "duplicate"  # counted, never quarantined: an exact re-send of an accepted record


@dataclass(frozen=True)
class Rule:
    name: str
    outcome: str
    meaning: str
    applies_to: tuple[str, ...]  # Bronze table keys

    def __str__(self) -> str:
        return self.name


_ALL = tuple(t.key for t in tables_in(Layer.BRONZE))
_FILES = tuple(t.key for t in landing_sources().values())
_JSON = tuple(t.key for t in landing_sources().values() if "JSON" in t.landing.formats) + (BRONZE_POS_TRANSACTIONS.key,)
_SALES = (BRONZE_SALES_FILES.key, BRONZE_POS_TRANSACTIONS.key)
_INVENTORY = tuple(t.key for t in landing_sources().values() if t.name == "inventory")
_PRICED = (*_SALES, *(t.key for t in landing_sources().values() if t.name == "products"))

RULES: tuple[Rule, ...] = (
    # quarantine.ingest_rejects: the record cannot be parsed at all
    Rule("malformed_row", INGEST_REJECTS, "wrong column count or broken quoting", _FILES),
    Rule("invalid_json", INGEST_REJECTS, "a line or message that is not JSON", _JSON),
    Rule("not_an_object", INGEST_REJECTS, "valid JSON but not a JSON object", _JSON),
    Rule("invalid_encoding", INGEST_REJECTS, "bytes that are not UTF-8", _ALL),
    Rule("empty_file", INGEST_REJECTS, "zero bytes or a header only", _FILES),
    # quarantine.rule_violations: parsed, but fails a Silver rule
    Rule("missing_key", RULE_VIOLATIONS, "a business key or required field is empty", _ALL),
    Rule("invalid_type", RULE_VIOLATIONS, "a value does not parse as its type (number, date, timestamp)", _ALL),
    Rule("negative_price", RULE_VIOLATIONS, "a price or cost below zero", _PRICED),
    Rule("discount_out_of_range", RULE_VIOLATIONS, "a discount outside 0..1", _SALES),
    Rule("zero_quantity", RULE_VIOLATIONS, "a sales line of no units", _SALES),
    Rule("invalid_value", RULE_VIOLATIONS, "a value outside its accepted set or range", _ALL),
    Rule("unknown_store", RULE_VIOLATIONS, "no store of that id within the lateness window", (*_SALES, *_INVENTORY)),
    Rule(
        "unknown_product", RULE_VIOLATIONS, "no product of that id within the lateness window", (*_SALES, *_INVENTORY)
    ),
    Rule("unknown_customer", RULE_VIOLATIONS, "no customer of that id within the lateness window", _SALES),
    Rule("late_event", RULE_VIOLATIONS, "older than the lateness window at arrival", _SALES),
    Rule("future_event", RULE_VIOLATIONS, "more than a day after its arrival", _SALES),
    Rule("conflicting_duplicate", RULE_VIOLATIONS, "same key as an earlier record, different content", _ALL),
    # neither: an exact re-send of an already accepted record is counted, not quarantined
    Rule("duplicate", DUPLICATES, "an exact re-send of an accepted record", _ALL),
)
RULE: dict[str, Rule] = {r.name: r for r in RULES}

INGEST_RULES = tuple(r.name for r in RULES if r.outcome == INGEST_REJECTS)
VIOLATION_RULES = tuple(r.name for r in RULES if r.outcome == RULE_VIOLATIONS)
ALL_RULES = INGEST_RULES + VIOLATION_RULES

# The names code refers to, each checked against its declaration.
MALFORMED_ROW = RULE["malformed_row"].name
INVALID_JSON = RULE["invalid_json"].name
NOT_AN_OBJECT = RULE["not_an_object"].name
INVALID_ENCODING = RULE["invalid_encoding"].name
EMPTY_FILE = RULE["empty_file"].name
MISSING_KEY = RULE["missing_key"].name
INVALID_TYPE = RULE["invalid_type"].name
NEGATIVE_PRICE = RULE["negative_price"].name
DISCOUNT_OUT_OF_RANGE = RULE["discount_out_of_range"].name
ZERO_QUANTITY = RULE["zero_quantity"].name
INVALID_VALUE = RULE["invalid_value"].name
UNKNOWN_STORE = RULE["unknown_store"].name
UNKNOWN_PRODUCT = RULE["unknown_product"].name
UNKNOWN_CUSTOMER = RULE["unknown_customer"].name
LATE_EVENT = RULE["late_event"].name
FUTURE_EVENT = RULE["future_event"].name
CONFLICTING_DUPLICATE = RULE["conflicting_duplicate"].name
DUPLICATE = RULE["duplicate"].name


def unknown_master(kind: str) -> str:
    """The rule a reference to an unknown master record of `kind` (store, product, customer) breaks."""
    rule = f"unknown_{kind}"
    if rule not in VIOLATION_RULES:
        raise ValueError(f"no rule for an unknown {kind}")
    return rule
