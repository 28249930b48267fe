"""The data-quality rules that send a record to quarantine, declared once, in precedence order.

Each rule is one `Rule`: its name (what quarantine rows carry), the outcome of a record that
breaks it (the quarantine table it goes to, or counted as a duplicate), what it means, the Bronze
tables whose records it judges, and how a record breaks it: one or more `When` forms, each a
Spark SQL condition and the reason a quarantine row gives. A record that breaks several rules is
quarantined once, under the first of them in `RULES`, with a reason that names them all.

Silver fills in the conditions (`transforms/silver/judging.py`). Most rules judge columns the
registry describes: `missing_key` every required column, `invalid_type` every typed one,
`negative_price` every money column, `invalid_value` every accepted-values list and count,
`unknown_*` every reference to master data. A rule can also name the Silver columns it judges
(`on`), and is then applied to them with no other code. The ingest rules are judged while
parsing (`transforms/ingest/`): a record that cannot be read has no columns to write a condition
over, so they declare no `When`.

Placeholders of a `When`:
- `{column}`: the judged column's name (in a message, the name as text);
- `{raw}`: its value as it arrived, trimmed, NULL when empty (in a message, the value quoted);
- `{value}`: its typed value; `{exact}`: a decimal as written, before it is cut to its type;
- any other name a form says it needs (`{lateness_days}`, `{first}`, `{accepted}`, ...).
In a message, a field that is not a placeholder is a SQL expression over the record, its value
shown: `{datediff(_arrival_date, _event_date)}`. Every record has `_arrival_date` and
`_event_date` (its business date). A condition that is NULL counts as passed: a missing value is
`missing_key`'s to report.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from enum import Enum

from retail_assets.lib.registry.tables import (
    BRONZE_ORDERS_CHANGES,
    BRONZE_POS_TRANSACTIONS,
    BRONZE_SALES_FILES,
    QUARANTINE_INGEST_REJECTS,
    QUARANTINE_RULE_VIOLATIONS,
    Layer,
    landing_sources,
    tables_in,
)


class Severity(str, Enum):
    """What breaking a rule does to a record (SPEC §3)."""

    DROP = "drop"  # quarantined: the record leaves Silver, with its rule and reason
    WARN = "warn"  # kept and flagged (`quality_flags`), counted per partition by a WARN check
    FAIL = "fail"  # blocking: the run stops before it writes, naming the records


# The outcomes of a record that breaks a rule.
INGEST_REJECTS = QUARANTINE_INGEST_REJECTS.name
RULE_VIOLATIONS = QUARANTINE_RULE_VIOLATIONS.name
DUPLICATES = "duplicate"  # counted, never quarantined: an exact re-send of an accepted record
FLAGGED = "flagged"  # kept in Silver and Gold, the rule named in `quality_flags`
FAILS_THE_RUN = "fails_the_run"

_OUTCOME = {Severity.WARN: FLAGGED, Severity.FAIL: FAILS_THE_RUN}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class When:
    """One way of breaking a rule: a Spark SQL condition over the judged record, and its reason."""

    form: str  # names the form among a rule's several; "" for a rule's only one
    condition: str
    message: str

    def placeholders(self) -> set[str]:
        """The names a caller fills in: the condition's, and the message's plain-name fields."""
        names = set(_PLACEHOLDER.findall(self.condition))
        names |= {f for _, f, _, _ in string.Formatter().parse(self.message) if f and f.isidentifier()}
        return names


@dataclass(frozen=True)
class Rule:
    name: str
    outcome: str  # where a record that breaks it goes (for a `drop` rule: which quarantine table)
    meaning: str
    applies_to: tuple[str, ...]  # Bronze table keys
    forms: tuple[When, ...] = ()
    on: tuple[str, ...] = ()  # "silver.<table>.<column>": columns judged by this declaration alone
    severity: Severity = Severity.DROP

    def __post_init__(self) -> None:
        expected = _OUTCOME.get(self.severity)
        if expected is not None and self.outcome != expected:
            raise ValueError(f"rule {self.name}: a {self.severity.value} rule's outcome is {expected}")
        if expected is None and self.outcome in _OUTCOME.values():
            raise ValueError(f"rule {self.name}: outcome {self.outcome} needs severity warn or fail")

    def when(self, form: str = "") -> When:
        for w in self.forms:
            if w.form == form:
                return w
        raise KeyError(f"rule {self.name} declares no form {form!r}")

    def __str__(self) -> str:
        return self.name


def _orphan(kind: str, applies_to: tuple[str, ...]) -> Rule:
    """A reference to a master record of `kind` that had not arrived within the lateness window:
    kept, and keyed in Gold to an inferred member that the record fills in when it arrives.
    `{first}`: when the first record of the referenced key arrived (NULL: none has)."""
    known = "{column} {raw} is not a known " + kind + ": "
    return Rule(
        f"unknown_{kind}",
        FLAGGED,
        f"no {kind} of that id within the lateness window: kept, keyed to an inferred member",
        applies_to,
        (
            When("never_arrived", "{raw} IS NOT NULL AND {first} IS NULL", known + f"no {kind} record has arrived"),
            When(
                "arrived_late",
                "{raw} IS NOT NULL AND {first} > date_add(_arrival_date, {lateness_days})",
                known
                + f"the first {kind} record arrived on {{first}}, more than {{lateness_days}} days after this record",
            ),
        ),
        severity=Severity.WARN,
    )


_ALL = tuple(t.key for t in tables_in(Layer.BRONZE))
_FILES = tuple(t.key for t in landing_sources().values())
_JSON = tuple(t.key for t in landing_sources().values() if "JSON" in t.landing.formats) + (BRONZE_POS_TRANSACTIONS.key,)
# The operational database's change records hold online order lines and CRM customers alike.
_SALES = (BRONZE_SALES_FILES.key, BRONZE_POS_TRANSACTIONS.key, BRONZE_ORDERS_CHANGES.key)
_INVENTORY = tuple(t.key for t in landing_sources().values() if t.name == "inventory")
_CUSTOMERS = (*(t.key for t in landing_sources().values() if t.name == "customers"), BRONZE_ORDERS_CHANGES.key)
_PRICED = (*_SALES, *(t.key for t in landing_sources().values() if t.name == "products"))

RULES: tuple[Rule, ...] = (
    # quarantine.ingest_rejects: the record cannot be parsed at all
    Rule("malformed_row", INGEST_REJECTS, "wrong column count or broken quoting", _FILES),
    Rule("invalid_json", INGEST_REJECTS, "a line or message that is not JSON", _JSON),
    Rule("not_an_object", INGEST_REJECTS, "valid JSON but not a JSON object", _JSON),
    Rule("invalid_encoding", INGEST_REJECTS, "bytes that are not UTF-8", _ALL),
    Rule("empty_file", INGEST_REJECTS, "zero bytes or a header only", _FILES),
    # quarantine.rule_violations: parsed, but fails a Silver rule
    Rule(
        "missing_key",
        RULE_VIOLATIONS,
        "a business key or required field is empty",
        _ALL,
        (
            When("", "{raw} IS NULL", "{column} is missing"),
            # a POS event's `lines`, judged before it is exploded into sales lines
            When("no_lines", "{raw} IS NULL", "event has no lines"),
            When("empty_array", "size({value}) = 0", "{column} is an empty array"),
        ),
    ),
    Rule(
        "invalid_type",
        RULE_VIOLATIONS,
        "a value does not parse as its type (number, date, timestamp)",
        _ALL,
        (
            When("whole_number", "{raw} IS NOT NULL AND {value} IS NULL", "{column} {raw} is not a whole number"),
            When("number", "{raw} IS NOT NULL AND {exact} IS NULL", "{column} {raw} is not a number"),
            # {in_range}: overflow and decimal places are judged only where no range rule speaks
            When(
                "decimal_range",
                "{exact} IS NOT NULL AND {value} IS NULL AND ({in_range})",
                "{column} {raw} is out of range for decimal({precision},{scale})",
            ),
            When(
                "decimal_places",
                "{exact} != {value} AND ({in_range})",
                "{column} {raw} has more than {scale} decimal places",
            ),
            When("date", "{raw} IS NOT NULL AND {value} IS NULL", "{column} {raw} is not a date (YYYY-MM-DD)"),
            When(
                "no_offset",
                "{raw} RLIKE {no_offset}",
                "{column} {raw} has no UTC offset (ISO-8601 with offset required, e.g. 2026-10-01T09:30:00+02:00)",
            ),
            When(
                "timestamp",
                "{raw} IS NOT NULL AND NOT {raw} RLIKE {no_offset} AND {value} IS NULL",
                "{column} {raw} is not an ISO-8601 timestamp with offset",
            ),
            When(
                "json_objects",
                "{raw} IS NOT NULL AND {value} IS NULL",
                "{column} {raw} is not an array of JSON objects",
            ),
        ),
    ),
    Rule(
        "negative_price",
        RULE_VIOLATIONS,
        "a price or cost below zero",
        _PRICED,
        (When("", "{exact} < 0", "{column} {raw} is negative"),),
    ),
    Rule(
        "discount_out_of_range",
        RULE_VIOLATIONS,
        "a discount outside 0..1",
        _SALES,
        (When("", "NOT ({exact} BETWEEN 0 AND 1)", "{column} {raw} is outside 0..1"),),
    ),
    Rule(
        "zero_quantity",
        RULE_VIOLATIONS,
        "a sales line of no units",
        _SALES,
        (When("", "{value} = 0", "{column} is 0"),),
    ),
    Rule(
        "invalid_value",
        RULE_VIOLATIONS,
        "a value outside its accepted set or range",
        _ALL,
        (
            When("not_accepted", "{raw} NOT IN {accepted}", "{column} {raw} is not one of {listed}"),
            # a coded value (an `expected_values` column) no list could mean: refused, not flagged
            When("too_long", "length({raw}) > {limit}", "{column} {raw} is longer than {limit} characters"),
            When("negative", "{value} < 0", "{column} {raw} is negative"),
            When("not_positive", "{value} < 1", "{column} {value} is not positive"),
            When("too_large", "{value} >= {limit}", "{column} = {value} is too large an amount"),
        ),
    ),
    Rule(
        "late_event",
        RULE_VIOLATIONS,
        "older than the lateness window at arrival",
        _SALES,
        (
            When(
                "",
                "datediff(_arrival_date, _event_date) > {lateness_days}",
                "event date {_event_date} is {datediff(_arrival_date, _event_date)} days before its arrival on "
                "{_arrival_date} (lateness window {lateness_days} days)",
            ),
        ),
    ),
    Rule(
        "future_event",
        RULE_VIOLATIONS,
        "more than a day after its arrival",
        _SALES,
        (
            When(
                "",
                "datediff(_event_date, _arrival_date) > 1",
                "event date {_event_date} is {datediff(_event_date, _arrival_date)} days after its arrival on "
                "{_arrival_date} (at most 1 allowed)",
            ),
        ),
    ),
    # `{differs}`: the compared columns whose values differ from the kept copy's ('' if none)
    Rule(
        "conflicting_duplicate",
        RULE_VIOLATIONS,
        "same key as an earlier record, different content",
        _ALL,
        (
            When(
                "",
                "{differs} != ''",
                "same key as {kept_source} (arrived {kept_arrival}, kept) but different {differs}",
            ),
        ),
    ),
    # kept and flagged (warn): Silver and Gold keep the record, `quality_flags` names the rule
    _orphan("store", (*_SALES, *_INVENTORY)),
    _orphan("product", (*_SALES, *_INVENTORY)),
    _orphan("customer", _SALES),
    Rule(
        "unexpected_value",
        FLAGGED,
        "a category, status, tier or payment method outside its expected list (`TableSpec.expected_values`)",
        (*_SALES, *(t.key for t in landing_sources().values() if t.name in ("customers", "products", "stores"))),
        (When("", "{raw} NOT IN {accepted}", "{column} {raw} is not one of {listed}"),),
        severity=Severity.WARN,
    ),
    Rule(
        "implausible_email",
        FLAGGED,
        "an e-mail address that is not one name, one @ and a dotted domain",
        _CUSTOMERS,
        (When("", "NOT {raw} RLIKE '^[^@ ]+@[^@ ]+[.][^@ .]+$'", "{column} {raw} is not a plausible e-mail address"),),
        on=("silver.customers.email",),
        severity=Severity.WARN,
    ),
    Rule(
        "implausible_age",
        FLAGGED,
        "a birth date that makes the customer younger than 16 or older than 110 at the record's date",
        _CUSTOMERS,
        (
            When(
                "",
                "NOT floor(months_between(_event_date, {value}) / 12) BETWEEN 16 AND 110",
                "{column} {value} is not 16 to 110 years before the record's date {_event_date}",
            ),
        ),
        on=("silver.customers.birth_date",),
        severity=Severity.WARN,
    ),
    # neither: an exact re-send of an already accepted record is counted, not quarantined
    Rule("duplicate", DUPLICATES, "an exact re-send of an accepted record", _ALL, (When("", "{differs} = ''", ""),)),
)
RULE: dict[str, Rule] = {r.name: r for r in RULES}

INGEST_RULES = tuple(r.name for r in RULES if r.outcome == INGEST_REJECTS)
VIOLATION_RULES = tuple(r.name for r in RULES if r.outcome == RULE_VIOLATIONS)
ALL_RULES = INGEST_RULES + VIOLATION_RULES  # what quarantine rows may name
WARNING_RULES = tuple(r.name for r in RULES if r.severity is Severity.WARN)

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
UNEXPECTED_VALUE = RULE["unexpected_value"].name
IMPLAUSIBLE_EMAIL = RULE["implausible_email"].name
IMPLAUSIBLE_AGE = RULE["implausible_age"].name
LATE_EVENT = RULE["late_event"].name
FUTURE_EVENT = RULE["future_event"].name
CONFLICTING_DUPLICATE = RULE["conflicting_duplicate"].name
DUPLICATE = RULE["duplicate"].name


def unknown_master(kind: str) -> str:
    """The rule a reference to an unknown master record of `kind` (store, product, customer) breaks."""
    rule = f"unknown_{kind}"
    if rule not in RULE:
        raise ValueError(f"no rule for an unknown {kind}")
    return rule


def digest() -> str:
    """The declarations as they stand, as a short digest: part of the key of every classification
    kept for other runs, so one computed under other rules is never read as today's."""
    return hashlib.sha256(repr(RULES).encode()).hexdigest()[:16]


def named(rule: str) -> Rule:
    """The declaration of `rule`."""
    for r in RULES:
        if r.name == rule:
            return r
    raise KeyError(f"no rule {rule!r} is declared")


def precedence(rule: str) -> int:
    """The position of a rule in `RULES`: the lower, the earlier it is named."""
    return [r.name for r in RULES].index(rule)


def with_severity(severity: Severity) -> tuple[str, ...]:
    """The Silver rules (ingest rules aside) of one severity, in precedence order."""
    return tuple(r.name for r in RULES if r.severity is severity and r.outcome != INGEST_REJECTS and r.forms)


def declared_on(table_key: str) -> list[tuple[Rule, str]]:
    """(rule, column) for each column of `table_key` a rule names in `on`, in precedence order."""
    prefix = table_key + "."
    return [(r, c.removeprefix(prefix)) for r in RULES for c in r.on if c.startswith(prefix)]
