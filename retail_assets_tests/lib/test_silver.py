from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from decimal import Decimal
from types import SimpleNamespace

import pyarrow as pa

from retail_assets.lib.engine.checkpoint import SharedCheckpoint, SharedResult
from retail_assets.lib.registry import rules
from retail_assets.lib.registry.tables import (
    BRONZE_CUSTOMERS,
    BRONZE_INVENTORY,
    BRONZE_POS_TRANSACTIONS,
    BRONZE_PRODUCTS,
    BRONZE_SALES_FILES,
    BRONZE_STORES,
    KAFKA_TOPIC,
    QUARANTINE_INGEST_REJECTS,
    QUARANTINE_RULE_VIOLATIONS,
    SILVER_CUSTOMERS,
    SILVER_INVENTORY,
    SILVER_PRODUCTS,
    SILVER_RETURNS,
    SILVER_SALES_LINES,
    SILVER_STORES,
    TableSpec,
)
from retail_assets.lib.transforms import silver
from retail_assets.lib.transforms.ingest import PosEvents

D = dt.date(2026, 10, 1)
NOW = dt.datetime(2026, 10, 5, tzinfo=dt.UTC)
BATCH = "run-silver"


def day(offset: int) -> dt.date:
    return D + dt.timedelta(days=offset)


def assert_schema(df, spec: TableSpec) -> None:
    assert [(f.name, f.dataType.simpleString()) for f in df.schema] == [(c.name, c.type) for c in spec.columns]


def bronze(spark, spec: TableSpec, rows: list[dict]):
    """Bronze file rows: contract fields as given, lineage filled in (one file per arrival day)."""
    fields = [c.name for c in spec.columns if not c.name.startswith("_")]
    full = []
    for i, row in enumerate(rows):
        arrival = row.get("_arrival_date", D)
        path = row.get("_source_file", f"{spec.name}/{arrival}/{spec.name}.csv")
        line = row.get("_source_line", i + 2)
        full.append(
            {
                **{f: row.get(f) for f in fields},
                "_source_file": path,
                "_source_line": line,
                "_source": f"{path}:{line}",
                "_raw_record": row.get("_raw_record", ",".join(str(row.get(f) or "") for f in fields)),
                "_raw_bytes": None,
                "_parse_error": row.get("_parse_error"),
                "_parse_reason": row.get("_parse_reason"),
                "_extra": row.get("_extra"),
                "_ingested_at": NOW,
                "_batch_id": "run-bronze",
                "_arrival_date": arrival,
            }
        )
    return spark.createDataFrame(pa.Table.from_pylist(full, schema=spec.arrow_schema()))


def sale(
    txid="T1",
    ln="1",
    *,
    et="2026-10-01T10:00:00+02:00",
    store="S1",
    product="P1",
    customer="C1",
    qty="2",
    price="10.00",
    disc="0",
    pay="card",
    **lineage,
) -> dict:
    return {
        "transaction_id": txid,
        "line_number": ln,
        "event_time": et,
        "store_id": store,
        "product_id": product,
        "customer_id": customer,
        "quantity": qty,
        "unit_price": price,
        "discount": disc,
        "payment_method": pay,
        **lineage,
    }


def pos_frame(spark, events: list[tuple[object, dt.date]]):
    """Bronze pos_transactions from (event dict | raw bytes | None, arrival date); offsets in list order."""
    pos = PosEvents(batch_id="run-bronze", ingested_at=NOW)
    for offset, (event, arrival) in enumerate(events):
        value = event if event is None or isinstance(event, bytes) else json.dumps(event).encode()
        pos.add(
            value,
            topic=KAFKA_TOPIC,
            partition=0,
            offset=offset,
            timestamp_ms=int(NOW.timestamp() * 1000),
            arrival_date=arrival,
        )
    return spark.createDataFrame(pos.table())


def known(spark, **first_arrivals):
    """known_keys rows: keyword `S1=date` etc.; the kind comes from the id's first letter."""
    kinds = {"S": "store", "P": "product", "C": "customer"}
    rows = [(kinds[k[0]], k, v) for k, v in first_arrivals.items()]
    return spark.createDataFrame(rows, "kind string, key string, first_arrival_date date")


def default_known(spark):
    early = day(-30)
    return known(spark, S1=early, S2=early, P1=early, P2=early, P3=early, C1=early, C2=early)


def run_sales(spark, files: list[dict] = (), events=(), *, known_keys=None, lateness_days=2):
    frames = []
    if files:
        frames.append(silver.sales_candidates_from_files(bronze(spark, BRONZE_SALES_FILES, list(files))))
    if events:
        frames.append(silver.sales_candidates_from_events(pos_frame(spark, list(events))))
    candidates = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
    return silver.clean_sales(
        candidates, known_keys or default_known(spark), lateness_days=lateness_days, batch_id=BATCH
    )


