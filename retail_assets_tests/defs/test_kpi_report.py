"""The KPI report: a page per business day whose figures equal Gold's.

A small, seeded Gold (the aggregates, the quarantine tables and the Bronze tables the reject
rate counts) is written as Delta tables through the engine; `gold/kpi_report` runs for real
through `dg.materialize` with the project's resource, and the page it renders is opened in
headless Chromium. Every figure the page shows is compared with a computation from scratch
over the Delta tables (delta-rs and pyarrow, none of the report's code).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import re
import tempfile
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from retail_assets.defs.gold.report import FIGURES_EQUAL_GOLD, KPI_REPORT, kpi_report, kpi_report_checks
from retail_assets.lib.engine import DeltaRsEngine, DeltaSparkEngine, LakehouseEngine, PartitionRange
from retail_assets.lib.orchestration.resources import LakehouseResource
from retail_assets.lib.orchestration.stage_runs import execute_stage
from retail_assets.lib.registry import tables as t
from retail_assets.lib.settings import project_root

CHROMIUM = Path("/usr/bin/chromium")
DAY = dt.date(2026, 11, 14)  # the report's business day: its window is 11-01 … 11-14
FIRST, LAST = dt.date(2026, 10, 29), dt.date(2026, 11, 16)  # the data: days either side of the window
WINDOW = (dt.date(2026, 11, 1), DAY)
STORES = ("S01", "S02", "S03", "S04")
PRODUCTS = {f"P{i:02d}": ("grocery", "beverages", "household", "electronics")[i % 4] for i in range(1, 16)}
BRONZE = t.tables_in(t.Layer.BRONZE)
SECTIONS = ("store_sales", "returns_rate", "top_products", "customer_value", "inventory_cover", "reject_rate")


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def cents(rng: random.Random, low: float, high: float) -> Decimal:
    return Decimal(f"{rng.uniform(low, high):.2f}")


DEFAULTS = {
    "string": "x",
    "int": 0,
    "bigint": 0,
    "double": 0.0,
    "boolean": False,
    "date": FIRST,
    "timestamp": dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
}


def rows_of(spec: t.TableSpec, rows: list[dict]) -> pa.Table:
    """`rows` in the table's schema; a column a row leaves out holds a value of its type."""

    def default(column: t.Column):
        if column.nullable or column.type.startswith("binary"):
            return None
        if column.type.startswith("decimal"):
            return Decimal(0)
        if column.type.startswith("array"):
            return []
        return DEFAULTS[column.type]

    full = [{c.name: row.get(c.name, default(c)) for c in spec.columns} for row in rows]
    return pa.Table.from_pylist(full, schema=spec.arrow_schema())


def sample_tables(seed: int = 7) -> dict[t.TableSpec, pa.Table]:
    rng = random.Random(seed)
    span = days(FIRST, LAST)
    store_sales, products, cover, rejects, violations = [], [], [], [], []
    for day in span:
        for store in STORES:
            revenue = cents(rng, 300, 2500)
            returns = (revenue * Decimal(rng.uniform(0, 0.12))).quantize(Decimal("0.01"))
            store_sales.append(
                {
                    "event_date": day,
                    "store_id": store,
                    "channel": "store_file",
                    "revenue": revenue,
                    "returns_amount": returns,
                    "net_revenue": revenue - returns,
                    "transactions": rng.randint(10, 90),
                    "units": rng.randint(20, 300),
                }
            )
            for product in PRODUCTS:
                on_hand = rng.randint(0, 80)
                rate = rng.choice([0.0, 0.0, rng.uniform(0.5, 15)])
                cover.append(
                    {
                        "snapshot_date": day,
                        "store_id": store,
                        "product_id": product,
                        "on_hand_qty": on_hand,
                        "avg_daily_units_sold": rate,
                        "days_of_cover": on_hand / rate if rate else None,
                    }
                )
        for product, category in PRODUCTS.items():
            if rng.random() < 0.2:
                continue  # not sold that day
            net = cents(rng, -20, 900)
            products.append(
                {
                    "event_date": day,
                    "product_id": product,
                    # a product moved to another category during the window
                    "category": "seasonal" if product == "P03" and day >= dt.date(2026, 11, 8) else category,
                    "units_sold": rng.randint(1, 60),
                    "net_revenue": net,
                    "revenue": max(net, Decimal(0)),
                    # no unit cost known for P15, nor for P07 on some days
                    "gross_margin": None
                    if product == "P15" or (product == "P07" and day.day % 3 == 0)
                    else (net * Decimal(rng.uniform(0.1, 0.4))).quantize(Decimal("0.01")),
                }
            )
        for n in range(rng.randint(0, 4)):
            rejects.append(
                {
                    "source_table": rng.choice(BRONZE).key,
                    "_source": f"{day}:{n}",
                    "rule": "malformed_row",
                    **arrived(day),
                }
            )
        for n in range(rng.randint(0, 6)):
            released = rng.random() < 0.25
            violations.append(
                {
                    "source_table": rng.choice(
                        (t.BRONZE_SALES_FILES, t.BRONZE_POS_TRANSACTIONS, t.BRONZE_CUSTOMERS)
                    ).key,
                    "_source": f"{day}:{n}",
                    "record_key": f"K{n}",
                    "rule": "missing_key",
                    "replayed_at": dt.datetime(2026, 11, 20, tzinfo=dt.UTC) if released else None,
                    **arrived(day),
                }
            )
    lifetime = [
        {
            "customer_id": f"C{i:03d}",
            "total_spend": Decimal("-12.50") if i == 0 else cents(rng, 1, 1600),
            "orders": rng.randint(1, 20),
            "last_active_date": rng.choice(span),
        }
        for i in range(80)
    ]
    written = {
        t.GOLD_AGG_DAILY_STORE_SALES: store_sales,
        t.GOLD_AGG_PRODUCT_PERFORMANCE: products,
        t.GOLD_AGG_CUSTOMER_LIFETIME_VALUE: lifetime,
        t.GOLD_AGG_INVENTORY_COVER: cover,
        t.QUARANTINE_INGEST_REJECTS: rejects,
        t.QUARANTINE_RULE_VIOLATIONS: violations,
        **{spec: bronze_rows(spec, rng, span) for spec in BRONZE},
    }
    return {spec: rows_of(spec, rows) for spec, rows in written.items()}


