"""Names of the data-quality rules that send a record to quarantine.

Shared by the ingest parsers, the Silver validations, the synthetic generator's defect
manifest and the tests, so a rule is spelled in exactly one place.
"""

from __future__ import annotations

# --- quarantine.ingest_rejects: the record cannot be parsed at all -------------------------------
MALFORMED_ROW = "malformed_row"  # wrong column count, broken quoting
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"  # valid JSON but not a JSON object
INVALID_ENCODING = "invalid_encoding"  # bytes that are not UTF-8
EMPTY_FILE = "empty_file"  # zero bytes or a header only

INGEST_RULES = (MALFORMED_ROW, INVALID_JSON, NOT_AN_OBJECT, INVALID_ENCODING, EMPTY_FILE)

# --- quarantine.rule_violations: parsed, but fails a Silver rule ---------------------------------
MISSING_KEY = "missing_key"  # a business key or required field is empty
INVALID_TYPE = "invalid_type"  # a value does not parse as its type (number, date, timestamp)
NEGATIVE_PRICE = "negative_price"
DISCOUNT_OUT_OF_RANGE = "discount_out_of_range"
ZERO_QUANTITY = "zero_quantity"
INVALID_VALUE = "invalid_value"  # a value outside its accepted set or range
UNKNOWN_STORE = "unknown_store"
UNKNOWN_PRODUCT = "unknown_product"
UNKNOWN_CUSTOMER = "unknown_customer"
LATE_EVENT = "late_event"  # older than the lateness window at arrival
FUTURE_EVENT = "future_event"  # more than a day after its arrival
CONFLICTING_DUPLICATE = "conflicting_duplicate"  # same key as an earlier record, different content

VIOLATION_RULES = (
    MISSING_KEY,
    INVALID_TYPE,
    NEGATIVE_PRICE,
    DISCOUNT_OUT_OF_RANGE,
    ZERO_QUANTITY,
    INVALID_VALUE,
    UNKNOWN_STORE,
    UNKNOWN_PRODUCT,
    UNKNOWN_CUSTOMER,
    LATE_EVENT,
    FUTURE_EVENT,
    CONFLICTING_DUPLICATE,
)

# --- neither: an exact re-send of an already accepted record is counted, not quarantined ---------
DUPLICATE = "duplicate"

ALL_RULES = INGEST_RULES + VIOLATION_RULES
