"""The explorer's History tab: a table's versions, and an earlier one side by side with the current one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import ipywidgets as w

from medallion_nb.errors import MedallionError
from medallion_nb.widgets import queries as q
from medallion_nb.widgets import render as r
from medallion_nb.widgets.sandbox import ReadOnlyLake

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

# Given a relation, the page of it the explorer shows (its sort, page size and page), and that page's first row.
Pager = Callable[[duckdb.DuckDBPyRelation], tuple[duckdb.DuckDBPyRelation, int]]
NO_VERSION = ("(choose a version)", None)


class VersionsPane:
    """Lists the versions of a table (which run wrote each) and compares one with the current version.

    The earlier version gets the same filter, sort and page as the current one.
    """

    def __init__(self, lake: Lakehouse, sandbox: ReadOnlyLake, pager: Pager) -> None:
        self.lake = lake
        self.sandbox = sandbox
        self._pager = pager
        self.history: list[dict[str, Any]] = []
        self.diff: q.VersionDiff | None = None
        self._table: tuple[str, int, duckdb.DuckDBPyRelation, Sequence[q.Condition], str] | None = None
        self._quiet = False
        self.history_html = w.HTML()
        self.version = w.Dropdown(options=[NO_VERSION], description="Compare with",
                                  layout=w.Layout(width="460px"), style={"description_width": "initial"})
        self.version.add_class("mnb-compare-version")
        self.compare_html = w.HTML()
        self.root = w.VBox([self.history_html, self.version, self.compare_html])
        self.version.observe(lambda _: None if self._quiet else self._guarded(self._render_compare), "value")

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # shown in the pane, never a traceback
            self.compare_html.value = r.note(str(exc) if isinstance(exc, MedallionError)
                                             else f"comparison failed: {type(exc).__name__}: {exc}", "error")

    def reset(self) -> None:
        """Forget the table (another one was opened); the version picker goes back to empty."""
        self._table, self.history, self.diff = None, [], None
        self._set_options([NO_VERSION])
        self.history_html.value = self.compare_html.value = ""

    def _set_options(self, options: list[tuple[str, int | None]]) -> None:
        kept = self.version.value
        self._quiet = True
        try:
            self.version.options = options
            self.version.value = kept if kept in {v for _, v in options} else None
        finally:
            self._quiet = False

    def show(self, name: str, version: int, relation: duckdb.DuckDBPyRelation,
             conditions: Sequence[q.Condition], where: str) -> None:
        """Render the history of ``name`` (current ``version``) and, if one is picked, the comparison.

        ``relation`` is the current version filtered by ``conditions`` and ``where``.
        """
        self._table = (name, version, relation, conditions, where)
        self.history = self.lake.history(name)
        rows = [(h["version"], r.when(h["timestamp"]), h["operation"], h["mode"], h["rows"], h["run_id"],
                 h["notebook"]) for h in self.history]
        self.history_html.value = r.html_table(
            ["version", "written", "operation", "mode", "rows written", "run id", "notebook"], rows,
            caption=f"{name}: {len(rows)} versions, newest first")
        self._set_options([NO_VERSION] + [
            (f"v{h['version']} · {r.when(h['timestamp'])} · run {h['run_id']}", h["version"])
            for h in self.history if h["version"] != version])
        self._render_compare()

    def _render_compare(self) -> None:
        self.diff, self.compare_html.value = None, ""
        if self.version.value is None or self._table is None:
            return
        name, current, now, conditions, where = self._table
        version = self.version.value
        try:
            then = q.filter_relation(self.sandbox.table(name, version=version), conditions, where)
            self.diff = self.sandbox.run(lambda: q.compare_relations(now, then), "the comparison")
            page, first = self._pager(then)
            old_table = r.html_table(then.columns, self.sandbox.run(page.fetchall, "the page"), first_row=first,
                                     caption=f"version {version}: {self.diff.rows_then:,} rows")
            facts = r.note(self.diff.summary(version))
        except (MedallionError, duckdb.Error) as exc:
            old_table, facts = "", r.note(f"version {version}: the filter or sort does not apply ({exc})", "error")
        page, first = self._pager(now)
        now_table = r.html_table(now.columns, self.sandbox.run(page.fetchall, "the page"), first_row=first,
                                 caption=f"current (version {current})")
        self.compare_html.value = (f'{facts}<div class="mnb-side-by-side">'
                                   f'<div class="mnb-scroll">{now_table}</div>'
                                   f'<div class="mnb-scroll">{old_table}</div></div>')
