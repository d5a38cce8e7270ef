"""Delta Lake tables on disk: atomic writes, merge, history, snapshots.

This module knows nothing about DuckDB. It takes Arrow streams and commits them
to Delta tables through the ``deltalake`` package, so every write is one atomic
commit: a reader sees the table before or after it, never half of it. A write
that fails part way leaves the table as it was (the files it had started are
not referenced by the log and are removed by ``vacuum``).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from medallion_nb.errors import LakeError

WRITE_MODES = ("replace", "append", "merge")
METADATA_PREFIX = "medallion."


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
    # The table as the write left it, so callers need not open the log again.
    snapshot: Snapshot | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and k != "snapshot"}

    def __repr__(self) -> str:
        return f"<WriteResult {self}>"

    def __str__(self) -> str:
        detail = f"{self.rows:,} rows" if self.mode != "merge" else (
            f"{self.inserted:,} inserted, {self.updated:,} updated")
        return f"{self.table}: {self.mode} {detail} -> version {self.version} ({self.total_rows:,} rows)"


@dataclass(frozen=True)
class Snapshot:
    """The files and schema of one version of a table."""

    version: int
    files: tuple[str, ...]
    schema: pa.Schema
    rows: int


class TableStore:
    """The tables of a lake folder, laid out as ``<lake>/<layer>/<table>/``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, layer: str, name: str) -> Path:
        return self.root / layer / name

    def exists(self, layer: str, name: str) -> bool:
        return (self.path(layer, name) / "_delta_log").is_dir()

    def tables(self) -> list[tuple[str, str]]:
        """Every table in the lake as ``(layer, name)``, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            (log.parent.parent.name, log.parent.name)
            for log in self.root.glob("*/*/_delta_log")
            if log.is_dir()
        )

    def _open(self, layer: str, name: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(str(self.path(layer, name)), version=version)
        except TableNotFoundError as exc:
            raise LakeError(f"table {layer}.{name} does not exist (looked in {self.path(layer, name)})") from exc
        except DeltaError as exc:
            where = f"version {version} of " if version is not None else ""
            raise LakeError(f"cannot open {where}table {layer}.{name}: {exc}") from exc

    def snapshot(self, layer: str, name: str, version: int | None = None) -> Snapshot:
        """The files, schema and row count of the current (or a given) version.

        Raises:
            LakeError: the table or version does not exist.
        """
        table = self._open(layer, name, version)
        return _snapshot(table)

    def history(self, layer: str, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The table's commits, newest first, with run id and row metrics where known."""
        table = self._open(layer, name)
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
                "rows": _int(metrics.get("num_added_rows"), metrics.get("num_source_rows")),
                "metrics": metrics,
            })
        return out

    def raw_history(self, layer: str, name: str) -> Iterator[dict[str, Any]]:
        """The table's raw commit infos, newest first (custom metadata included)."""
        table = self._open(layer, name)
        yield from table.history(20)
        if table.version() >= 20:
            yield from table.history()[20:]

    def write(
        self,
        layer: str,
        name: str,
        data: pa.RecordBatchReader,
        *,
        mode: str,
        keys: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> WriteResult:
        """Commit an Arrow stream to ``<layer>.<name>`` in one transaction.

        ``replace`` swaps the table's content (and schema); ``append`` adds rows
        (new columns are added to the schema); ``merge`` updates rows whose
        ``keys`` match and inserts the others.

        Raises:
            LakeError: unknown mode, missing keys, or the commit failed.
        """
        table_name = f"{layer}.{name}"
        if mode not in WRITE_MODES:
            raise LakeError(f"write to {table_name}: mode {mode!r} is not one of {', '.join(WRITE_MODES)}")
        path = self.path(layer, name)
        counter = _RowCounter(data)
        meta = {METADATA_PREFIX + "mode": mode, **(metadata or {})}
        exists = self.exists(layer, name)
        try:
            if mode == "merge" and exists:
                return self._merge(table_name, path, counter, keys, meta)
            path.mkdir(parents=True, exist_ok=True)
            write_deltalake(
                str(path),
                counter.reader(),
                mode="append" if mode == "append" and exists else "overwrite",
                schema_mode="merge" if mode == "append" else "overwrite",
                commit_properties=CommitProperties(custom_metadata=dict(meta)),
            )
        except (DeltaError, pa.ArrowException, OSError, ValueError) as exc:
            raise LakeError(f"write to {table_name} ({mode}) failed; the table is unchanged: {exc}") from exc
        snap = _snapshot(DeltaTable(str(path)))
        return WriteResult(table_name, mode, counter.rows, snap.version, snap.rows,
                           inserted=counter.rows if mode == "merge" else None,
                           updated=0 if mode == "merge" else None, snapshot=snap)

    def _merge(self, table_name: str, path: Path, counter: _RowCounter, keys: Sequence[str],
               meta: Mapping[str, str]) -> WriteResult:
        if not keys:
            raise LakeError(f"write to {table_name}: mode merge needs key=... (the columns that identify a row)")
        table = DeltaTable(str(path))
        target_cols = set(table.schema().to_arrow().names) if hasattr(table.schema(), "to_arrow") else set()
        missing = [k for k in keys if target_cols and k not in target_cols]
        if missing:
            raise LakeError(f"write to {table_name}: merge key {', '.join(missing)} is not a column of the table")
        predicate = " AND ".join(f"t.{_quote(k)} = s.{_quote(k)}" for k in keys)
        result = (
            table.merge(counter.reader(), predicate=predicate, source_alias="s", target_alias="t",
                        merge_schema=True, commit_properties=CommitProperties(custom_metadata=dict(meta)))
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        snap = _snapshot(DeltaTable(str(path)))
        return WriteResult(table_name, "merge", int(result.get("num_source_rows", counter.rows)),
                           snap.version, snap.rows,
                           inserted=int(result.get("num_target_rows_inserted", 0)),
                           updated=int(result.get("num_target_rows_updated", 0)), snapshot=snap)

    def vacuum(self, layer: str, name: str, retention_hours: int = 168, *, dry_run: bool = False) -> list[str]:
        """Delete data files that no version newer than ``retention_hours`` needs; returns them.

        The current version is never affected; earlier versions whose files are
        removed can no longer be read (time travel stops at the retention).
        """
        table = self._open(layer, name)
        folder = self.path(layer, name)
        candidates = table.vacuum(retention_hours=retention_hours, enforce_retention_duration=False, dry_run=True)
        # delta-rs keeps listing tombstoned files after they are gone: report only files still on disk.
        relative = [str(Path(f).relative_to(folder)) if Path(f).is_absolute() else f for f in candidates]
        present = [f for f in relative if (folder / f).exists()]
        if present and not dry_run:
            table.vacuum(retention_hours=retention_hours, enforce_retention_duration=False, dry_run=False)
        return present


class _RowCounter:
    """Passes an Arrow stream through, counting its rows, one batch ahead of the writer.

    A background thread pulls the next batches from the source (DuckDB
    computing them) while the Delta writer encodes the current one; both
    release the GIL, so producing and encoding use both cores instead of
    taking turns. At most ``PREFETCH_BATCHES`` batches wait in between.
    """

    def __init__(self, data: pa.RecordBatchReader) -> None:
        self.data = data
        self.rows = 0

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.data.schema, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        for batch in _prefetch(self.data, PREFETCH_BATCHES):
            self.rows += batch.num_rows
            yield batch


PREFETCH_BATCHES = 2
_DONE = object()


def _prefetch(source: Iterator[pa.RecordBatch] | pa.RecordBatchReader, depth: int) -> Iterator[pa.RecordBatch]:
    """Iterate ``source`` in a background thread, ``depth`` items ahead; its errors are re-raised here."""
    items: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            items.put(exc)

    worker = threading.Thread(target=produce, name="medallion-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # The writer stopped early (an error): let the producer finish, then
        # wait for it, so the source is never read from two threads.
        stop.set()
        while worker.is_alive():
            try:
                items.get(timeout=0.1)
            except queue.Empty:
                continue
        worker.join()


def _snapshot(table: DeltaTable) -> Snapshot:
    actions = table.get_add_actions(flatten=True)
    actions = pa.table(actions) if not isinstance(actions, pa.Table) else actions
    rows = 0
    if "num_records" in actions.column_names:
        rows = sum(v or 0 for v in actions.column("num_records").to_pylist())
    files = tuple(table.file_uris())
    return Snapshot(table.version(), files, pa.schema(table.schema().to_arrow()), rows)


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _int(*values: Any) -> int | None:
    for value in values:
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                continue
    return None


def dumps(value: Any) -> str:
    """JSON for commit metadata and run records (sorted keys, plain types)."""
    return json.dumps(value, sort_keys=True, default=str)
