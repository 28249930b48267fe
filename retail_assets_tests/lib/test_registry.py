"""A new table is one registry entry plus its transformation function, and a new landing source is
one registry entry: every list derived from the registry picks them up.

The test edits a copy of the package exactly as a developer would (text inserted into
`lib/registry/tables.py` and `defs/gold/assets.py`, nothing else) and loads the copy's
definitions in a process of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import retail_assets
from retail_assets.lib.registry import rules
from retail_assets.lib.registry.stages import STAGES
from retail_assets.lib.registry.tables import (
    BRONZE_ORDERS_CHANGES,
    TABLES,
    Layer,
    landing_sources,
    master_data,
    refinements,
    tables_in,
)
from retail_assets.lib.transforms import quality
from retail_assets.tooling.generator import defects
from retail_assets.tooling.generator.model import DEFECT_KINDS, SOURCE_TABLES

PACKAGE = Path(retail_assets.__file__).parent

NEW_GOLD_ENTRY = """
GOLD_AGG_DAILY_CATEGORY_SALES = TableSpec(
    layer=Layer.GOLD,
    name="agg_daily_category_sales",
    grain="one row per product category and business day",
    partitioning=Partitioning.EVENT_DATE,
    partition_column="event_date",
    primary_key=("event_date", "category"),
    columns=(
        Column("event_date", "date", False),
        Column("category", "string", False),
        _measure("revenue", "decimal(18,2)", "Net amount of sales lines."),
        _measure("units_sold", "bigint"),
    ),
    description="Daily sales by product category.",
    non_negative=("revenue", "units_sold"),
    stage="build_gold",
)
"""

NEW_GOLD_FUNCTION = """

def daily_category_sales_compute(run: TableRun) -> TableOutput:
    fact = run.read(tables.GOLD_FACT_SALES).filter("line_type = 'sale'")
    products = run.read_all(tables.GOLD_DIM_PRODUCT).select("product_sk", "category")
    joined = fact.join(products, "product_sk", "left").fillna({"category": "unknown"})
    return TableOutput(
        joined.groupBy("event_date", "category").agg(
            F.sum("net_amount").alias("revenue"), F.sum("quantity").cast("bigint").alias("units_sold")
        )
    )


