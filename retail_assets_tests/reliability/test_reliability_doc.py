"""docs/reliability.md and the reliability tests cannot drift apart."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from retail_assets_tests.reliability import hostile

pytestmark = pytest.mark.reliability

HERE = Path(__file__).parent
TESTS = HERE.parent
DOC = HERE.parents[1] / "docs" / "reliability.md"
# `test_x.py::test_y` for a module of this package, `defs/test_x.py::test_y` for one elsewhere
REFERENCE = re.compile(r"`((?:\w+/)*test_\w+)\.py::(test_\w+)`")
CASE = re.compile(r"`([a-z0-9_]+)`")


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _reliability_tests() -> dict[str, set[str]]:
    """module → test functions, parsed in a process of its own: Python 3.11's AST constructor keeps
    one recursion counter per interpreter, and a parse racing a thread an earlier test of this
    worker left running fails with `SystemError: AST constructor recursion depth mismatch`."""
    done = subprocess.run([sys.executable, "-m", __name__], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return {module: set(tests) for module, tests in json.loads(done.stdout).items()}


def _parse_reliability_tests() -> dict[str, set[str]]:
    """module → test functions: every module of this package (each marked `reliability` as a
    whole) and, under its path relative to the tests folder, every test elsewhere marked alone."""
    found = {}
    for path in sorted(HERE.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        marked = any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
            and "reliability" in ast.unparse(node.value)
            for node in tree.body
        )
        assert marked, f"{path.name} lacks pytestmark = pytest.mark.reliability"
        found[path.stem] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    for path in sorted(TESTS.rglob("test_*.py")):
        text = path.read_text()
        if path.parent == HERE or "mark.reliability" not in text:
            continue
        marked = {
            n.name
            for n in ast.parse(text).body
            if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test_")
            and any(ast.unparse(d) == "pytest.mark.reliability" for d in n.decorator_list)
        }
        if marked:
            found[path.relative_to(TESTS).with_suffix("").as_posix()] = marked
    return found


def test_doc_and_tests_match():
    rows = _table_rows(DOC.read_text())
    assert len(rows) > 40
    tests = _reliability_tests()
    referenced = set()
    for row in rows:
        if row[-1] == "test":
            continue  # a header
        assert len(row) == 3, row
        refs = REFERENCE.findall(row[2])
        assert refs, f"row without a test: {row[0]}"
        for module, name in refs:
            assert name in tests.get(module, set()), (
                f"docs/reliability.md names {module}.py::{name}, which does not exist"
            )
            referenced.add((module, name))
    unnamed = sorted(f"{m}.py::{n}" for m, names in tests.items() for n in names if (m, n) not in referenced)
    assert unnamed == [], "reliability tests missing from docs/reliability.md"

    # every hostile case has its row, in the table of its channel
    text = DOC.read_text()
    files_part, kafka_part = text.split("## Hostile Kafka events")
    file_cases = {e.case for e in hostile.landing_files().expected} - {"clean_file"}
    kafka_cases = {case for case, *_ in hostile.KAFKA_CASES}
    in_files = {c for row in _table_rows(files_part) for c in CASE.findall(row[0])}
    in_kafka = {c for row in _table_rows(kafka_part.split("## Faults")[0]) for c in CASE.findall(row[0])}
    assert sorted(file_cases - in_files) == [] and sorted(kafka_cases - in_kafka) == []


if __name__ == "__main__":
    print(json.dumps({module: sorted(tests) for module, tests in _parse_reliability_tests().items()}))
