"""Gold equality: the pipeline's Delta tables against the baseline's Parquet output.

Rows are compared as multisets over every column but the volatile ones (`processed_at`,
arrival bookkeeping of rebuilt dimensions: see `TableSpec.volatile_columns`), after casting both
sides to the registry schema, so a difference in any value, type or row count is reported.
With `days`, the business-date tables kept by partition are compared over those days only: a
pipeline run over a wider range (a UI backfill of every table over every arrival day) also
holds partitions of days the baseline has no business in, such as the calendar's rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

from retail_assets.lib.registry.tables import Partitioning, TableSpec


@dataclass
class TableComparison:
    table: str
    pipeline_rows: int
    baseline_rows: int
    only_in_pipeline: int = 0
    only_in_baseline: int = 0
    examples: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def equal(self) -> bool:
        return (
            self.problem is None
            and not self.only_in_pipeline
            and not self.only_in_baseline
            and self.pipeline_rows == self.baseline_rows
        )

    def describe(self) -> str:
        if self.equal:
            return f"{self.table}: equal ({self.pipeline_rows} rows)"
        if self.problem:
            return f"{self.table}: {self.problem}"
        return (
            f"{self.table}: DIFFERENT: pipeline {self.pipeline_rows} rows, baseline {self.baseline_rows}; "
            f"{self.only_in_pipeline} rows only in the pipeline, {self.only_in_baseline} only in the baseline; e.g. "
            + " | ".join(self.examples)
        )


def compared_columns(spec: TableSpec) -> list[str]:
    return [c for c in spec.column_names if c not in spec.volatile_columns]


def _conform(data: pa.Table, spec: TableSpec) -> pa.Table:
    columns = compared_columns(spec)
    schema = spec.arrow_schema()
    missing = [c for c in columns if c not in data.column_names]
    if missing:
        raise ValueError(f"columns {missing} are missing")
    return data.select(columns).cast(pa.schema([schema.field(c) for c in columns]))


def read_pipeline(lakehouse: Path, spec: TableSpec) -> pa.Table:
    return DeltaTable(str(lakehouse / spec.layer.value / spec.name)).to_pyarrow_table()


def read_baseline(out: Path, spec: TableSpec) -> pa.Table:
    return pq.read_table(str(out / spec.layer.value / spec.name))


def compare_tables(spec: TableSpec, pipeline: pa.Table, baseline: pa.Table, *, examples: int = 3) -> TableComparison:
    result = TableComparison(spec.key, pipeline.num_rows, baseline.num_rows)
    try:
        left, right = _conform(pipeline, spec), _conform(baseline, spec)
    except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        result.problem = f"cannot be compared: {exc}"
        return result
    order = [(c, "ascending") for c in left.column_names if not pa.types.is_list(left.schema.field(c).type)]
    if left.num_rows == right.num_rows and left.sort_by(order).equals(right.sort_by(order)):
        return result
    # Only when they differ: count rows as multisets to say what differs.
    lhs, rhs = Counter(_rows(left)), Counter(_rows(right))
    only_left, only_right = lhs - rhs, rhs - lhs
    result.only_in_pipeline, result.only_in_baseline = sum(only_left.values()), sum(only_right.values())
    names = left.column_names
    for label, rows in (("pipeline", only_left), ("baseline", only_right)):
        for row in list(rows)[:examples]:
            result.examples.append(f"{label}: " + ", ".join(f"{n}={v!r}" for n, v in zip(names, row)))
    if not result.only_in_pipeline and not result.only_in_baseline and result.pipeline_rows == result.baseline_rows:
        result.problem = "same rows but the sorted tables differ (types or null handling)"
    return result


def _rows(table: pa.Table) -> list[tuple]:
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    # lists (`quality_flags`) as tuples: rows are counted as multisets
    return [tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in zip(*columns)]


def on_days(spec: TableSpec, data: pa.Table, days: Collection[str] | None) -> pa.Table:
    """The rows of a business-date table's partitions among `days` (every row without `days`,
    and of tables rebuilt whole or kept by arrival date)."""
    if days is None or spec.partitioning is not Partitioning.EVENT_DATE or spec.rebuild:
        return data
    wanted = pa.array(sorted(days)).cast(pa.date32())
    return data.filter(pc.is_in(data[spec.partition_column].cast(pa.date32()), value_set=wanted))


def compare_gold(
    lakehouse: Path, baseline_out: Path, specs: tuple[TableSpec, ...], days: Collection[str] | None = None
) -> list[TableComparison]:
    results = []
    for spec in specs:
        try:
            pipeline, baseline = read_pipeline(lakehouse, spec), read_baseline(baseline_out, spec)
        except Exception as exc:  # noqa: BLE001 - a missing table is a reportable mismatch, not a crash
            results.append(TableComparison(spec.key, 0, 0, problem=f"cannot be read: {type(exc).__name__}: {exc}"))
            continue
        results.append(compare_tables(spec, on_days(spec, pipeline, days), on_days(spec, baseline, days)))
    return results
