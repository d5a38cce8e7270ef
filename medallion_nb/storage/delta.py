"""The Delta log side of the lake: which tables exist, their versions, and commits.

Everything that reads or writes a ``_delta_log`` goes through :class:`TableStore`
and the ``deltalake`` package (delta-rs). Data files are written elsewhere (DuckDB
writes them, see :mod:`medallion_nb.storage.stage`); a commit then adds exactly
those files, and removes replaced ones, in one Delta transaction: a reader sees the
table before or after it, never half of it.

A table exists once its version 0 is committed. A folder whose ``_delta_log`` holds
no commit (a writer killed, or a disk that filled up, while creating the table) is
not a table: readers do not see it, and the next writer that creates the table
clears the leftovers first.

The lake is a local folder or a location on object storage
(:class:`~medallion_nb.objectstore.ObjectPath`); delta-rs gets the store's settings
as ``storage_options`` and commits there with a conditional put (a commit file is
created only if no other writer created that version first).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from medallion_nb.errors import LakeError
from medallion_nb.objectstore import ObjectPath, delete_objects
from medallion_nb.objectstore import missing as missing_objects
from medallion_nb.oserrors import failure

METADATA_PREFIX = "medallion."
_COMMIT = re.compile(r"^\d{20}\.json$")
_CHECKPOINT = re.compile(r"^(\d{20}\.checkpoint(\.\d+\.\d+)?\.parquet|_last_checkpoint)$")


@dataclass(frozen=True)
class WriteResult:
    """What one write did to one table."""

    table: str
    mode: str
    rows: int
    version: int
    total_rows: int
    inserted: int | None = None
    updated: int | None = None
    deleted: int | None = None
    # True when nothing was committed because the table already holds this change.
    skipped: bool = False
    # The table as the write left it, so callers need not open the log again.
    snapshot: Snapshot | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()
                if v is not None and k != "snapshot" and not (k == "skipped" and not v)}

    def __repr__(self) -> str:
        return f"<WriteResult {self}>"

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.table}: up to date, nothing written (version {self.version}, {self.total_rows:,} rows)"
        if self.mode == "merge":
            detail = f"{self.inserted or 0:,} inserted, {self.updated or 0:,} updated"
            if self.deleted:
                detail += f", {self.deleted:,} deleted"
        else:
            detail = f"{self.rows:,} rows"
        return f"{self.table}: {self.mode} {detail} -> version {self.version} ({self.total_rows:,} rows)"


@dataclass(frozen=True)
class DataFile:
    """One data file of a table version."""

    path: str       # absolute local path, or URI on object storage
    relative: str   # path inside the table folder, as on disk
    size: int
    rows: int
    partition: dict[str, str | None] = field(default_factory=dict)  # values as Delta writes them


@dataclass(frozen=True)
class Snapshot:
    """The files and schema of one version of a table."""

    version: int
    files: tuple[str, ...]
    schema: pa.Schema
    rows: int
    partition_by: tuple[str, ...] = ()
    data_files: tuple[DataFile, ...] = field(default=(), repr=False, compare=False)


class TableStore:
    """The tables of a lake folder (or object-store location), laid out as ``<lake>/<layer>/<table>/``."""

    def __init__(self, root: Path | ObjectPath) -> None:
        self.root: Path | ObjectPath = root if isinstance(root, ObjectPath) else Path(root)
        self.remote = isinstance(root, ObjectPath)

    def path(self, layer: str, name: str) -> Path | ObjectPath:
        return self.root / layer / name

    @property
    def storage_options(self) -> dict[str, str] | None:
        """delta-rs' ``storage_options`` for the lake (None for a local folder); secrets are read now."""
        return self.root.settings.delta_options() if isinstance(self.root, ObjectPath) else None

    def delta(self, path: Path | ObjectPath, version: int | None = None) -> DeltaTable:
        """delta-rs' handle of the table at ``path`` (raises delta-rs' own errors)."""
        return DeltaTable(str(path), version=version, storage_options=self.storage_options)

    def locate(self, path: str) -> Path | ObjectPath:
        """A data file's path (as in :attr:`Snapshot.files`) as a local path or an object."""
        return self.root.at(path) if isinstance(self.root, ObjectPath) else Path(path.removeprefix("file://"))

    def missing(self, paths: Sequence[str]) -> list[str]:
        """Those of ``paths`` (data files) that do not exist (one listing per folder on object storage)."""
        if isinstance(self.root, ObjectPath):
            return [p.uri for p in missing_objects(self.root.at(p) for p in paths)]
        return [p for p in paths if not Path(p.removeprefix("file://")).exists()]

    def delete(self, paths: Sequence[Path | ObjectPath]) -> None:
        """Delete files (objects); those already gone are fine."""
        remote = [p for p in paths if isinstance(p, ObjectPath)]
        if remote:
            delete_objects(remote)
        for p in paths:
            if not isinstance(p, ObjectPath):
                p.unlink(missing_ok=True)

    def rmtree(self, folder: Path | ObjectPath) -> None:
        """Delete a folder (every object under a prefix) and what it holds."""
        if isinstance(folder, ObjectPath):
            folder.rmtree()
        else:
            shutil.rmtree(folder, ignore_errors=True)

    def exists(self, layer: str, name: str) -> bool:
        """Whether the table has a committed version (a half-created folder is not a table)."""
        return has_commit(self.path(layer, name) / "_delta_log")

    def tables(self) -> list[tuple[str, str]]:
        """Every table in the lake as ``(layer, name)``, sorted; half-created ones are left out."""
        if isinstance(self.root, ObjectPath):
            return sorted(
                (layer.name, table.name)
                for layer in self.root.iterdir() if not layer.name.startswith("_") and not layer.suffix
                for table in layer.iterdir() if has_commit(table / "_delta_log")
            )
        if not self.root.is_dir():
            return []
        return sorted(
            (log.parent.parent.name, log.parent.name)
            for log in self.root.glob("*/*/_delta_log")
            if not log.parent.parent.name.startswith("_") and has_commit(log)
        )

    def open(self, layer: str, name: str, version: int | None = None) -> DeltaTable:
        """The delta-rs handle of a table (at a version).

        Raises:
            LakeError: the table or version does not exist, or the log cannot be read.
        """
        path = self.path(layer, name)
        if not self.exists(layer, name):
            raise LakeError(f"table {layer}.{name} does not exist (looked in {path})")
        try:
            return self.delta(path, version)
        except TableNotFoundError as exc:
            raise LakeError(f"table {layer}.{name} does not exist (looked in {path})") from exc
        except (DeltaError, OSError) as exc:
            where = f"version {version} of " if version is not None else ""
            raise LakeError(failure(exc, path / "_delta_log", f"cannot open {where}table {layer}.{name}",
                                    probe=isinstance(exc, OSError))) from exc

    def snapshot(self, layer: str, name: str, version: int | None = None) -> Snapshot:
        """The files, schema and row count of the current (or a given) version.

        Raises:
            LakeError: the table or version does not exist.
        """
        return snapshot_of(self.open(layer, name, version), self.path(layer, name))


    def history(self, layer: str, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The table's commits, newest first, with run id and row metrics where known."""
        table = self.open(layer, name)
        out = []
        for commit in table.history(limit):
            metrics = commit.get("operationMetrics") or {}
            out.append({
                "version": commit.get("version"),
                "timestamp": commit.get("timestamp"),
                "operation": commit.get("operation"),
                "mode": commit.get(METADATA_PREFIX + "mode"),
                "run_id": commit.get(METADATA_PREFIX + "run_id"),
                "notebook": commit.get(METADATA_PREFIX + "notebook"),
                "rows": _int(commit.get(METADATA_PREFIX + "rows"), metrics.get("num_added_rows"),
                             metrics.get("num_source_rows")),
                "metrics": metrics,
            })
        return out

    def raw_history(self, layer: str, name: str) -> Iterator[dict[str, Any]]:
        """The table's raw commit infos, newest first (custom metadata included)."""
        table = self.open(layer, name)
        yield from table.history(20)
        if table.version() >= 20:
            yield from table.history()[20:]

    def transaction_version(self, layer: str, name: str, app_id: str) -> int | None:
        """The version recorded by Delta's ``txn`` action for ``app_id`` (None if never)."""
        return self.open(layer, name).transaction_version(app_id)

    # -- commits ---------------------------------------------------------
    def clear_half_created(self, layer: str, name: str) -> None:
        """Remove the leftovers of a table whose creation never committed (call inside the commit point)."""
        log = self.path(layer, name) / "_delta_log"
        if log.is_dir() and not has_commit(log):
            self.rmtree(log)

    def commit_files(
        self,
        layer: str,
        name: str,
        adds: Sequence[AddAction],
        *,
        mode: str,
        schema: pa.Schema,
        partition_by: Sequence[str] = (),
        removes: Sequence[RemoveAction] = (),
        metadata: Mapping[str, str] | None = None,
        transactions: Sequence[Transaction] = (),
        expect_version: int | None = None,
    ) -> Snapshot:
        """Commit data files already in the table folder as one transaction.

        ``mode="overwrite"`` replaces every file of the table; ``"append"`` adds
        ``adds`` and removes ``removes``. A table that does not exist is created
        (version 0). With ``expect_version``, the commit is refused when the table
        moved past that version since the files were prepared.

        Raises:
            LakeError: the commit failed or the table changed meanwhile; nothing was committed.
        """
        path = self.path(layer, name)
        props = CommitProperties(custom_metadata=dict(metadata or {}), app_transactions=list(transactions) or None)
        delta_schema = delta_arrow_schema(schema)
        try:
            if not self.exists(layer, name):
                self.clear_half_created(layer, name)
                path.mkdir(parents=True, exist_ok=True)
                from deltalake import Schema

                create_table_with_add_actions(str(path), Schema.from_arrow(delta_schema), list(adds), mode="error",
                                              partition_by=list(partition_by) or None, commit_properties=props,
                                              storage_options=self.storage_options)
            else:
                table = self.delta(path)
                if expect_version is not None and table.version() != expect_version:
                    raise LakeError(f"table {layer}.{name} changed while this write was prepared (version "
                                    f"{expect_version} -> {table.version()}); nothing was committed, run it again")
                table.create_write_transaction([*adds, *removes], mode=mode, schema=delta_schema,
                                               partition_by=list(partition_by) or None, commit_properties=props)
            return snapshot_of(self.delta(path), path)
        except (DeltaError, OSError, ValueError, pa.ArrowException) as exc:
            raise LakeError(failure(exc, path, f"commit to {layer}.{name} failed; the table is unchanged")) from exc

    def write_arrow(
        self,
        layer: str,
        name: str,
        data: pa.RecordBatchReader,
        *,
        mode: str,
        partition_by: Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        transactions: Sequence[Transaction] = (),
    ) -> Snapshot:
        """Write an Arrow stream with delta-rs' own writer (``replace`` or ``append``) in one commit.

        Used where delta-rs does what a file commit cannot: changing a table's
        partitioning, or adding columns on append.

        Raises:
            LakeError: the write failed; the table is unchanged.
        """
        path = self.path(layer, name)
        exists = self.exists(layer, name)
        props = CommitProperties(custom_metadata=dict(metadata or {}), app_transactions=list(transactions) or None)
        try:
            if not exists:
                self.clear_half_created(layer, name)
            path.mkdir(parents=True, exist_ok=True)
            write_deltalake(str(path), data, mode="append" if mode == "append" and exists else "overwrite",
                            schema_mode="merge" if mode == "append" else "overwrite",
                            partition_by=list(partition_by) if partition_by is not None else None,
                            commit_properties=props, storage_options=self.storage_options)
            return snapshot_of(self.delta(path), path)
        except (DeltaError, OSError, ValueError, pa.ArrowException) as exc:
            raise LakeError(failure(exc, path, f"write to {layer}.{name} ({mode}) failed; the table is unchanged",
                                    probe=not isinstance(exc, pa.ArrowException))) from exc

    def merge(
        self,
        layer: str,
        name: str,
        source: pa.RecordBatchReader,
        *,
        keys: Sequence[str],
        delete_flag: str | None = None,
        metadata: Mapping[str, str] | None = None,
        transactions: Sequence[Transaction] = (),
    ) -> tuple[Snapshot, dict[str, int]]:
        """Upsert ``source`` by ``keys`` with delta-rs' merge; rows whose ``delete_flag`` is true delete their key.

        Raises:
            LakeError: the merge failed; the table is unchanged.
        """
        path = self.path(layer, name)
        props = CommitProperties(custom_metadata=dict(metadata or {}), app_transactions=list(transactions) or None)
        predicate = " AND ".join(f"t.{_quote(k)} = s.{_quote(k)}" for k in keys)
        try:
            merger = self.delta(path).merge(source, predicate=predicate, source_alias="s", target_alias="t",
                                                 merge_schema=True, commit_properties=props)
            if delete_flag:
                flag = f"s.{_quote(delete_flag)}"
                merger = (merger.when_matched_delete(predicate=flag)
                          .when_matched_update_all(predicate=f"NOT {flag}", except_cols=[delete_flag])
                          .when_not_matched_insert_all(predicate=f"NOT {flag}", except_cols=[delete_flag]))
            else:
                merger = merger.when_matched_update_all().when_not_matched_insert_all()
            metrics = merger.execute()
            return snapshot_of(self.delta(path), path), {k: int(v) for k, v in metrics.items()
                                                        if isinstance(v, int | float)}
        except (DeltaError, OSError, ValueError, pa.ArrowException) as exc:
            raise LakeError(failure(exc, path, f"merge into {layer}.{name} failed; the table is unchanged",
                                    probe=not isinstance(exc, pa.ArrowException))) from exc


def has_commit(log: Path | ObjectPath) -> bool:
    """Whether a ``_delta_log`` folder holds a committed version (or a checkpoint of one)."""
    if isinstance(log, ObjectPath):
        return any(_COMMIT.match(entry.name) or _CHECKPOINT.match(entry.name) for entry in log.iterdir())
    try:
        return any(_COMMIT.match(entry.name) or _CHECKPOINT.match(entry.name) for entry in log.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False


def snapshot_of(table: DeltaTable, root: Path | ObjectPath) -> Snapshot:
    """The :class:`Snapshot` of a delta-rs table loaded from the folder ``root``."""
    actions = table.get_add_actions(flatten=False)
    # pa.table() of a foreign Arrow object first asks whether it is a pandas DataFrame,
    # which imports pandas (half a second); reading the Arrow stream does not.
    actions = actions if isinstance(actions, pa.Table) else pa.RecordBatchReader.from_stream(actions).read_all()
    paths = [urllib.parse.unquote(p) for p in actions.column("path").to_pylist()]
    sizes = actions.column("size_bytes").to_pylist()
    counts = actions.column("num_records").to_pylist() if "num_records" in actions.column_names else [0] * len(paths)
    parts = actions.column("partition").to_pylist() if "partition" in actions.column_names else [None] * len(paths)
    base = str(root).rstrip("/")
    data_files = tuple(
        DataFile(f"{base}/{rel}", rel, int(size or 0), int(rows or 0),
                 {k: delta_partition_value(v) for k, v in (part or {}).items()})
        for rel, size, rows, part in zip(paths, sizes, counts, parts, strict=True))
    return Snapshot(
        version=table.version(),
        files=tuple(f.path for f in data_files),
        schema=pa.schema(table.schema().to_arrow()),
        rows=sum(f.rows for f in data_files),
        partition_by=tuple(table.metadata().partition_columns),
        data_files=data_files,
    )


def delta_partition_value(value: Any) -> str | None:
    """A partition value as the Delta log spells it (``"2026-01-05"``, ``"true"``, ``"42"``; null is None)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def delta_arrow_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every zoned timestamp in UTC, the only zone Delta stores."""
    return pa.schema([f.with_type(_delta_type(f.type)) for f in schema])


def _delta_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return pa.timestamp(kind.unit, "UTC")
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_delta_type(f.type)) for f in kind])
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.list_(kind.value_field.with_type(_delta_type(kind.value_type)))
    if pa.types.is_map(kind):
        return pa.map_(kind.key_field.with_type(_delta_type(kind.key_type)),
                       kind.item_field.with_type(_delta_type(kind.item_type)))
    return kind


def add_action(relative: str, size: int, partition_values: Mapping[str, str | None], stats: str) -> AddAction:
    """The ``add`` action of a data file already in the table folder (``relative`` as on disk)."""
    return AddAction(relative, int(size), dict(partition_values), int(time.time() * 1000), True, stats)


def remove_action(data_file: DataFile) -> RemoveAction:
    """The ``remove`` action that drops ``data_file`` from the next version."""
    return RemoveAction(data_file.relative, True, int(time.time() * 1000), data_file.size)


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _int(*values: Any) -> int | None:
    for value in values:
        if value is not None:
            with contextlib.suppress(TypeError, ValueError):
                return int(value)
    return None


def dumps(value: Any) -> str:
    """JSON for commit metadata and run records (sorted keys, plain types)."""
    return json.dumps(value, sort_keys=True, default=str)
