"""The synthetic generator: determinism, clean-data contracts, defect manifest truthfulness, CLI.

Pure Python (no Spark): every check reads the generated files back with the standard library.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter, defaultdict
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest

from retail_assets.lib.registry import rules, tables
from retail_assets.tooling.generator import (
    DEFECT_KINDS,
    SOURCE_TABLES,
    GenerationResult,
    GeneratorConfig,
    KafkaMessage,
    generate,
    load_manifest,
    main,
    read_kafka_messages,
)

DIM_FIELDS = {"customers": tables.CUSTOMER_FIELDS, "products": tables.PRODUCT_FIELDS, "stores": tables.STORE_FIELDS}
DIM_KEY = {"customers": "customer_id", "products": "product_id", "stores": "store_id"}
EVENT_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
UTC_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")
SALES_NAME_RE = re.compile(r"^sales/(\d{4}-\d{2}-\d{2})/pos_(S\d+)_(\d{8})(_\d+)?\.csv$")


# ------------------------------------------------------------------------------------------------
# fixtures and readers
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> GenerationResult:
    return generate(GeneratorConfig.preset("tiny"), tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> GenerationResult:
    return generate(GeneratorConfig.preset("tiny", defects=True), tmp_path_factory.mktemp("dirty"))


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def physical_lines(data: bytes) -> list[bytes]:
    """Lines as the ingest reads them: split on LF, a trailing CR dropped, no phantom last line."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def parse_csv_line(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text), strict=True))


