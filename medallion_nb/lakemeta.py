"""The lake's own metadata folder, ``<lake>/_medallion/``, and atomic JSON files in it.

Everything the toolkit keeps about the lake as a whole (the writer lock and its
holder, the published snapshot, one manifest per run) lives there. ``_`` names are
never tables. Every file is replaced atomically: written to a temporary file in the
same folder, flushed to disk, then renamed over the old one, so a reader or a crash
sees the old content or the new, never half of it. On object storage (a lake at
``s3://...``) a file is one object written with a single PUT, which is atomic too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medallion_nb.errors import LakeError
from medallion_nb.objectstore import ObjectPath
from medallion_nb.project import CONFIG_NAME, load_project

META_DIR = "_medallion"


def lake_path(lake: Any) -> Path | ObjectPath:
    """The lake folder (or object-store location) of a lakehouse handle, a project, a project folder, or the lake.

    Raises:
        ProjectError: a project folder whose ``medallion.yaml`` is invalid.
    """
    if isinstance(lake, ObjectPath):
        return lake
    project = getattr(lake, "project", None)
    if project is not None and hasattr(project, "lake"):
        return _as_location(project.lake)
    if hasattr(lake, "lake"):
        return _as_location(lake.lake)
    path = Path(lake)
    if (path / CONFIG_NAME).is_file():
        return load_project(path).lake
    return path


def _as_location(lake: Any) -> Path | ObjectPath:
    return lake if isinstance(lake, ObjectPath) else Path(lake)


def meta_dir(lake: Any) -> Path | ObjectPath:
    """``<lake>/_medallion``, where the toolkit keeps what it knows about the lake as a whole."""
    return lake_path(lake) / META_DIR


def write_json_atomic(path: Path | ObjectPath, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON in one step (temp file, fsync, rename; one PUT on object storage).

    Raises:
        LakeError: the folder cannot be written (the message names the path and the cause).
    """
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if isinstance(path, ObjectPath):
        path.write_bytes(text.encode("utf-8"))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise LakeError(f"cannot write {path}: {exc.strerror or exc}") from exc


def read_json(path: Path | ObjectPath) -> Any:
    """The JSON in ``path``, or None if the file does not exist.

    Raises:
        LakeError: the file exists but cannot be read or is not JSON.
    """
    if isinstance(path, ObjectPath):
        content = path.read_bytes()
        return None if content is None else parse_json(content.decode("utf-8", errors="replace"), path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LakeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_json(text, path)


def parse_json(text: str, path: Path | ObjectPath) -> Any:
    """``text`` read from ``path`` as JSON.

    Raises:
        LakeError: it is not JSON (the message names the file and line).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LakeError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})",
                        hint="the file is written atomically by medallion_nb; restore it or delete it") from exc


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
