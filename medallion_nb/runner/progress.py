"""Progress of a run while it goes, and its summary at the end.

A :class:`RunObserver` hears about the run: notebooks starting and finishing,
each cell as it starts (with elapsed time and rows written so far), layers
settling. :class:`ConsoleProgress` prints it: in a terminal one status line that
is rewritten in place, elsewhere (a pipe, a log file, Kestra) one plain line
per event. :class:`NotebookProgress` shows it as a widget when ``run_pipeline``
is called from a notebook.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from medallion_nb.reporting import KESTRA_ENV, kestra_payload
from medallion_nb.runner.record import LayerRecord, NotebookRecord, RunRecord

LABEL_WIDTH = 60


class RunObserver:
    """Hears about a run as it goes. Methods do nothing by default; they may be called from several threads."""

    def run_started(self, record: RunRecord) -> None:
        """The run folder and record exist; no notebook has started."""

    def layer_started(self, record: RunRecord, layer: LayerRecord) -> None:
        """The first notebook of a layer is starting."""

    def notebook_started(self, record: RunRecord, notebook: NotebookRecord) -> None:
        """A notebook's kernel is about to execute it."""

    def cell_started(self, record: RunRecord, notebook: NotebookRecord, index: int, total: int, label: str,
                     elapsed: float, rows: int) -> None:
        """Cell ``index`` (of ``total``, counted like the source notebook) starts; ``rows`` written so far."""

    def notebook_finished(self, record: RunRecord, notebook: NotebookRecord) -> None:
        """A notebook succeeded, failed, was skipped or was up to date."""

    def layer_finished(self, record: RunRecord, layer: LayerRecord) -> None:
        """Every notebook of a layer is done."""

    def run_finished(self, record: RunRecord) -> None:
        """The run is over and its record saved (called before a failure is raised)."""


def default_observer() -> RunObserver:
    """A progress widget inside a Jupyter kernel (when ipywidgets is there), else a silent observer."""
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        try:
            return NotebookProgress()
        except ImportError:
            return RunObserver()
    return RunObserver()


