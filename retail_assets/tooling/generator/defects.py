"""Defect injection (SPEC §7) with a manifest entry per affected record.

Runs after the clean world is built and uses its own random stream, so every clean record is
byte-for-byte the same as in clean mode. Defects are *added* records (fresh transactions with
their own ids, extra dimension/inventory rows, extra files, re-sent copies), except the
accepted "new column" cases, which add a field to existing clean records.

Longer than the project's usual module: one writer per defect kind of SPEC §7, sharing the
budget and manifest bookkeeping of one injector.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from retail_assets.lib.registry.tables import LOYALTY_TIERS, PAYMENT_METHODS

from . import vocab
from .buffer import BufferedFile, Marked, csv_field, json_line
from .core import (
    DIM_FIELDS,
    DIM_KEYS,
    INVENTORY_HEADER,
    SALES_HEADER,
    Build,
    KafkaMsg,
    dim_line,
    discount_number,
    price_number,
)
from .model import DEFECT_KINDS, SOURCE_TABLES
from .world import DAY, epoch_of, fmt_local, fmt_utc

BAD_BYTES = "\udcff\udcfe"  # written as the raw bytes b"\xff\xfe" (surrogateescape)

SALES_LINE_KINDS = (
    "malformed_row",
    "broken_quoting",
    "invalid_encoding",
    "missing_key",
    "invalid_type",
    "negative_price",
    "discount_out_of_range",
    "zero_quantity",
    "unknown_store",
    "unknown_product",
    "unknown_customer",
    "late_event",
    "future_event",
)
KAFKA_EVENT_KINDS = (
    "invalid_json",
    "not_an_object",
    "invalid_encoding",
    "missing_key",
    "invalid_type",
    "negative_price",
    "discount_out_of_range",
    "zero_quantity",
    "unknown_store",
    "unknown_product",
    "unknown_customer",
    "late_event",
    "future_event",
)
# event-level Kafka defects affect every line of a (possibly multi-line) event
KAFKA_MULTI_LINE = {"unknown_store", "unknown_customer", "late_event", "future_event", "missing_key"}
DIM_KINDS: dict[str, tuple[str, ...]] = {
    "customers": (
        "malformed_row",
        "broken_quoting",
        "invalid_json",
        "not_an_object",
        "invalid_encoding",
        "missing_key",
        "invalid_type",
        "out_of_order_change",
        "null_update",
        "new_column",
    ),
    "products": (
        "malformed_row",
        "broken_quoting",
        "invalid_json",
        "not_an_object",
        "invalid_encoding",
        "missing_key",
        "invalid_type",
        "negative_price",
        "out_of_order_change",
        "null_update",
    ),
    "stores": ("malformed_row", "invalid_json", "missing_key", "invalid_type", "out_of_order_change", "null_update"),
}
INVENTORY_KINDS = ("malformed_row", "invalid_encoding", "missing_key", "invalid_type")
# (source, kind, fmt) of whole-file defects
EMPTY_FILES = (
    ("sales", "empty_file", "csv"),
    ("customers", "empty_file", "jsonl"),
    ("stores", "empty_file", "jsonl"),
    ("sales", "header_only_file", "csv"),
    ("products", "header_only_file", "csv"),
    ("inventory", "header_only_file", "csv"),
)
NAME_FIELD = {"customers": "first_name", "products": "name", "stores": "name"}
INVALID_TYPES = {
    "customers": (("updated_at", "not-a-date"), ("updated_at", "31/11/2026 08:00")),
    "products": (("updated_at", "not-a-date"), ("list_price", "abc"), ("unit_cost", "n/a")),
    "stores": (("updated_at", "not-a-date"), ("updated_at", "tomorrow")),
}
OUT_OF_ORDER_ATTRS = {"customers": "loyalty_tier", "products": "name", "stores": "name"}


def inject_defects(b: Build, rng: random.Random) -> None:
    Injector(b, rng).run()


class Injector:
    def __init__(self, b: Build, rng: random.Random):
        self.b, self.rng = b, rng
        self.cfg, self.w = b.config, b.world
        self.days = self.cfg.days
        self.L = self.cfg.lateness_days
        self.later_days = list(range(1, self.days)) or [0]
        self._seq: dict[tuple[int, str], int] = {}
        self._unknown = 0
        self._order = 10**12
        self._suffix: dict[tuple[str, int], int] = {}
        self._not_stocked: dict[int, list[int]] = {}
        self.promo_paths: set[str] = set()
        self.snapshot_customers = [c for c in self.w.customers if c.created_day < 0]

    # -- helpers --------------------------------------------------------------------------------
    def budget(self, n_records: int, n_kinds: int, minimum: int = 2) -> int:
        return max(minimum, round(self.cfg.defect_rate * n_records / max(1, n_kinds)))

    def entry(self, kind: str, source: str, record_key: str | None, note: str) -> dict[str, Any]:
        expected, rule = DEFECT_KINDS[kind]
        return {
            "defect": kind,
            "source": source,
            "source_table": SOURCE_TABLES[source],
            "ref": None,
            "record_key": record_key if expected != "ingest_rejects" else None,
            "expected": expected,
            "rule": rule,
            "note": note,
        }

    def unknown(self) -> int:
        self._unknown += 1
        return self._unknown

    def next_order(self) -> int:
        self._order += 1
        return self._order

    def next_seq(self, store_num: int, ymd: str) -> int:
        j = self._seq.get((store_num, ymd), 0)
        self._seq[(store_num, ymd)] = j + 1
        return self.w.defect_seq(j)

    def insert(self, f: BufferedFile, line: str) -> None:
        f.lines.insert(self.rng.randint(0, len(f.lines)), line)

    def free_sales_file(self, store_id: str, arrival: int) -> BufferedFile:
        """A new `pos_<store>_<date>_<n>.csv` (n >= 2) that does not exist yet."""
        n = self._suffix.get((store_id, arrival), 1)
        while True:
            n += 1
            path = self.b.sales_path(store_id, arrival, n)
            if path not in self.b.landing.files:
                self._suffix[(store_id, arrival)] = n
                return self.b.sales_file(store_id, arrival, n)

    def day_iso(self, day: int) -> tuple[str, str]:
        d = self.cfg.start_date + timedelta(days=day)
        return d.isoformat(), d.strftime("%Y%m%d")

    def fresh_transaction(
        self,
        s,
        arrival: int,
        n_lines: int = 1,
        day_shift: int = 0,
        store_num: int | None = None,
        customer_id: str | None = None,
    ) -> dict[str, Any]:
        """A normal-looking transaction of store `s` (event on arrival + day_shift), not in the clean data."""
        rng, w = self.rng, self.w
        ev_day = arrival + day_shift
        diso, ymd = self.day_iso(ev_day)
        sec = rng.randint(s.open_s, s.close_s)
        num = s.num if store_num is None else store_num
        ev_utc = epoch_of(self.cfg.start_date) + ev_day * DAY - s.offset_min * 60 + sec
        arrival_utc = epoch_of(self.cfg.start_date) + arrival * DAY - s.offset_min * 60 + sec
        if customer_id is None:
            customer_id = "" if rng.random() < 0.3 else rng.choice(self.snapshot_customers).customer_id
        lines = []
        for ln in range(1, n_lines + 1):
            p = w.products[rng.choice(s.assortment)]
            pstr, pc = p.price_at(ev_utc)
            disc = "0" if rng.random() < 0.8 else rng.choice(("0.1", "0.15", "0.2"))
            lines.append([ln, p.product_id, rng.randint(1, 3), pstr, pc, disc])
        return {
            "txid": w.txid(num, ymd, self.next_seq(num, ymd)),
            "event_time": fmt_local(diso, sec, s.offset),
            "store_id": w.store_id(num),
            "customer_id": customer_id,
            "payment_method": rng.choice(PAYMENT_METHODS),
            "lines": lines,
            "ts_ms": arrival_utc * 1000 + rng.randint(2000, 300000),
        }

    # -- run ------------------------------------------------------------------------------------
    def run(self) -> None:
        n_file_lines = self.b.clean_file_lines
        n_kafka = len(self.b.kafka)
        # first the defects that modify or copy clean records (before any line is inserted)
        self.sales_new_column()
        self.sales_duplicates(max(2, self.budget(n_file_lines, len(SALES_LINE_KINDS) + 1) // 2))
        self.kafka_duplicates_and_new_column(self.budget(n_kafka, len(KAFKA_EVENT_KINDS) + 2))
        self.customer_new_column()
        # then added records
        # kinds with several variants get at least one of each
        for kind in SALES_LINE_KINDS:
            for i in range(self.budget(n_file_lines, len(SALES_LINE_KINDS) + 1, 3 if kind == "invalid_type" else 2)):
                self.sales_line(kind, i)
        for kind in KAFKA_EVENT_KINDS:
            minimum = 3 if kind in ("invalid_type", "missing_key") else 2
            for i in range(self.budget(n_kafka, len(KAFKA_EVENT_KINDS) + 2, minimum)):
                self.kafka_event(kind, i)
        for source, kinds in DIM_KINDS.items():
            n_records = sum(len(f.lines) for f in self.b.landing.files.values() if f.source == source)
            for kind in kinds:
                if kind == "new_column":
                    continue
                minimum = len(INVALID_TYPES[source]) if kind == "invalid_type" else 2
                for i in range(self.budget(n_records, len(kinds), minimum)):
                    self.dimension(source, kind, i)
        n_inv = sum(len(f.lines) for f in self.b.landing.files.values() if f.source == "inventory")
        inventory_files = sorted(p for p, f in self.b.landing.files.items() if f.source == "inventory")
        for kind in INVENTORY_KINDS:
            for i in range(self.budget(n_inv, len(INVENTORY_KINDS))):
                self.inventory_row(kind, i, inventory_files)
        for source, kind, fmt in EMPTY_FILES:
            self.empty_file(source, kind, fmt)

    # -- sales files ----------------------------------------------------------------------------
    def sales_new_column(self) -> None:
        """An unannounced `promo_code` column on a couple of store files from the second day on."""
        b = self.b
        candidates = sorted(
            p
            for p, f in b.landing.files.items()
            if f.source == "sales" and f.lines and (self.days == 1 or f.arrival != self.day_iso(0)[0])
        )
        for path in sorted(self.rng.sample(candidates, min(2, len(candidates)))):
            f = b.landing.files[path]
            f.header = f.header + ",promo_code"
            new_lines = []
            for line in f.lines:
                txid, ln, _ = line.split(",", 2)
                code = self.rng.choice(vocab.PROMO_CODES)
                new_lines.append(
                    Marked(
                        f"{line},{code}",
                        [self.entry("new_column", "sales", f"{txid}:{ln}", "extra CSV column promo_code")],
                    )
                )
            f.lines = new_lines
            self.promo_paths.add(path)

    def sales_duplicates(self, count: int) -> None:
        """Clean transactions re-sent verbatim in a later file of the same or the next arrival day."""
        b, rng = self.b, self.rng
        candidates = [t for t in b.file_txns if t.arrival_day == t.event_day and t.path not in self.promo_paths]
        chosen = sorted(rng.sample(range(len(candidates)), min(count, len(candidates))))
        plans = []
        for ci in chosen:
            t = candidates[ci]
            lines = b.landing.files[t.path].lines[t.start : t.start + t.n_lines]
            store_id = self.w.stores[t.store_idx].store_id
            target = None
            if self.L >= 1 and t.arrival_day + 1 < self.days and rng.random() < 0.5:
                path = b.sales_path(store_id, t.arrival_day + 1)
                if path in b.landing.files and path not in self.promo_paths:
                    target = b.landing.files[path]
            plans.append((t, lines, store_id, target))
        for t, lines, store_id, target in plans:
            copies = []
            for line in lines:
                txid, ln, _ = line.split(",", 2)
                copies.append(Marked(line, [self.entry("duplicate", "sales", f"{txid}:{ln}", f"re-send of {t.path}")]))
            if target is None:
                self.free_sales_file(store_id, t.arrival_day).lines.extend(copies)
            else:
                pos = rng.randint(0, len(target.lines))
                target.lines[pos:pos] = copies

    def sales_line(self, kind: str, i: int) -> None:
        rng, w, b = self.rng, self.w, self.b
        arrival = rng.randrange(self.days)
        s = rng.choice(w.stores)
        f = b.landing.get(b.sales_path(s.store_id, arrival))
        if f is None or f.path in self.promo_paths:
            f = self.free_sales_file(s.store_id, arrival)
        shift = {"late_event": -(self.L + 2), "future_event": 3}.get(kind, 0)
        num = w.unknown_store_num(self.unknown()) if kind == "unknown_store" else None
        cust = w.unknown_customer_id(self.unknown()) if kind == "unknown_customer" else None
        t = self.fresh_transaction(s, arrival, 1, shift, num, cust)
        ln, pid, q, pstr, pc, disc = t["lines"][0]
        fields = [
            t["txid"],
            str(ln),
            t["event_time"],
            t["store_id"],
            pid,
            t["customer_id"],
            str(q),
            pstr,
            disc,
            t["payment_method"],
        ]
        note = kind
        if kind == "malformed_row":
            if i % 2 == 0:
                del fields[8]
                note = "9 columns (discount missing)"
            else:
                fields.append("x")
                note = "11 columns (stray trailing field)"
        elif kind == "broken_quoting":
            fields[4] = '"' + fields[4]
            note = "unclosed quote in product_id"
        elif kind == "invalid_encoding":
            fields[4] = fields[4][:2] + BAD_BYTES + fields[4][2:]
            note = "bytes ff fe inside product_id"
        elif kind == "missing_key":
            col = (4, 0)[i % 2]
            fields[col] = ""
            note = f"empty {SALES_HEADER.split(',')[col]}"
        elif kind == "invalid_type":
            col, value = ((6, "two"), (7, "abc"), (2, "yesterday"))[i % 3]
            fields[col] = value
            note = f"{SALES_HEADER.split(',')[col]}={value!r}"
        elif kind == "negative_price":
            fields[7] = "-" + fields[7]
            note = f"unit_price={fields[7]}"
        elif kind == "discount_out_of_range":
            fields[8] = ("1.5", "-0.2")[i % 2]
            note = f"discount={fields[8]}"
        elif kind == "zero_quantity":
            fields[6] = "0"
        elif kind == "unknown_product":
            fields[4] = w.unknown_product_id(self.unknown())
            note = f"product_id {fields[4]} is in no master data"
        elif kind == "unknown_store":
            note = f"store_id {fields[3]} is in no master data"
        elif kind == "unknown_customer":
            note = f"customer_id {fields[5]} is in no master data"
        elif kind in ("late_event", "future_event"):
            note = f"event {t['event_time']} arrived {self.day_iso(arrival)[0]}"
        record_key = f"{fields[0]}:{fields[1]}"
        self.insert(f, Marked(",".join(fields), [self.entry(kind, "sales", record_key, note)]))

    # -- Kafka ----------------------------------------------------------------------------------
    def kafka_duplicates_and_new_column(self, count: int) -> None:
        rng, b = self.rng, self.b
        clean = list(b.kafka)
        candidates = [i for i, m in enumerate(clean) if m.same_day]
        dup = sorted(rng.sample(candidates, min(count, len(candidates))))
        for i in dup:
            m = clean[i]
            b.kafka.append(
                KafkaMsg(
                    m.ts_ms + rng.randint(1000, 240000),
                    self.next_order(),
                    m.key,
                    m.value,
                    m.n_lines,
                    m.txid,
                    m.event_day,
                    True,
                    [
                        self.entry("duplicate", "kafka", f"{m.txid}:{ln}", "identical event re-sent")
                        for ln in range(1, m.n_lines + 1)
                    ],
                )
            )
        taken = set(dup)
        later = [i for i, m in enumerate(clean) if i not in taken and (self.days == 1 or m.event_day >= 1)]
        for i in sorted(rng.sample(later, min(count, len(later)))):
            m = clean[i]
            hint = rng.choice(vocab.CHANNEL_HINTS)
            m.value = m.value[:-1] + f',"channel_hint":"{hint}"}}'
            m.entries = [
                self.entry("new_column", "kafka", f"{m.txid}:{ln}", "extra event field channel_hint")
                for ln in range(1, m.n_lines + 1)
            ]

    def kafka_event(self, kind: str, i: int) -> None:
        rng, w = self.rng, self.w
        arrival = rng.randrange(self.days)
        s = rng.choice(w.stores)
        shift = {"late_event": -(self.L + 2), "future_event": 3}.get(kind, 0)
        num = w.unknown_store_num(self.unknown()) if kind == "unknown_store" else None
        cust = w.unknown_customer_id(self.unknown()) if kind == "unknown_customer" else None
        if kind == "invalid_encoding":
            cust = rng.choice(self.snapshot_customers).customer_id
        n_lines = rng.randint(1, 3) if kind in KAFKA_MULTI_LINE else 1
        t = self.fresh_transaction(s, arrival, n_lines, shift, num, cust)
        txid = t["txid"]
        lines = [
            {
                "line_number": ln,
                "product_id": pid,
                "quantity": q,
                "unit_price": price_number(pc),
                "discount": discount_number(disc),
            }
            for ln, pid, q, pstr, pc, disc in t["lines"]
        ]
        ev: dict[str, Any] = {
            "schema_version": 1,
            "transaction_id": txid,
            "event_time": t["event_time"],
            "store_id": t["store_id"],
            "customer_id": t["customer_id"] or None,
            "payment_method": t["payment_method"],
            "lines": lines,
        }
        key: str | None = txid
        note = kind
        if kind == "invalid_json":
            text = json_line(ev)
            value = text[: len(text) // 2] if i % 2 == 0 else text[:-1] + ",}"
            note = ("truncated JSON", "trailing comma")[i % 2]
        elif kind == "not_an_object":
            value = json_line([ev]) if i % 2 == 0 else json_line(txid)
            note = ("JSON array", "JSON string")[i % 2]
        elif kind == "invalid_encoding":
            ev["customer_id"] = ev["customer_id"][:2] + BAD_BYTES + ev["customer_id"][2:]
            value = json_line(ev)
            note = "bytes ff fe inside customer_id"
        else:
            if kind == "missing_key":
                variant = i % 3
                if variant == 0:
                    del ev["transaction_id"]
                else:
                    ev["transaction_id"] = "" if variant == 1 else None
                key = None
                txid = ""
                note = ("transaction_id absent", "transaction_id empty", "transaction_id null")[variant]
            elif kind == "invalid_type":
                variant = i % 3
                if variant == 0:
                    lines[0]["quantity"] = "two"
                elif variant == 1:
                    lines[0]["unit_price"] = "abc"
                else:
                    ev["event_time"] = "yesterday"
                note = ("quantity='two'", "unit_price='abc'", "event_time='yesterday'")[variant]
            elif kind == "negative_price":
                lines[0]["unit_price"] = -lines[0]["unit_price"]
                note = f"unit_price={lines[0]['unit_price']}"
            elif kind == "discount_out_of_range":
                lines[0]["discount"] = (1.5, -0.2)[i % 2]
                note = f"discount={lines[0]['discount']}"
            elif kind == "zero_quantity":
                lines[0]["quantity"] = 0
            elif kind == "unknown_product":
                lines[0]["product_id"] = w.unknown_product_id(self.unknown())
                note = f"product_id {lines[0]['product_id']} is in no master data"
            elif kind == "unknown_store":
                note = f"store_id {ev['store_id']} is in no master data"
            elif kind == "unknown_customer":
                note = f"customer_id {ev['customer_id']} is in no master data"
            elif kind in ("late_event", "future_event"):
                note = f"event {ev['event_time']} arrived {self.day_iso(arrival)[0]}"
            value = json_line(ev)
        if DEFECT_KINDS[kind][0] == "ingest_rejects":
            entries = [self.entry(kind, "kafka", None, note)]
            n = 0
        else:
            entries = [self.entry(kind, "kafka", f"{txid}:{ln['line_number']}", note) for ln in lines]
            n = len(lines)
        self.b.kafka.append(
            KafkaMsg(t["ts_ms"], self.next_order(), key, value, n, txid or None, arrival + shift, True, entries)
        )

    # -- dimensions -----------------------------------------------------------------------------
    def customer_new_column(self) -> None:
        """`loyalty_points` appears in some JSONL customer records from the second day on."""
        rng = self.rng
        cands = self.b.jsonl_customer_changes
        n = self.budget(
            sum(len(f.lines) for f in self.b.landing.files.values() if f.source == "customers"),
            len(DIM_KINDS["customers"]),
        )
        for f, idx, values in sorted(
            (cands[i] for i in rng.sample(range(len(cands)), min(n, len(cands)))), key=lambda c: (c[0].path, c[1])
        ):
            updated = fmt_utc(values["_updated_at"])
            clean = {k: v for k, v in values.items() if k != "_updated_at"}
            line = dim_line("customers", "jsonl", clean, updated, {"loyalty_points": rng.randint(0, 5000)})
            f.lines[idx] = Marked(
                line,
                [
                    self.entry(
                        "new_column",
                        "customers",
                        f"{clean['customer_id']}@{updated}",
                        "extra JSON field loyalty_points",
                    )
                ],
            )

    def entity(self, source: str):
        if source == "customers":
            return self.rng.choice(self.snapshot_customers)
        return self.rng.choice(self.w.products if source == "products" else self.w.stores)

    def dim_time(self, source: str, key: str, day: int, lo: int = 0, hi: int = DAY - 1) -> int:
        base = epoch_of(self.cfg.start_date) + day * DAY
        while True:
            t = base + self.rng.randint(lo, hi)
            if (source, key, t) not in self.b.used_dim_versions:
                self.b.used_dim_versions.add((source, key, t))
                return t

    def dimension(self, source: str, kind: str, i: int) -> None:
        rng, b = self.rng, self.b
        key_field = DIM_KEYS[source]
        fields = DIM_FIELDS[source]
        ent = self.entity(source)
        values: dict[str, Any] = dict(ent.values())
        key = values[key_field]

        if kind == "out_of_order_change":
            if self.days < 2:
                return
            day = rng.randrange(0, self.days - 1)
            attr = OUT_OF_ORDER_ATTRS[source]
            newer = self.dim_time(source, key, day, 10 * 3600, DAY - 1)
            older = newer - rng.randint(3600, 20 * 3600)
            while (source, key, older) in b.used_dim_versions:
                older -= 1
            b.used_dim_versions.add((source, key, older))
            fmt_new, fmt_old = ("csv", "jsonl") if i % 2 == 0 else ("jsonl", "csv")
            v_new = {k: None for k in values}
            v_new[key_field] = key
            v_new[attr] = self.other_value(source, attr, values)
            v_old = {k: None for k in values}
            v_old[key_field] = key
            v_old[attr] = self.other_value(source, attr, dict(values, **{attr: v_new[attr]}))
            # the newer change arrives on `day` (a plain change record, no manifest entry) ...
            self.insert(b.dim_file(source, day, fmt_new), dim_line(source, fmt_new, v_new, fmt_utc(newer)))
            # ... and the older one only a day later
            old_at = fmt_utc(older)
            self.insert(
                b.dim_file(source, day + 1, fmt_old),
                Marked(
                    dim_line(source, fmt_old, v_old, old_at),
                    [
                        self.entry(
                            kind,
                            source,
                            f"{key}@{old_at}",
                            f"updated_at {old_at} older than {fmt_utc(newer)} which arrived a day earlier",
                        )
                    ],
                ),
            )
            return

        day = rng.choice(self.later_days)
        updated = self.dim_time(source, key, day)
        updated_at: str = fmt_utc(updated)

        if kind == "null_update":
            fmt = ("csv", "jsonl")[i % 2]
            v = {k: None for k in values}
            v[key_field] = key
            self.insert(
                b.dim_file(source, day, fmt),
                Marked(
                    dim_line(source, fmt, v, updated_at),
                    [self.entry(kind, source, f"{key}@{updated_at}", "every attribute null: nothing changes")],
                ),
            )
            return

        if kind in ("malformed_row", "broken_quoting", "invalid_encoding"):
            raw = [values.get(f) if f != "updated_at" else updated_at for f in fields]
            cells = [csv_field(v) for v in raw]
            name_col = fields.index(NAME_FIELD[source])
            if kind == "malformed_row":
                if i % 2 == 0:
                    del cells[2]
                    note = f"{len(cells)} columns (one missing)"
                else:
                    cells.append("x")
                    note = f"{len(cells)} columns (one extra)"
            elif kind == "broken_quoting":
                cells[name_col] = '"' + raw[name_col].replace('"', "")
                note = f"unclosed quote in {fields[name_col]}"
            else:
                v = raw[name_col]
                cells[name_col] = csv_field(v[:2] + BAD_BYTES + v[2:])
                note = f"bytes ff fe inside {fields[name_col]}"
            self.insert(b.dim_file(source, day, "csv"), Marked(",".join(cells), [self.entry(kind, source, None, note)]))
            return

        if kind in ("invalid_json", "not_an_object"):
            text = dim_line(source, "jsonl", values, updated_at)
            if kind == "invalid_json":
                line = text[: len(text) // 2] if i % 2 == 0 else text[:-1] + ",}"
                note = ("truncated JSON", "trailing comma")[i % 2]
            else:
                line = json_line([values.get(f) for f in fields]) if i % 2 == 0 else json_line(key)
                note = ("JSON array", "JSON string")[i % 2]
            self.insert(b.dim_file(source, day, "jsonl"), Marked(line, [self.entry(kind, source, None, note)]))
            return

        fmt = ("csv", "jsonl")[i % 2]
        if kind == "missing_key":
            values[key_field] = ""
            key = ""
            note = f"empty {key_field}"
        elif kind == "invalid_type":
            col, bad = INVALID_TYPES[source][i % len(INVALID_TYPES[source])]
            if col == "updated_at":
                updated_at = bad
            else:
                values[col] = bad
            note = f"{col}={bad!r}"
        elif kind == "negative_price":
            col = ("list_price", "unit_cost")[i % 2]
            values[col] = "-" + values[col]
            note = f"{col}={values[col]}"
        else:  # pragma: no cover - guarded by DIM_KINDS
            raise AssertionError(kind)
        self.insert(
            b.dim_file(source, day, fmt),
            Marked(dim_line(source, fmt, values, updated_at), [self.entry(kind, source, f"{key}@{updated_at}", note)]),
        )

    def other_value(self, source: str, attr: str, values: dict[str, Any]) -> str:
        """A value for `attr` different from the one in `values`."""
        rng = self.rng
        current = values[attr]
        if attr == "loyalty_tier":
            return rng.choice([t for t in LOYALTY_TIERS if t != current])
        if source == "products":
            nouns = next(c[1] for c in vocab.CATEGORIES if c[0] == values["category"])
            while True:
                name = (
                    f"{values['brand']} {rng.choice(vocab.PRODUCT_VARIANTS)} {rng.choice(nouns)} "
                    f"{rng.choice(vocab.PRODUCT_SIZES)}"
                )
                if name != current:
                    return name
        # stores: a new name
        choices = [d for d in vocab.STORE_DISTRICTS if not (current or "").endswith(d)]
        return f"{vocab.STORE_BRAND} {values['city']} {rng.choice(choices)}"

    # -- inventory ------------------------------------------------------------------------------
    def inventory_row(self, kind: str, i: int, files: list[str]) -> None:
        rng, w = self.rng, self.w
        f = self.b.landing.files[rng.choice(files)]
        ymd = f.path.rsplit("_", 1)[1].split(".")[0]
        snapshot = f"{ymd[:4]}-{ymd[4:6]}-{ymd[6:]}"
        s = rng.choice(w.stores)
        # a product the store does not stock, so the row never shares a key with a clean row
        others = self._not_stocked.get(s.idx)
        if others is None:
            others = self._not_stocked[s.idx] = sorted(set(range(len(w.products))) - set(s.assortment))
        pi = rng.choice(others) if others else rng.randrange(len(w.products))
        cells = [snapshot, s.store_id, w.products[pi].product_id, str(rng.randint(0, 200))]
        note = kind
        if kind == "malformed_row":
            if i % 2 == 0:
                del cells[3]
            else:
                cells.append("7")
            note = f"{len(cells)} columns"
        elif kind == "invalid_encoding":
            cells[2] = cells[2][:2] + BAD_BYTES + cells[2][2:]
            note = "bytes ff fe inside product_id"
        elif kind == "missing_key":
            col = (2, 1)[i % 2]
            cells[col] = ""
            note = f"empty {INVENTORY_HEADER.split(',')[col]}"
        elif kind == "invalid_type":
            cells[3] = ("lots", "n/a")[i % 2]
            note = f"on_hand_qty={cells[3]!r}"
        record_key = ":".join(cells[:3]) if len(cells) >= 3 else None
        self.insert(f, Marked(",".join(cells), [self.entry(kind, "inventory", record_key, note)]))

    # -- whole files ----------------------------------------------------------------------------
    def empty_file(self, source: str, kind: str, fmt: str) -> None:
        rng, b = self.rng, self.b
        day = rng.choice(self.later_days)
        diso, ymd = self.day_iso(day)
        if source == "sales":
            f = self.free_sales_file(rng.choice(self.w.stores).store_id, day)
        elif source == "inventory":
            f = b.landing.file(f"inventory/{diso}/inventory_{ymd}_retry.csv", "inventory", "csv", INVENTORY_HEADER)
        else:
            f = b.dim_file(source, day, fmt, "retry")
        if kind == "empty_file":
            f.zero_bytes = True
            f.header = None
            note = "zero bytes"
        else:
            note = "header only"
        e = self.entry(kind, source, None, note)
        e["ref"] = f"{f.path}:0"
        e["arrival_date"] = f.arrival
        b.file_entries.append(e)