def collect_all(result) -> SimpleNamespace:
    """Every output of a result as rows; the rules are evaluated once (the shared input persisted)."""
    result.classified.persist()
    try:
        names = [f.name for f in dataclasses.fields(result) if f.name not in ("classified", "spec")]
        return SimpleNamespace(**{n: getattr(result, n).collect() for n in names})
    finally:
        result.classified.unpersist()


def by_key(rows):
    return {r["record_key"] if "record_key" in r else f"{r['transaction_id']}:{r['line_number']}": r for r in rows}


# ---------------------------------------------------------------------------------------------


def test_each_sales_rule_first_by_precedence_with_every_failure_listed(spark):
    files = [
        sale("T01", customer=None),  # anonymous: fine
        sale(None),
        sale("T03", et="2026-10-01T10:00:00"),
        sale("T04", et="yesterday"),
        sale("T05", price="NaN"),
        sale("T06", price="-1.00"),
        sale("T07", disc="1.5"),
        sale("T08", qty="0"),
        sale("T09", pay="bitcoin"),
        sale("T10", store="S9"),
        sale("T11", product="P9"),
        sale("T12", customer="C9"),
        sale("T13", qty="0", price="-5", pay="cheque"),
        sale("T14", qty="1.5"),
        sale("T15", price="9.999"),
        sale("T16", disc="-0.1"),
        sale("T17", price=None),
        sale("T18", qty="2000000000", price="99999999.99"),  # amount beyond decimal(18,2)
        sale("T19", price="123456789012.5"),
        sale("T20", disc="0.12345"),
        sale("T21", disc="100"),
        sale("T22", "0"),
        sale("T23", qty="99999999999"),
    ]
    result = run_sales(spark, files)
    out = collect_all(result)
    violations = by_key(out.violations)
    expected = {
        ":1": rules.MISSING_KEY,
        "T03:1": rules.INVALID_TYPE,
        "T04:1": rules.INVALID_TYPE,
        "T05:1": rules.INVALID_TYPE,
        "T06:1": rules.NEGATIVE_PRICE,
        "T07:1": rules.DISCOUNT_OUT_OF_RANGE,
        "T08:1": rules.ZERO_QUANTITY,
        "T13:1": rules.NEGATIVE_PRICE,
        "T14:1": rules.INVALID_TYPE,
        "T15:1": rules.INVALID_TYPE,
        "T16:1": rules.DISCOUNT_OUT_OF_RANGE,
        "T17:1": rules.MISSING_KEY,
        "T18:1": rules.INVALID_VALUE,
        "T19:1": rules.INVALID_TYPE,
        "T20:1": rules.INVALID_TYPE,
        "T21:1": rules.DISCOUNT_OUT_OF_RANGE,
        "T22:0": rules.INVALID_VALUE,
        "T23:1": rules.INVALID_TYPE,
    }
    assert {k: v["rule"] for k, v in violations.items()} == expected
    assert "no UTC offset" in violations["T03:1"]["reason"]
    assert "'NaN' is not a number" in violations["T05:1"]["reason"]
    assert "has more than 4 decimal places" in violations["T20:1"]["reason"]
    assert "out of range for decimal(12,2)" in violations["T19:1"]["reason"]
    multi = violations["T13:1"]["reason"]
    assert (
        multi.index("unit_price '-5' is negative")
        < multi.index("quantity is 0")
        < multi.index("payment_method 'cheque'")
    )
    assert violations["T08:1"]["original_record"].startswith("T08,1,")
    assert all(
        v["_batch_id"] == BATCH and v["event_date"] == D and v["source_table"] == "bronze.sales_files"
        for v in violations.values()
        if v["record_key"] not in ("T04:1", "T03:1")
    )
    # warn-level rules keep the line and name themselves in its flags
    flags = {r["transaction_id"]: r["quality_flags"] for r in out.sales_lines}
    assert flags == {
        "T01": [],
        "T09": [rules.UNEXPECTED_VALUE],
        "T10": [rules.UNKNOWN_STORE],
        "T11": [rules.UNKNOWN_PRODUCT],
        "T12": [rules.UNKNOWN_CUSTOMER],
    }
    assert next(r for r in out.sales_lines if r["transaction_id"] == "T01")["customer_id"] is None
    assert_schema(result.violations, QUARANTINE_RULE_VIOLATIONS)
    assert_schema(result.sales_lines, SILVER_SALES_LINES)


