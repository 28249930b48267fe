"""The persistent Dagster instance the main job, `retail-assets ui` and `dagster dev` share."""

from __future__ import annotations

import os
from pathlib import Path

# A run whose worker died (killed, out of memory) is failed by its code server, which sees the
# process end, and retried as a run; a run that failed in a step is not (a step's transient
# failures are retried as steps, lib/orchestration/retries.py; anything else would fail again).
OPERATIONS_CONFIG = """\
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
"""

INSTANCE_CONFIG = (
    """\
telemetry:
  enabled: false
run_queue:
  # The queue is looked at every second, not Dagster's five: a stream-lane run or a backfill's
  # next run starts up to four seconds sooner (event → Gold latency, `retail-assets latency`).
  dequeue_interval_seconds: 1
concurrency:
  runs:
    # Runs share the Spark Connect server `retail-assets ui` starts (one JVM); three at a time
    # keep a laptop's cores busy.
    max_concurrent_runs: 3
    tag_concurrency_limits:
      # One Kafka run at a time; the next one waits in the queue and takes everything pending.
      - key: retail/lane
        value: stream
        limit: 1
      # Automation (late partitions catching up, aggregates) never holds every slot: new files
      # and events always find one.
      - key: dagster/sensor_name
        value: downstream_automation
        limit: 2
  pools:
    # Dimensions and customer lifetime value read their table and MERGE into it (pools
    # `gold_dimensions`, `gold_customer_value`): one run at a time per table.
    default_limit: 1
"""
    + OPERATIONS_CONFIG
)


def dagster_home(root: Path) -> Path:
    """The instance folder (`DAGSTER_HOME`, else `<data root>/dagster_home`), created with its
    `dagster.yaml` when missing; exported as `DAGSTER_HOME` for what the command starts."""
    home = Path(os.environ.get("DAGSTER_HOME") or root / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    from retail_assets.tooling.event_log import instance_config

    if not config.exists():
        config.write_text(INSTANCE_CONFIG + instance_config(home))
    else:
        # An instance created before the event log storage was set: add it, keep the rest.
        import yaml

        present = yaml.safe_load(config.read_text()) or {}
        if not any(key in present for key in ("storage", "run_storage", "event_log_storage", "schedule_storage")):
            with config.open("a") as out:
                out.write("\n" + instance_config(home))
        # An instance created before run retries: add them, unless set.
        if "run_retries" not in present:
            with config.open("a") as out:
                out.write("\n" + OPERATIONS_CONFIG)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
