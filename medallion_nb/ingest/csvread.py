"""Read a batch of CSV files with DuckDB on a fixed dialect, and account for every line of every file.

Files that share a header are read by one ``read_csv`` call with declared column
types, null markers and encoding (no sniffing, so options never slow it down),
into a temporary table. DuckDB's own reject tables (``store_rejects``) catch rows
that do not parse or cast. Then, per file, rows loaded plus rows rejected must
equal the data lines counted from the bytes; a file that comes up short is
never loaded as is. With ``on_bad_rows: quarantine`` such a file is re-read in
pieces around each unterminated quote (which DuckDB reports as one reject that
swallows the lines after it), so its good rows still load.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb

from medallion_nb.errors import IngestError
from medallion_nb.ingest.csvfiles import (
    CsvFile,
    count_lines_in,
    line_at,
    line_bounds,
    lines_at,
    physical_lines,
    raw_text,
    read_bytes,
)
from medallion_nb.ingest.report import FileReport
from medallion_nb.sources import Source
from medallion_nb.sql import literal, quote_name

UNQUOTED = "UNQUOTED VALUE"
WHOLE_FILE = "UNREADABLE FILE"
TRUNCATED = "LINES NOT READ"


@dataclass(frozen=True)
class Reject:
    """One record that could not be loaded (a row of ``bronze.<source>_rejects``)."""

    file: str
    line: int | None
    column: str | None
    error_type: str
    reason: str
    raw: str


@dataclass
class Stage:
    """A temporary table of rows read; ``file`` is set when all its rows come from one file."""

    table: str
    columns: tuple[str, ...]
    file: str | None = None


@dataclass
class Batch:
    """What reading a set of files produced: staged rows, rejects and the per-file accounting."""

    stages: list[Stage] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    files: dict[str, FileReport] = field(default_factory=dict)


@dataclass
class _Scan:
    stage: Stage
    counts: dict[str, int]
    # per file: {record byte position: [(column, error type, csv_line, message), ...]}
    errors: dict[str, dict[int, list[tuple[str | None, str, str, str]]]]


class CsvBatchReader:
    """Reads CSV files of one source into temporary tables of ``con``; see the module docs."""

    def __init__(self, con: duckdb.DuckDBPyConnection, source: Source, types: dict[str, str]) -> None:
        self.con = con
        self.source = source
        self.types = types
        self.quarantine = source.on_bad_rows == "quarantine"
        self._n = 0
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._stages: list[str] = []
        self._aux: list[str] = []

    # -- public ------------------------------------------------------------
    def read(self, files: Sequence[CsvFile], names: dict[str, tuple[str, ...]]) -> Batch:
        """Read ``files`` (each with its canonical column ``names``); per-file accounting included.

        Raises:
            IngestError: with ``on_bad_rows: fail``, the first bad row or unreadable file, named.
        """
        batch = Batch()
        groups: dict[tuple[str, ...], list[CsvFile]] = defaultdict(list)
        for f in files:
            if f.problem:
                self._whole_file(batch, f, f.problem)
            else:
                groups[names[f.path]].append(f)
        for columns, group in groups.items():
            self._read_group(batch, list(group), columns)
        return batch

    def release(self, *, stages: bool = False) -> None:
        """Drop the reject tables and piece files (and, with ``stages``, the rows read)."""
        for table in self._aux + (self._stages if stages else []):
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
        self._aux.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- reading -------------------------------------------------------------
    def _read_group(self, batch: Batch, group: list[CsvFile], columns: tuple[str, ...]) -> None:
        try:
            scan = self._scan([f.absolute for f in group], columns, header=self.source.header)
        except duckdb.Error as exc:
            if len(group) == 1:
                self._whole_file(batch, group[0], f"DuckDB cannot parse it: {_first_line(exc)}")
                return
            # Find the file DuckDB choked on by reading them one at a time.
            for f in group:
                self._read_group(batch, [f], columns)
            return
        batch.stages.append(scan.stage)
        for f in group:
            loaded = scan.counts.get(f.absolute, 0)
            errors = scan.errors.get(f.absolute, {})
            if errors and not self.quarantine:
                self._fail_on(f, errors, loaded, columns)
            swallowed = any(e[1] == UNQUOTED for errs in errors.values() for e in errs)
            records = None if swallowed else self._balanced(scan.stage, f.absolute, loaded, errors, f.lines)
            if records is not None:
                self._record(batch, replace(f, lines=records), loaded, errors)
                continue
            if not self.quarantine:
                self._fail_on(f, errors, loaded, columns)
            self.con.execute(f"DELETE FROM {scan.stage.table} WHERE __file = ?", [f.absolute])
            self._recover(batch, f, columns)

    def _scan(self, paths: list[str], columns: tuple[str, ...], *, header: bool) -> _Scan:
        self._n += 1
        table = f"__ingest_rows_{self.source.name}_{self._n}"
        self._stages.append(table)
        select, errors, scans = self.read_sql(paths, columns, header=header)
        self.con.execute(f"CREATE TEMP TABLE {table} AS {select}")
        counts = dict(self.con.execute(f"SELECT __file, count(*) FROM {table} GROUP BY 1").fetchall())
        return _Scan(Stage(table, columns), counts, self.rejects_of(errors, scans))

    def read_sql(self, paths: list[str], columns: tuple[str, ...], *, header: bool) -> tuple[str, str, str]:
        """The ``read_csv`` query of some files (column ``__file`` names each row's file), and its reject tables.

        The reject tables are filled when the query has run; see :meth:`rejects_of`.
        """
        self._n += 1
        errors, scans = (f"__ingest_{kind}_{self.source.name}_{self._n}" for kind in ("rej", "scan"))
        self._aux += [errors, scans]
        src = self.source
        options: dict[str, object] = {
            "columns": {name: self.types[name] for name in columns}, "header": header, "auto_detect": False,
            "delim": src.delimiter, "quote": src.quote, "escape": src.escape, "encoding": src.encoding,
            "store_rejects": True, "rejects_table": errors, "rejects_scan": scans, "filename": "__file",
        }
        if src.date_format:
            options["dateformat"] = src.date_format
        if src.timestamp_format:
            options["timestampformat"] = src.timestamp_format
        if src.decimal_separator:
            options["decimal_separator"] = src.decimal_separator
        options.update(src.options)
        text = "".join(f", {k} = {literal(v)}" for k, v in options.items())
        if src.null_values:
            text += ", nullstr = [" + ", ".join(literal(v) for v in src.null_values) + "]"
        files = ", ".join(literal(p) for p in paths)
        return f"SELECT * FROM read_csv([{files}]{text})", errors, scans

    def rejects_of(self, errors: str, scans: str) -> dict[str, dict[int, list]]:
        """DuckDB's rejects of a read: per file, per record position, its errors."""
        found: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
        if not self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [errors]).fetchall()[0][0]:
            return found  # the read never ran (e.g. no rows were asked for)
        for path, pos, column, kind, line, message in self.con.execute(
            f"SELECT s.file_path, e.line_byte_position, e.column_name, CAST(e.error_type AS VARCHAR), e.csv_line, "
            f"e.error_message FROM {errors} e JOIN {scans} s ON e.scan_id = s.scan_id AND e.file_id = s.file_id "
            "ORDER BY 1, 2"
        ).fetchall():
            found[path][int(pos)].append((column, kind, line or "", message or kind))
        return found

    def accept(self, batch: Batch, f: CsvFile, loaded: int, errors: dict) -> bool:
        """Record a file read in one pass if its rows and rejects add up to its lines (and may be kept)."""
        if errors and not self.quarantine:
            return False
        if any(e[1] == UNQUOTED for errs in errors.values() for e in errs) or loaded + len(errors) != f.lines:
            return False
        self._record(batch, f, loaded, errors)
        return True

    def _balanced(self, stage: Stage, absolute: str, loaded: int, errors: dict, lines: int) -> int | None:
        """The file's records if rows loaded + records rejected account for every data line, else None."""
        records = loaded + len(errors)
        if records == lines:
            return records
        if records > lines:
            return None
        # A quoted value may span lines: one record, several lines.
        text = [c for c in stage.columns if self.types[c] == "VARCHAR"]
        inside = 0
        if text:
            newlines = " + ".join(
                f"coalesce(length({quote_name(c)}) - length(replace({quote_name(c)}, chr(10), '')), 0)" for c in text)
            inside = self.con.execute(f"SELECT coalesce(sum({newlines}), 0) FROM {stage.table} WHERE __file = ?",
                                      [absolute]).fetchall()[0][0]
        inside += sum(errs[0][2].rstrip("\r\n").count("\n") for errs in errors.values())
        return records if records + int(inside) == lines else None

    def _record(self, batch: Batch, f: CsvFile, loaded: int, errors: dict, *, offset_line: int = 0,
                data: bytes | None = None) -> None:
        """Add a file's (or a piece's) rejects and accounting to the batch."""
        if errors:
            data = data if data is not None else read_bytes(f.absolute)
            lines = lines_at(data, errors)  # one pass over the file, not one per reject
            for pos, errs in sorted(errors.items()):
                batch.rejects.append(self._reject(f, data, pos, errs, offset_line, line=lines[pos]))
        self._count(batch, f, loaded, len(errors))

    def _reject(self, f: CsvFile, data: bytes, pos: int, errs: list, offset_line: int = 0, *,
                line: int | None = None) -> Reject:
        columns = list(dict.fromkeys(c for c, *_ in errs if c))
        kinds = list(dict.fromkeys(k for _, k, _, _ in errs))
        raw = errs[0][2].rstrip("\r\n")
        if "INVALID ENCODING" in kinds or not raw:
            begin, end = line_bounds(data, max(pos - 1, 0))
            raw = raw_text(data[begin:end], self.source.encoding)
        first_message = {}
        for _, kind, _, message in errs:  # DuckDB reports a surplus column once per extra value
            first_message.setdefault(kind, message)
        line = line_at(data, pos) if line is None else line
        return Reject(f.path, line + offset_line, ", ".join(columns) or None, ", ".join(kinds),
                      "; ".join(first_message.values()), raw)

    # -- bad files -------------------------------------------------------------
    def _fail_on(self, f: CsvFile, errors: dict, loaded: int, columns: tuple[str, ...]) -> None:
        if not errors:
            # Read with other files, DuckDB can drop the rest of a file after an unterminated
            # quote without a reject; read alone, it names the line.
            try:
                alone = self._scan([f.absolute], columns, header=self.source.header)
                errors = _only(alone.errors)
            except duckdb.Error as exc:
                raise _bad_rows(self.source, f"{f.path}: DuckDB cannot parse it: {_first_line(exc)}") from exc
        if errors:
            pos, errs = min(errors.items())
            r = self._reject(f, read_bytes(f.absolute), pos, errs)
            where = f" (column {r.column})" if r.column else ""
            raise _bad_rows(self.source, f"{f.path} line {r.line}{where}: {r.reason}")
        raise _bad_rows(self.source, f"{f.path}: {f.lines:,} data lines but DuckDB read {loaded:,} rows "
                                     "and rejected none")

    def _whole_file(self, batch: Batch, f: CsvFile, problem: str, *, first_line: int | None = None) -> None:
        if not self.quarantine:
            raise _bad_rows(self.source, f"{f.path}: {problem}")
        start = first_line or (2 if self.source.header else 1)
        lines = physical_lines(f.absolute, start)
        for number, text in lines:
            batch.rejects.append(Reject(f.path, number, None, WHOLE_FILE, problem,
                                        raw_text(text, self.source.encoding)))
        self._count(batch, f, 0, len(lines), f"unreadable: {problem}" if first_line is None else
                    f"lines from {start} rejected: {problem}")

    def _recover(self, batch: Batch, f: CsvFile, columns: tuple[str, ...]) -> None:
        """Re-read a file in pieces, cutting out each line with an unterminated quote."""
        data = read_bytes(f.absolute)
        start = line_bounds(data, 0)[1] if self.source.header else 0
        while start < len(data):
            first_line = data.count(b"\n", 0, start) + 1
            piece = data[start:]
            scan = self._scan_piece(piece, columns)
            if scan is None:
                self._whole_file(batch, f, "DuckDB cannot parse the lines from here on", first_line=first_line)
                break
            errors = _only(scan.errors)
            unquoted = [pos for pos, errs in errors.items() if any(e[1] == UNQUOTED for e in errs)]
            if not unquoted:
                loaded = sum(scan.counts.values())
                records = self._balanced(scan.stage, next(iter(scan.counts), ""), loaded, errors,
                                         count_lines_in(piece))
                if records is not None:
                    lines_in_piece = count_lines_in(piece)
                    f = replace(f, lines=f.lines - (lines_in_piece - records))
                    self._keep(batch, f, scan, first_line, piece)
                else:
                    self._whole_file(batch, f, "lines DuckDB read only in part", first_line=first_line)
                break
            # The lines before the first unterminated quote read cleanly on their own.
            begin, end = line_bounds(piece, max(min(unquoted) - 1, 0))
            before = self._scan_piece(piece[:begin], columns) if begin else None
            if before is not None:
                self._keep(batch, f, before, first_line, piece[:begin])
            elif begin:
                self._whole_file(batch, f, "DuckDB cannot parse these lines", first_line=first_line)
            bad = errors[min(unquoted)][0]
            batch.rejects.append(Reject(f.path, first_line + piece.count(b"\n", 0, begin), bad[0], UNQUOTED,
                                        bad[3], raw_text(piece[begin:end], self.source.encoding)))
            self._count(batch, f, 0, 1)
            start += end
        report = batch.files.get(f.path) or FileReport(f.path, f.lines, 0, 0)
        if report.loaded + report.rejected != report.lines:
            # Never load a file whose lines do not add up: keep all of it as rejects instead.
            for stage in [s for s in batch.stages if s.file == f.path]:
                batch.stages.remove(stage)
                self.con.execute(f"DROP TABLE IF EXISTS {stage.table}")
            batch.rejects = [r for r in batch.rejects if r.file != f.path]
            del batch.files[f.path]
            self._whole_file(batch, f, f"{report.lines - report.loaded - report.rejected} line(s) could not be "
                                       "accounted for when re-read around its unterminated quote(s)")

    def _keep(self, batch: Batch, f: CsvFile, scan: _Scan, first_line: int, piece: bytes) -> None:
        scan.stage.file = f.path
        batch.stages.append(scan.stage)
        self._record(batch, f, sum(scan.counts.values()), _only(scan.errors), offset_line=first_line - 1,
                     data=piece)

    def _count(self, batch: Batch, f: CsvFile, loaded: int, rejected: int, note: str = "") -> None:
        prev = batch.files.get(f.path)
        if prev is not None:
            loaded, rejected = loaded + prev.loaded, rejected + prev.rejected
            note = note or prev.note
        batch.files[f.path] = FileReport(f.path, f.lines, loaded, rejected, note)

    def _scan_piece(self, piece: bytes, columns: tuple[str, ...]) -> _Scan | None:
        path = self._piece_path(piece)
        try:
            return self._scan([path], columns, header=False)
        except duckdb.Error:
            return None

    def _piece_path(self, piece: bytes) -> str:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="medallion_ingest_")
        self._n += 1
        path = Path(self._tmp.name) / f"piece_{self._n}.csv"
        path.write_bytes(piece)
        return str(path)


def _bad_rows(source: Source, what: str) -> IngestError:
    return IngestError(
        f"source {source.name}: {what}; nothing from this batch was loaded",
        hint=f"fix the file, or set on_bad_rows: quarantine for sources.{source.name} to load the good rows "
             f"and keep the bad ones in bronze.{source.rejects_table}",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.removeprefix("Invalid Input Error: ").removeprefix("Conversion Error: ")


def _only(errors: dict[str, dict]) -> dict:
    """The errors of a one-file scan."""
    return next(iter(errors.values()), {})
