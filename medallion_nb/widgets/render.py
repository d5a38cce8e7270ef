"""HTML and SVG for the explorer: tables, notes, charts and download links.

Pure functions from data to markup, so they work in JupyterLab, in Voila and
in a static notebook, and are tested without a browser. Every value shown is
HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
import decimal
import html
import math
from collections.abc import Sequence
from typing import Any

from medallion_nb.errors import UsageError

# Scoped to .mnb so the explorer's look does not leak into the rest of the page.
STYLE = """<style>
.mnb table.mnb-table {border-collapse: collapse; font-size: 12px; margin: 4px 0;}
.mnb .mnb-table th, .mnb .mnb-table td {border: 1px solid #d0d7de; padding: 2px 8px; text-align: left;
  white-space: nowrap; max-width: 320px; overflow: hidden; text-overflow: ellipsis;}
.mnb .mnb-table th {background: #f3f5f7; font-weight: 600; position: sticky; top: 0;}
.mnb .mnb-table td.num {text-align: right; font-variant-numeric: tabular-nums;}
.mnb .mnb-table td.null {color: #8c959f; font-style: italic;}
.mnb .mnb-table caption {caption-side: top; text-align: left; font-weight: 600; padding: 2px 0;}
.mnb .mnb-note {padding: 4px 8px; border-radius: 4px; margin: 2px 0; font-size: 13px;}
.mnb .mnb-note.info {background: #eef4fb; color: #1f2328;}
.mnb .mnb-note.ok {background: #e6f4ea; color: #1a4d2e;}
.mnb .mnb-note.warning {background: #fff8c5; color: #4d2d00;}
.mnb .mnb-note.error {background: #fdecea; color: #86181d; white-space: pre-wrap;}
.mnb .mnb-scroll {max-height: 520px; overflow: auto;}
.mnb .mnb-side-by-side {display: flex; gap: 16px; align-items: flex-start;}
.mnb .mnb-side-by-side > div {flex: 1 1 0; min-width: 0;}
.mnb .mnb-muted {color: #57606a; font-size: 12px;}
</style>"""

_NUMBERS = (int, float, decimal.Decimal)


class Cell(str):
    """Text already formatted for a table cell (e.g. ``4.2%``); right-aligned when ``numeric``."""

    numeric: bool

    def __new__(cls, text: str, *, numeric: bool = True) -> Cell:
        cell = super().__new__(cls, text)
        cell.numeric = numeric
        return cell


def percent(part: int | float, whole: int | float) -> str:
    """``part`` of ``whole`` as a percentage people read: ``4.2%``, ``<0.1%``, ``100%``, ``0%``."""
    if not whole or not part:
        return "0%"
    share = 100 * part / whole
    if share < 0.1:
        return "<0.1%"
    if share >= 100:
        return "100%"
    return f"{share:.1f}%"


def format_value(value: Any, *, max_chars: int = 120) -> str:
    """A value as people read it: thousands separators, ISO dates, ``null``; not escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4g}"
    if isinstance(value, decimal.Decimal):
        return f"{value:,}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def html_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    caption: str = "",
    empty: str = "no rows",
    first_row: int | None = None,
) -> str:
    """An HTML table of ``rows``; numbers right-aligned, nulls greyed.

    ``first_row`` adds a leading ``#`` column numbering rows from that value.
    """
    head = ([" #"] if first_row is not None else []) + list(columns)
    out = ['<table class="mnb-table">']
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in head) + "</tr></thead><tbody>")
    for i, row in enumerate(rows):
        cells = []
        if first_row is not None:
            cells.append(f'<td class="num null">{first_row + i:,}</td>')
        for value in row:
            if isinstance(value, Cell):
                cells.append(f'<td class="{"num" if value.numeric else ""}">{html.escape(str(value))}</td>')
                continue
            numeric = isinstance(value, _NUMBERS) and not isinstance(value, bool)
            cls = "null" if value is None else "num" if numeric else ""
            cells.append(f'<td class="{cls}">{html.escape(format_value(value))}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        out.append(f'<tr><td class="null" colspan="{max(len(head), 1)}">{html.escape(empty)}</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def note(text: str, level: str = "info") -> str:
    """A one-line message box; ``level`` is ``info``, ``ok`` or ``error``."""
    return f'<div class="mnb-note {html.escape(level)}">{html.escape(text)}</div>'


# -- charts ----------------------------------------------------------------
def _nice_step(span: float, target: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _ticks(low: float, high: float) -> list[float]:
    step = _nice_step(high - low)
    start = math.floor(low / step) * step
    ticks, value = [], start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(ticks[-1] + step)
    return ticks


def _short(value: Any, limit: int = 14) -> str:
    text = format_value(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _axis_number(value: float) -> str:
    magnitude = abs(value)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= div:
            return f"{value / div:g}{suffix}"
    return f"{value:g}"


def svg_chart(
    labels: Sequence[Any],
    values: Sequence[float | None],
    *,
    kind: str = "bar",
    title: str = "",
    width: int = 760,
    height: int = 320,
    color: str = "#2f6fb0",
) -> str:
    """A bar or line chart as a standalone SVG document (no JavaScript, no plotting library).

    Raises:
        UsageError: ``kind`` is not ``bar`` or ``line``, or labels and values differ in length.
    """
    if kind not in ("bar", "line"):
        raise UsageError(f"chart kind {kind!r} is not bar or line")
    if len(labels) != len(values):
        raise UsageError(f"chart: {len(labels)} labels but {len(values)} values")
    left, right, top, bottom = 64, 16, 30, 70
    plot_w, plot_h = width - left - right, height - top - bottom
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="mnb-chart" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    if title:
        out.append(f'<text x="{left}" y="18" font-size="13" font-weight="600">{html.escape(title)}</text>')
    present = [float(v) for v in values if v is not None]
    if not present:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#57606a">no data</text>')
        return "".join(out) + "</svg>"
    ticks = _ticks(min(0.0, *present), max(0.0, *present))
    low, high = ticks[0], ticks[-1]
    if high == low:
        high = low + 1

    def y_of(v: float) -> float:
        return top + plot_h - (v - low) / (high - low) * plot_h

    for tick in ticks:
        y = y_of(tick)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e8eb"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#57606a">'
                   f'{_axis_number(tick)}</text>')
    n = len(values)
    slot = plot_w / n
    every = max(1, math.ceil(n / 24))  # at most ~24 x labels
    zero = y_of(0.0)
    points = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        cx = left + slot * (i + 0.5)
        tip = html.escape(f"{format_value(label)}: {format_value(value)}")
        if value is not None:
            y = y_of(float(value))
            if kind == "bar":
                bar_w = max(slot * 0.8, 1)
                out.append(f'<rect class="mnb-bar" x="{cx - bar_w / 2:.1f}" y="{min(y, zero):.1f}" '
                           f'width="{bar_w:.1f}" height="{max(abs(zero - y), 0.5):.1f}" fill="{color}">'
                           f"<title>{tip}</title></rect>")
            else:
                points.append((cx, y, tip))
        if i % every == 0:
            out.append(f'<text x="{cx:.1f}" y="{top + plot_h + 12}" text-anchor="end" fill="#1f2328" '
                       f'transform="rotate(-40 {cx:.1f} {top + plot_h + 12})">{html.escape(_short(label))}</text>')
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
        out.append(f'<polyline class="mnb-line" points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        out.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"><title>{tip}</title></circle>'
                   for x, y, tip in points)
    out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#8c959f"/>')
    return "".join(out) + "</svg>"


def chart(
    rel: Any,
    *,
    x: str,
    y: str = "(rows)",
    agg: str = "sum",
    bucket: str = "auto",
    title: str | None = None,
    max_points: int | None = None,
) -> Any:
    """A chart of a relation for a notebook cell: ``agg(y)`` by ``x``, drawn with bqplot.

    Dates and timestamps get a time axis binned by hour/day/week/month/... (``bucket="auto"``
    picks from the span), text columns get bars. A saved notebook shows a static SVG copy.

    Example: ``chart(lake.table("gold.daily_sales"), x="order_date", y="revenue", bucket="month")``.

    Raises:
        FilterError: unknown column, aggregation or bucket (see :func:`~medallion_nb.widgets.queries.chart_data`).
    """
    from medallion_nb.widgets.queries import chart_data

    data = chart_data(rel, x=x, y=y, agg=agg, bucket=bucket, max_points=max_points)
    return Chart(data, title=title)


class Chart:
    """A chart in a notebook: the live bqplot figure, then a static SVG copy that saved notebooks show."""

    def __init__(self, data: Any, *, title: str | None = None) -> None:
        from medallion_nb.widgets import charts

        self.data = data
        self.title = title or data.title
        self.figure = charts.figure(data, title=self.title)

    def svg(self) -> str:
        """The static copy: the same points as an SVG (no JavaScript)."""
        labels = [format_value(v) for v in self.data.labels]
        kind = "bar" if self.data.axis == "category" else "line"
        return svg_chart(labels, self.data.values, kind=kind, title=self.title)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.figure)
        note_text = f"<p>{html.escape(self.data.note)}</p>" if self.data.note else ""
        display({"text/html": fallback(self.title, self.svg() + note_text), "text/plain": self.title}, raw=True)


# Shown after a live widget: hidden while the widget is live (its output carries .mnb-live); when the
# notebook is reopened without a kernel, the widget's output ("Error displaying widget: model not found")
# is hidden instead and this static copy shows.
_FALLBACK_STYLE = """<style>
.jp-OutputArea-child:has(.mnb-live) + .jp-OutputArea-child:has(.mnb-static) {display: none;}
.jp-OutputArea-child:has(+ .jp-OutputArea-child .mnb-static):not(:has(.mnb-live)) {display: none;}
</style>"""


def fallback(title: str, body: str) -> str:
    """The static copy of a widget output, with a note to run the notebook again for the live version."""
    return (f'{_FALLBACK_STYLE}<div class="mnb mnb-static">{STYLE}'
            f'<div class="mnb-note info">{html.escape(title)}: a saved copy. '
            "Run the notebook again to explore it live.</div>"
            f"{body}</div>")


def as_datetime(value: Any) -> dt.datetime | None:
    """A commit time as a UTC datetime (Delta stores milliseconds since the epoch)."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)


def when(value: Any) -> str:
    """A commit time (datetime or epoch milliseconds) as ``YYYY-MM-DD HH:MM UTC``."""
    moment = as_datetime(value)
    if moment is None:
        return "at an unknown time"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
