"""With `dagster dev` running (webserver + daemon, sensors on as a user gets them), dropping files
into the landing zone and producing events to Kafka updates Gold with nobody clicking."""

from __future__ import annotations

import csv
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import pytest

from retail_assets.lib.registry.tables import KAFKA_TOPIC
from retail_assets.tooling.devserver import start_dagster_dev
from retail_assets.tooling.generator import GeneratorConfig, generate
from retail_assets.tooling.latency import gold_transactions
from retail_assets.tooling.stream import drop_files, send_stream

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GOLD_TIMEOUT_S = 600

RUNS_QUERY = """
{
  runsOrError(limit: 100) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""


def sales_file_transactions(landing: Path, day: dt.date) -> set[str]:
    ids = set()
    for path in (landing / "sales" / day.isoformat()).glob("*.csv"):
        with path.open(newline="") as fh:
            ids.update(row["transaction_id"] for row in csv.DictReader(fh))
    return ids


def test_files_and_events_reach_gold_without_a_click(tmp_path):
    today = dt.datetime.now(dt.UTC).date()
    config = GeneratorConfig(
        seed=21,
        start_date=today,
        days=1,
        stores=2,
        products=30,
        customers=60,
        transactions_per_store_day=8,
        kafka_share=0.5,
    )
    with tempfile.TemporaryDirectory(prefix="retail-e2e-gen-") as out:
        generated = generate(config, out)
        # A deployment that opened yesterday: automation follows the same conditions as ever, over
        # the two partitions that exist, which keeps the run count of a fresh start small.
        env = {
            "RETAIL_SENSORS_DEFAULT": "running",
            "RETAIL_PARTITIONS_START": (today - dt.timedelta(days=1)).isoformat(),
        }
        with start_dagster_dev(tmp_path / "dev", env) as dev:
            # a store drops its exports and the master-data feeds land, while the tills stream
            dropped = drop_files(generated.landing_root, dev.landing)
            assert any("/sales/" in p.as_posix() for p in dropped)
            send_stream(dev.kafka_bootstrap, KAFKA_TOPIC, generated.kafka_messages, rate_per_s=0)
            from_files = sales_file_transactions(dev.landing, today)
            from_events = {json.loads(m.value)["transaction_id"] for m in generated.kafka_messages}
            assert from_files and from_events
            expected = from_files | from_events

            deadline = time.monotonic() + GOLD_TIMEOUT_S
            seen: set[str] = set()
            while time.monotonic() < deadline:
                seen = gold_transactions(dev.lakehouse)
                if expected <= seen:
                    break
                time.sleep(2)
            missing = expected - seen
            assert not missing, dev.fail(
                f"{len(missing)} of {len(expected)} transactions not in gold.fact_sales after {GOLD_TIMEOUT_S}s"
            )

            runs = dev.graphql(RUNS_QUERY)["runsOrError"]["results"]
    # every run was started by a sensor or by automation, each saying why
    launched_by = {}
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert "dagster/sensor_name" in tags, f"run {run['runId']} was not started by a sensor or automation: {tags}"
        launched_by.setdefault(tags["dagster/sensor_name"], []).append(tags)
    assert {"landing_zone_sensor", "kafka_offsets_sensor", "downstream_automation"} <= set(launched_by)
    assert all(
        "retail/trigger" in tags for tags in launched_by["landing_zone_sensor"] + launched_by["kafka_offsets_sensor"]
    )
    assert all(tags.get("dagster/from_automation_condition") == "true" for tags in launched_by["downstream_automation"])