def arrived(day: dt.date) -> dict:
    return {"_arrival_date": day, "event_date": day, "reason": "r", "original_record": "r", "_batch_id": "b"}


def bronze_rows(spec: t.TableSpec, rng: random.Random, span: list[dt.date]) -> list[dict]:
    rows = []
    for day in span:
        for n in range(rng.randint(40, 160)):
            row = {"_arrival_date": day, "_source": f"{spec.name}/{day}:{n}", "_raw_record": "r", "_batch_id": "b"}
            if spec is t.BRONZE_POS_TRANSACTIONS:
                lines = [
                    {"line_number": str(i), "product_id": "P01", "quantity": "1"} for i in range(rng.randint(1, 4))
                ]
                kind = n % 9
                # an unparseable message and an event without lines each count as one record
                row["lines"] = "[]" if kind == 1 else json.dumps(lines)
                row["_parse_error"] = "invalid_json" if kind == 2 else None
            rows.append(row)
    return rows


def write(engine: LakehouseEngine, data: dict[t.TableSpec, pa.Table]) -> None:
    for spec, table in data.items():
        engine.overwrite_partitions(spec, table, PartitionRange(FIRST, LAST))


def resources(root: Path, engine: str = "delta_rs") -> dict:
    return {
        "lakehouse": LakehouseResource(
            root=str(root / "lakehouse"), landing_root=str(root / "landing"), table_engine=engine
        ),
        "pyspark_step_launcher": dg.ResourceDefinition.none_resource(),
    }


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory, spark) -> Path:
    root = tmp_path_factory.mktemp("kpi")
    write(DeltaRsEngine(root / "lakehouse", spark=spark), sample_tables())
    return root


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture(scope="module")
def materialized(lakehouse, instance) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [kpi_report, kpi_report_checks],
        partition_key=DAY.isoformat(),
        resources=resources(lakehouse),
        instance=instance,
    )
    assert result.success
    return result


def page_dir(root: Path, day: dt.date = DAY) -> Path:
    return root / "reports" / "kpi" / day.isoformat()


# ---------------------------------------------------------------------------------------------
# The figures, computed from scratch from the Delta tables
# ---------------------------------------------------------------------------------------------


def delta(root: Path, spec: t.TableSpec) -> list[dict]:
    rows = DeltaTable(str(root / "lakehouse" / spec.layer.value / spec.name)).to_pyarrow_table().to_pylist()
    return [r for r in rows if WINDOW[0] <= r[spec.partition_column] <= WINDOW[1]]


def pct(numerator, denominator) -> float | None:
    return round(float(numerator) / float(denominator), 6) if denominator else None


