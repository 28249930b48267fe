from __future__ import annotations

import datetime as dt
import json

import pytest

from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import (
    BRONZE_CUSTOMERS,
    BRONZE_POS_TRANSACTIONS,
    BRONZE_PRODUCTS,
    BRONZE_SALES_FILES,
    KAFKA_TOPIC,
)
from retail_assets.lib.sources.landing import LandingFile
from retail_assets.lib.transforms.ingest import PosEvents, parse_landing_file

INGESTED_AT = dt.datetime(2026, 10, 2, 6, 0, tzinfo=dt.UTC)
ARRIVAL = dt.date(2026, 10, 2)
HEADER = (
    b"transaction_id,line_number,event_time,store_id,product_id,customer_id,quantity,unit_price,discount,payment_method"
)
LINE = b"T1,1,2026-10-01T10:00:00+02:00,S001,P001,C001,2,9.99,0.1,card"


def _file(tmp_path, relative: str, content: bytes) -> LandingFile:
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return LandingFile(
        path=path, relative=relative, source=relative.split("/")[0], arrival_date=ARRIVAL, size=len(content), mtime=0.0
    )


def _parse(tmp_path, relative, content, spec=BRONZE_SALES_FILES):
    table = parse_landing_file(_file(tmp_path, relative, content), spec, batch_id="run-1", ingested_at=INGESTED_AT)
    assert table.schema == spec.arrow_schema()
    return table.to_pylist()


def test_csv_lines_become_rows_with_lineage(tmp_path):
    rows = _parse(
        tmp_path,
        "sales/2026-10-02/pos.csv",
        HEADER + b"\n" + LINE + b"\n" + b"T1,2,2026-10-01T10:00:00+02:00,S001,P002,,1,5,,cash\n",
    )
    assert [r["_source"] for r in rows] == ["sales/2026-10-02/pos.csv:2", "sales/2026-10-02/pos.csv:3"]
    first, second = rows
    assert first["_source_file"] == "sales/2026-10-02/pos.csv" and first["_source_line"] == 2
    assert first["transaction_id"] == "T1" and first["unit_price"] == "9.99" and first["payment_method"] == "card"
    assert first["_raw_record"] == LINE.decode() and first["_raw_bytes"] is None
    assert first["_parse_error"] is None and first["_extra"] is None
    assert first["_batch_id"] == "run-1" and first["_arrival_date"] == ARRIVAL and first["_ingested_at"] == INGESTED_AT
    # empty strings are absent values
    assert second["customer_id"] is None and second["discount"] is None


def test_crlf_bom_and_blank_lines(tmp_path):
    content = b"\xef\xbb\xbf" + HEADER + b"\r\n" + LINE + b"\r\n\r\n   \r\n" + LINE.replace(b"T1,1", b"T1,2") + b"\r\n"
    rows = _parse(tmp_path, "sales/2026-10-02/crlf.csv", content)
    assert [r["_source_line"] for r in rows] == [2, 5]  # physical line numbers; blank lines 3-4 skipped
    assert (
        rows[0]["transaction_id"] == "T1" and rows[0]["payment_method"] == "card"
    )  # no '\r' left, BOM gone from the header
    assert all(r["_parse_error"] is None for r in rows)


def test_malformed_csv_lines_are_rejected_one_by_one(tmp_path):
    content = b"\n".join(
        [
            HEADER,
            b"T1,1,2026-10-01T10:00:00+02:00,S001,P001,C001,2,9.99,0.1",  # 9 fields
            b'T1,2,"2026-10-01T10:00:00+02:00,S001,P001,C001,2,9.99,0.1,card',  # broken quote
            b"T1,3,2026-10-01T10:00:00+02:00,S001,P\xff01,C001,2,9.99,0.1,card",  # not UTF-8
            b'T1,4,2026-10-01T10:00:00+02:00,S001,"P,004",C001,2,9.99,0.1,card',  # quoted comma: fine
        ]
    )
    rows = {r["_source_line"]: r for r in _parse(tmp_path, "sales/2026-10-02/bad.csv", content)}
    assert rows[2]["_parse_error"] == rules.MALFORMED_ROW
    assert rows[2]["_parse_reason"] == "line has 9 fields, header has 10"
    assert rows[3]["_parse_error"] == rules.MALFORMED_ROW and "quot" in rows[3]["_parse_reason"]
    assert rows[4]["_parse_error"] == rules.INVALID_ENCODING
    bad_line = content.split(b"\n")[3]
    offset = bad_line.index(b"\xff")
    assert f"byte 0xff at byte offset {offset}" in rows[4]["_parse_reason"]
    assert (
        rows[4]["_raw_bytes"] == bad_line
        and rows[4]["_raw_record"].startswith("T1,3,")
        and "\\xff" in rows[4]["_raw_record"]
    )
    assert rows[4]["transaction_id"] is None
    assert rows[5]["_parse_error"] is None and rows[5]["product_id"] == "P,004"
    # a broken line never swallows the next
    assert len(rows) == 4


