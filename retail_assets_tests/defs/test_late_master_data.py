"""Late-arriving master data through the stage jobs: a sale whose product has no record yet is in
Gold revenue from its first run, keyed to an inferred member; when the record arrives, within
the lateness window or long after it, the member takes its attributes under the same key.

Landing files are written by hand, one arrival day at a time, and every stage job runs as the
main job runs it (the Kafka stream aside: these days have no events).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc

from retail_assets.lib.engine import PartitionRange
from retail_assets.lib.registry import rules
from retail_assets.lib.registry.stages import STAGE, configured_stages
from retail_assets.lib.registry.tables import (
    GOLD_AGG_DAILY_STORE_SALES,
    GOLD_DIM_PRODUCT,
    GOLD_DIM_PRODUCT_CURRENT,
    GOLD_FACT_SALES,
    GOLD_SALES_DENORMALIZED,
    SILVER_SALES_LINES,
    Partitioning,
)
from retail_assets.lib.transforms import quality
from retail_assets.lib.transforms.gold import integrity
from retail_assets.tooling.main_job import run_stage
from retail_assets_tests.simulated_week import ENGINE_SETTINGS, build_defs, local_engine

D1 = dt.date(2026, 11, 2)
SALES_HEADER = (
    "transaction_id,line_number,event_time,store_id,product_id,customer_id,quantity,unit_price,discount,payment_method"
)
PRODUCT_FIELDS = ("product_id", "name", "category", "brand", "unit_cost", "list_price", "status", "updated_at")


def day(n: int) -> dt.date:
    return D1 + dt.timedelta(days=n)


def product(pid: str, name: str, updated_at: str) -> dict:
    return dict(zip(PRODUCT_FIELDS, (pid, name, "Pantry", "Acme", "1.00", "4.00", "active", updated_at), strict=True))


def write(landing: Path, relative: str, text: str) -> None:
    path = landing / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class Lake:
    def __init__(self, root: Path, spark, monkeypatch, engine_name: str = "delta_rs") -> None:
        self.landing = root / "landing"
        # the stream has no events these days; nothing reads the broker
        self.defs = build_defs(
            root, "127.0.0.1:9", monkeypatch, RETAIL_INFERRED_WAIT_DAYS="3", **ENGINE_SETTINGS[engine_name]
        )
        self.instance = dg.DagsterInstance.ephemeral()
        self.engine = local_engine(engine_name, root, spark)

    def store_s1(self) -> None:
        """The one store every test sells in, arriving on D1."""
        write(
            self.landing,
            f"stores/{D1}/stores.csv",
            "store_id,name,city,region,format,opened_on,status,updated_at\n"
            f"S1,Main,Lyon,South,supermarket,2020-01-01,open,{D1}T06:00:00+00:00\n",
        )

    def products(self, day: dt.date, *records: dict) -> None:
        write(self.landing, f"products/{day}/products.jsonl", "".join(json.dumps(r) + "\n" for r in records))

    def run(self, stage_names: list[str], partition: dt.date):
        summaries = [run_stage(self.defs, STAGE[s], partition.isoformat(), self.instance) for s in stage_names]
        for s in summaries:
            assert s.success, (s.stage, s)
        return summaries

    def stages(self, arrival: dt.date, business: list[dt.date], *, skip: tuple[str, ...] = ()) -> dict[str, list]:
        """Every stage in the main job's order (the Kafka stream aside): arrival-date stages for
        `arrival`, business-date stages for each of `business`."""
        out = {}
        for stage in configured_stages(set()):
            if stage.job_name == "ingest_pos_stream" or stage.job_name in skip:
                continue
            days = [arrival] if stage.partitioning is Partitioning.ARRIVAL_DATE else business
            out[stage.job_name] = [s for d in days for s in self.run([stage.job_name], d)]
        return out

    def fact(self) -> dict[str, dict]:
        return {r["transaction_id"]: r for r in self.engine.read_arrow(GOLD_FACT_SALES).to_pylist()}

    def product_rows(self) -> dict[int, dict]:
        return {r["product_sk"]: r for r in self.engine.read_arrow(GOLD_DIM_PRODUCT).to_pylist()}

    def denormalized(self) -> dict[str, dict]:
        return {r["transaction_id"]: r for r in self.engine.read_arrow(GOLD_SALES_DENORMALIZED).to_pylist()}

    def flags(self) -> dict[str, list[str]]:
        return {r["transaction_id"]: r["quality_flags"] for r in self.engine.read_arrow(SILVER_SALES_LINES).to_pylist()}

    def evaluation(self, summaries, asset: str, check: str) -> tuple[bool, dict]:
        """Whether the latest evaluation of `check` in `summaries`' runs passed, and its figures."""
        for summary in reversed(summaries):
            found = self.evaluation_in(summary.run_id, asset, check)
            if found is not None:
                return found
        raise AssertionError(f"no evaluation of {asset}:{check}")

    def check_alone(self, spec, partition: dt.date, check: str) -> tuple[bool, dict]:
        """Run a table's checks on their own for a day, as *Execute checks* does in the UI."""
        key = dg.AssetKey([spec.layer.value, spec.name])
        job = dg.define_asset_job("checks_alone", selection=dg.AssetSelection.checks_for_assets(key))
        defs = dg.Definitions.merge(self.defs, dg.Definitions(jobs=[job]))
        result = defs.resolve_job_def(job.name).execute_in_process(
            instance=self.instance, tags={"dagster/partition": partition.isoformat()}, raise_on_error=False
        )
        (found,) = [e for e in result.get_asset_check_evaluations() if e.check_name == check]
        return found.passed, {k: v.value for k, v in found.metadata.items()}

    def evaluation_in(self, run_id: str, asset: str, check: str) -> tuple[bool, dict] | None:
        for record in reversed(self.instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)):
            e = record.dagster_event.event_specific_data
            if "/".join(e.asset_key.path) == asset and e.check_name == check:
                return e.passed, {k: v.value for k, v in e.metadata.items()}
        return None