class Landing:
    """Parsed view of a generated landing zone (parseable records only)."""

    def __init__(self, result: GenerationResult):
        self.root = result.landing_root
        self.files = {
            p.relative_to(self.root).as_posix(): p.read_bytes() for p in sorted(self.root.rglob("*")) if p.is_file()
        }
        self.lines = {path: physical_lines(data) for path, data in self.files.items()}
        self.messages = result.kafka_messages
        self.bad_refs = {e["ref"] for e in result.manifest if e["expected"] != "accepted"}
        # every record that parses, per source: (path, line_no, arrival, dict)
        self.records: dict[str, list[tuple[str, int, str, dict]]] = defaultdict(list)
        for path, lines in self.lines.items():
            source, arrival = path.split("/")[:2]
            if not lines:
                continue
            if path.endswith(".csv"):
                try:
                    header = parse_csv_line(lines[0].decode("utf-8"))
                except (UnicodeDecodeError, csv.Error, StopIteration):
                    continue
                for no, raw in enumerate(lines[1:], start=2):
                    try:
                        row = parse_csv_line(raw.decode("utf-8"))
                    except (UnicodeDecodeError, csv.Error, StopIteration):
                        continue
                    if len(row) == len(header):
                        self.records[source].append((path, no, arrival, dict(zip(header, row))))
            else:
                for no, raw in enumerate(lines, start=1):
                    try:
                        obj = json.loads(raw.decode("utf-8"))
                    except (UnicodeDecodeError, ValueError):
                        continue
                    if isinstance(obj, dict):
                        self.records[source].append((path, no, arrival, obj))
        self.events: list[tuple[KafkaMessage, dict]] = []
        for m in self.messages:
            try:
                obj = json.loads(m.value.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            if isinstance(obj, dict):
                self.events.append((m, obj))

    def line(self, ref: str) -> bytes:
        path, no = ref.rsplit(":", 1)
        return self.lines[path][int(no) - 1]

    def header(self, path: str) -> list[str]:
        return parse_csv_line(self.lines[path][0].decode("utf-8"))

    def master(self, source: str, clean_only: bool = True) -> dict[str, list[tuple[datetime, str]]]:
        """key -> [(updated_at, arrival)] over the parseable dimension records."""
        out: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        for path, no, arrival, rec in self.records[source]:
            if clean_only and f"{path}:{no}" in self.bad_refs:
                continue
            key = rec.get(DIM_KEY[source])
            try:
                updated = datetime.fromisoformat(rec["updated_at"])
            except (TypeError, ValueError):
                continue
            if key:
                out[key].append((updated, arrival))
        return out


def sales_lines(view: Landing, skip_refs: set[str] = frozenset()):
    """(channel, arrival date, record dict with tables.SALES_FIELDS, event instant, ref) for every sales line."""
    for path, no, arrival, rec in view.records["sales"]:
        ref = f"{path}:{no}"
        if ref in skip_refs:
            continue
        yield "file", date.fromisoformat(arrival), rec, ref
    for m, ev in view.events:
        ref = f"kafka:#{m.index}"
        if ref in skip_refs:
            continue
        for ln in ev["lines"]:
            rec = {
                "transaction_id": ev.get("transaction_id"),
                "line_number": str(ln["line_number"]),
                "event_time": ev["event_time"],
                "store_id": ev["store_id"],
                "product_id": ln["product_id"],
                "customer_id": ev["customer_id"] or "",
                "quantity": str(ln["quantity"]),
                "unit_price": str(ln["unit_price"]),
                "discount": str(ln["discount"]),
                "payment_method": ev["payment_method"],
            }
            yield "kafka", m.arrival_date, rec, ref


# ------------------------------------------------------------------------------------------------
# config and determinism
# ------------------------------------------------------------------------------------------------


def test_config_defaults_presets_and_validation():
    c = GeneratorConfig()
    assert (c.seed, c.start_date, c.days, c.stores, c.products, c.customers) == (7, date(2026, 11, 1), 7, 6, 120, 400)
    assert c.kafka_share == 0.5 and c.lateness_days == 2 and c.defects is False
    small = GeneratorConfig.preset("small", seed=3)
    assert (small.stores, small.products, small.customers, small.days, small.seed) == (50, 5000, 20000, 7, 3)
    assert GeneratorConfig.size("tiny") == GeneratorConfig.preset("tiny")
    assert GeneratorConfig.preset("medium").transactions_per_store_day > small.transactions_per_store_day
    with pytest.raises(ValueError, match="unknown preset"):
        GeneratorConfig.preset("huge")
    with pytest.raises(TypeError):
        GeneratorConfig.preset("tiny", colour="red")
    with pytest.raises(ValueError, match="kafka_share"):
        GeneratorConfig(kafka_share=1.5)
    with pytest.raises(ValueError, match="days"):
        GeneratorConfig(days=0)


def test_same_config_gives_byte_identical_output(tmp_path, dirty):
    again = generate(GeneratorConfig.preset("tiny", defects=True), tmp_path / "again")
    assert tree(again.out_dir) == tree(dirty.out_dir)
    assert again.manifest == dirty.manifest and again.counts == dirty.counts


def test_other_seed_differs(tmp_path, clean):
    other = generate(GeneratorConfig.preset("tiny", seed=8), tmp_path / "other")
    assert tree(other.out_dir) != tree(clean.out_dir)


def test_refuses_to_mix_into_an_existing_landing_zone(tmp_path):
    cfg = GeneratorConfig.preset("tiny", days=1)
    generate(cfg, tmp_path)
    with pytest.raises(FileExistsError):
        generate(cfg, tmp_path)
    again = generate(cfg, tmp_path, overwrite=True)
    assert again.counts["sales_files"] > 0


# ------------------------------------------------------------------------------------------------
# clean mode
# ------------------------------------------------------------------------------------------------


def test_clean_mode_writes_an_empty_manifest(clean):
    assert clean.manifest == []
    assert json.loads(clean.manifest_path.read_text()) == []
    assert load_manifest(clean.manifest_path) == []
    assert (clean.out_dir / "kafka" / "pos_transactions.jsonl").is_file()


def test_clean_landing_layout_and_sales_format(clean):
    view = Landing(clean)
    assert clean.arrival_dates == GeneratorConfig.preset("tiny").business_dates
    sources = {p.split("/")[0] for p in view.files}
    assert sources == {"sales", "customers", "products", "stores", "inventory"}
    txids: dict[str, list[int]] = defaultdict(list)
    n_lines = 0
    for path, lines in view.lines.items():
        assert lines, f"clean mode never writes an empty file: {path}"
        lines[0].decode("utf-8")
        if not path.startswith("sales/"):
            continue
        m = SALES_NAME_RE.match(path)
        assert m, path
        assert m.group(3) == m.group(1).replace("-", "")
        assert lines[0] == ",".join(tables.SALES_FIELDS).encode()
        for raw in lines[1:]:
            row = parse_csv_line(raw.decode("utf-8"))
            assert len(row) == len(tables.SALES_FIELDS), raw
            rec = dict(zip(tables.SALES_FIELDS, row))
            assert rec["store_id"] == m.group(2)
            assert EVENT_TIME_RE.match(rec["event_time"]), rec
            assert re.fullmatch(r"-?\d+\.\d{2}", rec["unit_price"]) and Decimal(rec["unit_price"]) > 0
            d = Decimal(rec["discount"])
            assert 0 <= d <= 1 and -d.as_tuple().exponent <= 4
            assert int(rec["quantity"]) != 0
            assert rec["payment_method"] in tables.PAYMENT_METHODS
            txids[rec["transaction_id"]].append(int(rec["line_number"]))
            n_lines += 1
    assert n_lines == clean.counts["sales_lines_in_files"] == clean.counts["clean_file_lines"]
    for m_, ev in view.events:
        assert set(ev) == {
            "schema_version",
            "transaction_id",
            "event_time",
            "store_id",
            "customer_id",
            "payment_method",
            "lines",
        }
        assert ev["schema_version"] == 1 and m_.key == ev["transaction_id"]
        assert EVENT_TIME_RE.match(ev["event_time"])
        for ln in ev["lines"]:
            assert set(ln) == {"line_number", "product_id", "quantity", "unit_price", "discount"}
            txids[ev["transaction_id"]].append(ln["line_number"])
    for txid, numbers in txids.items():  # unique across files and Kafka, lines 1..n
        assert re.fullmatch(r"T\d{3}\d{8}\d{5}", txid)
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), txid
    assert len(txids) == clean.counts["clean_transactions"]
    all_lines = list(sales_lines(view))
    assert len(all_lines) == clean.counts["clean_sales_lines"]
    # the mix the pipeline should see
    assert sum(int(r["quantity"]) < 0 for _, _, r, _ in all_lines) > 0
    assert sum(r["customer_id"] == "" for _, _, r, _ in all_lines) > 0
    assert {r["event_time"][-6:] for _, _, r, _ in all_lines} >= {"+01:00", "-05:00"}
    assert Counter(ch for ch, *_ in all_lines).keys() == {"file", "kafka"}


