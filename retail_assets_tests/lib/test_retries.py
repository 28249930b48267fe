"""Transient failures are retried with exponential backoff and jitter, permanent ones never: a
Databricks API answering 429 then 200 succeeds on the retry, its wait in the backoff's bounds
and its reason on the retry event; a bad configuration fails at once. (The Kafka broker's outage,
through the Bronze asset's factory, is `reliability/test_broker_outage.py`.)"""

from __future__ import annotations

import random

import dagster as dg
import pytest
from databricks.sdk import errors

from retail_assets.lib.orchestration.retries import (
    RETRIES_ENV,
    Backoff,
    retried_when_transient,
    step_attempt,
    transient_reason,
)
from retail_assets.lib.sources.kafka import KafkaUnavailable


def _asset(failures: list[BaseException]):
    @dg.asset
    def flaky(context):
        with retried_when_transient(step_attempt(context), context.log, Backoff(first_wait_s=0.05)):
            if failures:
                raise failures.pop(0)
        return 1

    return flaky


def _retries(result) -> list:
    return [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_a_throttled_api_call_is_retried_after_a_backoff_and_succeeds():
    result = dg.materialize([_asset([errors.TooManyRequests("rate limit exceeded"), errors.InternalError("boom")])])
    assert result.success
    retries = _retries(result)
    assert len(retries) == 2
    first, second = (r.event_specific_data.seconds_to_wait for r in retries)
    low0, high0 = Backoff(first_wait_s=0.05).bounds(0)
    low1, high1 = Backoff(first_wait_s=0.05).bounds(1)
    assert low0 <= first <= high0 and low1 <= second <= high1
    # the reason shows on the retry event: the error that caused it
    assert "TooManyRequests: rate limit exceeded" in retries[0].event_specific_data.error.to_string()


def test_a_permanent_failure_is_never_retried():
    result = dg.materialize([_asset([ValueError("RETAIL_LATENESS_DAYS must be >= 0")])], raise_on_error=False)
    assert not result.success and _retries(result) == []
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "ValueError: RETAIL_LATENESS_DAYS must be >= 0" in failure.event_specific_data.error.to_string()


def test_retries_end_at_the_configured_number(monkeypatch):
    monkeypatch.setenv(RETRIES_ENV, "1")
    failures = [KafkaUnavailable("broker down") for _ in range(3)]

    @dg.asset
    def down(context):
        with retried_when_transient(step_attempt(context), context.log):  # the configured backoff
            raise failures.pop(0)

    result = dg.materialize([down], raise_on_error=False)
    assert not result.success and len(_retries(result)) == 1 and len(failures) == 1


@pytest.mark.parametrize(
    "exc, transient",
    [
        (KafkaUnavailable("cannot list topic"), True),
        (errors.TooManyRequests("429"), True),
        (errors.TemporarilyUnavailable("503"), True),
        (errors.PermissionDenied("no grant"), False),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (RuntimeError("org.apache.kafka.common.errors.TimeoutException: Timed out waiting"), True),
        (RuntimeError("<_InactiveRpcError StatusCode.UNAVAILABLE>"), True),
        (ValueError("bad value"), False),
        (KeyError("column"), False),
    ],
)
def test_what_counts_as_transient(exc, transient):
    assert (transient_reason(exc) is not None) == transient
    # a cause chain is followed: a permanent-looking wrapper of a transient error is transient
    try:
        raise RuntimeError("step failed") from exc
    except RuntimeError as wrapped:
        assert (transient_reason(wrapped) is not None) == transient


def test_the_backoff_grows_exponentially_with_jitter():
    backoff = Backoff(first_wait_s=2.0, factor=2.0, jitter=0.5)
    rng = random.Random(7)
    waits = [[backoff.wait(a, rng) for _ in range(200)] for a in range(3)]
    for attempt, drawn in enumerate(waits):
        low, high = backoff.bounds(attempt)
        assert low <= min(drawn) and max(drawn) <= high
        assert len(set(drawn)) > 50  # jittered, not one fixed wait
    assert sum(waits[2]) / 200 > 3 * sum(waits[0]) / 200
