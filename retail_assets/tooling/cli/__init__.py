"""`retail-assets`: the project's command line (click).

    retail-assets demo       generate a week of data and run the whole asset graph (the main job)
    retail-assets ui         open the project in `dagster dev` on the main job's instance
    retail-assets generate   write synthetic landing files, Kafka events and a defect manifest
    retail-assets sql        query the lakehouse's tables with SQL (DuckDB over the Delta tables)
    retail-assets broker     run the local Kafka broker in the foreground
    retail-assets database   run the local PostgreSQL (the online orders and the CRM) in the foreground
    retail-assets produce    send a day's POS events to Kafka at a rate (a live stream)
    retail-assets latency    measure event → Gold latency with `dagster dev` running the sensors
    retail-assets bench      time the asset graph against a plain PySpark job
    retail-assets grants     print the Unity Catalog grants of one environment
    retail-assets provision  set up a Databricks environment: schemas, volumes, wheel, grants, masks, share

A failed preflight check or a known failure (a broker that cannot start, missing JVM artifacts)
is one line on stderr and exit code 2 (1 for a failed run); `--debug` shows the traceback.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

import click

from retail_assets.tooling.cli.commands import COMMANDS
from retail_assets.tooling.cli.instance import INSTANCE_CONFIG, dagster_home
from retail_assets.tooling.cli.preflight import Preflight

__all__ = ["INSTANCE_CONFIG", "cli", "dagster_home", "main"]


def _version() -> str:
    try:
        return metadata.version("retail-assets")
    except metadata.PackageNotFoundError:
        return "unknown"


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    epilog="\b\nStart here:\n  retail-assets demo      # the main job: a generated week through every asset\n  retail-assets ui        # then the Dagster UI on it, http://127.0.0.1:3000\n\nEach command's options: retail-assets COMMAND --help",
)
@click.version_option(_version(), "--version", prog_name="retail-assets")
@click.option(
    "--debug",
    is_flag=True,
    envvar="RETAIL_DEBUG",
    show_envvar=True,
    help="Show the full traceback when a command fails.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Retail Medallion lakehouse on Dagster: Kafka and landing files through Bronze, Silver and
    Gold Delta tables, locally and on Databricks."""
    ctx.obj = {"debug": debug}


for command in COMMANDS:
    cli.add_command(command)


def _known_failures() -> tuple[type[BaseException], ...]:
    """Failures whose message says what to do: shown as one line, without a traceback."""
    from retail_assets.lib.engine.jvm import MissingJvmArtifacts
    from retail_assets.lib.sources.database import DatabaseUnavailable
    from retail_assets.lib.sources.kafka import KafkaUnavailable, LogBehindBronze, OffsetsNotRetained

    return (
        Preflight,
        MissingJvmArtifacts,
        KafkaUnavailable,
        LogBehindBronze,
        OffsetsNotRetained,
        DatabaseUnavailable,
        FileExistsError,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = ("--debug" in args[: args.index("--")] if "--" in args else "--debug" in args) or os.environ.get(
        "RETAIL_DEBUG", ""
    ).lower() in ("1", "true", "yes")
    try:
        result = cli.main(args=args, prog_name="retail-assets", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        print("aborted: nothing was changed", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, _known_failures()):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"error: {type(exc).__name__}: {exc}\n(run `retail-assets --debug …` for the traceback)", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
