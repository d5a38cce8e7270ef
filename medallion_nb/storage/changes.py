"""What changed in a table since a notebook last consumed it, recorded with the notebook's output.

``lake.changes("bronze.orders")`` returns the rows committed to ``bronze.orders`` after the
version the current notebook last consumed, up to the current version. Nothing is
stored beside the data: every table the notebook writes afterwards (through the same
lakehouse handle) records the consumed version in the *same* Delta commit, as Delta's
own ``txn`` action (application id ``medallion_nb:<notebook>:<table>``). A crash before
that commit leaves the old version recorded, so the retry reads the same change again;
after it, the change is recorded with the rows it produced. Nothing is skipped or done
twice.

**The notebook's progress** is the lowest version recorded in any table that carries
its application id (its outputs). A notebook that writes several outputs and dies
between them leaves them at different versions; the next run starts from the lowest,
so every output gets the change:

- ``merge``, ``replace`` and ``replace_where`` outputs simply apply it again, which
  leaves them as they were (they are idempotent);
- an ``append`` output that already recorded the end version is skipped (Delta's
  idempotent-writer rule), so an immediate retry adds nothing twice;
- an ``append`` output that recorded a version *inside* the new range cannot be
  caught up without duplicating rows: the write fails and says so (rebuild that
  output with ``full_refresh=True``, or write it with ``merge`` by a key).

**Cost in proportion to the change.** A version's content is the union of its data
files (tables written here use no deletion vectors), so the change between two
versions is the difference of their file sets. When no file was removed (appends, the
usual case for bronze), the new rows are exactly the rows of the added files, read
alone. When files were removed (replace, merge, replace_where), the rows of the added
and the removed files are compared as multisets (``EXCEPT ALL``): rows that a rewrite
carried over cancel out, and what remains is what was inserted and what was deleted.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import duckdb
from deltalake import Transaction

from medallion_nb.errors import LakeError, MedallionError
from medallion_nb.sql import quote_name
from medallion_nb.storage.delta import Snapshot, WriteResult
from medallion_nb.storage.scan import duckdb_types, scan_sql

if TYPE_CHECKING:
    from medallion_nb.incremental import Keys
    from medallion_nb.lakehouse import Lakehouse

APP_PREFIX = "medallion_nb"


def app_id(notebook: str, table: str) -> str:
    """The Delta ``txn`` application id of ``notebook`` consuming ``table``."""
    return f"{APP_PREFIX}:{notebook}:{table}"


@dataclass(frozen=True)
class Consumption:
    """What a notebook consumed from one table: versions after ``start`` up to ``end``."""

    table: str
    app_id: str
    start: int  # last version consumed before (-1: none)
    end: int
    full: bool
    # No file was added or removed between start and end: nothing to apply.
    empty: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Changes:
    """The rows committed to a table after ``start`` up to ``end``.

    ``rows`` holds the rows inserted (and the new values of updated rows), ``deleted``
    the rows removed (and the old values of updated rows), both as lazy DuckDB
    relations with the table's columns. With ``full`` (first run, ``full_refresh=True``,
    or a table that was re-created) ``rows`` is the whole table and ``deleted`` is empty.
    """

    table: str
    start: int
    end: int
    full: bool
    rows: duckdb.DuckDBPyRelation = field(repr=False)
    deleted: duckdb.DuckDBPyRelation = field(repr=False)
    added_files: int = 0
    removed_files: int = 0
    note: str | None = None
    lake: Lakehouse | None = field(default=None, repr=False, compare=False)

    def keys(self, *columns: str) -> Keys:
        """The keys these rows touch (new and removed rows alike), e.g. ``keys("order_id")``.

        ``columns`` are column names or SQL expressions (``"order_month AS month"``). After
        a full read (``full``) the set is every key: see :class:`medallion_nb.incremental.Keys`.

        Raises:
            LakeError: no columns, or an expression DuckDB cannot compute.
        """
        from medallion_nb.incremental import changed_keys

        if self.lake is None:
            raise LakeError(f"{self}: keys() needs the lakehouse handle that read the changes")
        return changed_keys(self.lake, self, columns)

    def rollup(self, by: str | Sequence[str], *, into: str, where: str | None = None,
               **aggregates: str) -> duckdb.DuckDBPyRelation:
        """Aggregates of the whole table per ``by``, from what ``into`` holds plus this change.

        ``rollup("customer_id", into="gold.clv", where="status <> 'cancelled'",
        revenue="sum(revenue)", orders="count(order_id)")`` gives the same rows as that
        ``GROUP BY`` over the whole table, at the cost of the change: see
        :func:`medallion_nb.incremental.rollup`.

        Raises:
            LakeError: an aggregate that cannot be updated from a change, or bad SQL.
        """
        from medallion_nb.incremental import rollup

        if self.lake is None:
            raise LakeError(f"{self}: rollup() needs the lakehouse handle that read the changes")
        consumer = app_id(self.lake.notebook, self.table) if self.lake.notebook else None
        return rollup(self.lake, self, by, into=into, where=where, aggregates=aggregates, consumer=consumer)

    def __str__(self) -> str:
        if self.full:
            what = f"all rows (version {self.end})"
        elif self.start == self.end:
            what = f"nothing new since version {self.end}"
        else:
            what = (f"versions {self.start + 1}..{self.end}: {self.added_files} file(s) added, "
                    f"{self.removed_files} removed")
        return f"changes of {self.table}: {what}" + (f" ({self.note})" if self.note else "")

    def __repr__(self) -> str:
        return f"<{self}>"

    def _repr_html_(self) -> str:
        return f"<b>{html.escape(self.table)}</b>: {html.escape(str(self).split(': ', 1)[1])}"


def read_changes(lake: Lakehouse, name: str, *, full_refresh: bool = False) -> Changes:
    """The changes of ``name`` since the lakehouse's notebook last consumed it; remembers the consumption.

    Raises:
        LakeError: no notebook name on the handle, an unknown table, or a consumed version
            whose log or files are gone (run with ``full_refresh=True``).
    """
    if not lake.notebook:
        raise LakeError(f"changes({name!r}) needs to know which notebook consumes it",
                        hint="open the lake with mnb.connect(project_dir, notebook='<name>')")
    layer, table = lake.split_name(name, what="changes: name")
    if not lake.store.exists(layer, table):
        raise LakeError(f"changes({name!r}): table {name} does not exist", hint=f"run the {layer} layer first")
    app = app_id(lake.notebook, name)
    current = lake.store.snapshot(layer, table)
    start, note = -1, None
    if not full_refresh:
        recorded = [v for v in _recorded(lake, app) if v is not None]
        start = min(recorded) if recorded else -1
        if start > current.version:
            start, note = -1, f"{name} was re-created (version {current.version} < consumed {start}): all rows"
        elif start >= 0 and (missing := _missing_outputs(lake)):
            start, note = -1, f"{missing[0]}, which this notebook writes, does not exist yet: all rows"
    full = start < 0
    end = current.version
    consumption = Consumption(name, app, start, end, full)
    previous = lake.consumed.get(name)
    if previous is not None and previous != consumption:
        raise LakeError(f"changes({name!r}) was already read in this session up to version {previous.end}; "
                        "open a new lakehouse handle (connect) to consume newer versions")
    lake.consumed[name] = consumption
    if full:
        return Changes(name, start, end, True, lake.table(name), _empty(lake, current), len(current.files), 0, note,
                       lake=lake)
    if start == end:
        lake.consumed[name] = replace(consumption, empty=True)
        return Changes(name, start, end, False, _empty(lake, current), _empty(lake, current), lake=lake)
    try:
        old = lake.store.snapshot(layer, table, start)
    except LakeError as exc:
        raise LakeError(f"changes({name!r}): version {start}, which this notebook consumed last, can no longer "
                        f"be read ({exc.message})", hint="run with full_refresh=True") from exc
    old_files = set(old.files)
    new_files = set(current.files)
    added = [f for f in current.files if f not in old_files]
    removed = [f for f in old.files if f not in new_files]
    if not added and not removed:  # commits that changed no data (metadata, consumption records)
        lake.consumed[name] = replace(consumption, empty=True)
    inserted = _aligned(lake, added, current, current)
    if not removed:
        return Changes(name, start, end, False, inserted, _empty(lake, current), len(added), 0, lake=lake)
    gone = lake.store.missing(removed)
    if gone:
        raise LakeError(f"changes({name!r}): {len(gone)} data file(s) of version {start} were vacuumed "
                        f"(e.g. {gone[0]}); the rows removed since cannot be known", hint="run with full_refresh=True")
    before = _aligned(lake, removed, old, current)
    return Changes(name, start, end, False, inserted.except_(before), before.except_(inserted),
                   len(added), len(removed), lake=lake)


def consumption_for(lake: Lakehouse, name: str, mode: str, rows: int,
                    deleting: bool = False) -> tuple[list[Transaction], Snapshot | None]:
    """The ``txn`` actions a write to ``name`` carries, and the snapshot to report if it is skipped.

    Raises:
        LakeError: an append would add again rows of a change the table partly holds.
    """
    consumed = list(lake.consumed.values())
    layer, table = lake.split_name(name)
    # A write that changes no row (nothing added, nothing removed) is committed only
    # to record consumption the table does not hold yet.
    no_effect = rows == 0 and not deleting and mode in ("append", "merge", "replace_where")
    if not consumed:
        if no_effect and lake.store.exists(layer, table):
            from medallion_nb.storage.delta import snapshot_of

            return [], snapshot_of(lake.store.open(layer, table), lake.store.path(layer, table))
        return [], None
    transactions = [Transaction(c.app_id, c.end) for c in consumed]
    if not lake.store.exists(layer, table):
        return transactions, None
    handle = lake.store.open(layer, table)
    recorded = {c.table: handle.transaction_version(c.app_id) for c in consumed}
    holds_all = all(not c.full and recorded[c.table] is not None and recorded[c.table] >= c.end for c in consumed)
    # Nothing to record either when the versions not yet recorded changed no data.
    settled = all(not c.full and recorded[c.table] is not None
                  and (recorded[c.table] >= c.end or (c.empty and recorded[c.table] >= c.start)) for c in consumed)
    if (holds_all and mode == "append") or (settled and no_effect):
        from medallion_nb.storage.delta import snapshot_of

        return transactions, snapshot_of(handle, lake.store.path(layer, table))
    if mode == "append":
        partial = [c for c in consumed if not c.full and recorded[c.table] is not None
                   and c.start < recorded[c.table] < c.end]
        if partial:
            c = partial[0]
            raise LakeError(f"append to {name}: it already holds {c.table} up to version {recorded[c.table]}, "
                            f"but the rows come from versions {c.start + 1}..{c.end}; appending would add some "
                            "rows twice", hint=f"write {name} with mode='merge' and a key, or rebuild it with "
                                               "full_refresh=True")
    return transactions, None


def skipped_result(name: str, mode: str, snap: Snapshot) -> WriteResult:
    return WriteResult(name, mode, 0, snap.version, snap.rows, skipped=True, snapshot=snap)


def _recorded(lake: Lakehouse, app: str) -> list[int | None]:
    # A notebook reads several changes before it writes: open each table's log once for
    # all of them (the handle forgets them at its next commit).
    handles = lake._txn_handles
    out = []
    for layer, table in lake.store.tables():
        if layer in lake.layers:
            if (layer, table) not in handles:
                handles[(layer, table)] = lake.store.open(layer, table)
            out.append(handles[(layer, table)].transaction_version(app))
    return out


def _missing_outputs(lake: Lakehouse) -> list[str]:
    """The tables the handle's notebook writes (by its lineage) that do not exist yet.

    Such a table holds none of what the notebook consumed before (a run that died
    before writing it, or a table new in the notebook), so the changes since the
    other tables' record would build it from a fraction of the rows: it needs all rows.
    """
    if lake._notebook_writes is None:
        from medallion_nb.lineage import project_lineage

        try:
            lineage = project_lineage(lake.project)
        except MedallionError:  # contradicting notebooks: the run reports them; nothing to add here
            lineage = None
        mine = [nb for nb in (lineage.notebooks if lineage else ())
                if lake.notebook in (nb.notebook.stem, lineage.relative(nb.notebook), str(nb.notebook))]
        lake._notebook_writes = mine[0].writes if len(mine) == 1 else ()
    return [t for t in lake._notebook_writes
            if t.partition(".")[0] in lake.layers and not lake.store.exists(*lake.split_name(t))]


def _aligned(lake: Lakehouse, files: list[str], snap: Snapshot, target: Snapshot) -> duckdb.DuckDBPyRelation:
    """The rows of ``files`` (written under ``snap``'s schema) with ``target``'s columns and types."""
    rel = lake.con.sql(scan_sql(lake.con, files, snap.schema, snap.partition_by))
    have = set(rel.columns)
    types = duckdb_types(lake.con, target.schema)
    exprs = [f"CAST({quote_name(c)} AS {t}) AS {quote_name(c)}" if c in have else
             f"CAST(NULL AS {t}) AS {quote_name(c)}" for c, t in types.items()]
    return rel.project(", ".join(exprs))


def _empty(lake: Lakehouse, snap: Snapshot) -> duckdb.DuckDBPyRelation:
    return lake.con.sql(scan_sql(lake.con, [], snap.schema))