def test_amounts_round_half_up_returns_positive_and_time_is_utc_with_local_date(spark):
    files = [
        sale("T1", qty="3", price="0.35", disc="0.5"),  # gross 1.05, discount 0.525 → 0.53
        sale("T2", qty="-2", price="10.00", disc="0.125", et="2026-10-01T23:30:00-05:00"),
        sale("T3", qty="1", price="4.5", disc=None),
    ]
    result = run_sales(spark, files)
    out = collect_all(result)
    sales = by_key(out.sales_lines)
    (ret,) = out.returns
    assert_schema(result.sales_lines, SILVER_SALES_LINES)
    assert_schema(result.returns, SILVER_RETURNS)

    t1 = sales["T1:1"]
    assert (t1["gross_amount"], t1["discount_amount"], t1["net_amount"]) == (
        Decimal("1.05"),
        Decimal("0.53"),
        Decimal("0.52"),
    )
    assert (
        t1["channel"] == "store_file"
        and t1["_batch_id"] == BATCH
        and t1["_source"] == "sales_files/2026-10-01/sales_files.csv:2"
    )
    assert t1["event_time"] == dt.datetime(2026, 10, 1, 8, 0)  # UTC (session time zone is UTC)
    t3 = sales["T3:1"]
    assert (
        t3["discount"] == Decimal("0") and t3["unit_price"] == Decimal("4.50") and t3["net_amount"] == Decimal("4.50")
    )

    assert ret["transaction_id"] == "T2" and ret["quantity"] == 2
    assert (ret["gross_amount"], ret["discount_amount"], ret["net_amount"]) == (
        Decimal("20.00"),
        Decimal("2.50"),
        Decimal("17.50"),
    )
    assert ret["event_time"] == dt.datetime(2026, 10, 2, 4, 30)
    assert ret["event_date"] == D  # the store's own calendar day
    assert out.violations == [] and out.duplicates == []


def test_late_and_future_boundaries(spark):
    arrival = day(4)
    files = [
        sale("LATE_OK", et="2026-10-03T12:00:00+00:00", _arrival_date=arrival),  # exactly L=2 days late
        sale("LATE", et="2026-10-02T12:00:00+00:00", _arrival_date=arrival),  # L+1
        sale("NEXT_DAY", et="2026-10-06T00:30:00+02:00", _arrival_date=arrival),  # +1 day
        sale("FUTURE", et="2026-10-07T12:00:00+00:00", _arrival_date=arrival),  # +2 days
        sale("SAME", et="2026-10-05T12:00:00+00:00", _arrival_date=arrival),
    ]
    out = collect_all(run_sales(spark, files, lateness_days=2))
    assert {r["transaction_id"] for r in out.sales_lines} == {"LATE_OK", "NEXT_DAY", "SAME"}
    violations = by_key(out.violations)
    assert {k: v["rule"] for k, v in violations.items()} == {"LATE:1": rules.LATE_EVENT, "FUTURE:1": rules.FUTURE_EVENT}
    assert "3 days before its arrival on 2026-10-05" in violations["LATE:1"]["reason"]
    assert violations["FUTURE:1"]["event_date"] == day(6)


def test_orphans_respect_the_lateness_window(spark):
    arrival = D
    kk = known(spark, S1=day(-1), P1=day(2), P2=day(3), C1=day(0))
    files = [sale("OK", product="P1"), sale("LATE_PRODUCT", product="P2"), sale("ANON", customer=None, product="P1")]
    out = collect_all(run_sales(spark, [dict(f, _arrival_date=arrival) for f in files], known_keys=kk, lateness_days=2))
    # every line is kept; the one whose product arrived after the window is flagged for an inferred member
    flags = {r["transaction_id"]: r["quality_flags"] for r in out.sales_lines}
    assert flags == {"OK": [], "ANON": [], "LATE_PRODUCT": [rules.UNKNOWN_PRODUCT]}
    assert out.violations == []


def test_dedup_exact_vs_conflicting_keeps_earliest(spark):
    files = [
        sale("T1", _arrival_date=day(1), _source_file="sales/b.csv", _source_line=2),  # exact re-send, later arrival
        sale("T1", qty="5", _arrival_date=day(1), _source_file="sales/a.csv", _source_line=9),  # conflicting
        sale("T1", _arrival_date=D, _source_file="sales/z.csv", _source_line=7),  # earliest arrival: kept
        sale("T2", _arrival_date=D, _source_file="sales/a.csv", _source_line=5),
        sale("T2", _arrival_date=D, _source_file="sales/a.csv", _source_line=3),  # same file, earlier line: kept
    ]
    event = {
        "transaction_id": "T1",
        "event_time": "2026-10-01T10:00:00+02:00",
        "store_id": "S1",
        "customer_id": "C1",
        "payment_method": "card",
        "lines": [{"line_number": 1, "product_id": "P1", "quantity": 2, "unit_price": "10.00", "discount": 0}],
    }
    out = collect_all(run_sales(spark, files, events=[(event, day(2))]))
    kept = out.sales_lines
    assert sorted((r["transaction_id"], r["_source"]) for r in kept) == [
        ("T1", "sales/z.csv:7"),
        ("T2", "sales/a.csv:3"),
    ]
    dups = {(r["_source"], r["record_key"]) for r in out.duplicates}
    assert dups == {("sales/b.csv:2", "T1:1"), ("sales/a.csv:5", "T2:1"), (f"{KAFKA_TOPIC}/0/0", "T1:1")}
    (conflict,) = out.violations
    assert conflict["rule"] == rules.CONFLICTING_DUPLICATE and conflict["_source"] == "sales/a.csv:9"
    assert conflict["reason"] == "same key as sales/z.csv:7 (arrived 2026-10-01, kept) but different quantity"


