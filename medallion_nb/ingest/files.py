"""Which files of a source are due, new, changed or gone, and the ingestion state kept in Delta commits."""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from medallion_nb.errors import IngestError
from medallion_nb.sources import Source
from medallion_nb.storage import METADATA_PREFIX

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

STATE_KEY = METADATA_PREFIX + "ingest_state"
_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class Found:
    """A file matching a source's path."""

    path: str  # relative to the project (absolute when outside it)
    absolute: str
    size: int


def find_files(root: Path, source: Source) -> dict[str, Found]:
    """The source's files by project-relative path.

    Raises:
        IngestError: no file matches.
    """
    root = root.resolve()
    pattern = source.path if Path(source.path).is_absolute() else str(root / source.path)
    files = {}
    for match in sorted(Path(p) for p in glob.glob(pattern, recursive=True)):
        if match.is_file():
            absolute = match.resolve()
            try:
                rel = absolute.relative_to(root).as_posix()
            except ValueError:
                rel = absolute.as_posix()
            files[rel] = Found(rel, str(absolute), absolute.stat().st_size)
    if not files:
        raise IngestError(f"source {source.name}: no files match {source.path!r} (in {root})",
                          hint=f"check sources.{source.name}.path in medallion.yaml")
    return files


def is_due(path: str, source: Source, due: date | None) -> bool:
    """Whether a file has landed by ``due`` (files named with a later date wait, with ``date_in_name``)."""
    if not source.date_in_name or due is None:
        return True
    found = _DATE_IN_NAME.search(Path(path).name)
    if not found:
        return True
    try:
        return date.fromisoformat(found.group(1)) <= due
    except ValueError:
        return True


def read_state(lake: Lakehouse, source: Source) -> dict[str, int]:
    """``{file: size}`` of the files in ``bronze.<source>``, from the newest commit that records it."""
    for commit in lake.store.raw_history("bronze", source.name):
        if STATE_KEY in commit:
            return json.loads(commit[STATE_KEY])
    return {}


def shown(paths: list[str], limit: int = 5) -> str:
    """A short list of file names for a message."""
    return ", ".join(paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
