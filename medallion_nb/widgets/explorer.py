"""GoldExplorer: browse, filter, profile, chart and download lake tables without writing code.

The app owns its controls and wires them to the pure builders of
:mod:`medallion_nb.widgets.queries`; it renders with
:mod:`medallion_nb.widgets.render`. Only a page of rows, aggregates or the
CSV the user asked for ever leave DuckDB.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import ipywidgets as w

from medallion_nb.errors import LakeError, MedallionError
from medallion_nb.lakehouse import Lakehouse
from medallion_nb.widgets import queries as q
from medallion_nb.widgets import readonly
from medallion_nb.widgets import render as r
from medallion_nb.widgets.versions import VersionsPane

TABS = ("Preview", "Schema", "Profile", "Chart", "History", "Download")
PAGE_SIZES = (10, 20, 50, 100, 500)
EXACT_DISTINCT_ROWS = 2_000_000  # above this many rows the profile counts distinct values approximately
MAX_LINK_BYTES = 20 * 1024 * 1024  # larger CSVs are written to disk and not embedded in the page


def _wide(widget: w.Widget, width: str) -> w.Widget:
    widget.layout.width = width
    widget.style.description_width = "initial"
    return widget


def _measure(numeric: list[str]) -> str:
    """The column a first chart sums: a money-like column if there is one, else the last numeric one."""
    for hint in ("revenue", "amount", "sales", "total", "value"):
        for column in numeric:
            if hint in column.lower():
                return column
    return numeric[-1] if numeric else q.ROWS


class GoldExplorer:
    """An ipywidgets app over a lakehouse: pick a table, filter it, page through it, profile and chart it.

    Example:
        >>> from medallion_nb.widgets import GoldExplorer
        >>> GoldExplorer(lake)                  # the gold tables
        >>> GoldExplorer(lake, "silver.orders")  # any table of any layer

    Args:
        lake: the lakehouse handle from :func:`medallion_nb.connect`.
        table: the table to open first (``layer.table``); default: the first table of ``layer``.
        layer: the layer whose tables are listed; ``""`` lists every layer.
        page_size: rows per preview page.
        download_dir: where CSV downloads are written (default: ``exports/explorer`` in the project).
    """

    def __init__(self, lake: Lakehouse, table: str | None = None, *, layer: str = "gold",
                 page_size: int = 20, download_dir: str | Path | None = None) -> None:
        self.lake = lake
        if table:
            if not lake.exists(table):  # also refuses names that are not <layer>.<table>
                known = ", ".join(lake.tables()) or "none yet"
                raise LakeError(f"table {table} does not exist (tables: {known})",
                                hint="run the pipeline first (medallion-nb run)")
            if layer and not table.startswith(f"{layer}."):
                layer = table.partition(".")[0]  # list the table's own layer
        project = lake.project
        self.download_dir = Path(download_dir) if download_dir else (
            (project.export_dir or project.root / "exports") / "explorer")
        self._functions = readonly.known_functions(lake.con)
        self._quiet = False
        # State computed from the controls (what the tests assert on).
        self.base: duckdb.DuckDBPyRelation | None = None
        self.relation: duckdb.DuckDBPyRelation | None = None
        self.info: dict[str, Any] = {}
        self.types: dict[str, str] = {}
        self.conditions: tuple[q.Condition, ...] = ()
        self.where = ""
        self.total_rows = 0
        self.filtered_rows = 0
        self.error: str | None = None
        self.page = 0
        self.page_rows: list[tuple[Any, ...]] = []
        self.profile: list[q.ColumnProfile] = []
        self.top_values: list[tuple[Any, ...]] = []
        self.chart: q.ChartData | None = None
        self.download_path: Path | None = None
        self._stale: set[int] = set()
        self._build(layer, page_size)
        self._fill_tables(table)

    # -- building -------------------------------------------------------
    def _build(self, layer: str, page_size: int) -> None:
        layers = [(name, name) for name in self.lake.layers] + [("all layers", "")]
        self.layer = _wide(w.Dropdown(options=layers, value=layer, description="Layer"), "180px")
        self.table = _wide(w.Dropdown(options=[], description="Table"), "340px")
        self.refresh_button = w.Button(description="Refresh", icon="refresh", tooltip="re-read the lake folder")
        self.summary = w.HTML()
        self.filter_column = _wide(w.Dropdown(options=[("(no condition)", "")], description="Filter"), "260px")
        self.filter_op = _wide(w.Dropdown(options=q.OPERATORS, value="="), "120px")
        self.filter_value = _wide(w.Text(placeholder="value (in: a, b, c)", continuous_update=False), "220px")
        self.where_text = _wide(w.Text(description="WHERE", continuous_update=False,
                                       placeholder="optional SQL condition, e.g. revenue > 1000 AND country = 'DE'"),
                                "620px")
        self.apply_button = w.Button(description="Apply", button_style="primary", icon="filter")
        self.clear_button = w.Button(description="Clear", icon="times")
        self.status = w.HTML()
        # Preview
        self.sort_column = _wide(w.Dropdown(options=[("(table order)", "")], description="Sort by"), "260px")
        self.sort_desc = w.Checkbox(description="descending", indent=False, layout=w.Layout(width="110px"))
        self.page_size = _wide(w.Dropdown(options=PAGE_SIZES, value=page_size, description="Rows"), "120px")
        self.prev_button = w.Button(description="", icon="chevron-left", tooltip="previous page",
                                    layout=w.Layout(width="40px"))
        self.next_button = w.Button(description="", icon="chevron-right", tooltip="next page",
                                    layout=w.Layout(width="40px"))
        self.page_label = w.HTML()
        self.preview_html = w.HTML()
        # Schema, profile, chart, history, download
        self.schema_html = w.HTML()
        self.profile_html = w.HTML()
        self.top_column = _wide(w.Dropdown(options=[], description="Top values of"), "300px")
        self.top_html = w.HTML()
        self.chart_x = _wide(w.Dropdown(options=[], description="x"), "220px")
        self.chart_bucket = _wide(w.Dropdown(options=[("as is", "")] + [(b, b) for b in q.BUCKETS],
                                             description="by"), "130px")
        self.chart_y = _wide(w.Dropdown(options=[q.ROWS], description="y"), "220px")
        self.chart_agg = _wide(w.Dropdown(options=q.AGGREGATIONS, value="sum"), "90px")
        self.chart_kind = w.ToggleButtons(options=["bar", "line"], value="bar",
                                          style={"button_width": "60px"})
        self.chart_html = w.HTML()
        self.versions = VersionsPane(self.lake, self._current_page)
        self.download_button = w.Button(description="Prepare CSV", icon="download",
                                        tooltip="write the filtered, sorted rows as CSV")
        self.download_html = w.HTML()

        self.tabs = w.Tab(children=[
            w.VBox([w.HBox([self.sort_column, self.sort_desc, self.page_size, self.prev_button,
                            self.next_button, self.page_label]), self.preview_html]),
            w.VBox([self.schema_html]),
            w.VBox([self.profile_html, self.top_column, self.top_html]),
            w.VBox([w.HBox([self.chart_x, self.chart_bucket, self.chart_y, self.chart_agg, self.chart_kind]),
                    self.chart_html]),
            self.versions.root,
            w.VBox([w.HTML(r.note("Download the rows that match the filter, in the preview's sort order.")),
                    self.download_button, self.download_html]),
        ])
        self.tabs.titles = TABS
        self.root = w.VBox([
            w.HTML(r.STYLE),
            w.HBox([self.layer, self.table, self.refresh_button]),
            self.summary,
            w.HBox([self.filter_column, self.filter_op, self.filter_value]),
            w.HBox([self.where_text, self.apply_button, self.clear_button]),
            self.status,
            self.tabs,
        ])
        self.root.add_class("mnb")
        for widget, css in ((self.table, "mnb-table-picker"), (self.layer, "mnb-layer"),
                            (self.filter_column, "mnb-filter-column"), (self.filter_op, "mnb-filter-op"),
                            (self.filter_value, "mnb-filter-value"), (self.where_text, "mnb-where"),
                            (self.apply_button, "mnb-apply"), (self.preview_html, "mnb-preview"),
                            (self.status, "mnb-status"), (self.download_button, "mnb-download-button")):
            widget.add_class(css)

        # Table errors (say, a table deleted since) show in the summary line, not as a traceback.
        self.layer.observe(lambda _: self._guard(self.summary, lambda: self._fill_tables(None)), "value")
        self.table.observe(lambda _: self._quietly(self._guard, self.summary, self._open), "value")
        self.refresh_button.on_click(lambda _: self._guard(self.summary, self.reload))
        for control in (self.filter_column, self.filter_op, self.filter_value, self.where_text):
            control.observe(lambda _: self._quietly(self._apply), "value")
        self.apply_button.on_click(lambda _: self._apply())
        self.clear_button.on_click(lambda _: self.clear_filter())
        for control in (self.sort_column, self.sort_desc, self.page_size):
            control.observe(lambda _: self._quietly(self._go, 0), "value")
        self.prev_button.on_click(lambda _: self._go(self.page - 1))
        self.next_button.on_click(lambda _: self._go(self.page + 1))
        self.top_column.observe(lambda _: self._quietly(self._guard, self.top_html, self._render_top), "value")
        for control in (self.chart_x, self.chart_bucket, self.chart_y, self.chart_agg, self.chart_kind):
            control.observe(lambda _: self._quietly(self._guard, self.chart_html, self._render_chart), "value")
        self.download_button.on_click(lambda _: self._guard(self.download_html, self._download))
        self.tabs.observe(lambda _: self._render_visible(), "selected_index")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.root._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = repr(self)  # what a static copy of the notebook shows
        return bundle

    def __repr__(self) -> str:
        return f"<GoldExplorer {self.name or 'no table'}: {self.filtered_rows:,} of {self.total_rows:,} rows>"

    # -- plumbing -------------------------------------------------------
    def _quietly(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run an observer unless the app itself is setting controls."""
        if not self._quiet:
            fn(*args)

    @contextlib.contextmanager
    def _setting(self) -> Iterator[None]:
        """Set controls without triggering the app's observers."""
        before, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = before

    def _guard(self, pane: w.HTML, fn: Callable[[], None]) -> None:
        """Run a pane's renderer; a failure is shown in the pane instead of raised into the kernel."""
        try:
            fn()
        except (MedallionError, duckdb.Error) as exc:
            pane.value = r.note(str(exc), "error")

    @property
    def name(self) -> str | None:
        """The table being explored (``layer.table``), or None when the layer has no tables."""
        return self.table.value

    # -- table ----------------------------------------------------------
    def _fill_tables(self, table: str | None) -> None:
        names = self.lake.tables(self.layer.value or None)
        keep = table or (self.table.value if self.table.value in names else None)
        with self._setting():
            self.table.options = names
            self.table.value = keep or (names[0] if names else None)
        self._open()

    def reload(self) -> None:
        """Re-read the lake folder (tables written since) and reopen the current table."""
        self.lake.refresh()
        self._fill_tables(None)

    def _open(self) -> None:
        name = self.table.value
        self.base = self.relation = None
        self.error = None
        self.versions.reset()
        if not name:
            where = f"in {self.layer.value}" if self.layer.value else "in the lake"
            self.summary.value = r.note(f"No tables {where} yet. Run the pipeline (medallion-nb run), "
                                        "then press Refresh.", "info")
            for pane in (self.preview_html, self.schema_html, self.profile_html, self.chart_html,
                         self.status, self.top_html, self.page_label):
                pane.value = ""
            return
        self.info = self.lake.info(name)
        self.base = self.lake.table(name)
        self.types = q.column_types(self.base)
        self.total_rows = self.info["rows"]
        cols = list(self.types)
        numeric = [c for c in cols if q.is_numeric(self.types[c])]
        temporal = [c for c in cols if q.is_temporal(self.types[c])]
        with self._setting():
            self.filter_column.options = [("(no condition)", "")] + [(c, c) for c in cols]
            self.filter_column.value = ""
            self.filter_value.value = ""
            self.where_text.value = ""
            self.sort_column.options = [("(table order)", "")] + [(c, c) for c in cols]
            self.sort_column.value = ""
            self.top_column.options = cols
            self.top_column.value = next((c for c in cols if self.types[c] == "varchar"), cols[0])
            self.chart_x.options = cols
            self.chart_x.value = (temporal or [c for c in cols if self.types[c] == "varchar"] or cols)[0]
            self.chart_bucket.value = ""
            self.chart_y.options = [q.ROWS, *numeric]
            self.chart_y.value = _measure(numeric)
            self.chart_agg.value = "sum"
            self.chart_kind.value = "line" if temporal else "bar"
        last = self.info
        self.summary.value = (
            f'<div class="mnb-muted"><b>{html.escape(name)}</b> · {last["rows"]:,} rows · '
            f'{len(cols)} columns · version {last["version"]} · last written {r.when(last["last_written"])} '
            f'by run <code>{html.escape(str(last["last_run_id"]))}</code></div>')
        self._apply()

    # -- filter -----------------------------------------------------------
    def _conditions(self) -> tuple[q.Condition, ...]:
        column, op, value = self.filter_column.value, self.filter_op.value, self.filter_value.value
        if not column or (op not in q.NO_VALUE_OPERATORS and not value.strip()):
            return ()  # an incomplete condition filters nothing yet
        return (q.Condition(column, op, value),)

    def _apply(self) -> None:
        """Rebuild the filtered relation from the controls and refresh what is visible."""
        if self.base is None:
            return
        try:
            conditions = self._conditions()
            where = readonly.check_where(self.where_text.value, tables=self.lake.tables(), functions=self._functions)
            rel = q.filter_relation(self.base, conditions, where)
            filtered = bool(conditions or where)
            count = q.count_rows(rel) if filtered else self.total_rows
        except (MedallionError, duckdb.Error) as exc:
            self.error = str(exc) if isinstance(exc, MedallionError) else f"filter failed: {q._first_line(exc)}"
            self.status.value = r.note(f"{self.error}\nThe previous filter is still applied.", "error")
            return
        self.error = None
        self.relation, self.conditions, self.where, self.filtered_rows = rel, conditions, where, count
        if filtered:
            text = q.describe_filter(conditions, self.where_text.value)
            self.status.value = r.note(f"{count:,} of {self.total_rows:,} rows match {text}", "ok")
        else:
            self.status.value = ""
        self.download_path = None
        self.download_html.value = ""
        self.page = 0
        self._stale = set(range(len(TABS)))
        self._render_visible()

    def clear_filter(self) -> None:
        """Remove the condition and the WHERE expression."""
        with self._setting():
            self.filter_column.value = ""
            self.filter_value.value = ""
            self.where_text.value = ""
        self._apply()

    # -- panes ------------------------------------------------------------
    def _render_visible(self) -> None:
        index = self.tabs.selected_index or 0
        if self.relation is None or index not in self._stale:
            return
        self._stale.discard(index)
        pane, renderer = {
            0: (self.preview_html, self._render_preview), 1: (self.schema_html, self._render_schema),
            2: (self.profile_html, self._render_profile), 3: (self.chart_html, self._render_chart),
            4: (self.versions.compare_html, self._render_history), 5: (self.download_html, lambda: None),
        }[index]
        self._guard(pane, renderer)

    def show(self, tab: str) -> None:
        """Switch to a tab by title (``Preview``, ``Profile``, ``Chart``, ...), computing it if needed."""
        self.tabs.selected_index = TABS.index(tab)

    def _page_relation(self, rel: duckdb.DuckDBPyRelation, *, limit: int | None, offset: int = 0
                       ) -> duckdb.DuckDBPyRelation:
        return q.page_relation(rel, order_by=self.sort_column.value or None, descending=self.sort_desc.value,
                               limit=limit, offset=offset)

    def _current_page(self, rel: duckdb.DuckDBPyRelation) -> tuple[duckdb.DuckDBPyRelation, int]:
        size = self.page_size.value
        return self._page_relation(rel, limit=size, offset=self.page * size), self.page * size + 1

    def _go(self, page: int) -> None:
        pages = max(1, -(-self.filtered_rows // self.page_size.value))
        self.page = min(max(page, 0), pages - 1)
        self._stale.add(0)
        if self.versions.diff:
            self._stale.add(4)
        self._render_visible()

    def _render_preview(self) -> None:
        size = self.page_size.value
        first = self.page * size
        rows = self._page_relation(self.relation, limit=size, offset=first).fetchall()
        self.page_rows = rows
        shown = f"rows {first + 1:,}&ndash;{first + len(rows):,}" if rows else "no rows"
        extra = f" (filtered from {self.total_rows:,})" if self.filtered_rows != self.total_rows else ""
        self.page_label.value = f'<span class="mnb-muted">{shown} of {self.filtered_rows:,}{extra}</span>'
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = first + len(rows) >= self.filtered_rows
        table = r.html_table(self.relation.columns, rows, first_row=first + 1, empty="no rows match the filter")
        self.preview_html.value = f'<div class="mnb-scroll">{table}</div>'

    def _render_schema(self) -> None:
        rows = [(name, dtype) for name, dtype in self.info["columns"]]
        self.schema_html.value = r.html_table(["column", "type"], rows, caption=f"{self.name}: {len(rows)} columns")

    def _render_profile(self) -> None:
        exact = self.filtered_rows <= EXACT_DISTINCT_ROWS
        self.profile = q.profile_columns(self.relation, exact_distinct=exact)
        total = self.filtered_rows
        rows = [(p.column, p.type, p.count, p.nulls, round(100 * p.nulls / total, 1) if total else 0.0,
                 p.distinct, p.minimum, p.maximum, p.mean) for p in self.profile]
        head = ["column", "type", "values", "nulls", "null %", "distinct" if exact else "≈ distinct",
                "min", "max", "mean"]
        self.profile_html.value = r.html_table(head, rows, caption=f"profile of {total:,} rows")
        self._render_top()

    def _render_top(self) -> None:
        if self.relation is None or not self.top_column.value:
            return
        self.top_values = q.top_values_relation(self.relation, self.top_column.value).fetchall()
        total = self.filtered_rows or 1
        rows = [(value, n, round(100 * n / total, 1)) for value, n in self.top_values]
        self.top_html.value = r.html_table([self.top_column.value, "rows", "%"], rows)

    def _render_chart(self) -> None:
        if self.relation is None:
            return
        self.chart_bucket.disabled = not q.is_temporal(self.types.get(self.chart_x.value, ""))
        bucket = "" if self.chart_bucket.disabled else self.chart_bucket.value
        self.chart_agg.disabled = self.chart_y.value == q.ROWS
        kind = self.chart_kind.value
        self.chart = q.chart_data(self.relation, x=self.chart_x.value, y=self.chart_y.value,
                                  agg=self.chart_agg.value, bucket=bucket,
                                  max_points=50 if kind == "bar" else 500)
        svg = r.svg_chart(self.chart.labels, self.chart.values, kind=kind, title=self.chart.title)
        more = r.note("Only the first groups are shown; filter to see others.") if self.chart.truncated else ""
        self.chart_html.value = svg + more

    def _render_history(self) -> None:
        self.versions.show(self.name, self.info["version"], self.relation, self.conditions, self.where)

    def _download(self) -> None:
        rel = self._page_relation(self.relation, limit=None)
        self.download_dir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        suffix = "-filtered" if self.filtered_rows != self.total_rows else ""
        filename = f"{self.name}{suffix}.csv"
        path = self.download_dir / f"{self.name}{suffix}-{stamp}.csv"
        try:
            rel.write_csv(str(path), header=True)
        except duckdb.Error as exc:
            raise q.FilterError(f"cannot write {path}: {q._first_line(exc)}") from exc
        self.download_path = path
        size = path.stat().st_size
        where = f"{self.filtered_rows:,} rows, {size / 1024:,.1f} KiB, saved as {path}"
        if size <= MAX_LINK_BYTES:
            self.download_html.value = r.download_link(path.read_bytes(), filename) + r.note(where, "ok")
        else:
            self.download_html.value = r.note(f"{where} (too large to download from the page; "
                                              "open it from the file browser)", "ok")