def test_clean_every_referenced_key_exists_before_the_sale(clean):
    check_referential_integrity(clean)
    view = Landing(clean)
    start = clean.config.start_date
    masters = view.master("customers")
    assert [k for k, v in masters.items() if min(v)[0].date() >= start], "customers sign up during the run"


def check_referential_integrity(clean: GenerationResult) -> None:
    view = Landing(clean)
    masters = {s: view.master(s) for s in ("stores", "products", "customers")}
    start = clean.config.start_date
    for source, by_key in masters.items():
        snapshot = [k for k, versions in by_key.items() if min(versions)[1] == start.isoformat()]
        assert snapshot, source
    for _channel, arrival, rec, ref in sales_lines(view):
        instant = datetime.fromisoformat(rec["event_time"])
        for source, field in (("stores", "store_id"), ("products", "product_id"), ("customers", "customer_id")):
            key = rec[field]
            if source == "customers" and key == "":
                continue  # anonymous
            assert key in masters[source], f"{ref}: {field} {key} not in master data"
            first_updated, first_arrival = min(masters[source][key])
            assert first_updated < instant, f"{ref}: {key} updated {first_updated} after sale {instant}"
            assert date.fromisoformat(first_arrival) <= arrival, f"{ref}: {key} master arrives after the sale"


