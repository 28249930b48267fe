"""Quarantine helpers: records in are counted once per set of committed Bronze versions."""

from __future__ import annotations

from dataclasses import dataclass

from retail_assets.defs.quarantine import assets as quarantine
from retail_assets.lib.engine import LakehouseEngine, PartitionRange
from retail_assets.lib.tables import BRONZE_CUSTOMERS, TableSpec
from retail_assets_tests.lib.test_silver import D, bronze


@dataclass
class Run:
    engine: LakehouseEngine
    partition: PartitionRange

    def read(self, spec: TableSpec, before: int = 0, after: int = 0):
        return self.engine.read(spec, self.partition.widened(before, after))


def test_records_in_counted_once_per_bronze_version(spark, engine, monkeypatch):
    counted = []
    count_records_in = quarantine.silver.count_records_in
    monkeypatch.setattr(quarantine.silver, "count_records_in", lambda df, table: counted.append(table) or count_records_in(df, table))
    monkeypatch.setattr(quarantine, "_RECORDS_IN", {})
    day = PartitionRange.single(D)
    customers = [{"customer_id": f"C{i}", "updated_at": "2026-10-01T08:00:00+00:00"} for i in range(3)]
    engine.write(BRONZE_CUSTOMERS, bronze(spark, BRONZE_CUSTOMERS, customers[:2]), day)
    run = Run(engine, day)

    assert quarantine.records_in_by_day(run) == {D: 2}
    passes = len(counted)
    assert passes == len(quarantine.BRONZE_TABLES)
    assert quarantine.records_in_by_day(run) == {D: 2}  # same versions: not counted again
    assert len(counted) == passes

    engine.write(BRONZE_CUSTOMERS, bronze(spark, BRONZE_CUSTOMERS, customers), day)  # a new commit
    assert quarantine.records_in_by_day(run) == {D: 3}
    assert len(counted) == 2 * passes
