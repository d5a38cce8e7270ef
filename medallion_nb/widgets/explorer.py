"""GoldExplorer: browse, filter, profile, chart and download lake tables without writing code.

The app owns its controls and wires them to the pure builders of
:mod:`medallion_nb.widgets.queries`. Every query runs on the sandboxed,
time-limited connection of :mod:`medallion_nb.widgets.sandbox`; only a page of
rows, aggregates or the CSV the user asked for ever leave DuckDB.
"""

from __future__ import annotations

import contextlib
import html
import io
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import duckdb
import ipywidgets as w
import pyarrow.csv as pacsv

from medallion_nb.errors import LakeError, MedallionError
from medallion_nb.widgets import charts, readonly
from medallion_nb.widgets import queries as q
from medallion_nb.widgets import render as r
from medallion_nb.widgets.grid import DataGrid, DownloadButton
from medallion_nb.widgets.sandbox import DEFAULT_TIMEOUT, ReadOnlyLake
from medallion_nb.widgets.versions import VersionsPane

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

TABS = ("Preview", "Schema", "Profile", "Chart", "History", "Download")
# Up to this many values (rows x columns) the profile counts every column's distinct values
# exactly, which adds about 0.4 s of CPU at the limit (measured: 386 k rows x 19 columns +0.35 s,
# 1.25 M rows x 8 +0.4 s, 1.16 M rows x 19 +0.65 s); above it, hashing every value would be most
# of the wait, so the profile leaves them out: "Count distinct values" counts them on request and
# "Top values of" shows the exact count of its column. (DuckDB's approx_count_distinct is no way
# out: on 60 sets of 50,000 values it was off by 3% typically, by 11% at worst.)
EXACT_DISTINCT_VALUES = 10_000_000
CSV_BATCH_ROWS = 100_000


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


