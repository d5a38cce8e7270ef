"""Snapshots of the gold tables for BI tools that cannot read Delta: Parquet, CSV and a manifest.

``export_tables`` writes every table of the gold layer (the layer named ``gold``,
else the last layer) with DuckDB's ``COPY`` into a fresh folder, writes
``manifest.json`` last, and only then swaps the folder into place, so a reader
sees the previous export or the new one, never a mix. Each table is read at one
Delta version, recorded in the manifest with the run that wrote it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from medallion_nb.errors import LakeError, MedallionError
from medallion_nb.lakehouse import connect
from medallion_nb.project import Project, load_project

MANIFEST = "manifest.json"
GENERATOR = "medallion-nb export"
FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class ExportedTable:
    """One table in an export."""

    table: str
    rows: int
    version: int
    run_id: str | None
    written_at: str | None
    files: dict[str, str]


@dataclass(frozen=True)
class ExportResult:
    """What ``export_tables`` wrote."""

    out: Path
    layer: str
    exported_at: str
    tables: tuple[ExportedTable, ...]

    @property
    def manifest(self) -> Path:
        return self.out / MANIFEST

    def __str__(self) -> str:
        lines = [f"exported {len(self.tables)} {self.layer} table(s) to {self.out}"]
        lines += [f"  {t.table}: {t.rows:,} rows (version {t.version}, run {t.run_id})" for t in self.tables]
        return "\n".join(lines)


def export_layer_name(project: Project) -> str:
    """The layer that is exported: ``gold`` if the project has one, else its last layer."""
    names = [layer.name for layer in project.layers]
    return "gold" if "gold" in names else names[-1]


def export_tables(project_dir: str | Path = ".", out: str | Path | None = None, *,
                  layer: str | None = None) -> ExportResult:
    """Write every table of the gold layer as Parquet and CSV, plus ``manifest.json``.

    Args:
        project_dir: the project folder.
        out: the export folder (default: :attr:`Project.export_folder`). It is replaced
            as a whole, so it must be empty, missing or an earlier export.
        layer: the layer to export (default: :func:`export_layer_name`).

    Raises:
        ProjectError: the project is invalid or has no such layer.
        MedallionError: the layer has no tables yet, or ``out`` holds other files.
        LakeError: a table could not be read or written.
    """
    project = load_project(project_dir)
    layer = project.layer(layer).name if layer else export_layer_name(project)
    target = Path(out).resolve() if out is not None else project.export_folder
    _check_target(target)
    with connect(project.root, run_id="export") as lake:
        names = lake.tables(layer)
        if not names:
            raise MedallionError(f"nothing to export: layer {layer} of {project.name} has no tables yet",
                                 hint="run the pipeline first: medallion-nb run")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            exported = tuple(_export_one(lake, name, staging) for name in names)
            result = ExportResult(target, layer, _now(), exported)
            manifest = {"generator": GENERATOR, "project": project.name, "layer": layer,
                        "exported_at": result.exported_at, "tables": [asdict(t) for t in exported]}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            _swap_in(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return result


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The manifest of an export folder.

    Raises:
        MedallionError: the folder holds no export.
    """
    path = Path(out) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MedallionError(f"{path}: not an export manifest ({exc})") from exc


def _export_one(lake: Any, name: str, folder: Path) -> ExportedTable:
    info = lake.info(name)
    # Read the version the manifest names, even if a run commits meanwhile.
    rel = lake.table(name, version=info["version"])
    table = name.partition(".")[2]
    files = {fmt: f"{table}.{fmt}" for fmt in FORMATS}
    try:
        rel.write_parquet(str(folder / files["parquet"]), compression="zstd")
        rel.write_csv(str(folder / files["csv"]), header=True)
    except (duckdb.Error, OSError) as exc:
        raise LakeError(f"export of {name} to {folder} failed: {exc}") from exc
    written = info.get("last_written")
    return ExportedTable(
        table=name,
        rows=int(info["rows"]),
        version=int(info["version"]),
        run_id=info.get("last_run_id"),
        written_at=written.isoformat(timespec="seconds") if written else None,
        files=files,
    )


def _check_target(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise MedallionError(f"export folder {target} is a file", hint="pass --out with a folder path")
    if any(target.iterdir()) and not _is_export(target):
        raise MedallionError(
            f"export folder {target} already holds files that are not an earlier export",
            hint="the folder is replaced as a whole; pass --out with an empty or new folder",
        )


def _is_export(folder: Path) -> bool:
    try:
        return read_manifest(folder).get("generator") == GENERATOR
    except MedallionError:
        return False


def _swap_in(staging: Path, target: Path) -> None:
    """Put ``staging`` where ``target`` is: two renames, the old export removed after."""
    os.chmod(staging, 0o755)  # mkdtemp makes it private
    if not target.exists():
        staging.rename(target)
        return
    old = target.parent / f".{target.name}.old-{staging.name.rsplit('-', 1)[-1]}"
    target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
