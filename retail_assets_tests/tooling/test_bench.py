"""The benchmark machinery: Gold comparison, and one tiny end-to-end bench.

The end-to-end test runs the real thing on the smallest workload (one business day, lateness 0,
so six stage runs): the pipeline through Dagster and the plain PySpark baseline, each in its own
process, and requires the same Gold from both; then it alters one baseline table and requires
the comparison to say so. Figures are reported, never asserted (no timed tests).
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from retail_assets.lib.registry.tables import GOLD_DIM_DATE, GOLD_FACT_SALES
from retail_assets.tooling.bench.compare import compare_gold, compare_tables
from retail_assets.tooling.bench.report import write_chart, write_json


def dim_date_rows(days: list[dt.date]) -> pa.Table:
    columns = {
        "date_sk": [int(d.strftime("%Y%m%d")) for d in days],
        "date": days,
        "year": [d.year for d in days],
        "quarter": [(d.month - 1) // 3 + 1 for d in days],
        "month": [d.month for d in days],
        "month_name": [d.strftime("%B") for d in days],
        "day_of_month": [d.day for d in days],
        "day_of_week": [d.isoweekday() for d in days],
        "day_name": [d.strftime("%A") for d in days],
        "iso_week": [d.isocalendar()[1] for d in days],
        "is_weekend": [d.isoweekday() >= 6 for d in days],
    }
    return pa.table(columns).cast(GOLD_DIM_DATE.arrow_schema())


def test_comparison_ignores_row_order_and_reports_a_changed_value():
    days = [dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(4)]
    pipeline = dim_date_rows(days)
    assert compare_tables(GOLD_DIM_DATE, pipeline, pipeline.take([3, 1, 0, 2])).equal

    changed = pipeline.set_column(2, "year", pa.array([2026, 2026, 2027, 2026], pa.int32()))
    result = compare_tables(GOLD_DIM_DATE, pipeline, changed)
    assert not result.equal
    assert (result.only_in_pipeline, result.only_in_baseline) == (1, 1)
    assert "year=2027" in result.describe()

    missing = compare_tables(GOLD_DIM_DATE, pipeline, pipeline.slice(0, 3))
    assert not missing.equal and missing.only_in_pipeline == 1 and missing.baseline_rows == 3


def test_comparison_skips_volatile_columns_only():
    schema = GOLD_FACT_SALES.arrow_schema()
    row = {
        "transaction_id": "T1",
        "line_number": 1,
        "line_type": "sale",
        "date_sk": 20261101,
        "event_time": dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC),
        "event_date": dt.date(2026, 11, 1),
        "customer_sk": -1,
        "product_sk": 7,
        "store_sk": 3,
        "customer_id": None,
        "product_id": "P1",
        "store_id": "S1",
        "quantity": 2,
        "unit_price": 1,
        "gross_amount": 2,
        "discount_amount": 0,
        "net_amount": 2,
        "payment_method": "cash",
        "channel": "store_file",
        "quality_flags": [],
        "_processed_at": dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
    }
    pipeline = pa.Table.from_pylist([row], schema=schema)
    later = pa.Table.from_pylist([{**row, "_processed_at": dt.datetime(2027, 1, 1, tzinfo=dt.UTC)}], schema=schema)
    assert GOLD_FACT_SALES.volatile_columns == ("_processed_at",)
    assert compare_tables(GOLD_FACT_SALES, pipeline, later).equal
    other_store = pa.Table.from_pylist([{**row, "store_sk": 4}], schema=schema)
    assert not compare_tables(GOLD_FACT_SALES, pipeline, other_store).equal


def test_repeated_runs_report_the_median_ratio_and_the_highest_memory():
    from retail_assets.tooling.bench.report import repeated, summary

    def run(pipeline, baseline, rss, equal=True):
        return {
            "pipeline_wall_s": pipeline,
            "baseline_wall_s": baseline,
            "overhead_ratio": round(pipeline / baseline, 2),
            "peak_rss_mb": rss,
            "gold_equal": equal,
            "stage_s": {"marker": pipeline},
        }

    runs = [run(150, 100, 3000), run(120, 100, 3500), run(130, 100, 3200)]
    one = repeated(runs)
    assert (one["overhead_ratio"], one["stage_s"]) == (1.3, {"marker": 130})  # the median run's own figures
    assert one["overhead_ratio_range"] == [1.2, 1.5] and one["peak_rss_mb"] == 3500 and one["gold_equal"]
    assert [r["overhead_ratio"] for r in one["repeats"]] == [1.5, 1.2, 1.3]
    assert repeated([*runs, run(140, 100, 3000)])["overhead_ratio"] == 1.4  # of two middle runs, the higher
    assert not repeated([*runs[:2], run(130, 100, 3000, equal=False)])["gold_equal"]
    assert repeated(runs[:1]) == runs[0]
    text = summary(
        {
            "sizes": [
                {**one, "size": "medium", "workload": {"sales_lines": 10}, "rows_per_s": {}, "kafka_events_per_s": 1}
            ]
        }
    )
    assert "3 runs (pipeline/baseline): 150.0/100.0s ×1.5, 120.0/100.0s ×1.2, 130.0/100.0s ×1.3" in text


@pytest.mark.bench
@pytest.mark.timeout(900)
def test_bench_end_to_end_on_a_tiny_workload(tmp_path, monkeypatch):
    from retail_assets.lib.registry.stages import configured_stages
    from retail_assets.tooling.bench.baseline import GOLD_TABLES
    from retail_assets.tooling.bench.runner import run_bench

    # As pyspark leaves it in a process attached to a Spark Connect server (a test worker, a
    # notebook): the measured processes must still start classic sessions of their own.
    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")

    results = run_bench(
        ["tiny"],
        work_dir=tmp_path,
        days=1,
        lateness_days=0,
        skip_latency=True,
        skip_sensor=True,
        skip_backfill=True,  # test_the_graph_backfilled_from_the_ui_runs_ranges_and_equals_the_baseline
        keep=True,
        echo=lambda line: None,
    )

    # both engines' pipelines against the one baseline
    assert [s["engine"] for s in results["sizes"]] == ["delta_rs", "delta_spark"]
    size, spark_size = results["sizes"]
    assert size["baseline_wall_s"] == spark_size["baseline_wall_s"]
    for s in results["sizes"]:
        assert s["pipeline_failed_runs"] == [] and s["pipeline_runs"] == len(
            configured_stages(set())
        )  # one day: one run per stage
        assert s["gold_equal"], (s["engine"], s["gold_tables"])
        assert s["workload"]["sales_lines"] > 0 and s["kafka_events_ingested"] == s["workload"]["kafka_events"]
        assert s["kafka_peak_rss_mb"] > 0  # measured in a process of its own
    assert results["overhead_ratio"] == size["overhead_ratio"]  # the headline is the default engine's
    for key in ("overhead_ratio", "peak_rss_mb", "kafka_events_per_s", "definitions_load_s"):
        assert results[key] > 0, key
    assert set(size["rows_per_s"]) >= {"bronze", "silver", "gold"}
    assert results["latency_p95_s"] is None and "skipped" in results["latency_note"]

    out = tmp_path / "bench-results.json"
    write_json(results, out)
    write_chart(results, out.with_suffix(".png"))
    assert json.loads(out.read_text())["targets"]["latency_p95_s"] == "not measured"
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"

    # one sale line fewer in the baseline's fact: the comparison must name the table
    lakehouse, baseline = tmp_path / "tiny" / "delta_rs" / "pipeline" / "lakehouse", tmp_path / "tiny" / "baseline"
    fact_dir = baseline / "gold" / "fact_sales"
    fact = pq.read_table(fact_dir)
    drop = pc.index(fact["line_type"], "sale").as_py()
    for f in fact_dir.glob("*.parquet"):
        f.unlink()
    pq.write_table(pa.concat_tables([fact.slice(0, drop), fact.slice(drop + 1)]), fact_dir / "altered.parquet")
    compared = {c.table: c for c in compare_gold(lakehouse, baseline, GOLD_TABLES)}
    assert not compared["gold.fact_sales"].equal and compared["gold.fact_sales"].only_in_pipeline == 1
    assert all(c.equal for name, c in compared.items() if name != "gold.fact_sales")
    # compared on named business days: the line's day still differs, another day does not
    day = fact["event_date"][drop].as_py().isoformat()
    on_its_day = {c.table: c for c in compare_gold(lakehouse, baseline, GOLD_TABLES, days=[day])}
    assert not on_its_day["gold.fact_sales"].equal
    elsewhere = {c.table: c for c in compare_gold(lakehouse, baseline, GOLD_TABLES, days=["2001-01-01"])}
    assert elsewhere["gold.fact_sales"].equal and elsewhere["gold.fact_sales"].pipeline_rows == 0
    assert elsewhere["gold.dim_customer"].pipeline_rows == compared["gold.dim_customer"].pipeline_rows > 0


# A pipeline, the baseline and a dagster dev session: minutes, run with the benchmarks
# (`pytest -m bench`); e2e/test_dagster_ui.py proves a UI backfill runs a range in one run.
@pytest.mark.bench
def test_the_graph_backfilled_from_the_ui_runs_ranges_and_equals_the_baseline(tmp_path):
    """The bench's second path: `dagster dev`, the Kafka stream a run per day as the UI's
    *Materialize* launches one, then one backfill of every other asset over every day, which
    the daemon plans as one run: one partitioning, one single-run backfill policy."""
    from retail_assets.tooling.bench.runner import run_bench

    results = run_bench(
        ["tiny"],
        work_dir=tmp_path,
        days=2,
        lateness_days=1,
        engines=("delta_rs",),
        skip_latency=True,
        skip_sensor=True,
        keep=True,
        echo=print,
    )
    (size,) = results["sizes"]
    arrival_days = size["workload"]["days"] + 1  # the lateness window's day after the last
    assert size["backfill_gold_equal"] and size["gold_equal"]
    assert size["backfill_runs"] == arrival_days + size["backfill_graph_runs"]
    # the whole graph over the whole range in one run, not one per asset, stage or day
    assert size["backfill_graph_runs"] == 1, size["backfill_graph_runs"]
    assert results["backfill_overhead_ratio"] == size["backfill_overhead_ratio"] > 0


def test_the_graph_backfill_selects_what_a_deployment_without_a_database_has():
    """The bench's workload has no operational database and its dev server starts none: the
    graph's backfill selecting `bronze/orders_changes` fails every run of it."""
    from retail_assets.lib.registry.stages import STAGES
    from retail_assets.lib.registry.tables import BRONZE_ORDERS_CHANGES, BRONZE_POS_TRANSACTIONS
    from retail_assets.tooling.bench.backfill import graph_tables

    selected = graph_tables()
    assert BRONZE_ORDERS_CHANGES not in selected and BRONZE_POS_TRANSACTIONS not in selected
    # every other table of every stage, Silver's online orders read from an empty Bronze table
    others = {t for s in STAGES for t in s.tables} - {BRONZE_ORDERS_CHANGES, BRONZE_POS_TRANSACTIONS}
    assert set(selected) == others and len(selected) == len(others)