def expected_figures(root: Path) -> dict[str, list[list]]:
    """Each section's rows as the page must show them, from the Delta tables alone."""
    daily = sorted(delta(root, t.GOLD_AGG_DAILY_STORE_SALES), key=lambda r: (r["event_date"], r["store_id"]))
    store_sales = [
        [r["event_date"].isoformat(), r["store_id"]]
        + [float(r[c]) for c in ("revenue", "returns_amount", "net_revenue")]
        + [r["transactions"]]
        for r in daily
    ]
    per_day = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for r in daily:
        per_day[r["event_date"]][0] += r["revenue"]
        per_day[r["event_date"]][1] += r["returns_amount"]
    returns = [[d.isoformat(), float(v), float(ret), pct(ret, v)] for d, (v, ret) in sorted(per_day.items())]

    products = defaultdict(lambda: {"net": Decimal(0), "margin": None, "units": 0, "latest": None})
    for r in delta(root, t.GOLD_AGG_PRODUCT_PERFORMANCE):
        p = products[r["product_id"]]
        p["net"] += r["net_revenue"]
        p["units"] += r["units_sold"]
        if r["gross_margin"] is not None:
            p["margin"] = (p["margin"] or 0) + r["gross_margin"]
        if p["latest"] is None or r["event_date"] > p["latest"][0]:
            p["latest"] = (r["event_date"], r["category"])
    ranked = sorted(products.items(), key=lambda kv: (-kv[1]["net"], kv[0]))[:10]
    top = [
        [i, pid, p["latest"][1], p["units"], float(p["net"])]
        + ([None, None] if p["margin"] is None else [float(p["margin"]), pct(p["margin"], p["net"])])
        for i, (pid, p) in enumerate(ranked, start=1)
    ]

    bands = [(-(10**9), 0), (0, 25), (25, 50), (50, 100), (100, 250), (250, 500), (500, 1000), (1000, 10**9)]
    spend = [r["total_spend"] for r in delta(root, t.GOLD_AGG_CUSTOMER_LIFETIME_VALUE)]
    labels = ["< 0", "0–25", "25–50", "50–100", "100–250", "250–500", "500–1,000", "≥ 1,000"]
    customers = [
        [label, sum(1 for s in spend if lo <= s < hi), float(sum((s for s in spend if lo <= s < hi), Decimal(0)))]
        for label, (lo, hi) in zip(labels, bands)
    ]

    cover = defaultdict(lambda: [0, 0, 0])
    for r in delta(root, t.GOLD_AGG_INVENTORY_COVER):
        c = cover[r["snapshot_date"]]
        c[2] += 1
        if r["days_of_cover"] is not None:
            c[1] += 1
            c[0] += r["days_of_cover"] < 7
    inventory = [[d.isoformat(), *c] for d, c in sorted(cover.items())]

    records = defaultdict(int)
    for spec in BRONZE:
        for r in delta(root, spec):
            lines = None if r.get("_parse_error") or "lines" not in r else json.loads(r["lines"])
            records[(r["_arrival_date"], spec.key)] += len(lines) if lines else 1
    rejected = defaultdict(int)
    for r in delta(root, t.QUARANTINE_INGEST_REJECTS):
        rejected[(r["_arrival_date"], r["source_table"])] += 1
    for r in delta(root, t.QUARANTINE_RULE_VIOLATIONS):
        if r["replayed_at"] is None:
            rejected[(r["_arrival_date"], r["source_table"])] += 1
    reject = [
        [d.isoformat(), s, records[(d, s)], rejected[(d, s)], pct(rejected[(d, s)], records[(d, s)])]
        for d, s in sorted(set(records) | set(rejected))
    ]
    return {
        "store_sales": store_sales,
        "returns_rate": returns,
        "top_products": top,
        "customer_value": customers,
        "inventory_cover": inventory,
        "reject_rate": reject,
    }


def expected_headline(figures: dict[str, list[list]]) -> dict[str, float | int]:
    today = [r for r in figures["store_sales"] if r[0] == DAY.isoformat()]
    revenue, returns = (float(sum(Decimal(str(r[i])) for r in today)) for i in (2, 3))
    rejects = [r for r in figures["reject_rate"] if r[0] == DAY.isoformat()]
    return {
        "revenue": revenue,
        "net_revenue": float(sum(Decimal(str(r[4])) for r in today)),
        "transactions": sum(r[5] for r in today),
        "returns_rate": pct(returns, revenue),
        "active_customers": sum(r[1] for r in figures["customer_value"]),
        "below_cover_threshold": next(r[1] for r in figures["inventory_cover"] if r[0] == DAY.isoformat()),
        "reject_rate": pct(sum(r[3] for r in rejects), sum(r[2] for r in rejects)),
    }