class ConsoleProgress(RunObserver):
    """Prints progress to ``progress`` (default stderr) and the summary to ``summary`` (default stdout).

    Args:
        progress: where progress goes.
        summary: where the final table goes.
        live: rewrite one status line in place (default: when ``progress`` is a
            terminal and the run is not under Kestra); otherwise one line per cell.
    """

    def __init__(self, progress: TextIO | None = None, summary: TextIO | None = None,
                 live: bool | None = None) -> None:
        self.progress = progress or sys.stderr
        self.summary = summary or sys.stdout
        if live is None:
            live = _isatty(self.progress) and not os.environ.get(KESTRA_ENV) and os.environ.get("TERM") != "dumb"
        self.live = live
        self._mutex = threading.Lock()
        self._cells: dict[str, tuple[int, int, str, int, float]] = {}  # notebook -> index, total, label, rows, t0
        self._shown = 0  # width of the status line on screen
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._layers = 0
        self._done_layers = 0

    # -- events ----------------------------------------------------------------------
    def run_started(self, record: RunRecord) -> None:
        notebooks = sum(len(layer.notebooks) for layer in record.layers)
        layers = ", ".join(layer.name for layer in record.layers)
        self._layers = len(record.layers)
        self._line(f"run {record.run_id} of {record.project}: {_plural(notebooks, 'notebook')} ({layers})")
        if self.live:
            self._ticker = threading.Thread(target=self._tick, name="medallion-progress", daemon=True)
            self._ticker.start()

    def notebook_started(self, record: RunRecord, notebook: NotebookRecord) -> None:
        with self._mutex:
            self._cells[notebook.notebook] = (0, 0, "starting", 0, time.monotonic())

    def cell_started(self, record: RunRecord, notebook: NotebookRecord, index: int, total: int, label: str,
                     elapsed: float, rows: int) -> None:
        with self._mutex:
            t0 = self._cells.get(notebook.notebook, (0, 0, "", 0, time.monotonic()))[4]
            self._cells[notebook.notebook] = (index, total, label, rows, t0)
        if not self.live:
            self._line(f"{notebook.notebook}: cell {index}/{total} {_short(label)} "
                       f"({elapsed:.1f}s, {_plural(rows, 'row')} written)")

    def notebook_finished(self, record: RunRecord, notebook: NotebookRecord) -> None:
        with self._mutex:
            self._cells.pop(notebook.notebook, None)
        layer = next(lay for lay in record.layers if notebook in lay.notebooks)
        if notebook.status in ("skipped", "up to date"):
            result = f"{notebook.status} ({notebook.reason})" if notebook.reason else notebook.status
        else:
            tables = [t for t in layer.tables if t.notebook == notebook.notebook]
            word = "ok" if notebook.status == "succeeded" else "FAILED"
            took = f" {notebook.duration_s:.1f}s" if notebook.duration_s is not None else ""
            rows = sum(t.rows for t in tables)
            result = f"{word}{took} ({_plural(len(tables), 'table')}, {_plural(rows, 'row')})"
        self._line(f"{notebook.notebook}: {result}")

    def layer_finished(self, record: RunRecord, layer: LayerRecord) -> None:
        self._done_layers += 1
        self._line(f"[{self._done_layers}/{self._layers}] {layer.name} {layer_result(layer)}")

    def run_finished(self, record: RunRecord) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._clear()
        print(format_summary(record), file=self.summary, flush=True)

    # -- output ----------------------------------------------------------------------
    def _line(self, text: str) -> None:
        """A line that stays: in live mode it goes above the status line."""
        with self._mutex:
            self._erase()
            print(text, file=self.progress, flush=True)
            self._draw()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._mutex:
                self._erase()
                self._draw()

    def _status(self) -> str:
        now = time.monotonic()
        parts = []
        for name, (index, total, label, rows, t0) in self._cells.items():
            where = f"cell {index}/{total} {_short(label, 40)}" if total else label
            parts.append(f"{Path(name).name} {where} {now - t0:.0f}s {_plural(rows, 'row')}")
        return " | ".join(parts)

    def _draw(self) -> None:
        if not self.live:
            return
        text = self._status()
        width = _columns(self.progress)
        if len(text) > width - 1:
            text = text[: width - 2] + "…"
        self.progress.write(text)
        self.progress.flush()
        self._shown = len(text)

    def _erase(self) -> None:
        if self.live and self._shown:
            self.progress.write("\r\x1b[K")
            self.progress.flush()
            self._shown = 0

    def _clear(self) -> None:
        with self._mutex:
            self._cells.clear()
            self._erase()


class Observers(RunObserver):
    """Several observers as one."""

    def __init__(self, *observers: RunObserver) -> None:
        self.observers = observers

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("_") or name == "observers" or not hasattr(RunObserver, name):
            return object.__getattribute__(self, name)

        def each(*args: Any, **kwargs: Any) -> None:
            for observer in object.__getattribute__(self, "observers"):
                getattr(observer, name)(*args, **kwargs)

        return each


class KestraOutputs(RunObserver):
    """Prints Kestra's ``::{"outputs": ..., "metrics": ...}::`` line for every table of each finished notebook.

    The runner prints them (to the task log), not the notebooks, so they stay out of the
    executed notebooks; a table the notebook did not change this time (nothing new, or
    the notebook was up to date) is reported too, with 0 rows written.
    """

    def __init__(self, project: Any, stream: TextIO | None = None) -> None:
        self.project = project
        self.stream = stream or sys.stdout

    def notebook_finished(self, record: RunRecord, notebook: NotebookRecord) -> None:
        from medallion_nb.lineage import project_lineage
        from medallion_nb.storage import TableStore

        layer = next(lay for lay in record.layers if notebook in lay.notebooks)
        written = {t.table: t for t in layer.tables if t.notebook == notebook.notebook}
        found = project_lineage(self.project).find(notebook.notebook)
        owned = found.writes if found is not None else ()
        store = TableStore(self.project.lake)
        for table in dict.fromkeys([*written, *owned]):
            if table in written:
                t = written[table]
                rows, total, version = t.rows, t.total_rows, t.version
            else:
                layer_name, _, name = table.partition(".")
                if not store.exists(layer_name, name):
                    continue
                snap = store.snapshot(layer_name, name)
                rows, total, version = 0, snap.rows, snap.version
            print("::" + json.dumps(kestra_payload(table, rows, total, version), sort_keys=True) + "::",
                  file=self.stream, flush=True)


