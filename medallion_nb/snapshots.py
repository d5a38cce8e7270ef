"""Published snapshots: the table versions of the last successful run, as one set.

Delta Lake commits one table at a time, so while a run writes (or after it failed
half way) the latest versions of a lake's tables can be a mix of two runs. After a
run succeeds, the runner publishes the versions it produced in one atomic step::

    <lake>/_medallion/published.json       the current published snapshot
    <lake>/_medallion/runs/<run_id>.json   the snapshot as each run published it

Each is ``{"run_id", "published_at", "tables": {"silver.orders": 12, ...}, "produced"}``;
``tables`` holds every published table (the run's own, and the others at the
versions published before), ``produced`` names the run's own. ``published.json`` is
replaced last, so a reader sees the previous snapshot or the new one, never a mix.
On object storage each file is one object written with a single PUT (atomic there too).
``mnb.connect(project, snapshot="published")`` reads it; ``snapshot="<run_id>"``
reads the lake as that run left it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from medallion_nb.errors import LakeError
from medallion_nb.lakemeta import lake_path, meta_dir, read_json, write_json_atomic
from medallion_nb.lock import commit_guard
from medallion_nb.names import RUN_ID, RUN_ID_RULE
from medallion_nb.sql import IDENT
from medallion_nb.storage import Snapshot, TableStore

PUBLISHED = "published"
PUBLISHED_FILE = "published.json"
RUNS_DIR = "runs"


@dataclass(frozen=True)
class Manifest:
    """One published snapshot: a version for each table, as of one successful run."""

    run_id: str
    published_at: str
    tables: Mapping[str, int]
    produced: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        return (f"snapshot of run {self.run_id} (published {self.published_at}): {len(self.tables)} table(s), "
                f"{len(self.produced)} written by the run")

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "published_at": self.published_at, "tables": dict(self.tables),
                "produced": list(self.produced)}

    @classmethod
    def from_dict(cls, data: Any, where: Path) -> Manifest:
        """A manifest read from ``where``.

        Raises:
            LakeError: the file does not hold a manifest.
        """
        try:
            tables = {str(k): int(v) for k, v in data["tables"].items()}
            return cls(str(data["run_id"]), str(data["published_at"]), tables,
                       tuple(str(t) for t in data.get("produced", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LakeError(f"{where}: not a published snapshot manifest ({type(exc).__name__}: {exc})",
                            hint="it is written by medallion_nb when a run is published; restore or delete it") from exc


def publish(lake: Any, run_id: str, tables: Mapping[str, int], *, keep_others: bool = True) -> Manifest:
    """Publish the table versions a successful run produced, in one atomic step.

    Args:
        lake: a lakehouse handle, a project, or the lake folder.
        run_id: the run that produced the versions.
        tables: ``{"layer.table": version}`` for every table the run wrote.
        keep_others: keep the other tables of the previous snapshot at their
            published versions (a run of one layer leaves the rest published as it was).

    Returns:
        The manifest now published.

    Raises:
        LakeError: a bad run id or table name, a version that does not exist, or
            the manifest cannot be written (the previous snapshot stays published).
        LockHeldError: another run holds the writer lock.
    """
    root = lake_path(lake)
    _check_run_id(run_id)
    wanted = {name: _check_version(root, name, version, run_id) for name, version in tables.items()}
    with commit_guard(lake, run_id=run_id, command=f"publish run {run_id}"):
        previous = published(root) if keep_others else None
        merged = {name: version for name, version in (previous.tables if previous else {}).items()
                  if _exists(root, name)}
        merged.update(wanted)
        manifest = Manifest(run_id, datetime.now(UTC).isoformat(timespec="seconds"), dict(sorted(merged.items())),
                            tuple(sorted(wanted)))
        folder = meta_dir(root)
        write_json_atomic(folder / RUNS_DIR / f"{run_id}.json", manifest.to_dict())
        write_json_atomic(folder / PUBLISHED_FILE, manifest.to_dict())  # last: this is the publish
    return manifest


def published(lake: Any) -> Manifest | None:
    """The published snapshot, or None if no run has been published yet.

    Raises:
        LakeError: ``published.json`` exists but cannot be read.
    """
    path = meta_dir(lake) / PUBLISHED_FILE
    data = read_json(path)
    return None if data is None else Manifest.from_dict(data, path)


def run_manifest(lake: Any, run_id: str) -> Manifest:
    """The snapshot as run ``run_id`` published it.

    Raises:
        LakeError: no run of that id was published (the message lists recent ones).
    """
    if not RUN_ID.match(run_id):
        raise LakeError(f"snapshot {run_id!r} is neither 'published' nor a run id")
    path = meta_dir(lake) / RUNS_DIR / f"{run_id}.json"
    data = read_json(path)
    if data is None:
        known = [m.run_id for m in manifests(lake)[:5]]
        listed = f"recent published runs: {', '.join(known)}" if known else "no run has been published yet"
        raise LakeError(f"no published run {run_id!r} in {lake_path(lake)} ({listed})",
                        hint="only runs that succeeded are published; `medallion-nb run` publishes at its end")
    return Manifest.from_dict(data, path)


def manifests(lake: Any) -> list[Manifest]:
    """Every run's published snapshot, newest first."""
    folder = meta_dir(lake) / RUNS_DIR
    found = [Manifest.from_dict(read_json(p), p) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted(found, key=lambda m: (m.published_at, m.run_id), reverse=True)


def resolve(lake: Any, snapshot: str) -> tuple[Manifest | None, str | None]:
    """The manifest a reader of ``snapshot`` sees, and a note when it falls back to the latest commits.

    Raises:
        LakeError: an unknown run id, or an unreadable manifest.
    """
    if snapshot == PUBLISHED:
        manifest = published(lake)
        if manifest is None:
            return None, "nothing is published yet: showing the latest commits"
        return manifest, None
    return run_manifest(lake, snapshot), None


def retained_versions(lake: Any, retain_hours: float, *, now: datetime | None = None) -> dict[str, set[int]]:
    """Table versions a reader may still ask for: the published snapshot, and every run published in the window.

    Vacuum must keep the files of these versions.
    """
    cutoff = (now or datetime.now(UTC)) - timedelta(hours=retain_hours)
    keep: dict[str, set[int]] = {}
    current = published(lake)
    for manifest in ([current] if current else []) + manifests(lake):
        if manifest is current or _parse_time(manifest.published_at) >= cutoff:
            for name, version in manifest.tables.items():
                keep.setdefault(name, set()).add(version)
    return keep


def referenced_files(lake: Any, retain_hours: float, *, now: datetime | None = None) -> dict[str, set[str]]:
    """The data files (absolute paths) of :func:`retained_versions`, per table; vacuum must not delete them."""
    store = TableStore(lake_path(lake))
    files: dict[str, set[str]] = {}
    for name, versions in retained_versions(lake, retain_hours, now=now).items():
        layer, table = name.split(".", 1)
        for version in sorted(versions):
            try:
                snap = store.snapshot(layer, table, version)
            except LakeError:
                continue  # the table or its log entry is gone: no file of it is left to protect
            files.setdefault(name, set()).update(_local(f) for f in snap.files)
    return files


def table_snapshot(store: TableStore, name: str, version: int, manifest: Manifest) -> Snapshot:
    """The files of ``name`` at the version ``manifest`` holds, checked to be still on disk.

    Raises:
        LakeError: the version cannot be read any more (vacuumed, or the table removed).
    """
    layer, table = name.split(".", 1)
    label = f"the snapshot of run {manifest.run_id}: table {name} version {version}"
    hint = ("read the latest snapshot (snapshot='published'), or vacuum with a retention longer than "
            "the age of the snapshots people read")
    try:
        snap = store.snapshot(layer, table, version)
    except LakeError as exc:
        raise LakeError(f"{label} can no longer be read: {exc.message}", hint=hint) from exc
    missing = store.missing(snap.files)
    if missing:
        raise LakeError(f"{label} can no longer be read: {len(missing)} of its {len(snap.files)} data files "
                        f"were removed, most likely by vacuum (e.g. {missing[0]})", hint=hint)
    return snap


def _check_run_id(run_id: str) -> None:
    if not isinstance(run_id, str) or not RUN_ID.match(run_id) or run_id == PUBLISHED:
        raise LakeError(f"cannot publish run {run_id!r}: a run id is {RUN_ID_RULE}, "
                        f"and not {PUBLISHED!r}")


def _check_version(root: Path, name: str, version: Any, run_id: str) -> int:
    layer, dot, table = str(name).partition(".")
    if not dot or not IDENT.match(layer) or not IDENT.match(table):
        raise LakeError(f"cannot publish run {run_id}: {name!r} is not a table name (<layer>.<table>)")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise LakeError(f"cannot publish run {run_id}: version {version!r} of {name} is not a table version")
    log = root / layer / table / "_delta_log"
    if not (log / f"{version:020d}.json").is_file():
        try:
            TableStore(root).snapshot(layer, table, version)
        except LakeError as exc:
            raise LakeError(f"cannot publish run {run_id}: {name} has no version {version} ({exc.message})") from exc
    return version


def _exists(root: Path, name: str) -> bool:
    layer, _, table = name.partition(".")
    return TableStore(root).exists(layer, table)


def _local(uri: str) -> str:
    return uri.removeprefix("file://")


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
