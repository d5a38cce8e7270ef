"""Reclaim every file no table version inside the retention needs.

Old versions keep their data files so they can still be read (time travel); writes
that died before their commit leave files no version references. :func:`vacuum_lake`
deletes, for files older than the retention:

- data files that only versions older than the retention referenced, and data files
  no version ever referenced (delta-rs' "full" vacuum lists both);
- what delta-rs does not list: half-written files of its object store (``name#1``),
  temporary commit files in ``_delta_log``, the files of tables whose creation never
  committed, and staging folders of writes that never finished
  (``<lake>/_medallion/staging``);

and never the files of a version that a published snapshot references: the current
one (``_medallion/published.json``) always, and those of run manifests
(``_medallion/runs/*.json``) published inside the retention
(:func:`medallion_nb.snapshots.retained_versions`). Deleting is not a commit:
no table gets a new version. On object storage the same is done with listings
(an object's age is its last-modified time) and batched deletes.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from deltalake.exceptions import DeltaError

from medallion_nb.errors import LakeError
from medallion_nb.lock import commit_guard
from medallion_nb.objectstore import ObjectPath, delete_objects, is_uri
from medallion_nb.oserrors import failure
from medallion_nb.storage.delta import TableStore, has_commit
from medallion_nb.storage.stage import STAGING_DIR

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

_LEFTOVER = re.compile(r"(#\d+$)|(^_commit_.*\.tmp$)|(\.json\.tmp$)")
STAGING_KEY = STAGING_DIR


def vacuum_lake(lake: Lakehouse, tables: Iterable[tuple[str, str]] | None, retention_hours: float, *,
                dry_run: bool = False) -> dict[str, list[str]]:
    """Delete (or with ``dry_run`` list) what no version inside the retention needs, per table.

    ``tables`` None means every table plus the leftovers outside tables. Runs under
    the writer lock, so no write is between staging and committing meanwhile.

    Raises:
        LakeError: a file could not be deleted (cause and path first), or a manifest is unreadable.
    """
    from medallion_nb.snapshots import retained_versions

    store, layers = lake.store, lake.layers
    cutoff = time.time() - retention_hours * 3600
    out: dict[str, list[str]] = {}
    with commit_guard(lake):
        pinned = retained_versions(lake, retention_hours)
        targets = list(tables) if tables is not None else store.tables()
        for layer, name in targets:
            out[f"{layer}.{name}"] = _vacuum_table(store, layer, name, retention_hours, cutoff,
                                                   sorted(pinned.get(f"{layer}.{name}", ())), dry_run)
        if tables is None:
            for layer in layers:
                for folder in _subfolders(store.root / layer):
                    if not has_commit(folder / "_delta_log"):
                        out[f"{layer}.{folder.name}"] = _delete(folder, _old_files(folder, cutoff), dry_run)
                        if not dry_run:
                            _prune(folder, keep_root=False)
            staging = store.root / STAGING_DIR
            if staging.is_dir():
                found = _delete(staging, _old_files(staging, cutoff), dry_run)
                if found:
                    out[STAGING_KEY] = found
                if not dry_run:
                    _prune(staging, keep_root=True)
    return out


def _vacuum_table(store: TableStore, layer: str, name: str, retention_hours: float, cutoff: float,
                  keep: list[int], dry_run: bool) -> list[str]:
    folder: Path | ObjectPath = store.path(layer, name)
    table = store.open(layer, name)
    try:
        listed = table.vacuum(retention_hours=int(retention_hours), dry_run=True, enforce_retention_duration=False,
                              full=True, keep_versions=keep or None)
    except (DeltaError, OSError) as exc:
        raise LakeError(failure(exc, folder, f"vacuum of {layer}.{name} failed; nothing was deleted")) from exc
    current = {_identity(store.locate(f)) for f in store.snapshot(layer, name).files}
    found = []
    for item in listed:
        if isinstance(folder, ObjectPath):
            path: Path | ObjectPath = folder.at(item) if is_uri(item) else folder / item
        else:
            path = Path(item) if Path(item).is_absolute() else folder / item
        if _identity(path) not in current:
            found.append(path)
    gone = set(store.missing([str(p) for p in found]))
    found = [p for p in found if str(p) not in gone]
    found += [p for p in _old_files(folder, cutoff) if _LEFTOVER.search(p.name)]
    removed = _delete(folder, sorted(set(found), key=str), dry_run)
    if not dry_run:
        _prune(folder, keep_root=True)
    return removed


def _identity(path: Path | ObjectPath) -> str:
    return path.uri if isinstance(path, ObjectPath) else str(path.resolve())


def _subfolders(layer: Path | ObjectPath) -> list[Path | ObjectPath]:
    if isinstance(layer, ObjectPath):
        return sorted((p for p in layer.iterdir() if p.is_dir()), key=str)
    return sorted(p for p in layer.glob("*") if p.is_dir()) if layer.is_dir() else []


def _old_files(folder: Path | ObjectPath, cutoff: float) -> list[Path | ObjectPath]:
    if isinstance(folder, ObjectPath):
        return sorted((o.path for o in folder.walk() if o.modified.timestamp() < cutoff), key=str)
    out: list[Path | ObjectPath] = []
    for path in folder.rglob("*"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                out.append(path)
        except FileNotFoundError:
            continue
    return sorted(out)


def _delete(folder: Path | ObjectPath, paths: list[Path | ObjectPath], dry_run: bool) -> list[str]:
    if isinstance(folder, ObjectPath):
        remote = [p for p in paths if isinstance(p, ObjectPath)]
        if not dry_run:
            delete_objects(remote)
        return [p.relative_to(folder).as_posix() for p in remote]
    done = []
    for path in paths:
        if not dry_run:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise LakeError(failure(exc, path, f"vacuum could not delete a file of {folder.name}")) from exc
        done.append(path.relative_to(folder).as_posix())
    return done


def _prune(folder: Path | ObjectPath, *, keep_root: bool) -> None:
    """Remove empty folders left behind (partition folders, staging folders); object stores have none."""
    if isinstance(folder, ObjectPath):
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if sub.name != "_delta_log" and not any(sub.iterdir()):
            sub.rmdir()
    if not keep_root and folder.is_dir():
        log = folder / "_delta_log"
        if log.is_dir() and not any(log.iterdir()):
            log.rmdir()
        if not any(folder.iterdir()):
            shutil.rmtree(folder)