def test_outcomes_do_not_depend_on_the_window(spark):
    """Event date D gives the same outcome for every line from any window covering D-1 … D+L."""
    L = 2
    files = [
        sale("A", _arrival_date=day(-1)),
        sale("A", _arrival_date=day(0)),  # duplicate of the copy that arrived a day earlier
        sale("A", _arrival_date=day(2), qty="9"),  # conflicting
        sale("B", _arrival_date=day(3), et="2026-10-02T09:00:00+02:00"),  # other event date, inside both windows
        sale(
            "A", _arrival_date=day(-2), et="2026-09-28T09:00:00+02:00"
        ),  # same key, other date, only in the wide window
        sale("C", _arrival_date=day(4), et="2026-10-01T09:00:00+02:00"),  # late, only in the wide window
    ]
    bronze_all = bronze(spark, BRONZE_SALES_FILES, files)
    kk = default_known(spark)

    def outcomes(lo, hi):
        window = bronze_all.filter((bronze_all["_arrival_date"] >= day(lo)) & (bronze_all["_arrival_date"] <= day(hi)))
        out = collect_all(
            silver.clean_sales(silver.sales_candidates_from_files(window), kk, lateness_days=L, batch_id=BATCH)
        )
        accepted = {(x["_source"], "accepted") for x in out.sales_lines if x["event_date"] == D}
        quarantined = {(x["_source"], x["rule"]) for x in out.violations if x["event_date"] == D}
        duplicates = {(x["_source"], "duplicate") for x in out.duplicates if x["event_date"] == D}
        return accepted | quarantined | duplicates

    narrow, wide = outcomes(-1, L), outcomes(-3, L + 3)
    path = "sales_files/{}/sales_files.csv:{}"
    assert narrow == {
        (path.format(day(-1), 2), "accepted"),
        (path.format(day(0), 3), "duplicate"),
        (path.format(day(2), 4), rules.CONFLICTING_DUPLICATE),
    }
    assert wide == narrow | {(path.format(day(4), 7), rules.LATE_EVENT)}


def test_one_arrival_day_is_judged_the_same_from_its_copies_alone(spark):
    """The screening of arrival day D classifies D's lines with only the lines of other days
    that share a transaction id: every outcome of D's lines is what the whole window gives."""
    L = 2
    files = [
        sale("T1", _arrival_date=day(-1)),
        sale("T1", _arrival_date=D),  # exact copy of an earlier arrival: duplicate
        sale("T2", _arrival_date=D),  # earliest copy: kept …
        sale("T2", qty="7", _arrival_date=day(2)),  # … over a conflicting later one
        sale("T3", _arrival_date=day(-2), et="2026-09-30T10:00:00+02:00"),
        sale("T3", qty="4", _arrival_date=D, et="2026-09-30T10:00:00+02:00"),  # later conflicting copy
        sale(" T4 ", _arrival_date=D),  # padded id: the same transaction as T4 below
        sale("T4", _arrival_date=day(-1), price="11.00"),
        sale("", _arrival_date=D),  # no transaction id: a violation, compared with nothing
        sale("", _arrival_date=day(1)),
        sale("T5", _arrival_date=D, et="2026-09-27T10:00:00+02:00"),  # late
        *[sale(f"X{i}", _arrival_date=day(i % 7 - 3)) for i in range(14)],  # other transactions, other days
    ]
    candidates = silver.sales_candidates_from_files(bronze(spark, BRONZE_SALES_FILES, files))
    kk = default_known(spark)

    def outcomes(frame):
        classified = silver.clean_sales(frame, kk, lateness_days=L, batch_id=BATCH).classified
        rows = classified.filter(classified["_arrival_date"] == D).collect()
        return {(r["_source"], r["_rule"], r["_duplicate"], r["_reason"]) for r in rows}

    narrowed = silver.candidates_judged_with(candidates, D)
    assert narrowed.count() == 12  # the 8 lines that arrived on D and the 4 copies that share an id with them
    whole = outcomes(candidates)
    assert outcomes(narrowed) == whole
    assert {(rule, duplicate) for _, rule, duplicate, _ in whole} >= {
        (None, True),
        (None, False),
        (rules.CONFLICTING_DUPLICATE, False),
        (rules.MISSING_KEY, False),
        (rules.LATE_EVENT, False),
    }


