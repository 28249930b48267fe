"""The bench's second pipeline path: the graph as a data engineer backfills it from the UI.

`retail-assets ui` (`dagster dev` with its daemon, a Kafka broker and the Spark Connect server
its runs share) runs over the workload's landing zone. Each arrival day's events are produced
and that day's Kafka partition is materialized as the UI's *Materialize* on one partition does
(a run of its own, launched through the run queue as the stream sensor's runs are); then one
`launchPartitionBackfill` of every other asset over the workload's days, as *Materialize…* over
a date range on the selected graph launches it (every asset shares one daily partitioning, so
the UI offers one range). The daemon plans the runs from the assets' backfill policies and
partition mappings: assets with the same single-run policy over the same range go into one run,
even across lateness windows; nothing sets a run tag by hand. The wall time runs from the first
launch to the last run's end, without the seconds spent producing events (the baseline finds
them on the topic).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from retail_assets.lib.registry.stages import configured_stages
from retail_assets.lib.registry.tables import BRONZE_POS_TRANSACTIONS, KAFKA_TOPIC, TableSpec
from retail_assets.tooling.bench.workload import Workload


class BackfillFailed(RuntimeError):
    pass


def _path(spec) -> tuple[str, str]:
    return (spec.layer.value, spec.name)


def graph_tables() -> list[TableSpec]:
    """What the graph's backfill selects: every table but the Kafka stream's (materialized day by
    day before it), of the stages a deployment without an operational database has (the bench's
    workload has none, and its dev server starts no PostgreSQL: `bronze/orders_changes` would
    fail every run asking for it)."""
    return [t for stage in configured_stages(set()) for t in stage.tables if t is not BRONZE_POS_TRANSACTIONS]


def backfill_graph(
    workload: Workload,
    root: Path,
    *,
    env: Mapping[str, str] | None = None,
    echo: Callable[[str], None] = print,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Run the workload through `dagster dev` as UI backfills; the figures and run list."""
    from retail_assets.tooling.broker import ensure_topic, produce  # noqa: PLC0415
    from retail_assets.tooling.devserver import start_dagster_dev  # noqa: PLC0415

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    if not (data / "landing").exists():
        (data / "landing").symlink_to(workload.landing, target_is_directory=True)
    settings = {
        "RETAIL_SENSORS_DEFAULT": "stopped",  # the backfills are the only runs
        "RETAIL_LATENESS_DAYS": str(workload.lateness_days),
        **(env or {}),
    }
    by_day = workload.messages_by_arrival_day()
    days = sorted({*workload.arrival_days, *workload.event_days})
    graph = [(_path(spec), days[0], days[-1]) for spec in graph_tables()]
    with start_dagster_dev(root, settings) as dev:
        ensure_topic(dev.kafka_bootstrap, KAFKA_TOPIC)
        runs: list[dict[str, Any]] = []
        produce_s = 0.0
        started_at = time.time()
        for day in workload.arrival_days:
            t = time.monotonic()
            produce(dev.kafka_bootstrap, KAFKA_TOPIC, by_day.get(day, []))
            produce_s += time.monotonic() - t
            run = dev.materialize(_path(BRONZE_POS_TRANSACTIONS), day, f"bench: Kafka {day}", timeout_s)
            runs.append(run)
            if run["status"] != "SUCCESS":
                raise BackfillFailed(
                    f"the Kafka stream's {day}: run {run['runId']} ended {run['status']}\n{dev.log_tail()}"
                )
        echo(f"    backfill of {len(graph)} assets over their partitions from the UI's mutation")
        state = dev.backfill(graph, "bench: the graph", timeout_s)
        runs += state["runs"]
        _refuse_failure(state, "the graph's backfill", dev)
        # To the last run's end: the daemon marks the backfill done on its next iteration.
        wall = max(r["endTime"] for r in runs) - started_at - produce_s
    in_runs = sum((r["endTime"] or 0) - (r["startTime"] or 0) for r in runs)
    return {
        "backfill_wall_s": round(wall, 2),
        "backfill_produce_s": round(produce_s, 2),
        "backfill_runs": len(runs),
        "backfill_graph_runs": len(state["runs"]),
        "backfill_in_runs_s": round(in_runs, 2),
        "backfill_lakehouse": str(data / "lakehouse"),
    }


def _refuse_failure(state: dict[str, Any], what: str, dev) -> None:
    failed = [r["runId"] for r in state["runs"] if r["status"] != "SUCCESS"]
    if state["status"] not in ("COMPLETED", "COMPLETED_SUCCESS") or failed:
        raise BackfillFailed(
            f"{what} ended {state['status']} ({state.get('error')}); failed runs {failed}\n{dev.log_tail()}"
        )
