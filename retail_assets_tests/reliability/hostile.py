"""Hostile inputs for the reliability tests: landing files and Kafka events that break SPEC §7
and every other way a source can misbehave, each with where it must end up.

Every case is written next to well-formed records (a clean line after the hostile one in each
file, clean events around the hostile ones) so the tests can see that the rest of the batch
survives. `Expected.ref` is the Bronze `_source` of the record: `path:line` for files,
`kafka:#<index>` for a message until the broker says where it landed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from retail_assets.lib.registry import rules
from retail_assets.tooling.generator import KafkaMessage

DAY = dt.date(2026, 11, 10)
D = DAY.isoformat()
TS = f"{D}T10:00:00+01:00"

ACCEPTED = "accepted"
FLAGGED = "flagged"  # accepted, the warn-level rule named in its `quality_flags`
DUPLICATE = "duplicate"
INGEST_REJECTS = "ingest_rejects"
RULE_VIOLATIONS = "rule_violations"

SALES_HEADER = (
    "transaction_id,line_number,event_time,store_id,product_id,customer_id,quantity,unit_price,discount,payment_method"
)
HUGE = "x" * 200_000  # a 200 kB field value


@dataclass(frozen=True)
class Expected:
    case: str
    ref: str
    outcome: str  # ACCEPTED, FLAGGED, DUPLICATE, INGEST_REJECTS or RULE_VIOLATIONS
    rule: str | None = None
    record_key: str | None = None  # sales line key (a product id for products)
    reason: str | None = None  # a fragment the quarantine row's reason must contain


def sales_line(
    tid: str,
    line: int = 1,
    *,
    event_time: str = TS,
    store: str = "S001",
    product: str = "P001",
    customer: str = "C001",
    quantity: str = "2",
    price: str = "9.99",
    discount: str = "0.1",
    payment: str = "card",
) -> str:
    return ",".join([tid, str(line), event_time, store, product, customer, quantity, price, discount, payment])


NON_UTF8_LINE = sales_line("F03", product="P\udcff\udcfe01").encode("utf-8", "surrogateescape")

# (case, hostile line, outcome, rule): one sales file each, `header + hostile + clean line`.
SALES_LINE_CASES: list[tuple[str, bytes, str, str | None]] = [
    (
        "wrong_column_count",
        b"F01,1," + TS.encode() + b",S001,P001,C001,2,9.99,0.1",
        INGEST_REJECTS,
        rules.MALFORMED_ROW,
    ),
    (
        "broken_quoting",
        b'F02,1,"' + TS.encode() + b",S001,P001,C001,2,9.99,0.1,card",
        INGEST_REJECTS,
        rules.MALFORMED_ROW,
    ),
    ("non_utf8_bytes", NON_UTF8_LINE, INGEST_REJECTS, rules.INVALID_ENCODING),
    ("missing_key", sales_line("").encode(), RULE_VIOLATIONS, rules.MISSING_KEY),
    ("wrong_type", sales_line("F05", quantity="two").encode(), RULE_VIOLATIONS, rules.INVALID_TYPE),
    ("negative_price", sales_line("F06", price="-4.50").encode(), RULE_VIOLATIONS, rules.NEGATIVE_PRICE),
    ("discount_out_of_range", sales_line("F07", discount="1.5").encode(), RULE_VIOLATIONS, rules.DISCOUNT_OUT_OF_RANGE),
    ("zero_quantity", sales_line("F08", quantity="0").encode(), RULE_VIOLATIONS, rules.ZERO_QUANTITY),
    ("unknown_store", sales_line("F09", store="S999").encode(), FLAGGED, rules.UNKNOWN_STORE),
    ("unknown_product", sales_line("F10", product="P999").encode(), FLAGGED, rules.UNKNOWN_PRODUCT),
    ("unknown_customer", sales_line("F11", customer="C999").encode(), FLAGGED, rules.UNKNOWN_CUSTOMER),
    ("exact_duplicate", sales_line("C-1").encode(), DUPLICATE, None),
    ("conflicting_duplicate", sales_line("C-1", quantity="7").encode(), RULE_VIOLATIONS, rules.CONFLICTING_DUPLICATE),
    (
        "late_event",
        sales_line("F14", event_time="2026-10-30T10:00:00+01:00").encode(),
        RULE_VIOLATIONS,
        rules.LATE_EVENT,
    ),
    (
        "future_event",
        sales_line("F15", event_time="2026-11-20T10:00:00+01:00").encode(),
        RULE_VIOLATIONS,
        rules.FUTURE_EVENT,
    ),
    (
        "distant_past_timestamp",
        sales_line("F16", event_time="1900-01-01T00:00:00+00:00").encode(),
        RULE_VIOLATIONS,
        rules.LATE_EVENT,
    ),
    (
        "distant_future_timestamp",
        sales_line("F17", event_time="9999-12-31T23:59:59+00:00").encode(),
        RULE_VIOLATIONS,
        rules.FUTURE_EVENT,
    ),
    (
        "timestamp_beyond_year_9999",
        sales_line("F18", event_time="12026-11-10T10:00:00+01:00").encode(),
        RULE_VIOLATIONS,
        rules.INVALID_TYPE,
    ),
    (
        "timestamp_without_offset",
        sales_line("F19", event_time=f"{D}T10:00:00").encode(),
        RULE_VIOLATIONS,
        rules.INVALID_TYPE,
    ),
    ("nan_price", sales_line("F20", price="NaN").encode(), RULE_VIOLATIONS, rules.INVALID_TYPE),
    ("infinity_price", sales_line("F21", price="Infinity").encode(), RULE_VIOLATIONS, rules.INVALID_TYPE),
    ("huge_field_value", sales_line("F22", payment=HUGE).encode(), RULE_VIOLATIONS, rules.INVALID_VALUE),
    (
        "huge_number",
        sales_line("F23", quantity="99999999999999999999999").encode(),
        RULE_VIOLATIONS,
        rules.INVALID_TYPE,
    ),
    ("quoted_number", b"F24,1," + TS.encode() + b',S001,P001,C001,"2","9.99",0.1,card', ACCEPTED, None),
]
# case → a fragment of the quarantine reason, where docs/reliability.md quotes one
SALES_REASONS: dict[str, str] = {
    "wrong_column_count": "line has 9 fields, header has 10",
    "broken_quoting": "broken quoting",
    "non_utf8_bytes": f"line is not valid UTF-8: byte 0xff at byte offset {NON_UTF8_LINE.index(0xFF)}",
    "wrong_type": "quantity 'two' is not a whole number",
    "conflicting_duplicate": f"same key as sales/{D}/pos_clean.csv:2 (arrived {D}, kept) but different quantity",
    "timestamp_without_offset": "has no UTC offset (ISO-8601 with offset required",
    "nan_price": "unit_price 'NaN' is not a number",
    "infinity_price": "unit_price 'Infinity' is not a number",
    "huge_field_value": f"payment_method '{HUGE[:60]}…' is longer than 64 characters",
}


@dataclass
class Landing:
    files: dict[str, bytes]  # path relative to the landing root → content
    expected: list[Expected]


def landing_files() -> Landing:
    """The hostile landing zone of one arrival day, with the clean master data it refers to."""
    files: dict[str, bytes] = {
        f"stores/{D}/stores.csv": (
            "store_id,name,city,region,format,opened_on,status,updated_at\n"
            f"S001,Main Street,Lyon,South,supermarket,2020-01-01,open,{D}T06:00:00+00:00\n"
            f"S002,Harbour,Nantes,West,express,2021-05-01,open,{D}T06:00:00+00:00\n"
        ).encode(),
        f"products/{D}/products.jsonl": (
            json.dumps(
                {
                    "product_id": "P001",
                    "name": "Tea",
                    "category": "grocery",
                    "brand": "Acme",
                    "unit_cost": "1.20",
                    "list_price": "9.99",
                    "status": "active",
                    "updated_at": f"{D}T06:00:00+00:00",
                }
            )
            + "\n"
            + json.dumps(
                {
                    "product_id": "P002",
                    "name": "Mug",
                    "category": "home",
                    "brand": "Acme",
                    "unit_cost": 2.5,
                    "list_price": 12.0,
                    "status": "active",
                    "updated_at": f"{D}T06:00:00+00:00",
                }
            )
            + "\n"
        ).encode(),
        # C001 changes twice on the same day: two SCD2 versions
        f"customers/{D}/customers.csv": (
            "customer_id,first_name,last_name,email,phone,city,country,birth_date,loyalty_tier,updated_at\n"
            f"C001,Ada,Lovelace,ada.lovelace@example.com,+33 6 12 34 56 78,Lyon,FR,1985-02-03,silver,{D}T05:00:00+00:00\n"
            f"C002,Alan,Turing,alan.turing@example.org,+44 20 7946 0958,London,GB,1979-06-23,none,{D}T05:00:00+00:00\n"
            f"C001,,,,,Paris,,,gold,{D}T07:00:00+00:00\n"
        ).encode(),
        f"inventory/{D}/inventory.csv": f"snapshot_date,store_id,product_id,on_hand_qty\n{D},S001,P001,40\n{D},S002,P002,7\n".encode(),
        # the clean export: sales and a return
        f"sales/{D}/pos_clean.csv": "\n".join(
            [
                SALES_HEADER,
                sales_line("C-1"),
                sales_line("C-1", 2, product="P002", quantity="1", price="12.00", discount="0"),
                sales_line("C-2", store="S002", customer="", quantity="-1", payment="cash"),
            ]
        ).encode()
        + b"\n",
    }
    expected = [
        Expected("clean_file", f"sales/{D}/pos_clean.csv:2", ACCEPTED, record_key="C-1:1"),
        Expected("clean_file", f"sales/{D}/pos_clean.csv:3", ACCEPTED, record_key="C-1:2"),
        Expected("clean_file", f"sales/{D}/pos_clean.csv:4", ACCEPTED, record_key="C-2:1"),
    ]

    for case, line, outcome, rule in SALES_LINE_CASES:
        # sorts after pos_clean.csv: the clean copy of a duplicated line is the one kept
        path = f"sales/{D}/pos_hostile_{case}.csv"
        good = f"G-{case}"
        files[path] = SALES_HEADER.encode() + b"\n" + line + b"\n" + sales_line(good).encode() + b"\n"
        key = line.split(b",", 1)[0].decode("utf-8", "replace") + ":1"
        expected.append(Expected(case, f"{path}:2", outcome, rule, key, SALES_REASONS.get(case)))
        expected.append(Expected(case, f"{path}:3", ACCEPTED, record_key=f"{good}:1"))

    def whole_file(case: str, name: str, content: bytes, outcomes: list[Expected]) -> None:
        files[f"sales/{D}/{name}"] = content
        expected.extend(outcomes)

    p = f"sales/{D}"
    whole_file(
        "empty_file", "empty.csv", b"", [Expected("empty_file", f"{p}/empty.csv:0", INGEST_REJECTS, rules.EMPTY_FILE)]
    )
    whole_file(
        "header_only_file",
        "header_only.csv",
        SALES_HEADER.encode() + b"\n",
        [Expected("header_only_file", f"{p}/header_only.csv:0", INGEST_REJECTS, rules.EMPTY_FILE)],
    )
    # cut off in the middle of its last record, as a copy interrupted by a full disk leaves it
    whole_file(
        "truncated_file",
        "truncated.csv",
        (SALES_HEADER + "\n" + sales_line("TR-1") + "\n" + sales_line("TR-2")[:30]).encode(),
        [
            Expected("truncated_file", f"{p}/truncated.csv:2", ACCEPTED, record_key="TR-1:1"),
            Expected("truncated_file", f"{p}/truncated.csv:3", INGEST_REJECTS, rules.MALFORMED_ROW),
        ],
    )
    whole_file(
        "utf8_bom",
        "bom.csv",
        b"\xef\xbb\xbf" + (SALES_HEADER + "\n" + sales_line("BOM-1") + "\n").encode(),
        [Expected("utf8_bom", f"{p}/bom.csv:2", ACCEPTED, record_key="BOM-1:1")],
    )
    whole_file(
        "crlf_line_endings",
        "crlf.csv",
        (SALES_HEADER + "\r\n" + sales_line("CR-1") + "\r\n" + sales_line("CR-2") + "\r\n").encode(),
        [
            Expected("crlf_line_endings", f"{p}/crlf.csv:2", ACCEPTED, record_key="CR-1:1"),
            Expected("crlf_line_endings", f"{p}/crlf.csv:3", ACCEPTED, record_key="CR-2:1"),
        ],
    )
    whole_file(
        "wrong_delimiter",
        "semicolons.csv",
        (SALES_HEADER.replace(",", ";") + "\n" + sales_line("SC-1").replace(",", ";") + "\n").encode(),
        [
            Expected(
                "wrong_delimiter",
                f"{p}/semicolons.csv:2",
                INGEST_REJECTS,
                rules.MALFORMED_ROW,
                reason="the file's header (line 1) lacks key column transaction_id",
            )
        ],
    )
    whole_file(
        "duplicated_header",
        "dup_header.csv",
        (SALES_HEADER.replace("discount", "quantity") + "\n" + sales_line("DH-1") + "\n").encode(),
        [
            Expected(
                "duplicated_header",
                f"{p}/dup_header.csv:2",
                INGEST_REJECTS,
                rules.MALFORMED_ROW,
                reason="the file's header (line 1) repeats column quantity",
            )
        ],
    )
    whole_file(
        "new_unannounced_column",
        "new_column.csv",
        (SALES_HEADER + ",loyalty_card\n" + sales_line("NC-1") + ",LC-77\n").encode(),
        [Expected("new_unannounced_column", f"{p}/new_column.csv:2", ACCEPTED, record_key="NC-1:1")],
    )

    # reference data: a second products file of the day, hostile lines before a clean one
    path = f"products/{D}/products_hostile.jsonl"
    files[path] = (
        b"\n".join(
            [
                b'{"product_id": "P005", "name": "Jam", "list_price": ',
                b'["P006", "Honey"]',
                b'{"product_id": "P007", "name": "Salt", "product_id": "P008"}',
                json.dumps(
                    {
                        "product_id": "P003",
                        "name": "Cup",
                        "category": "home",
                        "brand": "Acme",
                        "unit_cost": "1.00",
                        "list_price": "4.50",
                        "status": "active",
                        "updated_at": f"{D}T06:00:00+00:00",
                    }
                ).encode(),
            ]
        )
        + b"\n"
    )
    expected += [
        Expected(
            "reference_invalid_json",
            f"{path}:1",
            INGEST_REJECTS,
            rules.INVALID_JSON,
            reason="invalid JSON at column 53: Expecting value",
        ),
        Expected(
            "reference_not_an_object",
            f"{path}:2",
            INGEST_REJECTS,
            rules.NOT_AN_OBJECT,
            reason="JSON value is an array, expected an object",
        ),
        Expected(
            "reference_repeated_key",
            f"{path}:3",
            INGEST_REJECTS,
            rules.INVALID_JSON,
            reason="invalid JSON: an object repeats key 'product_id'",
        ),
        Expected("reference_clean_line", f"{path}:4", ACCEPTED, record_key="P003"),
    ]
    return Landing(files, expected)


def write_landing(root: Path, landing: Landing) -> Path:
    for relative, content in landing.files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


# ---------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------


def event(tid: str, *, lines: object = None, **fields: object) -> dict:
    base = {
        "schema_version": 1,
        "transaction_id": tid,
        "event_time": TS,
        "store_id": "S001",
        "customer_id": "C002",
        "payment_method": "card",
    }
    base.update(fields)
    base["lines"] = (
        lines
        if lines is not None
        else [{"line_number": 1, "product_id": "P002", "quantity": 1, "unit_price": 12.0, "discount": 0}]
    )
    return base


def _line(**over: object) -> list[dict]:
    line = {"line_number": 1, "product_id": "P002", "quantity": 1, "unit_price": 12.0, "discount": 0}
    line.update(over)
    return [line]


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


KAFKA_NON_UTF8 = b'{"transaction_id": "K07\xff\xfe"}'

# (case, message value, outcome, rule); every value is sent between two clean events
KAFKA_CASES: list[tuple[str, bytes | None, str, str | None]] = [
    ("invalid_json", b'{"transaction_id": "K01", "lines": [', INGEST_REJECTS, rules.INVALID_JSON),
    ("json_array_not_object", b"[1, 2, 3]", INGEST_REJECTS, rules.NOT_AN_OBJECT),
    ("json_string_not_object", b'"K03"', INGEST_REJECTS, rules.NOT_AN_OBJECT),
    ("json_null", b"null", INGEST_REJECTS, rules.NOT_AN_OBJECT),
    ("empty_message", b"", INGEST_REJECTS, rules.INVALID_JSON),
    ("null_message", None, INGEST_REJECTS, rules.INVALID_JSON),
    ("non_utf8_bytes", KAFKA_NON_UTF8, INGEST_REJECTS, rules.INVALID_ENCODING),
    ("deeply_nested_json", b"[" * 20_000 + b"]" * 20_000, INGEST_REJECTS, rules.INVALID_JSON),
    (
        "duplicated_json_key",
        b'{"transaction_id": "K09", "transaction_id": "K09b", "lines": []}',
        INGEST_REJECTS,
        rules.INVALID_JSON,
    ),
    ("deeply_nested_lines", json.dumps(event("K10", lines=_nested(60))).encode(), RULE_VIOLATIONS, rules.INVALID_TYPE),
    (
        "lines_not_an_array",
        json.dumps(event("K11", lines="three apples")).encode(),
        RULE_VIOLATIONS,
        rules.INVALID_TYPE,
    ),
    ("lines_empty", json.dumps(event("K12", lines=[])).encode(), RULE_VIOLATIONS, rules.MISSING_KEY),
    ("missing_key", json.dumps(event("K13", store_id=None)).encode(), RULE_VIOLATIONS, rules.MISSING_KEY),
    ("wrong_type", json.dumps(event("K14", lines=_line(quantity=[1]))).encode(), RULE_VIOLATIONS, rules.INVALID_TYPE),
    (
        "negative_price",
        json.dumps(event("K15", lines=_line(unit_price=-1))).encode(),
        RULE_VIOLATIONS,
        rules.NEGATIVE_PRICE,
    ),
    (
        "discount_out_of_range",
        json.dumps(event("K16", lines=_line(discount=-0.2))).encode(),
        RULE_VIOLATIONS,
        rules.DISCOUNT_OUT_OF_RANGE,
    ),
    ("zero_quantity", json.dumps(event("K17", lines=_line(quantity=0))).encode(), RULE_VIOLATIONS, rules.ZERO_QUANTITY),
    ("unknown_store", json.dumps(event("K18", store_id="S404")).encode(), FLAGGED, rules.UNKNOWN_STORE),
    (
        "unknown_product",
        json.dumps(event("K19", lines=_line(product_id="P404"))).encode(),
        FLAGGED,
        rules.UNKNOWN_PRODUCT,
    ),
    (
        "unknown_customer",
        json.dumps(event("K20", customer_id="C404")).encode(),
        FLAGGED,
        rules.UNKNOWN_CUSTOMER,
    ),
    (
        "late_event",
        json.dumps(event("K21", event_time="2026-10-01T10:00:00+01:00")).encode(),
        RULE_VIOLATIONS,
        rules.LATE_EVENT,
    ),
    (
        "future_event",
        json.dumps(event("K22", event_time="2026-12-01T10:00:00+01:00")).encode(),
        RULE_VIOLATIONS,
        rules.FUTURE_EVENT,
    ),
    (
        "distant_past_timestamp",
        json.dumps(event("K23", event_time="0001-01-01T00:00:00+00:00")).encode(),
        RULE_VIOLATIONS,
        rules.LATE_EVENT,
    ),
    (
        "distant_future_timestamp",
        json.dumps(event("K24", event_time="9999-12-31T23:59:59-12:00")).encode(),
        RULE_VIOLATIONS,
        rules.FUTURE_EVENT,
    ),
    (
        "timestamp_without_offset",
        json.dumps(event("K25", event_time=f"{D} 10:00")).encode(),
        RULE_VIOLATIONS,
        rules.INVALID_TYPE,
    ),
    (
        "timestamp_as_epoch_number",
        json.dumps(event("K26", event_time=1_794_000_000)).encode(),
        RULE_VIOLATIONS,
        rules.INVALID_TYPE,
    ),
    # Python's json reads the non-standard NaN / Infinity tokens; Silver refuses them as numbers
    (
        "nan_price",
        b'{"schema_version": 1, "transaction_id": "K27", "event_time": "'
        + TS.encode()
        + b'", "store_id": "S001", "customer_id": "C002", "payment_method": "card", "lines": [{"line_number": 1, "product_id": "P002", '
        b'"quantity": 1, "unit_price": NaN, "discount": 0}]}',
        RULE_VIOLATIONS,
        rules.INVALID_TYPE,
    ),
    (
        "infinity_quantity",
        b'{"schema_version": 1, "transaction_id": "K28", "event_time": "'
        + TS.encode()
        + b'", "store_id": "S001", "customer_id": "C002", "payment_method": "card", "lines": [{"line_number": 1, "product_id": "P002", '
        b'"quantity": Infinity, "unit_price": 1, "discount": 0}]}',
        RULE_VIOLATIONS,
        rules.INVALID_TYPE,
    ),
    (
        "huge_field_value",
        json.dumps(event("K29", payment_method="y" * 100_000)).encode(),
        RULE_VIOLATIONS,
        rules.INVALID_VALUE,
    ),
    (
        "numbers_as_strings",
        json.dumps(
            event("K30", lines=_line(quantity="3", unit_price="12.00", discount="0.05", line_number="1"))
        ).encode(),
        ACCEPTED,
        None,
    ),
    ("new_unannounced_field", json.dumps({**event("K31"), "basket_id": "B-9"}).encode(), ACCEPTED, None),
]
# case → a fragment of the quarantine reason, where docs/reliability.md quotes one
KAFKA_REASONS: dict[str, str] = {
    "invalid_json": "invalid JSON at column 37: Expecting value",
    "json_array_not_object": "JSON value is an array, expected an object",
    "json_string_not_object": "JSON value is a string, expected an object",
    "json_null": "JSON value is null, expected an object",
    "empty_message": "message has no value (null or zero bytes)",
    "null_message": "message has no value (null or zero bytes)",
    "non_utf8_bytes": f"message value is not valid UTF-8: byte 0xff at byte offset {KAFKA_NON_UTF8.index(0xFF)}",
    "deeply_nested_json": "invalid JSON: nested too deeply to read",
    "duplicated_json_key": "invalid JSON: an object repeats key 'transaction_id'",
    "deeply_nested_lines": "is not an array of JSON objects",
    "lines_not_an_array": """lines '"three apples"' is not an array of JSON objects""",  # quoted as the JSON it is
    "lines_empty": "lines is an empty array",
    "timestamp_without_offset": "has no UTC offset (ISO-8601 with offset required",
    "huge_field_value": f"payment_method '{'y' * 60}…' is longer than 64 characters",
}
KAFKA_DUPLICATE_OF = "K-OK-0"  # an exact re-send of the first clean event


def kafka_messages() -> tuple[list[KafkaMessage], list[Expected]]:
    ts = int(dt.datetime(2026, 11, 10, 11, tzinfo=dt.UTC).timestamp() * 1000)
    messages: list[KafkaMessage] = []
    expected: list[Expected] = []

    def add(
        value: bytes | None, case: str, outcome: str, rule: str | None, key: str | None, reason: str | None = None
    ) -> None:
        index = len(messages)
        messages.append(KafkaMessage(index=index, key=f"k{index}", timestamp_ms=ts + index, value=value))
        expected.append(Expected(case, f"kafka:#{index}", outcome, rule, key, reason))

    add(json.dumps(event("K-OK-0")).encode(), "clean_event", ACCEPTED, None, "K-OK-0:1")
    for i, (case, value, outcome, rule) in enumerate(KAFKA_CASES):
        tid = None
        if outcome in (ACCEPTED, RULE_VIOLATIONS):
            tid = json.loads(value.replace(b"NaN", b"0").replace(b"Infinity", b"0"))["transaction_id"]
        add(value, case, outcome, rule, f"{tid}:1" if tid else None, KAFKA_REASONS.get(case))
        add(json.dumps(event(f"K-OK-{i + 1}")).encode(), case, ACCEPTED, None, f"K-OK-{i + 1}:1")
    add(
        json.dumps(event(KAFKA_DUPLICATE_OF)).encode(),
        "exact_duplicate_event",
        DUPLICATE,
        None,
        f"{KAFKA_DUPLICATE_OF}:1",
    )
    return messages, expected
