"""Gold: the KPI report people look at, one page per business day, and its check.

`gold/kpi_report` reads the Gold aggregates, the quarantine tables and what each Bronze table
took in over the `WINDOW_DAYS` days ending on its partition, through the run's engine (delta-rs
or delta-spark, here or on Databricks), and renders `<reports root>/kpi/<day>/index.html`, a PNG
per chart and `figures.json`. Its materialization carries the page's path, the day's headline
figures (numbers the UI plots across partitions) and the charts themselves as Markdown images.

The reports root is the run config's `root`, or else `reports/` beside the lakehouse (the data
root locally; the Gold schema's `reports` volume where Unity Catalog manages the tables). Each
partition depends on the window of its inputs, so a late change to an earlier day makes the
later reports stale, and automation renders them again; it follows on the catch-up cron, not
at every micro-batch: people read the page at a human pace.
"""

# No `from __future__ import annotations`: Dagster reads the run config class from the asset's annotation.
import json
from functools import reduce
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
from pydantic import Field

from retail_assets.lib.deployment.governance.securables import REPORTS
from retail_assets.lib.engine import LakehouseEngine, PartitionRange
from retail_assets.lib.orchestration.automation import follow_upstream
from retail_assets.lib.orchestration.factories import (
    CODE_REFERENCES,
    OWNERS,
    STEP_LAUNCHER,
    asset_key,
    code_references,
    daily_partitions,
    run_partitions,
    window,
)
from retail_assets.lib.orchestration.factories.checks import (
    evaluations_by_day,
    latest_materializations,
    materializations_of,
)
from retail_assets.lib.orchestration.factories.metadata import ON_THE_PATH
from retail_assets.lib.orchestration.resources import LakehouseResource
from retail_assets.lib.orchestration.retries import retried_when_transient, step_attempt
from retail_assets.lib.registry.tables import Layer, tables_in
from retail_assets.lib.settings import lateness_days
from retail_assets.lib.transforms.gold import report, report_figures
from retail_assets.lib.transforms.gold.report_figures import READS, RECORDS_IN, WINDOW_DAYS, ReportInputs
from retail_assets.lib.transforms.quality import CheckOutcome

KPI_REPORT = dg.AssetKey(["gold", "kpi_report"])
FIGURES_EQUAL_GOLD = "figures_equal_gold"
PAGE_PATH = "path"
# Every Bronze table: the reject rate's denominator is what each took in.
BRONZE_TABLES = tables_in(Layer.BRONZE)
READ = (*READS, *BRONZE_TABLES)


class KpiReportConfig(dg.Config):
    root: str = Field(
        default="",
        description="Folder the reports are written under (`kpi/<day>/`); empty: `reports/` beside the lakehouse.",
    )


def reports_root(lakehouse: LakehouseResource, configured: str = "") -> Path:
    """Where reports go: `configured`, or `reports/` in the folder holding the lakehouse's
    tables (the data root locally), or, where Unity Catalog manages the tables, the Gold
    schema's `reports` volume (provisioned with the environment)."""
    if configured:
        return Path(configured)
    if lakehouse.root:
        return Path(lakehouse.root).parent / "reports"
    return Path(REPORTS.path(lakehouse.catalog, lakehouse.deployment_env))


def records_in(engine: LakehouseEngine, days: PartitionRange) -> pa.Table:
    """Records each Bronze table took in per arrival day of `days` (`RECORDS_IN`), counted in
    the unit quarantine's conservation counts in (a Kafka event's transaction lines)."""
    from pyspark.sql import DataFrame  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: PLC0415

    from retail_assets.lib.transforms import silver  # noqa: PLC0415

    frames = [
        silver.count_records_in(engine.read(spec, days), spec.key).withColumn("source_table", F.lit(spec.key))
        for spec in BRONZE_TABLES
    ]
    counted = reduce(DataFrame.unionByName, frames).select("source_table", "_arrival_date", "records")
    return counted.toArrow().cast(RECORDS_IN)


def read_inputs(engine: LakehouseEngine, days: PartitionRange) -> ReportInputs:
    """What the reports of `days` read: each input over the window of the first to the last."""
    wide = days.widened(WINDOW_DAYS - 1, 0)
    tables = {spec: engine.read_arrow(spec, wide, columns=columns) for spec, columns in READS.items()}
    return ReportInputs(tables, records_in(engine, wide))


def day_metadata(files: report.ReportFiles, figures: dict[str, Any]) -> dict[str, Any]:
    return {
        PAGE_PATH: dg.MetadataValue.path(str(files.index)),
        **{h["name"]: h["value"] for h in figures["headline"] if h["value"] is not None},
        "charts": dg.MetadataValue.md(report.charts_markdown(figures, files.pngs)),
        "window": f"{figures['window'][0]}…{figures['window'][1]}",
    }


