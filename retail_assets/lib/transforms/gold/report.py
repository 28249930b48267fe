"""The KPI report rendered: a chart per section of its figures (`report_figures.kpi_figures`),
PNG files, one self-contained `index.html` and the figures as `figures.json`.

The page shows each chart beside its figures as an HTML table. Every figure carries its raw
value (`data-value`), so a browser test or a person's script reads the numbers without parsing
the formatted text; ids are stable: `headline`, `chart-<section>`, `table-<section>`.
Charts are drawn with matplotlib's Agg canvas (no display, no global pyplot state), at
`DPI` dots per inch so each PNG stays a few tens of kilobytes: small enough to embed in the
page and in the materialization's metadata.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DPI = 100
SIZE = (7.0, 3.4)  # inches: 700 × 340 pixels
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
INDEX, FIGURES = "index.html", "figures.json"
# The store chart stacks this many stores, the largest in the window, and the rest as one band:
# a legend of a hundred stores would leave no room for the chart.
STACKED_STORES = len(PALETTE) - 1
OTHERS_COLOUR = "#c7c7c7"


@dataclass(frozen=True)
class ReportFiles:
    """What rendering a report wrote: the page, the figures and each chart's PNG."""

    directory: Path
    pngs: dict[str, bytes]  # section name → PNG bytes (also `<directory>/<name>.png`)

    @property
    def index(self) -> Path:
        return self.directory / INDEX

    @property
    def figures(self) -> Path:
        return self.directory / FIGURES


def _values(section: dict[str, Any], name: str) -> list[Any]:
    at = [c["name"] for c in section["columns"]].index(name)
    return [r[at] for r in section["rows"]]


def _short(day: str) -> str:
    return day[5:]  # MM-DD


def store_bands(section: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[float]]]]:
    """The store chart's days and stacked bands: net revenue per day of the `STACKED_STORES`
    largest stores over the window, each a band labelled with its id, and of the rest as one
    band (the section's table lists every store)."""
    days = sorted(set(_values(section, "event_date")))
    net: dict[tuple[str, str], float] = {}
    for d, s, v in zip(*(_values(section, c) for c in ("event_date", "store_id", "net_revenue"))):
        net[(d, s)] = net.get((d, s), 0.0) + v
    totals: dict[str, float] = {}
    for (_, store), value in net.items():
        totals[store] = totals.get(store, 0.0) + value
    ranked = sorted(totals, key=lambda s: (-totals[s], s))
    bands = [(store, [net.get((d, store), 0.0) for d in days]) for store in sorted(ranked[:STACKED_STORES])]
    rest = set(ranked[STACKED_STORES:])
    if rest:
        others = [sum(v for (day, s), v in net.items() if day == d and s in rest) for d in days]
        bands.append((f"{len(rest)} other stores", others))
    return days, bands


def _store_sales(ax, section: dict[str, Any]) -> None:
    days, bands = store_bands(section)
    bottom = [0.0] * len(days)
    for i, (label, heights) in enumerate(bands):
        colour = PALETTE[i] if i < STACKED_STORES else OTHERS_COLOUR
        ax.bar(range(len(days)), heights, bottom=bottom, color=colour, label=label, width=0.7)
        bottom = [b + h for b, h in zip(bottom, heights)]
    revenue: dict[str, float] = {}
    for d, v in zip(_values(section, "event_date"), _values(section, "revenue")):
        revenue[d] = revenue.get(d, 0.0) + v
    ax.plot(range(len(days)), [revenue[d] for d in days], color="black", marker="o", linewidth=1.5, label="revenue")
    ax.set_xticks(range(len(days)), [_short(d) for d in days])
    ax.set_ylabel("amount")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _returns_rate(ax, section: dict[str, Any]) -> None:
    days, rates = _values(section, "event_date"), _values(section, "returns_rate")
    ax.plot(range(len(days)), [100 * (r or 0) for r in rates], color=PALETTE[3], marker="o")
    ax.set_xticks(range(len(days)), [_short(d) for d in days])
    ax.set_ylabel("% of revenue")
    ax.set_ylim(bottom=0)


