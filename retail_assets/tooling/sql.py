"""SQL over the local lakehouse for analysts: DuckDB in memory over the Delta tables.

Every registry table found under the lakehouse root (`<root>/<layer>/<table>`) is read through
delta-rs (`DeltaTable.to_pyarrow_dataset()`, registered in DuckDB: no DuckDB extension is
involved) and named `<layer>.<table>`, in the schemas bronze, quarantine, silver and gold. A
serving shape that the delta-spark engine keeps as a catalog view (no folder on disk) is created
here as a DuckDB view of its registry SELECT over the tables it reads; where the delta-rs engine
wrote it as a Delta table, that table is read.

Snapshots: each table is read at the latest version committed when the endpoint opens. Every
query of a session sees those versions, however many commits land meanwhile, so two queries of
a session agree with each other; `SqlEndpoint.refresh()` (the shell's `.refresh`) or a new
endpoint reads the commits made since.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from retail_assets.lib.registry.tables import TABLES, Layer, TableSpec, serving_shapes

SCHEMAS = tuple(layer.value for layer in Layer)
DEFAULT_SCHEMA = Layer.GOLD.value
FORMATS = ("table", "csv", "json")


class SqlError(Exception):
    """A statement failed: the message is DuckDB's first line (what went wrong, not where)."""


@dataclass(frozen=True)
class Attached:
    """A registry table the endpoint serves, and the Delta version it reads."""

    spec: TableSpec
    version: int | None  # None: a view computed here from the tables it reads

    @property
    def kind(self) -> str:
        return "view" if self.version is None else f"delta v{self.version}"


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple]

    @property
    def quiet(self) -> bool:
        """A statement with nothing to show (SET, USE): DuckDB answers a lone `Success` column."""
        return not self.rows and self.columns == ["Success"]


def lakehouse_root(data_root: Path) -> Path:
    """The lakehouse of a data root, `<data root>/lakehouse`; a folder that holds layer folders
    itself is taken as the lakehouse."""
    root = Path(data_root).resolve()
    if not (root / "lakehouse").is_dir() and any((root / schema).is_dir() for schema in SCHEMAS):
        return root
    return root / "lakehouse"


def _folder(lakehouse: Path, spec: TableSpec) -> Path:
    return Path(lakehouse) / spec.layer.value / spec.name


def has_gold(lakehouse: Path, tables: tuple[TableSpec, ...] = TABLES) -> bool:
    """Whether any Gold table has been committed under the lakehouse root."""
    return any(t.layer is Layer.GOLD and DeltaTable.is_deltatable(str(_folder(lakehouse, t))) for t in tables)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _quoted(key: str) -> str:
    return ".".join(f'"{part}"' for part in key.split("."))


class SqlEndpoint:
    """An in-memory DuckDB over one lakehouse's Delta tables (see the module's docstring)."""

    def __init__(self, lakehouse: Path, tables: tuple[TableSpec, ...] = TABLES) -> None:
        self.lakehouse = Path(lakehouse)
        self._specs = tables
        self.attached: dict[str, Attached] = {}
        self.unreadable: dict[str, str] = {}  # table -> why delta-rs could not read it
        self.connection = duckdb.connect(":memory:")
        # Delta keeps timestamps as UTC instants: show them in UTC, as Spark reads them back.
        self.connection.execute("SET TimeZone = 'UTC'")
        for schema in SCHEMAS:
            self.connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        self.refresh()
        if any(a.spec.layer is Layer.GOLD for a in self.attached.values()):
            self.connection.execute(f'USE "{DEFAULT_SCHEMA}"')

    def refresh(self) -> None:
        """Read every table at its latest committed version (tables new since are added, tables
        deleted since are dropped)."""
        attached: dict[str, Attached] = {}
        unreadable: dict[str, str] = {}
        for spec in self._specs:
            folder = _folder(self.lakehouse, spec)
            if not DeltaTable.is_deltatable(str(folder)):
                continue
            try:
                table = DeltaTable(str(folder))
                dataset = table.to_pyarrow_dataset()
            except (DeltaError, OSError, ValueError) as exc:  # a reader feature delta-rs lacks: say so
                unreadable[spec.key] = _one_line(exc)
                continue
            self.connection.register(_scan_name(spec), dataset)
            self.connection.execute(
                f"CREATE OR REPLACE VIEW {_quoted(spec.key)} AS SELECT * FROM temp.main.{_scan_name(spec)}"
            )
            attached[spec.key] = Attached(spec, table.version())
        for spec in serving_shapes(self._specs):
            if spec.key in attached or not all(t.key in attached for t in spec.view.reads):
                continue
            self.connection.execute(f"CREATE OR REPLACE VIEW {_quoted(spec.key)} AS {view_sql(spec)}")
            attached[spec.key] = Attached(spec, None)
        for key in self.attached.keys() - attached.keys():
            self.connection.execute(f"DROP VIEW IF EXISTS {_quoted(key)}")
            if self.attached[key].version is not None:
                self.connection.unregister(_scan_name(self.attached[key].spec))
        self.attached, self.unreadable = attached, unreadable

    def run(self, statement: str) -> Result:
        try:
            cursor = self.connection.execute(statement)
            if cursor.description is None:
                return Result([], [])
            columns = [d[0] for d in cursor.description]
            return Result(columns, cursor.fetchall())
        except duckdb.Error as exc:
            raise SqlError(_one_line(exc)) from None

    def current_schema(self) -> str:
        return self.connection.execute("SELECT current_schema()").fetchone()[0]

    def listing(self) -> Result:
        """Every table served, what it reads and its rows."""
        rows = []
        for key, table in sorted(self.attached.items(), key=lambda kv: (SCHEMAS.index(kv[1].spec.layer.value), kv[0])):
            count = self.run(f"SELECT count(*) FROM {_quoted(key)}").rows[0][0]
            rows.append((key, table.kind, count))
        return Result(["table", "reads", "rows"], rows)

    def resolve(self, name: str) -> str | None:
        """The served table a name means: `layer.table`, or a table name in the current schema
        or in exactly one layer."""
        name = name.strip().strip(";").replace('"', "").lower()
        if name in self.attached:
            return name
        if f"{self.current_schema()}.{name}" in self.attached:
            return f"{self.current_schema()}.{name}"
        matches = [key for key, t in self.attached.items() if t.spec.name == name]
        return matches[0] if len(matches) == 1 else None

    def describe(self, name: str) -> Result:
        """A table's columns with their types and the registry's descriptions."""
        key = self.resolve(name)
        described = self.run(f"DESCRIBE {_quoted(key) if key else name}")
        registry = {c.name: c for c in self.attached[key].spec.columns} if key else {}
        rows = []
        for column, type_, null, *_ in described.rows:
            known = registry.get(column)
            nullable = known.nullable if known else null != "NO"
            rows.append((column, type_, "yes" if nullable else "no", known.description if known else ""))
        return Result(["column", "type", "nullable", "description"], rows)

    def close(self) -> None:
        self.connection.close()


