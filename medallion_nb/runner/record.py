"""The run record: ``<runs>/<run_id>/run.json``, and how a run is summarised for people.

The record is rewritten atomically (temporary file, then ``os.replace``) at the
start of the run and after every layer, so a crash or Ctrl-C always leaves a
valid JSON document describing how far the run got.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medallion_nb.project import Scalar
from medallion_nb.reporting import read_write_log
from medallion_nb.runfolder import RECORD_NAME, record_file

FORMAT_VERSION = 2
# Notebook and layer statuses: pending -> running -> succeeded | failed | up to date, or pending -> skipped.
# A run is running -> succeeded | failed, or interrupted when its runner died before it ended.
STATUSES = ("pending", "running", "succeeded", "failed", "skipped", "up to date")
DONE = ("succeeded", "up to date")
WRITE_KIND = "write"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_precise() -> str:
    """Now, to the microsecond: when notebooks started and ended, to tell which ran at the same time."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class TableWrite:
    """What one layer wrote to one table (several writes to a table are added up)."""

    table: str
    mode: str
    rows: int
    total_rows: int
    version: int
    writes: int = 1
    notebook: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "mode": self.mode, "rows": self.rows, "total_rows": self.total_rows,
                "version": self.version, "writes": self.writes, "notebook": self.notebook}


def tables_from_write_log(entries: Iterable[Mapping[str, Any]], notebook: str = "") -> list[TableWrite]:
    """Fold write-log lines into one :class:`TableWrite` per table, in first-write order."""
    tables: dict[str, TableWrite] = {}
    for entry in entries:
        if entry.get("kind", WRITE_KIND) != WRITE_KIND:
            continue
        name = entry["table"]
        rows = int(entry.get("rows") or 0)
        if name in tables:
            seen = tables[name]
            seen.rows += rows
            seen.writes += 1
            seen.mode, seen.total_rows, seen.version = entry["mode"], entry["total_rows"], entry["version"]
        else:
            tables[name] = TableWrite(name, entry["mode"], rows, entry["total_rows"], entry["version"],
                                      notebook=notebook)
    return list(tables.values())


@dataclass
class NotebookRecord:
    """One executed notebook of a layer."""

    notebook: str  # source, relative to the project folder
    output: str  # executed copy, relative to the project folder
    write_log: Path
    status: str = "pending"
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    error: dict[str, Any] | None = None
    reason: str | None = None  # why it was skipped or is up to date
    reads: list[str] = field(default_factory=list)  # tables it read, recorded by the library
    inputs: dict[str, Any] = field(default_factory=dict)  # versions of what it read, and its fingerprint
    events: list[dict[str, Any]] = field(default_factory=list)  # write-log lines of other kinds, kept as they are

    def collect(self) -> list[dict[str, Any]]:
        """Read the write log: reads and other events into this record; returns the write lines."""
        entries = read_write_log(self.write_log)
        self.reads = sorted({e["table"] for e in entries if e.get("kind") == "read" and "table" in e})
        self.events = [e for e in entries if e.get("kind", WRITE_KIND) not in (WRITE_KIND, "read")]
        return [e for e in entries if e.get("kind", WRITE_KIND) == WRITE_KIND]

    def to_dict(self) -> dict[str, Any]:
        out = {"notebook": self.notebook, "output": self.output, "status": self.status,
               "started": self.started, "finished": self.finished,
               "duration_s": self.duration_s, "error": self.error, "reads": self.reads}
        if self.reason:
            out["reason"] = self.reason
        if self.inputs:
            out["inputs"] = self.inputs
        if self.events:
            out["events"] = self.events
        return out


