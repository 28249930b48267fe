"""What the commands share: default ports and presets, the data-root option, examples in help."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from retail_assets.lib import settings

KAFKA_PORT = 19092

DATABASE_PORT = 55432  # `retail-assets database`: beside, not on, a system PostgreSQL's 5432


WEBSERVER_PORT = 3000  # `dagster dev`'s default


PRESETS = ["tiny", "small", "medium"]


GENERATED = ("landing", "lakehouse", "kafka", "postgres", "manifest.json")  # what `demo` replaces in a data root


def example(*lines: str) -> str:
    """An epilog showing how a command is used (`\b` keeps click from rewrapping it)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def data_root_option(help_text: str):
    return click.option(
        "--data-root",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="RETAIL_DATA_ROOT",
        show_envvar=True,
        default=lambda: str(settings.local_data_root()),
        show_default="./.lakehouse",
        help=help_text,
    )


def _ctrl_c_delivered() -> None:
    """Ctrl-C stops a foreground command even when it was started with SIGINT ignored (a
    script's background job, a harness that ignores it): the signal is taken back, and the
    processes the command starts inherit the default disposition too."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _signals_unwind() -> None:
    """Ctrl-C (`_ctrl_c_delivered`) and SIGTERM unwind a foreground command, so the servers it
    started are stopped with it."""
    _ctrl_c_delivered()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _port_argument(args: list[str]) -> int | None:
    """The webserver port among `dagster dev` arguments (`-p N`, `--port N`, `--port=N`)."""
    for i, arg in enumerate(args):
        if arg in ("-p", "--port") and i + 1 < len(args) and args[i + 1].isdigit():
            return int(args[i + 1])
        if arg.startswith("--port=") and arg[7:].isdigit():
            return int(arg[7:])
    return None