def test_pos_events_explode_to_lines(spark):
    base = {
        "schema_version": 1,
        "event_time": "2026-10-01T10:00:00+02:00",
        "store_id": "S1",
        "customer_id": None,
        "payment_method": "mobile",
    }
    events = [
        (
            {
                **base,
                "transaction_id": "E1",
                "loyalty": {"points": 3},
                "lines": [
                    {
                        "line_number": 1,
                        "product_id": "P1",
                        "quantity": 2,
                        "unit_price": 1.25,
                        "discount": 0.2,
                        "promo": "X",
                    },
                    {"line_number": 2, "product_id": "P2", "quantity": -1, "unit_price": 3},
                ],
            },
            D,
        ),
        ({**base, "transaction_id": "E2", "lines": "oops"}, D),
        ({**base, "transaction_id": "E3", "lines": []}, D),
        ({**base, "transaction_id": "E4"}, D),
        (
            {
                **base,
                "transaction_id": "E5",
                "lines": [
                    {"line_number": 1, "product_id": "P1", "quantity": 1, "unit_price": 1},
                    {"product_id": "P1", "quantity": 1, "unit_price": 1},
                ],
            },
            D,
        ),
        (b"{broken", D),
    ]
    bronze_pos = pos_frame(spark, events)
    out = collect_all(
        silver.clean_sales(
            silver.sales_candidates_from_events(bronze_pos), default_known(spark), lateness_days=2, batch_id=BATCH
        )
    )

    sales = by_key(out.sales_lines)
    assert set(sales) == {"E1:1", "E5:1"}
    e1 = sales["E1:1"]
    assert e1["_source"] == f"{KAFKA_TOPIC}/0/0" and e1["channel"] == "pos_stream" and e1["customer_id"] is None
    assert (
        e1["unit_price"] == Decimal("1.25")
        and e1["discount_amount"] == Decimal("0.50")
        and e1["payment_method"] == "mobile"
    )
    assert json.loads(e1["extra_attributes"]) == {"loyalty": {"points": 3}, "_line": {"promo": "X"}}
    (ret,) = out.returns
    assert (ret["transaction_id"], ret["line_number"], ret["quantity"], ret["_source"]) == (
        "E1",
        2,
        1,
        f"{KAFKA_TOPIC}/0/0",
    )
    assert json.loads(ret["extra_attributes"]) == {"loyalty": {"points": 3}}

    violations = by_key(out.violations)
    assert {k: v["rule"] for k, v in violations.items()} == {
        "E2": rules.INVALID_TYPE,
        "E3": rules.MISSING_KEY,
        "E4": rules.MISSING_KEY,
        "E5:#2": rules.MISSING_KEY,
    }
    assert "not an array of JSON objects" in violations["E2"]["reason"]
    assert violations["E5:#2"]["original_record"].startswith('{"schema_version"')

    rejects = silver.ingest_rejects(bronze_pos, source_table=BRONZE_POS_TRANSACTIONS.key, batch_id=BATCH).collect()
    assert [(r["_source"], r["rule"]) for r in rejects] == [(f"{KAFKA_TOPIC}/0/5", rules.INVALID_JSON)]
    (count,) = silver.count_records_in(bronze_pos, BRONZE_POS_TRANSACTIONS.key).collect()
    assert count["records"] == 2 + 1 + 1 + 1 + 2 + 1 == len(sales) + 1 + len(violations) + len(rejects)


