"""Quarantine: rows that break rules go to a table of their own, with the reasons.

:func:`split` tags each row with the rules it breaks (``_quarantine_reason``);
:func:`staged_split` stages both halves for a write in one pass: DuckDB computes the
tagged rows once, each Arrow batch is divided in two, the passing rows (projected)
stream straight into DuckDB's Parquet writer for their table and the quarantined rows
— normally few — are kept and staged afterwards. The input is computed once, so the
good and the bad side always come from the same rows. (``lake.split`` instead computes
the tagged rows into a temporary table so both halves can be looked at.) The checks of
an expectation's ``quarantine`` action become rules here too (:func:`quarantine_rules`);
writing both halves, audited, is :func:`medallion_nb.expectations.write_split`.
"""

from __future__ import annotations

import contextlib
import html
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from medallion_nb.errors import LakeError, QualityError
from medallion_nb.names import LOAD_MODES
from medallion_nb.quality import CheckResult, QualityReport, row_conditions, unique_keys
from medallion_nb.sql import literal, quote_name, storable_columns
from medallion_nb.storage import Staged, WriteResult, stage
from medallion_nb.storage.stage import BATCH_ROWS

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

REASON_COLUMN = "_quarantine_reason"  # the rules a quarantined row broke, "; "-separated
QUARANTINE_SUFFIX = "_quarantine"
_BATCH = "__split_batch"


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
                 where: str | None = None,
                 good_options: Mapping[str, Any] | None = None) -> Iterator[tuple[Staged, Staged, Counter[str]]]:
    """Stage both sides of a split in one pass over ``rel``; the block commits them (what it does not is aborted).

    ``mode`` is the good side's; the quarantine side replaces with ``replace``, merges
    with ``merge`` (a key on one side then leaves the other), replaces the rows matching
    ``where`` when it is given (``replace_where``), and appends otherwise.

    Raises:
        LakeError: a bad table name or key, a projection DuckDB rejects, or a failing query.
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
    # Types Delta cannot store (HUGEINT, ...) are cast before they reach Arrow, as lake.write does.
    tagged = lake.storable(split(rel, rules).all, good)
    try:
        reader = tagged.to_arrow_reader(BATCH_ROWS)
    except duckdb.Error as exc:
        raise LakeError(f"write_split to {good} and {bad}: query failed: {exc}") from exc
    # One cursor projects each batch while the lake's connection streams the tagged
    # rows; another has DuckDB write the passing rows as they come.
    cur, writer = lake.con.cursor(), lake.con.cursor()
    staged: list[Staged] = []
    try:
        good_sql = _projection(cur, reader.schema, good_columns, f"{REASON_COLUMN} IS NULL", good,
                               exclude=REASON_COLUMN)
        bad_sql = _projection(cur, reader.schema, bad_columns, f"{REASON_COLUMN} IS NOT NULL", bad)
        good_schema = cur.sql(good_sql).to_arrow_table().schema
        bad_schema = cur.sql(bad_sql).to_arrow_table().schema
        missing = [k for k in keys if k not in good_schema.names or k not in bad_schema.names]
        if missing:
            raise LakeError(f"write_split to {good} and {bad}: key {', '.join(missing)} must be in both "
                            "good_columns and bad_columns")
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
        staged.append(stage(lake, good, stream, mode=mode, keys=keys, con=writer, **good_options))
        bad_rows = lake.con.from_arrow(pa.Table.from_batches([b for t in quarantined for b in t.to_batches()],
                                                             schema=bad_schema))
        staged.append(stage(lake, bad, bad_rows, mode=bad_mode, keys=keys if bad_mode == "merge" else (),
                            **bad_options))
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
        cur.close()
        writer.close()


def _keys(keys: Sequence[str]) -> str:
    return ", ".join(quote_name(k) for k in keys)


def _projection(cur: duckdb.DuckDBPyConnection, schema: pa.Schema, columns: str, where: str, table: str,
                exclude: str | None = None) -> str:
    """The SQL that projects one batch for ``table``, with the casts Delta needs."""
    cur.register(_BATCH, schema.empty_table())
    rows = f"(SELECT * EXCLUDE ({exclude}) FROM {_BATCH} WHERE {where})" if exclude else \
        f"(SELECT * FROM {_BATCH} WHERE {where})"
    sql = f"SELECT {columns} FROM {rows}"
    try:
        casts = storable_columns(cur.sql(sql), table)
    except duckdb.Error as exc:
        raise LakeError(f"write_split: the columns for {table} are not valid: {exc}") from exc
    return f"SELECT {', '.join(casts)} FROM ({sql})" if casts else sql


def _fetch(cur: duckdb.DuckDBPyConnection, sql: str, schema: pa.Schema) -> pa.Table:
    table = cur.sql(sql).to_arrow_table()
    return table if table.schema == schema else table.cast(schema)
