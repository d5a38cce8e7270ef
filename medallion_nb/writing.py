"""The write side of the lakehouse handle: write, stage, changes, keys, sync, write_split, vacuum.

:class:`WritePath` is mixed into :class:`~medallion_nb.lakehouse.Lakehouse`; the
mechanics live in :mod:`medallion_nb.storage` (DuckDB writes the rows as Parquet,
one Delta commit publishes them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import duckdb

from medallion_nb.engine import to_relation
from medallion_nb.errors import LakeError, UsageError
from medallion_nb.incremental import Keys, query_keys, scoped, sync
from medallion_nb.reporting import report_write
from medallion_nb.sql import storable_columns
from medallion_nb.storage import (
    METADATA_PREFIX,
    Changes,
    Snapshot,
    Staged,
    WriteResult,
    consumption_for,
    read_changes,
    stage,
    vacuum_lake,
)

if TYPE_CHECKING:
    from deltalake import Transaction

    from medallion_nb.engine import Rows
    from medallion_nb.lakehouse import Lakehouse
    from medallion_nb.quarantine import SplitResult


class WritePath:
    """Writing to the lake; mixed into :class:`~medallion_nb.lakehouse.Lakehouse`."""

    def relation(self: Lakehouse, data: Rows, *, what: str = "data", text: bool = True) -> duckdb.DuckDBPyRelation:
        """Turn rows into a relation: a DuckDB relation as is, SQL text (a query), a pandas DataFrame or Arrow data.

        ``what`` names the argument in messages (e.g. ``"write: data"``). With ``text=False``
        a ``str`` is refused too (for arguments where a ``str`` is a table name).

        Raises:
            LakeError: a query DuckDB rejects or that returns no rows, or a value that is not rows.
        """
        rel = to_relation(self.con, data, what=what, text=text)
        if isinstance(data, str):
            self._read_sql(data)
        return rel

    def write(self: Lakehouse, name: str, data: Rows, *, mode: str = "replace",
              key: str | Sequence[str] | None = None, where: str | Keys | None = None,
              partition_by: str | Sequence[str] | None = None, delete: Rows | None = None,
              metadata: Mapping[str, str] | None = None, expect: Mapping[str, Mapping[str, Any]] | None = None,
              quarantine: str | None = None) -> WriteResult:
        """Write rows to ``<layer>.<table>`` in one atomic commit.

        Args:
            name: target table, e.g. ``"silver.orders"``.
            data: a DuckDB relation, SQL text, a pandas DataFrame or Arrow data.
            mode: ``replace`` (new content), ``append`` (add rows), ``merge`` (update
                rows whose key matches, insert the rest) or ``replace_where`` (replace
                the rows matching ``where``, or the partitions present in the new rows).
            key: the column(s) identifying a row; required for ``merge``.
            where: SQL condition on the table's columns, for ``replace_where``; every new
                row must match it. Or a :class:`~medallion_nb.incremental.Keys` set: the rows
                of those keys are replaced (every key, on a full build: the table is replaced).
            partition_by: column(s) to partition the table by (dates, whole numbers,
                text, booleans); taken when the table is created or replaced.
            delete: with ``merge``, rows (SQL, relation, DataFrame) whose key columns
                name rows to delete (a key that is also upserted stays).
            metadata: extra key/values stored in the Delta commit.
            expect: checks by action (``fail`` / ``quarantine`` / ``warn``) evaluated on
                the rows before they are committed, besides those declared for the table in
                medallion.yaml; see :mod:`medallion_nb.expectations`.
            quarantine: where ``quarantine`` sends failing rows (default ``<name>_quarantine``).

        Returns:
            What was written: rows, table version and the table's new row count
            (with ``expect``: also the quality ``report`` and the ``quarantine`` write).

        Raises:
            LakeError: bad name, mode, key or condition, a failing query, or a failed
                commit; the table is unchanged.
            ExpectationError: a ``fail`` expectation failed; nothing was committed.
        """
        from medallion_nb.expectations import expectations_for, write_expected

        self.split_name(name, what="write: name")
        mode, where = scoped(mode, where)
        groups = expectations_for(self, name, expect)
        if groups is not None:
            self._check_writable(f"write to {name}")
            keys = (key,) if isinstance(key, str) else tuple(key or ())
            parts = (partition_by,) if isinstance(partition_by, str) else partition_by
            options = {k: v for k, v in (("where", where), ("partition_by", tuple(parts or ()) or None),
                                         ("delete", self.relation(delete, what="write: delete")
                                                      if delete is not None else None))
                       if v is not None}
            rel = self.storable(self.relation(data, what="write: data"), name)
            return write_expected(self, name, rel, groups, mode=mode, key=keys, metadata=metadata,
                                  quarantine=quarantine, options=options, once=_read_once(data))
        staged = self.stage(name, data, mode=mode, key=key, where=where, partition_by=partition_by, delete=delete)
        return staged.commit(metadata)

    def stage(self: Lakehouse, name: str, data: Rows, *, mode: str = "replace",
              key: str | Sequence[str] | None = None, where: str | Keys | None = None,
              partition_by: str | Sequence[str] | None = None, delete: Rows | None = None) -> Staged:
        """Write the rows for a :meth:`write` as Parquet without committing them (stage, audit, commit).

        The returned :class:`~medallion_nb.storage.Staged` reads the staged rows
        (``.relation``, ``.rows``) so they can be checked first; ``.commit()``
        publishes them in one commit, ``.abort()`` (or leaving a ``with`` block)
        deletes them. Arguments as for :meth:`write`.

        Raises:
            LakeError: as for :meth:`write`; nothing is left behind.
        """
        layer, table = self.split_name(name, what="write: name")
        self._check_writable(f"write to {name}")
        self._check_case(layer, table)
        mode, where = scoped(mode, where)
        keys = (key,) if isinstance(key, str) else tuple(key or ())
        parts = (partition_by,) if isinstance(partition_by, str) else \
            (tuple(partition_by) if partition_by is not None else None)
        rel = self.storable(self.relation(data, what="write: data"), name)
        removed = self.relation(delete, what="write: delete") if delete is not None else None
        return stage(self, name, rel, mode=mode, keys=keys, where=where, partition_by=parts, delete=removed)

    def changes(self: Lakehouse, name: str, *, full_refresh: bool = False) -> Changes:
        """The rows committed to ``name`` since this notebook last consumed it.

        The consumed version is recorded in the same commit as every table written
        afterwards through this handle (Delta's ``txn`` action), so a crash or a
        retry neither skips nor repeats a change; see :mod:`medallion_nb.storage.changes`.
        ``.rows`` holds the new rows, ``.deleted`` the removed ones; the first time,
        or with ``full_refresh``, ``.rows`` is the whole table.

        Raises:
            LakeError: the handle has no ``notebook``, the table does not exist, or the
                version consumed last cannot be read any more (use ``full_refresh=True``).
        """
        found = read_changes(self, name, full_refresh=full_refresh)
        self._read(name, "changes")  # in the run's write log, for lineage
        return found

    def keys(self: Lakehouse, data: Rows, **inputs: Keys | duckdb.DuckDBPyRelation) -> Keys:
        """The keys a query finds, as a :class:`~medallion_nb.incremental.Keys` set.

        ``inputs`` name key sets (or relations) the SQL reads, e.g. the orders of the
        customers that changed::

            lake.keys("SELECT order_id FROM bronze.orders WHERE customer_id IN (SELECT customer_id FROM changed)",
                      changed=customers.keys("customer_id"))

        The query runs when the keys are first used; combined (``|``) with every key
        (a full build), it never runs.

        Raises:
            LakeError: a query DuckDB rejects, or an input that cannot be named so.
        """
        return query_keys(self, data, inputs)

    def sync(self: Lakehouse, name: str, data: Rows, *, key: str | Sequence[str], full_refresh: bool = False,
             partition_by: str | Sequence[str] | None = None,
             expect: Mapping[str, Mapping[str, Any]] | None = None) -> WriteResult:
        """Make ``name`` hold exactly ``data``, rewriting only the rows that differ (by ``key``).

        For small tables recomputed in full every run (dimensions, one row per customer):
        unchanged rows are not rewritten, and a run that changes nothing commits nothing.
        The first time, with ``full_refresh``, or when the columns changed, the table is
        replaced. See :func:`medallion_nb.incremental.sync`.

        Raises:
            LakeError: bad name or key, a failing query, or a failed commit.
            ExpectationError: a ``fail`` expectation failed.
        """
        self.split_name(name, what="sync: name")
        self._check_writable(f"sync to {name}")
        return sync(self, name, data, key=key, full_refresh=full_refresh, partition_by=partition_by, expect=expect)

    def write_split(self: Lakehouse, data: Rows, rules: Mapping[str, str], *, good: str, bad: str,
                    good_columns: str = "*", bad_columns: str = "*", mode: str = "replace",
                    key: str | Sequence[str] | None = None, expect: Mapping[str, Any] | None = None,
                    where: str | Keys | None = None,
                    partition_by: str | Sequence[str] | None = None) -> SplitResult:
        """Write the rows that break no rule to ``good`` and the others, with reasons, to ``bad``.

        Each rule is SQL that is true for a row to quarantine; ``bad_columns``
        can name ``_quarantine_reason``. The tagged rows are never staged whole
        (unlike :meth:`split`): DuckDB reads ``data`` twice, keeping the quarantined rows
        and then writing the passing ones (an Arrow stream is read once). With
        ``mode="merge"`` both sides merge by ``key`` and a key landing on one side
        leaves the other; with ``mode="replace_where"`` and
        ``where=keys`` both sides replace the rows of those keys (an order that moved
        sides leaves the other). ``partition_by`` partitions ``good`` when it is
        created or replaced; see :func:`medallion_nb.expectations.write_split`.
        ``expect`` (``fail`` / ``warn``) is checked on the staged ``good`` rows before
        either table is committed.

        Raises:
            LakeError: a bad table name, mode, key or projection, or a failed write.
            ExpectationError: a ``fail`` expectation failed; nothing was committed.
        """
        from medallion_nb.expectations import write_split

        self.split_name(good, what="write_split: good")
        self.split_name(bad, what="write_split: bad")
        self._check_writable(f"write to {good}")
        mode, where = scoped(mode, where)
        return write_split(self, self.relation(data, what="write_split: data"), rules, good=good, bad=bad,
                           good_columns=good_columns, bad_columns=bad_columns, mode=mode, key=key, expect=expect,
                           where=where, partition_by=partition_by, once=_read_once(data))

    def vacuum(self: Lakehouse, name: str | None = None, *, retain_hours: int = 168,
               dry_run: bool = False) -> dict[str, list[str]]:
        """Delete the files no table version newer than ``retain_hours`` needs.

        Every ``replace`` keeps the previous version's files for time travel, and
        interrupted writes leave files no version references; this reclaims both
        (and what half-created tables left), never the files of a published
        snapshot. One table or, by default, the whole lake; returns the removed
        (with ``dry_run``: removable) files per table; see :mod:`medallion_nb.storage.vacuum`.

        Raises:
            UsageError: a retention that is not a number of hours >= 0.
            LakeError: an unknown table, or a file that cannot be deleted (the cause and path first).
        """
        if isinstance(retain_hours, bool) or not isinstance(retain_hours, int | float) or retain_hours < 0:
            raise UsageError(f"vacuum: retain_hours must be a number of hours >= 0, got {retain_hours!r}")
        self._check_writable("vacuum")
        tables = None
        if name:
            layer, table = self.split_name(name, what="vacuum: name")
            if not self.store.exists(layer, table):
                raise LakeError(f"vacuum: table {name} does not exist")
            tables = [(layer, table)]
        removed = vacuum_lake(self, tables, retain_hours, dry_run=dry_run)
        if not dry_run:
            self.refresh()
        return removed

    # -- for the modules that build on the write path (expectations, quarantine, incremental, storage) --
    def storable(self: Lakehouse, rel: duckdb.DuckDBPyRelation, name: str) -> duckdb.DuckDBPyRelation:
        """``rel`` with the columns whose DuckDB type Delta cannot store cast to the nearest type it can.

        Raises:
            LakeError: a column name that is not a plain name, or duplicate column names.
        """
        exprs = storable_columns(rel, name)
        return rel.project(", ".join(exprs)) if exprs else rel

    def commit_metadata(self: Lakehouse, mode: str) -> dict[str, str]:
        """What every commit through this handle records: the mode, the run id and the notebook."""
        meta = {METADATA_PREFIX + "mode": mode, METADATA_PREFIX + "run_id": self.run_id}
        if self.notebook:
            meta[METADATA_PREFIX + "notebook"] = self.notebook
        return meta

    def consumption_for(self: Lakehouse, name: str, mode: str, rows: int,
                        deleting: bool) -> tuple[list[Transaction], Snapshot | None]:
        """The ``txn`` actions a commit to ``name`` carries (what :meth:`changes` consumed), and the
        snapshot to report instead when the commit would change and record nothing.

        Raises:
            LakeError: an append would add again rows of a change the table partly holds.
        """
        return consumption_for(self, name, mode, rows, deleting)

    def committed(self: Lakehouse, result: WriteResult) -> None:
        """After a commit: read the new version, keep the write for :meth:`summary` and log it for the run."""
        self._txn_handles.clear()  # a commit changes the logs changes() read (storage.changes._recorded)
        layer, table = self.split_name(result.table)
        self._register(layer, table, result.snapshot or self.store.snapshot(layer, table))
        self.writes.append(result)
        report_write(result, run_id=self.run_id)


def _read_once(data: object) -> bool:
    """Whether rows can be read only once (an Arrow stream), so a write must not read them twice."""
    import pyarrow as pa

    return isinstance(data, pa.RecordBatchReader)
