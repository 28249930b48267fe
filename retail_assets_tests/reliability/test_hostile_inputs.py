"""Hostile inputs, from files and from Kafka alike: each record ends in quarantine with its rule,
a readable reason and its original bytes, or in Silver, or is counted as a duplicate; the rest
of its file or offset range is not lost; conservation holds for the arrival day.

Cases where the whole input cannot be trusted (a file replaced after it was ingested) end as a
clear run failure that changes nothing.
"""

from __future__ import annotations

import dagster as dg
import pytest

from retail_assets.lib.engine import DeltaRsEngine
from retail_assets.lib.registry import tables
from retail_assets.lib.transforms import quality
from retail_assets_tests.reliability import hostile
from retail_assets_tests.simulated_week import build_defs, snapshot

pytestmark = pytest.mark.reliability


def _by_source(table) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        out.setdefault(row["_source"], []).append(row)
    return out


@pytest.fixture(scope="module")
def outcomes(hostile_lake):
    engine = hostile_lake.engine
    accepted = _by_source(engine.read_arrow(tables.SILVER_SALES_LINES))
    for spec in (tables.SILVER_RETURNS, tables.SILVER_PRODUCTS):
        for source, rows in _by_source(engine.read_arrow(spec)).items():
            accepted.setdefault(source, []).extend(rows)
    return {
        hostile.INGEST_REJECTS: _by_source(engine.read_arrow(tables.QUARANTINE_INGEST_REJECTS)),
        hostile.RULE_VIOLATIONS: _by_source(engine.read_arrow(tables.QUARANTINE_RULE_VIOLATIONS)),
        hostile.ACCEPTED: accepted,
    }


def test_every_stage_succeeds_and_conservation_holds(hostile_lake):
    assert [(s.stage, s.success, s.checks_failed) for s in hostile_lake.summaries] == [
        (s.stage, True, []) for s in hostile_lake.summaries
    ]
    conservation = [
        passed
        for s in hostile_lake.summaries
        for asset, check, passed, _ in s.evaluations
        if asset == "quarantine/rule_violations" and check == quality.CONSERVATION
    ]
    assert conservation == [True]


def _record_key(row: dict) -> str:
    return f"{row['transaction_id']}:{row['line_number']}" if "transaction_id" in row else row["product_id"]


def _original_line(landing, ref: str) -> bytes:
    path, line = ref.rsplit(":", 1)
    data = (landing / path).read_bytes()
    return data.split(b"\n")[int(line) - 1].rstrip(b"\r")


@pytest.mark.parametrize("channel", ["files", "kafka"])
def test_every_hostile_record_ends_where_expected(hostile_lake, outcomes, channel):
    landing = hostile_lake.root / "landing"
    cases = [e for e in hostile_lake.expected if (":" in e.ref) == (channel == "files")]
    assert len(cases) > 40
    problems = []
    for e in cases:
        rejects = outcomes[hostile.INGEST_REJECTS].get(e.ref, [])
        violations = outcomes[hostile.RULE_VIOLATIONS].get(e.ref, [])
        accepted = outcomes[hostile.ACCEPTED].get(e.ref, [])
        placed = {
            hostile.INGEST_REJECTS: len(rejects),
            hostile.RULE_VIOLATIONS: len(violations),
            hostile.ACCEPTED: len(accepted),
        }
        if e.outcome == hostile.DUPLICATE:
            if any(placed.values()):
                problems.append((e.case, e.ref, "a duplicate must only be counted", placed))
            continue
        if e.outcome == hostile.FLAGGED:
            if [k for k, n in placed.items() if n] != [hostile.ACCEPTED] or e.rule not in accepted[0]["quality_flags"]:
                problems.append(
                    (e.case, e.ref, "not kept with its flag", placed, accepted and accepted[0]["quality_flags"])
                )
            continue
        if [k for k, n in placed.items() if n] != [e.outcome]:
            problems.append((e.case, e.ref, "ends in", placed))
            continue
        rows = {hostile.INGEST_REJECTS: rejects, hostile.RULE_VIOLATIONS: violations, hostile.ACCEPTED: accepted}[
            e.outcome
        ]
        if e.outcome == hostile.ACCEPTED:
            if e.record_key and _record_key(rows[0]) != e.record_key:
                problems.append((e.case, e.ref, "accepted as", _record_key(rows[0])))
            continue
        row = rows[0]
        if row["rule"] != e.rule or not row["reason"] or (e.reason and e.reason not in row["reason"]):
            problems.append((e.case, e.ref, row["rule"], row["reason"]))
            continue
        # the original record, byte for byte
        stored = row["original_bytes"] if row["original_bytes"] is not None else row["original_record"].encode()
        if channel == "files" and not e.ref.endswith(":0"):
            original = _original_line(landing, e.ref).removeprefix(b"\xef\xbb\xbf")
        elif channel == "kafka":
            original = hostile_lake.kafka_values[e.ref] or b""
        else:
            original = stored
        if stored != original:
            problems.append((e.case, e.ref, "original differs", len(stored), len(original)))
    assert problems == []