def _top_products(ax, section: dict[str, Any]) -> None:
    names = [f"{p} ({c or '?'})" for p, c in zip(_values(section, "product_id"), _values(section, "category"))]
    positions = range(len(names))[::-1]  # the first ranked on top
    ax.barh(positions, _values(section, "net_revenue"), color=PALETTE[0], label="net revenue")
    ax.barh(positions, [m or 0 for m in _values(section, "gross_margin")], color=PALETTE[2], label="gross margin")
    ax.set_yticks(list(positions), names, fontsize=7)
    ax.set_xlabel("amount")
    ax.legend(fontsize=7, loc="lower right")


def _customer_value(ax, section: dict[str, Any]) -> None:
    bands, customers = _values(section, "band"), _values(section, "customers")
    ax.bar(range(len(bands)), customers, color=PALETTE[4])
    ax.set_xticks(range(len(bands)), bands, fontsize=8)
    ax.set_xlabel("lifetime net spend")
    ax.set_ylabel("customers")


def _inventory_cover(ax, section: dict[str, Any]) -> None:
    days, below = _values(section, "snapshot_date"), _values(section, "below_threshold")
    ax.bar(range(len(days)), below, color=PALETTE[1])
    ax.set_xticks(range(len(days)), [_short(d) for d in days])
    ax.set_ylabel("positions below threshold")


def _reject_rate(ax, section: dict[str, Any]) -> None:
    days = sorted(set(_values(section, "arrival_date")))
    rows = zip(*(_values(section, c) for c in ("arrival_date", "source_table", "reject_rate")))
    by_source: dict[str, dict[str, float]] = {}
    for day, source, value in rows:
        by_source.setdefault(source, {})[day] = 100 * (value or 0)
    for i, (source, rates) in enumerate(sorted(by_source.items())):
        ax.plot(
            range(len(days)),
            [rates.get(d, 0.0) for d in days],
            marker="o",
            markersize=3,
            color=PALETTE[i % len(PALETTE)],
            label=source.removeprefix("bronze."),
        )
    ax.set_xticks(range(len(days)), [_short(d) for d in days])
    ax.set_ylabel("% of records quarantined")
    ax.set_ylim(bottom=0)
    if by_source:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


CHARTS: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "store_sales": _store_sales,
    "returns_rate": _returns_rate,
    "top_products": _top_products,
    "customer_value": _customer_value,
    "inventory_cover": _inventory_cover,
    "reject_rate": _reject_rate,
}


def chart(section: dict[str, Any]) -> bytes:
    """The section's chart as PNG bytes."""
    # Imported here: loading the definitions (webserver, daemon, sensors) never draws.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.set_title(section["title"], fontsize=10)
    if section["rows"]:
        CHARTS[section["name"]](ax, section)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y" if section["name"] != "top_products" else "x", alpha=0.3)
    else:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no data in the window", ha="center", va="center", color="grey")
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None}, pil_kwargs={"optimize": True})
    return out.getvalue()


def shown(value: Any, kind: str) -> str:
    """A figure as the page prints it."""
    if value is None:
        return "—"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "rate":
        return f"{value:.2%}"
    if kind == "count":
        return f"{value:,}"
    return str(value)


def _raw(value: Any) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _headline(figures: dict[str, Any]) -> str:
    items = "".join(
        f'<div class="figure" data-figure="{h["name"]}" data-value="{_raw(h["value"])}">'
        f"<dt>{html.escape(h['label'])}</dt><dd>{shown(h['value'], h['kind'])}</dd></div>"
        for h in figures["headline"]
    )
    return f'<dl id="headline">{items}</dl>'


