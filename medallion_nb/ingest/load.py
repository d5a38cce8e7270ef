"""Ingest one source into ``bronze.<source>``: pick the files, read and account for them, commit.

The set of ingested files (path and size) is stored in the metadata of the same
Delta commit that adds the rows, so the state and the data move together: a
crash before the commit leaves both unchanged, and a retry reads the same files.
Rejected rows go to ``bronze.<source>_rejects`` first, replacing any earlier
rejects of the same files, so a retry after a crash in between never doubles them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from medallion_nb.dedupe import latest
from medallion_nb.errors import IngestError, LakeError
from medallion_nb.ingest.csvfiles import LINEAGE_COLUMNS, CsvFile, inspect
from medallion_nb.ingest.csvread import Batch, CsvBatchReader, Reject, Stage
from medallion_nb.ingest.files import STATE_KEY, Found, find_files, is_due, read_state, shown
from medallion_nb.ingest.report import FileReport, IngestResult
from medallion_nb.sources import Source
from medallion_nb.sql import DELTA_CASTS, literal, quote_name
from medallion_nb.storage import Staged

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

_READERS = {"parquet": "read_parquet", "json": "read_json_auto"}
REJECTS_SCHEMA = pa.schema([
    ("_source_file", pa.string()), ("line", pa.int64()), ("column_name", pa.string()),
    ("error_type", pa.string()), ("reason", pa.string()), ("raw_line", pa.string()),
])


def ingest_source(lake: Lakehouse, source: Source, due: date | None, rebuild: bool) -> IngestResult:
    """Load what is new in one source (everything, with ``rebuild``); see the module docs.

    Raises:
        IngestError: files cannot be read (with ``on_bad_rows: fail``), a schema change is refused,
            or the write failed; nothing was committed.
    """
    table = f"bronze.{source.name}"
    files = find_files(lake.project.root, source)
    pending = {p: f for p, f in files.items() if is_due(p, source, due)}
    not_yet = tuple(sorted(set(files) - set(pending)))
    exists = lake.exists(table)
    fresh = rebuild or source.mode == "replace" or not exists
    old_state = read_state(lake, source) if exists else {}
    state = {} if fresh else old_state
    warnings: list[str] = []
    hint = f"rebuild the source to drop their rows: lake.ingest(rebuild=[{source.name!r}]) " \
           f"or medallion-nb run --rebuild-source {source.name}"
    if exists and not rebuild and source.mode != "replace":
        gone = sorted(set(old_state) - set(files))
        if gone:
            warnings.append(f"{len(gone)} file(s) ingested earlier no longer exist, their rows are still in "
                            f"{table}: {shown(gone)}; {hint}")
    if source.mode == "replace" and exists and not rebuild and old_state == {p: f.size for p, f in pending.items()}:
        return IngestResult(source.name, table, source.mode, (), 0, not_yet, warnings=tuple(warnings))
    new, changed = [], []
    for path, found in sorted(pending.items()):
        if path not in state:
            new.append(path)
        elif state[path] != found.size:
            changed.append(path)
    notes: list[str] = []
    if changed and source.mode == "append" and not source.cursor:
        warnings.append(f"{len(changed)} file(s) changed after they were ingested and were not read again "
                        f"(that would load their rows twice): "
                        f"{shown([f'{p} ({state[p]:,} -> {pending[p].size:,} bytes)' for p in changed])}; "
                        + hint.replace("drop their rows", "reload them"))
        changed = []
    elif changed:
        notes.append(f"read again because they changed: {shown(changed)}")
    to_read = [pending[p] for p in new + changed]
    if not to_read:
        return IngestResult(source.name, table, source.mode, (), 0, not_yet, warnings=tuple(warnings))
    existing = _columns(lake, table) if exists and not fresh else {}
    ingested_at = datetime.now(UTC)
    mode = "replace" if fresh else source.mode
    staged = None
    if source.format == "csv":
        batch, rel, columns, staged = _read_csv(lake, source, table, mode, to_read, existing, ingested_at, notes)
    else:
        batch, rel, columns = _read_other(lake, source, to_read, ingested_at)
    try:
        return _commit(lake, source, table, batch, rel, columns, fresh, exists, to_read, state, ingested_at,
                       not_yet, warnings, notes, staged)
    finally:
        if staged is not None:
            staged.abort()  # a no-op once committed
        for stage in batch.stages:
            lake.con.execute(f"DROP TABLE IF EXISTS {stage.table}")


def _commit(lake: Lakehouse, source: Source, table: str, batch: Batch, rel: duckdb.DuckDBPyRelation | None,
            columns: dict[str, str], fresh: bool, exists: bool, to_read: list[Found], state: dict[str, int],
            ingested_at: datetime, not_yet: tuple[str, ...], warnings: list[str], notes: list[str],
            staged: Staged | None = None) -> IngestResult:
    if staged is not None:
        rel = staged.relation  # read, audited and written as Parquet already; committed below
    if staged is None and rel is not None and source.cursor and not fresh:
        rel = _past_cursor(lake, source, rel, table)
    if staged is None and rel is not None and source.mode == "merge":
        rel = _latest_per_key(source, rel)
    if rel is None and exists:
        columns = _columns(lake, table)  # no rows: keep the table's schema as it is
    if rel is None and columns:
        rel = lake.con.sql(_empty_select(columns, lake.run_id))
    rejects_table = f"bronze.{source.rejects_table}" if source.on_bad_rows == "quarantine" else None
    if rejects_table:
        _write_rejects(lake, rejects_table, batch.rejects, [f.path for f in to_read], fresh, ingested_at)
    files = tuple(batch.files[f.path] for f in to_read if f.path in batch.files)
    rejected = sum(f.rejected for f in files)
    if rel is None:
        notes.append("no table written: no file has data and no schema is declared "
                     f"({shown([f.path for f in to_read])})")
        return IngestResult(source.name, table, source.mode, tuple(f.path for f in to_read), 0, not_yet,
                            notes=tuple(notes), files=files, rejected=rejected, warnings=tuple(warnings),
                            rejects_table=rejects_table)
    new_state = {**state, **{f.path: f.size for f in to_read}}
    mode = "replace" if fresh else source.mode
    metadata = {STATE_KEY: json.dumps(new_state, sort_keys=True)}
    try:
        if staged is not None:
            result = staged.commit(metadata)
        else:
            result = lake.write(table, rel, mode=mode, key=source.keys or None, metadata=metadata)
    except LakeError as exc:
        raise IngestError(f"source {source.name}: {exc.message}", hint=exc.hint) from exc
    return IngestResult(source.name, table, source.mode, tuple(f.path for f in to_read), result.rows, not_yet,
                        result, tuple(notes), files, rejected, tuple(warnings), rejects_table)


# -- CSV -----------------------------------------------------------------------
def _read_csv(lake: Lakehouse, source: Source, table: str, mode: str, to_read: list[Found], existing: dict[str, str],
              ingested_at: datetime, notes: list[str]
              ) -> tuple[Batch, duckdb.DuckDBPyRelation | None, dict[str, str], Staged | None]:
    infos = [inspect(f.path, f.absolute, f.size, source) for f in to_read]
    empty = {f.path: FileReport(f.path, 0, 0, 0, "empty file (0 bytes): nothing loaded") for f in infos
             if f.size == 0}
    empty.update({f.path: FileReport(f.path, 0, 0, 0, "header only, no data lines: nothing loaded") for f in infos
                  if f.size and f.lines == 0 and f.text})
    readable = [f for f in infos if f.path not in empty]
    columns, names, readable = _resolve_columns(source, readable, existing, notes)
    prefix = str(lake.project.root.resolve()) + "/"
    lineage = (f"TIMESTAMPTZ {literal(ingested_at.isoformat())} AS _ingested_at, {{file}} AS _source_file, "
               f"{literal(lake.run_id)} AS _run_id")
    by_prefix = f"CASE WHEN starts_with(__file, {literal(prefix)}) THEN __file[{len(prefix) + 1}:] ELSE __file END"
    if readable and mode in ("append", "replace") and not source.cursor and not any(f.problem for f in readable):
        direct = _stage_direct(lake, source, table, mode, readable, names, columns, lineage.format(file=by_prefix))
        if direct is not None:
            direct[0].files.update(empty)
            return direct[0], None, columns, direct[1]
    reader = CsvBatchReader(lake.con, source, columns)
    try:
        batch = reader.read(readable, names)
    except BaseException:
        reader.release(stages=True)
        raise
    reader.release()
    batch.files.update(empty)
    if not batch.stages:
        return batch, None, columns, None
    parts = []
    for stage in batch.stages:
        file = literal(stage.file) if stage.file else by_prefix
        parts.append(f"SELECT {_select(columns, stage.columns)}, {lineage.format(file=file)} FROM {stage.table}")
    return batch, lake.con.sql(" UNION ALL ".join(parts)), columns, None


def _stage_direct(lake: Lakehouse, source: Source, table: str, mode: str, files: list[CsvFile],
                  names: dict[str, tuple[str, ...]], columns: dict[str, str], lineage: str
                  ) -> tuple[Batch, Staged] | None:
    """The fast path: DuckDB reads the files straight into the staged Parquet of the write, then the
    rows and rejects of every file are checked against its lines before anything is committed.

    None when any file needs the careful path (a bad row with ``fail``, an unterminated quote, lines
    that do not add up, a read error): nothing is staged then, and the careful path names the problem.
    """
    reader = CsvBatchReader(lake.con, source, columns)
    groups: dict[tuple[str, ...], list[CsvFile]] = {}
    for f in files:
        groups.setdefault(names[f.path], []).append(f)
    parts, reads = [], []
    for cols, group in groups.items():
        select, errors, scans = reader.read_sql([f.absolute for f in group], cols, header=source.header)
        parts.append(f"SELECT {_select(columns, cols)}, {lineage} FROM ({select})")
        reads.append((errors, scans))
    try:
        staged = lake.stage(table, " UNION ALL ".join(parts), mode=mode)
    except LakeError:
        reader.release()
        return None
    counts = dict(staged.relation.aggregate("_source_file, count(*)").fetchall())
    found: dict[str, dict] = {}
    for errors, scans in reads:
        found.update(reader.rejects_of(errors, scans))
    batch = Batch()
    ok = all(reader.accept(batch, f, counts.get(f.path, 0), found.get(f.absolute, {})) for f in files)
    reader.release()
    if not ok:
        staged.abort()
        return None
    return batch, staged


def _select(columns: dict[str, str], have: tuple[str, ...]) -> str:
    """The batch's columns from a read that has ``have``: the others as typed NULLs."""
    return ", ".join(quote_name(c) if c in have else f"CAST(NULL AS {dtype}) AS {quote_name(c)}"
                     for c, dtype in columns.items())


