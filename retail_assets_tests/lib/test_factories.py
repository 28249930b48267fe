"""Factory helpers that need no Spark: checks evaluated side by side."""

from __future__ import annotations

import threading
import time

import pytest

from retail_assets.lib.orchestration.factories import CHECK_THREADS, side_by_side


def test_checks_side_by_side_keep_their_order_and_overlap():
    running, peak, lock = [0], [0], threading.Lock()

    def evaluate(n: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05 * (5 - n))  # the first checks finish last
        with lock:
            running[0] -= 1
        return n * 10

    assert side_by_side(evaluate, [0, 1, 2, 3, 4]) == [0, 10, 20, 30, 40]
    assert peak[0] == CHECK_THREADS


def test_a_failing_check_fails_the_step():
    def evaluate(n: int) -> int:
        if n == 1:
            raise ValueError("table unreadable")
        return n

    with pytest.raises(ValueError, match="table unreadable"):
        side_by_side(evaluate, [0, 1, 2])
