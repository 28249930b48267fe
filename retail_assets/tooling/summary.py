"""A short, readable summary of what Gold and quarantine hold (read with delta-rs, no Spark)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
from deltalake import DeltaTable

from retail_assets.lib.registry.tables import (
    GOLD_AGG_DAILY_STORE_SALES,
    GOLD_FACT_SALES,
    QUARANTINE_DUPLICATES,
    QUARANTINE_INGEST_REJECTS,
    QUARANTINE_RULE_VIOLATIONS,
    TableSpec,
)


def _read(root: Path, spec: TableSpec, columns: list[str]):
    path = root / spec.layer.value / spec.name
    if not DeltaTable.is_deltatable(str(path)):
        return None
    return DeltaTable(str(path)).to_pyarrow_table(columns=columns)


def gold_summary(lakehouse_root: Path) -> str:
    lines = ["", "Gold: daily store sales"]
    daily = _read(
        lakehouse_root,
        GOLD_AGG_DAILY_STORE_SALES,
        ["event_date", "revenue", "net_revenue", "transactions", "units", "unique_customers"],
    )
    if daily is None or daily.num_rows == 0:
        lines.append("  (empty)")
    else:
        agg = (
            daily.group_by("event_date")
            .aggregate(
                [
                    ("revenue", "sum"),
                    ("net_revenue", "sum"),
                    ("transactions", "sum"),
                    ("units", "sum"),
                    ("unique_customers", "sum"),
                ]
            )
            .sort_by("event_date")
        )
        lines.append(f"  {'day':<12}{'revenue':>14}{'net revenue':>14}{'transactions':>14}{'units':>10}")
        for row in agg.to_pylist():
            lines.append(
                f"  {row['event_date'].isoformat():<12}{float(row['revenue_sum']):>14,.2f}{float(row['net_revenue_sum']):>14,.2f}"
                f"{row['transactions_sum']:>14,}{row['units_sum']:>10,}"
            )
    fact = _read(lakehouse_root, GOLD_FACT_SALES, ["line_type", "customer_sk", "product_sk", "quality_flags"])
    if fact is not None:
        anonymous = pc.sum(pc.equal(fact["customer_sk"], -1)).as_py() or 0
        inferred = sum(1 for flags in fact["quality_flags"].to_pylist() if any(f.startswith("unknown_") for f in flags))
        lines.append(
            f"\nGold: fact_sales holds {fact.num_rows:,} lines ({anonymous:,} anonymous, "
            f"{inferred:,} keyed to an inferred member)"
        )
    for spec in (QUARANTINE_INGEST_REJECTS, QUARANTINE_RULE_VIOLATIONS):
        table = _read(lakehouse_root, spec, ["rule"])
        if table is None:
            continue
        counts = table.group_by("rule").aggregate([("rule", "count")]).sort_by([("rule_count", "descending")])
        detail = ", ".join(f"{r['rule']}={r['rule_count']}" for r in counts.to_pylist())
        lines.append(f"{spec.key}: {table.num_rows} rows ({detail or 'none'})")
    ledger = _read(lakehouse_root, QUARANTINE_DUPLICATES, ["kept_source"])
    if ledger is not None:
        lines.append(f"{QUARANTINE_DUPLICATES.key}: {ledger.num_rows} exact re-sends, each with the copy kept")
    return "\n".join(lines)