def _resolve_columns(source: Source, files: list[CsvFile], existing: dict[str, str], notes: list[str]
                     ) -> tuple[dict[str, str], dict[str, tuple[str, ...]], list[CsvFile]]:
    """The batch's columns and types, each file's header mapped onto them (by name, ignoring case).

    Raises:
        IngestError: ``on_schema_change: fail`` and a file adds or lacks a column; a key or cursor
            column is missing; a declared type differs from the table's.
    """
    expected: dict[str, str] = {c.lower(): c for c in existing}
    if not expected:
        # The columns most files agree on, then declared columns no file has.
        headers = Counter(f.header for f in files if not f.problem)
        seed = headers.most_common(1)[0][0] if headers else ()
        declared = [name for name, _ in source.schema]
        if seed and declared and not {c.lower() for c in seed} & {c.lower() for c in declared}:
            seed = ()
        expected = {c.lower(): c for c in (*seed, *(d for d in declared if d.lower() not in {s.lower() for s in seed}))}
    names: dict[str, tuple[str, ...]] = {}
    out = []
    for f in files:
        if f.problem:
            out.append(f)
            continue
        lower = [c.lower() for c in f.header]
        if expected and not set(lower) & set(expected):
            out.append(replace(f, problem=f"its header ({', '.join(f.header)}) has none of the source's columns "
                                          f"({', '.join(expected.values())}); is it a file of this source?"))
            continue
        extra = [c for c in f.header if c.lower() not in expected]
        missing = [c for k, c in expected.items() if k not in lower]
        if (extra or missing) and source.on_schema_change == "fail":
            what = "; ".join(x for x in (f"new column(s) {', '.join(extra)}" if extra else "",
                                         f"missing column(s) {', '.join(missing)}" if missing else "") if x)
            raise IngestError(f"source {source.name}: {f.path}: {what}; nothing from this batch was loaded",
                              hint=f"on_schema_change is fail for sources.{source.name}; set it to add_columns "
                                   "to add new columns (NULL in older rows) and read missing ones as NULL")
        if extra:
            notes.append(f"{f.path}: new column(s) {', '.join(extra)} added (NULL in earlier rows)")
            expected.update({c.lower(): c for c in extra})
        if missing:
            notes.append(f"{f.path}: column(s) {', '.join(missing)} missing, read as NULL")
        names[f.path] = tuple(expected[c] for c in lower)
        out.append(f)
    columns = {}
    for column in expected.values():
        declared = source.declared_type(column)
        before = existing.get(column)
        if declared and before and DELTA_CASTS.get(declared, declared) != before:
            raise IngestError(f"source {source.name}: column {column} is {before} in bronze.{source.name} but "
                              f"medallion.yaml declares {declared}; nothing was loaded",
                              hint=f"rebuild the source to retype it: lake.ingest(rebuild=[{source.name!r}]) "
                                   f"or medallion-nb run --rebuild-source {source.name}")
        columns[column] = declared or before or "VARCHAR"
    lower_columns = {c.lower() for c in columns}
    for column in (*source.keys, *([source.cursor] if source.cursor else [])):
        if columns and column.lower() not in lower_columns:
            raise IngestError(f"source {source.name}: column {column!r} (a key or cursor in medallion.yaml) "
                              f"is not in the files; columns are: {', '.join(columns)}")
    return columns, names, out


