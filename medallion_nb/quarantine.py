"""Write passing rows to one table and quarantined rows to another, in one pass.

``lake.split`` computes the tagged rows into a temporary table so both halves
can be looked at and written; on a big fact that table is the whole input, in
memory. :func:`write_split` streams instead: DuckDB computes the tagged rows
once, each Arrow batch is divided in two, the passing rows (projected) stream
straight into DuckDB's Parquet writer for their table and the quarantined rows —
normally few — are kept and staged afterwards; then each side is committed. The
input is computed once, so the good and the bad side always come from the same rows.
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
from medallion_nb.lock import commit_guard
from medallion_nb.names import LOAD_MODES, WRITE_MODES
from medallion_nb.quality import REASON_COLUMN, QualityReport, split
from medallion_nb.reporting import report_expectations
from medallion_nb.sql import quote_name, storable_columns
from medallion_nb.storage import Staged, WriteResult, stage
from medallion_nb.storage.stage import BATCH_ROWS

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

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


def write_split(lake: Lakehouse, rel: duckdb.DuckDBPyRelation, rules: Mapping[str, str], *, good: str, bad: str,
                good_columns: str = "*", bad_columns: str = "*", mode: str = "replace",
                key: str | Sequence[str] | None = None, expect: Mapping[str, Any] | None = None,
                where: str | None = None, partition_by: str | Sequence[str] | None = None) -> SplitResult:
    """Write the rows of ``rel`` that break no rule to ``good``, the others to ``bad``.

    Each rule is SQL that is true for a row that must be quarantined (as in
    :func:`medallion_nb.quality.split`). ``good_columns`` and ``bad_columns``
    are the select lists written to each table; ``bad_columns`` can name
    ``_quarantine_reason`` (the rules a row broke, "; "-separated).

    With ``mode="merge"`` both tables are merged by ``key``, and a key that lands on
    one side is deleted from the other: a row re-delivered with a fix leaves the
    quarantine, a row that went bad leaves the good table, and neither keeps a stale copy.
    With ``mode="replace_where"`` both tables replace the rows matching ``where`` (the keys
    a run recomputed): a row now on one side is gone from the other, and a row that no
    longer exists is gone from both. ``partition_by`` partitions ``good`` (when it is
    created or replaced).

    ``expect`` (``fail`` / ``warn`` checks, plus those declared for ``good`` in
    medallion.yaml) is evaluated on the staged ``good`` rows before anything is
    committed: a failing ``fail`` check commits neither table.

    Raises:
        LakeError: a bad table name, mode or key, a projection DuckDB rejects, or a
            failed write (a table whose commit failed is unchanged).
        ExpectationError: a ``fail`` expectation failed; nothing was committed.
    """
    from medallion_nb.expectations import audit_staged, expectations_for

    if mode not in WRITE_MODES:
        raise LakeError(f"write_split to {good} and {bad}: mode {mode!r} is not one of {', '.join(WRITE_MODES)}")
    keys = (key,) if isinstance(key, str) else tuple(key or ())
    groups = expectations_for(lake, good, expect)
    if groups and "quarantine" in groups:
        raise QualityError(f"write_split to {good}: quarantine rows with the split's rules; "
                           "its expectations take fail and warn")
    if mode == "replace_where" and not where:
        raise LakeError(f"write_split to {good} and {bad}: mode replace_where needs where=... (the rows to replace)")
    options = {"partition_by": (partition_by,) if isinstance(partition_by, str) else tuple(partition_by)} \
        if partition_by is not None else None
    with staged_split(lake, rel, rules, good=good, bad=bad, good_columns=good_columns, bad_columns=bad_columns,
                      mode=mode, keys=keys, where=where, good_options=options) as (good_staged, bad_staged, counts):
        report = audit_staged(lake, good, groups, good_staged.relation, rows=good_staged.rows, key=keys) \
            if groups else None
        with commit_guard(lake):
            good_result = good_staged.commit()
            bad_result = bad_staged.commit()
    if report is not None:
        report_expectations(report, run_id=lake.run_id, committed=True)
    ordered = dict(sorted(counts.items(), key=lambda item: (item[0] != "passed", -item[1], item[0])))
    return SplitResult(good_result, bad_result, ordered, report)


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