def test_clean_arrivals_stay_within_the_lateness_window(clean):
    gaps = check_arrivals(clean)
    assert gaps[0] > gaps[1] > 0
    view = Landing(clean)
    event_times = [datetime.fromisoformat(ev["event_time"]) for _, ev in view.events]
    assert event_times != sorted(event_times), "Kafka events arrive out of event-time order"


def check_arrivals(clean: GenerationResult) -> Counter:
    view = Landing(clean)
    lateness = clean.config.lateness_days
    gaps: Counter = Counter()
    for _channel, arrival, rec, ref in sales_lines(view):
        gap = (arrival - date.fromisoformat(rec["event_time"][:10])).days
        assert 0 <= gap <= min(1, lateness), (ref, rec["event_time"], arrival)
        gaps[gap] += 1
    assert clean.arrival_dates == clean.config.business_dates
    stamps = [m.timestamp_ms for m in clean.kafka_messages]
    assert stamps == sorted(stamps) and [m.index for m in clean.kafka_messages] == list(range(len(stamps)))
    for m, ev in view.events:
        assert m.timestamp_ms / 1000 > datetime.fromisoformat(ev["event_time"]).timestamp()
    return gaps


def test_clean_dimension_snapshot_and_change_records(clean):
    view = Landing(clean)
    start = clean.config.start_date
    formats = Counter()
    for source, fields in DIM_FIELDS.items():
        key = DIM_KEY[source]
        per_day = defaultdict(list)
        for path, _no, arrival, rec in view.records[source]:
            formats[path.rsplit(".", 1)[1]] += 1
            assert set(rec) == set(fields), (path, rec)
            assert UTC_TIME_RE.match(rec["updated_at"]), rec
            per_day[arrival].append(rec)
        first = per_day.pop(start.isoformat())
        assert all(datetime.fromisoformat(r["updated_at"]).date() < start for r in first)
        assert all(r[f] not in (None, "") for r in first for f in fields)  # full records
        assert len({r[key] for r in first}) == len(first)
        assert per_day, f"{source} changes after the first day"
        partial = 0
        for arrival, recs in per_day.items():
            for r in recs:
                assert r["updated_at"][:10] == arrival
                partial += any(r[f] in (None, "") for f in fields)
        assert partial > 0, "unchanged attributes are null/empty"
    assert formats["csv"] and formats["jsonl"]
    for _path, _no, _arrival, rec in view.records["customers"]:
        if rec["email"]:
            assert re.fullmatch(r"[a-z]+\.[a-z]+\d*@example\.(com|org|net)", rec["email"]), rec["email"]
        if rec["phone"]:
            assert re.fullmatch(r"\+\d{1,3}( \d{1,4})+", rec["phone"]), rec["phone"]
        if rec["loyalty_tier"]:
            assert rec["loyalty_tier"] in tables.LOYALTY_TIERS
    for _, _, _, rec in view.records["products"]:
        assert rec["status"] in (None, "", *tables.PRODUCT_STATUSES)
    for _, _, _, rec in view.records["stores"]:
        assert rec["status"] in (None, "", *tables.STORE_STATUSES) and rec["format"] in (
            None,
            "",
            *tables.STORE_FORMATS,
        )


def test_clean_inventory_snapshots(clean):
    view = Landing(clean)
    stores = set(view.master("stores"))
    snapshots = defaultdict(set)
    for path, lines in view.lines.items():
        if not path.startswith("inventory/"):
            continue
        m = re.fullmatch(r"inventory/(\d{4}-\d{2}-\d{2})/inventory_(\d{8})\.csv", path)
        assert m, path
        snap = datetime.strptime(m.group(2), "%Y%m%d").date()
        assert (date.fromisoformat(m.group(1)) - snap).days in (0, 1)
        assert lines[0] == ",".join(tables.INVENTORY_FIELDS).encode()
        for raw in lines[1:]:
            d, store, product, qty = raw.decode().split(",")
            assert d == snap.isoformat() and store in stores and int(qty) >= 0
            snapshots[snap].add(store)
    assert sorted(snapshots) == clean.config.business_dates
    assert all(v == stores for v in snapshots.values())