def test_a_sale_before_its_product_is_in_revenue_and_keeps_its_key_when_the_product_arrives(
    tmp_path, spark, monkeypatch
):
    # On delta-rs; the defect week's parity test proves delta-spark builds the same inferred members.
    lake = Lake(tmp_path, spark, monkeypatch)
    ts = f"{D1}T10:00:00+00:00"
    lake.store_s1()
    write(
        lake.landing, f"products/{D1}/products.jsonl", json.dumps(product("P1", "Tea", f"{D1}T06:00:00+00:00")) + "\n"
    )
    sales = [
        f"T1,1,{ts},S1,P1,,2,5.00,0,card",
        f"T2,1,{ts},S1,P-LATE,,1,7.00,0,card",  # its record arrives two days later
        f"T3,1,{ts},S1,P-GONE,,3,2.00,0,card",  # its record arrives after the lateness window
    ]
    write(lake.landing, f"sales/{D1}/sales.csv", SALES_HEADER + "\n" + "\n".join(sales) + "\n")

    # Day one: every line is in Silver and the fact, the unknown products flagged and inferred.
    runs = lake.stages(D1, [D1])
    silver_run, gold_run = runs["refine_sales"], runs["build_gold"]
    assert lake.flags() == {"T1": [], "T2": [rules.UNKNOWN_PRODUCT], "T3": [rules.UNKNOWN_PRODUCT]}
    passed, meta = lake.evaluation(silver_run, "silver/sales_lines", quality.QUALITY_WARNINGS)
    assert not passed and meta["flag_unknown_product"] == 2 and meta["flagged_rows"] == 2
    fact, products = lake.fact(), lake.product_rows()
    assert set(fact) == {"T1", "T2", "T3"}
    first_keys = {t: fact[t]["product_sk"] for t in ("T2", "T3")}
    for t, pid in (("T2", "P-LATE"), ("T3", "P-GONE")):
        member = products[first_keys[t]]
        assert (member["product_id"], member["is_inferred"], member["name"]) == (pid, True, None)
        assert member["inferred_since"] == D1
        assert fact[t]["quality_flags"] == [rules.UNKNOWN_PRODUCT]
    revenue = lake.engine.read_arrow(GOLD_AGG_DAILY_STORE_SALES).to_pylist()
    assert [r["revenue"] for r in revenue] == [Decimal("23.00")]  # 10 + 7 + 6: no line left out
    passed, meta = lake.evaluation(gold_run, "gold/fact_sales", quality.REFERENTIAL_INTEGRITY)
    assert passed

    # Two days later P-LATE's record arrives (dated before the sale), within the lateness window:
    # the business day is refined again, and the line is no longer an orphan.
    write(
        lake.landing,
        f"products/{day(2)}/products.jsonl",
        json.dumps(product("P-LATE", "Late Tea", f"{D1}T06:00:00+00:00")) + "\n",
    )
    lake.stages(day(2), [D1])
    fact, products = lake.fact(), lake.product_rows()
    assert lake.flags()["T2"] == []
    assert fact["T2"]["product_sk"] == first_keys["T2"]  # the key the fact had
    filled = products[first_keys["T2"]]
    assert (filled["product_id"], filled["name"], filled["is_inferred"]) == ("P-LATE", "Late Tea", False)

    # Five days later P-GONE's record arrives, after the window: nothing rebuilds that business
    # day, and the fact's line needs nothing rebuilt: its member now has the attributes.
    write(
        lake.landing,
        f"products/{day(5)}/products.jsonl",
        json.dumps(product("P-GONE", "Gone Jam", f"{day(5)}T06:00:00+00:00")) + "\n",
    )
    fact_before = lake.engine.read_arrow(GOLD_FACT_SALES)
    dims = lake.stages(day(5), [])["build_dimensions"]
    assert lake.engine.read_arrow(GOLD_FACT_SALES).equals(fact_before)
    filled = lake.product_rows()[first_keys["T3"]]
    assert (filled["product_id"], filled["name"], filled["is_inferred"]) == ("P-GONE", "Gone Jam", False)
    assert filled["inferred_since"] == D1 and filled["version"] == 1
    assert lake.flags()["T3"] == [rules.UNKNOWN_PRODUCT]  # Silver says how the line arrived
    passed, _ = lake.evaluation(dims, "gold/dim_product", quality.INFERRED_WAITING)
    assert passed
    # The BI shapes: the current snapshot has the real attributes at once; the denormalized
    # table (delta-rs: a table) still holds the day as it was built, and its warn check says so.
    current = {r["product_id"]: r for r in lake.engine.read_arrow(GOLD_DIM_PRODUCT_CURRENT).to_pylist()}
    assert (current["P-GONE"]["name"], current["P-GONE"]["product_sk"]) == ("Gone Jam", first_keys["T3"])
    assert (current["P-LATE"]["name"], current["P-LATE"]["is_inferred"]) == ("Late Tea", False)
    assert lake.denormalized()["T3"]["product_name"] is None
    fresh = lake.engine.view_rows(GOLD_SALES_DENORMALIZED, PartitionRange.single(D1))
    stale = integrity.served_rows_current(
        lake.engine.read(GOLD_SALES_DENORMALIZED), fresh, GOLD_SALES_DENORMALIZED, "event_date", [D1]
    )[D1]
    assert not stale.passed and stale.metadata["stale_rows"] == 1
    # Its currency check on its own: dim_product is at a newer version than the day was served
    # from, so the day is computed again and the stale row found.
    passed, meta = lake.check_alone(GOLD_SALES_DENORMALIZED, D1, quality.SERVED_ROWS_CURRENT)
    assert not passed and meta["stale_rows"] == 1 and meta["computed_again"] is True
    # and building the day again, in any order, gives the same key
    gold_run = lake.run(["build_gold"], D1)
    assert lake.fact()["T3"]["product_sk"] == first_keys["T3"]
    assert pc.sum(lake.engine.read_arrow(GOLD_FACT_SALES)["net_amount"]).as_py() == Decimal("23.00")
    sales = lake.denormalized()
    assert (sales["T3"]["product_name"], sales["T2"]["product_name"], sales["T1"]["product_name"]) == (
        "Gone Jam",
        "Late Tea",
        "Tea",
    )
    assert sum(r["net_amount"] for r in sales.values()) == Decimal("23.00")
    for check in (quality.SERVED_ROWS_CURRENT, quality.SERVES_SOURCE):
        passed, _ = lake.evaluation(gold_run, "gold/sales_denormalized", check)
        assert passed, check
    # served just before from the inputs as they stand: nothing to compute again
    assert (
        lake.evaluation(gold_run, "gold/sales_denormalized", quality.SERVED_ROWS_CURRENT)[1]["computed_again"] is False
    )


def test_an_inferred_member_waiting_too_long_warns(tmp_path, spark, monkeypatch):
    lake = Lake(tmp_path, spark, monkeypatch)
    lake.store_s1()
    write(
        lake.landing, f"sales/{D1}/sales.csv", f"{SALES_HEADER}\nT1,1,{D1}T10:00:00+00:00,S1,P-NEVER,,1,3.00,0,card\n"
    )
    first = lake.evaluation(lake.stages(D1, [D1])["build_dimensions"], "gold/dim_product", quality.INFERRED_WAITING)
    assert first[0] and first[1]["inferred_members"] == 1
    # four days on (RETAIL_INFERRED_WAIT_DAYS=3), still no record of P-NEVER
    write(lake.landing, f"stores/{day(4)}/stores.csv", f"store_id,status,updated_at\nS1,open,{day(4)}T06:00:00+00:00\n")
    passed, meta = lake.evaluation(
        lake.stages(day(4), [])["build_dimensions"], "gold/dim_product", quality.INFERRED_WAITING
    )
    assert not passed and meta["waiting_too_long"] == 1
