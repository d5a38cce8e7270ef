"""Bronze ingestion: load the project's raw sources into ``bronze.<source>``.

Each run reads only what is new: files not ingested before (by path and size),
and, where a source has a cursor column, rows past the highest cursor already
loaded. Rows get lineage columns (``_ingested_at``, ``_source_file``,
``_run_id``). The set of ingested files is stored in the metadata of the same
Delta commit that adds the rows, so the state and the data move together: a
crash before the commit leaves both unchanged, and a retry reads the same files.
"""

from __future__ import annotations

import csv
import glob
import html
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from medallion_nb.errors import IngestError, LakeError
from medallion_nb.project import Source
from medallion_nb.sql import literal
from medallion_nb.storage import METADATA_PREFIX, WriteResult

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

STATE_KEY = METADATA_PREFIX + "ingest_state"
LINEAGE_COLUMNS = ("_ingested_at", "_source_file", "_run_id")
_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
_READERS = {"csv": "read_csv", "parquet": "read_parquet", "json": "read_json_auto"}
_CSV_DEFAULTS = {"all_varchar": True, "header": True, "delim": ","}
# DuckDB error kinds that mean a source file could not be parsed.
_READ_ERRORS = ("CSV Error", "Invalid Input Error", "Conversion Error")
_ERROR_FILE = re.compile(r"^\s*file = (.+)$", re.MULTILINE)
_ERROR_LINE = re.compile(r"CSV Error on Line: (\d+)")


@dataclass(frozen=True)
class IngestResult:
    """What one source's ingestion did."""

    source: str
    table: str
    mode: str
    new_files: tuple[str, ...]
    rows: int
    not_yet_due: tuple[str, ...] = ()
    write: WriteResult | None = None
    notes: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:
        return f"<IngestResult {self}>"

    def __str__(self) -> str:
        if not self.new_files:
            return f"{self.table}: nothing new ({self.source})"
        return f"{self.table}: {self.rows:,} rows from {len(self.new_files)} new file(s)"


class IngestReport(list):
    """The results of one ingestion run, one per source; shows as a table in a notebook."""

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self)

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><td>{html.escape(r.table)}</td><td>{r.mode}</td><td style='text-align:right'>{len(r.new_files)}</td>"
            f"<td style='text-align:right'>{r.rows:,}</td>"
            f"<td style='text-align:right'>{format(r.write.total_rows, ',') if r.write else ''}</td>"
            f"<td>{html.escape(', '.join(r.not_yet_due[:3]) + (' ...' if len(r.not_yet_due) > 3 else ''))}</td></tr>"
            for r in self
        )
        return ("<table><tr><th>table</th><th>mode</th><th>new files</th><th>rows loaded</th>"
                f"<th>rows in table</th><th>not due yet (after run_date)</th></tr>{body}</table>")


def parse_run_date(run_date: str | date | None) -> date | None:
    """``run_date`` as a date; empty means none.

    Raises:
        IngestError: not an ISO date.
    """
    if run_date in (None, ""):
        return None
    if isinstance(run_date, date):
        return run_date
    try:
        return date.fromisoformat(str(run_date))
    except ValueError as exc:
        raise IngestError(f"run_date {run_date!r} is not an ISO date (YYYY-MM-DD)") from exc


def ingest_sources(lake: Lakehouse, source: str | None = None, *, run_date: str | date | None = None,
                   full_refresh: bool = False) -> IngestReport:
    """Ingest every configured source (or the one named) into bronze.

    Raises:
        IngestError: a source's files cannot be read, or an ingested file changed.
    """
    if "bronze" not in lake.layers:
        raise IngestError("the project has no layer named 'bronze' to ingest into")
    sources = [lake.project.source(source)] if source else list(lake.project.sources)
    due = parse_run_date(run_date)
    return IngestReport(_ingest(lake, src, due, full_refresh) for src in sources)