def test_kafka_file_round_trips(clean, dirty):
    for result in (clean, dirty):
        loaded = read_kafka_messages(result.kafka_path)
        assert loaded == result.kafka_messages
        assert len(loaded) == result.counts["kafka_events"]
        first = json.loads(result.kafka_path.read_text().splitlines()[0])
        assert set(first) == {"index", "key", "timestamp_ms", "value_b64"}


# ------------------------------------------------------------------------------------------------
# defect mode
# ------------------------------------------------------------------------------------------------


def test_every_defect_kind_appears_at_least_twice(dirty):
    kinds = Counter(e["defect"] for e in dirty.manifest)
    assert set(kinds) == set(DEFECT_KINDS)
    assert min(kinds.values()) >= 2, kinds
    used_rules = {e["rule"] for e in dirty.manifest}
    assert set(rules.INGEST_RULES) <= used_rules
    assert {
        rules.MISSING_KEY,
        rules.INVALID_TYPE,
        rules.NEGATIVE_PRICE,
        rules.DISCOUNT_OUT_OF_RANGE,
        rules.ZERO_QUANTITY,
        rules.UNKNOWN_STORE,
        rules.UNKNOWN_PRODUCT,
        rules.UNKNOWN_CUSTOMER,
        rules.LATE_EVENT,
        rules.FUTURE_EVENT,
        rules.DUPLICATE,
    } <= used_rules
    # both sources of the transaction stream carry the transaction-level defects
    for kind in ("duplicate", "late_event", "future_event", "unknown_store", "invalid_encoding", "new_column"):
        assert {"sales", "kafka"} <= {e["source"] for e in dirty.manifest if e["defect"] == kind}, kind
    assert {e["source"] for e in dirty.manifest if e["defect"] == "invalid_json"} >= {"kafka", "customers"}


def test_manifest_entries_are_well_formed(dirty):
    check_manifest_well_formed(dirty)


def check_manifest_well_formed(dirty: GenerationResult) -> None:
    allowed_rules = set(rules.RULE) | {None}
    seen = set()
    for e in dirty.manifest:
        assert set(e) >= {"defect", "source", "source_table", "ref", "record_key", "expected", "rule"}
        assert e["source_table"] == SOURCE_TABLES[e["source"]]
        assert (e["expected"], e["rule"]) == DEFECT_KINDS[e["defect"]]
        assert e["rule"] in allowed_rules
        if e["source"] == "kafka":
            assert re.fullmatch(r"kafka:#\d+", e["ref"])
        else:
            assert re.fullmatch(rf"{e['source']}/\d{{4}}-\d{{2}}-\d{{2}}/[^/]+:\d+", e["ref"]), e["ref"]
            assert e["ref"].split("/")[1] == e["arrival_date"]
        if e["expected"] == "ingest_rejects":
            assert e["record_key"] is None
        else:
            assert e["record_key"] is not None
        key = (e["ref"], e["record_key"])
        assert key not in seen, f"one defect per record: {key}"
        seen.add(key)
    assert dirty.counts["manifest_entries"] == len(dirty.manifest)
    assert load_manifest(dirty.manifest_path) == dirty.manifest


def _decimal(s) -> Decimal | None:
    try:
        return Decimal(str(s))
    except (InvalidOperation, ValueError):
        return None


def _sales_invalid_type(rec: dict) -> bool:
    try:
        int(rec["quantity"])
        Decimal(rec["unit_price"])
        datetime.fromisoformat(rec["event_time"])
        return False
    except (ValueError, InvalidOperation, TypeError):
        return True


def test_every_manifest_ref_shows_its_defect(dirty):
    check_manifest_refs(dirty)


