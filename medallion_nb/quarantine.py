"""Quarantine: rows that break rules go to a table of their own, with the reasons.

:func:`split` tags each row with the rules it breaks (``_quarantine_reason``);
:func:`staged_split` stages both halves for a write without the rows leaving DuckDB:
a first read keeps the quarantined rows (normally few) and counts every row, a second
has DuckDB write the passing rows as Parquet with the rules checked in the same query.
The two reads must agree — passing plus quarantined rows add up to the rows counted —
or the split is staged again in one read (the tagged rows stream through Arrow
batches, each divided in two), so no row is lost or written to both sides.
(``lake.split`` instead computes the tagged rows into a temporary table so both halves
can be looked at.) The checks of an expectation's ``quarantine`` action become rules
here too (:func:`quarantine_rules`); writing both halves, audited, is
:func:`medallion_nb.expectations.write_split`.
"""

from __future__ import annotations

import contextlib
import html
import itertools
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from medallion_nb.errors import LakeError, QualityError
from medallion_nb.names import LOAD_MODES
from medallion_nb.quality import CheckResult, QualityReport, row_conditions, unique_keys
from medallion_nb.sql import literal, quote_name, storable_columns
from medallion_nb.storage import Staged, WriteResult, stage
from medallion_nb.storage.scan import empty_table
from medallion_nb.storage.stage import BATCH_ROWS

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

REASON_COLUMN = "_quarantine_reason"  # the rules a quarantined row broke, "; "-separated
QUARANTINE_SUFFIX = "_quarantine"
_BATCH = "__split_batch"
_NAMES = itertools.count()


@dataclass(frozen=True)
class SplitResult:
    """The two writes of a split, and how many rows each rule sent to quarantine."""

    good: WriteResult
    bad: WriteResult
    counts: dict[str, int]
    report: QualityReport | None = None  # the expectations checked on the good rows before the commit

    def __repr__(self) -> str:
        return str(self)

    def __str__(self) -> str:
        lines = [str(self.good), str(self.bad)]
        lines += [f"  {n:>12,}  {reason}" for reason, n in self.counts.items()]
        lines += [str(self.report)] if self.report else []
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(reason)}</td><td style='text-align:right'>{n:,}</td></tr>"
                       for reason, n in self.counts.items())
        return (f"<b>{html.escape(self.good.table)}</b>: {self.good.rows:,} rows passed; "
                f"<b>{html.escape(self.bad.table)}</b>: {self.bad.rows:,} rows quarantined"
                f"<table><tr><th>reason</th><th>rows</th></tr>{rows}</table>"
                + (self.report._repr_html_() if self.report else ""))


@dataclass(frozen=True)
class Split:
    """Rows that passed the rules, and rows that did not with the reasons why."""

    all: duckdb.DuckDBPyRelation
    columns: tuple[str, ...]

    @property
    def good(self) -> duckdb.DuckDBPyRelation:
        """The rows that broke no rule, with the input's columns."""
        return self.all.filter(f"{REASON_COLUMN} IS NULL").project(", ".join(quote_name(c) for c in self.columns))

    @property
    def bad(self) -> duckdb.DuckDBPyRelation:
        """The rows that broke a rule, with ``_quarantine_reason``."""
        return self.all.filter(f"{REASON_COLUMN} IS NOT NULL")

    def over(self, tagged: duckdb.DuckDBPyRelation) -> Split:
        """The same split over an already tagged (e.g. materialised) relation."""
        return Split(tagged, self.columns)

    def counts(self) -> dict[str, int]:
        """Rows per quarantine reason, plus ``passed``."""
        sql = f"SELECT coalesce({REASON_COLUMN}, 'passed'), count(*) FROM _t GROUP BY 1"
        rows = self.all.query("_t", sql).fetchall()
        return dict(sorted(rows, key=lambda r: (r[0] != "passed", r[0])))


