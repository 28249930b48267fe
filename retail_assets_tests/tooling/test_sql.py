"""SQL access for analysts: `retail-assets sql` answers over a real lakehouse's Delta tables.

The lakehouse is small and written without Spark: registry-shaped Delta tables committed with
delta-rs under `<data root>/lakehouse/<layer>/<table>`, as the engines lay them out. Every query
goes through the installed console script in a subprocess; the figures it prints are compared
with what delta-rs reads from the same tables.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

from retail_assets.lib.registry.tables import (
    GOLD_DIM_CUSTOMER,
    GOLD_DIM_CUSTOMER_CURRENT,
    GOLD_FACT_SALES,
    SILVER_STORES,
    TableSpec,
    serving_shapes,
)
from retail_assets.tooling.sql import SqlEndpoint, all_statements, split_statements

DAY = dt.date(2026, 11, 2)
NOON = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)
FILLERS = {"string": "x", "int": 0, "bigint": 0, "double": 0.0, "boolean": False, "date": DAY, "timestamp": NOON}


def row(spec: TableSpec, **values) -> dict:
    """A row of a registry table: the values given, a filler in every other required column."""
    out = {}
    for c in spec.columns:
        if c.name in values:
            out[c.name] = values[c.name]
        elif c.nullable:
            out[c.name] = None
        elif c.type.startswith("decimal"):
            out[c.name] = Decimal(0)
        elif c.type.startswith("array"):
            out[c.name] = []
        else:
            out[c.name] = FILLERS[c.type]
    return out


def write(lakehouse: Path, spec: TableSpec, rows: list[dict], mode: str = "append") -> Path:
    path = lakehouse / spec.layer.value / spec.name
    write_deltalake(str(path), pa.Table.from_pylist(rows, schema=spec.arrow_schema()), mode=mode)
    return path


def sales(day: dt.date, lines: int, first: int = 0) -> list[dict]:
    return [
        row(
            GOLD_FACT_SALES,
            transaction_id=f"T{first + i:04d}",
            line_number=1,
            line_type="return" if i % 5 == 4 else "sale",
            event_date=day,
            date_sk=int(day.strftime("%Y%m%d")),
            quantity=-1 if i % 5 == 4 else i % 3 + 1,
            net_amount=Decimal(f"{'-' if i % 5 == 4 else ''}{i * 3 + 1}.25"),
            quality_flags=["unknown_product"] if i == 2 else [],
        )
        for i in range(lines)
    ]


def build_lakehouse(data_root: Path) -> Path:
    """Two days of the sales fact (two commits), a customer dimension with history, and one
    Silver table; no folder for any serving shape (as the delta-spark engine leaves them)."""
    lakehouse = data_root / "lakehouse"
    write(lakehouse, GOLD_FACT_SALES, sales(DAY, 7))
    write(lakehouse, GOLD_FACT_SALES, sales(DAY + dt.timedelta(days=1), 5, first=100))
    customers = [
        row(GOLD_DIM_CUSTOMER, customer_sk=11, customer_id="C1", loyalty_tier="silver", is_current=False, version=1),
        row(GOLD_DIM_CUSTOMER, customer_sk=12, customer_id="C1", loyalty_tier="gold", is_current=True, version=2),
        row(GOLD_DIM_CUSTOMER, customer_sk=21, customer_id="C2", loyalty_tier="none", is_current=True, version=1),
    ]
    write(lakehouse, GOLD_DIM_CUSTOMER, customers)
    write(lakehouse, SILVER_STORES, [row(SILVER_STORES, store_id=f"S{i}") for i in range(3)])
    return lakehouse


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sql")
    build_lakehouse(root)
    return root


def retail_sql(data_root: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """`retail-assets sql` through the installed console script, as an analyst runs it."""
    script = str(Path(sys.executable).with_name("retail-assets"))
    return subprocess.run(
        [script, "sql", "--data-root", str(data_root), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def json_documents(text: str) -> list:
    """The JSON documents printed one after another (one per statement), decimals exact."""
    decoder, documents, at = json.JSONDecoder(parse_float=Decimal), [], 0
    text = text.strip()
    while at < len(text):
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
        at = len(text) - len(text[at:].lstrip())
    return documents


def test_a_query_over_fact_sales_answers_what_delta_holds(data_root):
    fact = DeltaTable(str(data_root / "lakehouse" / "gold" / "fact_sales")).to_pyarrow_table()
    query = "SELECT count(*) AS lines, sum(net_amount) AS net, sum(quantity) AS units FROM gold.fact_sales"
    done = retail_sql(data_root, "-e", query, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert read_csv(done.stdout) == [
        {
            "lines": str(fact.num_rows),
            "net": str(pc.sum(fact["net_amount"]).as_py()),
            "units": str(pc.sum(fact["quantity"]).as_py()),
        }
    ]
    assert fact.num_rows == 12  # both commits: the latest version
    # --data-root may name the lakehouse folder itself
    done = retail_sql(data_root / "lakehouse", "-e", "SELECT count(*) AS lines FROM gold.fact_sales", "--format", "csv")
    assert (done.returncode, done.stdout) == (0, "lines\n12\n"), done.stderr

    # Gold is the current schema; JSON keeps decimals exact and dates ISO; statements run in order.
    done = retail_sql(
        data_root,
        "-e",
        "SELECT event_date, count(*) AS n, sum(net_amount) AS net FROM fact_sales GROUP BY 1 ORDER BY 1;"
        "SELECT count(*) AS flagged FROM fact_sales WHERE list_contains(quality_flags, 'unknown_product')",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    by_day, flagged = json_documents(done.stdout)
    days = fact.group_by("event_date").aggregate([("net_amount", "sum"), ("net_amount", "count")]).sort_by("event_date")
    assert by_day == [
        {"event_date": r["event_date"].isoformat(), "n": r["net_amount_count"], "net": r["net_amount_sum"]}
        for r in days.to_pylist()
    ]
    assert flagged == [{"flagged": 2}]

    # The default: an aligned text table with a row count.
    done = retail_sql(data_root, "-e", "SELECT line_type, count(*) AS n FROM gold.fact_sales GROUP BY 1 ORDER BY 1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["line_type   n", "---------  --", "return      2", "sale       10", "(2 rows)"]


def test_a_serving_shape_with_no_folder_is_its_registry_select(data_root):
    assert not (data_root / "lakehouse" / "gold" / GOLD_DIM_CUSTOMER_CURRENT.name).exists()
    done = retail_sql(
        data_root, "-e", "SELECT customer_id, loyalty_tier FROM gold.dim_customer_current ORDER BY 1", "--format", "csv"
    )
    assert done.returncode == 0, done.stderr
    # one row per customer: the current version only
    assert read_csv(done.stdout) == [
        {"customer_id": "C1", "loyalty_tier": "gold"},
        {"customer_id": "C2", "loyalty_tier": "none"},
    ]
    # a shape whose inputs are not all in the lakehouse is not served
    done = retail_sql(data_root, "-e", "SELECT count(*) FROM gold.sales_denormalized")
    assert done.returncode == 1 and "sales_denormalized" in done.stderr


def test_statements_piped_through_stdin_run_as_a_script(data_root):
    script = (
        "SELECT count(*) AS lines\n"
        "  FROM gold.fact_sales;\n"
        "SELECT 'a;b' AS text; -- a comment; not a statement\n"
        "SELECT count(*) AS stores FROM silver.stores"  # the last one may lack its `;`
    )
    done = retail_sql(data_root, "--format", "csv", stdin=script)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "lines\n12\ntext\na;b\nstores\n3\n"  # no prompts: stdin is not a terminal

    # A failed statement is reported and the script goes on; the exit code says one failed.
    done = retail_sql(data_root, "--format", "csv", stdin="SELECT nope FROM gold.fact_sales;\nSELECT 1 AS one;\n")
    assert done.returncode == 1
    assert done.stdout == "one\n1\n" and done.stderr.startswith("error: Binder Error")
    assert done.stderr.count("\n") == 1


def test_the_shell_lists_the_tables_and_describes_their_columns(data_root):
    done = retail_sql(data_root, "--format", "csv", stdin="\\dt\n")
    assert done.returncode == 0, done.stderr
    tables = {r["table"]: r for r in read_csv(done.stdout)}
    assert set(tables) == {"gold.fact_sales", "gold.dim_customer", "gold.dim_customer_current", "silver.stores"}
    assert tables["gold.fact_sales"] == {"table": "gold.fact_sales", "reads": "delta v1", "rows": "12"}
    assert tables["gold.dim_customer_current"] == {"table": "gold.dim_customer_current", "reads": "view", "rows": "2"}

    done = retail_sql(data_root, "--format", "csv", stdin=".schema fact_sales\n.quit\nSELECT 1;\n")
    assert done.returncode == 0, done.stderr
    schema = read_csv(done.stdout)
    assert [r["column"] for r in schema] == GOLD_FACT_SALES.column_names  # and nothing after .quit
    assert next(r for r in schema if r["column"] == "quantity") == {
        "column": "quantity",
        "type": "INTEGER",
        "nullable": "no",
        "description": GOLD_FACT_SALES.column("quantity").description,
    }


def test_an_sql_error_is_one_line_and_exit_code_1(data_root):
    done = retail_sql(data_root, "-e", "SELECT 1 AS one; SELECT * FROM gold.no_such_table; SELECT 2 AS two")
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == "one"
    assert "two" not in done.stdout  # the first failure stops -e
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: Catalog Error:")
    assert "no_such_table" in done.stderr


def test_no_gold_under_the_data_root_exits_2(tmp_path):
    done = retail_sql(tmp_path / "empty", "-e", "SELECT 1")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no Gold table" in done.stderr and "retail-assets demo" in done.stderr
    # Silver alone is not a lakehouse to query either
    write(tmp_path / "silver_only" / "lakehouse", SILVER_STORES, [row(SILVER_STORES, store_id="S1")])
    assert retail_sql(tmp_path / "silver_only", "-e", "SELECT 1").returncode == 2


def test_a_session_reads_the_versions_committed_when_it_opened(tmp_path):
    lakehouse = build_lakehouse(tmp_path)
    endpoint = SqlEndpoint(lakehouse)
    try:
        assert endpoint.run("SELECT count(*) FROM gold.fact_sales").rows == [(12,)]
        write(lakehouse, GOLD_FACT_SALES, sales(DAY, 3, first=500))
        write(lakehouse, GOLD_DIM_CUSTOMER_CURRENT, [row(GOLD_DIM_CUSTOMER_CURRENT, customer_id="T1")], "overwrite")
        # the session keeps its snapshot: no query mixes two versions of a table
        assert endpoint.run("SELECT count(*) FROM gold.fact_sales").rows == [(12,)]
        assert endpoint.attached["gold.fact_sales"].version == 1
        endpoint.refresh()
        assert endpoint.run("SELECT count(*) FROM gold.fact_sales").rows == [(15,)]
        assert endpoint.attached["gold.fact_sales"].version == 2
        # a serving shape written as a table (the delta-rs engine) is read as that table
        assert endpoint.attached["gold.dim_customer_current"].version == 0
        assert endpoint.run("SELECT customer_id FROM gold.dim_customer_current").rows == [("T1",)]
    finally:
        endpoint.close()


def test_every_serving_shape_runs_in_duckdb(tmp_path):
    """Each registry SELECT, in DuckDB's dialect, over one row of every table it reads."""
    lakehouse = tmp_path / "lakehouse"
    for spec in {t for shape in serving_shapes() for t in shape.view.reads}:
        write(lakehouse, spec, [row(spec, **({"is_current": True} if "is_current" in spec.column_names else {}))])
    endpoint = SqlEndpoint(lakehouse)
    try:
        for shape in serving_shapes():
            assert endpoint.attached[shape.key].version is None
            result = endpoint.run(f"SELECT * FROM {shape.key}")
            assert (result.columns, len(result.rows)) == (shape.column_names, 1), shape.key
    finally:
        endpoint.close()


def test_statements_split_on_semicolons_outside_quotes_and_comments():
    text = "SELECT 'a;b', \"c;d\" FROM t; /* x; */ SELECT 2;\n-- only; a comment\n; SELECT 3"
    assert split_statements(text) == (["SELECT 'a;b', \"c;d\" FROM t", "/* x; */ SELECT 2"], " SELECT 3")
    assert split_statements("SELECT 'it''s;") == ([], "SELECT 'it''s;")  # an open string: not complete
    assert all_statements("SELECT 1; SELECT 2 -- done") == ["SELECT 1", "SELECT 2 -- done"]
    assert all_statements("  ") == []