def test_reasons_are_readable_and_bounded(outcomes):
    """A huge field keeps its full original record but never a huge reason."""
    huge = [
        row
        for rows in outcomes[hostile.RULE_VIOLATIONS].values()
        for row in rows
        if len(row["original_record"]) > 90_000
    ]
    assert len(huge) == 2  # one from a file, one from Kafka
    for row in huge:
        assert row["rule"] == "invalid_value" and len(row["reason"]) < 300 and "payment_method" in row["reason"]
    no_offset = [
        r for rows in outcomes[hostile.RULE_VIOLATIONS].values() for r in rows if "has no UTC offset" in r["reason"]
    ]
    assert len(no_offset) == 2
    header = [
        r
        for rows in outcomes[hostile.INGEST_REJECTS].values()
        for r in rows
        if "repeats column quantity" in r["reason"]
    ]
    assert len(header) == 1


def test_new_fields_are_kept_not_lost(outcomes, hostile_lake):
    extras = [
        r["extra_attributes"] for rows in outcomes[hostile.ACCEPTED].values() for r in rows if r["extra_attributes"]
    ]
    assert any('"loyalty_card": "LC-77"' in x for x in extras)
    assert any('"basket_id": "B-9"' in x for x in extras)


def test_file_renamed_over_an_ingested_one_fails_clearly_and_changes_nothing(hostile_lake, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(hostile_lake.root / "landing", tmp_path / "landing")
    engine = DeltaRsEngine(tmp_path / "lakehouse", spark=hostile_lake.engine.spark)
    defs = build_defs(tmp_path, "127.0.0.1:9", monkeypatch)
    job = defs.resolve_implicit_global_asset_job_def()
    key = dg.AssetKey(["bronze", "sales_files"])

    def ingest() -> dg.ExecuteInProcessResult:
        return job.execute_in_process(
            asset_selection=[key],
            partition_key=hostile.D,
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )

    assert ingest().success
    before = snapshot(engine, tables.BRONZE_SALES_FILES)
    version = engine.version(tables.BRONZE_SALES_FILES)

    # a corrected export written under a temporary name and renamed over the ingested file
    folder = tmp_path / "landing" / "sales" / hostile.D
    replacement = folder / "pos_clean.csv.tmp"
    replacement.write_bytes(
        hostile.SALES_HEADER.encode() + b"\n" + hostile.sales_line("C-1", quantity="5").encode() + b"\n"
    )
    replacement.replace(folder / "pos_clean.csv")
    failed = ingest()
    assert not failed.success
    message = "".join(str(e.event_specific_data.error) for e in failed.all_events if e.is_step_failure)
    assert f"sales/{hostile.D}/pos_clean.csv" in message and "new file name" in message
    assert engine.version(tables.BRONZE_SALES_FILES) == version and snapshot(engine, tables.BRONZE_SALES_FILES).equals(
        before
    )

    # the same export under a new name is new data; the original file archived away keeps its records
    (folder / "pos_clean.csv").rename(folder / "pos_clean_v2.csv")
    assert ingest().success
    after = engine.read_arrow(tables.BRONZE_SALES_FILES, columns=["_source", "_raw_record"])
    sources = after["_source"].to_pylist()
    assert len(sources) == len(set(sources)) == before.num_rows + 1
    assert f"sales/{hostile.D}/pos_clean.csv:4" in sources and f"sales/{hostile.D}/pos_clean_v2.csv:2" in sources