def split(rel: duckdb.DuckDBPyRelation, rules: Mapping[str, str]) -> Split:
    """Divide rows by named rules; each rule is SQL that is true for a *bad* row.

    ``bad`` has every column plus ``_quarantine_reason`` listing the rules a row
    broke ("; "-separated); ``good`` has the rows that broke none. Both are lazy.
    """
    if not rules:
        raise QualityError("split needs at least one rule: {reason: SQL true for a bad row}")
    flags = [f"CASE WHEN coalesce(({cond}), FALSE) THEN {literal(reason)} END" for reason, cond in rules.items()]
    reason = f"concat_ws('; ', {', '.join(flags)})"
    tagged = rel.query("_rows", f"SELECT *, nullif({reason}, '') AS {REASON_COLUMN} FROM _rows")
    return Split(tagged, tuple(rel.columns))


def quarantine_rules(checks: Mapping[str, Any]) -> dict[str, str]:
    """``{rule name: SQL true for a row to quarantine}`` for the checks of the ``quarantine`` action."""
    rules = {CheckResult(kind, target, 1).rule: cond for kind, target, cond in row_conditions(checks)}
    for cols in unique_keys(checks):
        key = ", ".join(quote_name(c) for c in cols)
        rules[CheckResult("unique", ", ".join(cols), 1).rule] = f"count(*) OVER (PARTITION BY {key}) > 1"
    return rules


def quarantine_table(name: str, quarantine: str | None) -> str:
    """Where the quarantined rows of ``name`` go: ``quarantine``, or ``<layer>.<table>_quarantine``."""
    return quarantine or name + QUARANTINE_SUFFIX


@contextlib.contextmanager
def staged_split(lake: Lakehouse, rel: duckdb.DuckDBPyRelation, rules: Mapping[str, str], *, good: str, bad: str,
                 good_columns: str = "*", bad_columns: str = "*", mode: str = "replace", keys: Sequence[str] = (),
                 where: str | None = None, good_options: Mapping[str, Any] | None = None,
                 once: bool = False) -> Iterator[tuple[Staged, Staged, Counter[str]]]:
    """Stage both sides of a split; the block commits them (what it does not is aborted).

    ``mode`` is the good side's; the quarantine side replaces with ``replace``, merges
    with ``merge`` (a key on one side then leaves the other), replaces the rows matching
    ``where`` when it is given (``replace_where``), and appends otherwise.

    Normally ``rel`` is read twice, both times by DuckDB alone: once to keep the
    quarantined rows (few) and count every row, once to write the passing rows as
    Parquet. If the two reads disagree (the passing and quarantined rows do not add up
    to the rows counted, as when the query's rows change from one read to the next),
    the passing rows are thrown away and the split is staged in one read instead.
    ``once=True`` (rows that can be read only once, e.g. an Arrow stream) goes straight
    to the one-read way: the tagged rows stream through Arrow batches, each divided in two.

    Raises:
        LakeError: a bad table name or key, a projection DuckDB rejects, or a failing query
            (DuckDB refuses to read a consumed Arrow stream again).
    """
    if mode == "merge" and not keys:
        raise LakeError(f"write_split to {good} and {bad}: mode merge needs key=... (the columns that identify a row)")
    for name in (good, bad):
        lake.split_name(name)
    bad_mode = mode if mode in LOAD_MODES else "append"
    good_options, bad_options = dict(good_options or {}), {}
    if where is not None:
        good_options["where"] = where
        bad_mode, bad_options = "replace_where", {"where": where}
    # Types Delta cannot store (HUGEINT, ...) are cast before they are written, as lake.write does.
    tagged = lake.storable(split(rel, rules).all, good)
    sides = _Sides(lake, good, bad, good_columns, bad_columns, mode, bad_mode, tuple(keys), good_options, bad_options)
    staged: list[Staged] = []
    try:
        counts = None if once else _stage_twice(sides, tagged, staged)
        if counts is None:
            counts = _stage_once(sides, tagged, staged)
        if mode == "merge":
            # A key on one side leaves the other.
            staged[0].also_delete(staged[1].relation.project(_keys(keys)))
            staged[1].also_delete(staged[0].relation.project(_keys(keys)))
        yield staged[0], staged[1], counts
    except duckdb.Error as exc:
        raise LakeError(f"write_split to {good} and {bad} failed: {exc}") from exc
    finally:
        for s in staged:
            s.abort()