def test_conservation_and_exactly_once_on_mixed_input(spark):
    files = [
        sale("F1", _arrival_date=D),
        sale("F1", _arrival_date=day(1)),  # duplicate
        sale("F2", qty="-1", _arrival_date=D),  # return
        sale("F3", qty="0", _arrival_date=D),  # violation
        sale(
            "F4",
            _arrival_date=day(1),
            _parse_error=rules.MALFORMED_ROW,
            _parse_reason="line has 3 fields, header has 10",
        ),
        sale("F5", _arrival_date=day(4)),  # late
    ]
    event = {
        "transaction_id": "K1",
        "event_time": "2026-10-01T12:00:00+00:00",
        "store_id": "S1",
        "payment_method": "cash",
        "lines": [{"line_number": n, "product_id": "P1", "quantity": 1, "unit_price": 2} for n in (1, 2, 3)],
    }
    events = [(event, D), (event, day(1)), ({"transaction_id": "K2", "lines": 5}, day(1)), (b"\xff", D)]
    bronze_files, bronze_pos = bronze(spark, BRONZE_SALES_FILES, files), pos_frame(spark, events)
    candidates = silver.sales_candidates_from_files(bronze_files).unionByName(
        silver.sales_candidates_from_events(bronze_pos)
    )
    result = silver.clean_sales(candidates, default_known(spark), lateness_days=2, batch_id=BATCH)
    rejects = silver.ingest_rejects(bronze_files, source_table=BRONZE_SALES_FILES.key, batch_id=BATCH).unionByName(
        silver.ingest_rejects(bronze_pos, source_table=BRONZE_POS_TRANSACTIONS.key, batch_id=BATCH)
    )
    assert_schema(rejects, QUARANTINE_INGEST_REJECTS)

    records_in = Counter()
    for frame, table in ((bronze_files, BRONZE_SALES_FILES.key), (bronze_pos, BRONZE_POS_TRANSACTIONS.key)):
        for row in silver.count_records_in(frame, table).collect():
            records_in[row["_arrival_date"]] += row["records"]
    outputs = collect_all(result)
    out = Counter()
    seen = Counter()
    for rows in (outputs.sales_lines, outputs.returns, outputs.violations, outputs.duplicates, rejects.collect()):
        for row in rows:
            out[row["_arrival_date"]] += 1
            key = row["record_key"] if "record_key" in row else f"{row['transaction_id']}:{row['line_number']}"
            seen[(row["_source"], key if row["_source"].startswith(KAFKA_TOPIC) else None)] += 1
    assert records_in == out == {D: 7, day(1): 6, day(4): 1}
    assert max(seen.values()) == 1  # every source record lands in exactly one place


def test_materialized_results_hold_the_same_rows(spark, tmp_path):
    """A materialized result keeps only what its outputs read (accepted lines drop their raw
    text), yet every output holds exactly the rows the lazy result computes, kept in memory or
    through a Parquet checkpoint other runs read."""
    files = [
        sale("F1", _arrival_date=D),
        sale("F1", _arrival_date=day(1)),  # duplicate
        sale("F1", price="9.99", _arrival_date=day(1)),  # conflicting duplicate
        sale("F2", qty="-1", _arrival_date=D),  # return
        sale("F3", qty="0", _arrival_date=D),  # violation
        sale("F5", _arrival_date=day(4)),  # late
    ]
    event = {
        "transaction_id": "K1",
        "event_time": "2026-10-01T12:00:00+00:00",
        "store_id": "S1",
        "payment_method": "cash",
        "lines": [{"line_number": 1, "product_id": "P1", "quantity": 1, "unit_price": 2}],
    }
    candidates = silver.sales_candidates_from_files(bronze(spark, BRONZE_SALES_FILES, files)).unionByName(
        silver.sales_candidates_from_events(
            pos_frame(spark, [(event, D), ({"transaction_id": "K2", "lines": 5}, day(1))])
        )
    )
    lazy = silver.clean_sales(candidates, default_known(spark), lateness_days=2, batch_id=BATCH)
    inventory = silver.clean_inventory(
        bronze(
            spark,
            BRONZE_INVENTORY,
            [
                {"snapshot_date": "2026-10-01", "store_id": "S1", "product_id": p, "on_hand_qty": q}
                for p, q in (("P1", "1"), ("P1", "1"), ("P9", "2"), ("P2", "-1"))
            ],
        ),
        default_known(spark),
        lateness_days=2,
        batch_id=BATCH,
    )
    shared = SharedResult(SharedCheckpoint(tmp_path / "sales", {"test": "sales"}))
    shared_inventory = SharedResult(SharedCheckpoint(tmp_path / "inventory", {"test": "inventory"}))
    in_session = SharedResult(None)

    def sales_via(cache):
        return lambda r: silver.sales_outputs(cache.computed(r.classification), batch_id=BATCH)

    def inventory_via(cache):
        return lambda r: silver.split_outputs(cache.computed(r.classification), SILVER_INVENTORY, batch_id=BATCH)

    sales_outputs = ("sales_lines", "returns", "violations", "duplicates")
    split_outputs = ("accepted", "violations", "duplicates")
    for result, materialize, outputs in (
        (lazy, sales_via(in_session), sales_outputs),
        (lazy, sales_via(shared), sales_outputs),  # written to Parquet
        (lazy, sales_via(shared), sales_outputs),  # read back
        (inventory, inventory_via(in_session), split_outputs),
        (inventory, inventory_via(shared_inventory), split_outputs),  # written
        (inventory, inventory_via(shared_inventory), split_outputs),  # read back
    ):
        materialized = materialize(result)
        for name in outputs:
            expected = sorted(map(tuple, getattr(result, name).collect()), key=repr)
            assert sorted(map(tuple, getattr(materialized, name).collect()), key=repr) == expected, name
            assert expected, name  # every output has rows to compare
    violations = {r["record_key"]: r["original_record"] for r in sales_via(in_session)(lazy).violations.collect()}
    assert len(violations) >= 3 and all(violations.values())  # the raw text survives where a violation quotes it


