"""Publish what a successful run produced: its tables' versions as one snapshot.

After the last notebook of a run succeeded (``medallion-nb run``, or the final
task of a Kestra execution, ``medallion-nb publish``), the versions of every
table the run's notebooks write are published in one atomic step
(:func:`medallion_nb.snapshots.publish`); readers of ``snapshot="published"``
then see the whole run, never a mix of two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medallion_nb.errors import NotebookRunError, UsageError
from medallion_nb.lineage import project_lineage
from medallion_nb.project import Project
from medallion_nb.runfolder import record_file, run_folder
from medallion_nb.runner.freshness import table_version
from medallion_nb.runner.record import DONE, load_record, write_record
from medallion_nb.snapshots import Manifest, publish

if TYPE_CHECKING:
    from medallion_nb.runner.record import RunRecord


def run_tables(project: Project, notebooks: list[str], written: dict[str, int]) -> dict[str, int]:
    """The versions to publish: what the run wrote, and the current version of what its up-to-date notebooks own."""
    lineage = project_lineage(project)
    tables: dict[str, int] = {}
    for name in notebooks:
        nb = lineage.find(name)
        if nb is None:
            continue
        for table in nb.writes:
            version = table_version(project.lake, table)
            if version is not None:
                tables[table] = version
    tables.update(written)
    return tables


def publish_record(project: Project, record: RunRecord) -> Manifest:
    """Publish a run that just succeeded (called by the runner while it holds the writer lock)."""
    notebooks = [nb.notebook for layer in record.layers for nb in layer.notebooks]
    written = {t.table: t.version for layer in record.layers for t in layer.tables}
    return publish(project, record.run_id, run_tables(project, notebooks, written))


def publish_run(project: Project, run_id: str) -> Manifest:
    """Publish an earlier run from its record (a scheduler's last step after one task per layer).

    Raises:
        NotebookRunError: the run has a notebook that did not succeed.
        UsageError: no such run.
    """
    path = record_file(run_folder(project, run_id))
    if not path.is_file():
        raise UsageError(f"no run record {path}")
    data: dict[str, Any] = load_record(path)
    undone = [nb["notebook"] for layer in data.get("layers", []) for nb in layer.get("notebooks", [])
              if nb.get("status") not in DONE]
    if undone:
        raise NotebookRunError(f"run {run_id} is not published: {', '.join(undone)} did not succeed",
                               hint=f"run record: {path}")
    notebooks = [nb["notebook"] for layer in data.get("layers", []) for nb in layer.get("notebooks", [])]
    written = {t["table"]: t["version"] for layer in data.get("layers", []) for t in layer.get("tables", [])}
    manifest = publish(project, run_id, run_tables(project, notebooks, written))
    data["status"], data["published"], data["exit_code"] = "succeeded", True, 0
    write_record(path, data)
    return manifest
