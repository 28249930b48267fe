"""The KPI report's figures: what its page shows, computed from Arrow reads of the Gold
aggregates, the quarantine tables and the records each Bronze table took in.

Pure: Arrow tables in, a JSON-ready dict out (`kpi_figures`). The page, its charts, the
materialization's metadata and the report's check all start from that dict, so what a person
reads beside a chart is exactly what was compared with Gold. Money is summed as decimals and
given as numbers of cents' precision; rates are fractions rounded to six places.

A report of business day D covers the `WINDOW_DAYS` days ending on D: sales, returns, products
and inventory by business day, the quarantine by arrival day (a record's reject is counted on
the day it arrived), and the lifetime value of the customers whose last activity falls in the
window (their lifetime figures end on or before D).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from retail_assets.lib.registry.tables import (
    GOLD_AGG_CUSTOMER_LIFETIME_VALUE,
    GOLD_AGG_DAILY_STORE_SALES,
    GOLD_AGG_INVENTORY_COVER,
    GOLD_AGG_PRODUCT_PERFORMANCE,
    QUARANTINE_INGEST_REJECTS,
    QUARANTINE_RULE_VIOLATIONS,
    TableSpec,
)

WINDOW_DAYS = 14
TOP_PRODUCTS = 10
# A store's stock of a product lasting fewer days than this at its recent sales rate is shown.
COVER_THRESHOLD_DAYS = 7.0
# Lower bounds of the lifetime-value bands (total spend); a band below the first holds negatives.
VALUE_BANDS = (0, 25, 50, 100, 250, 500, 1000)

# The columns the report reads of each table (each read over the window's partitions).
READS: dict[TableSpec, list[str]] = {
    GOLD_AGG_DAILY_STORE_SALES: ["event_date", "store_id", "revenue", "returns_amount", "net_revenue", "transactions"],
    GOLD_AGG_PRODUCT_PERFORMANCE: ["event_date", "product_id", "category", "units_sold", "net_revenue", "gross_margin"],
    GOLD_AGG_CUSTOMER_LIFETIME_VALUE: ["customer_id", "total_spend", "last_active_date"],
    GOLD_AGG_INVENTORY_COVER: ["snapshot_date", "store_id", "product_id", "days_of_cover"],
    QUARANTINE_INGEST_REJECTS: ["source_table", "_arrival_date"],
    QUARANTINE_RULE_VIOLATIONS: ["source_table", "_arrival_date", "replayed_at"],
}
# Records each Bronze table took in per arrival day, in the unit quarantine counts in.
RECORDS_IN = pa.schema([("source_table", pa.string()), ("_arrival_date", pa.date32()), ("records", pa.int64())])


@dataclass(frozen=True)
class ReportInputs:
    """The tables of `READS` (their columns, at least the window's partitions) and the Bronze
    record counts (`RECORDS_IN`)."""

    tables: dict[TableSpec, pa.Table]
    records_in: pa.Table

    def window(self, spec: TableSpec, first: dt.date, last: dt.date) -> pa.Table:
        table = self.tables[spec]
        column = table[spec.partition_column]
        inside = pc.and_(
            pc.greater_equal(column, pa.scalar(first, pa.date32())), pc.less_equal(column, pa.scalar(last, pa.date32()))
        )
        return table.filter(inside)


def money(value: Decimal | None) -> float:
    return float(value or 0)


def rate(numerator: float | Decimal, denominator: float | Decimal) -> float | None:
    return round(float(numerator) / float(denominator), 6) if denominator else None


def column(name: str, label: str, kind: str) -> dict[str, str]:
    """A table column of the page; `kind` says how its values read: date, text, money, count, rate."""
    return {"name": name, "label": label, "kind": kind}


def _section(name: str, title: str, note: str, columns: list[dict[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {"name": name, "title": title, "note": note, "columns": columns, "rows": rows}


_STORE_FIGURES = ("revenue", "returns_amount", "net_revenue", "transactions")


def store_sales(daily: pa.Table) -> dict[str, Any]:
    # a store's channels (its tills' files and stream, the web shop's orders) summed: a
    # transaction reaches the lakehouse through one channel
    by_store = daily.group_by(["event_date", "store_id"]).aggregate([(f, "sum") for f in _STORE_FIGURES])
    ordered = by_store.sort_by([("event_date", "ascending"), ("store_id", "ascending")]).to_pylist()
    rows = [
        [
            r["event_date"].isoformat(),
            r["store_id"],
            money(r["revenue_sum"]),
            money(r["returns_amount_sum"]),
            money(r["net_revenue_sum"]),
            r["transactions_sum"],
        ]
        for r in ordered
    ]
    columns = [
        column("event_date", "Day", "date"),
        column("store_id", "Store", "text"),
        column("revenue", "Revenue", "money"),
        column("returns_amount", "Returns", "money"),
        column("net_revenue", "Net revenue", "money"),
        column("transactions", "Transactions", "count"),
    ]
    note = (
        "Net revenue per store and business day (bars, stacked: the window's largest stores, the rest as one band; "
        "this table lists every store); revenue before returns (line)."
    )
    return _section("store_sales", "Revenue and net revenue per day and store", note, columns, rows)


def returns_rate(daily: pa.Table) -> dict[str, Any]:
    by_day = daily.group_by("event_date").aggregate([("revenue", "sum"), ("returns_amount", "sum")])
    rows = [
        [
            r["event_date"].isoformat(),
            money(r["revenue_sum"]),
            money(r["returns_amount_sum"]),
            rate(r["returns_amount_sum"] or 0, r["revenue_sum"] or 0),
        ]
        for r in by_day.sort_by("event_date").to_pylist()
    ]
    columns = [
        column("event_date", "Day", "date"),
        column("revenue", "Revenue", "money"),
        column("returns_amount", "Returns", "money"),
        column("returns_rate", "Returns rate", "rate"),
    ]
    note = "Returned amount as a share of the day's revenue, all stores."
    return _section("returns_rate", "Returns rate", note, columns, rows)


def top_products(performance: pa.Table) -> dict[str, Any]:
    totals: dict[str, dict[str, Any]] = {}
    for r in performance.sort_by("event_date").to_pylist():
        product = totals.setdefault(r["product_id"], {"net": Decimal(0), "margin": None, "units": 0})
        product["category"] = r["category"]  # the latest day's
        product["net"] += r["net_revenue"]
        product["units"] += r["units_sold"]
        if r["gross_margin"] is not None:
            product["margin"] = (product["margin"] or Decimal(0)) + r["gross_margin"]
    ranked = sorted(totals.items(), key=lambda item: (-item[1]["net"], item[0]))[:TOP_PRODUCTS]
    rows = [
        [
            rank,
            product_id,
            p["category"],
            p["units"],
            money(p["net"]),
            None if p["margin"] is None else money(p["margin"]),
            None if p["margin"] is None else rate(p["margin"], p["net"]),
        ]
        for rank, (product_id, p) in enumerate(ranked, start=1)
    ]
    columns = [
        column("rank", "#", "count"),
        column("product_id", "Product", "text"),
        column("category", "Category", "text"),
        column("units_sold", "Units sold", "count"),
        column("net_revenue", "Net revenue", "money"),
        column("gross_margin", "Gross margin", "money"),
        column("margin_rate", "Margin", "rate"),
    ]
    note = (
        f"The {TOP_PRODUCTS} products of highest net revenue over the window, with their gross margin "
        "(days whose unit cost is unknown add none)."
    )
    return _section("top_products", "Top products and margin", note, columns, rows)


def _band(spend: Decimal) -> int:
    """Index of the band `spend` falls in: 0 below the first bound, i for bound i-1 and up."""
    return sum(1 for bound in VALUE_BANDS if spend >= bound)


def band_labels() -> list[str]:
    uppers = [*VALUE_BANDS[1:], None]
    return [f"< {VALUE_BANDS[0]:,}"] + [
        f"{low:,}–{high:,}" if high is not None else f"≥ {low:,}" for low, high in zip(VALUE_BANDS, uppers)
    ]


def customer_value(lifetime: pa.Table) -> dict[str, Any]:
    counts, spend = [0] * (len(VALUE_BANDS) + 1), [Decimal(0)] * (len(VALUE_BANDS) + 1)
    for value in lifetime["total_spend"].to_pylist():
        counts[_band(value)] += 1
        spend[_band(value)] += value
    rows = [[label, counts[i], money(spend[i])] for i, label in enumerate(band_labels())]
    columns = [
        column("band", "Lifetime value", "text"),
        column("customers", "Customers", "count"),
        column("total_spend", "Their total spend", "money"),
    ]
    note = "Identified customers last active in the window, by lifetime net spend."
    return _section("customer_value", "Customer-value distribution", note, columns, rows)


def inventory_cover(cover: pa.Table) -> dict[str, Any]:
    by_day: dict[dt.date, list[int]] = defaultdict(lambda: [0, 0, 0])
    for day, days_of_cover in zip(cover["snapshot_date"].to_pylist(), cover["days_of_cover"].to_pylist()):
        counted = by_day[day]
        counted[2] += 1
        if days_of_cover is not None:
            counted[1] += 1
            counted[0] += days_of_cover < COVER_THRESHOLD_DAYS
    rows = [[day.isoformat(), *counted] for day, counted in sorted(by_day.items())]
    columns = [
        column("snapshot_date", "Day", "date"),
        column("below_threshold", f"Below {COVER_THRESHOLD_DAYS:g} days", "count"),
        column("with_cover", "Selling", "count"),
        column("positions", "Stocked", "count"),
    ]
    note = (
        f"Store and product positions whose stock lasts under {COVER_THRESHOLD_DAYS:g} days at the last 7 days' "
        "sales rate; positions that sold nothing have no cover figure."
    )
    return _section("inventory_cover", "Inventory days of cover below threshold", note, columns, rows)


def _rejected(inputs: ReportInputs, first: dt.date, last: dt.date) -> dict[tuple[dt.date, str], int]:
    violations = inputs.window(QUARANTINE_RULE_VIOLATIONS, first, last)
    quarantined = violations.filter(pc.is_null(violations["replayed_at"]))  # released ones are in Silver
    counted: dict[tuple[dt.date, str], int] = defaultdict(int)
    for table in (inputs.window(QUARANTINE_INGEST_REJECTS, first, last), quarantined):
        for r in table.group_by(["_arrival_date", "source_table"]).aggregate([("source_table", "count")]).to_pylist():
            counted[(r["_arrival_date"], r["source_table"])] += r["source_table_count"]
    return counted


def reject_rate(inputs: ReportInputs, first: dt.date, last: dt.date) -> dict[str, Any]:
    records = inputs.records_in
    inside = pc.and_(
        pc.greater_equal(records["_arrival_date"], pa.scalar(first, pa.date32())),
        pc.less_equal(records["_arrival_date"], pa.scalar(last, pa.date32())),
    )
    records_in: dict[tuple[dt.date, str], int] = defaultdict(int)
    for r in records.filter(inside).to_pylist():
        records_in[(r["_arrival_date"], r["source_table"])] += r["records"]
    rejected = _rejected(inputs, first, last)
    keys = sorted({k for k, n in records_in.items() if n} | set(rejected))
    rows = [
        [day.isoformat(), source, records_in.get((day, source), 0), rejected.get((day, source), 0)]
        for day, source in keys
    ]
    rows = [[*r, rate(r[3], r[2])] for r in rows]
    columns = [
        column("arrival_date", "Arrival day", "date"),
        column("source_table", "Source", "text"),
        column("records_in", "Records in", "count"),
        column("rejected", "Quarantined", "count"),
        column("reject_rate", "Reject rate", "rate"),
    ]
    note = "Records quarantined (unparseable, or refused by a Silver rule and not released since) per records in."
    return _section("reject_rate", "Quarantine reject rate per source and day", note, columns, rows)


def headline(sections: dict[str, dict[str, Any]], day: dt.date) -> list[dict[str, Any]]:
    """The partition day's figures: the page's header and the materialization's plotted metadata."""
    iso = day.isoformat()

    def of_day(name: str, value: str) -> list[Any]:
        section = sections[name]
        at = [c["name"] for c in section["columns"]].index(value)
        return [r[at] for r in section["rows"] if r[0] == iso]

    # rounded to cents: the rate is that of the amounts the page prints
    revenue, returns = (round(sum(of_day("store_sales", c)), 2) for c in ("revenue", "returns_amount"))
    below = of_day("inventory_cover", "below_threshold")
    rejected, records_in = sum(of_day("reject_rate", "rejected")), sum(of_day("reject_rate", "records_in"))
    figures = [
        ("revenue", "Revenue", "money", revenue),
        ("net_revenue", "Net revenue", "money", round(sum(of_day("store_sales", "net_revenue")), 2)),
        ("transactions", "Transactions", "count", sum(of_day("store_sales", "transactions"))),
        ("returns_rate", "Returns rate", "rate", rate(returns, revenue)),
        (
            "active_customers",
            "Customers active (window)",
            "count",
            sum(r[1] for r in sections["customer_value"]["rows"]),
        ),
        ("below_cover_threshold", "Positions below cover", "count", below[0] if below else 0),
        ("reject_rate", "Reject rate", "rate", rate(rejected, records_in)),
    ]
    return [{"name": n, "label": label, "kind": kind, "value": v} for n, label, kind, v in figures]


def kpi_figures(inputs: ReportInputs, day: dt.date) -> dict[str, Any]:
    """The report of business day `day`: its window, headline figures and sections."""
    first = day - dt.timedelta(days=WINDOW_DAYS - 1)
    daily = inputs.window(GOLD_AGG_DAILY_STORE_SALES, first, day)
    built = [
        store_sales(daily),
        returns_rate(daily),
        top_products(inputs.window(GOLD_AGG_PRODUCT_PERFORMANCE, first, day)),
        customer_value(inputs.window(GOLD_AGG_CUSTOMER_LIFETIME_VALUE, first, day)),
        inventory_cover(inputs.window(GOLD_AGG_INVENTORY_COVER, first, day)),
        reject_rate(inputs, first, day),
    ]
    sections = {s["name"]: s for s in built}
    return {
        "partition": day.isoformat(),
        "window": [first.isoformat(), day.isoformat()],
        "parameters": {
            "window_days": WINDOW_DAYS,
            "top_products": TOP_PRODUCTS,
            "cover_threshold_days": COVER_THRESHOLD_DAYS,
            "value_bands": list(VALUE_BANDS),
        },
        "headline": headline(sections, day),
        "sections": built,
    }


def differences(written: dict[str, Any] | None, expected: dict[str, Any]) -> list[str]:
    """Where a report's figures (as its page's `figures.json` holds them) differ from `expected`:
    the headline figures and the sections by name, empty when they are equal."""
    if written is None:
        return ["the page's figures.json is missing"]
    found = []
    for part in ("partition", "window", "parameters"):
        if written.get(part) != expected[part]:
            found.append(part)
    heads = {h["name"]: h["value"] for h in written.get("headline", [])}
    found += [f"headline {h['name']}" for h in expected["headline"] if heads.get(h["name"], "missing") != h["value"]]
    sections = {s["name"]: s for s in written.get("sections", [])}
    for section in expected["sections"]:
        shown = sections.get(section["name"])
        if shown is None or shown.get("columns") != section["columns"] or shown.get("rows") != section["rows"]:
            found.append(f"section {section['name']}")
    return found