@dataclass
class _Sides:
    """What a split writes where (the arguments of :func:`staged_split`, checked)."""

    lake: Lakehouse
    good: str
    bad: str
    good_columns: str
    bad_columns: str
    mode: str
    bad_mode: str
    keys: tuple[str, ...]
    good_options: dict[str, Any]
    bad_options: dict[str, Any]

    def check_keys(self, good_names: Sequence[str], bad_names: Sequence[str]) -> None:
        missing = [k for k in self.keys if k not in good_names or k not in bad_names]
        if missing:
            raise LakeError(f"write_split to {self.good} and {self.bad}: key {', '.join(missing)} must be in both "
                            "good_columns and bad_columns")

    def stage_good(self, rows: duckdb.DuckDBPyRelation, con: duckdb.DuckDBPyConnection | None = None) -> Staged:
        return stage(self.lake, self.good, rows, mode=self.mode, keys=self.keys, con=con, **self.good_options)

    def stage_bad(self, rows: duckdb.DuckDBPyRelation) -> Staged:
        return stage(self.lake, self.bad, rows, mode=self.bad_mode,
                     keys=self.keys if self.bad_mode == "merge" else (), **self.bad_options)


def _stage_twice(sides: _Sides, tagged: duckdb.DuckDBPyRelation, staged: list[Staged]) -> Counter[str] | None:
    """Stage the split in two reads of ``tagged`` by DuckDB; None when the reads disagree (nothing is left staged).

    The first read keeps the quarantined rows in a temporary table and counts every
    row; the second has DuckDB write the passing rows as Parquet, the rule check pushed
    into the same query, without the rows ever leaving DuckDB.
    """
    con = sides.lake.con
    n = next(_NAMES)
    rows, held, quarantined = f"__split_rows_{n}", f"__split_held_{n}", f"__split_quarantined_{n}"
    tagged.create_view(rows, replace=True)
    try:
        try:
            con.execute(f"DESCRIBE {rows}")  # binds, reads nothing
        except duckdb.CatalogException:
            return None  # rows of another connection: they are read once, through Arrow
        # Both reads in one transaction: now(), current_date and the like are the same in both
        # (each statement of its own would see its own time, and rows near it could change sides).
        with _one_transaction(con):
            # Every passing row falls in one group (NULL) that counts them; each distinct quarantined
            # row is a group with its number of copies. A grouping spills to disk when the
            # quarantine is large (a list of the rows would have to fit in memory).
            con.execute(f"CREATE OR REPLACE TEMP TABLE {held} AS SELECT CASE WHEN __split_row."
                        f"{quote_name(REASON_COLUMN)} IS NOT NULL THEN __split_row END AS row, count(*) AS n "
                        f"FROM {rows} __split_row GROUP BY 1")
            con.execute(f"CREATE OR REPLACE TEMP VIEW {quarantined} AS SELECT __r.* FROM "
                        f"(SELECT row AS __r, unnest(range(n)) FROM {held} WHERE row IS NOT NULL)")
            good_sql = _projection(con, f"SELECT * EXCLUDE ({REASON_COLUMN}) FROM {rows} WHERE {REASON_COLUMN} IS NULL",
                                   sides.good_columns, sides.good)
            bad_sql = _projection(con, f"SELECT * FROM {quarantined}", sides.bad_columns, sides.bad)
            sides.check_keys(con.sql(good_sql).columns, con.sql(bad_sql).columns)
            total = con.execute(f"SELECT coalesce(sum(n), 0) FROM {held}").fetchone()[0]
            counts: Counter[str] = Counter(dict(con.execute(
                f"SELECT {quote_name(REASON_COLUMN)}, count(*) FROM {quarantined} GROUP BY 1").fetchall()))
            failing = sum(counts.values())
            staged.append(sides.stage_good(con.sql(good_sql)))
            if staged[0].rows + failing != total:
                staged.pop().abort()  # the query's rows changed between the reads
                return None
            counts["passed"] = staged[0].rows
            staged.append(sides.stage_bad(con.sql(bad_sql)))
            return counts
    finally:
        con.execute(f"DROP VIEW IF EXISTS {quarantined}")
        con.execute(f"DROP TABLE IF EXISTS {held}")
        con.execute(f"DROP VIEW IF EXISTS {rows}")


