"""Stage, audit, commit: DuckDB writes the new rows as Parquet, one Delta commit publishes them.

A write takes two steps. :func:`stage` runs the query once and lets DuckDB write its
rows as Parquet (its parallel writer, row groups of ``ROW_GROUP_ROWS`` rows, files of at
most ``FILE_BYTES``, the statistics of every file returned by the same statement). The
:class:`Staged` result can be looked at before anything is visible: ``staged.relation``
reads exactly the staged rows, ``staged.rows`` counts them. ``staged.commit()`` then
publishes them in one Delta transaction; ``staged.abort()`` (or leaving a ``with`` block
without committing) deletes them. Nobody sees staged rows: no Delta version references
them until the commit.

Where the files go depends on how the commit will be made:

- ``replace``, ``append``, ``replace_where`` and the first write of any table: into the
  table's folder, named ``part-<uuid>.parquet`` (``col=value/`` folders when
  partitioned); the commit adds them as they are (and removes the files they replace).
  No row is encoded twice.
- ``merge``, an ``append`` that adds columns, and a ``replace`` that changes the
  partitioning: into ``<lake>/_medallion/staging/<id>/``; the commit streams them
  through delta-rs (its merge, its schema evolution), then the staged copy is deleted.

On a lake on object storage DuckDB writes the files to a local staging folder under the
system's temporary directory (the audit reads them there); the commit uploads them to
their final keys in the table folder, then commits them, and deletes the local folder.
That is faster than DuckDB writing through the filesystem registered on its connection
(``bench/s3_write.py``), which it still does for the rows a ``replace_where`` keeps from
rewritten files. An upload interrupted before the commit leaves objects no version
references, which ``vacuum`` reclaims.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from medallion_nb.errors import LakeError
from medallion_nb.lock import commit_guard
from medallion_nb.names import WRITE_MODES
from medallion_nb.objectstore import ObjectPath, is_uri
from medallion_nb.oserrors import failure
from medallion_nb.sql import literal, quote_ident
from medallion_nb.storage.delta import (
    METADATA_PREFIX,
    WriteResult,
    add_action,
)
from medallion_nb.storage.plan import Plan, aligned_select, local_staging_folder, make_plan
from medallion_nb.storage.rewrite import replaced_files
from medallion_nb.storage.scan import duckdb_types, scan_sql
from medallion_nb.storage.stats import file_stats

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

# DuckDB's default row group; files roll over at FILE_BYTES so none grows unbounded.
ROW_GROUP_ROWS = 122_880
FILE_BYTES = "256MB"
# Rows per Arrow batch where rows stream into delta-rs (merge): DuckDB's row-group size.
BATCH_ROWS = 122_880
STAGING_DIR = "_medallion/staging"
# Files uploaded at once at the commit of a write to a lake on object storage.
UPLOADS = 8
DELETE_FLAG = "__medallion_delete"
_VIEWS = itertools.count()


@dataclass(frozen=True)
class StagedFile:
    """A Parquet file DuckDB wrote for a write, with what it reported about it."""

    path: Path | ObjectPath
    rows: int
    size: int
    partition: dict[str, str | None]
    columns: dict[str, dict[str, str]] | None = field(default=None, repr=False)


def copy_rows(con: duckdb.DuckDBPyConnection, select_sql: str, folder: Path | ObjectPath,
              partition_by: Sequence[str] = ()) -> list[StagedFile]:
    """Have DuckDB write the rows of ``select_sql`` as Parquet files into ``folder``.

    Existing files are left alone (new files get a uuid name). Files with no rows are
    deleted. Returns the written files with DuckDB's statistics of each.

    Raises:
        duckdb.Error: the query or the write failed (files written so far may remain).
    """
    folder.mkdir(parents=True, exist_ok=True)
    options = ["FORMAT parquet", "RETURN_STATS", "APPEND", "FILENAME_PATTERN 'part-{uuid}'",
               f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}", f"FILE_SIZE_BYTES '{FILE_BYTES}'"]
    if partition_by:
        options.append(f"PARTITION_BY ({', '.join(quote_ident(c) for c in partition_by)})")
    else:
        options.append("PER_THREAD_OUTPUT")
    written = con.execute(f"COPY ({select_sql}) TO {literal(str(folder))} ({', '.join(options)})").fetchall()
    files = []
    for filename, count, size, _footer, columns, partition, _extra in written:
        if isinstance(folder, ObjectPath):
            path: Path | ObjectPath = folder.at(filename) if is_uri(filename) else folder / filename
        else:
            path = Path(filename) if Path(filename).is_absolute() else folder / filename
        if not count:
            path.unlink(missing_ok=True)
            continue
        files.append(StagedFile(path, int(count), int(size), dict(partition or {}), columns))
    return files


class Staged:
    """New rows written as Parquet but not committed: audit them, then :meth:`commit` or :meth:`abort`.

    Use it as a context manager to make sure uncommitted files are deleted::

        with lake.stage("silver.orders", rows) as staged:
            assert staged.relation.filter("amount < 0").count("*").fetchone()[0] == 0
            staged.commit()
    """

    def __init__(self, lake: Lakehouse, name: str, plan: Plan, files: list[StagedFile]) -> None:
        self._lake = lake
        self.table = name
        self.mode = plan.mode
        self._plan = plan
        self.files = tuple(files)
        self.rows = sum(f.rows for f in files)
        self.result: WriteResult | None = None
        self._open = True
        self._relation: duckdb.DuckDBPyRelation | None = None

    def __repr__(self) -> str:
        state = "committed" if self.result else ("staged" if self._open else "aborted")
        return f"<Staged {self.table} ({self.mode}): {self.rows:,} rows in {len(self.files)} file(s), {state}>"

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._open:
            self.abort()

    @property
    def relation(self) -> duckdb.DuckDBPyRelation:
        """The staged rows, as a lazy DuckDB relation over the staged files."""
        if not self._open:
            raise LakeError(f"the staged rows for {self.table} are gone (already committed or aborted)")
        if self._relation is None:
            plan = self._plan
            partition = plan.partition_by if plan.direct else ()
            self._relation = self._lake.con.sql(scan_sql(self._lake.con, [str(f.path) for f in self.files],
                                                         plan.schema, partition))
        return self._relation

    def also_delete(self, keys: duckdb.DuckDBPyRelation) -> None:
        """With ``merge``: also delete the rows whose key is in ``keys`` (keys upserted here are kept).

        Raises:
            LakeError: not a merge, or ``keys`` lacks a key column.
        """
        plan = self._plan
        if plan.mode != "merge":
            raise LakeError(f"write to {self.table}: deleting keys goes with mode='merge'")
        if plan.direct:
            return  # the table is being created: there is nothing to delete yet
        plan.delete_files += _stage_delete_keys(self._lake.con, keys, self, plan.scratch, self.table, plan.keys)

    def abort(self) -> None:
        """Delete the staged files; the table is unchanged."""
        if not self._open:
            return
        self._open = False
        self._relation = None
        self._lake.store.delete([f.path for f in self.files])
        if self._plan.scratch is not None:
            self._lake.store.rmtree(self._plan.scratch)
        _drop_uncreated(self._lake, self.table, self._plan)

    def commit(self, metadata: dict[str, Any] | None = None) -> WriteResult:
        """Publish the staged rows in one Delta commit.

        Raises:
            LakeError: the commit failed or the table changed meanwhile; the staged files
                are deleted and the table is unchanged.
        """
        if not self._open:
            raise LakeError(f"the staged rows for {self.table} were already committed or aborted")
        lake, plan = self._lake, self._plan
        layer, table = lake.split_name(self.table)
        try:
            if plan.upload_to is not None:
                self._upload(plan.upload_to)
            # The writer lock: the checks below still hold when the commit lands.
            with commit_guard(lake):
                removal = self._removal()
                # Removing rows, or metadata to record (bronze's file state), make a commit worth having.
                deleting = bool(plan.delete_files) or bool(removal and removal[0]) or bool(metadata)
                transactions, skip = lake.consumption_for(self.table, self.mode, self.rows, deleting)
                if skip is not None:
                    self.abort()
                    self.result = WriteResult(self.table, self.mode, 0, skip.version, skip.rows, skipped=True,
                                              snapshot=skip)
                    return self.result
                self._check_still_new(layer, table)
                missing = self._missing()
                if missing:
                    raise LakeError(f"write to {self.table}: {len(missing)} staged file(s) disappeared before the "
                                    f"commit (e.g. {missing[0]}); nothing was committed, run it again")
                meta = {**(metadata or {}), **lake.commit_metadata(self.mode), METADATA_PREFIX + "rows": self.rows}
                self.result = self._commit(layer, table, meta, transactions, removal)
        except (duckdb.Error, OSError) as exc:
            self.abort()
            raise LakeError(failure(exc, lake.store.path(layer, table), f"write to {self.table} ({self.mode}) "
                                    "failed; the table is unchanged",
                                    probe=isinstance(exc, duckdb.IOException | OSError))) from exc
        except BaseException:
            self.abort()
            raise
        self._open = False
        self._relation = None
        if plan.scratch is not None:
            lake.store.rmtree(plan.scratch)
        lake.committed(self.result)
        return self.result

    def _upload(self, target: ObjectPath) -> None:
        """Upload the locally staged files to the table folder on object storage (still uncommitted).

        Several files go up at once (a partitioned write makes many small ones).

        Raises:
            LakeError, OSError: an upload failed; every object of this write is deleted again.
        """
        local = Path(self._plan.scratch or ".")
        pairs = [(f, target / Path(f.path).relative_to(local).as_posix()) for f in self.files]
        try:
            with ThreadPoolExecutor(max_workers=max(1, min(UPLOADS, len(pairs)))) as pool:
                done = [pool.submit(remote.upload, f.path) for f, remote in pairs]
            failed = next((e for e in (d.exception() for d in done) if e is not None), None)
            if failed is not None:
                raise failed
        except BaseException:
            with contextlib.suppress(LakeError):  # the store is failing: vacuum reclaims what is left
                self._lake.store.delete([remote for _, remote in pairs])
            raise
        self.files = tuple(dataclasses.replace(f, path=remote) for f, remote in pairs)
        self._relation = None
        self._plan.upload_to = None

    def _missing(self) -> list[str]:
        """The staged files that are gone (a vacuum with a short retention, someone deleting them)."""
        remote = [str(f.path) for f in self.files if isinstance(f.path, ObjectPath)]
        local = [str(f.path) for f in self.files if not isinstance(f.path, ObjectPath)]
        return [p for p in local if not Path(p).exists()] + (self._lake.store.missing(remote) if remote else [])

    def _check_still_new(self, layer: str, table: str) -> None:
        """A write prepared for a new table, when another writer created the table meanwhile.

        A ``replace`` still replaces it; an ``append`` of the same columns becomes an
        append to it; anything else would lose or mix rows, so it is refused.

        Raises:
            LakeError: the table was created meanwhile and this write cannot simply be added.
        """
        plan, store = self._plan, self._lake.store
        if plan.base is not None or plan.mode == "replace" or not store.exists(layer, table):
            return
        current = store.snapshot(layer, table)
        same = (duckdb_types(self._lake.con, current.schema) == duckdb_types(self._lake.con, plan.schema)
                and current.partition_by == plan.partition_by)
        if plan.mode == "append" and same and plan.direct:
            plan.base = current
            return
        raise LakeError(f"write to {self.table} ({plan.mode}): the table was created by another writer while "
                        "this write was prepared; nothing was committed, run it again")

    def _removal(self) -> tuple[list[Any], list[StagedFile]] | None:
        """For ``replace_where``: the files the commit removes and the kept rows it rewrites."""
        plan = self._plan
        if not (plan.direct and plan.mode == "replace_where" and plan.base is not None):
            return None
        partitions = {tuple(f.partition.get(c) for c in plan.partition_by) for f in self.files}
        return replaced_files(self._lake.con, plan.base, plan.where, plan.schema, partitions, self._copy_kept)

    def _commit(self, layer: str, table: str, meta: dict[str, Any], transactions: list[Any],
                removal: tuple[list[Any], list[StagedFile]] | None = None) -> WriteResult:
        lake, plan, store = self._lake, self._plan, self._lake.store
        if plan.direct:
            adds = [self._add(f) for f in self.files]
            removes: list[Any] = []
            if removal is not None:
                dropped, kept = removal
                removes, adds = dropped, adds + [self._add(f) for f in kept]
            overwrite = plan.base is None or plan.mode == "replace"
            snap = store.commit_files(layer, table, adds, mode="overwrite" if overwrite else "append",
                                      schema=plan.schema, partition_by=plan.partition_by, removes=removes,
                                      metadata=meta, transactions=transactions,
                                      expect_version=plan.base.version if removes else None)
            inserted = self.rows if plan.mode == "merge" else None
            return WriteResult(self.table, plan.mode, self.rows, snap.version, snap.rows, inserted=inserted,
                               updated=0 if plan.mode == "merge" else None, snapshot=snap)
        files = [str(f.path) for f in self.files]
        if plan.delete_files:
            flagged = f"SELECT *, false AS {DELETE_FLAG} FROM ({scan_sql(lake.con, files, plan.schema)})"
            keys = f"SELECT *, true AS {DELETE_FLAG} FROM read_parquet({_list(plan.delete_files)})"
            sql = f"{flagged} UNION ALL BY NAME {keys}"
        else:
            sql = scan_sql(lake.con, files, plan.schema)
        try:
            reader = lake.con.sql(sql).to_arrow_reader(BATCH_ROWS)
        except duckdb.Error as exc:
            raise LakeError(failure(exc, store.path(layer, table), f"write to {self.table} failed; "
                                    "the table is unchanged", probe=isinstance(exc, duckdb.IOException))) from exc
        if plan.mode == "merge":
            snap, metrics = store.merge(layer, table, reader, keys=plan.keys,
                                        delete_flag=DELETE_FLAG if plan.delete_files else None,
                                        metadata=meta, transactions=transactions)
            return WriteResult(self.table, "merge", self.rows, snap.version, snap.rows,
                               inserted=metrics.get("num_target_rows_inserted", 0),
                               updated=metrics.get("num_target_rows_updated", 0),
                               deleted=metrics.get("num_target_rows_deleted", 0), snapshot=snap)
        snap = store.write_arrow(layer, table, reader, mode=plan.mode, partition_by=plan.partition_by,
                                 metadata=meta, transactions=transactions)
        return WriteResult(self.table, plan.mode, self.rows, snap.version, snap.rows, snapshot=snap)

    def _add(self, f: StagedFile) -> Any:
        folder = self._lake.store.path(*self._lake.split_name(self.table))
        stats = file_stats(f.rows, f.columns, self._plan.schema, self._plan.partition_by)
        return add_action(f.path.relative_to(folder).as_posix(), f.size, f.partition, stats)

    def _copy_kept(self, select_sql: str) -> list[StagedFile]:
        folder = self._lake.store.path(*self._lake.split_name(self.table))
        return copy_rows(self._lake.con, select_sql, folder, self._plan.partition_by)


def stage(lake: Lakehouse, name: str, rel: duckdb.DuckDBPyRelation, *, mode: str = "replace",
          keys: Sequence[str] = (), where: str | None = None, partition_by: Sequence[str] | None = None,
          delete: duckdb.DuckDBPyRelation | None = None, con: duckdb.DuckDBPyConnection | None = None) -> Staged:
    """Write the rows of ``rel`` as Parquet for a write to ``name``; nothing is committed.

    ``con`` runs the write when ``rel`` belongs to another cursor than the lake's.

    Raises:
        LakeError: bad mode, key, partitioning or ``where``; a failing query (no file is left behind).
    """
    layer, table = lake.split_name(name)
    if mode not in WRITE_MODES:
        raise LakeError(f"write to {name}: mode {mode!r} is not one of {', '.join(WRITE_MODES)}")
    con = con or lake.con
    base = lake.store.snapshot(layer, table) if lake.store.exists(layer, table) else None
    plan = make_plan(con, name, rel, mode, tuple(keys), where, partition_by, base, delete is not None)
    folder: Path | ObjectPath
    if lake.store.remote:
        # Staged on local disk, uploaded by the commit (see the module docs).
        folder = plan.scratch = local_staging_folder(f"{layer}.{table}")
        if plan.direct:
            plan.upload_to = lake.store.path(layer, table)  # type: ignore[assignment]
    else:
        folder = lake.store.path(layer, table) if plan.direct else \
            lake.store.root / STAGING_DIR / f"{layer}.{table}-{uuid.uuid4().hex[:12]}"
        plan.scratch = None if plan.direct else folder
    view = f"__medallion_stage_{next(_VIEWS)}"
    files: list[StagedFile] = []
    try:
        _expose(con, rel, view)
        files = copy_rows(con, aligned_select(con, rel, view, plan), folder, plan.partition_by if plan.direct else ())
        staged = Staged(lake, name, plan, files)
        if plan.mode == "merge":
            _check_keys(con, staged, name, plan.keys)
            if delete is not None:
                staged.also_delete(delete)
        if plan.mode == "replace_where" and plan.where and plan.base is not None:
            _check_where(staged, name, plan.where)
        return staged
    except BaseException as exc:
        lake.store.delete([f.path for f in files])
        if plan.scratch is not None:
            lake.store.rmtree(plan.scratch)
        _drop_uncreated(lake, name, plan)
        if isinstance(exc, duckdb.Error | OSError):
            raise LakeError(failure(exc, folder, f"write to {name} ({mode}) failed; the table is unchanged",
                                    probe=isinstance(exc, duckdb.IOException | OSError))) from exc
        raise
    finally:
        con.execute(f"DROP VIEW IF EXISTS {view}")


def _drop_uncreated(lake: Lakehouse, name: str, plan: Plan) -> None:
    """After an aborted first write: remove the (now empty) folders staging made for the table.

    Only empty folders go (``rmdir``), and only while the table has no commit, so another
    writer's files or a half-made ``_delta_log`` stay for the next writer or vacuum. Object
    stores have no folders.
    """
    layer, table = lake.split_name(name)
    folder = lake.store.path(layer, table)
    if not (plan.direct and plan.base is None and isinstance(folder, Path) and folder.is_dir()) \
            or lake.store.exists(layer, table):
        return
    subfolders = sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for sub in [*subfolders, folder]:
        try:
            sub.rmdir()
        except OSError:
            continue  # not empty, or gone already


def _expose(con: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, view: str) -> None:
    """Make ``rel`` queryable on ``con`` as ``view`` (streamed over Arrow if it belongs to another connection)."""
    rel.create_view(view, replace=True)
    try:
        con.execute(f"DESCRIBE {view}")  # binds, reads nothing
    except duckdb.CatalogException:
        con.from_arrow(rel.to_arrow_reader(BATCH_ROWS)).create_view(view, replace=True)


def _check_keys(con: duckdb.DuckDBPyConnection, staged: Staged, name: str, keys: tuple[str, ...]) -> None:
    rel = staged.relation
    cols = ", ".join(quote_ident(k) for k in keys)
    nulls = " OR ".join(f"{quote_ident(k)} IS NULL" for k in keys)
    bad = rel.filter(nulls).aggregate("count(*)").fetchall()[0][0]
    if bad:
        raise LakeError(f"write to {name}: {bad} new row(s) have a null merge key ({', '.join(keys)})")
    dupes = rel.aggregate(f"{cols}, count(*) AS n").filter("n > 1").order("n DESC").limit(3).fetchall()
    if dupes:
        sample = "; ".join(str(row[:-1] if len(row) > 2 else row[0]) for row in dupes)
        raise LakeError(f"write to {name}: merge key ({', '.join(keys)}) is not unique in the new rows "
                        f"(e.g. {sample})",
                        hint="keep one row per key first, e.g. lake.latest(rows, key=..., order_by=...)")


def _stage_delete_keys(con: duckdb.DuckDBPyConnection, delete: duckdb.DuckDBPyRelation, staged: Staged,
                       folder: Path | ObjectPath, name: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    """Write the keys to delete (those not also upserted) next to the staged rows."""
    missing = [k for k in keys if k not in delete.columns]
    if missing:
        raise LakeError(f"write to {name}: delete=... has no column {', '.join(missing)} (the merge key)")
    view = f"__medallion_delete_{next(_VIEWS)}"
    delete.create_view(view, replace=True)
    cols = ", ".join(quote_ident(k) for k in keys)
    staged_view = f"__medallion_upsert_{next(_VIEWS)}"
    staged.relation.create_view(staged_view, replace=True)
    try:
        not_null = " AND ".join(f"{quote_ident(k)} IS NOT NULL" for k in keys)
        sql = (f"SELECT DISTINCT {cols} FROM {view} WHERE {not_null} "
               f"EXCEPT SELECT {cols} FROM {staged_view}")
        files = copy_rows(con, sql, folder / f"delete-{next(_VIEWS)}")
    finally:
        con.execute(f"DROP VIEW IF EXISTS {view}")
        con.execute(f"DROP VIEW IF EXISTS {staged_view}")
    return tuple(str(f.path) for f in files)


def _check_where(staged: Staged, name: str, where: str) -> None:
    outside = staged.relation.filter(f"({where}) IS NOT TRUE").aggregate("count(*)").fetchall()[0][0]
    if outside:
        raise LakeError(f"write to {name} (replace_where): {outside:,} of the new rows do not match "
                        f"where={where!r}; they would not be replaced next time", hint="filter the new rows with "
                        "the same condition, or widen where=")


def _list(paths: Sequence[str]) -> str:
    return "[" + ", ".join(literal(p) for p in paths) + "]"
