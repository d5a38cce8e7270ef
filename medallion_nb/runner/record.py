"""The run record: ``<runs>/<run_id>/run.json``, and how a run is summarised for people.

The record is rewritten atomically (temporary file, then ``os.replace``) at the
start of the run and after every layer, so a crash or Ctrl-C always leaves a
valid JSON document describing how far the run got.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medallion_nb.project import Scalar
from medallion_nb.reporting import read_write_log

RECORD_NAME = "run.json"
FORMAT_VERSION = 1
# Layer statuses: pending -> running -> succeeded | failed, or pending -> skipped.
LAYER_STATUSES = ("pending", "running", "succeeded", "failed", "skipped")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        if entry.get("kind", "write") != "write":
            continue  # other kinds of lines (e.g. expectation results) describe no table write
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
    duration_s: float | None = None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"notebook": self.notebook, "output": self.output, "status": self.status,
                "duration_s": self.duration_s, "error": self.error}


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
        """Read the notebooks' write logs into :attr:`tables`."""
        self.tables = [t for nb in self.notebooks
                       for t in tables_from_write_log(read_write_log(nb.write_log), nb.notebook)]

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

    @property
    def path(self) -> Path:
        return self.run_dir / RECORD_NAME

    def layer(self, name: str) -> LayerRecord:
        return next(layer for layer in self.layers if layer.name == name)

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
            "layers": [layer.to_dict() for layer in self.layers],
            "error": self.error,
        }

    def save(self) -> Path:
        """Write ``run.json`` atomically and return its path."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{RECORD_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        return self.path


def load_record(path: Path) -> dict[str, Any]:
    """Read a ``run.json`` (the file or its run folder) as a plain dict."""
    path = path / RECORD_NAME if path.is_dir() else path
    return json.loads(path.read_text(encoding="utf-8"))
