"""Progress of a run, and how a run is summarised for people."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from medallion_nb.runner.record import LayerRecord, RunRecord


class RunObserver:
    """Hears about a run as it goes; the CLI prints progress from it. Methods do nothing by default."""

    def run_started(self, record: RunRecord) -> None:
        """The run folder and record exist; no layer has started."""

    def layer_started(self, index: int, total: int, layer: LayerRecord) -> None:
        """Layer number ``index`` (from 1) of ``total`` is starting."""

    def layer_finished(self, index: int, total: int, layer: LayerRecord) -> None:
        """A layer succeeded, failed or was skipped."""

    def run_finished(self, record: RunRecord) -> None:
        """The run is over and its record saved (called before a failure is raised)."""


class ConsoleProgress(RunObserver):
    """Prints ``[2/3] silver ... ok 3.2s (4 tables, 7,980 rows)`` per layer and a summary at the end.

    Args:
        progress: where layer lines go (default: stderr).
        summary: where the final table goes (default: stdout).
    """

    def __init__(self, progress: TextIO | None = None, summary: TextIO | None = None) -> None:
        self.progress = progress or sys.stderr
        self.summary = summary or sys.stdout
        self._open_line = False

    def run_started(self, record: RunRecord) -> None:
        layers = ", ".join(layer.name for layer in record.layers)
        print(f"run {record.run_id} of {record.project}: {layers}", file=self.progress, flush=True)

    def layer_started(self, index: int, total: int, layer: LayerRecord) -> None:
        print(f"[{index}/{total}] {layer.name} ...", end="", file=self.progress, flush=True)
        self._open_line = True

    def layer_finished(self, index: int, total: int, layer: LayerRecord) -> None:
        if layer.status == "skipped":
            print(f"[{index}/{total}] {layer.name} skipped", file=self.progress, flush=True)
        else:
            print(f" {layer_result(layer)}", file=self.progress, flush=True)
        self._open_line = False

    def run_finished(self, record: RunRecord) -> None:
        if self._open_line:  # interrupted mid-layer
            print(" stopped", file=self.progress, flush=True)
            self._open_line = False
        print(format_summary(record), file=self.summary, flush=True)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def layer_result(layer: LayerRecord) -> str:
    """``ok 3.2s (4 tables, 7,980 rows)``: how a finished layer went, for the progress line."""
    if layer.status == "skipped":
        return "skipped"
    word = "ok" if layer.status == "succeeded" else "FAILED"
    took = f" {layer.duration_s:.1f}s" if layer.duration_s is not None else ""
    return f"{word}{took} ({plural(len(layer.tables), 'table')}, {plural(layer.rows, 'row')})"


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