# -- Parquet and JSON ----------------------------------------------------------
def _read_other(lake: Lakehouse, source: Source, to_read: list[Found], ingested_at: datetime
                ) -> tuple[Batch, duckdb.DuckDBPyRelation | None, dict[str, str]]:
    options = {"union_by_name": True, **source.options, "filename": "__file"}
    opts = "".join(f", {k} = {literal(v)}" for k, v in options.items())
    stage = f"__ingest_rows_{source.name}_0"
    files = ", ".join(literal(f.absolute) for f in to_read)
    try:
        lake.con.execute(f"CREATE OR REPLACE TEMP TABLE {stage} AS "
                         f"SELECT * FROM {_READERS[source.format]}([{files}]{opts})")
    except duckdb.Error as exc:
        detail = str(exc).strip().splitlines()[0]
        raise IngestError(f"source {source.name}: cannot read {source.format} files "
                          f"({shown([f.path for f in to_read], 3)}): {detail}") from exc
    counts = dict(lake.con.execute(f"SELECT __file, count(*) FROM {stage} GROUP BY 1").fetchall())
    rel = lake.con.table(stage)
    columns = {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True) if c != "__file"}
    clash = [c for c in LINEAGE_COLUMNS if c in columns]
    if clash:
        lake.con.execute(f"DROP TABLE {stage}")
        raise IngestError(f"source {source.name}: the files already have column(s) {', '.join(clash)}, "
                          "which bronze adds for lineage; rename them in the source")
    for column in (*source.keys, *([source.cursor] if source.cursor else [])):
        if column not in columns:
            lake.con.execute(f"DROP TABLE {stage}")
            raise IngestError(f"source {source.name}: column {column!r} (a key or cursor in medallion.yaml) "
                              f"is not in the files; columns are: {', '.join(columns)}")
    batch = Batch(stages=[Stage(stage, tuple(columns))])
    for f in to_read:
        n = counts.get(f.absolute, 0)
        batch.files[f.path] = FileReport(f.path, n, n, 0)
    file_map = " ".join(f"WHEN {literal(f.absolute)} THEN {literal(f.path)}" for f in to_read)
    return batch, lake.con.sql(
        f"SELECT * EXCLUDE (__file), TIMESTAMPTZ {literal(ingested_at.isoformat())} AS _ingested_at, "
        f"CASE __file {file_map} ELSE __file END AS _source_file, {literal(lake.run_id)} AS _run_id FROM {stage}"
    ), columns