agg_daily_category_sales = build_table_asset(
    spec=tables.GOLD_AGG_DAILY_CATEGORY_SALES,
    upstream=[Upstream(tables.GOLD_FACT_SALES), Upstream(tables.GOLD_DIM_PRODUCT, window(0, L))],
    compute=daily_category_sales_compute,
)
"""

NEW_LANDING_ENTRY = """
BRONZE_PROMOTIONS = _bronze(
    "promotions",
    "one row per promotion change record line",
    ("promotion_id", "product_id", "discount", "valid_from", "valid_to", "updated_at"),
    "Promotion change records from the landing zone `promotions/` folder.",
    LandingSource("promotions", "CSV", ("promotion_id",)),
)
"""

# What the copy's definitions derive, printed as JSON by a process of its own.
REPORT = textwrap.dedent(
    """
    import json
    import dagster as dg
    from retail_assets.definitions import defs
    from retail_assets.defs.quarantine import assets as quarantine
    from retail_assets.defs.bronze.sensors import landing_zone_sensor
    from retail_assets.lib.deployment.governance.grants import grants_sql
    from retail_assets.lib.registry.stages import STAGE
    from retail_assets.lib.registry.tables import landing_sources
    from retail_assets.tooling.bench.baseline import GOLD_TABLES

    def keys(job):
        return sorted("/".join(k.path) for k in defs.resolve_job_def(job).asset_layer.executable_asset_keys)

    graph = defs.resolve_asset_graph()
    new = dg.AssetKey(["gold", "agg_daily_category_sales"])
    node = graph.get(new)
    lineage = node.metadata["dagster/column_lineage"]
    print(json.dumps({
        "build_gold": keys("build_gold"),
        "ingest_bronze": keys("ingest_bronze"),
        "checks": sorted(c.name for c in graph.asset_check_keys if c.asset_key == new),
        "blocking": sorted(c.name for c in graph.asset_check_keys if c.asset_key == new and graph.get_check_spec(c).blocking),
        "automated": node.automation_condition is not None,
        "lineage": {col: sorted("/".join(d.asset_key.path) + "." + d.column_name for d in deps)
                    for col, deps in lineage.deps_by_column.items()},
        "bench_gold": [t.name for t in GOLD_TABLES],
        "granted": "agg_daily_category_sales" in grants_sql("dev", "retail"),
        "landing": sorted(landing_sources()),
        "landing_assets": sorted("/".join(k.path) for k in graph.get_all_asset_keys() if k.path[0] == "landing"),
        "quarantine_reads": [t.name for t in quarantine.BRONZE_TABLES],
        "sensor_targets": sorted("/".join(k.path) for k in defs.resolve_job_def(
            landing_zone_sensor.targets[0].job_name).asset_layer.executable_asset_keys),
        "promotions_checks": sorted(c.name for c in graph.asset_check_keys if c.asset_key.path == ["bronze", "promotions"]),
        "stage_of_promotions": [s for s, stage in STAGE.items() if any(t.name == "promotions" for t in stage.tables)],
    }))
    """
)


def insert_after(text: str, anchor: str, addition: str) -> str:
    assert text.count(anchor) == 1, anchor
    return text.replace(anchor, anchor + addition)


def test_a_new_gold_aggregate_and_a_new_landing_source_reach_every_derived_list(tmp_path):
    copy = tmp_path / "retail_assets"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    registry = copy / "lib" / "registry" / "tables.py"
    text = registry.read_text()
    # the entries, each after the one it follows, and their names in the table list
    text = text.replace(
        "\nTABLES: tuple[TableSpec, ...] = (",
        NEW_GOLD_ENTRY + NEW_LANDING_ENTRY + "\nTABLES: tuple[TableSpec, ...] = (",
    )
    text = insert_after(text, "    GOLD_AGG_INVENTORY_COVER,\n", "    GOLD_AGG_DAILY_CATEGORY_SALES,\n")
    text = insert_after(
        text, "    BRONZE_ORDERS_CHANGES,\n    QUARANTINE_INGEST_REJECTS,\n", "    BRONZE_PROMOTIONS,\n"
    )
    registry.write_text(text)
    gold_assets = copy / "defs" / "gold" / "assets.py"
    gold_assets.write_text(gold_assets.read_text() + NEW_GOLD_FUNCTION)

    env = {**os.environ, "PYTHONPATH": str(tmp_path), "RETAIL_ENV": "local"}
    done = subprocess.run(
        [sys.executable, "-c", REPORT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    # The Gold aggregate: in its stage's job, checked, automated, granted, compared by the bench.
    assert "gold/agg_daily_category_sales" in report["build_gold"]
    standard = {quality.PRIMARY_KEY, quality.VALUE_RULES, quality.COLUMN_SCHEMA}
    assert standard <= set(report["checks"]), report["checks"]
    assert {quality.PRIMARY_KEY, quality.VALUE_RULES} <= set(report["blocking"])  # Gold's layer policy
    assert report["automated"]
    assert report["granted"]
    assert "agg_daily_category_sales" in report["bench_gold"]
    assert report["lineage"]["revenue"] == ["gold/fact_sales.line_type", "gold/fact_sales.net_amount"]
    assert report["lineage"]["units_sold"] == ["gold/fact_sales.quantity"]

    # The landing source: folder, landing asset, Bronze asset and checks, sensor, quarantine, stage.
    assert "promotions" in report["landing"]
    assert "landing/promotions" in report["landing_assets"]
    assert "bronze/promotions" in report["ingest_bronze"] and "bronze/promotions" in report["sensor_targets"]
    assert "promotions" in report["quarantine_reads"]
    assert quality.PRIMARY_KEY in report["promotions_checks"]
    assert report["stage_of_promotions"] == ["ingest_bronze"]


def test_every_table_is_in_exactly_one_stage_of_its_calendar():
    staged = [t for stage in STAGES for t in stage.tables]
    assert sorted(t.key for t in staged) == sorted(t.key for t in TABLES)
    for stage in STAGES:
        assert all(t.partitioning is stage.partitioning for t in stage.tables), stage.job_name
    # each table's checks run in exactly one stage's job
    checked = [t.key for stage in STAGES for t in stage.checked]
    assert sorted(checked) == sorted(t.key for t in TABLES)


def test_derived_lists_match_the_layers():
    assert set(landing_sources().values()) == {t for t in tables_in(Layer.BRONZE) if t.landing}
    assert all(t.layer is Layer.SILVER and t.refines.layer is Layer.BRONZE for t in refinements())
    assert [t.name for t in master_data()] == ["customers", "products", "stores"]
    # a master-data record's attributes are what its dimension describes
    for silver_spec in master_data():
        dim = next(t for t in tables_in(Layer.GOLD) if t.name == f"dim_{silver_spec.name[:-1]}")
        assert set(silver_spec.attributes) - {"email", "phone"} <= set(dim.column_names), dim.name


# Rules the generator plants no defect for, and why.
NOT_PLANTED = {
    rules.INVALID_VALUE: "an accepted-values or negative-count breach; the hostile-input tests plant it",
    rules.CONFLICTING_DUPLICATE: "two records with one key and other content; the hostile-input tests plant it",
    rules.UNEXPECTED_VALUE: "a soft expectation; the Silver and hostile-input tests plant it",
    rules.IMPLAUSIBLE_EMAIL: "a soft expectation; lib/test_rules.py plants it",
    rules.IMPLAUSIBLE_AGE: "a soft expectation; lib/test_silver.py plants it",
}


def test_generator_defects_name_declared_rules_with_their_outcome():
    """Each defect the generator plants names a declared rule and the table that rule sends a
    record to; every rule is planted by a defect or says why not."""
    planted = {}
    for kind, (outcome, rule) in DEFECT_KINDS.items():
        if rule is None:
            continue
        declared = rules.RULE[rule]
        assert declared.outcome == outcome, (kind, rule, outcome, declared.outcome)
        planted.setdefault(rule, []).append(kind)
    assert set(rules.RULE) - set(planted) == set(NOT_PLANTED)
    # every source but the operational database, whose typed tables cannot hold a malformed record
    # (its online lines still pass the sales rules: lib/test_online_orders.py)
    assert set(SOURCE_TABLES.values()) == {t.key for t in tables_in(Layer.BRONZE)} - {BRONZE_ORDERS_CHANGES.key}


def test_each_planted_defect_is_of_a_rule_that_applies_to_its_source():
    planted = [("sales", k) for k in defects.SALES_LINE_KINDS] + [("kafka", k) for k in defects.KAFKA_EVENT_KINDS]
    planted += [(source, k) for source, kinds in defects.DIM_KINDS.items() for k in kinds]
    planted += [("inventory", k) for k in defects.INVENTORY_KINDS] + [(s, k) for s, k, _ in defects.EMPTY_FILES]
    for source, kind in planted:
        rule = DEFECT_KINDS[kind][1]
        if rule is not None:
            assert SOURCE_TABLES[source] in rules.RULE[rule].applies_to, (source, kind, rule)


def test_rules_are_declared_once_in_precedence_order():
    names = [r.name for r in rules.RULES]
    assert len(names) == len(set(names))
    assert rules.VIOLATION_RULES == tuple(n for n in names if rules.RULE[n].outcome == "rule_violations")
    # a rule's severity decides where its records go
    for r in rules.RULES:
        if r.severity is rules.Severity.WARN:
            assert r.outcome == rules.FLAGGED, r.name
        elif r.outcome in (rules.RULE_VIOLATIONS, rules.INGEST_REJECTS):
            assert r.severity is rules.Severity.DROP, r.name
    # what quarantine rows name must be what the declarations name
    assert rules.UNKNOWN_STORE == "unknown_store" and rules.unknown_master("store") == rules.UNKNOWN_STORE