def _ingest(lake: Lakehouse, source: Source, due: date | None, full_refresh: bool) -> IngestResult:
    table = f"bronze.{source.name}"
    files = _files(lake.project.root, source)
    pending = {p: size for p, size in files.items() if _is_due(p, source, due)}
    not_yet = tuple(sorted(set(files) - set(pending)))
    exists = lake.exists(table)
    fresh = full_refresh or source.mode == "replace" or not exists
    state = {} if fresh else _state(lake, source)
    if source.mode == "replace" and exists and not full_refresh and _state(lake, source) == pending:
        return IngestResult(source.name, table, source.mode, (), 0, not_yet)
    new, changed = [], []
    for path, size in sorted(pending.items()):
        if path not in state:
            new.append(path)
        elif state[path] != size:
            changed.append(path)
    if changed and source.mode == "append" and not source.cursor:
        shown = ", ".join(f"{p} ({state[p]:,} -> {pending[p]:,} bytes)" for p in changed[:5])
        raise IngestError(
            f"source {source.name}: {len(changed)} file(s) changed after they were ingested: {shown}",
            hint="files of an append source must not change once landed; give the source a cursor "
                 "column, or rebuild bronze with full_refresh=True",
        )
    to_read = new + changed
    if not to_read:
        return IngestResult(source.name, table, source.mode, (), 0, not_yet)
    rel = _read(lake, source, to_read)
    if source.cursor and not fresh:
        rel = _past_cursor(lake, source, rel, table)
    if source.mode == "merge":
        rel = _latest_per_key(source, rel)
    new_state = {**state, **{p: pending[p] for p in to_read}}
    mode = "replace" if fresh else source.mode
    try:
        result = lake.write(table, rel, mode=mode, key=source.keys or None,
                            metadata={STATE_KEY: json.dumps(new_state, sort_keys=True)})
    except LakeError as exc:
        cause = str(exc.__cause__ or "")
        if any(kind in cause for kind in _READ_ERRORS):
            # Rows are parsed while they stream into the table, so a malformed
            # line surfaces here rather than when the files are opened.
            raise _unreadable(source, to_read, cause, lake.project.root) from exc
        raise IngestError(f"source {source.name}: {exc.message}", hint=exc.hint) from exc
    return IngestResult(source.name, table, source.mode, tuple(to_read), result.rows, not_yet, result)


def _files(root: Path, source: Source) -> dict[str, int]:
    """The source's files as ``{path relative to the project: size}``."""
    pattern = source.path if Path(source.path).is_absolute() else str(root / source.path)
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    files = {}
    for match in matches:
        if match.is_file():
            try:
                rel = match.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                rel = match.resolve().as_posix()
            files[rel] = match.stat().st_size
    if not files:
        raise IngestError(f"source {source.name}: no files match {source.path!r} (in {root})",
                          hint=f"check sources.{source.name}.path in medallion.yaml")
    return files


def _is_due(path: str, source: Source, due: date | None) -> bool:
    if not source.date_in_name or due is None:
        return True
    found = _DATE_IN_NAME.search(Path(path).name)
    if not found:
        return True
    try:
        return date.fromisoformat(found.group(1)) <= due
    except ValueError:
        return True


def _state(lake: Lakehouse, source: Source) -> dict[str, int]:
    for commit in lake.store.raw_history("bronze", source.name):
        if STATE_KEY in commit:
            return json.loads(commit[STATE_KEY])
    return {}