def parsed(value: str) -> object:
    """A `data-value` attribute as the figure it holds."""
    if value == "":
        return None
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    try:
        return float(value)
    except ValueError:
        return value


def formatted(value, kind: str) -> str:
    if value is None:
        return "—"
    formats = {"money": "{:,.2f}", "rate": "{:.2%}", "count": "{:,}"}
    return formats.get(kind, "{}").format(value)


# ---------------------------------------------------------------------------------------------
# The page in Chromium
# ---------------------------------------------------------------------------------------------

READ_PAGE = """() => ({
  headline: Object.fromEntries([...document.querySelectorAll('#headline [data-figure]')].map(
    e => [e.dataset.figure, [e.dataset.value, e.querySelector('dd').textContent]])),
  tables: Object.fromEntries([...document.querySelectorAll('table[id^=table-]')].map(table => [
    table.dataset.section,
    [...table.querySelectorAll('tbody tr')].map(tr => [...tr.querySelectorAll('td')].map(
      td => [td.dataset.value, td.textContent, td.className]))])),
  images: [...document.querySelectorAll('img[id^=chart-]')].map(
    img => [img.id, img.complete, img.naturalWidth, img.naturalHeight, img.src]),
})"""


@pytest.mark.e2e
def test_the_page_in_chromium_shows_figures_equal_to_gold(materialized, lakehouse):
    from playwright.sync_api import sync_playwright  # the dev extra; `.ci/run` installs it

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `.ci/run` installs Debian's chromium"
    index = page_dir(lakehouse) / "index.html"
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.new_page()
            page.goto(index.as_uri())
            page.wait_for_load_state("load")
            shown = page.evaluate(READ_PAGE)
            artifacts = project_root() / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "kpi-report.png"), full_page=True)
        finally:
            context.close()

    expected = expected_figures(lakehouse)
    assert sorted(shown["tables"]) == sorted(SECTIONS)
    for section, rows in expected.items():
        cells = shown["tables"][section]
        assert [[parsed(value) for value, _, _ in row] for row in cells] == rows, section
        # the text a person reads is the same figure
        assert [[text for _, text, _ in row] for row in cells] == [
            [formatted(v, kind) for v, (_, _, kind) in zip(row, cells_row)] for row, cells_row in zip(rows, cells)
        ], section
    assert len(expected["store_sales"]) == len(STORES) * 14 and len(expected["top_products"]) == 10
    headline = expected_headline(expected)
    assert {k: parsed(v) for k, (v, _) in shown["headline"].items()} == headline
    # every chart drawn and loaded, and the one the page embeds is the PNG written beside it
    assert [image[0] for image in shown["images"]] == [f"chart-{s}" for s in SECTIONS]
    for name, complete, width, height, src in shown["images"]:
        assert complete and width > 0 and height > 0, name
        png = (page_dir(lakehouse) / f"{name.removeprefix('chart-')}.png").read_bytes()
        assert base64.b64decode(src.split(",", 1)[1]) == png