def test_empty_and_header_only_files(tmp_path):
    (empty,) = _parse(tmp_path, "sales/2026-10-02/empty.csv", b"")
    assert empty["_source"] == "sales/2026-10-02/empty.csv:0" and empty["_source_line"] == 0
    assert empty["_parse_error"] == rules.EMPTY_FILE and empty["_raw_record"] == ""
    (header_only,) = _parse(tmp_path, "sales/2026-10-02/header.csv", HEADER + b"\r\n")
    assert header_only["_parse_error"] == rules.EMPTY_FILE and header_only["_raw_record"] == HEADER.decode()
    assert "no data lines" in header_only["_parse_reason"]
    (jsonl,) = _parse(tmp_path, "customers/2026-10-02/c.jsonl", b"\n\n", BRONZE_CUSTOMERS)
    assert jsonl["_parse_error"] == rules.EMPTY_FILE and jsonl["_source"] == "customers/2026-10-02/c.jsonl:0"


def test_new_csv_column_goes_to_extra(tmp_path):
    content = HEADER + b",loyalty_points,channel_hint\n" + LINE + b",12,\n"
    (row,) = _parse(tmp_path, "sales/2026-10-02/evolved.csv", content)
    assert row["_parse_error"] is None and row["payment_method"] == "card"
    assert json.loads(row["_extra"]) == {"channel_hint": None, "loyalty_points": "12"}
    assert row["_extra"].index("channel_hint") < row["_extra"].index("loyalty_points")  # sorted keys


def test_unusable_header_rejects_every_line_with_reason(tmp_path):
    content = b"txn,line_number,event_time\nT1,1,x\nT2,1,y\n"
    rows = _parse(tmp_path, "sales/2026-10-02/nokey.csv", content)
    assert [r["_parse_error"] for r in rows] == [rules.MALFORMED_ROW] * 2
    assert "header (line 1) lacks key column transaction_id" in rows[0]["_parse_reason"]
    dup = _parse(tmp_path, "sales/2026-10-02/dup.csv", HEADER + b",store_id\n" + LINE + b",S1\n")
    assert dup[0]["_parse_error"] == rules.MALFORMED_ROW and "repeats column store_id" in dup[0]["_parse_reason"]


def test_jsonl_nested_extra_and_bad_lines(tmp_path):
    lines = [
        json.dumps(
            {
                "product_id": "P1",
                "name": "Tea",
                "unit_cost": 1.2,
                "list_price": 2,
                "status": "active",
                "updated_at": "2026-10-01T08:00:00Z",
                "dimensions": {"w": 1},
                "tags": ["a"],
                "eco": True,
            }
        ),
        json.dumps(
            {
                "product_id": "P2",
                "name": None,
                "brand": "",
                "unit_cost": {"amount": 1},
                "updated_at": "2026-10-01T08:00:00Z",
            }
        ),
        '{"product_id": "P3", ',
        "[1, 2]",
        '"just a string"',
    ]
    content = ("\n".join(lines) + "\n").encode()
    rows = _parse(tmp_path, "products/2026-10-02/p.jsonl", content, BRONZE_PRODUCTS)
    first, second, broken, array, string = rows
    assert first["unit_cost"] == "1.2" and first["list_price"] == "2" and first["name"] == "Tea"
    assert json.loads(first["_extra"]) == {"dimensions": {"w": 1}, "eco": True, "tags": ["a"]}
    assert second["name"] is None and second["brand"] is None and second["status"] is None
    assert second["unit_cost"] == '{"amount": 1}' and second["_extra"] is None
    assert broken["_parse_error"] == rules.INVALID_JSON and "column" in broken["_parse_reason"]
    assert array["_parse_error"] == rules.NOT_AN_OBJECT and "array" in array["_parse_reason"]
    assert string["_parse_error"] == rules.NOT_AN_OBJECT
    assert [r["_source_line"] for r in rows] == [1, 2, 3, 4, 5]


def test_unsupported_file_type_is_one_reject(tmp_path):
    (row,) = _parse(tmp_path, "sales/2026-10-02/export.xlsx", b"PK\x03\x04binary")
    assert row["_parse_error"] == rules.MALFORMED_ROW and ".xlsx" in row["_parse_reason"] and row["_source_line"] == 0


def _pos_table(*values_and_offsets):
    events = PosEvents(batch_id="run-1", ingested_at=INGESTED_AT)
    for value, offset in values_and_offsets:
        events.add(
            value, topic=KAFKA_TOPIC, partition=1, offset=offset, timestamp_ms=1_790_917_200_000, arrival_date=ARRIVAL
        )
    return events.table()


