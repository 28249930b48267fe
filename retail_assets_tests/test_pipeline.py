"""The whole asset graph over a short simulated week with every defect of SPEC §7 injected,
through Dagster, on real Delta tables.

The week runs once per module and engine; the tests read what it left: quarantine against the
generator's manifest, conservation per partition, Gold readable by delta-rs and Spark, idempotent
re-runs, order-independent dimensions, and checks that fail when the data is broken on purpose.
The same week on the delta-spark engine (Delta Lake's Spark jar, Kafka read through Spark's
source, as on Databricks) must leave every table equal to the delta-rs engine's: those tests are
marked `parity` (`pytest -m parity`). (Clean data passing every check is `test_pipeline_clean.py`.)
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
from collections import Counter
from decimal import Decimal
from pathlib import Path

import dagster as dg
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

from retail_assets.lib.engine import PartitionRange
from retail_assets.lib.orchestration.factories import FULL_REFRESH_TAG, asset_key
from retail_assets.lib.registry.stages import STAGE, STAGES
from retail_assets.lib.registry.tables import (
    GOLD_AGG_DAILY_STORE_SALES,
    GOLD_AGG_INVENTORY_COVER,
    GOLD_CUSTOMER_DAILY_VALUE,
    GOLD_DIM_CUSTOMER,
    GOLD_DIM_PRODUCT,
    GOLD_DIM_STORE,
    GOLD_FACT_SALES,
    QUARANTINE_DUPLICATES,
    QUARANTINE_INGEST_REJECTS,
    QUARANTINE_RULE_VIOLATIONS,
    SILVER_CUSTOMERS,
    SILVER_PRODUCTS,
    SILVER_RETURNS,
    SILVER_SALES_LINES,
    SILVER_STORES,
    TABLES,
    Layer,
    TableSpec,
)
from retail_assets.lib.transforms import quality
from retail_assets.tooling.main_job import run_stage
from retail_assets_tests.simulated_week import (
    ENGINE_SETTINGS,
    LATENESS,
    Week,
    build_defs,
    local_engine,
    run_simulated_week,
    snapshot,
)

pytestmark = pytest.mark.slow

ENGINES = ["delta_rs", pytest.param("delta_spark", marks=pytest.mark.parity)]


@pytest.fixture(scope="module")
def defect_week(tmp_path_factory, spark, monkeymodule, postgres) -> Week:
    return run_simulated_week(
        tmp_path_factory.mktemp("defects"), spark, defects=True, monkeypatch=monkeymodule, postgres=postgres, rerun=True
    )


@pytest.fixture(scope="module")
def spark_engine_week(tmp_path_factory, spark, monkeymodule, postgres) -> Week:
    """The same week on the delta-spark engine, its Kafka read by Spark's batch source. It is not
    materialized a second time: the delta-rs week proves the graph's re-runs leave every table as
    it was, the engine tests prove delta-spark's overwrites and MERGEs replace what they name
    (`lib/test_engine.py`, `reliability/test_crash_recovery.py`), and the parity test compares
    this week's tables with the delta-rs week's."""
    return run_simulated_week(
        tmp_path_factory.mktemp("defects_delta_spark"),
        spark,
        defects=True,
        monkeypatch=monkeymodule,
        postgres=postgres,
        engine="delta_spark",
    )


@pytest.fixture(scope="module", params=ENGINES)
def any_engine_week(request) -> Week:
    return request.getfixturevalue("defect_week" if request.param == "delta_rs" else "spark_engine_week")


# ---------------------------------------------------------------------------------------------


def test_defect_week_runs_without_failures_and_conserves_every_partition(any_engine_week):
    defect_week = any_engine_week
    assert [
        (s.stage, s.partition, s.checks_failed) for s in defect_week.summaries if not s.success or s.checks_failed
    ] == []
    conserved = {
        partition
        for s in defect_week.summaries
        for asset, check, passed, partition in s.evaluations
        if asset == "quarantine/rule_violations" and check == quality.CONSERVATION and passed
    }
    assert conserved == set(defect_week.arrival_days)
    # the main job runs every stage but the Kafka stream and the database's changes once over its
    # days; each day's checks are its own
    per_day = ("ingest_pos_stream", "ingest_database")
    ranged = [s for s in defect_week.summaries if s.stage not in per_day]
    assert len(ranged) == len(STAGES) - len(per_day) and all("…" in s.partition for s in ranged), [
        s.partition for s in ranged
    ]
    for stage in per_day:
        assert [s.partition for s in defect_week.summaries if s.stage == stage] == defect_week.arrival_days


def test_a_range_runs_checks_target_each_days_materialization_of_that_run(defect_week):
    """The UI ties a check result to the materialization it judged: in a run over a range, each
    day's evaluation names that day's materialization by the same run, or, for a table the run
    checks but does not write (the Kafka stream's), the day's newest one before it."""

    instance = defect_week.instance
    for summary in (s for s in defect_week.summaries if "…" in s.partition):
        records = instance.get_records_for_run(
            summary.run_id,
            of_type={dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION},
        ).records
        materialized = {
            (r.asset_key, r.partition_key): r.storage_id
            for r in records
            if r.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        }
        evaluations = [
            r.event_log_entry.dagster_event.event_specific_data
            for r in records
            if r.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ]
        assert evaluations, summary.stage
        for evaluation in evaluations:
            target, where = (
                evaluation.target_materialization_data,
                (summary.stage, evaluation.asset_key, evaluation.check_name, evaluation.partition),
            )
            assert target is not None, where
            if (evaluation.asset_key, evaluation.partition) in materialized:
                assert (target.run_id, target.storage_id) == (
                    summary.run_id,
                    materialized[(evaluation.asset_key, evaluation.partition)],
                ), where
            else:
                stream = [
                    s.run_id
                    for s in defect_week.summaries
                    if s.stage == "ingest_pos_stream" and s.partition == evaluation.partition
                ]
                assert target.run_id in stream, where


def _date(day: str) -> pa.Scalar:
    return pa.scalar(dt.date.fromisoformat(day), pa.date32())


def _latest_metadata(week: Week, spec: TableSpec, partition: str) -> dict:
    records = week.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key(spec), asset_partitions=[partition]), limit=1
    ).records
    assert records, (spec.key, partition)
    return records[0].asset_materialization.metadata


def test_materializations_carry_the_figures_the_ui_plots(defect_week):
    """Per partition: the quarantine tables' reject rate over the day's records, and the daily
    store-sales revenue, as numbers that agree with the tables they describe."""
    engine = defect_week.engine
    for spec in (QUARANTINE_INGEST_REJECTS, QUARANTINE_RULE_VIOLATIONS):
        quarantined = engine.read_arrow(spec, columns=[spec.partition_column])
        rates = []
        for day in defect_week.arrival_days:
            metadata = _latest_metadata(defect_week, spec, day)
            rows = pc.sum(pc.equal(quarantined[spec.partition_column], _date(day))).as_py() or 0
            records_in, rate = metadata["records_in"].value, metadata["reject_rate"].value
            assert isinstance(rate, float) and isinstance(records_in, int), (spec.key, day)
            assert metadata["dagster/row_count"].value == rows, (spec.key, day)
            assert records_in >= rows and rate == pytest.approx(rows / records_in if records_in else 0.0, abs=1e-6), (
                spec.key,
                day,
            )
            rates.append(rate)
        # the defect week quarantines something of both kinds
        assert any(r > 0 for r in rates), spec.key
    sales = engine.read_arrow(
        GOLD_AGG_DAILY_STORE_SALES, columns=["event_date", "revenue", "net_revenue", "transactions"]
    )
    for day in defect_week.event_days:
        on_day = sales.filter(pc.equal(sales["event_date"], _date(day)))
        metadata = _latest_metadata(defect_week, GOLD_AGG_DAILY_STORE_SALES, day)
        assert on_day.num_rows and metadata["revenue"].value == pytest.approx(float(pc.sum(on_day["revenue"]).as_py()))
        assert metadata["net_revenue"].value == pytest.approx(float(pc.sum(on_day["net_revenue"]).as_py()))
        assert metadata["transactions"].value == pytest.approx(float(pc.sum(on_day["transactions"]).as_py()))
    # the fact's figures are observed while its rows are written: they must be the written rows'
    fact = engine.read_arrow(
        GOLD_FACT_SALES, columns=["event_date", "line_type", "net_amount", "customer_sk", "quality_flags"]
    )
    for day in defect_week.event_days:
        on_day = fact.filter(pc.equal(fact["event_date"], _date(day)))
        sales = on_day.filter(pc.equal(on_day["line_type"], "sale"))
        returns = on_day.filter(pc.equal(on_day["line_type"], "return"))
        metadata = _latest_metadata(defect_week, GOLD_FACT_SALES, day)
        assert sales.num_rows and returns.num_rows, day
        assert metadata["revenue"].value == pytest.approx(float(pc.sum(sales["net_amount"]).as_py()))
        assert metadata["returns_amount"].value == pytest.approx(-float(pc.sum(returns["net_amount"]).as_py()))
        assert metadata["anonymous_lines"].value == pc.sum(pc.equal(on_day["customer_sk"], -1)).as_py()
        inferred = sum(
            1 for flags in on_day["quality_flags"].to_pylist() if any(f.startswith("unknown_") for f in flags)
        )
        assert metadata["inferred_member_lines"].value == inferred


def _ref_source(week: Week, ref: str) -> str:
    return week.placed[int(ref.split("#")[1])] if ref.startswith("kafka:#") else ref


def test_every_injected_defect_ends_where_the_manifest_says(defect_week):
    engine = defect_week.engine
    rejects = engine.read_arrow(QUARANTINE_INGEST_REJECTS).to_pylist()
    violations = engine.read_arrow(QUARANTINE_RULE_VIOLATIONS).to_pylist()
    rejects_by_source = {(r["source_table"], r["_source"]): r for r in rejects}
    violations_by_key = {(r["source_table"], r["_source"], r["record_key"]): r for r in violations}
    ledger = {
        (r["source_table"], r["_source"], r["record_key"]): r
        for r in engine.read_arrow(QUARANTINE_DUPLICATES).to_pylist()
    }
    fact = {(r["transaction_id"], r["line_number"]): r for r in engine.read_arrow(GOLD_FACT_SALES).to_pylist()}
    members = {
        kind: {r[f"{kind}_sk"]: r for r in engine.read_arrow(spec).to_pylist()}
        for kind, spec in (("store", GOLD_DIM_STORE), ("product", GOLD_DIM_PRODUCT), ("customer", GOLD_DIM_CUSTOMER))
    }
    silver_rows = {}
    for spec in (SILVER_SALES_LINES, SILVER_RETURNS, SILVER_CUSTOMERS, SILVER_PRODUCTS, SILVER_STORES):
        for r in engine.read_arrow(spec).to_pylist():
            silver_rows.setdefault(r["_source"], []).append(r)

    manifest = defect_week.generated.manifest
    assert {e["expected"] for e in manifest} >= {
        "ingest_rejects",
        "rule_violations",
        "duplicate",
        "accepted",
        "flagged",
    }
    assert sum(1 for e in manifest if e["expected"] == "duplicate") == len(ledger)
    landing = defect_week.generated.landing_root
    problems = []
    for entry in manifest:
        source = _ref_source(defect_week, entry["ref"])
        if entry["expected"] == "ingest_rejects":
            row = rejects_by_source.get((entry["source_table"], source))
            if row is None or row["rule"] != entry["rule"]:
                problems.append((entry, row and row["rule"]))
                continue
            if not entry["ref"].startswith("kafka:") and not entry["ref"].endswith(":0"):
                path, line = entry["ref"].rsplit(":", 1)
                original = (landing / path).read_bytes().split(b"\n")[int(line) - 1].rstrip(b"\r")
                stored = row["original_bytes"] if row["original_bytes"] is not None else row["original_record"].encode()
                if original.lstrip(b"\xef\xbb\xbf") != stored.lstrip(b"\xef\xbb\xbf"):
                    problems.append((entry, "original record differs"))
        elif entry["expected"] == "rule_violations":
            row = violations_by_key.get((entry["source_table"], source, entry["record_key"]))
            if row is None or row["rule"] != entry["rule"] or not row["reason"] or not row["original_record"]:
                problems.append((entry, row and row["rule"]))
        elif entry["expected"] == "duplicate":
            kept = [
                r
                for r in silver_rows.get(source, [])
                if f"{r.get('transaction_id')}:{r.get('line_number')}" == entry["record_key"]
            ]
            if kept:
                problems.append((entry, "duplicate copy was accepted"))
            # the ledger names it with the copy kept, which is in Silver under the same key
            row = ledger.get((entry["source_table"], source, entry["record_key"]))
            if row is None:
                problems.append((entry, "not in the duplicates ledger"))
            elif not any(
                f"{r.get('transaction_id')}:{r.get('line_number')}" == entry["record_key"]
                for r in silver_rows.get(row["kept_source"], [])
            ):
                problems.append((entry, "the ledger's kept copy is not in Silver", row["kept_source"]))
        elif entry["expected"] == "flagged":
            # kept, the rule in its flags, and in the fact keyed to an inferred member of that key
            kept = [
                r
                for r in silver_rows.get(source, [])
                if f"{r['transaction_id']}:{r['line_number']}" == entry["record_key"]
            ]
            if not kept or entry["rule"] not in kept[0]["quality_flags"]:
                problems.append((entry, "not kept with its flag", kept and kept[0]["quality_flags"]))
                continue
            kind = entry["rule"].removeprefix("unknown_")
            line = fact.get((kept[0]["transaction_id"], kept[0]["line_number"]))
            member = line and members[kind].get(line[f"{kind}_sk"])
            if member is None or member[f"{kind}_id"] != kept[0][f"{kind}_id"] or not member["is_inferred"]:
                problems.append((entry, "not keyed to an inferred member", member))
        elif entry["expected"] == "accepted":
            if entry["source"] in ("sales", "kafka"):
                kept = [
                    r
                    for r in silver_rows.get(source, [])
                    if f"{r['transaction_id']}:{r['line_number']}" == entry["record_key"]
                ]
            else:
                kept = silver_rows.get(source, [])
            if not kept:
                problems.append((entry, "not accepted into Silver"))
            elif entry["defect"] == "new_column" and not any(r["extra_attributes"] for r in kept):
                problems.append((entry, "new field vanished"))
    assert problems == []


def test_warn_checks_count_the_flagged_rows(defect_week):
    """Each Silver sales day's `warn_rules_flagged` figures are the flags its rows carry."""
    lines = defect_week.engine.read_arrow(SILVER_SALES_LINES, columns=["event_date", "quality_flags"]).to_pylist()
    days = defect_week.event_days
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    evaluations = {
        e.partition: e
        for e in _check_evaluations(defect_week, SILVER_SALES_LINES, tags)
        if e.check_name == quality.QUALITY_WARNINGS
    }
    assert sorted(evaluations) == sorted(days)
    seen = 0
    for day in days:
        flags = Counter(f for r in lines if r["event_date"] == dt.date.fromisoformat(day) for f in r["quality_flags"])
        e = evaluations[day]
        figures = {k.removeprefix("flag_"): v.value for k, v in e.metadata.items() if k.startswith("flag_")}
        assert figures == dict(flags), day
        assert e.passed is (not flags) and e.severity == dg.AssetCheckSeverity.WARN
        seen += sum(flags.values())
    assert seen > 0  # the defect week plants orphans


def test_online_orders_reach_daily_store_sales_under_their_channel(defect_week):
    """The web shop's orders as the week left them in PostgreSQL (cancelled orders gone, changed
    quantities as last written) are the `online` rows of the daily store sales."""
    with psycopg.connect(defect_week.database_dsn) as conn:
        rows = conn.execute(
            """SELECT (o.ordered_at AT TIME ZONE 'UTC')::date, o.store_id, count(DISTINCT o.order_id),
                      sum(l.quantity), sum(l.quantity * l.unit_price * (1 - l.discount)), count(*)
               FROM orders.online_orders o JOIN orders.order_lines l USING (order_id)
               WHERE l.quantity > 0 GROUP BY 1, 2"""
        ).fetchall()
    expected = {
        (d.isoformat(), store): (orders, units, revenue, lines) for d, store, orders, units, revenue, lines in rows
    }
    agg = defect_week.engine.read_arrow(GOLD_AGG_DAILY_STORE_SALES).to_pylist()
    online = {(r["event_date"].isoformat(), r["store_id"]): r for r in agg if r["channel"] == "online"}
    assert expected and set(online) == set(expected)
    for key, (orders, units, revenue, lines) in expected.items():
        row = online[key]
        assert (row["transactions"], row["units"]) == (orders, units), key
        assert abs(row["revenue"] - revenue) <= Decimal("0.01") * lines, key  # rounded per line
    assert {r["channel"] for r in agg} == {"store_file", "pos_stream", "online"}


def test_a_deleted_customers_history_ends_at_the_delete(defect_week):
    """Each customer the CRM erased: the dimension's last version closes at the delete, marked
    deleted, and no version of the customer is current."""
    with psycopg.connect(defect_week.database_dsn) as conn:
        deletes = dict(
            conn.execute(
                "SELECT row_data->>'customer_id', changed_at FROM orders.changes WHERE table_name = 'customers' AND op = 'D'"
            ).fetchall()
        )
    assert deletes
    dim = defect_week.engine.read_arrow(GOLD_DIM_CUSTOMER).to_pylist()
    for customer, deleted_at in deletes.items():
        versions = sorted((r for r in dim if r["customer_id"] == customer), key=lambda r: r["valid_from"])
        assert versions, customer
        last = versions[-1]
        assert (last["valid_to"], last["is_deleted"], last["is_current"]) == (deleted_at, True, False), customer
        assert not any(r["is_current"] for r in versions), customer
        assert not any(r["is_deleted"] for r in versions[:-1]), customer
    kept = [r for r in dim if r["customer_id"].startswith("C9") and r["customer_id"] not in deletes and r["is_current"]]
    assert kept and not any(r["is_deleted"] for r in kept)


def test_gold_tables_open_with_deltalake_and_spark(defect_week, spark):
    for spec in (t for t in TABLES if t.layer is Layer.GOLD):
        path = defect_week.engine.location(spec)
        table = DeltaTable(path)
        rows = table.to_pyarrow_table().num_rows
        assert rows > 0, spec.key
        # Spark reads the table's current data files as listed by its Delta log.
        assert spark.read.parquet(*table.file_uris()).count() == rows, spec.key


def test_gold_holds_no_raw_email_or_phone(defect_week):
    raw = defect_week.engine.read_arrow(SILVER_CUSTOMERS, columns=["email", "phone"])
    emails = {e.strip().lower() for e in raw["email"].to_pylist() if e}
    phones = {"".join(ch for ch in p if ch.isdigit()) for p in raw["phone"].to_pylist() if p}
    assert emails and phones
    for spec in (t for t in TABLES if t.layer is Layer.GOLD):
        table = defect_week.engine.read_arrow(spec)
        for name in table.column_names:
            if not pa.types.is_string(table.schema.field(name).type):
                continue
            for value in set(table[name].to_pylist()) - {None}:
                assert value.strip().lower() not in emails, f"{spec.key}.{name} holds a raw e-mail"
                digits = "".join(ch for ch in value if ch.isdigit())
                assert not (len(digits) >= 7 and digits in phones and not value.startswith("*")), (
                    f"{spec.key}.{name} holds a raw phone"
                )


def test_materializing_partitions_again_leaves_every_table_identical(defect_week):
    before, after = defect_week.before_rerun, defect_week.after_rerun
    assert before is not None and after is not None
    assert sum(t.num_rows for t in before.values()) > 0
    assert [key for key in before if not before[key].equals(after[key])] == []


@pytest.mark.parity
def test_every_table_is_equal_on_both_engines(defect_week, spark_engine_week):
    """Bronze, quarantine, Silver and Gold of the delta-spark week equal the delta-rs week's,
    every column but the processing timestamps and batch ids."""
    assert spark_engine_week.placed == defect_week.placed  # the same offsets were produced
    differ = {}
    for spec in TABLES:
        rs, sp = snapshot(defect_week.engine, spec), snapshot(spark_engine_week.engine, spec)
        if not rs.equals(sp):
            differ[spec.key] = (rs.num_rows, sp.num_rows)
    assert differ == {}
    assert sum(snapshot(spark_engine_week.engine, spec).num_rows for spec in TABLES) > 0


def test_dimensions_identical_after_a_shuffled_backfill_and_a_full_refresh(defect_week, tmp_path):
    """Every partition of master data, then of the dimensions, each in a shuffled order, one run
    per day: each run after the first MERGEs the keys its day touched. The SCD tables must equal
    the main run's (each stage over all days in order) and a full refresh's. Day-by-day runs in
    order are held equal to the rebuild by `lib/test_incremental_dimensions.py`. Order
    independence is the transformation's (the same code on either engine; two dozen runs cost
    the delta-spark engine seven minutes): `test_every_table_is_equal_on_both_engines` holds
    delta-spark's dimensions equal to these."""
    master, dimensions = STAGE["refine_master_data"], STAGE["build_dimensions"]
    root = tmp_path / "shuffled"
    shutil.copytree(defect_week.root / "lakehouse" / "bronze", root / "lakehouse" / "bronze")
    # the sales lines name the keys that need inferred members
    for spec in (SILVER_SALES_LINES, SILVER_RETURNS):
        relative = Path("lakehouse") / spec.layer.value / spec.name
        shutil.copytree(defect_week.root / relative, root / relative)
    with pytest.MonkeyPatch.context() as mp:
        defs = build_defs(
            root, "127.0.0.1:9", mp, RETAIL_LATENESS_DAYS=str(LATENESS), **ENGINE_SETTINGS[defect_week.engine_name]
        )
        instance = dg.DagsterInstance.ephemeral()
        shuffled = defect_week.arrival_days[:]
        random.Random(3).shuffle(shuffled)
        plan = [(master, d) for d in shuffled] + [(dimensions, d) for d in reversed(shuffled)]
        for stage, day in plan:
            summary = run_stage(defs, stage, day, instance)
            assert summary.success and not summary.checks_failed, summary
        engine = local_engine(defect_week.engine_name, root, defect_week.engine.spark)
        backfilled = {spec.key: snapshot(engine, spec) for spec in DIMENSIONS}
        # each run after the first MERGEd the keys of its day; a full refresh rebuilds all
        assert _refresh_modes(instance) == {"full": 3, "keys touched": 3 * (len(plan) // 2 - 1)}
        summary = run_stage(defs, dimensions, plan[-1][1], instance, tags={FULL_REFRESH_TAG: "true"})
        assert summary.success and not summary.checks_failed, summary
        assert _refresh_modes(instance)["full"] == 6
        refreshed = {spec.key: snapshot(engine, spec) for spec in DIMENSIONS}
    for spec in DIMENSIONS:
        table = backfilled[spec.key]
        assert table.num_rows > 1
        assert table.equals(refreshed[spec.key]), spec.key
        assert table.equals(snapshot(defect_week.engine, spec)), spec.key


DIMENSIONS = (GOLD_DIM_CUSTOMER, GOLD_DIM_PRODUCT, GOLD_DIM_STORE)


def _refresh_modes(instance: dg.DagsterInstance) -> Counter:
    """How the dimension materializations recorded in `instance` were written ("refresh")."""
    modes: Counter = Counter()
    for spec in DIMENSIONS:
        for event in instance.fetch_materializations(asset_key(spec), limit=1000).records:
            modes[event.asset_materialization.metadata["refresh"].value] += 1
    return modes


def _check_evaluations(week: Week, spec: TableSpec, tags: dict[str, str]) -> list[dg.AssetCheckEvaluation]:
    key = asset_key(spec)
    job = dg.define_asset_job(
        f"check_{spec.layer.value}_{spec.name}", selection=dg.AssetSelection.checks_for_assets(key)
    )
    defs = dg.Definitions.merge(week.defs, dg.Definitions(jobs=[job]))
    # A checks-only job cannot infer its partitions definition, so the partition (or range) goes
    # in as the run tags Dagster itself uses for it.
    result = defs.resolve_job_def(job.name).execute_in_process(instance=week.instance, tags=tags, raise_on_error=False)
    return result.get_asset_check_evaluations()


def _run_checks(week: Week, spec: TableSpec, partition: str) -> dict[str, bool]:
    return {e.check_name: e.passed for e in _check_evaluations(week, spec, {"dagster/partition": partition})}


def _run_range_checks(week: Week, spec: TableSpec, first: str, last: str) -> dict[tuple[str, str], bool]:
    """Whether each check held on each day; a warning (rows kept with flags) is not a failure."""
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    return {
        (e.check_name, e.partition): e.passed or e.check_name == quality.QUALITY_WARNINGS
        for e in _check_evaluations(week, spec, tags)
    }


@pytest.mark.parametrize(
    ("spec", "tamper"),
    [
        # every customer's orders of the day off by one: counted from the fact's lines of that day
        (
            GOLD_CUSTOMER_DAILY_VALUE,
            lambda t: t.set_column(
                t.schema.get_field_index("orders"), "orders", pc.add(t["orders"], 1).cast(t["orders"].type)
            ),
        ),
        # a store-product row gone from the day's inventory cover
        (GOLD_AGG_INVENTORY_COVER, lambda t: t.slice(1)),
    ],
    ids=["customer_day_orders", "inventory_rows"],
)
def test_reconciliations_grouped_by_day_fail_on_the_tampered_day_only(defect_week, spec, tamper):
    engine, day = defect_week.engine, defect_week.event_days[2]
    original = engine.read_arrow(spec, PartitionRange.single(day))
    predicate = f"{spec.partition_column} = '{day}'"
    assert original.num_rows > 1
    try:
        write_deltalake(engine.location(spec), tamper(original), mode="overwrite", predicate=predicate)
        week = _run_range_checks(defect_week, spec, defect_week.event_days[0], defect_week.event_days[-1])
        assert {p for (check, p) in week if check == quality.RECONCILIATION} == set(defect_week.event_days)
        assert {(check, p) for (check, p), passed in week.items() if not passed} == {(quality.RECONCILIATION, day)}
        assert _run_checks(defect_week, spec, day)[quality.RECONCILIATION] is False
        assert _run_checks(defect_week, spec, defect_week.event_days[1])[quality.RECONCILIATION] is True
    finally:
        write_deltalake(engine.location(spec), original, mode="overwrite", predicate=predicate)
    assert _run_checks(defect_week, spec, day)[quality.RECONCILIATION] is True


def test_checks_fail_when_data_is_broken_on_purpose(defect_week):
    engine = defect_week.engine
    day = defect_week.event_days[1]
    arrival = defect_week.arrival_days[1]
    sales_path = engine.location(SILVER_SALES_LINES)
    original = engine.read_arrow(SILVER_SALES_LINES, PartitionRange.single(day))
    assert original.num_rows > 1
    predicate = f"event_date = '{day}'"
    try:
        # a repeated row: primary key fails
        write_deltalake(
            sales_path, pa.concat_tables([original, original.slice(0, 1)]), mode="overwrite", predicate=predicate
        )
        assert _run_checks(defect_week, SILVER_SALES_LINES, day)[quality.PRIMARY_KEY] is False
        # a run over the whole week records each day's outcome on that day: only this one fails
        week = _run_range_checks(defect_week, SILVER_SALES_LINES, defect_week.event_days[0], defect_week.event_days[-1])
        assert {p for (check, p), passed in week.items() if check == quality.PRIMARY_KEY} == set(defect_week.event_days)
        assert {(check, p) for (check, p), passed in week.items() if not passed} == {(quality.PRIMARY_KEY, day)}
        # a negative amount: value rules fail
        amount = original["net_amount"]
        negated = pc.subtract(pa.scalar(0, amount.type), amount).cast(amount.type)
        broken = original.set_column(original.schema.get_field_index("net_amount"), "net_amount", negated)
        write_deltalake(sales_path, broken, mode="overwrite", predicate=predicate)
        assert _run_checks(defect_week, SILVER_SALES_LINES, day)[quality.VALUE_RULES] is False
        # Gold no longer reconciles with the tampered Silver, on that day only
        fact = next(t for t in TABLES if t.key == "gold.fact_sales")
        assert _run_checks(defect_week, fact, day)[quality.RECONCILIATION] is False
        week = _run_range_checks(defect_week, fact, defect_week.event_days[0], defect_week.event_days[-1])
        assert {(check, p) for (check, p), passed in week.items() if not passed} == {(quality.RECONCILIATION, day)}
        # a lost row: conservation of the arrival day it came from fails
        lost_arrival = original["_arrival_date"][0].as_py().isoformat()
        write_deltalake(sales_path, original.slice(1), mode="overwrite", predicate=predicate)
        assert _run_checks(defect_week, QUARANTINE_RULE_VIOLATIONS, lost_arrival)[quality.CONSERVATION] is False
    finally:
        write_deltalake(sales_path, original, mode="overwrite", predicate=predicate)
    assert _run_checks(defect_week, SILVER_SALES_LINES, day)[quality.PRIMARY_KEY] is True
    assert arrival