# -- helpers -------------------------------------------------------------------
def _columns(lake: Lakehouse, table: str) -> dict[str, str]:
    rel = lake.table(table)
    return {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True) if c not in LINEAGE_COLUMNS}


def _empty_select(columns: dict[str, str], run_id: str) -> str:
    select = ", ".join(f"CAST(NULL AS {dtype}) AS {quote_name(c)}" for c, dtype in columns.items())
    return (f"SELECT {select}, CAST(NULL AS TIMESTAMPTZ) AS _ingested_at, CAST(NULL AS VARCHAR) AS _source_file, "
            f"CAST(NULL AS VARCHAR) AS _run_id WHERE false")


def _write_rejects(lake: Lakehouse, table: str, rejects: list[Reject], files: list[str], fresh: bool,
                   ingested_at: datetime) -> None:
    """Commit this batch's rejects, replacing earlier rejects of the same files."""
    rows = pa.Table.from_pylist(
        [{"_source_file": r.file, "line": r.line, "column_name": r.column, "error_type": r.error_type,
          "reason": r.reason, "raw_line": r.raw} for r in rejects], schema=REJECTS_SCHEMA)
    lake.con.register("__ingest_new_rejects", rows)
    try:
        new = lake.con.sql(f"SELECT *, TIMESTAMPTZ {literal(ingested_at.isoformat())} AS _ingested_at, "
                           f"{literal(lake.run_id)} AS _run_id FROM __ingest_new_rejects")
        if fresh or not lake.exists(table):
            lake.write(table, new, mode="replace")
            return
        placeholders = ", ".join("?" for _ in files)
        earlier = lake.con.execute(f"SELECT count(*) FROM {table} WHERE _source_file IN ({placeholders})",
                                   files).fetchall()[0][0]
        if earlier:
            kept = ", ".join(literal(f) for f in files)
            lake.con.execute("DROP TABLE IF EXISTS __ingest_rejects_kept")
            lake.con.execute(f"CREATE TEMP TABLE __ingest_rejects_kept AS SELECT * FROM {table} "
                             f"WHERE _source_file NOT IN ({kept}) UNION ALL BY NAME SELECT * FROM ({new.sql_query()})")
            try:
                lake.write(table, lake.con.table("__ingest_rejects_kept"), mode="replace")
            finally:
                lake.con.execute("DROP TABLE IF EXISTS __ingest_rejects_kept")
        elif rejects:
            lake.write(table, new, mode="append")
    except LakeError as exc:
        raise IngestError(f"{table}: {exc.message}", hint=exc.hint) from exc
    finally:
        lake.con.unregister("__ingest_new_rejects")


def _past_cursor(lake: Lakehouse, source: Source, rel: duckdb.DuckDBPyRelation,
                 table: str) -> duckdb.DuckDBPyRelation:
    column = quote_name(source.cursor)
    high = lake.con.execute(f"SELECT max({column}) FROM bronze.{quote_name(source.name)}").fetchall()[0][0]
    if high is None:
        return rel
    return rel.filter(duckdb.ColumnExpression(source.cursor) > duckdb.ConstantExpression(high))


def _latest_per_key(source: Source, rel: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """One row per key for a merge: the highest cursor, then the latest file."""
    order = [f"{quote_name(source.cursor)} DESC NULLS LAST"] if source.cursor else []
    order.append("_source_file DESC")
    return latest(rel, source.keys, ", ".join(order))