def test_the_materialization_carries_the_page_the_headline_and_the_charts(materialized, lakehouse):
    [event] = materialized.get_asset_materialization_events()
    metadata = event.materialization.metadata
    index = page_dir(lakehouse) / "index.html"
    assert metadata["path"].value == str(index) and index.exists()
    headline = expected_headline(expected_figures(lakehouse))
    assert {k: metadata[k].value for k in headline} == headline
    assert all(isinstance(metadata[k], dg.FloatMetadataValue | dg.IntMetadataValue) for k in headline)
    images = re.findall(r"!\[(\w+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", metadata["charts"].value)
    assert [name for name, _ in images] == list(SECTIONS)
    for name, data in images:
        png = base64.b64decode(data)
        assert png == (page_dir(lakehouse) / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and 5_000 < len(png) < 120_000, (name, len(png))


def check_result(instance, root: Path) -> dg.AssetCheckEvaluation:
    """The report's check alone, on the day's latest materialization."""
    job = dg.define_asset_job("kpi_check", selection=dg.AssetSelection.checks_for_assets(KPI_REPORT))
    defs = dg.Definitions(assets=[kpi_report], asset_checks=[kpi_report_checks], resources=resources(root), jobs=[job])
    # A checks-only job cannot infer its partitions definition: the partition goes in as its tag.
    result = defs.resolve_job_def(job.name).execute_in_process(
        instance=instance, tags={"dagster/partition": DAY.isoformat()}
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == FIGURES_EQUAL_GOLD
    return evaluation


def test_the_check_fails_when_the_pages_figures_are_altered(materialized, lakehouse, instance):
    [evaluation] = materialized.get_asset_check_evaluations()
    assert evaluation.passed, evaluation.metadata
    assert evaluation.metadata["differences"].value == "none"

    figures_json = page_dir(lakehouse) / "figures.json"
    original = figures_json.read_text(encoding="utf-8")
    try:
        altered = json.loads(original)
        store_sales = next(s for s in altered["sections"] if s["name"] == "store_sales")
        store_sales["rows"][3][4] += 0.01  # a cent more net revenue on one row
        figures_json.write_text(json.dumps(altered))
        failed = check_result(instance, lakehouse)
        assert not failed.passed
        assert failed.metadata["differences"].value == "section store_sales"
        figures_json.unlink()
        assert check_result(instance, lakehouse).metadata["differences"].value == "the page's figures.json is missing"
    finally:
        figures_json.write_text(original, encoding="utf-8")
    assert check_result(instance, lakehouse).passed


def test_a_range_run_renders_a_page_per_day_and_checks_each_against_its_materialization(lakehouse, instance):
    job = dg.Definitions(
        assets=[kpi_report],
        asset_checks=[kpi_report_checks],
        resources=resources(lakehouse),
        jobs=[dg.define_asset_job("kpi", selection=dg.AssetSelection.assets(KPI_REPORT))],
    ).resolve_job_def("kpi")
    first, last = dt.date(2026, 11, 9), dt.date(2026, 11, 10)
    result = execute_stage(job, PartitionRange(first, last), instance)
    assert result.success
    materialized = {
        r.partition_key: r
        for r in instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    }
    assert sorted(materialized) == ["2026-11-09", "2026-11-10"]
    for key, record in materialized.items():
        metadata = record.asset_materialization.metadata
        assert metadata["path"].value == str(page_dir(lakehouse, dt.date.fromisoformat(key)) / "index.html")
        written = json.loads(
            (page_dir(lakehouse, dt.date.fromisoformat(key)) / "figures.json").read_text(encoding="utf-8")
        )
        assert written["window"] == [(dt.date.fromisoformat(key) - dt.timedelta(days=13)).isoformat(), key]
        assert metadata["revenue"].value == next(h["value"] for h in written["headline"] if h["name"] == "revenue")
    evaluations = result.get_asset_check_evaluations()
    assert sorted((e.partition, e.passed) for e in evaluations) == [("2026-11-09", True), ("2026-11-10", True)]
    for e in evaluations:
        [latest] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=KPI_REPORT, asset_partitions=[e.partition]), limit=1
        ).records
        target = e.target_materialization_data
        assert (target.run_id, target.storage_id) == (result.run_id, latest.storage_id), e.partition


def test_the_report_joins_the_gold_stage_and_follows_a_window_of_its_inputs():
    from retail_assets.definitions import build_definitions

    defs = build_definitions()
    build_gold = defs.resolve_job_def("build_gold")
    assert KPI_REPORT in build_gold.asset_layer.executable_asset_keys
    assert dg.AssetCheckKey(KPI_REPORT, FIGURES_EQUAL_GOLD) in build_gold.asset_layer.asset_graph.asset_check_keys
    node = defs.resolve_asset_graph().get(KPI_REPORT)
    assert node.group_name == "gold" and node.automation_condition is not None
    assert node.backfill_policy.max_partitions_per_run is None  # the main job renders a range in one run
    for spec in (t.GOLD_AGG_DAILY_STORE_SALES, t.QUARANTINE_RULE_VIOLATIONS, t.BRONZE_POS_TRANSACTIONS):
        mapping = node.partition_mappings[dg.AssetKey([spec.layer.value, spec.name])]
        assert (mapping.start_offset, mapping.end_offset) == (-13, 0), spec.key


@pytest.mark.parity
def test_the_delta_spark_engine_renders_the_same_figures(tmp_path, spark, materialized, lakehouse):
    write(DeltaSparkEngine.local(tmp_path / "lakehouse", "dev", spark=spark), sample_tables())
    result = dg.materialize(
        [kpi_report, kpi_report_checks],
        partition_key=DAY.isoformat(),
        resources=resources(tmp_path, "delta_spark"),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    on_spark = json.loads((page_dir(tmp_path) / "figures.json").read_text(encoding="utf-8"))
    on_delta_rs = json.loads((page_dir(lakehouse) / "figures.json").read_text(encoding="utf-8"))
    assert on_spark == on_delta_rs