@dataclass
class LayerRecord:
    """One layer of the run."""

    name: str
    notebooks: list[NotebookRecord]
    status: str = "pending"
    started: str | None = None
    duration_s: float | None = None
    tables: list[TableWrite] = field(default_factory=list)
    error: str | None = None

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def collect_writes(self) -> None:
        """Read the notebooks' write logs into :attr:`tables` (and each notebook's reads and events)."""
        self.tables = [t for nb in self.notebooks for t in tables_from_write_log(nb.collect(), nb.notebook)]

    def notebook(self, name: str) -> NotebookRecord:
        return next(nb for nb in self.notebooks if nb.notebook == name)

    def settle(self) -> None:
        """Derive the layer's status from its notebooks' (once none is pending or running)."""
        statuses = [nb.status for nb in self.notebooks]
        if any(s in ("pending", "running") for s in statuses):
            return
        if "failed" in statuses:
            self.status = "failed"
        elif "skipped" in statuses:
            self.status = "skipped"
        elif all(s == "up to date" for s in statuses):
            self.status = "up to date"
        else:
            self.status = "succeeded"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "started": self.started,
                "duration_s": self.duration_s, "notebooks": [n.to_dict() for n in self.notebooks],
                "tables": [t.to_dict() for t in self.tables], "error": self.error}


@dataclass
class RunRecord:
    """A whole run, as written to ``run.json``."""

    run_id: str
    project: str
    project_dir: Path
    run_dir: Path
    parameters: Mapping[str, Scalar]
    layers: list[LayerRecord]
    status: str = "running"
    started: str = field(default_factory=utc_now)
    finished: str | None = None
    duration_s: float | None = None
    error: str | None = None
    exit_code: int | None = None
    published: bool = False
    resumed: str | None = None
    selection: list[str] = field(default_factory=list)  # the notebooks this run was asked to run
    runner: dict[str, Any] = field(default_factory=lambda: {"pid": os.getpid(), "host": socket.gethostname()})

    @property
    def path(self) -> Path:
        return record_file(self.run_dir)

    def layer(self, name: str) -> LayerRecord:
        return next(layer for layer in self.layers if layer.name == name)

    def notebook(self, name: str) -> NotebookRecord:
        return next(nb for layer in self.layers for nb in layer.notebooks if nb.notebook == name)

    def layer_of(self, name: str) -> LayerRecord:
        return next(layer for layer in self.layers if any(nb.notebook == name for nb in layer.notebooks))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "run_id": self.run_id,
            "project": self.project,
            "project_dir": str(self.project_dir),
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "duration_s": self.duration_s,
            "parameters": dict(self.parameters),
            "selection": self.selection,
            "runner": self.runner,
            "layers": [layer.to_dict() for layer in self.layers],
            "error": self.error,
            "exit_code": self.exit_code,
            "published": self.published,
            **({"resumed": self.resumed} if self.resumed else {}),
        }

    def save(self) -> Path:
        """Write ``run.json`` atomically and return its path."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_record(self.path, self.to_dict())
        return self.path


def write_record(path: Path, data: Mapping[str, Any]) -> None:
    """Replace a ``run.json`` atomically."""
    tmp = path.with_name(f".{RECORD_NAME}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def mark_interrupted(path: Path, data: dict[str, Any]) -> None:
    """Say in an abandoned record that its run was interrupted (its runner died while it ran)."""
    data["status"] = "interrupted"
    data["error"] = data.get("error") or "interrupted: the runner died before the run ended"
    for layer in data.get("layers", []):
        for nb in layer.get("notebooks", []):
            if nb.get("status") in ("running", "pending"):
                nb["status"] = "interrupted" if nb["status"] == "running" else "skipped"
        if layer.get("status") in ("running", "pending"):
            layer["status"] = "interrupted" if layer["status"] == "running" else "skipped"
    write_record(path, data)


def notebook_from_dict(data: Mapping[str, Any], write_log: Path) -> NotebookRecord:
    """A notebook's entry of an earlier record (for a resumed run)."""
    return NotebookRecord(data["notebook"], data["output"], write_log, data.get("status", "pending"),
                          data.get("started"), data.get("finished"), data.get("duration_s"), data.get("error"),
                          data.get("reason"), list(data.get("reads", [])), dict(data.get("inputs", {})),
                          list(data.get("events", [])))


def load_record(path: Path) -> dict[str, Any]:
    """Read a ``run.json`` (the file or its run folder) as a plain dict."""
    path = record_file(path) if path.is_dir() else path
    return json.loads(path.read_text(encoding="utf-8"))
