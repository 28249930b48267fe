"""When the operational database's changes are worth a Bronze run, as a plain function.

The batch a run would take is `(max change_id committed in Bronze, newest change_id now]`; its
run key is derived from that range, so the same batch is requested once. The cursor only
remembers the key of the last request: a batch whose run ended without committing it (failed,
canceled) is requested again under a new key, a batch whose run committed is never repeated
(Bronze's mark has moved past it), and nothing is requested while any extraction is unfinished.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from retail_assets.lib.sources.database import ChangeRange

RETRY_MARK = ":retry@"
# Run statuses of a run that has ended.
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


@dataclass
class DatabaseCursor:
    """What the database sensor remembers between ticks: the run key of its last request."""

    last_run_key: str | None = None

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str | None) -> DatabaseCursor:
        return cls(**json.loads(text)) if text else cls()


@dataclass(frozen=True)
class DatabaseDecision:
    request: bool
    reason: str
    batch: ChangeRange | None
    run_key: str | None
    cursor: DatabaseCursor


def batch_run_key(table: str, batch: ChangeRange) -> str:
    return f"database:{table}:{batch}"


def base_key(run_key: str | None) -> str | None:
    return None if run_key is None else run_key.split(RETRY_MARK)[0]


def decide_database_run(
    *,
    table: str,
    source_max: int,
    committed: int,
    cursor: DatabaseCursor,
    now: float,
    requested_status: str | None,
    in_flight: str | None,
) -> DatabaseDecision:
    """Whether the changes of `table` (e.g. `orders.changes`) Bronze does not hold yet need a run.

    `requested_status` is the status of the newest run already requested for this batch (under
    its key or the cursor's retry of it), None if there is none; `in_flight` names an unfinished
    run writing the Bronze table, if any (this sensor's or anyone's).
    """
    keep = DatabaseCursor(cursor.last_run_key)
    if source_max < committed:
        return DatabaseDecision(
            False,
            f"{table} ends at change_id {source_max} but Bronze holds changes up to {committed}: the change table was "
            "recreated or this is another database; nothing is requested (a run would refuse it)",
            None,
            None,
            keep,
        )
    if source_max == committed:
        return DatabaseDecision(
            False, f"Bronze holds every change of {table} (up to change_id {committed})", None, None, keep
        )
    batch = ChangeRange(committed, source_max)
    pending = f"changes {batch} of {table} pending"
    if in_flight is not None:
        return DatabaseDecision(False, f"{pending}; waiting for {in_flight}", batch, None, keep)
    run_key = batch_run_key(table, batch)
    if requested_status is not None and requested_status not in FINISHED:
        return DatabaseDecision(False, f"{pending}; its run is {requested_status.lower()}", batch, None, keep)
    reason = f"{pending}: Bronze's high-water mark is {committed}, the database's newest change {source_max}"
    if requested_status is not None:
        # That run ended without committing the batch (Bronze's mark has not moved): ask again
        # under a new key, since a run key never repeats a request.
        run_key = f"{run_key}{RETRY_MARK}{int(now)}"
        reason += f"; its earlier run ended {requested_status.lower()} without it"
    return DatabaseDecision(True, reason, batch, run_key, DatabaseCursor(run_key))
