"""Progress of long commands: a live display at a terminal, plain lines anywhere else.

`Progress.line` prints a permanent line (a finished run, a produced day); `Progress.status`
sets what the live display shows under those lines while work goes on: the stage, its
partitions, the steps of the current run done so far and the elapsed time. When output is not
a terminal (a CI log, a pipe) only the permanent lines are printed, as they happen.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any


class Progress:
    def __init__(self, title: str, *, live: bool | None = None, total: int | None = None, unit: str = "runs") -> None:
        self.title = title
        self.total, self.unit = total, unit
        self.done = 0
        self.live = sys.stdout.isatty() if live is None else live
        self._started = time.monotonic()
        self._what = ""
        self._steps: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._display: Any = None

    def __enter__(self) -> Progress:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._display = Live(console=Console(), refresh_per_second=4, transient=True, get_renderable=self._render)
            self._display.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._display is not None:
            self._display.stop()
            self._display = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def line(self, text: str) -> None:
        """A permanent line of output."""
        if self._display is not None:
            self._display.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def status(self, what: str, *, steps: tuple[int, int] | None = None) -> None:
        """What is being worked on now (shown live only)."""
        with self._lock:
            self._what, self._steps = what, steps

    def step(self, done: int, total: int) -> None:
        with self._lock:
            self._steps = (done, total)

    def advance(self) -> None:
        with self._lock:
            self.done += 1
            self._steps = None

    def _render(self) -> Any:
        from rich.text import Text

        with self._lock:
            what, steps, done = self._what, self._steps, self.done
        minutes, seconds = divmod(int(self.elapsed), 60)
        parts = [f"{self.title}", f"{done}/{self.total} {self.unit}" if self.total else f"{done} {self.unit}"]
        if what:
            parts.append(what)
        if steps is not None:
            parts.append(f"steps {steps[0]}/{steps[1]}")
        parts.append(f"{minutes}:{seconds:02d}")
        spinner = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"[int(self.elapsed * 8) % 10]
        return Text(f"{spinner} " + "  ·  ".join(parts), style="bold", no_wrap=True, overflow="ellipsis")


def step_counter(progress: Progress, total: int) -> Callable[[Any], None]:
    """An event listener (`DagsterInstance.add_event_listener`) counting a run's finished steps."""
    from dagster import DagsterEventType

    finished = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_SKIPPED}
    count = [0]

    def listen(entry: Any) -> None:
        event = entry.dagster_event
        if event is not None and event.event_type in finished:
            count[0] += 1
            progress.step(count[0], total)

    return listen
