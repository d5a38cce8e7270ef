"""The gold dashboard: what business users see when ``medallion-nb dashboard`` serves it with Voila.

The project's name and description, how fresh the data is (the run whose
tables were last published), the gold tables with their descriptions, a few
ready-made charts and the explorer. Everything is read from the published
snapshot on the explorer's sandboxed connection; no code, commands or server
paths are shown, and downloads go straight to the browser.
"""

from __future__ import annotations

import datetime as dt
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

import medallion_nb as mnb
from medallion_nb.errors import MedallionError
from medallion_nb.widgets import charts
from medallion_nb.widgets import queries as q
from medallion_nb.widgets import render as r
from medallion_nb.widgets.explorer import GoldExplorer, _measure, _problem
from medallion_nb.widgets.sandbox import DEFAULT_TIMEOUT
from medallion_nb.widgets.serve import PROJECT_ENV

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

MAX_AUTO_CHARTS = 4


@dataclass(frozen=True)
class ChartSpec:
    """A ready-made chart: ``agg(y)`` of ``table`` by ``x`` (dates binned automatically)."""

    table: str
    x: str
    y: str = q.ROWS
    agg: str = "sum"
    title: str = ""


def table_description(lake: Lakehouse, name: str) -> str:
    """The description stored in the Delta table's metadata (set by Spark, Databricks or ``deltalake``), or ""."""
    layer, table = name.split(".", 1)
    try:
        return lake.store.delta(lake.store.path(layer, table)).metadata().description or ""
    except Exception:  # a description is decoration: a table without readable metadata just has none
        return ""


def default_charts(explorer: GoldExplorer, tables: Sequence[str]) -> list[ChartSpec]:
    """One chart per table (at most four): its money-like measure by its first date column, else by a text column."""
    specs = []
    for name in tables[:MAX_AUTO_CHARTS]:
        types = q.column_types(explorer.sandbox.table(name))
        temporal = [c for c, t in types.items() if q.is_temporal(t)]
        text = [c for c, t in types.items() if t == "varchar"]
        x = (temporal or text or [None])[0]
        if x is None:
            continue
        y = _measure([c for c, t in types.items() if q.is_numeric(t)])
        specs.append(ChartSpec(name, x, y, "sum", ""))
    return specs


class Dashboard:
    """The gold tables of a project as a page for people who do not write code.

    Example (a dashboard notebook's only code cell; Voila hides it):
        >>> Dashboard("..", descriptions={"gold.daily_sales": "Revenue and orders per day"},
        ...           charts=[ChartSpec("gold.daily_sales", "order_date", "revenue", title="Revenue per day")])

    Args:
        project_dir: the project folder; default: ``$MEDALLION_PROJECT``, else the current folder.
        layer: the layer shown (gold by default).
        descriptions: a sentence per table (``layer.table``); default: the Delta table's own description.
        charts: the ready-made charts; default: one per table (a measure by date, or by a text column).
        timeout: seconds after which a query is stopped with a message.
    """

    def __init__(self, project_dir: str | Path | None = None, *, layer: str = "gold",
                 descriptions: Mapping[str, str] | None = None, charts: Sequence[ChartSpec] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        folder = project_dir or os.environ.get(PROJECT_ENV) or "."
        self.lake = mnb.connect(folder, snapshot="published")
        self.layer = layer
        self.tables = self.lake.tables(layer)
        self.explorer = GoldExplorer(self.lake, layer=layer, timeout=timeout, pick_layer=False)
        self.descriptions = {name: (descriptions or {}).get(name) or table_description(self.lake, name)
                             for name in self.tables}
        self.chart_specs = list(charts) if charts is not None else default_charts(self.explorer, self.tables)
        self.header = w.HTML(self._header())
        self.tables_html = w.HTML(self._tables())
        self.charts = w.GridBox(self._charts(), layout=w.Layout(grid_template_columns="repeat(2, minmax(0, 1fr))",
                                                                 grid_gap="8px 16px"))
        self.root = w.VBox([w.HTML(r.STYLE), self.header, self.tables_html,
                            w.HTML("<h3>Charts</h3>"), self.charts,
                            w.HTML("<h3>Explore the tables</h3>"), self.explorer.root])
        self.root.add_class("mnb")
        self.root.add_class("mnb-dashboard")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.root._repr_mimebundle_(**kwargs)

    def freshness(self) -> str:
        """How current the data is: the published run, or a note that nothing is published yet."""
        manifest = self.lake.manifest
        if manifest is None:
            return "No pipeline run has been published yet, so this shows the latest data written."
        return (f"Data as of the pipeline run {manifest.run_id}, published "
                f"{r.when(_parse(manifest.published_at))}.")

    def _header(self) -> str:
        project = self.lake.project
        description = f"<p>{html.escape(project.description)}</p>" if project.description else ""
        level = "info" if self.lake.manifest is not None else "warning"
        return (f'<h1 class="mnb-title">{html.escape(project.name)}</h1>{description}'
                f'<div class="mnb-note {level} mnb-freshness">{html.escape(self.freshness())}</div>')

    def _tables(self) -> str:
        rows = []
        for name in self.tables:
            try:
                facts = self.lake.info(name)
                rows.append((name, r.Cell(self.descriptions.get(name) or "", numeric=False), facts["rows"],
                             r.Cell(r.when(facts["last_written"]), numeric=False)))
            except MedallionError as exc:
                rows.append((name, r.Cell(str(exc.message), numeric=False), None, None))
        if not rows:
            return r.note(f"There are no {self.layer} tables yet.", "info")
        return r.html_table(["table", "what it holds", "rows", "updated"], rows, caption=f"{self.layer} tables")

    def _charts(self) -> list[w.Widget]:
        out: list[w.Widget] = []
        for spec in self.chart_specs:
            try:
                rel = self.explorer.sandbox.table(spec.table)
                data = self.explorer.sandbox.run(
                    lambda rel=rel, spec=spec: q.chart_data(rel, x=spec.x, y=spec.y, agg=spec.agg), "a chart")
                parts: list[w.Widget] = [charts.figure(data, title=spec.title or f"{data.title} ({spec.table})",
                                                       height=320)]
                if data.note:
                    parts.append(w.HTML(r.note(data.note)))
                out.append(w.VBox(parts))
            except Exception as exc:  # one broken chart must not take the page down
                out.append(w.HTML(r.note(f"{spec.title or spec.table}: {_problem(exc)}", "error")))
        return out


def _parse(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