class NotebookProgress(RunObserver):
    """A progress widget for runs started from a notebook: one row per notebook, updated per cell."""

    def __init__(self) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self._widgets = widgets
        self.title = widgets.HTML()
        self.rows = widgets.VBox()
        self.bars: dict[str, Any] = {}
        self.root = widgets.VBox([self.title, self.rows])
        self._mutex = threading.Lock()
        display(self.root)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.root._repr_mimebundle_(**kwargs)

    def run_started(self, record: RunRecord) -> None:
        self.title.value = f"<b>run {record.run_id}</b> of {record.project}"
        w = self._widgets
        for layer in record.layers:
            for nb in layer.notebooks:
                bar = w.IntProgress(value=0, min=0, max=1, description=layer.name,
                                    layout=w.Layout(width="240px"))
                label = w.HTML(f"{nb.notebook}: {nb.status}")
                self.bars[nb.notebook] = (bar, label)
        self.rows.children = [w.HBox(pair) for pair in self.bars.values()]

    def notebook_started(self, record: RunRecord, notebook: NotebookRecord) -> None:
        self._set(notebook.notebook, None, "starting")

    def cell_started(self, record: RunRecord, notebook: NotebookRecord, index: int, total: int, label: str,
                     elapsed: float, rows: int) -> None:
        import html

        self._set(notebook.notebook, (index, total),
                  f"cell {index}/{total} <code>{html.escape(_short(label))}</code> {elapsed:.1f}s, "
                  f"{_plural(rows, 'row')} written")

    def notebook_finished(self, record: RunRecord, notebook: NotebookRecord) -> None:
        bar, _ = self.bars.get(notebook.notebook, (None, None))
        if bar is not None:
            bar.value = bar.max
            bar.bar_style = {"succeeded": "success", "up to date": "info", "failed": "danger"}.get(
                notebook.status, "warning")
        self._set(notebook.notebook, None, notebook.status)

    def run_finished(self, record: RunRecord) -> None:
        took = f" in {record.duration_s:.1f}s" if record.duration_s is not None else ""
        self.title.value = f"<b>run {record.run_id}</b> of {record.project}: {record.status}{took}"

    def _set(self, notebook: str, position: tuple[int, int] | None, text: str) -> None:
        with self._mutex:
            bar, label = self.bars.get(notebook, (None, None))
            if bar is None:
                return
            if position is not None:
                bar.max = max(position[1], 1)
                bar.value = min(position[0], bar.max)
            label.value = f"{notebook}: {text}"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _columns(stream: TextIO) -> int:
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    return columns or 100  # a terminal that does not know its size says 0


def _short(text: str, width: int = LABEL_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


plural = _plural


def layer_result(layer: LayerRecord) -> str:
    """``ok 3.2s (4 tables, 7,980 rows)``: how a finished layer went."""
    if layer.status in ("skipped", "up to date"):
        return layer.status
    word = "ok" if layer.status == "succeeded" else "FAILED"
    took = f" {layer.duration_s:.1f}s" if layer.duration_s is not None else ""
    return f"{word}{took} ({_plural(len(layer.tables), 'table')}, {_plural(layer.rows, 'row')})"


def format_summary(record: RunRecord) -> str:
    """A table of layers and the tables they wrote, with row counts."""
    rows: list[tuple[str, ...]] = [("layer", "status", "time", "table", "rows", "total rows")]
    for layer in record.layers:
        took = f"{layer.duration_s:.1f}s" if layer.duration_s is not None else "-"
        if not layer.tables:
            rows.append((layer.name, layer.status, took, "-", "", ""))
        for i, table in enumerate(layer.tables):
            head = (layer.name, layer.status, took) if i == 0 else ("", "", "")
            rows.append((*head, table.table, f"{table.rows:,}", f"{table.total_rows:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {2, 4, 5}
    lines = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    took = f" in {record.duration_s:.1f}s" if record.duration_s is not None else ""
    try:
        where = record.path.relative_to(Path.cwd())
    except ValueError:
        where = record.path
    return "\n".join([f"run {record.run_id} {record.status}{took}", *lines, f"record: {where}"])
