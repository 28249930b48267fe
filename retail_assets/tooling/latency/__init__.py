"""Event → Gold latency with the real daemon: how long after a batch of POS events is produced
do all of its transactions appear in `gold.fact_sales`, with nobody clicking anything, and where
those seconds go.

Starts the project as a user does (`retail-assets ui`: broker + `dagster dev` with sensors on),
lands the day's reference data as files, then sends batches of events at a fixed interval and
watches Gold. Sensor intervals and thresholds are the project's defaults.

Once every batch is in Gold (or the wait gave up) and `dagster dev` has stopped, the instance's
own records say where each batch's seconds went (`breakdown`): the Kafka sensor's ticks, the
stream-lane run that carried the batch (the first whose Bronze step read every one of the
batch's offsets) and that run's events, from its creation through the queue, the launch and its
steps to the `gold/fact_sales` materialization, then the poller's look.
`records.py` holds what was sent and what the instance recorded, `breakdown.py` attributes each
batch's seconds to phases, `measure.py` runs the measurement.
"""

from retail_assets.tooling.latency.breakdown import (
    BY_READ,
    BY_TAG,
    BY_TIMING,
    PHASES,
    attribute,
    breakdown,
    describe,
    find_carrier,
)
from retail_assets.tooling.latency.measure import gold_transactions, measure_latency, placed_offsets
from retail_assets.tooling.latency.records import (
    Batch,
    LaneHistory,
    LaneRun,
    LatencyReport,
    StepTimes,
    Tick,
    batch_from_entry,
    offsets_label,
    parse_ranges,
    read_lane_history,
)

__all__ = [
    "BY_READ",
    "BY_TAG",
    "BY_TIMING",
    "PHASES",
    "Batch",
    "LaneHistory",
    "LaneRun",
    "LatencyReport",
    "StepTimes",
    "Tick",
    "attribute",
    "batch_from_entry",
    "breakdown",
    "describe",
    "find_carrier",
    "gold_transactions",
    "measure_latency",
    "offsets_label",
    "parse_ranges",
    "placed_offsets",
    "read_lane_history",
]