def check_manifest_refs(dirty: GenerationResult) -> None:
    view = Landing(dirty)
    masters = {s: view.master(s) for s in ("stores", "products", "customers")}
    lateness = dirty.config.lateness_days
    # records by (path, line) / Kafka index, for parsed checks
    parsed = {(p, no): rec for recs in view.records.values() for p, no, _, rec in recs}
    events = {m.index: ev for m, ev in view.events}
    earlier_sales = {}  # line bytes -> first (arrival, path, line)
    for path in sorted(view.lines, key=lambda p: (p.split("/")[1], p)):
        if path.startswith("sales/"):
            for no, raw in enumerate(view.lines[path][1:], start=2):
                earlier_sales.setdefault(raw, (path, no))
    first_value = {}
    for m in dirty.kafka_messages:
        first_value.setdefault(m.value, m.index)

    for e in dirty.manifest:
        kind, source, ref = e["defect"], e["source"], e["ref"]
        where = f"{kind} {ref}"
        if kind in ("empty_file", "header_only_file"):
            path, no = ref.rsplit(":", 1)
            assert no == "0"
            data = view.files[path]
            if kind == "empty_file":
                assert data == b"", where
            else:
                lines = physical_lines(data)
                assert len(lines) == 1, where
                expected = {"sales": tables.SALES_FIELDS, "inventory": tables.INVENTORY_FIELDS}.get(
                    source
                ) or DIM_FIELDS[source]
                assert parse_csv_line(lines[0].decode()) == list(expected)
            continue

        if source == "kafka":
            index = int(ref.split("#")[1])
            msg = dirty.kafka_messages[index]
            raw = msg.value
        else:
            path, no = ref.rsplit(":", 1)
            raw = view.line(ref)

        if kind == "invalid_encoding":
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
            assert b"\xff\xfe" in raw
            continue
        text = raw.decode("utf-8")
        if kind == "invalid_json":
            with pytest.raises(ValueError):
                json.loads(text)
            continue
        if kind == "not_an_object":
            assert not isinstance(json.loads(text), dict), where
            continue
        if kind == "broken_quoting":
            assert text.count('"') % 2 == 1, where
            with pytest.raises(csv.Error):
                parse_csv_line(text)
            continue
        if kind == "malformed_row":
            assert len(parse_csv_line(text)) != len(view.header(path)), where
            continue

        # parsed records: find the record (one Kafka line, or a file row)
        if source == "kafka":
            ev = events[index]
            txid, ln = e["record_key"].rsplit(":", 1)
            assert (ev.get("transaction_id") or "") == txid, where
            line = next(x for x in ev["lines"] if x["line_number"] == int(ln))
            rec = {
                "transaction_id": ev.get("transaction_id"),
                "event_time": ev["event_time"],
                "store_id": ev["store_id"],
                "customer_id": ev["customer_id"] or "",
                **line,
            }
            arrival = msg.arrival_date
        else:
            rec = parsed[(path, int(no))]
            arrival = date.fromisoformat(path.split("/")[1])
            if source == "sales":
                assert e["record_key"] == f"{rec['transaction_id']}:{rec['line_number']}", where
            elif source == "inventory":
                assert e["record_key"] == f"{rec['snapshot_date']}:{rec['store_id']}:{rec['product_id']}"
            else:
                assert e["record_key"] == f"{rec[DIM_KEY[source]]}@{rec['updated_at']}", where

        if kind == "missing_key":
            keys = {
                "sales": ("transaction_id", "product_id"),
                "kafka": ("transaction_id",),
                "inventory": ("store_id", "product_id"),
            }.get(source, (DIM_KEY.get(source),))
            assert any(rec.get(k) in (None, "") for k in keys), where
        elif kind == "invalid_type":
            if source in ("sales", "kafka"):
                assert _sales_invalid_type(rec), where
            elif source == "inventory":
                assert not rec["on_hand_qty"].isdigit(), where
            else:
                bad_time = not UTC_TIME_RE.match(str(rec["updated_at"]))
                bad_price = source == "products" and (
                    _decimal(rec["list_price"]) is None or _decimal(rec["unit_cost"]) is None
                )
                assert bad_time or bad_price, where
        elif kind == "negative_price":
            if source in ("sales", "kafka"):
                assert Decimal(str(rec["unit_price"])) < 0, where
            else:
                assert min(Decimal(str(rec["list_price"])), Decimal(str(rec["unit_cost"]))) < 0, where
        elif kind == "discount_out_of_range":
            assert not 0 <= Decimal(str(rec["discount"])) <= 1, where
        elif kind == "zero_quantity":
            assert int(rec["quantity"]) == 0, where
        elif kind in ("unknown_store", "unknown_product", "unknown_customer"):
            src, field = {
                "unknown_store": ("stores", "store_id"),
                "unknown_product": ("products", "product_id"),
                "unknown_customer": ("customers", "customer_id"),
            }[kind]
            assert rec[field] and rec[field] not in masters[src], where
        elif kind in ("late_event", "future_event"):
            gap = (arrival - date.fromisoformat(rec["event_time"][:10])).days
            assert gap > lateness if kind == "late_event" else gap < -1, where
        elif kind == "duplicate":
            if source == "kafka":
                assert first_value[msg.value] < index, where
                assert dirty.kafka_messages[first_value[msg.value]].key == msg.key
            else:
                assert earlier_sales[raw] != (path, int(no)), where
        elif kind == "new_column":
            if source == "sales":
                header = view.header(path)
                assert header == [*tables.SALES_FIELDS, "promo_code"], where
            elif source == "kafka":
                assert "channel_hint" in ev, where
            else:
                assert "loyalty_points" in rec, where
        elif kind == "null_update":
            fields = [f for f in DIM_FIELDS[source] if f not in (DIM_KEY[source], "updated_at")]
            assert all(rec.get(f) in (None, "") for f in fields), where
        elif kind == "out_of_order_change":
            key = rec[DIM_KEY[source]]
            mine = datetime.fromisoformat(rec["updated_at"])
            assert any(
                updated > mine and date.fromisoformat(arr) < arrival for updated, arr in view.master(source)[key]
            ), where
        else:  # pragma: no cover
            pytest.fail(f"unchecked kind {kind}")