def _table(section: dict[str, Any]) -> str:
    head = "".join(f'<th data-column="{c["name"]}">{html.escape(c["label"])}</th>' for c in section["columns"])
    body = "".join(
        "<tr>"
        + "".join(
            f'<td data-column="{c["name"]}" data-value="{_raw(v)}" class="{c["kind"]}">{html.escape(shown(v, c["kind"]))}</td>'
            for c, v in zip(section["columns"], row)
        )
        + "</tr>"
        for row in section["rows"]
    )
    name = section["name"]
    return f'<table id="table-{name}" data-section="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; background: #fafafa; }
h1 { margin: 0 0 .3rem; } h2 { font-size: 1.1rem; margin: 0 0 .3rem; }
.note, header p, footer { color: #555; font-size: .85rem; }
#headline { display: flex; flex-wrap: wrap; gap: .8rem; margin: 1rem 0; }
.figure { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .5rem .9rem; }
.figure dt { font-size: .75rem; color: #555; } .figure dd { margin: 0; font-size: 1.3rem; font-weight: 600; }
section.kpi { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1rem; margin: 1rem 0; }
.pair { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.scroll { max-height: 340px; overflow: auto; }
table { border-collapse: collapse; font-size: .8rem; }
th, td { padding: .2rem .5rem; border-bottom: 1px solid #eee; text-align: left; }
td.money, td.count, td.rate { text-align: right; font-variant-numeric: tabular-nums; }
"""


def page(figures: dict[str, Any], pngs: dict[str, bytes], inputs: dict[str, int | None]) -> str:
    """The report as one HTML document: charts embedded, no file or network access needed."""
    first, last = figures["window"]
    sections = "".join(
        f'<section class="kpi" id="kpi-{s["name"]}"><h2>{html.escape(s["title"])}</h2>'
        f'<p class="note">{html.escape(s["note"])}</p><div class="pair">'
        f'<img id="chart-{s["name"]}" src="{data_uri(pngs[s["name"]])}" alt="{html.escape(s["title"])}">'
        f'<div class="scroll">{_table(s)}</div></div></section>'
        for s in figures["sections"]
    )
    versions = ", ".join(
        f"{html.escape(t)} v{v}" if v is not None else f"{html.escape(t)} (none)" for t, v in inputs.items()
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Retail KPIs · {figures['partition']}</title><style>{STYLE}</style></head>"
        f'<body data-partition="{figures["partition"]}"><header><h1>Retail KPIs</h1>'
        f'<p>Business day <time id="partition">{figures["partition"]}</time>; the '
        f'{figures["parameters"]["window_days"]} days <span id="window">{first} … {last}</span>.</p></header>'
        f"{_headline(figures)}{sections}"
        f'<footer id="inputs">Computed from the Delta versions: {versions}.</footer></body></html>'
    )


def write_report(figures: dict[str, Any], directory: Path, *, inputs: dict[str, int | None]) -> ReportFiles:
    """Render the report into `directory` (created, its files replaced): `index.html`, the
    figures as `figures.json` and `<section>.png` per chart. `inputs`: each table read and its
    Delta version, named in the page's footer."""
    directory.mkdir(parents=True, exist_ok=True)
    pngs = {s["name"]: chart(s) for s in figures["sections"]}
    for name, png in pngs.items():
        (directory / f"{name}.png").write_bytes(png)
    (directory / FIGURES).write_text(json.dumps(figures, indent=1, ensure_ascii=False), encoding="utf-8")
    (directory / INDEX).write_text(page(figures, pngs, inputs), encoding="utf-8")
    return ReportFiles(directory, pngs)


def charts_markdown(figures: dict[str, Any], pngs: dict[str, bytes]) -> str:
    """Every chart as Markdown with the image embedded, for the materialization's metadata."""
    return "\n\n".join(f"**{s['title']}**\n\n![{s['name']}]({data_uri(pngs[s['name']])})" for s in figures["sections"])
