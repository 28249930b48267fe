"""Quarantine helpers: records in are counted once per set of committed Bronze versions, and
the screening reads the classifications Silver runs over the same records wrote."""

from __future__ import annotations

from dataclasses import dataclass

from retail_assets.defs.quarantine import assets as quarantine
from retail_assets.defs.silver.assets import (
    clean_sales_window,
    inventory_compute,
    master_compute,
    shared_classification,
)
from retail_assets.lib.engine import LakehouseEngine, PartitionRange
from retail_assets.lib.engine.checkpoint import SharedCheckpoint
from retail_assets.lib.registry.tables import (
    BRONZE_CUSTOMERS,
    BRONZE_INVENTORY,
    BRONZE_SALES_FILES,
    TableSpec,
    master_data,
)
from retail_assets_tests.lib.test_silver import D, bronze, customer, day, sale


@dataclass
class Run:
    engine: LakehouseEngine
    partition: PartitionRange
    lateness_days: int = 2
    run_id: str = "run-test"

    def read(self, spec: TableSpec, before: int = 0, after: int = 0):
        return self.engine.read(spec, self.partition.widened(before, after))

    def read_all(self, spec: TableSpec):
        return self.engine.read(spec)


def test_records_in_counted_once_per_bronze_version(spark, engine, monkeypatch):
    counted = []
    count_records_in = quarantine.silver.count_records_in
    monkeypatch.setattr(
        quarantine.silver, "count_records_in", lambda df, table: counted.append(table) or count_records_in(df, table)
    )
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


def _screened(run: Run) -> tuple[list, list]:
    screening = quarantine.Screening(run)
    return sorted(map(tuple, screening.violations.collect()), key=repr), sorted(
        map(tuple, screening.duplicates.collect()), key=repr
    )


def _refusing(*kinds: str):
    """`SharedCheckpoint._write` failing for the given kinds of classification."""
    write = SharedCheckpoint._write

    def refuse(self, df):
        if self.directory.name in kinds:
            raise AssertionError(f"the screening computed {self.directory.name} again")
        return write(self, df)

    return refuse


def test_screening_reads_the_classification_the_silver_run_wrote(spark, engine, monkeypatch):
    files = [
        sale("F1"),
        sale("F2", qty="0"),
        sale("F1", _arrival_date=day(1)),
        sale("F3", et="2026-10-02T10:00:00+02:00", _arrival_date=day(1)),
    ]
    engine.write(BRONZE_SALES_FILES, bronze(spark, BRONZE_SALES_FILES, files), PartitionRange(D, day(1)))
    scratch = engine.scratch_location("sales_classification")
    # Silver's business day D reads arrivals D-1 … D+2; the screening of arrival days D … D+1
    # reads D-3 … D+4: both windows hold the same two days of the same version
    silver_run, screening_run = Run(engine, PartitionRange.single(D)), Run(engine, PartitionRange(D, day(1)))
    shared = shared_classification(silver_run, 1, 2)
    shared.computed(clean_sales_window(silver_run, 1, 2).classification).count()
    assert len(list(scratch.iterdir())) == 1

    with monkeypatch.context() as m:
        m.setattr(SharedCheckpoint, "_write", _refusing("sales_classification"))
        shared = _screened(screening_run)
    with monkeypatch.context() as m:
        m.setattr(type(engine), "scratch_location", lambda self, name: None)  # nothing shared
        assert _screened(screening_run) == shared
    violations, _ = shared
    assert violations  # F2's quantity of 0 at least

    # a new commit to Bronze is another key: the screening classifies again, and sees the change
    files.append(sale("F4", qty="0", _arrival_date=day(1)))
    engine.write(BRONZE_SALES_FILES, bronze(spark, BRONZE_SALES_FILES, files[2:]), PartitionRange.single(day(1)))
    assert len(_screened(screening_run)[0]) == len(violations) + 1
    assert len(list(scratch.iterdir())) == 2


def test_screening_reads_the_master_data_and_inventory_classifications_silver_wrote(spark, engine, monkeypatch):
    arrivals = PartitionRange(D, day(1))
    customers = [
        customer("C1"),
        customer("C1"),
        customer("C2", _arrival_date=day(1)),
        customer(None, _arrival_date=day(1)),
    ]
    engine.write(BRONZE_CUSTOMERS, bronze(spark, BRONZE_CUSTOMERS, customers), arrivals)
    snapshots = [
        {"snapshot_date": "2026-10-01", "store_id": "S1", "product_id": p, "on_hand_qty": q}
        for p, q in (("P1", "3"), ("P2", "-1"))
    ]
    engine.write(BRONZE_INVENTORY, bronze(spark, BRONZE_INVENTORY, snapshots), arrivals)
    run = Run(engine, arrivals)
    # the Silver runs of the same arrival days (products and stores have no Bronze rows)
    for spec in master_data():
        master_compute(spec)(run).data.count()
    inventory_compute(run).data.count()
    kinds = ("customers_classification", "products_classification", "stores_classification", "inventory_classification")
    assert all(len(list(engine.scratch_location(k).iterdir())) == 1 for k in kinds)

    read = []
    materialize = SharedCheckpoint.materialize
    with monkeypatch.context() as m:
        m.setattr(SharedCheckpoint, "_write", _refusing(*kinds))
        m.setattr(
            SharedCheckpoint, "materialize", lambda self, df: read.append(self.directory.name) or materialize(self, df)
        )
        shared = _screened(run)
    assert set(kinds) <= set(read)  # each read from what the Silver runs wrote
    with monkeypatch.context() as m:
        m.setattr(type(engine), "scratch_location", lambda self, name: None)  # nothing shared
        assert _screened(run) == shared
    violations, duplicates = shared
    # a customer without id and a negative snapshot (the snapshot of an unknown store is kept,
    # flagged); C1 re-sent
    assert len(violations) == 2 and len(duplicates) == 1

    # a new Bronze inventory commit is another key: the screening classifies it again and sees the change
    snapshots.append(
        {
            "snapshot_date": "2026-10-02",
            "store_id": "S1",
            "product_id": "P3",
            "on_hand_qty": "-2",
            "_arrival_date": day(1),
        }
    )
    engine.write(BRONZE_INVENTORY, bronze(spark, BRONZE_INVENTORY, snapshots[2:]), PartitionRange.single(day(1)))
    assert len(_screened(run)[0]) == len(violations) + 1
    assert len(list(engine.scratch_location("inventory_classification").iterdir())) == 2