@contextlib.contextmanager
def _one_transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run the block in one DuckDB transaction (the caller's, if one is open already)."""
    try:
        con.begin()
    except duckdb.TransactionException:  # inside the caller's transaction: it holds the reads together
        yield
        return
    try:
        yield
    except BaseException:
        con.rollback()
        raise
    con.commit()


def _stage_once(sides: _Sides, tagged: duckdb.DuckDBPyRelation, staged: list[Staged]) -> Counter[str]:
    """Stage the split in one read: each Arrow batch of tagged rows is divided in two.

    The passing rows (projected) stream into DuckDB's Parquet writer for their table;
    the quarantined rows are kept and staged afterwards.
    """
    import pyarrow.compute as pc  # a quarter of a second to import; only this way needs it

    lake = sides.lake
    try:
        reader = tagged.to_arrow_reader(BATCH_ROWS)
    except duckdb.Error as exc:
        raise LakeError(f"write_split to {sides.good} and {sides.bad}: query failed: {exc}") from exc
    # One cursor projects each batch while the lake's connection streams the tagged
    # rows; another has DuckDB write the passing rows as they come.
    cur, writer = lake.con.cursor(), lake.con.cursor()
    try:
        cur.register(_BATCH, empty_table(reader.schema))
        good_sql = _projection(cur, f"SELECT * EXCLUDE ({REASON_COLUMN}) FROM {_BATCH} WHERE {REASON_COLUMN} IS NULL",
                               sides.good_columns, sides.good)
        bad_sql = _projection(cur, f"SELECT * FROM {_BATCH} WHERE {REASON_COLUMN} IS NOT NULL", sides.bad_columns,
                              sides.bad)
        good_schema = cur.sql(good_sql).to_arrow_table().schema
        bad_schema = cur.sql(bad_sql).to_arrow_table().schema
        sides.check_keys(good_schema.names, bad_schema.names)
        counts: Counter[str] = Counter()
        quarantined: list[pa.Table] = []

        def passing() -> Iterator[pa.RecordBatch]:
            for batch in reader:
                reasons = batch.column(REASON_COLUMN)
                cur.register(_BATCH, batch)
                failing = batch.num_rows - reasons.null_count
                counts["passed"] += reasons.null_count
                if failing:
                    for item in pc.value_counts(reasons.drop_null()).to_pylist():
                        counts[item["values"]] += item["counts"]
                    quarantined.append(_fetch(cur, bad_sql, bad_schema))
                if reasons.null_count:
                    yield from _fetch(cur, good_sql, good_schema).to_batches()

        stream = writer.from_arrow(pa.RecordBatchReader.from_batches(good_schema, passing()))
        staged.append(sides.stage_good(stream, con=writer))
        bad_rows = lake.con.from_arrow(pa.Table.from_batches([b for t in quarantined for b in t.to_batches()],
                                                             schema=bad_schema))
        staged.append(sides.stage_bad(bad_rows))
        return counts
    finally:
        cur.close()
        writer.close()


def _keys(keys: Sequence[str]) -> str:
    return ", ".join(quote_name(k) for k in keys)


def _projection(con: duckdb.DuckDBPyConnection, rows_sql: str, columns: str, table: str) -> str:
    """The SQL that selects ``columns`` for ``table`` from the rows of ``rows_sql``, with the casts Delta needs."""
    sql = f"SELECT {columns} FROM ({rows_sql})"
    try:
        casts = storable_columns(con.sql(sql), table)
    except duckdb.Error as exc:
        raise LakeError(f"write_split: the columns for {table} are not valid: {exc}") from exc
    return f"SELECT {', '.join(casts)} FROM ({sql})" if casts else sql


def _fetch(cur: duckdb.DuckDBPyConnection, sql: str, schema: pa.Schema) -> pa.Table:
    table = cur.sql(sql).to_arrow_table()
    return table if table.schema == schema else table.cast(schema)
