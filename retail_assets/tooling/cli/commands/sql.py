"""SQL access for analysts (`sql`): DuckDB over the lakehouse's Delta tables, one statement from
the command line (`-e`), a script on stdin, or an interactive shell."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from retail_assets.tooling.cli import preflight
from retail_assets.tooling.cli.commands.options import data_root_option, example

HELP = """\
Statements end with `;` and may span lines. Tables are `layer.table` (gold, silver, bronze,
quarantine); the current schema (the prompt) needs no prefix: `USE silver;` changes it.
  .tables        (\\dt)       every table with what it reads and its rows
  .schema TABLE  (\\d TABLE)  a table's columns, types and descriptions
  .refresh       (\\refresh)  read the commits made since the shell opened
  .help          (\\?)        this text
  .quit          (\\q)        leave (or Ctrl-D)"""

QUIT = "quit"


@click.command(
    "sql",
    short_help="Query the lakehouse's tables with SQL (DuckDB over the Delta tables).",
    epilog=example(
        'retail-assets sql -e "SELECT event_date, sum(net_amount) FROM gold.fact_sales GROUP BY 1 ORDER BY 1"',
        "retail-assets sql                               # an interactive shell: .tables, .schema TABLE, .quit",
        'echo "SELECT count(*) FROM gold.dim_store_current;" | retail-assets sql --format csv',
    ),
)
@data_root_option("Data root whose lakehouse (its lakehouse/ folder) the SQL reads.")
@click.option(
    "-e",
    "--execute",
    "statements",
    multiple=True,
    metavar="SQL",
    help="Run these `;`-separated statements (the option may repeat), print their results and exit; "
    "the first that fails stops with exit code 1.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="How results are printed: an aligned text table, CSV with a header, or a JSON array of objects.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Rows a text table shows at most (0: all); csv and json print every row.",
)
def sql_command(data_root: Path, statements: tuple[str, ...], fmt: str, max_rows: int) -> int:
    """Query the lakehouse with SQL: DuckDB in memory over the Delta tables (read through delta-rs,
    no JVM), named `gold.fact_sales`, `silver.customers`, …; the serving shapes the delta-spark
    engine keeps as catalog views are views here too.

    Each table is read at its latest committed version when the command starts: every query sees
    those versions (`.refresh` in the shell reads newer commits). Without -e, statements come from
    stdin: an interactive shell at a terminal (with history), a script otherwise."""
    preflight.run_checks([preflight.modules("local", "duckdb", "deltalake")])
    from retail_assets.tooling.sql import SqlEndpoint, has_gold, lakehouse_root

    lakehouse = lakehouse_root(Path(data_root))
    if not has_gold(lakehouse):
        raise preflight.Preflight(
            f"no Gold table under {lakehouse}: build a lakehouse with `retail-assets demo`, "
            "or pass --data-root with the data root of one"
        )
    endpoint = SqlEndpoint(lakehouse)
    try:
        for key, why in sorted(endpoint.unreadable.items()):
            print(f"note: {key} left out, delta-rs cannot read it: {why}", file=sys.stderr)
        if statements:
            return _execute(endpoint, statements, fmt, max_rows)
        interactive = sys.stdin.isatty()
        if interactive:
            print(
                f"retail-assets sql: {len(endpoint.attached)} tables of {lakehouse}, "
                "each at its latest version now (.refresh reads newer commits); .help lists the commands",
                flush=True,
            )
        return _shell(endpoint, fmt, max_rows, interactive, Path(data_root).resolve() / "sql_history")
    finally:
        endpoint.close()


def _execute(endpoint, statements: tuple[str, ...], fmt: str, max_rows: int) -> int:
    from retail_assets.tooling.sql import all_statements

    for text in statements:
        if text.strip().startswith((".", "\\")):
            if not _command(endpoint, text.strip(), fmt, max_rows):
                return 1
            continue
        for statement in all_statements(text):
            if not _run(endpoint, statement, fmt, max_rows):
                return 1
    return 0


def _run(endpoint, statement: str, fmt: str, max_rows: int) -> bool:
    """Run one statement and print its result, or its error as one line on stderr."""
    from retail_assets.tooling.sql import SqlError, render

    try:
        result = endpoint.run(statement)
    except SqlError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return False
    if result.columns and not result.quiet:
        print(render(result, fmt, max_rows), flush=True)
    return True


def _command(endpoint, line: str, fmt: str, max_rows: int) -> bool | str:
    """A shell command (`.tables`, `\\d TABLE`, …): True when it worked, QUIT to leave."""
    from retail_assets.tooling.sql import SqlError, render

    name, _, argument = line.rstrip(";").partition(" ")
    argument = argument.strip()
    try:
        if name in (".quit", ".exit", "\\q"):
            return QUIT
        if name in (".help", "\\?", "\\h"):
            print(HELP)
        elif name in (".tables", "\\dt") or (name == "\\d" and not argument):
            print(render(endpoint.listing(), fmt, 0), flush=True)
        elif name in (".schema", "\\d"):
            if not argument:
                print("error: .schema needs a table: .schema gold.fact_sales", file=sys.stderr)
                return False
            print(render(endpoint.describe(argument), fmt, 0), flush=True)
        elif name in (".refresh", "\\refresh"):
            endpoint.refresh()
            print(f"read the latest versions of {len(endpoint.attached)} tables", flush=True)
        else:
            print(f"error: unknown command {name} (.help lists them)", file=sys.stderr, flush=True)
            return False
    except SqlError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return False
    return True


def _shell(endpoint, fmt: str, max_rows: int, interactive: bool, history: Path) -> int:
    """Statements from stdin until `.quit` or its end. At a terminal: prompts, history, and an
    error leaves the shell open; from a script the exit code is 1 when any statement failed."""
    from retail_assets.tooling.sql import all_statements, split_statements

    save_history = _readline(history) if interactive else None
    failed = False
    buffer = ""
    try:
        while True:
            if interactive:
                schema = endpoint.current_schema()
                prompt = f"{schema}> " if not buffer.strip() else "...> ".rjust(len(schema) + 2)
                try:
                    line = input(prompt)
                except EOFError:
                    print()
                    break
                except KeyboardInterrupt:
                    print()
                    buffer = ""
                    continue
            else:
                line = sys.stdin.readline()
                if not line:
                    break
                line = line.rstrip("\n")
            if not buffer.strip() and line.strip().startswith((".", "\\")):
                outcome = _command(endpoint, line.strip(), fmt, max_rows)
                if outcome == QUIT:
                    break
                failed |= not outcome
                continue
            statements, buffer = split_statements(buffer + line + "\n")
            for statement in statements:
                try:
                    failed |= not _run(endpoint, statement, fmt, max_rows)
                except KeyboardInterrupt:
                    if not interactive:
                        raise
                    print("interrupted", file=sys.stderr)
        if not interactive:  # a script's last statement may lack its `;`
            for statement in all_statements(buffer):
                failed |= not _run(endpoint, statement, fmt, max_rows)
    finally:
        if save_history:
            save_history()
    return 1 if failed and not interactive else 0


def _readline(history: Path):
    """Line editing and a history kept in the data root, where readline exists; returns what
    saves the history."""
    try:
        import readline
    except ImportError:
        return None
    try:
        readline.read_history_file(history)
    except OSError:
        pass
    readline.set_history_length(1000)

    def save() -> None:
        try:
            readline.write_history_file(history)
        except OSError:
            pass

    return save