def test_kafka_event_level_defects_have_one_entry_per_line(dirty):
    by_ref = defaultdict(list)
    for e in dirty.manifest:
        if e["source"] == "kafka":
            by_ref[e["ref"]].append(e)
    multi = 0
    for ref, entries in by_ref.items():
        msg = dirty.kafka_messages[int(ref.split("#")[1])]
        if entries[0]["expected"] == "ingest_rejects":
            assert len(entries) == 1
            continue
        ev = json.loads(msg.value)
        assert sorted(int(e["record_key"].rsplit(":", 1)[1]) for e in entries) == [
            ln["line_number"] for ln in ev["lines"]
        ]
        multi += len(entries) > 1
    assert multi > 0


def test_defects_leave_clean_records_untouched(clean, dirty):
    check_clean_untouched(clean, dirty)


def check_clean_untouched(clean: GenerationResult, dirty: GenerationResult) -> None:
    """Every clean record is still there, byte for byte (a new column only appends a field).

    Apart from manifest entries, defect mode adds only the newer partner of each out-of-order
    change: a plain change record of the same key, arriving the day before.
    """
    dirty_view = Landing(dirty)
    marked = {e["ref"] for e in dirty.manifest if e["defect"] != "new_column"}
    partners = {
        (e["source"], e["record_key"].split("@")[0]) for e in dirty.manifest if e["defect"] == "out_of_order_change"
    }
    for source in ("customers", "products", "stores"):
        for path, no, _arrival, rec in dirty_view.records[source]:
            if (source, rec[DIM_KEY[source]]) in partners and f"{path}:{no}" not in marked:
                if (
                    not (clean.landing_root / path).exists()
                    or physical_lines((clean.landing_root / path).read_bytes()).count(dirty_view.line(f"{path}:{no}"))
                    == 0
                ):
                    marked.add(f"{path}:{no}")
    promo = {e["ref"] for e in dirty.manifest if e["defect"] == "new_column" and e["source"] == "sales"}
    loyalty = {e["ref"] for e in dirty.manifest if e["defect"] == "new_column" and e["source"] == "customers"}
    for path, clean_data in tree(clean.landing_root).items():
        kept = []
        for no, raw in enumerate(physical_lines(dirty_view.files[path]), start=1):
            ref = f"{path}:{no}"
            if ref in marked:
                continue
            if ref in promo:
                raw = raw.rsplit(b",", 1)[0]
            if ref in loyalty:
                obj = json.loads(raw)
                del obj["loyalty_points"]
                raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
            kept.append(raw)
        if kept and kept[0].endswith(b",promo_code"):
            kept[0] = kept[0].rsplit(b",", 1)[0]
        assert kept == physical_lines(clean_data), path
    dirty_kafka = {(m.key, m.timestamp_ms): m.value for m in dirty.kafka_messages}
    for m in clean.kafka_messages:
        value = dirty_kafka[(m.key, m.timestamp_ms)]
        if value != m.value:
            obj = json.loads(value)
            assert obj.pop("channel_hint")
            assert obj == json.loads(m.value)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(dict(days=2, seed=11), id="two-days"),
        pytest.param(dict(lateness_days=0, seed=12), id="no-lateness"),
        pytest.param(dict(kafka_share=1.0, seed=13), id="kafka-only"),
        pytest.param(dict(kafka_share=0.0, max_lines_per_transaction=1, seed=14), id="files-only"),
        pytest.param(dict(stores=17, days=5, seed=15, return_rate=0.3, anonymous_rate=0.9), id="wide"),
    ],
)
def test_contracts_hold_for_other_configs(tmp_path, overrides):
    clean = generate(GeneratorConfig.preset("tiny", **overrides), tmp_path / "clean")
    dirty = generate(GeneratorConfig.preset("tiny", defects=True, **overrides), tmp_path / "dirty")
    assert clean.manifest == []
    check_referential_integrity(clean)
    check_arrivals(clean)
    check_manifest_well_formed(dirty)
    check_manifest_refs(dirty)
    check_clean_untouched(clean, dirty)


