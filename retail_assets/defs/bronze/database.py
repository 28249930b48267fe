"""Bronze from the operational database: every change since Bronze's high-water mark, once.

The newest arrival partition takes `(max change_id committed in Bronze, fenced max]`; a past
partition re-reads exactly the change_id range it holds (as the Kafka stream re-reads its
recorded offset ranges). The rows come through Spark's JDBC source and are written in one Delta
commit on either engine, so a run killed before its commit leaves nothing and the re-run takes
the same changes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from retail_assets.defs.sources.assets import ORDERS_DATABASE
from retail_assets.lib.orchestration.factories import RangeMode, TableOutput, TableRun, build_table_asset
from retail_assets.lib.orchestration.resources import DatabaseResource, NotConfigured
from retail_assets.lib.registry.tables import BRONZE_ORDERS_CHANGES
from retail_assets.lib.sources import database as database_lib
from retail_assets.lib.sources.database import ChangeRange
from retail_assets.lib.transforms.ingest.changes import bronze_changes

# Failures a retry cannot mend: a person changes the configuration or the database first.
PERMANENT = (
    NotConfigured,
    database_lib.DatabaseRefused,
    database_lib.CaptureNotInstalled,
    database_lib.ChangesNotRetained,
    database_lib.ChangesBehindBronze,
)


@contextlib.contextmanager
def database_failures(run: TableRun, database: DatabaseResource) -> Iterator[None]:
    """The database's failures as the run should report them."""
    spec = BRONZE_ORDERS_CHANGES
    try:
        yield
    except PERMANENT as exc:
        raise dg.Failure(
            description=f"{exc} Nothing was written to {spec.key} for {run.partition}.", allow_retries=False
        ) from exc
    except database_lib.DatabaseUnavailable as exc:
        # Transient (lib/orchestration/retries.py): nothing is committed before the whole range
        # is read, so a retry starts clean.
        raise type(exc)(
            f"{database.where} is unavailable ({exc}); nothing was written to {spec.key} for {run.partition}. The "
            "step is retried with backoff; if it keeps failing, check that the database is up and reachable, then "
            "re-run the partition."
        ) from exc


def orders_changes_compute(run: TableRun) -> TableOutput:
    database: DatabaseResource = run.resource("database")
    with database_failures(run, database):
        return read_orders_changes(run, database)


def held_changes(run: TableRun) -> tuple[ChangeRange | None, int, int, bool]:
    """What Bronze holds: this partition's change_id range and row count, the high-water mark
    (the highest change_id committed anywhere in the table, 0 when empty), and whether a later
    arrival partition holds changes."""
    spec = BRONZE_ORDERS_CHANGES
    held = run.engine.read_arrow(spec, columns=["change_id", spec.partition_column])
    if held.num_rows == 0:
        return None, 0, 0, False
    day = pa.scalar(run.day, pa.date32())
    mine = held.filter(pc.equal(held[spec.partition_column], day))["change_id"]
    later = held.filter(pc.greater(held[spec.partition_column], day)).num_rows > 0
    recorded = ChangeRange(pc.min(mine).as_py() - 1, pc.max(mine).as_py()) if len(mine) else None
    return recorded, len(mine), int(pc.max(held["change_id"]).as_py()), later


def read_orders_changes(run: TableRun, database: DatabaseResource) -> TableOutput:
    spec = BRONZE_ORDERS_CHANGES
    database.require()
    recorded, held, committed, later = held_changes(run)
    schema = database.source_schema
    with database.connect() as conn:
        if later:
            run.context.log.info(
                f"later arrival partitions hold newer changes; re-reading only the range recorded for {run.day} "
                f"({recorded or 'none'})"
            )
            batch, fenced = recorded, None
        else:
            fenced = database_lib.fence(conn, schema, lock_timeout_s=database.lock_timeout_s)
            database_lib.check_not_behind(schema, fenced, committed)
            batch = ChangeRange(recorded.after if recorded else committed, fenced)
        if recorded is not None:
            database_lib.check_retained(conn, schema, recorded, held)
    metadata = {
        "change_range": str(batch) if batch is not None and not batch.empty else "none",
        "high_water_mark_before": committed,
        "fenced_max_change_id": fenced if fenced is not None else "not fenced (a past partition)",
        "source": f"{database.where} {schema}.{database_lib.CHANGE_TABLE}",
    }
    if batch is None or batch.empty:
        return TableOutput(run.engine.empty_frame(spec), metadata, by_partition={run.day: {"changes": 0}})
    frame = bronze_changes(
        database.load_changes(run.engine.spark, batch),
        spec,
        schema=schema,
        batch_id=run.run_id,
        ingested_at=dt.datetime.now(dt.UTC),
        arrival_date=run.day,
    )
    return TableOutput(frame, metadata, by_partition=lambda: {run.day: written_figures(run)})


def written_figures(run: TableRun) -> dict[str, int | str]:
    """The partition's changes as committed: how many, their change_id range, rows per table and op."""
    spec = BRONZE_ORDERS_CHANGES
    rows = run.engine.read_arrow(spec, run.partition, columns=["change_id", "table_name", "op"])
    figures: dict[str, int | str] = {"changes": rows.num_rows}
    if rows.num_rows:
        figures["first_change_id"] = pc.min(rows["change_id"]).as_py()
        figures["last_change_id"] = pc.max(rows["change_id"]).as_py()
        counted = rows.group_by(["table_name", "op"]).aggregate([("change_id", "count")])
        for table, op, n in zip(*(counted[c].to_pylist() for c in ("table_name", "op", "change_id_count"))):
            figures[f"{table}.{op}"] = n
    return figures


orders_changes = build_table_asset(
    spec=BRONZE_ORDERS_CHANGES,
    upstream=[],
    sources=[ORDERS_DATABASE],
    compute=orders_changes_compute,
    # the newest day takes every change after the days before it
    ranges=RangeMode.ONE_DAY_PER_RUN,
    kinds={"postgres", "spark", "delta"},
    resources=frozenset({"database"}),
    # One extraction at a time: two runs reading the same pending changes into different arrival
    # days would hold them twice.
    pool="bronze_database",
)