def _problem(exc: Exception) -> str:
    """An exception as one line for the red box: our messages as they are, DuckDB's first line, else the type."""
    if isinstance(exc, MedallionError):
        return str(exc)
    if isinstance(exc, duckdb.Error):
        return f"filter failed: {q._first_line(exc)}"
    return f"filter failed ({type(exc).__name__}: {exc})"


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
        timeout: seconds after which a query is stopped with a message.
        pick_layer: show the layer picker (a dashboard shows one layer only).
    """

    def __init__(self, lake: Lakehouse, table: str | None = None, *, layer: str = "gold", page_size: int = 20,
                 timeout: float = DEFAULT_TIMEOUT, pick_layer: bool = True) -> None:
        self.lake = lake
        if table:
            if not lake.exists(table):  # also refuses names that are not <layer>.<table>
                known = ", ".join(lake.tables()) or "none yet"
                raise LakeError(f"table {table} does not exist (tables: {known})",
                                hint="run the pipeline first (medallion-nb run)")
            if layer and not table.startswith(f"{layer}."):
                layer = table.partition(".")[0]  # list the table's own layer
        self.sandbox = ReadOnlyLake(lake, timeout=timeout)
        self._quiet = False
        # State computed from the controls (what the tests assert on).
        self.base: duckdb.DuckDBPyRelation | None = None
        self.relation: duckdb.DuckDBPyRelation | None = None
        self.info: dict[str, Any] = {}
        self.types: dict[str, str] = {}
        self.type_names: dict[str, str] = {}
        self.conditions: tuple[q.Condition, ...] = ()
        self.where = ""
        self.total_rows = 0
        self.filtered_rows = 0
        self.error: str | None = None
        self.page_rows: list[tuple[Any, ...]] = []
        self.profile: list[q.ColumnProfile] = []
        self.top_values: list[tuple[Any, ...]] = []
        self.top_distinct: int | None = None  # distinct values of the "Top values of" column (exact)
        self.count_distinct = False  # the person asked for every column's distinct values, however large
        self.chart: q.ChartData | None = None
        self._stale: set[int] = set()
        self._build(layer, page_size, pick_layer)
        self._fill_tables(table)

    # -- building -------------------------------------------------------
    def _build(self, layer: str, page_size: int, pick_layer: bool) -> None:
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
        self.grid = DataGrid(page_size=page_size)
        self.schema_html = w.HTML()
        self.profile_html = w.HTML()
        self.distinct_button = w.Button(description="Count distinct values", icon="calculator",
                                        tooltip="count every column's distinct values exactly; "
                                                "on millions of rows this takes a few seconds")
        self.distinct_button.layout.width = "200px"
        self.distinct_button.layout.display = "none"  # shown under a profile that leaves distinct values out
        self.top_column = _wide(w.Dropdown(options=[], description="Top values of"), "300px")
        self.top_html = w.HTML()
        self.chart_x = _wide(w.Dropdown(options=[], description="x"), "220px")
        self.chart_bucket = _wide(w.Dropdown(options=["auto", *q.TIME_BUCKETS], value="auto", description="by"),
                                  "140px")
        self.chart_y = _wide(w.Dropdown(options=[q.ROWS], description="y"), "220px")
        self.chart_agg = _wide(w.Dropdown(options=q.AGGREGATIONS, value="sum"), "90px")
        self.chart_view = w.Box()
        self.chart_note = w.HTML()
        self.versions = VersionsPane(self.lake, self.sandbox, self._current_page)
        self.download = DownloadButton(self._csv, on_error=self._download_failed, label="Download CSV")
        self.download_html = w.HTML()

        self.tabs = w.Tab(children=[
            self.grid,
            w.VBox([self.schema_html]),
            w.VBox([self.profile_html, self.distinct_button, self.top_column, self.top_html]),
            w.VBox([w.HBox([self.chart_x, self.chart_bucket, self.chart_y, self.chart_agg]),
                    self.chart_note, self.chart_view]),
            self.versions.root,
            w.VBox([w.HTML(r.note("Download the rows that match the filter, in the preview's sort order, "
                                  "as a CSV file. Your browser saves it.")),
                    self.download, self.download_html]),
        ])
        self.tabs.titles = TABS
        top = [self.layer, self.table, self.refresh_button] if pick_layer else [self.table, self.refresh_button]
        self.root = w.VBox([
            w.HTML(r.STYLE),
            w.HBox(top),
            self.summary,
            w.HBox([self.filter_column, self.filter_op, self.filter_value]),
            w.HBox([self.where_text, self.apply_button, self.clear_button]),
            self.status,
            self.tabs,
        ])
        self.root.add_class("mnb")
        self.root.add_class("mnb-live")
        for widget, css in ((self.table, "mnb-table-picker"), (self.layer, "mnb-layer"),
                            (self.filter_column, "mnb-filter-column"), (self.filter_op, "mnb-filter-op"),
                            (self.filter_value, "mnb-filter-value"), (self.where_text, "mnb-where"),
                            (self.apply_button, "mnb-apply"), (self.grid, "mnb-preview"),
                            (self.status, "mnb-status"), (self.chart_view, "mnb-chart-view"),
                            (self.distinct_button, "mnb-count-distinct"), (self.top_column, "mnb-top-column")):
            widget.add_class(css)

        # Table errors (say, a table deleted since) show in the summary line, not as a traceback.
        self.layer.observe(lambda _: self._guard(self.summary, lambda: self._fill_tables(None)), "value")
        self.table.observe(lambda _: self._quietly(self._guard, self.summary, self._open), "value")
        self.refresh_button.on_click(lambda _: self._guard(self.summary, self.reload))
        for control in (self.filter_column, self.filter_op, self.filter_value, self.where_text):
            control.observe(lambda _: self._quietly(self._apply), "value")
        self.apply_button.on_click(lambda _: self._apply())
        self.clear_button.on_click(lambda _: self.clear_filter())
        self.grid.observe(lambda _: self._quietly(self._go, 0), ["sort_column", "sort_desc", "page_size"])
        self.grid.observe(lambda change: self._quietly(self._go, change["new"]), "page")
        self.distinct_button.on_click(lambda _: self._guard(self.profile_html, self._count_distinct))
        self.top_column.observe(lambda _: self._quietly(self._guard, self.top_html, self._render_top), "value")
        for control in (self.chart_x, self.chart_bucket, self.chart_y, self.chart_agg):
            control.observe(lambda _: self._quietly(self._guard, self.chart_note, self._render_chart), "value")
        self.tabs.observe(lambda _: self._render_visible(), "selected_index")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.root._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = repr(self)
        return bundle

    def _ipython_display_(self) -> None:
        """Show the app, followed by a static copy of its first page for saved notebooks (see render.fallback)."""
        from IPython.display import display

        display(self.root)
        display({"text/html": self.fallback_html(), "text/plain": repr(self)}, raw=True)

    def fallback_html(self) -> str:
        """What a saved notebook shows without a kernel: the table's facts and the page that was on screen."""
        if self.relation is None:
            return r.fallback(f"{self.name or 'no table'}", "")
        table = r.html_table(self.relation.columns, self.page_rows, first_row=self.grid.first_row,
                             caption=f"{self.name}: rows {self.grid.first_row:,}\u2013"
                                     f"{self.grid.first_row + len(self.page_rows) - 1:,} of {self.filtered_rows:,}")
        return r.fallback(f"{self.name}", table)

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
        except Exception as exc:  # shown to the person, never a traceback in a dashboard
            pane.value = r.note(_problem(exc), "error")

    def _run(self, fn: Callable[[], Any], what: str = "the query") -> Any:
        return self.sandbox.run(fn, what)

    @property
    def name(self) -> str | None:
        """The table being explored (``layer.table``), or None when the layer has no tables."""
        return self.table.value

    # -- table ----------------------------------------------------------
    def _fill_tables(self, table: str | None) -> None:
        names = self.sandbox.tables(self.layer.value or None)
        keep = table or (self.table.value if self.table.value in names else None)
        with self._setting():
            self.table.options = names
            self.table.value = keep or (names[0] if names else None)
        self._open()

    def reload(self) -> None:
        """Re-read the lake folder (tables written since) and reopen the current table."""
        self.lake.refresh()
        self.sandbox.refresh()
        self._fill_tables(None)

    def _open(self) -> None:
        name = self.table.value
        self.base = self.relation = None
        self.error = None
        self.versions.reset()
        if not name:
            where = f"in {self.layer.value}" if self.layer.value else "in the lake"
            self.summary.value = r.note(f"No tables {where} yet. Run the pipeline, then press Refresh.", "info")
            for pane in (self.schema_html, self.profile_html, self.chart_note, self.status, self.top_html):
                pane.value = ""
            self.grid.show([], [], first_row=1, pages=1)
            self.chart_view.children = ()
            self.distinct_button.layout.display = "none"
            return
        self.info = self.lake.info(name)
        self.base = self.sandbox.table(name)
        self.types = q.column_types(self.base)
        self.type_names = q.column_type_names(self.base)
        self.total_rows = self.info["rows"]
        cols = list(self.types)
        numeric = [c for c in cols if q.is_numeric(self.types[c])]
        temporal = [c for c in cols if q.is_temporal(self.types[c])]
        with self._setting():
            self.filter_column.options = [("(no condition)", "")] + [(c, c) for c in cols]
            self.filter_column.value = ""
            self.filter_value.value = ""
            self.where_text.value = ""
            self.grid.sort_column, self.grid.sort_desc, self.grid.page, self.grid.widths = "", False, 0, {}
            self.top_column.options = cols
            self.top_column.value = self._run(lambda: q.repeating_text_column(self.base), "the table's columns") \
                or next((c for c in cols if self.types[c] == "varchar"), cols[0])
            self.chart_x.options = cols
            self.chart_x.value = (temporal or [c for c in cols if self.types[c] == "varchar"] or cols)[0]
            self.chart_bucket.value = "auto"
            self.chart_y.options = [q.ROWS, *numeric]
            self.chart_y.value = _measure(numeric)
            self.chart_agg.value = "sum"
        facts = self.info
        self.summary.value = (
            f'<div class="mnb-muted mnb-facts"><b>{html.escape(name)}</b> · {facts["rows"]:,} rows · '
            f'{len(cols)} columns · version {facts["version"]} · written {r.when(facts["last_written"])} '
            f'by run <code>{html.escape(str(facts["last_run_id"]))}</code></div>')
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
            where = readonly.check_where(self.where_text.value, tables=self.sandbox.tables(),
                                         functions=self.sandbox.functions, types=self.sandbox.types)
            rel = q.filter_relation(self.base, conditions, where)
            filtered = bool(conditions or where)
            count = self._run(lambda: q.count_rows(rel), "counting the matching rows") if filtered \
                else self.total_rows
        except Exception as exc:  # every refused or failing filter goes to the red box
            self.error = _problem(exc)
            self.status.value = r.note(f"{self.error}\nThe previous filter is still applied.", "error")
            return
        self.error = None
        self.relation, self.conditions, self.where, self.filtered_rows = rel, conditions, where, count
        if filtered:
            text = q.describe_filter(conditions, self.where_text.value, self.types)
            self.status.value = r.note(f"{count:,} of {self.total_rows:,} rows match {text}", "ok")
        else:
            self.status.value = ""
        self.download_html.value = ""
        with self._setting():
            self.grid.page = 0
        self.count_distinct = False
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
            0: (self.status, self._render_preview), 1: (self.schema_html, self._render_schema),
            2: (self.profile_html, self._render_profile), 3: (self.chart_note, self._render_chart),
            4: (self.versions.compare_html, self._render_history), 5: (self.download_html, lambda: None),
        }[index]
        self._guard(pane, renderer)

    def show(self, tab: str) -> None:
        """Switch to a tab by title (``Preview``, ``Profile``, ``Chart``, ...), computing it if needed."""
        self.tabs.selected_index = TABS.index(tab)

    @property
    def page(self) -> int:
        """The preview page on screen (0-based)."""
        return self.grid.page

    def _sorted(self, rel: duckdb.DuckDBPyRelation, *, limit: int | None, offset: int = 0) -> duckdb.DuckDBPyRelation:
        return q.page_relation(rel, order_by=self.grid.sort_column or None, descending=self.grid.sort_desc,
                               limit=limit, offset=offset)

    def _current_page(self, rel: duckdb.DuckDBPyRelation) -> tuple[duckdb.DuckDBPyRelation, int]:
        size = self.grid.page_size
        return self._sorted(rel, limit=size, offset=self.grid.page * size), self.grid.page * size + 1

    def _go(self, page: int) -> None:
        pages = max(1, -(-self.filtered_rows // self.grid.page_size))
        with self._setting():
            self.grid.page = min(max(page, 0), pages - 1)
        self._stale.add(0)
        if self.versions.diff:
            self._stale.add(4)
        self._render_visible()

    def _render_preview(self) -> None:
        size = self.grid.page_size
        first = self.grid.page * size
        rows = self._run(lambda: self._sorted(self.relation, limit=size, offset=first).fetchall(), "the page")
        self.page_rows = rows
        shown = f"rows {first + 1:,}\u2013{first + len(rows):,}" if rows else "no rows"
        extra = f" (filtered from {self.total_rows:,})" if self.filtered_rows != self.total_rows else ""
        columns = [(c, self.type_names[c], q.is_numeric(self.types[c])) for c in self.relation.columns]
        self.grid.empty_text = "no rows match the filter"
        self.grid.show(columns, rows, first_row=first + 1, pages=-(-self.filtered_rows // size),
                       info=f"{shown} of {self.filtered_rows:,}{extra}")

    def _render_schema(self) -> None:
        rows = list(self.type_names.items())
        self.schema_html.value = r.html_table(["column", "type"], rows, caption=f"{self.name}: {len(rows)} columns")

    def _count_distinct(self) -> None:
        """Profile again with every column's distinct values counted exactly (the button under a large profile)."""
        self.count_distinct = True
        try:
            self._render_profile_table()
        except Exception as exc:  # e.g. the time limit: keep the profile on screen, say why above it
            self.count_distinct = False
            self._render_profile_table()
            self.profile_html.value = r.note(_problem(exc), "error") + self.profile_html.value

    def _render_profile(self) -> None:
        self._render_profile_table()
        self._render_top()

    def _render_profile_table(self) -> None:
        exact = self.count_distinct or self.filtered_rows * len(self.types) <= EXACT_DISTINCT_VALUES
        # Without a filter the relation is the table's files: their statistics answer counts, min and max.
        files = self.sandbox.files(self.name) if not (self.conditions or self.where) else ()
        self.profile = self._run(lambda: q.profile_columns(self.relation, distinct=exact, files=files,
                                                           con=self.sandbox.con), "the profile")
        total = self.filtered_rows
        rows = [(p.column, self.type_names.get(p.column, p.type), p.count, p.nulls, r.Cell(r.percent(p.nulls, total)),
                 *([p.distinct] if exact else []), p.minimum, p.maximum,
                 p.mean if q.is_numeric(p.type) else r.Cell("", numeric=False)) for p in self.profile]
        head = ["column", "type", "values", "nulls", "null %", *(["distinct"] if exact else []), "min", "max", "mean"]
        caption = f"profile of {total:,} rows" + ("" if exact else
                                                  " (distinct values left out: \u201cCount distinct values\u201d "
                                                  "counts them, \u201cTop values of\u201d gives one column\u2019s)")
        self.profile_html.value = r.html_table(head, rows, caption=caption)
        self.distinct_button.layout.display = "none" if exact else ""

    def _render_top(self) -> None:
        if self.relation is None or not self.top_column.value:
            return
        column = self.top_column.value
        top = self._run(lambda: q.top_values(self.relation, column), "top values")
        self.top_values, self.top_distinct = top.values, top.distinct
        rows = [(value, n, r.Cell(r.percent(n, self.filtered_rows))) for value, n in self.top_values]
        caption = f"{top.distinct:,} distinct value{'' if top.distinct == 1 else 's'} of {column}"
        self.top_html.value = r.html_table([column, "rows", "% of rows"], rows, caption=caption)

    def _render_chart(self) -> None:
        if self.relation is None:
            return
        self.chart_bucket.disabled = not q.is_temporal(self.types.get(self.chart_x.value, ""))
        self.chart_agg.disabled = self.chart_y.value == q.ROWS
        bucket = "auto" if self.chart_bucket.disabled else self.chart_bucket.value
        self.chart = self._run(lambda: q.chart_data(self.relation, x=self.chart_x.value, y=self.chart_y.value,
                                                    agg=self.chart_agg.value, bucket=bucket), "the chart")
        if self.chart_view.children:
            charts.update(self.chart_view.children[0], self.chart)
        else:
            self.chart_view.children = (charts.figure(self.chart),)
        self.chart_note.value = r.note(self.chart.note) if self.chart.note else ""

    def _render_history(self) -> None:
        self.versions.show(self.name, self.info["version"], self.relation, self.conditions, self.where)

    # -- download ---------------------------------------------------------
    def _csv(self) -> tuple[str, str, Iterable[bytes], Callable[[], str]]:
        """The filtered rows, in the preview's order, as CSV pieces (nothing is written on the server)."""
        if self.relation is None:
            raise LakeError("there is no table to download")
        rel = self._sorted(self.relation, limit=None)
        suffix = "-filtered" if self.filtered_rows != self.total_rows else ""
        count = [0]

        def pieces() -> Iterator[bytes]:
            with self.sandbox.deadline("the download"):
                reader = rel.to_arrow_reader(CSV_BATCH_ROWS)
                sink = io.BytesIO()
                options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
                with pacsv.CSVWriter(sink, reader.schema, write_options=options) as writer:
                    for batch in reader:
                        writer.write_batch(batch)
                        count[0] += batch.num_rows
                        yield _take(sink)
                yield _take(sink)

        self.download_html.value = ""
        return (f"{self.name}{suffix}.csv", "text/csv", pieces(),
                lambda: f"{count[0]:,} rows{' matching the filter' if suffix else ''}")

    def _download_failed(self, message: str) -> None:
        self.download_html.value = r.note(message, "error")


def _take(sink: io.BytesIO) -> bytes:
    data = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return data

