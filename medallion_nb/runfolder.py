"""The layout of a run's folder, the audit trail of one run::

    <runs>/<run_id>/run.json                          the run record
    <runs>/<run_id>/<layer>/<notebook>.ipynb          executed copy (papermill output)
    <runs>/<run_id>/<layer>/<notebook>.writes.jsonl   what the notebook wrote and read
    <runs>/<run_id>/<layer>/<notebook>.kernel.log     the kernel's own stdout/stderr

The runner writes it; ``medallion-nb publish``, ``--resume`` and backfill read it; the
Kestra flow copies the executed notebooks out of it. All of them take the paths from
here. The functions work on any :class:`~pathlib.PurePath`, so the Kestra flow can
spell a folder inside the container (``runs/{{ execution.id }}``) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Generic, TypeVar

from medallion_nb.project import Project

RECORD_NAME = "run.json"
P = TypeVar("P", bound=PurePath)


@dataclass(frozen=True)
class NotebookFiles(Generic[P]):
    """What a run keeps of one notebook."""

    output: P  # the executed copy
    write_log: P
    kernel_log: P


def run_folder(project: Project, run_id: str) -> Path:
    """``<runs>/<run_id>``."""
    return project.runs / run_id


def record_file(folder: P) -> P:
    """The run record in a run folder: ``<folder>/run.json``."""
    return folder / RECORD_NAME


def notebook_files(folder: P, layer: str, notebook: PurePath | str) -> NotebookFiles[P]:
    """The files a run keeps of ``notebook`` (a path; its stem names them) of ``layer``."""
    stem = PurePath(notebook).stem
    where = folder / layer
    return NotebookFiles(where / f"{stem}.ipynb", where / f"{stem}.writes.jsonl", where / f"{stem}.kernel.log")
