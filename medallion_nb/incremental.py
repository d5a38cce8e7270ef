"""Incremental processing: the keys a change touched, and writing only what they recompute.

A notebook that processes changes follows one pattern, whatever the table:

1. **What changed**: ``lake.changes("bronze.orders")`` gives the rows committed since the
   notebook last consumed the table (:mod:`medallion_nb.storage.changes`).
2. **What to recompute**: ``changes.keys("order_id")`` is the set of keys those rows touch
   (new and removed rows alike) as a :class:`Keys`; sets combine with ``|``, and
   ``lake.keys(sql, **inputs)`` adds keys found by a query (say, the orders of a customer
   that changed).
3. **Recompute them with the same SQL as a full build**, over ``keys.filter(table)`` (the
   rows of those keys) instead of the whole table.
4. **Write them back**: ``lake.write(name, rows, mode="replace_where", where=keys)`` removes
   every row of those keys and adds the new ones in one commit, so a key whose rows
   disappeared (an order that moved to the quarantine) leaves no stale row.

On a full refresh (``changes(..., full_refresh=True)``, the first run, or a table that was
re-created) the keys are **every key** (``keys.full``): ``filter`` returns the whole table
and the write replaces the table — the same code path rebuilds everything.

:func:`sync` covers small tables recomputed in full (dimensions, one row per customer):
it compares the new rows with the table and writes only the rows that differ.

:func:`rollup` covers aggregates over a large table (one row per customer over every order
line): the table that holds them is updated from the change alone — what it held, plus the
aggregates of the new rows — instead of aggregating the whole table again.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import duckdb

from medallion_nb.errors import LakeError
from medallion_nb.sql import quote_ident, quote_name

if TYPE_CHECKING:
    from medallion_nb.engine import Rows
    from medallion_nb.lakehouse import Lakehouse
    from medallion_nb.storage import Changes, WriteResult

# Materialised key sets and sync inputs live in DuckDB's own catalog (``main``), not in
# the temp schema, so every cursor of the lake's connection sees them.
_PREFIX = "__medallion_keys_"
_NAMES = itertools.count(1)


class Keys:
    """A set of key values a run recomputes — or every key (``full``).

    Build one with :meth:`Changes.keys <medallion_nb.storage.Changes.keys>` or
    :meth:`Lakehouse.keys <medallion_nb.lakehouse.Lakehouse.keys>`; combine with ``|``.
    The values are computed when first needed and kept in a DuckDB table for the
    lakehouse's lifetime, so a set is computed once however often it is used.
    """

    def __init__(self, lake: Lakehouse, columns: Sequence[str], source: Callable[[], duckdb.DuckDBPyRelation],
                 *, full: bool = False, what: str = "") -> None:
        self._lake = lake
        self.columns = tuple(columns)
        self._source = source
        self.full = full
        self.what = what
        self._table: str | None = None
        self._count: int | None = None
        self._has_null = False

    # -- the values ------------------------------------------------------------
    @property
    def table(self) -> str:
        """The DuckDB table holding the distinct key values (computed on first use)."""
        if self._table is None:
            name = f"main.{_PREFIX}{next(_NAMES)}"
            cols = ", ".join(quote_name(c) for c in self.columns)
            rel = self._source()
            try:
                rel.query("_keys", f"SELECT DISTINCT {cols} FROM _keys").create(name)
                nulls = " OR ".join(f"{quote_name(c)} IS NULL" for c in self.columns)
                self._count, self._has_null = self._lake.con.execute(
                    f"SELECT count(*), coalesce(bool_or({nulls}), false) FROM {name}").fetchall()[0]
            except duckdb.Error as exc:
                raise LakeError(f"the keys {self.what or cols} cannot be computed: {exc}") from exc
            self._table = name
        return self._table

    def __len__(self) -> int:
        self.table  # noqa: B018 - computes the set (and its size) once
        return int(self._count or 0)

    def relation(self) -> duckdb.DuckDBPyRelation:
        """The distinct key values as a DuckDB relation."""
        return self._lake.con.table(self.table)

    # -- combining ---------------------------------------------------------------
    def __or__(self, other: Keys) -> Keys:
        if not isinstance(other, Keys):
            return NotImplemented
        if len(other.columns) != len(self.columns):
            raise LakeError(f"cannot combine keys ({', '.join(self.columns)}) with keys ({', '.join(other.columns)}): "
                            "they need the same number of columns")
        what = f"{self.what} | {other.what}"
        if self.full or other.full:
            # Every key is every key: the other set is never computed.
            return Keys(self._lake, self.columns, self._source if self.full else other._source, full=True, what=what)
        cols = ", ".join(quote_name(c) for c in self.columns)
        theirs = ", ".join(f"{quote_name(o)} AS {quote_name(c)}" for o, c in zip(other.columns, self.columns,
                                                                                strict=True))

        def union() -> duckdb.DuckDBPyRelation:
            return self._lake.con.sql(f"SELECT {cols} FROM {self.table} UNION SELECT {theirs} FROM {other.table}")

        return Keys(self._lake, self.columns, union, what=what)

    # -- using them --------------------------------------------------------------
    def condition(self, on: str | Sequence[str] | None = None) -> str:
        """SQL that is true for a row whose key is in the set.

        ``on`` names the row's columns or SQL expressions matching the key columns
        (default: the key columns' own names). Null keys match null keys.
        """
        exprs = self._on(on)
        table = self.table
        if len(exprs) == 1:
            (expr,), (col,) = exprs, self.columns
            cond = f"{expr} IN (SELECT {quote_name(col)} FROM {table} WHERE {quote_name(col)} IS NOT NULL)"
            return f"({cond} OR {expr} IS NULL)" if self._has_null else cond
        if not self._has_null:
            cols = ", ".join(quote_name(c) for c in self.columns)
            return f"({', '.join(exprs)}) IN (SELECT {cols} FROM {table})"
        # Struct comparison treats null fields as equal; plain IN would not.
        packed = ", ".join(f"{quote_ident('k' + str(i))} := {e}" for i, e in enumerate(exprs))
        theirs = ", ".join(f"{quote_ident('k' + str(i))} := {quote_name(c)}" for i, c in enumerate(self.columns))
        return f"struct_pack({packed}) IN (SELECT struct_pack({theirs}) FROM {table})"

    def filter(self, data: str | Rows, *, on: str | Sequence[str] | None = None) -> duckdb.DuckDBPyRelation:
        """The rows of a table (``"silver.order_lines"``) or of rows (a relation, ...) whose key is in the set.

        A ``str`` is a table name; for the rows of a query pass ``lake.sql("SELECT ...")``.
        With ``full`` every row (nothing is filtered, and the set is never computed).
        ``on``: the columns or SQL expressions of ``data`` that match the key columns.

        Raises:
            LakeError: ``data`` is not a table name or rows, an unknown table, or an ``on``
                that does not fit the data.
        """
        rel = self._lake.table_or_rows(data, what="filter: data")
        if self.full:
            return rel
        try:
            return rel.filter(self.condition(on))
        except duckdb.Error as exc:
            raise LakeError(f"cannot filter by the keys ({', '.join(self.columns)}): {exc}",
                            hint="name the matching columns with on=...") from exc

    def _on(self, on: str | Sequence[str] | None) -> list[str]:
        if on is None:
            return [quote_name(c) for c in self.columns]
        exprs = [on] if isinstance(on, str) else list(on)
        if len(exprs) != len(self.columns):
            raise LakeError(f"on= names {len(exprs)} expression(s) for {len(self.columns)} key column(s) "
                            f"({', '.join(self.columns)})")
        return [f"({e})" for e in exprs]

    # -- display -----------------------------------------------------------------
    def __str__(self) -> str:
        cols = ", ".join(self.columns)
        if self.full:
            return f"every {cols} (a full build)"
        n = len(self)
        return f"{n:,} {cols} value{'s' if n != 1 else ''}"

    def __repr__(self) -> str:
        return f"<Keys {self}{f': {self.what}' if self.what else ''}>"

    def _repr_html_(self) -> str:
        import html

        return f"<b>{html.escape(str(self))}</b>" + (f" <small>({html.escape(self.what)})</small>" if self.what else "")


def changed_keys(lake: Lakehouse, changes: Changes, exprs: Sequence[str]) -> Keys:
    """The keys the rows of ``changes`` touch: ``exprs`` over its new and its removed rows.

    Raises:
        LakeError: no expressions, or one DuckDB cannot compute over the table's columns.
    """
    if not exprs:
        raise LakeError(f"{changes.table}: keys() needs at least one column, e.g. keys('order_id')")
    select = ", ".join(exprs)
    try:
        columns = changes.rows.project(select).columns
    except duckdb.Error as exc:
        raise LakeError(f"{changes.table}: keys({', '.join(map(repr, exprs))}): {exc}") from exc
    if changes.full:
        return Keys(lake, columns, lambda: changes.rows.project(select), full=True, what=f"all of {changes.table}")
    span = f"{changes.table} versions {changes.start + 1}..{changes.end}" if changes.end > changes.start \
        else f"{changes.table}: nothing new"
    return Keys(lake, columns, lambda: changes.rows.project(select).union(changes.deleted.project(select)), what=span)


def query_keys(lake: Lakehouse, data: Rows, inputs: Mapping[str, Keys | duckdb.DuckDBPyRelation]) -> Keys:
    """Keys found by a query; ``inputs`` name the key sets (or relations) it reads.

    The inputs are computed now and the query is checked, but it runs only when the
    keys are used: combined with a full set, it never runs.

    Raises:
        LakeError: a bad input name or a query DuckDB rejects.
    """
    views = {quote_ident(name): value.relation() if isinstance(value, Keys)
             else lake.relation(value, what=f"keys: {name}") for name, value in inputs.items()}

    def bound() -> duckdb.DuckDBPyRelation:
        # The names are (re)bound to this query's own inputs each time: another
        # lake.keys(...) may have used the same names for other sets meanwhile.
        for name, rel in views.items():
            try:
                rel.create_view(name.strip('"'), replace=True)
            except duckdb.Error as exc:
                raise LakeError(f"keys: input {name} cannot be used: {exc}") from exc
        return lake.relation(data, what="keys: data")

    rel = bound()
    what = "query over " + ", ".join(inputs) if inputs else "query"
    return Keys(lake, rel.columns, bound, what=what)


def sync(lake: Lakehouse, name: str, data: Rows, *, key: str | Sequence[str], full_refresh: bool = False,
         partition_by: str | Sequence[str] | None = None,
         expect: Mapping[str, Mapping[str, Any]] | None = None) -> WriteResult:
    """Make ``name`` hold exactly the rows of ``data``, writing only the rows that differ.

    For tables recomputed in full on every run (a dimension, one row per customer):
    the new rows are computed once, compared with the table, and only the keys whose
    rows changed, appeared or disappeared are rewritten (``replace_where`` on those
    keys). Nothing differs: nothing is committed (unless the commit must record what
    the notebook consumed). The first time, with ``full_refresh``, or when the columns
    changed, the table is replaced.

    Raises:
        LakeError: bad name or key, a failing query, or a failed commit.
        ExpectationError: a ``fail`` expectation failed on the rows to write.
    """
    keys = (key,) if isinstance(key, str) else tuple(key)
    if not keys:
        raise LakeError(f"sync to {name}: key=... names the column(s) that identify a row")
    rel = lake.relation(data, what="sync: data")
    missing = [k for k in keys if k not in rel.columns]
    if missing:
        raise LakeError(f"sync to {name}: key {', '.join(missing)} is not a column of the rows "
                        f"(columns: {', '.join(rel.columns)})")
    temp = f"main.{_PREFIX}{next(_NAMES)}"
    try:
        lake.storable(rel, name).create(temp)
    except duckdb.Error as exc:
        raise LakeError(f"sync to {name}: query failed: {exc}") from exc
    new = lake.con.table(temp)
    options: dict[str, Any] = {"partition_by": partition_by, "expect": expect}
    if full_refresh or not lake.exists(name) or set(lake.table(name).columns) != set(new.columns):
        return lake.write(name, new, mode="replace", **options)
    cols = ", ".join(quote_name(c) for c in new.columns)
    key_cols = ", ".join(quote_name(k) for k in keys)
    current = lake.table(name)
    current.create_view("__medallion_sync_current", replace=True)
    # Multisets: a row duplicated in one side only is a difference too.
    differing = lake.con.sql(f"""
        SELECT {key_cols} FROM (SELECT {cols} FROM {temp} EXCEPT ALL SELECT {cols} FROM __medallion_sync_current)
        UNION
        SELECT {key_cols} FROM (SELECT {cols} FROM __medallion_sync_current EXCEPT ALL SELECT {cols} FROM {temp})""")
    changed = Keys(lake, keys, lambda: differing, what=f"rows of {name} that differ")
    return lake.write(name, changed.filter(new), mode="replace_where", where=changed, **options)


def scoped(mode: str, where: str | Keys | None) -> tuple[str, str | None]:
    """The write mode and SQL condition for ``where`` given as :class:`Keys` (full: a replace)."""
    if not isinstance(where, Keys):
        return mode, where
    if mode != "replace_where":
        raise LakeError(f"where=<keys> goes with mode='replace_where', not {mode!r}")
    return ("replace", None) if where.full else ("replace_where", where.condition())


# The aggregates a rollup can carry forward, and how two partial results of each combine.
_COMBINE = {"count": "sum", "sum": "sum", "min": "min", "max": "max"}
_AGGREGATE = re.compile(r"^\s*(count|sum|min|max)\s*\((.*)\)\s*$", re.IGNORECASE | re.DOTALL)


def rollup(lake: Lakehouse, changes: Changes, by: str | Sequence[str], *, into: str, where: str | None = None,
           aggregates: Mapping[str, str], consumer: str | None) -> duckdb.DuckDBPyRelation:
    """Aggregates of the whole changed table per ``by``, updated from the change alone.

    The result equals ``SELECT by, <aggregates> FROM <table> [WHERE where] GROUP BY by``
    over the table at the change's end version, for every key that has rows. It is
    computed from the values ``into`` holds (a table this notebook wrote, with the
    ``by`` columns and one column per aggregate, named like it) plus the aggregates of the
    change's new rows; only keys that lost rows (a deleted or updated row) are aggregated
    again from the table. Keys ``into`` holds without rows keep the values it holds for them
    (as the query that wrote ``into`` computed them: ``coalesce(sum(x), 0)`` stays 0).

    Everything is aggregated from the table when there is nothing to start from: a full
    change (first run, ``full_refresh``), no ``into`` table or one without those columns, or
    an ``into`` that did not record consuming exactly the change's start (a run that died
    between its writes).

    Args:
        lake: the lakehouse that read ``changes``.
        changes: what changed in the aggregated table.
        by: the grouping column(s) of the aggregated table.
        into: the table holding the previous aggregates.
        where: a SQL condition on the aggregated table's rows.
        aggregates: output column -> ``count(...)``, ``sum(...)``, ``min(...)`` or ``max(...)``.
        consumer: the Delta application id under which ``into`` records consuming the table.

    Raises:
        LakeError: no aggregates, one that cannot be carried forward (``avg``, ``count(DISTINCT ...)``),
            or SQL DuckDB rejects.
    """
    group = [by] if isinstance(by, str) else list(by)
    what = f"{changes.table}.rollup(into={into!r})"
    if not group:
        raise LakeError(f"{what}: by names the column(s) to group by")
    if not aggregates:
        raise LakeError(f"{what}: name at least one aggregate, e.g. revenue='sum(revenue)'")
    functions = {}
    for name, expr in aggregates.items():
        match = _AGGREGATE.match(expr)
        if not match or match.group(2).strip().lower().startswith("distinct"):
            raise LakeError(f"{what}: {name}={expr!r} cannot be updated from a change; use count(...), sum(...), "
                            "min(...) or max(...) (an average is a sum and a count)")
        functions[name] = match.group(1).lower()
    keys = ", ".join(quote_name(c) for c in group)
    select = ", ".join([keys] + [f"{expr} AS {quote_name(name)}" for name, expr in aggregates.items()])

    def aggregate(rel: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
        if where:
            rel = rel.filter(where)
        return rel.aggregate(select, keys)

    try:
        table = lake.table(changes.table)
        if not _carries(lake, changes, group, into, aggregates, consumer):
            return aggregate(table)
        arrived = aggregate(changes.rows)
        types = dict(zip(arrived.columns, (str(t) for t in arrived.types), strict=True))
        same = " AND ".join(f"a.{quote_name(c)} IS NOT DISTINCT FROM b.{quote_name(c)}" for c in group)
        names = ", ".join(quote_name(n) for n in aggregates)
        lost = changes.deleted.project(keys).distinct()
        combined = ", ".join(f"CAST({_COMBINE[f]}({quote_name(n)}) AS {types[n]}) AS {quote_name(n)}"
                             for n, f in functions.items())
        # Views of this rollup's own (the result is lazy: another rollup must not rebind them).
        n = next(_NAMES)
        lost_view, arrived_view, held_view = (f"{_PREFIX}rollup_{n}_{part}" for part in ("lost", "arrived", "held"))
        lost.create_view(lost_view)
        arrived.create_view(arrived_view)
        lake.table(into).create_view(held_view)
        recount = aggregate(table.query("__rollup_table", f"""
            SELECT * FROM __rollup_table a SEMI JOIN {lost_view} b ON {same}"""))
        return lake.con.sql(f"""
            SELECT {keys}, {combined} FROM (
                SELECT {keys}, {names} FROM {held_view} a ANTI JOIN {lost_view} b ON {same}
                UNION ALL
                SELECT {keys}, {names} FROM {arrived_view} a ANTI JOIN {lost_view} b ON {same}
            ) GROUP BY {keys}""").union(recount)
    except duckdb.Error as exc:
        raise LakeError(f"{what}: {exc}") from exc


def _carries(lake: Lakehouse, changes: Changes, group: Sequence[str], into: str, aggregates: Mapping[str, str],
             consumer: str | None) -> bool:
    """Whether ``into`` holds the aggregates as of the change's start (so adding the change is exact)."""
    if changes.full or consumer is None or not lake.exists(into):
        return False
    if not set(group) | set(aggregates) <= set(lake.table(into).columns):
        return False
    layer, table = lake.split_name(into)
    recorded = lake.store.open(layer, table).transaction_version(consumer)
    if recorded is None or recorded > changes.start:
        return False
    if recorded == changes.start:
        return True
    # Versions in between that added or removed no data file (records of consumption) change nothing.
    source_layer, source = lake.split_name(changes.table)
    try:
        return set(lake.store.snapshot(source_layer, source, recorded).files) == \
            set(lake.store.snapshot(source_layer, source, changes.start).files)
    except LakeError:  # that version's log is gone: start over
        return False
