"""Whether a notebook is up to date: nothing it reads, nor its code, nor its parameters changed.

After a notebook succeeds, the runner keeps in ``<lake>/_medallion/notebooks/``
what it ran on: a fingerprint of its code cells and parameters (the run id
left out), the Delta version of every table it read (by its lineage and as the
library recorded), a digest of the raw files of the sources it ingests, and the
versions of the tables it wrote. The next run skips the notebook when all of
these are the same, so a run with nothing new makes no new table versions. A
notebook whose reads cannot be inferred (nor are declared) always runs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medallion_nb.errors import LakeError
from medallion_nb.lakemeta import meta_dir, read_json, write_json_atomic
from medallion_nb.project import Project, Scalar

if TYPE_CHECKING:
    from medallion_nb.runner.plan import NotebookStep

STATE_DIR = "notebooks"
# Parameters that differ on every run and so never count as a change.
VOLATILE_PARAMETERS = ("run_id", "project_dir")


class State:
    """What the lake knows about the notebooks' last successful runs."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.folder = meta_dir(project) / STATE_DIR

    # -- what inputs look like now ------------------------------------------------
    def table(self, name: str) -> dict[str, Any]:
        """``{"version": n}`` of a table now (``None`` if it does not exist yet)."""
        return {"version": table_version(self.project.lake, name)}

    def source(self, name: str) -> dict[str, Any]:
        """A digest of the raw files of a source: their names, sizes and modification times."""
        spec = self.project.source(name)
        pattern = spec.path if Path(spec.path).is_absolute() else str(self.project.root / spec.path)
        if "://" in spec.path or spec.is_database:
            # Not files on local disk (a database changes without a file changing): cannot tell, so a
            # digest that never matches the last run's: always changed.
            return {"files": None, "digest": f"unknown-{uuid.uuid4().hex}"}
        digest = hashlib.sha256()
        files = sorted(glob.glob(pattern, recursive=True))
        for path in files:
            try:
                st = Path(path).stat()
            except OSError:
                continue
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"files": len(files), "digest": digest.hexdigest()}

    def fingerprint(self, step: NotebookStep, params: Mapping[str, Scalar]) -> str:
        """A hash of the notebook's code cells and parameters (without the run id)."""
        digest = hashlib.sha256()
        try:
            cells = json.loads(step.notebook.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            cells = []
        for cell in cells:
            if cell.get("cell_type") == "code":
                source = cell.get("source", "")
                digest.update(("".join(source) if isinstance(source, list) else source).encode())
                digest.update(b"\0")
        used = {k: v for k, v in params.items() if k not in VOLATILE_PARAMETERS}
        if used.get("run_date") in ("", None) and step.lineage.sources:
            # "Everything that has landed up to today": a new day can make more files due.
            used["run_date (today)"] = date.today().isoformat()
        digest.update(json.dumps(used, sort_keys=True, default=str).encode())
        return digest.hexdigest()

    def versions(self, step: NotebookStep, extra: Iterable[str] = ()) -> dict[str, Any]:
        """What the notebook's inputs look like now: table versions and source digests."""
        out: dict[str, Any] = {f"source:{s}": self.source(s)["digest"] for s in step.lineage.sources}
        out |= {t: self.table(t)["version"] for t in sorted({*step.lineage.reads, *extra})}
        return out

    # -- the last successful run -----------------------------------------------------
    def _path(self, step: NotebookStep) -> Path:
        return self.folder / (step.node.replace("/", "__") + ".json")

    def _saved(self, step: NotebookStep) -> dict[str, Any] | None:
        try:
            data = read_json(self._path(step))
        except LakeError:
            return None  # unreadable: treat as never run
        return data if isinstance(data, dict) else None

    def last_run(self, step: NotebookStep) -> str | None:
        saved = self._saved(step)
        return saved.get("run_id") if saved else None

    def up_to_date(self, step: NotebookStep, fingerprint: str) -> bool:
        """Whether the notebook's last successful run saw exactly what it would see now."""
        if not step.lineage.complete:
            return False
        saved = self._saved(step)
        if not saved or saved.get("fingerprint") != fingerprint:
            return False
        inputs = saved.get("inputs") or {}
        if self.versions(step, [k for k in inputs if not k.startswith("source:")]) != inputs:
            return False
        outputs = saved.get("outputs") or {}
        if not outputs and step.lineage.writes:
            return False
        return all(self.table(t)["version"] == v for t, v in outputs.items())

    def remember(self, step: NotebookStep, fingerprint: str, before: Mapping[str, Any], reads: Iterable[str],
                 run_id: str) -> None:
        """Keep what a notebook that just succeeded ran on, and the versions it left its tables at."""
        inputs = dict(before)
        own = set(step.lineage.writes)
        for table in reads:  # read at run time but missing from the lineage: its version before the run
            if table not in inputs and table not in own:
                inputs[table] = self.table(table)["version"]
        outputs = {t: self.table(t)["version"] for t in step.lineage.writes}
        write_json_atomic(self._path(step), {
            "notebook": step.node, "run_id": run_id, "fingerprint": fingerprint, "inputs": inputs,
            "outputs": outputs, "at": datetime.now(UTC).isoformat(timespec="seconds"),
        })


def table_version(lake: Any, name: str) -> int | None:
    """The current Delta version of ``<layer>.<table>`` (``None`` if it does not exist)."""
    from deltalake.exceptions import DeltaError, TableNotFoundError

    from medallion_nb.storage import TableStore

    layer, _, table = name.partition(".")
    store = TableStore(lake)
    path = store.path(layer, table)
    if not (path / "_delta_log").is_dir():
        return None
    try:
        return store.delta(path).version()
    except (TableNotFoundError, DeltaError):
        return None