def test_known_keys_first_arrival(spark):
    # only the key and arrival columns of the Silver master tables matter
    c = spark.createDataFrame([("C1", day(2)), ("C1", day(1))], "customer_id string, _arrival_date date")
    p = spark.createDataFrame([("P1", day(0))], "product_id string, _arrival_date date")
    s = spark.createDataFrame([("S1", day(3))], "store_id string, _arrival_date date")
    rows = {(r["kind"], r["key"]): r["first_arrival_date"] for r in silver.known_keys(c, p, s).collect()}
    assert rows == {("customer", "C1"): day(1), ("product", "P1"): day(0), ("store", "S1"): day(3)}


def customer(cid="C1", updated="2026-10-01T08:00:00+02:00", **attrs) -> dict:
    base = {
        "customer_id": cid,
        "first_name": "Ada",
        "last_name": "L",
        "email": "ada@example.com",
        "phone": "+44 1",
        "city": "London",
        "country": "GB",
        "birth_date": "1990-05-17",
        "loyalty_tier": "gold",
        "updated_at": updated,
    }
    return {**base, **attrs}


def test_clean_customers(spark):
    rows = [
        customer("C1"),
        customer("C1"),  # exact duplicate change record
        customer("C2"),
        customer("C2", email="other@example.com"),  # same key and updated_at, different content
        customer("C3", updated=None),
        customer("C4", updated="2026-10-01 08:00:00"),
        customer("C5", birth_date="1990-02-30"),
        customer("C6", loyalty_tier="diamond"),
        {
            "customer_id": "C7",
            "city": "Paris",
            "updated_at": "2026-10-02T09:00:00Z",
            "_extra": '{"vip": true}',
        },  # nulls = unchanged
        customer(None),
        customer("C8", birth_date="2019-05-05", email="c8@example"),  # a child, an e-mail without a domain
    ]
    result = silver.clean_master_data(bronze(spark, BRONZE_CUSTOMERS, rows), SILVER_CUSTOMERS, batch_id=BATCH)
    assert_schema(result.accepted, SILVER_CUSTOMERS)
    out = collect_all(result)
    accepted = {r["customer_id"]: r for r in out.accepted}
    assert set(accepted) == {"C1", "C2", "C6", "C7", "C8"}
    assert accepted["C8"]["quality_flags"] == [rules.IMPLAUSIBLE_EMAIL, rules.IMPLAUSIBLE_AGE]
    # an unexpected tier is kept and flagged, not refused
    assert accepted["C6"]["quality_flags"] == [rules.UNEXPECTED_VALUE] and accepted["C1"]["quality_flags"] == []
    assert accepted["C1"]["birth_date"] == dt.date(1990, 5, 17) and accepted["C1"]["updated_at"] == dt.datetime(
        2026, 10, 1, 6, 0
    )
    assert accepted["C2"]["email"] == "ada@example.com"  # earliest copy kept
    assert accepted["C7"]["first_name"] is None and accepted["C7"]["extra_attributes"] == '{"vip": true}'
    assert accepted["C1"]["_batch_id"] == BATCH and accepted["C1"]["_source"] == "customers/2026-10-01/customers.csv:2"

    violations = {r["record_key"]: r for r in out.violations}
    assert {k: v["rule"] for k, v in violations.items()} == {
        "C2@2026-10-01T08:00:00+02:00": rules.CONFLICTING_DUPLICATE,
        "C3@": rules.MISSING_KEY,
        "C4@2026-10-01 08:00:00": rules.INVALID_TYPE,
        "C5@2026-10-01T08:00:00+02:00": rules.INVALID_TYPE,
        "@2026-10-01T08:00:00+02:00": rules.MISSING_KEY,
    }
    assert "email" in violations["C2@2026-10-01T08:00:00+02:00"]["reason"]
    assert "customers.csv:4" in violations["C2@2026-10-01T08:00:00+02:00"]["reason"]
    (dup,) = out.duplicates
    assert (dup["_source"], dup["record_key"], dup["event_date"]) == (
        "customers/2026-10-01/customers.csv:3",
        "C1@2026-10-01T08:00:00+02:00",
        D,
    )


