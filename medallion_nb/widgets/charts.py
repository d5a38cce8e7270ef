"""Charts of :class:`~medallion_nb.widgets.queries.ChartData` with bqplot.

bqplot is an ipywidget library whose JavaScript ships inside its Python package,
so its charts draw in JupyterLab and in Voila without a network connection. A
time axis is a real date scale (bins placed by their time, empty bins left as
gaps); text categories are bars, largest first, with labels shortened to fit.
"""

from __future__ import annotations

import math
from typing import Any

import bqplot as bq
import numpy as np

from medallion_nb.widgets.queries import ChartData

COLOR = "#2f6fb0"
LABEL_CHARS = 18
_TICK_FORMAT = {"hour": "%d %b %H:%M", "day": "%d %b %Y", "week": "%d %b %Y", "month": "%b %Y",
                "quarter": "%b %Y", "year": "%Y"}


def short_labels(labels: list[Any], limit: int = LABEL_CHARS) -> list[str]:
    """Category labels shortened to ``limit`` characters, kept unique (bqplot needs distinct categories)."""
    out: list[str] = []
    seen: set[str] = set()
    for label in labels:
        text = "null" if label is None else str(label)
        text = text if len(text) <= limit else text[: limit - 1] + "…"
        base, n = text, 2
        while text in seen:
            text, n = f"{base} ({n})", n + 1
        seen.add(text)
        out.append(text)
    return out


def _values(data: ChartData) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in data.values], dtype=float)


def marks_and_axes(data: ChartData, *, y_label: str = "") -> tuple[list[bq.Mark], list[bq.Axis], dict[str, Any]]:
    """The marks, axes and figure margins that draw ``data``."""
    y_scale = bq.LinearScale(min=0.0) if np.nanmin(_values(data), initial=0.0) >= 0 else bq.LinearScale()
    y_axis = bq.Axis(scale=y_scale, side="left", label=y_label, tick_format=".3s", grid_lines="dashed")
    margin = {"top": 40, "bottom": 50, "left": 70, "right": 40}
    tooltip = bq.Tooltip(fields=["x", "y"], formats=["", ",.2f"])
    if data.axis == "time":
        x_scale = bq.DateScale()
        x = np.array(data.labels, dtype="datetime64[ms]")
        line = bq.Lines(x=x, y=_values(data), scales={"x": x_scale, "y": y_scale}, colors=[COLOR], stroke_width=2,
                        marker="circle" if len(x) <= 60 else None, marker_size=24, tooltip=tooltip)
        x_axis = bq.Axis(scale=x_scale, tick_format=_TICK_FORMAT.get(data.bucket, "%d %b %Y"), grid_lines="none",
                         num_ticks=min(8, max(2, len(x))))
        return [line], [x_axis, y_axis], margin
    if data.axis == "number":
        x_scale = bq.LinearScale()
        line = bq.Lines(x=np.array([math.nan if v is None else float(v) for v in data.labels]), y=_values(data),
                        scales={"x": x_scale, "y": y_scale}, colors=[COLOR], stroke_width=2, tooltip=tooltip,
                        marker="circle" if len(data.labels) <= 60 else None, marker_size=24)
        return [line], [bq.Axis(scale=x_scale, tick_format=".3s", grid_lines="none"), y_axis], margin
    labels = short_labels(data.labels)
    x_scale = bq.OrdinalScale()
    bars = bq.Bars(x=labels, y=_values(data), scales={"x": x_scale, "y": y_scale}, colors=[COLOR], padding=0.2,
                   tooltip=tooltip)
    rotate = len(labels) > 8
    if rotate:
        margin["bottom"] = 20 + 6 * max((len(label) for label in labels), default=0)
    x_axis = bq.Axis(scale=x_scale, tick_rotate=-45 if rotate else 0, grid_lines="none",
                     tick_style={"text-anchor": "end"} if rotate else {})
    return [bars], [x_axis, y_axis], margin


def figure(data: ChartData, *, title: str | None = None, height: int = 360) -> bq.Figure:
    """A bqplot figure of ``data`` (a new widget)."""
    fig = bq.Figure(title=title or data.title, animation_duration=0,
                    layout={"width": "100%", "max_width": "980px", "height": f"{height}px"})
    update(fig, data, title=title)
    fig.add_class("mnb-chart")
    fig.add_class("mnb-live")
    return fig


def update(fig: bq.Figure, data: ChartData, *, title: str | None = None) -> None:
    """Redraw ``fig`` with ``data``, closing the marks, axes and scales it drew before."""
    old = list(fig.marks) + list(fig.axes)
    marks, axes, margin = marks_and_axes(data)
    with fig.hold_sync():
        fig.marks, fig.axes, fig.fig_margin = marks, axes, margin
        fig.title = title or data.title
    for widget in old:
        scales = getattr(widget, "scales", None) or {}
        for scale in ([widget.scale] if isinstance(widget, bq.Axis) else list(scales.values())):
            scale.close()
        widget.close()
