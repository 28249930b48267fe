"""Transient failures are retried with exponential backoff and jitter; permanent ones never.

Every table, serving-shape and check step runs its body inside `retried_when_transient`, and
the Databricks step launcher its launch: an exception whose cause chain holds a transient
failure becomes `dg.RetryRequested` after a wait of `Backoff.wait(attempt)`; anything else (bad
configuration, bad data, a bug, a failed blocking check, which Dagster raises after the step's
body) propagates unchanged and fails the step at once. Dagster's `RetryPolicy` is not used here:
it retries every exception, permanent ones included. A retry shows in the UI as the step's
"up for retry" event, its error the transient failure (the reason), with the wait.

Transient: the Kafka broker unreachable (`KafkaUnavailable`, Kafka's own retriable errors and
Spark's Kafka timeouts), the operational database unreachable or slow to answer
(`DatabaseUnavailable`, a fence outwaited by a long transaction, the JDBC driver's connection
failures through Spark), the Databricks REST API answering 429 or 5xx (or not answering), a
connection refused, reset or timed out, and Spark Connect's server unavailable. A run whose
worker was killed is retried as a run, by the instance (`run_retries` in its `dagster.yaml`).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import dagster as dg
from databricks.sdk import errors

from retail_assets.lib.sources.database import DatabaseUnavailable
from retail_assets.lib.sources.kafka import KafkaUnavailable


@dataclass(frozen=True)
class Backoff:
    """Wait `first_wait_s` × `factor`^attempt, ± `jitter` of it, at most `max_retries` times."""

    max_retries: int = 4
    first_wait_s: float = 2.0
    factor: float = 2.0
    jitter: float = 0.5

    def wait(self, attempt: int, rng: random.Random | None = None) -> float:
        base = self.first_wait_s * self.factor**attempt
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return round(base * (1 + spread), 2)

    def bounds(self, attempt: int) -> tuple[float, float]:
        base = self.first_wait_s * self.factor**attempt
        return base * (1 - self.jitter), base * (1 + self.jitter)


TRANSIENT_BACKOFF = Backoff()
RETRIES_ENV = "RETAIL_STEP_RETRIES"


def configured_backoff() -> Backoff:
    """The backoff, with `RETAIL_STEP_RETRIES` (read when a step fails) as its number of retries:
    0 lets a transient failure fail the step at once."""
    value = os.environ.get(RETRIES_ENV, "")
    return replace(TRANSIENT_BACKOFF, max_retries=int(value)) if value.strip() else TRANSIENT_BACKOFF


# HTTP statuses a retry can outlive: throttling and the server's own failures.
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
# Failures that reach Python as a message only (a JVM exception through Spark, a gRPC status).
_TRANSIENT_MESSAGES = re.compile(
    r"org\.apache\.kafka\.common\.errors\.(TimeoutException|NetworkException|DisconnectException)"
    r"|StatusCode\.UNAVAILABLE|Connection refused|Connection reset by peer|Broker may not be available"
    # the PostgreSQL JDBC driver (Spark's JDBC source): the server unreachable or gone mid-read
    r"|org\.postgresql\.util\.PSQLException: (Connection to \S+ refused|The connection attempt failed"
    r"|An I/O error occurred while sending to the backend)"
)


def _databricks_transient(exc: BaseException) -> str | None:
    transient = (
        errors.TooManyRequests,
        errors.RequestLimitExceeded,
        errors.TemporarilyUnavailable,
        errors.InternalError,
        errors.DeadlineExceeded,
    )
    if isinstance(exc, transient):
        return f"the Databricks API answered {type(exc).__name__}"
    if isinstance(exc, errors.DatabricksError):
        status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
        if status in _TRANSIENT_STATUS:
            return f"the Databricks API answered HTTP {status}"
    return None


def transient_reason(exc: BaseException) -> str | None:
    """Why `exc` (or an exception it was raised from) is worth retrying; None if it is not."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, KafkaUnavailable):
            return f"Kafka unavailable: {current}"
        if isinstance(current, DatabaseUnavailable):
            return f"database unavailable: {current}"
        if hasattr(current, "args") and current.args and hasattr(current.args[0], "retriable"):
            error = current.args[0]  # confluent_kafka.KafkaException(KafkaError)
            if error.retriable():
                return f"Kafka: {error.str()}"
        reason = _databricks_transient(current)
        if reason:
            return reason
        if isinstance(current, (ConnectionError, TimeoutError)):
            return f"{type(current).__name__}: {current}"
        found = _TRANSIENT_MESSAGES.search(str(current))
        if found:
            return f"{type(current).__name__}: {found.group(0)}"
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def retried_when_transient(
    attempt: int, log: dg.DagsterLogManager | None = None, backoff: Backoff | None = None
) -> Iterator[None]:
    """Run a step's body: a transient failure asks Dagster to retry the step after the backoff's
    wait for this `attempt` (0 for the first run of the step); any other failure propagates."""
    try:
        yield
    except (dg.Failure, dg.RetryRequested):
        raise  # already decided: a permanent failure, or a retry someone asked for
    except Exception as exc:
        reason = transient_reason(exc)
        if reason is None:
            raise
        backoff = backoff or configured_backoff()
        if attempt >= backoff.max_retries:
            raise  # the last attempt fails with the transient error itself
        wait = backoff.wait(attempt)
        if log is not None:
            log.warning(f"transient failure ({reason}); retry {attempt + 1} of {backoff.max_retries} in {wait:.1f} s")
        raise dg.RetryRequested(max_retries=backoff.max_retries, seconds_to_wait=wait) from exc


def step_attempt(context) -> int:
    """The step's attempt number (0 first) from an asset's or a check's context."""
    op_context = getattr(context, "op_execution_context", context)
    return op_context.retry_number