@dg.asset(
    key=KPI_REPORT,
    group_name=Layer.GOLD.value,
    description=(
        "The business KPIs as charts beside their figures, a static HTML page (and PNGs) per business day under "
        f"the reports root: revenue and net revenue per day and store, the returns rate, the top products and their "
        f"margin, the customer-value distribution, inventory cover below {report_figures.COVER_THRESHOLD_DAYS:g} "
        "days and the quarantine reject rate per source and day.\n\n"
        f"**Grain:** one page per business day, over the {WINDOW_DAYS} days ending on it.\n\n"
        "**Partitioned by** event date (the page's business day)."
    ),
    partitions_def=daily_partitions(),
    deps=[dg.AssetDep(asset_key(spec), partition_mapping=window(WINDOW_DAYS - 1, 0)) for spec in READ],
    kinds={"matplotlib", "html"},
    owners=OWNERS,
    tags={"layer": Layer.GOLD.value, "domain": "retail"},
    metadata={CODE_REFERENCES: code_references(report_figures.kpi_figures)},
    # Bronze landing alone changes no figure: the quarantine runs that follow it do.
    automation_condition=follow_upstream(
        lateness_days() + 2, not_triggered_by=tuple(asset_key(s) for s in BRONZE_TABLES), newest_at_once=False
    ),
    op_tags=ON_THE_PATH,
    required_resource_keys={"lakehouse", STEP_LAUNCHER},
    # A range run reads each input once for all its days and writes a page per day.
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def kpi_report(context: dg.AssetExecutionContext, config: KpiReportConfig) -> dg.MaterializeResult:
    lakehouse: LakehouseResource = context.resources.lakehouse
    days = run_partitions(context)
    with retried_when_transient(step_attempt(context), context.log):
        engine = lakehouse.engine
        versions = {spec.key: engine.version(spec) for spec in READ}  # before the rows: never newer than them
        inputs = read_inputs(engine, days)
    root = reports_root(lakehouse, config.root) / "kpi"
    by_day = {}
    for day in days.days():
        figures = report_figures.kpi_figures(inputs, day)
        files = report.write_report(figures, root / day.isoformat(), inputs=versions)
        context.log.info(f"{KPI_REPORT.to_user_string()} {day}: {files.index}")
        by_day[day] = day_metadata(files, figures)
    if days.start == days.end:
        return dg.MaterializeResult(asset_key=KPI_REPORT, metadata=by_day[days.start])
    for day, metadata in by_day.items():
        context.add_asset_metadata(metadata, asset_key=KPI_REPORT, partition_key=day.isoformat())
    return dg.MaterializeResult(asset_key=KPI_REPORT, metadata={"partitions_of_run": str(days)})


def written_figures(record: dg.EventLogRecord | None) -> dict[str, Any] | None:
    """The figures a materialization's page was rendered from (its `figures.json`)."""
    if record is None or PAGE_PATH not in record.asset_materialization.metadata:
        return None
    figures = Path(record.asset_materialization.metadata[PAGE_PATH].value).parent / report.FIGURES
    return json.loads(figures.read_text(encoding="utf-8")) if figures.exists() else None


def figures_equal_gold(written: dict[str, Any] | None, expected: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    found = report_figures.differences(written, expected)
    return not found, {
        "partition": expected["partition"],
        "sections_compared": len(expected["sections"]),
        "differences": ", ".join(found) or "none",
    }


@dg.multi_asset_check(
    name="gold_kpi_report_checks",
    specs=[
        dg.AssetCheckSpec(
            FIGURES_EQUAL_GOLD,
            asset=KPI_REPORT,
            description="The figures the page shows (its figures.json) equal those computed again from the tables as "
            "they stand. A failure means the page is stale (an input was written since) or was altered.",
            # Nothing reads the report: blocking would stop nothing, only fail the run that built Gold.
            blocking=False,
            partitions_def=daily_partitions(),
            additional_deps=[asset_key(spec) for spec in READ],
        )
    ],
    required_resource_keys={"lakehouse", STEP_LAUNCHER},
)
def kpi_report_checks(context: dg.AssetCheckExecutionContext):
    days = run_partitions(context)
    with retried_when_transient(step_attempt(context), context.log):
        inputs = read_inputs(context.resources.lakehouse.engine, days)
    records = latest_materializations(context.instance, KPI_REPORT, days.days())
    outcomes = {
        day: figures_equal_gold(written_figures(records[day]), report_figures.kpi_figures(inputs, day))
        for day in days.days()
    }
    if days.start == days.end:
        passed, metadata = outcomes[days.start]
        yield dg.AssetCheckResult(asset_key=KPI_REPORT, check_name=FIGURES_EQUAL_GOLD, passed=passed, metadata=metadata)
        return
    # A range run records each day's evaluation on that day, against that day's materialization.
    yield from evaluations_by_day(
        context,
        dg.AssetCheckKey(KPI_REPORT, FIGURES_EQUAL_GOLD),
        {day: CheckOutcome(passed, "", metadata) for day, (passed, metadata) in outcomes.items()},
        materializations_of(context.instance, KPI_REPORT, days.days()),
        severity=dg.AssetCheckSeverity.ERROR,
        blocking=False,
    )