def _read(lake: Lakehouse, source: Source, paths: list[str]) -> duckdb.DuckDBPyRelation:
    root = lake.project.root.resolve()
    absolute = [str(root / p) if not Path(p).is_absolute() else p for p in paths]
    options = dict(source.options)
    union = True
    if source.format == "csv":
        # Pin the dialect: when a file has a broken line, DuckDB's sniffer would
        # otherwise fall back to reading each whole line as one column.
        for key, value in _CSV_DEFAULTS.items():
            options.setdefault(key, value)
        columns = _same_csv_header(absolute) if options == _CSV_DEFAULTS else None
        if columns:
            # Every file has the same header and every column is text: nothing is
            # left to sniff. Sniffing and union_by_name cost more than parsing the
            # rows themselves when there are many files.
            union = False
            options.update(quote='"', escape='"', auto_detect=False,
                           columns={name: "VARCHAR" for name in columns})
    if union:
        options["union_by_name"] = True
    opts = "".join(f", {k} = {literal(v)}" for k, v in options.items())
    file_list = ", ".join("'" + p.replace("'", "''") + "'" for p in absolute)
    prefix = str(root) + "/"
    ingested_at = datetime.now(UTC).isoformat()
    sql = (
        f"SELECT * EXCLUDE (__file), "
        f"TIMESTAMPTZ '{ingested_at}' AS _ingested_at, "
        f"CASE WHEN starts_with(__file, {literal(prefix)}) THEN __file[{len(prefix) + 1}:] ELSE __file END "
        f"AS _source_file, {literal(lake.run_id)} AS _run_id "
        f"FROM {_READERS[source.format]}([{file_list}], filename = '__file'{opts})"
    )
    try:
        rel = lake.con.sql(sql)
        clash = [c for c in LINEAGE_COLUMNS if rel.columns.count(c) > 1]
        if clash:
            raise IngestError(f"source {source.name}: the files already have column(s) {', '.join(clash)}, "
                              "which bronze adds for lineage; rename them in the source")
        for column in (*source.keys, *([source.cursor] if source.cursor else [])):
            if column not in rel.columns:
                raise IngestError(f"source {source.name}: column {column!r} (a key or cursor in medallion.yaml) "
                                  f"is not in the files; columns are: {', '.join(rel.columns)}")
        return rel
    except duckdb.Error as exc:
        raise _unreadable(source, paths, str(exc), root) from exc


def _unreadable(source: Source, paths: list[str], detail: str, root: Path | None = None) -> IngestError:
    where = ""
    found = _ERROR_FILE.search(detail)
    if found:
        # Name the failing file (and line) first: DuckDB puts it at the end of a long message.
        path = found.group(1).strip()
        if root is not None and path.startswith(str(root.resolve()) + "/"):
            path = path[len(str(root.resolve())) + 1:]
        line = _ERROR_LINE.search(detail)
        where = f"{path}{f' line {line.group(1)}' if line else ''}: "
    return IngestError(f"source {source.name}: cannot read {source.format} files "
                       f"({', '.join(paths[:3])}{' ...' if len(paths) > 3 else ''}): {where}{detail}")


def _same_csv_header(paths: list[str]) -> list[str] | None:
    """The column names if every file's header line names the same columns; else None."""
    first: list[str] | None = None
    for path in paths:
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                header = next(csv.reader(fh), None)
        except (OSError, UnicodeDecodeError, csv.Error):
            return None
        if not header or any(not name.strip() for name in header) or len(set(header)) != len(header):
            return None
        if first is None:
            first = header
        elif header != first:
            return None
    return first


def _past_cursor(lake: Lakehouse, source: Source, rel: duckdb.DuckDBPyRelation,
                 table: str) -> duckdb.DuckDBPyRelation:
    column = '"' + source.cursor.replace('"', '""') + '"'
    high = lake.con.execute(f"SELECT max({column}) FROM bronze.\"{source.name}\"").fetchall()[0][0]
    if high is None:
        return rel
    return rel.filter(duckdb.ColumnExpression(source.cursor) > duckdb.ConstantExpression(high))


def _latest_per_key(source: Source, rel: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    keys = ", ".join('"' + k + '"' for k in source.keys)
    order = [f'"{source.cursor}" DESC NULLS LAST'] if source.cursor else []
    order.append("_source_file DESC")
    return rel.query("_batch", f"SELECT * FROM _batch QUALIFY row_number() OVER "
                               f"(PARTITION BY {keys} ORDER BY {', '.join(order)}) = 1")