def _scan_name(spec: TableSpec) -> str:
    """The temporary DuckDB name of a table's Arrow dataset, behind its `layer.table` view."""
    return f"_delta_{spec.layer.value}_{spec.name}"


def view_sql(spec: TableSpec) -> str:
    """A serving shape's registry SELECT in DuckDB's dialect: each table it reads named
    `layer.table`, Spark's backtick identifiers in double quotes."""
    assert spec.view is not None
    return spec.view.sql({t.name: t.key for t in spec.view.reads}).replace("`", '"')


def split_statements(text: str) -> tuple[list[str], str]:
    """The complete (`;`-terminated) statements in `text` and what follows the last of them.
    A `;` inside a quoted string, a quoted name or a comment ends nothing; statements that are
    only comments are dropped."""
    statements: list[str] = []
    start = i = 0
    content = False  # anything but comments and blanks since `start`
    while i < len(text):
        c = text[i]
        if c in "'\"":
            end = text.find(c, i + 1)
            if end < 0:
                break
            content, i = True, end + 1
            continue
        if text.startswith("--", i) or text.startswith("/*", i):
            closer = "\n" if c == "-" else "*/"
            end = text.find(closer, i + 2)
            if end < 0:
                break
            i = end + len(closer)
            continue
        if c == ";":
            if content:
                statements.append(text[start:i].strip())
            start, content = i + 1, False
        elif not c.isspace():
            content = True
        i += 1
    return statements, text[start:]


def all_statements(text: str) -> list[str]:
    """Every statement in `text`, the last one with or without its `;`."""
    statements, rest = split_statements(text)
    tail, _ = split_statements(rest + "\n;")
    return statements + tail


def _text(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return str(value)


def _json(value: object) -> str:
    """JSON text of a value; decimals stay exact numbers, dates and times are ISO strings."""
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(str(value))
    if isinstance(value, (dt.date, dt.time)):
        return json.dumps(value.isoformat())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bytes):
        return json.dumps(value.hex())
    try:
        return json.dumps(value)
    except TypeError:
        return json.dumps(str(value))


def _numeric(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def render(result: Result, fmt: str = "table", max_rows: int = 0) -> str:
    """A result as an aligned text table, CSV (with a header) or a JSON array of objects;
    `max_rows` (0: all) bounds the rows a table shows."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([["" if v is None else _text(v) for v in row] for row in result.rows])
        return out.getvalue().rstrip("\n")
    if fmt == "json":
        objects = [
            "{" + ", ".join(f"{json.dumps(c)}: {_json(v)}" for c, v in zip(result.columns, row, strict=True)) + "}"
            for row in result.rows
        ]
        return "[" + ",\n ".join(objects) + "]"
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    shown = result.rows[:max_rows] if max_rows else result.rows
    cells = [[_text(v) for v in row] for row in shown]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(result.columns)]
    right = [any(_numeric(row[i]) for row in shown) for i in range(len(result.columns))]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ).rstrip()

    lines = [line(result.columns), "  ".join("-" * w for w in widths)]
    lines += [line(row) for row in cells]
    count = len(result.rows)
    footer = f"({count} row{'' if count == 1 else 's'}"
    if len(shown) < count:
        footer += f", the first {len(shown)} shown: --max-rows 0 shows all"
    return "\n".join([*lines, footer + ")"])
