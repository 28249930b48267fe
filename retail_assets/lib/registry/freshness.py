"""How fresh each table is expected to be (SPEC §11), derived from its registry entry.

Bronze is loaded when sources deliver, so its bound is on the clock: the Kafka stream's table
is stale when nothing reached it for `RETAIL_FRESHNESS_STREAM_HOURS` (2 h by default; a store's
stream is quiet at night, so a deployment sets it to its opening hours), a landing-zone table
when no file reached it for `RETAIL_FRESHNESS_LANDING_HOURS` (26 h: a daily delivery and two
hours' grace). Every table below Bronze is materialized by automation when its inputs update, so
its bound is on its inputs: stale when an input was updated more than
`RETAIL_FRESHNESS_LAG_MINUTES` (30 by default) ago and the table has not been materialized
since. Gold is then fresh within 30 minutes of Silver, and Silver of Bronze.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from retail_assets.lib import settings
from retail_assets.lib.registry.tables import BRONZE_POS_TRANSACTIONS, TableSpec

# The freshness check's name on every table.
FRESHNESS_CHECK = "fresh"


@dataclass(frozen=True)
class Freshness:
    """`bound`: how old the table may get; `of_inputs`: measured from its inputs' newest update
    not yet materialized (True) or from the clock (False)."""

    bound: dt.timedelta
    of_inputs: bool

    def describe(self) -> str:
        minutes = int(self.bound.total_seconds() // 60)
        span = f"{minutes // 60} h" if minutes % 60 == 0 and minutes >= 60 else f"{minutes} min"
        if self.of_inputs:
            return f"Materialized within {span} of any update of its inputs."
        return f"Materialized at least every {span}."


def expected(spec: TableSpec) -> Freshness:
    if spec.layer.started_by_sensors:
        if spec is BRONZE_POS_TRANSACTIONS:
            hours = float(settings.env("RETAIL_FRESHNESS_STREAM_HOURS", "2"))
        else:
            hours = float(settings.env("RETAIL_FRESHNESS_LANDING_HOURS", "26"))
        return Freshness(dt.timedelta(hours=hours), of_inputs=False)
    return Freshness(dt.timedelta(minutes=float(settings.env("RETAIL_FRESHNESS_LAG_MINUTES", "30"))), of_inputs=True)