def test_clean_products_and_stores(spark):
    products = [
        {
            "product_id": "P1",
            "name": "Tea",
            "unit_cost": "1.2",
            "list_price": "2.50",
            "status": "active",
            "updated_at": "2026-10-01T00:00:00Z",
        },
        {"product_id": "P2", "unit_cost": "-1", "updated_at": "2026-10-01T00:00:00Z"},
        {"product_id": "P3", "list_price": "abc", "updated_at": "2026-10-01T00:00:00Z"},
        {"product_id": "P4", "status": "retired", "updated_at": "2026-10-01T00:00:00Z"},
    ]
    p = silver.clean_master_data(bronze(spark, BRONZE_PRODUCTS, products), SILVER_PRODUCTS, batch_id=BATCH)
    assert_schema(p.accepted, SILVER_PRODUCTS)
    p = collect_all(p)
    p1, p4 = sorted(p.accepted, key=lambda r: r["product_id"])
    assert (p1["product_id"], p1["unit_cost"], p1["list_price"]) == ("P1", Decimal("1.20"), Decimal("2.50"))
    assert (p4["product_id"], p4["status"], p4["quality_flags"]) == ("P4", "retired", [rules.UNEXPECTED_VALUE])
    assert {r["record_key"].split("@")[0]: r["rule"] for r in p.violations} == {
        "P2": rules.NEGATIVE_PRICE,
        "P3": rules.INVALID_TYPE,
    }

    stores = [
        {
            "store_id": "S1",
            "name": "Central",
            "format": "express",
            "opened_on": "2020-01-31",
            "status": "open",
            "updated_at": "2026-10-01T00:00:00+01:00",
        },
        {"store_id": "S2", "format": "kiosk", "updated_at": "2026-10-01T00:00:00+01:00"},
        {"store_id": "S3", "opened_on": "31/01/2020", "updated_at": "2026-10-01T00:00:00+01:00"},
    ]
    s = silver.clean_master_data(bronze(spark, BRONZE_STORES, stores), SILVER_STORES, batch_id=BATCH)
    assert_schema(s.accepted, SILVER_STORES)
    s = collect_all(s)
    (s1,) = s.accepted
    assert s1["opened_on"] == dt.date(2020, 1, 31) and s1["updated_at"] == dt.datetime(2026, 9, 30, 23, 0)
    assert {r["record_key"].split("@")[0]: r["rule"] for r in s.violations} == {
        "S2": rules.INVALID_VALUE,
        "S3": rules.INVALID_TYPE,
    }


def test_clean_inventory(spark):
    rows = [
        {"snapshot_date": "2026-10-01", "store_id": "S1", "product_id": "P1", "on_hand_qty": "12"},
        {"snapshot_date": "2026-10-01", "store_id": "S1", "product_id": "P1", "on_hand_qty": "12"},  # duplicate
        {"snapshot_date": "2026-10-01", "store_id": "S1", "product_id": "P2", "on_hand_qty": "-3"},
        {"snapshot_date": "2026-10-01", "store_id": "S1", "product_id": "P9", "on_hand_qty": "1"},
        {"snapshot_date": "2026-10-01", "store_id": "S1", "product_id": "P3", "on_hand_qty": None},
        {"snapshot_date": "2026-10-01", "store_id": "S1", "product_id": "P3", "on_hand_qty": "4", "_source_line": 99},
        {"snapshot_date": "2026-10-01", "store_id": "S1", "product_id": "P3", "on_hand_qty": "5", "_source_line": 100},
    ]
    result = silver.clean_inventory(
        bronze(spark, BRONZE_INVENTORY, rows), default_known(spark), lateness_days=2, batch_id=BATCH
    )
    assert_schema(result.accepted, SILVER_INVENTORY)
    out = collect_all(result)
    accepted = sorted((r["product_id"], r["on_hand_qty"], r["quality_flags"]) for r in out.accepted)
    assert accepted == [("P1", 12, []), ("P3", 4, []), ("P9", 1, [rules.UNKNOWN_PRODUCT])]
    assert {(r["record_key"], r["rule"]) for r in out.violations} == {
        ("2026-10-01:S1:P2", rules.INVALID_VALUE),
        ("2026-10-01:S1:P3", rules.MISSING_KEY),
        ("2026-10-01:S1:P3", rules.CONFLICTING_DUPLICATE),
    }
    assert [r["record_key"] for r in out.duplicates] == ["2026-10-01:S1:P1"]


def test_ingest_rejects_carry_rule_reason_and_raw_record(spark):
    source_table = BRONZE_SALES_FILES.key
    rows = [
        sale("OK"),
        sale(
            "BAD", _parse_error=rules.INVALID_ENCODING, _parse_reason="line is not valid UTF-8", _raw_record="T,\\xff"
        ),
    ]
    rejects = silver.ingest_rejects(bronze(spark, BRONZE_SALES_FILES, rows), source_table=source_table, batch_id=BATCH)
    assert_schema(rejects, QUARANTINE_INGEST_REJECTS)
    (r,) = rejects.collect()
    assert (r["rule"], r["reason"], r["original_record"], r["_batch_id"], r["source_table"]) == (
        rules.INVALID_ENCODING,
        "line is not valid UTF-8",
        "T,\\xff",
        BATCH,
        source_table,
    )
