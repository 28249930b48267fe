"""The bench's measured processes, seen from the bench: each one's environment, command line
and report (`python -m retail_assets.tooling.bench.measure`), and what its runs add up to."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from retail_assets.lib.engine.spark import classic_env
from retail_assets.lib.settings import ENGINE_ENV
from retail_assets.tooling.bench.measure import ProcessFigures, run_measured
from retail_assets.tooling.bench.workload import Workload


class BenchFailed(RuntimeError):
    pass


def measured_env(engine: str, pipeline_root: Path, lateness_days: int, **extra: str) -> dict[str, str]:
    """The environment of a measured pipeline process of `engine` whose data root is `pipeline_root`."""
    # Each measured process starts its own JVM, as a user's run does: a Spark Connect session
    # this process (or its parent) attached to is not theirs to share.
    env = {k: v for k, v in classic_env().items() if k != "DAGSTER_HOME"}
    env.update(
        ENGINE_ENV[engine],
        DAGSTER_HOME=str(pipeline_root / "dagster_home"),
        RETAIL_LATENESS_DAYS=str(lateness_days),
        **extra,
    )
    return env


def measure(
    what: str,
    workload: Workload,
    pipeline_root: Path,
    bootstrap: str,
    *,
    env: dict[str, str],
    where: Path,
    name: str | None = None,
    args: tuple[str, ...] = (),
) -> tuple[ProcessFigures, Path]:
    """`python -m retail_assets.tooling.bench.measure <what>` in a process of its own; its report
    and log go to `where` as `<name>.json` and `<name>.log` (`name`: `what`)."""
    name = name or what
    report = where / f"{name}.json"
    command = [sys.executable, "-m", "retail_assets.tooling.bench.measure", what, "--workload", str(workload.root)]
    command += ["--root", str(pipeline_root), "--bootstrap", bootstrap, "--report", str(report), *args]
    return run_measured(command, env=env, log=where / f"{name}.log"), report


def measure_pipeline(
    workload: Workload, pipeline_root: Path, bootstrap: str, *, engine: str, **how
) -> tuple[ProcessFigures, dict[str, object]]:
    """The stage jobs run by `measure pipeline` (`how`: `measure`'s options); its process and report."""
    process, report = measure("pipeline", workload, pipeline_root, bootstrap, **how)
    if not report.exists():
        log = report.with_suffix(".log")
        raise BenchFailed(f"the {engine} pipeline process exited with {process.returncode} without a report; see {log}")
    return process, json.loads(report.read_text())


def stage_seconds(runs: list[dict[str, object]]) -> dict[str, float]:
    """Seconds in runs per stage, in the order the stages ran."""
    stage_s: dict[str, float] = {}
    for run in runs:
        stage_s[run["stage"]] = stage_s.get(run["stage"], 0.0) + run["seconds"]
    return stage_s


def failed(runs: list[dict[str, object]]) -> list[str]:
    """`stage partition` of each run that failed or had a check fail with ERROR severity."""
    return [f"{r['stage']} {r['partition']}" for r in runs if not r["success"] or r["checks_failed"]]