def _pos(value, offset=7):
    (row,) = _pos_table((value, offset)).to_pylist()
    return row


def test_pos_message_fields_lines_and_extra():
    event = {
        "schema_version": 2,
        "transaction_id": "T9",
        "event_time": "2026-10-01T10:00:00+02:00",
        "store_id": "S001",
        "customer_id": None,
        "payment_method": "card",
        "lines": [{"line_number": 1, "product_id": "P001", "quantity": 2, "unit_price": 9.99, "discount": 0}],
        "device": {"id": "till-3"},
    }
    row = _pos(json.dumps(event).encode())
    assert (
        row["_source"] == f"{KAFKA_TOPIC}/1/7"
        and row["_topic"] == KAFKA_TOPIC
        and row["_partition"] == 1
        and row["_offset"] == 7
    )
    assert row["schema_version"] == "2" and row["customer_id"] is None and row["_parse_error"] is None
    assert json.loads(row["lines"]) == event["lines"]
    assert json.loads(row["_extra"]) == {"device": {"id": "till-3"}}
    assert row["_raw_record"] == json.dumps(event)


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (b"{not json", rules.INVALID_JSON),
        (b"[1]", rules.NOT_AN_OBJECT),
        (b'{"a": "\xff"}', rules.INVALID_ENCODING),
        (None, rules.INVALID_JSON),
        (b"", rules.INVALID_JSON),
    ],
)
def test_pos_message_parse_errors(value, rule):
    row = _pos(value)
    assert row["_parse_error"] == rule and row["_parse_reason"]
    assert row["_raw_record"] is not None and row["transaction_id"] is None
    assert row["_raw_bytes"] == (value if rule == rules.INVALID_ENCODING else None)


def test_pos_events_table_has_registry_schema():
    table = _pos_table((b'{"transaction_id": "T1", "lines": "oops"}', 1), (None, 2))
    assert table.schema == BRONZE_POS_TRANSACTIONS.arrow_schema()
    assert table.column("lines").to_pylist() == ['"oops"', None]
    assert table.column("_kafka_timestamp").to_pylist() == [dt.datetime(2026, 10, 2, 5, 0, tzinfo=dt.UTC)] * 2
    assert table.column("_source").to_pylist() == [f"{KAFKA_TOPIC}/1/1", f"{KAFKA_TOPIC}/1/2"]


def test_compact_and_spaced_events_give_the_same_row():
    event = {
        "schema_version": 1,
        "transaction_id": "T1",
        "store_id": "S001",
        "lines": [{"line_number": 1, "product_id": "P1", "unit_price": 2.5}],
        "till": 3,
    }
    compact, spaced = _pos(json.dumps(event, separators=(",", ":")).encode()), _pos(json.dumps(event).encode())
    assert {k: v for k, v in compact.items() if k != "_raw_record"} == {
        k: v for k, v in spaced.items() if k != "_raw_record"
    }
    assert (
        compact["lines"] == '[{"line_number":1,"product_id":"P1","unit_price":2.5}]'
        and compact["_extra"] == '{"till": 3}'
    )


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (b'{"transaction_id":"K09","transaction_id":"K09b","lines":[]}', "transaction_id"),
        (b'{"transaction_id":"K10","lines":[{"line_number":1,"line_number":2}]}', "line_number"),
    ],
)
def test_a_repeated_key_in_compact_json_is_rejected(value, key):
    row = _pos(value)
    assert row["_parse_error"] == rules.INVALID_JSON and f"repeats key {key!r}" in row["_parse_reason"]
    assert row["transaction_id"] is None and row["_raw_record"] == value.decode()


def test_json_the_strict_reader_accepts_is_still_accepted():
    # orjson refuses NaN; the strict reader, whose verdict counts, reads it
    row = _pos(b'{"transaction_id":"T1","lines":[],"score":NaN}')
    assert row["_parse_error"] is None and row["transaction_id"] == "T1" and row["_extra"] == '{"score": NaN}'


def test_pos_events_past_one_arrow_batch_keep_every_row_in_order(monkeypatch):
    monkeypatch.setattr(PosEvents, "BATCH_ROWS", 3)
    table = _pos_table(*[(b'{"transaction_id":"T%d","lines":[]}' % i if i % 4 else None, i) for i in range(10)])
    assert table.num_rows == 10 and table.schema == BRONZE_POS_TRANSACTIONS.arrow_schema()
    assert table.column("_offset").to_pylist() == list(range(10))
    assert table.column("transaction_id").to_pylist() == [None if i % 4 == 0 else f"T{i}" for i in range(10)]
