"""The clean world (master data, sales, inventory) and the output files; `run.generate()` adds the
optional defects.

Longer than the project's usual module: the clean world's writers (sales, master-data
changes, inventory, the output files) share one `Build` and its bookkeeping.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from retail_assets.lib.registry import tables

from .buffer import BufferedFile, LandingBuffer, Marked, csv_line, json_line
from .config import GeneratorConfig
from .model import KAFKA_FILE, LANDING_DIR, MANIFEST_FILE, GenerationResult, KafkaMessage
from .world import DAY, Change, World, epoch_of, fmt_local, fmt_utc

SALES_HEADER = ",".join(tables.SALES_FIELDS)
INVENTORY_HEADER = ",".join(tables.INVENTORY_FIELDS)
DIM_FIELDS: dict[str, tuple[str, ...]] = {
    "customers": tables.CUSTOMER_FIELDS,
    "products": tables.PRODUCT_FIELDS,
    "stores": tables.STORE_FIELDS,
}
DIM_KEYS = {"customers": "customer_id", "products": "product_id", "stores": "store_id"}
# JSON numbers (not strings) in JSONL dimension records
DIM_NUMERIC = {"unit_cost", "list_price"}
# Full snapshot format on the first day; later days alternate CSV and JSONL change records.
SNAPSHOT_FMT = {"customers": "csv", "products": "csv", "stores": "jsonl"}
CRLF_SOURCES = {"customers"}  # the CRM exports CSV with Windows line endings

PAYMENT_WEIGHTS = (25, 55, 15, 5)
QUANTITIES = (1, 2, 3, 4, 6)
QUANTITY_CUM = (0.60, 0.82, 0.92, 0.97, 1.0)
DISCOUNTS = ("0.05", "0.1", "0.15", "0.2", "0.25", "0.3", "0.125")
DISCOUNT_SHARE = 0.2


def discount_number(s: str) -> int | float:
    return 0 if s == "0" else float(s)


def price_number(cents: int) -> float:
    return cents / 100


@dataclass(slots=True)
class KafkaMsg:
    ts_ms: int
    order: int
    key: str | None
    value: str  # JSON text; lone surrogates stand for raw non-UTF-8 bytes
    n_lines: int  # lines the event carries (0 when unreadable)
    txid: str | None = None
    event_day: int | None = None
    same_day: bool = True
    entries: list[dict[str, Any]] | None = None

    def value_bytes(self) -> bytes:
        return self.value.encode("utf-8", "surrogateescape")


@dataclass(slots=True)
class FileTxn:
    """Where a clean file transaction sits (before defect insertion)."""

    path: str
    start: int
    n_lines: int
    txid: str
    store_idx: int
    event_day: int
    arrival_day: int


@dataclass
class Build:
    config: GeneratorConfig
    world: World
    landing: LandingBuffer
    kafka: list[KafkaMsg] = field(default_factory=list)
    file_txns: list[FileTxn] = field(default_factory=list)
    # (file, line index, values) of clean JSONL customer change records after the first day
    jsonl_customer_changes: list[tuple[BufferedFile, int, dict[str, Any]]] = field(default_factory=list)
    used_dim_versions: set[tuple[str, str, int]] = field(default_factory=set)
    file_entries: list[dict[str, Any]] = field(default_factory=list)
    clean_transactions: int = 0
    clean_file_lines: int = 0
    clean_kafka_lines: int = 0

    # -- paths ----------------------------------------------------------------------------------
    def day(self, i: int) -> date:
        return self.config.start_date + timedelta(days=i)

    def sales_path(self, store_id: str, arrival: int, suffix: int | None = None) -> str:
        d = self.day(arrival)
        tail = "" if suffix is None else f"_{suffix}"
        return f"sales/{d.isoformat()}/pos_{store_id}_{d.strftime('%Y%m%d')}{tail}.csv"

    def sales_file(self, store_id: str, arrival: int, suffix: int | None = None) -> BufferedFile:
        return self.landing.file(self.sales_path(store_id, arrival, suffix), "sales", "csv", SALES_HEADER)

    def dim_file(self, source: str, day: int, fmt: str, tag: str = "changes") -> BufferedFile:
        d = self.day(day)
        path = f"{source}/{d.isoformat()}/{source}_{d.strftime('%Y%m%d')}_{tag}.{fmt}"
        header = ",".join(DIM_FIELDS[source]) if fmt == "csv" else None
        return self.landing.file(path, source, fmt, header, crlf=fmt == "csv" and source in CRLF_SOURCES)


def dim_line(
    source: str, fmt: str, values: dict[str, Any], updated_at: str | None, extra: dict[str, Any] | None = None
) -> str:
    """One dimension record as a CSV line or a JSON object (None = unchanged)."""
    fields = DIM_FIELDS[source]
    if fmt == "csv":
        return csv_line([values.get(f) if f != "updated_at" else updated_at for f in fields])
    obj: dict[str, Any] = {}
    for f in fields:
        v = values.get(f) if f != "updated_at" else updated_at
        if f in DIM_NUMERIC and isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                pass
        obj[f] = v
    if extra:
        obj.update(extra)
    return json_line(obj)


# ------------------------------------------------------------------------------------------------
# clean data
# ------------------------------------------------------------------------------------------------


def _generate_sales(b: Build, rng: random.Random) -> list[dict[tuple[int, int], int]]:
    """All clean transactions, into store files and Kafka messages. Returns units sold per day."""
    cfg, w = b.config, b.world
    days = cfg.days
    late_ok = cfg.lateness_days >= 1
    m = cfg.max_lines_per_transaction
    # basket sizes: weight(k) = m - k + 1
    size_total = m * (m + 1) / 2
    size_cum, acc = [], 0.0
    for k in range(1, m + 1):
        acc += (m - k + 1) / size_total
        size_cum.append(acc)
    size_cum[-1] = 1.0
    pay_cum, acc = [], 0.0
    for wgt in PAYMENT_WEIGHTS:
        acc += wgt / sum(PAYMENT_WEIGHTS)
        pay_cum.append(acc)
    pay_cum[-1] = 1.0

    products = w.products
    pool: list[str] = []
    sold_by_day: list[dict[tuple[int, int], int]] = []
    ws, wq = w.w_store, w.w_seq
    kafka = b.kafka
    order = 0
    for d in range(days):
        dd = b.day(d)
        diso, ymd, depoch = dd.isoformat(), dd.strftime("%Y%m%d"), epoch_of(dd)
        pool.extend(c.customer_id for c in w.customers if c.created_day == d or (d == 0 and c.created_day < 0))
        sold: dict[tuple[int, int], int] = {}
        next_day_ok = late_ok and d + 1 < days
        for s in w.stores:
            n = max(1, round(cfg.transactions_per_store_day * rng.uniform(0.85, 1.15)))
            secs = sorted(rng.randint(s.open_s, s.close_s) for _ in range(n))
            utc_base = depoch - s.offset_min * 60
            same_file = b.sales_file(s.store_id, d)
            late_file = None
            assortment, cum = s.assortment, s.cum_weights
            total_w = cum[-1]
            n_assort = len(assortment)
            sid = s.store_id
            for seq, sec in enumerate(secs, 1):
                txid = f"T{s.num:0{ws}d}{ymd}{seq:0{wq}d}"
                et = fmt_local(diso, sec, s.offset)
                ev_utc = utc_base + sec
                is_return = rng.random() < cfg.return_rate
                cid = "" if rng.random() < cfg.anonymous_rate else rng.choice(pool)
                pay = tables.PAYMENT_METHODS[bisect_right(pay_cum, rng.random())]
                k = 1 if is_return else bisect_right(size_cum, rng.random()) + 1
                to_kafka = rng.random() < cfg.kafka_share
                late = next_day_ok and rng.random() < cfg.late_arrival_rate
                lines = []
                chosen: list[int] = []
                for ln in range(1, k + 1):
                    pi = assortment[min(bisect_right(cum, rng.random() * total_w), n_assort - 1)]
                    if pi in chosen:  # one more try for a distinct product
                        pi = assortment[min(bisect_right(cum, rng.random() * total_w), n_assort - 1)]
                    chosen.append(pi)
                    p = products[pi]
                    if is_return:
                        q = -1 if rng.random() < 0.8 else -2
                    else:
                        q = QUANTITIES[bisect_right(QUANTITY_CUM, rng.random())]
                    disc = "0" if rng.random() >= DISCOUNT_SHARE else DISCOUNTS[rng.randrange(len(DISCOUNTS))]
                    pstr, pc = p.price_at(ev_utc)
                    lines.append((ln, p.product_id, q, pstr, pc, disc))
                    key = (s.idx, pi)
                    sold[key] = sold.get(key, 0) + q
                b.clean_transactions += 1
                if to_kafka:
                    event = {
                        "schema_version": 1,
                        "transaction_id": txid,
                        "event_time": et,
                        "store_id": sid,
                        "customer_id": cid or None,
                        "payment_method": pay,
                        "lines": [
                            {
                                "line_number": ln,
                                "product_id": pid,
                                "quantity": q,
                                "unit_price": price_number(pc),
                                "discount": discount_number(disc),
                            }
                            for ln, pid, q, pstr, pc, disc in lines
                        ],
                    }
                    if late:  # the till was offline: delivered the next morning (UTC)
                        ts = (depoch + DAY) * 1000 + rng.randint(0, 10 * 3600 * 1000)
                    else:
                        ts = ev_utc * 1000 + rng.randint(2000, 300000)
                    kafka.append(KafkaMsg(ts, order, txid, json_line(event), k, txid, d, not late))
                    order += 1
                    b.clean_kafka_lines += k
                else:
                    if late:
                        if late_file is None:
                            late_file = b.sales_file(s.store_id, d + 1)
                        f, arrival = late_file, d + 1
                    else:
                        f, arrival = same_file, d
                    b.file_txns.append(FileTxn(f.path, len(f.lines), k, txid, s.idx, d, arrival))
                    f.lines.extend(
                        f"{txid},{ln},{et},{sid},{pid},{cid},{q},{pstr},{disc},{pay}"
                        for ln, pid, q, pstr, pc, disc in lines
                    )
                    b.clean_file_lines += k
        sold_by_day.append(sold)
    # a store whose every transaction went to Kafka has no file that day: never leave an empty file
    for path in [p for p, f in b.landing.files.items() if f.source == "sales" and not f.lines]:
        del b.landing.files[path]
    return sold_by_day


def _write_dimensions(b: Build) -> None:
    for d in range(b.config.days):
        records: dict[str, list[Change]] = {"customers": [], "products": [], "stores": []}
        for ch in b.world.changes[d]:
            records[ch.source].append(ch)
        for source in ("stores", "products", "customers"):
            key = DIM_KEYS[source]
            if d == 0:  # the full snapshot, in key order (day 0 holds nothing else)
                recs = sorted(records[source], key=lambda c: c.values[key])
            else:  # change records in the order they happened
                recs = sorted(records[source], key=lambda c: (c.updated_at, c.values[key]))
            for i, ch in enumerate(recs):
                if d == 0:
                    fmt = SNAPSHOT_FMT[source]
                    f = b.dim_file(source, d, fmt, "full")
                else:  # alternate, so every later day has both CSV and JSONL records
                    fmt = ("jsonl", "csv")[i % 2]
                    f = b.dim_file(source, d, fmt)
                b.used_dim_versions.add((source, ch.values[key], ch.updated_at))
                if source == "customers" and fmt == "jsonl" and d > 0:
                    b.jsonl_customer_changes.append((f, len(f.lines), dict(ch.values, _updated_at=ch.updated_at)))
                f.lines.append(dim_line(source, fmt, ch.values, fmt_utc(ch.updated_at)))


def _write_inventory(b: Build, rng: random.Random, sold_by_day: list[dict[tuple[int, int], int]]) -> None:
    w, cfg = b.world, b.config
    on_hand = {(s.idx, pi): rng.randint(20, 200) for s in w.stores for pi in s.assortment}
    for d in range(cfg.days):
        dd = b.day(d)
        diso = dd.isoformat()
        # the snapshot of day d arrives the same evening or the next day
        arrival = d if d + 1 >= cfg.days or rng.random() < 0.7 else d + 1
        ad = b.day(arrival)
        f = b.landing.file(
            f"inventory/{ad.isoformat()}/inventory_{dd.strftime('%Y%m%d')}.csv", "inventory", "csv", INVENTORY_HEADER
        )
        sold = sold_by_day[d]
        lines = f.lines
        for s in w.stores:
            sid = s.store_id
            for pi in s.assortment:
                key = (s.idx, pi)
                qty = on_hand[key] - sold.get(key, 0)
                if qty < 0:
                    qty = 0
                if qty < 15:  # replenishment delivery
                    qty += rng.randint(40, 160)
                on_hand[key] = qty
                lines.append(f"{diso},{sid},{w.products[pi].product_id},{qty}")


# ------------------------------------------------------------------------------------------------
# generate
# ------------------------------------------------------------------------------------------------


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    landing = out_dir / LANDING_DIR
    kafka_dir = out_dir / "kafka"
    manifest = out_dir / MANIFEST_FILE
    if overwrite:
        for p in (landing, kafka_dir):
            if p.exists():
                shutil.rmtree(p)
        if manifest.exists():
            manifest.unlink()
    elif landing.exists() and any(landing.iterdir()):
        raise FileExistsError(f"{landing} is not empty; pass overwrite=True (CLI: --force) to replace it")
    out_dir.mkdir(parents=True, exist_ok=True)


def _finish(b: Build, out_dir: Path) -> GenerationResult:
    cfg = b.config
    landing_root = out_dir / LANDING_DIR
    landing_root.mkdir(parents=True, exist_ok=True)

    manifest: list[tuple[tuple, dict[str, Any]]] = []
    counts: Counter[str] = Counter()
    arrival: set[str] = set()
    for path in sorted(b.landing.files):
        f = b.landing.files[path]
        counts[f"{f.source}_files"] += 1
        counts[f"{f.source}_records"] += len(f.lines)
        arrival.add(f.arrival)
        first = f.first_data_line
        for i, line in enumerate(f.lines):
            if type(line) is Marked:
                for e in line.entries:
                    e["ref"] = f"{path}:{first + i}"
                    e["arrival_date"] = f.arrival
                    manifest.append(((e["source"], path, first + i, e["record_key"] or ""), e))
    for e in b.file_entries:  # whole-file defects (empty files): ref is `path:0`
        manifest.append(((e["source"], e["ref"].rsplit(":", 1)[0], 0, ""), e))
    counts["sales_lines_in_files"] = counts["sales_records"]

    msgs = sorted(b.kafka, key=lambda m: (m.ts_ms, m.order))
    kafka_messages = []
    kafka_lines = 0
    for idx, m in enumerate(msgs):
        km = KafkaMessage(idx, m.key, m.ts_ms, m.value_bytes())
        m.value = ""  # the bytes live on in `km`
        kafka_messages.append(km)
        kafka_lines += m.n_lines
        a = datetime.fromtimestamp(m.ts_ms / 1000, tz=UTC).date().isoformat()
        arrival.add(a)
        for e in m.entries or ():
            e["ref"] = f"kafka:#{idx}"
            e["arrival_date"] = a
            manifest.append((("kafka", "", idx, e["record_key"] or ""), e))
    counts["kafka_events"] = len(msgs)
    counts["kafka_lines"] = kafka_lines
    counts["clean_transactions"] = b.clean_transactions
    counts["clean_file_lines"] = b.clean_file_lines
    counts["clean_kafka_lines"] = b.clean_kafka_lines
    counts["clean_sales_lines"] = b.clean_file_lines + b.clean_kafka_lines
    for source in ("sales", "customers", "products", "stores", "inventory"):
        counts.setdefault(f"{source}_files", 0)
        counts.setdefault(f"{source}_records", 0)

    manifest.sort(key=lambda t: t[0])
    entries = [_ordered_entry(e) for _, e in manifest]
    counts["manifest_entries"] = len(entries)

    b.landing.write(landing_root)
    kafka_path = out_dir / KAFKA_FILE
    kafka_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(kafka_path, "".join(km.to_json_line() + "\n" for km in kafka_messages).encode("utf-8"))
    manifest_path = out_dir / MANIFEST_FILE
    text = "[]\n" if not entries else "[\n" + ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries) + "\n]\n"
    _atomic_write(manifest_path, text.encode("utf-8"))

    return GenerationResult(
        config=cfg,
        out_dir=out_dir,
        landing_root=landing_root,
        kafka_path=kafka_path,
        manifest_path=manifest_path,
        kafka_messages=kafka_messages,
        manifest=entries,
        counts=dict(sorted(counts.items())),
        arrival_dates=sorted(date.fromisoformat(a) for a in arrival),
        files=sorted(b.landing.files),
    )


_ENTRY_ORDER = ("defect", "source", "source_table", "ref", "record_key", "expected", "rule", "arrival_date", "note")


def _ordered_entry(e: dict[str, Any]) -> dict[str, Any]:
    return {k: e.get(k) for k in _ENTRY_ORDER}


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
