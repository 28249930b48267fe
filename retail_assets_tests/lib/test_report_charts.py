"""The KPI report's store chart stays readable with many stores: the largest stack, the rest
are one band, and the bands still add up to each day's net revenue."""

from __future__ import annotations

import warnings

import pytest

from retail_assets.lib.transforms.gold import report


def store_section(stores: int, days: int = 3) -> dict:
    columns = [{"name": n} for n in ("event_date", "store_id", "revenue", "returns_amount", "net_revenue")]
    rows = [
        [f"2026-11-0{d + 1}", f"S{s:03d}", 100.0 * (s + 1) + d, 1.0, 100.0 * (s + 1) + d - 1.0]
        for d in range(days)
        for s in range(stores)
    ]
    return {"name": "store_sales", "title": "Revenue", "note": "", "columns": columns, "rows": rows}


def test_a_few_stores_each_get_a_band():
    days, bands = report.store_bands(store_section(3))
    assert days == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert [label for label, _ in bands] == ["S000", "S001", "S002"]


def test_beyond_the_stacked_stores_the_rest_is_one_band_that_keeps_the_daily_total():
    section = store_section(40)
    days, bands = report.store_bands(section)
    labels = [label for label, _ in bands]
    # the largest stores of the window (here the highest numbered), then everyone else
    assert labels[:-1] == [f"S{s:03d}" for s in range(40 - report.STACKED_STORES, 40)]
    assert labels[-1] == f"{40 - report.STACKED_STORES} other stores"
    for i, day in enumerate(days):
        net = sum(row[4] for row in section["rows"] if row[0] == day)
        assert sum(heights[i] for _, heights in bands) == pytest.approx(net)


def test_a_hundred_stores_render_without_the_layout_giving_up():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied": the axes collapsed
        png = report.chart(store_section(100, days=7))
    assert png.startswith(b"\x89PNG")