def test_defect_counts_scale_with_defect_rate(tmp_path):
    low = generate(GeneratorConfig.preset("tiny", defects=True, defect_rate=0.0), tmp_path / "low")
    high = generate(GeneratorConfig.preset("tiny", defects=True, defect_rate=0.3), tmp_path / "high")
    assert set(Counter(e["defect"] for e in low.manifest)) == set(DEFECT_KINDS)  # minimums still apply

    def injected(result):  # records added as defects (new columns ride on clean records)
        return sum(e["defect"] != "new_column" for e in result.manifest)

    assert injected(high) > 1.5 * injected(low)


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def test_cli_generates_and_summarises(tmp_path, capsys, dirty):
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--preset", "tiny", "--seed", "7", "--defects", "--start-date", "2026-11-01"]) == 0
    printed = capsys.readouterr().out
    assert "manifest" in printed and "kafka" in printed and str(len(dirty.manifest)) in printed
    assert tree(out) == tree(dirty.out_dir)
    # a second run into the same directory needs --force
    assert main(["--out", str(out), "--preset", "tiny", "--days", "2"]) == 2
    assert main(["--out", str(out), "--preset", "tiny", "--days", "2", "--force"]) == 0
    assert json.loads((out / "manifest.json").read_text()) == []
    assert sorted(p.name for p in (out / "landing" / "sales").iterdir()) == ["2026-11-01", "2026-11-02"]


def test_cli_module_entry_point(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "mod"
    proc = subprocess.run(
        [sys.executable, "-m", "retail_assets.tooling.generator", "--out", str(out), "--preset", "tiny", "--days", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sales:" in proc.stdout
    assert (out / "manifest.json").read_text() == "[]\n"
