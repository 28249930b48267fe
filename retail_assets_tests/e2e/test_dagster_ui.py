"""The Dagster UI as a user meets it: a partition-range backfill launched through GraphQL on a
running `dagster dev`, its materializations and check results read back through GraphQL, and
the lineage graph and a checks tab looked at in a real (headless) Chromium.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pytest

from retail_assets.lib.registry.freshness import FRESHNESS_CHECK
from retail_assets.lib.registry.tables import TABLES, Layer
from retail_assets.lib.transforms import quality
from retail_assets.tooling.devserver import DagsterDev
from retail_assets.tooling.generator import GeneratorConfig, generate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# A small Bronze → Silver → Gold chain: one Spark JVM per partition run.
SELECTION = (("bronze", "stores"), ("silver", "stores"), ("gold", "dim_store"))
DAYS = 2
BACKFILL_TIMEOUT_S = 420.0
CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium as root, with no network beyond loopback (see the machine notes in README).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
GROUPS = ("sources", "bronze", "quarantine", "silver", "gold")
# Every Gold table, serving shapes included.
GOLD_TABLES = tuple(t.name for t in TABLES if t.layer is Layer.GOLD)
# External source assets: the landing-zone folders and the Kafka topic (`kafka/retail_pos_transactions`).
SOURCES = ("sales", "customers", "products", "stores", "inventory", "retail_pos_transactions")

ASSET = """
query Asset($key: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      groupName
      description
      kinds
      owners { ... on TeamAssetOwner { team } }
      tags { key value }
      metadataEntries { label }
      assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
      assetPartitionStatuses { ... on TimePartitionStatuses { ranges { startKey endKey status } } }
      assetMaterializations(partitions: $partitions) {
        partition
        runId
        metadataEntries {
          label
          __typename
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
          ... on TableColumnLineageMetadataEntry { lineage { columnName columnDeps { assetKey { path } columnName } } }
        }
      }
    }
  }
}
"""

CHECK_EXECUTIONS = """
query Checks($key: AssetKeyInput!, $check: String!, $partition: String) {
  assetCheckExecutions(assetKey: $key, checkName: $check, partition: $partition, limit: 10) {
    runId
    status
    partition
    evaluation { success metadataEntries { label } }
  }
}
"""


def days(first: dt.date, n: int) -> list[str]:
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(n)]


def key_input(key: tuple[str, ...]) -> dict:
    return {"path": list(key)}


@pytest.fixture(scope="module")
def backfill(dagster_dev: DagsterDev):
    """Generate two days into the landing zone, backfill the chain over that partition range
    through GraphQL, wait for the daemon to finish it; returns (backfill, partitions)."""
    first = dt.date.today() - dt.timedelta(days=4)
    partitions = days(first, DAYS)
    config = GeneratorConfig.preset("tiny", days=DAYS, start_date=first, defects=False)
    generate(config, dagster_dev.data_root, overwrite=True)
    stores_landed = sorted(p.name for p in (dagster_dev.landing / "stores").iterdir())
    assert stores_landed == partitions, f"generator put store files under {stores_landed}, expected {partitions}"

    state = dagster_dev.backfill(
        [(key, partitions[0], partitions[-1]) for key in SELECTION], "e2e: stores chain", BACKFILL_TIMEOUT_S
    )
    return state, partitions


def asset_node(dev: DagsterDev, key: tuple[str, ...], partitions: list[str]) -> dict:
    node = dev.graphql(ASSET, {"key": key_input(key), "partitions": partitions})["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", f"{'/'.join(key)}: {node}"
    return node


def test_backfill_of_a_partition_range_runs_the_range_in_one_run(dagster_dev, backfill):
    state, partitions = backfill
    assert state["status"] == "COMPLETED_SUCCESS", (
        f"backfill ended {state['status']}: {state['error']}; runs {state['runs']}\n{dagster_dev.log_tail()}"
    )
    # The chain shares one partitioning and every asset's backfill policy is a single run: the
    # whole range in one run (the range tags), not one run per day.
    assert len(state["runs"]) == 1, state["runs"]
    tags = {t["key"]: t["value"] for t in state["runs"][0]["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        partitions[0],
        partitions[-1],
    )
    assert state["runs"][0]["status"] == "SUCCESS"


def test_every_selected_asset_is_materialized_per_partition_with_row_counts(dagster_dev, backfill):
    state, partitions = backfill
    run_ids = {run["runId"] for run in state["runs"]}
    for key in SELECTION:
        node = asset_node(dagster_dev, key, partitions)
        materializations = node["assetMaterializations"]
        assert sorted(m["partition"] for m in materializations) == partitions, f"{'/'.join(key)}: {materializations}"
        assert {m["runId"] for m in materializations} <= run_ids
        for m in materializations:
            entries = {e["label"]: e for e in m["metadataEntries"]}
            assert entries["dagster/row_count"]["__typename"] == "IntMetadataEntry"
            assert entries["dagster/row_count"]["intValue"] > 0, f"{'/'.join(key)} {m['partition']} wrote no rows"
        ranges = node["assetPartitionStatuses"]["ranges"]
        assert [(r["startKey"], r["endKey"], r["status"]) for r in ranges] == [
            (partitions[0], partitions[-1], "MATERIALIZED")
        ]


def test_materializations_carry_numeric_metadata_the_ui_plots(dagster_dev, backfill):
    """Numbers the UI plots per partition arrive as numeric entries, not text. The stores chain has
    no quarantine table and no revenue figures: its numbers are the row count and Delta version on
    every table and the landing-file figures of Bronze."""
    _, partitions = backfill
    numeric = {"IntMetadataEntry", "FloatMetadataEntry"}
    for key in SELECTION:
        for m in asset_node(dagster_dev, key, partitions)["assetMaterializations"]:
            entries = {e["label"]: e for e in m["metadataEntries"]}
            plotted = {label for label, e in entries.items() if e["__typename"] in numeric}
            assert {"dagster/row_count", "delta_version"} <= plotted, f"{'/'.join(key)} {m['partition']}: {entries}"
            assert entries["delta_version"]["intValue"] >= 0
    for m in asset_node(dagster_dev, ("bronze", "stores"), partitions)["assetMaterializations"]:
        figures = {e["label"]: e["intValue"] for e in m["metadataEntries"] if e["__typename"] == "IntMetadataEntry"}
        assert figures["records"] == figures["dagster/row_count"]
        landed = list((dagster_dev.landing / "stores" / m["partition"]).iterdir())
        assert figures["files"] == len(landed) > 0
        assert figures["bytes"] == sum(f.stat().st_size for f in landed)
        assert figures["unparseable_records"] == 0


def test_materializations_carry_column_lineage_back_to_the_landing_zone(dagster_dev, backfill):
    _, partitions = backfill
    expected = {
        ("bronze", "stores"): ["landing", "stores"],
        ("silver", "stores"): ["bronze", "stores"],
        ("gold", "dim_store"): ["silver", "stores"],
    }
    for key, upstream in expected.items():
        latest = asset_node(dagster_dev, key, partitions[-1:])["assetMaterializations"][0]
        lineage = next(e["lineage"] for e in latest["metadataEntries"] if e["label"] == "dagster/column_lineage")
        store_id = next(entry for entry in lineage if entry["columnName"] == "store_id")
        assert {"assetKey": {"path": upstream}, "columnName": "store_id"} in store_id["columnDeps"]


def test_definitions_show_layer_grain_owner_tags_kinds_and_code_reference(dagster_dev):
    node = asset_node(dagster_dev, ("gold", "dim_store"), [])
    assert node["groupName"] == "gold"
    assert "**Grain:**" in node["description"]
    assert {"spark", "delta"} <= set(node["kinds"])
    assert {"team": "data-platform"} in node["owners"]
    expected_tags = {
        ("silver", "stores"): {"layer": "silver", "partitioning": "arrival_date", "domain": "retail"},
        ("gold", "dim_store"): {"layer": "gold", "partitioning": "arrival_date", "domain": "retail"},
        ("gold", "fact_sales"): {"layer": "gold", "partitioning": "event_date", "domain": "retail"},
    }
    for key, tags in expected_tags.items():
        # Kinds come back as `dagster/kind/…` tags too; the project's own tags are the rest.
        own = {
            t["key"]: t["value"]
            for t in asset_node(dagster_dev, key, [])["tags"]
            if not t["key"].startswith("dagster/")
        }
        assert own == tags, f"{'/'.join(key)}: {own}"
    labels = {e["label"] for e in node["metadataEntries"]}
    assert {"dagster/column_schema", "dagster/code_references", "dagster/column_lineage"} <= labels
    source = asset_node(dagster_dev, ("landing", "stores"), [])
    assert source["groupName"] == "sources"


def test_every_check_of_the_selection_passed_for_every_partition(dagster_dev, backfill):
    state, partitions = backfill
    run_ids = {run["runId"] for run in state["runs"]}
    evaluated = 0
    for key in SELECTION:
        checks = asset_node(dagster_dev, key, partitions)["assetChecksOrError"]["checks"]
        assert checks, f"{'/'.join(key)} has no checks"
        for check in checks:
            if check["name"] == FRESHNESS_CHECK:
                continue  # of the table, not of a partition (test_freshness.py)
            for partition in partitions:
                executions = dagster_dev.graphql(
                    CHECK_EXECUTIONS, {"key": key_input(key), "check": check["name"], "partition": partition}
                )["assetCheckExecutions"]
                assert executions, f"{'/'.join(key)}:{check['name']} was not executed for {partition}"
                latest = executions[0]
                assert latest["runId"] in run_ids
                assert latest["partition"] == partition
                assert latest["status"] == "SUCCEEDED", f"{'/'.join(key)}:{check['name']} {partition}: {latest}"
                assert latest["evaluation"]["success"] is True
                # Every check reports its figures, the partition among them.
                assert "partition" in {e["label"] for e in latest["evaluation"]["metadataEntries"]}
                evaluated += 1
    assert evaluated >= len(SELECTION) * 2 * len(partitions)


# ---------------------------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(dagster_dev: DagsterDev):
    # What the UI's "Skip" on its first-visit newsletter dialog records: the dialog stays away.
    assert dagster_dev.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    from playwright.sync_api import sync_playwright  # the dev extra; `.ci/run` installs it

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `.ci/run` installs Debian's chromium"
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        # A persistent context is the way to hand Chromium a fresh --user-data-dir.
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            # The graph runs top to bottom, from the sources to Gold: a tall window shows it all
            # at a readable scale, sharpened for the README screenshot.
            viewport={"width": 1400, "height": 2200},
            device_scale_factor=1.5,
        )
        try:
            yield context
        finally:
            context.close()


def open_page(context, url: str):
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(url)
    return page


def on_graph(page, name: str) -> bool:
    """Whether a node or group label is drawn wholly inside the graph's part of the screen
    (the graph draws only what is in view; the sidebar lists group names too)."""
    toolbar = page.get_by_role("button", name="Materialize all").bounding_box()
    bottom = page.viewport_size["height"]
    for element in page.get_by_text(name, exact=True).all():
        box = element.bounding_box()
        # Clear of the toolbar, whose bar reaches a little below its buttons.
        if box and box["y"] >= toolbar["y"] + toolbar["height"] + 24 and box["y"] + box["height"] <= bottom:
            return True
    return False


def graph_full_width(page) -> None:
    """Fold away the navigation and the group tree: the graph gets the whole window."""
    page.get_by_text("Hide navigation").click()
    page.locator("button:has([aria-label='panel_show_right'])").click()


def zoom_out_until_shown(page, names: tuple[str, ...], max_steps: int = 20) -> None:
    zoom_out = page.locator("button:has([aria-label='zoom_out'])")
    for _ in range(max_steps):
        if all(on_graph(page, n) for n in names):
            return
        zoom_out.click()
        page.wait_for_timeout(400)
    missing = [n for n in names if not on_graph(page, n)]
    raise AssertionError(f"the lineage graph never showed {missing} on one screen")


def graph_node(page, name: str, *, source: bool = False):
    """An asset node drawn in detail, by its full name: the graph middle-truncates long names
    (`agg_d…_store_sales`) but keeps the whole one in the name's `data-tooltip`, beside an icon
    that tells external sources from materializable assets."""
    icon = "source_asset" if source else "asset"
    return page.locator(f"foreignObject div:has(> span [aria-label='{icon}']) > [data-tooltip='{name}']")


def zoom_in_until_drawn_in_detail(page, names: tuple[str, ...], *, source: bool, max_steps: int = 10) -> list[str]:
    """Zoomed out, the graph draws nodes as bare truncated names; from a scale on it draws each
    node in detail (name, icon, facets). Zooms in until every one of `names` is drawn so;
    returns those that never were."""
    zoom_in = page.locator("button:has([aria-label='zoom_in'])")

    def missing() -> list[str]:
        return [n for n in names if not graph_node(page, n, source=source).count()]

    for _ in range(max_steps):
        if not missing():
            return []
        zoom_in.click()
        page.wait_for_timeout(400)
    return [f"{'source ' if source else ''}{n}" for n in missing()]


# The ends of the graph: where data enters, and the tables analysts read.
GRAPH_TOP = ("sources", "pos_transactions", "sales_files")
GRAPH_BOTTOM = ("dim_store", "dim_customer", "dim_product", "dim_date", "fact_sales")


def test_lineage_graph_shows_sources_through_gold(dagster_dev, backfill, browser, artifacts):
    expanded = ",".join(f"global@global:{g}" for g in GROUPS)
    page = open_page(browser, f"{dagster_dev.base_url}/asset-groups?expanded={expanded}")
    page.get_by_text("sales_files", exact=True).first.wait_for()
    graph_full_width(page)
    # wide enough that the three sources' lineage fits at a scale that still draws node names
    page.set_viewport_size({"width": 2400, "height": 3200})
    page.wait_for_timeout(1_000)
    zoom_out_until_shown(page, (*GRAPH_TOP, *GRAPH_BOTTOM, *GROUPS))
    page.wait_for_timeout(1_000)
    page.screenshot(path=str(artifacts / "lineage.png"))
    # Sources, every layer and the Gold tables are on screen at once.
    for group in GROUPS:
        assert on_graph(page, group), f"group {group} not on the lineage graph"

    # Each end's group graph in a window large enough to draw every node in detail at once (the
    # graph draws only what is in view): every Gold table, every landing folder and the topic.
    missing = []
    for group, names, source in (("gold", GOLD_TABLES, False), ("sources", SOURCES, True)):
        detail = browser.new_page()
        detail.set_default_timeout(90_000)
        detail.set_viewport_size({"width": 2000, "height": 3000})
        detail.goto(f"{dagster_dev.base_url}/locations/retail_assets/asset-groups/{group}")
        detail.get_by_text(names[0], exact=True).first.wait_for()
        detail.wait_for_timeout(1_000)
        missing += zoom_in_until_drawn_in_detail(detail, names, source=source)
    assert not missing, f"not on the lineage graph: {missing}"


def test_checks_tab_shows_the_passed_checks_of_dim_store(dagster_dev, backfill, browser, artifacts):
    page = open_page(browser, f"{dagster_dev.base_url}/assets/gold/dim_store?view=checks")
    page.set_viewport_size({"width": 2000, "height": 1200})
    for name in (quality.PRIMARY_KEY, quality.VALUE_RULES, quality.COLUMN_SCHEMA):
        # Long names are drawn middle-truncated; the full name is in the page either way.
        page.get_by_text(name, exact=True).first.wait_for(state="attached")
    page.get_by_text("Succeeded").first.wait_for()
    page.screenshot(path=str(artifacts / "dim_store_checks.png"), full_page=True)
    # One status per check in the list, every one of them a pass.
    assert page.get_by_text("Succeeded", exact=True).count() >= 3


def test_a_killed_run_worker_fails_its_run_and_the_instance_retries_it(dagster_dev):
    """`kill -9` of a run's worker process (as the kernel's OOM killer does): its code server
    fails the run, and the instance's run retries (`run_retries`, not on a step's failure:
    tooling/cli/instance.py) launch it again, which materializes the partition."""
    import os
    import signal
    import time

    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_dev.dagster_home))
    day = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    run_id = dagster_dev.client.submit_job_execution(
        "__ASSET_JOB", "retail_assets", "__repository__", tags={"dagster/partition": day},
        asset_selection=[["gold", "dim_date"]],
    )  # fmt: skip

    def waited(what: str, read, timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while (found := read()) is None:
            if time.monotonic() > deadline:
                raise dagster_dev.fail(f"{what} not seen after {timeout_s:.0f}s")
            time.sleep(0.2)
        return found

    def worker_pid():
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            metadata = getattr(entry.dagster_event.event_specific_data, "metadata", None) or {}
            if "Started process for run" in (entry.dagster_event.message or "") and "pid" in metadata:
                return int(metadata["pid"].value)
        return None

    def status_is(status):
        return lambda: instance.get_run_by_id(run_id).status == status or None

    pid = waited("the run worker's process", worker_pid, 120)
    waited("the run started", status_is(dg.DagsterRunStatus.STARTED), 60)
    os.kill(pid, signal.SIGKILL)
    waited("the killed run failed", status_is(dg.DagsterRunStatus.FAILURE), 90)
    messages = [e.dagster_event.message or "" for e in instance.all_logs(run_id) if e.dagster_event]
    assert any("terminated by signal 9" in m for m in messages), messages[-4:]
    retry = waited(
        "the retried run finished",
        lambda: next(
            (
                r
                for r in instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))
                if r.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
            ),
            None,
        ),
        240,
    )
    assert retry.status == dg.DagsterRunStatus.SUCCESS and retry.tags["dagster/retry_number"] == "1"
    materialized = instance.get_latest_materialization_event(dg.AssetKey(["gold", "dim_date"]))
    assert materialized.run_id == retry.run_id and materialized.asset_materialization.partition == day
