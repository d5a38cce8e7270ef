"""Database sources: a PostgreSQL or SQLite table (or query) streamed into ``bronze.<source>``.

Rows are read with the Arrow-native ADBC drivers (``adbc-driver-postgresql``,
``adbc-driver-sqlite``) as a stream of record batches that DuckDB writes straight
to Parquet: the table is never held in Python memory. The same modes as files:

* ``replace``: the whole table or query, every run;
* ``append`` with a ``cursor``: the rows whose cursor lies past the high-water mark
  and at most at the source's current maximum (read first, so rows that arrive
  during the load wait for the next run);
* ``merge`` on ``keys``: the rows past the mark (all rows without a cursor) are
  upserted; the mark itself is read again (``>=``), which a merge makes harmless
  and which catches rows committed late with the same cursor value. With
  ``deletes: true``, keys gone from the source are deleted from bronze.

The high-water mark (and the source's type of it) is stored in the metadata of the
Delta commit that adds the rows, so the mark and the data move together. On
PostgreSQL every query of one load runs in one read-only ``REPEATABLE READ``
transaction, so the rows, the maximum and the keys come from one snapshot.

The connection string is resolved from the environment only here, at connect time
(see :mod:`medallion_nb.secrets`), and never appears in a message or a log.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from medallion_nb.errors import IngestError, LakeError
from medallion_nb.ingest.csvfiles import LINEAGE_COLUMNS
from medallion_nb.ingest.files import STATE_KEY
from medallion_nb.ingest.report import FileReport, IngestResult
from medallion_nb.secrets import SecretText, redact
from medallion_nb.sources import Source
from medallion_nb.sql import literal, quote_name

if TYPE_CHECKING:
    import duckdb

    from medallion_nb.lakehouse import Lakehouse

SQLITE_BATCH_ROWS = 65_536
# A type name as PostgreSQL's pg_typeof() spells it (it is put into SQL as a cast).
_PG_TYPE = re.compile(r'^[A-Za-z_][A-Za-z0-9_ ."\[\]]*(\(\d+(,\s*\d+)?\))?(\[\])?$')
_SQLITE_CAST = {"TINYINT": "INTEGER", "SMALLINT": "INTEGER", "INTEGER": "INTEGER", "BIGINT": "INTEGER",
                "HUGEINT": "INTEGER", "FLOAT": "REAL", "DOUBLE": "REAL", "BOOLEAN": "INTEGER", "BLOB": "BLOB"}


@dataclass(frozen=True)
class Mark:
    """A cursor's high-water mark: the value (as the database gives it) and the database's type of it."""

    value: Any
    db_type: str

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "type": self.db_type}

    @classmethod
    def from_json(cls, data: Any) -> Mark | None:
        if isinstance(data, dict) and "value" in data and isinstance(data.get("type"), str):
            return cls(data["value"], data["type"])
        return None


def ingest_database(lake: Lakehouse, source: Source, rebuild: bool) -> IngestResult:
    """Load what is new in one database source (everything, with ``rebuild``); see the module docs.

    Raises:
        IngestError: the database cannot be reached or read, a key or cursor column is missing,
            or the write failed; nothing was committed.
    """
    table = f"bronze.{source.name}"
    exists = lake.exists(table)
    fresh = rebuild or source.mode == "replace" or not exists
    mark = None if fresh or not source.cursor else _read_mark(lake, source)
    origin = describe(source)
    warnings: list[str] = []
    with connect(lake.project.root, source) as db:
        query = db.base_query()
        columns = db.columns(query)
        _check_columns(source, columns)
        upper = None
        if source.cursor:
            upper = db.maximum(query, source.cursor, mark)
            if upper is None:  # nothing past the mark
                return IngestResult(source.name, table, source.mode, (), 0, read=f"nothing new in {origin}")
            nulls = db.count_null(query, source.cursor) if mark is None else 0
            if nulls:
                warnings.append(f"{nulls:,} row(s) of {origin} have no {source.cursor} (the cursor) and are not "
                                "loaded; give them a value, or load the source without a cursor (mode: replace)")
        removed = None
        if source.deletes and exists and not fresh:
            removed = _gone_keys(lake, db, query, source)
        stream = _Stream(db.rows(query, source.cursor, mark, upper, inclusive=source.mode == "merge"), source)
        rel = _with_lineage(lake, stream, source, origin)
        metadata = {STATE_KEY: json.dumps({"cursor": upper.to_json() if upper else None, "source": origin},
                                          sort_keys=True)}
        try:
            result = lake.write(table, rel, mode="replace" if fresh else source.mode, key=source.keys or None,
                                delete=removed, metadata=metadata)
        except LakeError as exc:
            if stream.error is not None:
                raise stream.error from None
            raise IngestError(f"source {source.name}: {exc.message}", hint=exc.hint) from exc
        finally:
            if removed is not None:
                lake.con.execute("DROP TABLE IF EXISTS __ingest_source_keys")
    window = _window(source, mark, upper)
    read = f"from {origin}{window}"
    files = (FileReport(origin, stream.rows, stream.rows, 0, window.strip()),)
    return IngestResult(source.name, table, source.mode, (origin,) if stream.rows else (), result.rows, write=result,
                        files=files, warnings=tuple(warnings), read=read)


def describe(source: Source) -> str:
    """``postgres table public.orders`` / ``sqlite query`` (what ``_source_file`` holds for its rows)."""
    return f"{source.format} table {source.table}" if source.table else f"{source.format} query"


# -- reading -------------------------------------------------------------------
class _Database(AbstractContextManager):
    """One connection to the source database, and the few queries a load makes."""

    def __init__(self, source: Source, con: Any) -> None:
        self.source = source
        self.con = con
        self._streaming: list[Any] = []  # cursors whose record batches are being read: keep them open

    def __exit__(self, *exc: object) -> None:
        for cur in self._streaming:
            cur.close()
        self.con.close()

    def base_query(self) -> str:
        if self.source.table:
            return "SELECT * FROM " + ".".join(quote_name(p) for p in self.source.table.split("."))
        return self.source.query.strip().rstrip(";").strip()

    def execute(self, sql: str, params: tuple = ()) -> Any:
        cur = self.con.cursor()
        self._prepare(cur)
        try:
            cur.execute(sql, parameters=params or None)
        except driver_errors() as exc:
            cur.close()
            raise self.error("cannot run its query", exc) from None
        return cur

    def _prepare(self, cur: Any) -> None:
        """Driver options of a statement (batch size)."""

    def columns(self, query: str) -> list[str]:
        cur = self.execute(f"SELECT * FROM ({query}) AS src LIMIT 0")
        try:
            return list(cur.fetch_arrow_table().schema.names)
        finally:
            cur.close()

    def maximum(self, query: str, cursor: str, mark: Mark | None) -> Mark | None:
        """The cursor's maximum past ``mark`` (None: no such row)."""
        where, params = self._past(cursor, mark, inclusive=False)
        cur = self.execute(self._max_sql(query, cursor, where), params)
        try:
            value, kind = cur.fetchone()
        finally:
            cur.close()
        if value is None:
            return None
        return Mark(_jsonable(value, self.source, cursor), str(kind))

    def count_null(self, query: str, cursor: str) -> int:
        cur = self.execute(f"SELECT count(*) FROM ({query}) AS src WHERE {quote_name(cursor)} IS NULL")
        try:
            return int(cur.fetchone()[0])
        finally:
            cur.close()

    def rows(self, query: str, cursor: str | None, mark: Mark | None, upper: Mark | None, *,
             inclusive: bool) -> pa.RecordBatchReader:
        """The rows to load, as a stream of Arrow record batches."""
        conditions, params = [], ()
        if cursor and mark is not None:
            where, params = self._past(cursor, mark, inclusive=inclusive)
            conditions.append(where)
        if cursor and upper is not None:
            where, more = self._compare(cursor, "<=", upper)
            conditions.append(where)
            params = (*params, *more)
        sql = f"SELECT {self._select_list(query)} FROM ({query}) AS src"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        return self._stream(sql, params)

    def _stream(self, sql: str, params: tuple = ()) -> pa.RecordBatchReader:
        cur = self.execute(sql, params)
        self._streaming.append(cur)
        try:
            return cur.fetch_record_batch()
        except driver_errors() as exc:
            raise self.error("cannot read its rows", exc) from None

    def keys(self, query: str) -> pa.RecordBatchReader:
        keys = ", ".join(quote_name(k) for k in self.source.keys)
        return self._stream(f"SELECT DISTINCT {keys} FROM ({query}) AS src")

    def _past(self, cursor: str, mark: Mark | None, *, inclusive: bool) -> tuple[str, tuple]:
        if mark is None:
            return f"{quote_name(cursor)} IS NOT NULL", ()
        return self._compare(cursor, ">=" if inclusive else ">", mark)

    def _select_list(self, query: str) -> str:
        return "*"

    def _max_sql(self, query: str, cursor: str, where: str) -> str:
        raise NotImplementedError

    def _compare(self, cursor: str, op: str, mark: Mark) -> tuple[str, tuple]:
        """``cursor <op> mark`` as SQL, and its parameters."""
        return f"{quote_name(cursor)} {op} ?", (mark.value,)

    def error(self, what: str, exc: BaseException) -> IngestError:
        detail = redact(str(exc).strip().split("\nQuery was:")[0].strip())
        return IngestError(f"source {self.source.name}: {describe(self.source)}: {what}: {detail}",
                           hint=_hint(self.source, detail))


class _Postgres(_Database):

    def _max_sql(self, query: str, cursor: str, where: str) -> str:
        # max(...)::text round-trips exactly through a cast back to the column's own type.
        column = quote_name(cursor)
        return f"SELECT max({column})::text, pg_typeof(max({column}))::text FROM ({query}) AS src WHERE {where}"

    def _compare(self, cursor: str, op: str, mark: Mark) -> tuple[str, tuple]:
        # A literal, not a parameter: the driver streams a query's rows (COPY) only when it has no
        # parameters; with them libpq would hold the whole result in memory.
        if not _PG_TYPE.match(mark.db_type):
            raise IngestError(f"source {self.source.name}: the cursor's type {mark.db_type!r} cannot be used in a "
                              "query", hint="use a cursor column of a number, date, time or text type")
        return f"{quote_name(cursor)} {op} CAST({literal(str(mark.value))} AS {mark.db_type})", ()


class _Sqlite(_Database):
    def _prepare(self, cur: Any) -> None:
        cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(SQLITE_BATCH_ROWS)})

    def _max_sql(self, query: str, cursor: str, where: str) -> str:
        column = quote_name(cursor)
        return f"SELECT max({column}), typeof(max({column})) FROM ({query}) AS src WHERE {where}"

    def _select_list(self, query: str) -> str:
        # SQLite values carry their own types and the driver fixes a column's type from its
        # first rows: declared columns are cast in SQLite, so every value arrives as one type.
        declared = {name.lower(): dtype for name, dtype in self.source.schema}
        if not declared:
            return "*"
        out = []
        for column in self.columns(query):
            dtype = declared.get(column.lower())
            if dtype is None:
                out.append(quote_name(column))
            else:
                kind = _SQLITE_CAST.get(dtype.split("(")[0].upper(), "TEXT")
                out.append(f"CAST({quote_name(column)} AS {kind}) AS {quote_name(column)}")
        return ", ".join(out)


def connect(root: Path, source: Source) -> _Database:
    """A connection to the source's database (the URL resolved from the environment now).

    Raises:
        IngestError: the driver is not installed, the variable is not set, or the database cannot be reached.
        SecretError: a variable of the connection string is not set.
    """
    if source.format == "postgres":
        dbapi = _driver("adbc_driver_postgresql.dbapi", "adbc-driver-postgresql")
        url = source.url.resolve() if isinstance(source.url, SecretText) else str(source.url)
        try:
            con = dbapi.connect(url)
        except driver_errors() as exc:
            raise _Postgres(source, None).error("cannot connect", exc) from None
        try:
            # One read-only snapshot for every query of this load.
            con.adbc_connection.set_options(**{
                "adbc.connection.transaction.isolation_level": "adbc.connection.transaction.isolation.repeatable_read",
            })
            db = _Postgres(source, con)
            db.execute("SET TRANSACTION READ ONLY").close()
            db.execute("SET standard_conforming_strings = on").close()  # '' is the only escape in literals
        except BaseException:
            con.close()
            raise
        return db
    dbapi = _driver("adbc_driver_sqlite.dbapi", "adbc-driver-sqlite")
    path = Path(source.path) if Path(source.path).is_absolute() else root / source.path
    if not path.is_file():
        raise IngestError(f"source {source.name}: the SQLite database {source.path} does not exist (looked in {root})",
                          hint=f"check sources.{source.name}.path in medallion.yaml")
    try:
        con = dbapi.connect(f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro")
    except Exception as exc:  # the driver's connection errors
        raise _Sqlite(source, None).error("cannot open the database file", exc) from None
    return _Sqlite(source, con)


def driver_errors() -> tuple[type[BaseException], ...]:
    """The exceptions the ADBC drivers raise (all derive from the driver manager's ``Error``)."""
    from adbc_driver_manager import Error

    return (Error,)


def _driver(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise IngestError(f"reading {package.split('-')[-1]} sources needs the ADBC driver {package}",
                          hint="pip install 'medallion_nb[databases]'") from exc


# -- the stream into DuckDB ---------------------------------------------------
class _Stream:
    """The driver's batches as plain Arrow (extension types unwrapped), counted; errors kept for a clear message."""

    def __init__(self, reader: pa.RecordBatchReader, source: Source) -> None:
        self.source = source
        self.rows = 0
        self.error: IngestError | None = None
        self._reader = reader
        self.casts: dict[str, str] = {}
        fields = []
        for f in reader.schema:
            kind = f.type.storage_type if isinstance(f.type, pa.ExtensionType) else f.type
            fields.append(pa.field(f.name, kind))
            numeric = _pg_numeric(f)
            if numeric:
                self.casts[f.name] = numeric
        self.schema = pa.schema(fields)

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            for batch in self._reader:
                self.rows += batch.num_rows
                yield pa.RecordBatch.from_arrays(
                    [c.storage if isinstance(c, pa.ExtensionArray) else c for c in batch.columns], schema=self.schema)
        except (*driver_errors(), pa.ArrowException, OSError) as exc:  # through Arrow: an OSError for IO statuses
            self.error = IngestError(f"source {self.source.name}: {describe(self.source)}: reading its rows failed "
                                     f"after {self.rows:,}: {_column_named(redact(str(exc)), self.schema)}",
                                     hint=_hint(self.source, str(exc)))
            raise self.error from None
        finally:
            self._reader.close()


def _typed(lake: Lakehouse, stream: _Stream, source: Source) -> duckdb.DuckDBPyRelation:
    """The stream as a DuckDB relation, columns cast to the declared types (and numerics to DECIMAL)."""
    declared = {name.lower(): dtype for name, dtype in source.schema}
    select = []
    for name in stream.schema.names:
        dtype = declared.get(name.lower()) or stream.casts.get(name)
        select.append(f"CAST({quote_name(name)} AS {dtype}) AS {quote_name(name)}" if dtype else quote_name(name))
    return lake.con.from_arrow(stream.reader()).project(", ".join(select))


def _with_lineage(lake: Lakehouse, stream: _Stream, source: Source, origin: str) -> duckdb.DuckDBPyRelation:
    clash = [c for c in LINEAGE_COLUMNS if c in stream.schema.names]
    if clash:
        raise IngestError(f"source {source.name}: {origin} already has column(s) {', '.join(clash)}, which bronze "
                          "adds for lineage; rename them in a query: (SELECT ... AS another_name)")
    undeclared = [n for n, _ in source.schema if n.lower() not in {c.lower() for c in stream.schema.names}]
    if undeclared:
        raise IngestError(f"source {source.name}: schema: declares {', '.join(undeclared)}, which {origin} does not "
                          f"have (columns: {', '.join(stream.schema.names)})")
    ingested_at = datetime.now(UTC).isoformat()
    return _typed(lake, stream, source).project(
        f"*, TIMESTAMPTZ {literal(ingested_at)} AS _ingested_at, {literal(origin)} AS _source_file, "
        f"{literal(lake.run_id)} AS _run_id")


# -- helpers -------------------------------------------------------------------
def _read_mark(lake: Lakehouse, source: Source) -> Mark | None:
    """The high-water mark committed with the newest rows of ``bronze.<source>``."""
    for commit in lake.store.raw_history("bronze", source.name):
        if STATE_KEY in commit:
            try:
                state = json.loads(commit[STATE_KEY])
            except (TypeError, ValueError):
                return None
            return Mark.from_json(state.get("cursor")) if isinstance(state, dict) else None
    return None


def _check_columns(source: Source, columns: list[str]) -> None:
    for column in (*source.keys, *([source.cursor] if source.cursor else [])):
        if column not in columns:
            raise IngestError(f"source {source.name}: column {column!r} (a key or cursor in medallion.yaml) is not "
                              f"in {describe(source)}; its columns are: {', '.join(columns)}")


def _gone_keys(lake: Lakehouse, db: _Database, query: str, source: Source) -> duckdb.DuckDBPyRelation:
    """The keys in bronze that the source no longer has (staged in DuckDB, which spills to disk)."""
    keys = ", ".join(quote_name(k) for k in source.keys)
    lake.con.execute("DROP TABLE IF EXISTS __ingest_source_keys")
    _typed(lake, _Stream(db.keys(query), source), source).create("__ingest_source_keys")
    return lake.con.sql(f"SELECT {keys} FROM bronze.{quote_name(source.name)} "
                        f"EXCEPT SELECT {keys} FROM __ingest_source_keys")


def _window(source: Source, mark: Mark | None, upper: Mark | None) -> str:
    if not source.cursor or upper is None:
        return ""
    low = "" if mark is None else f"{mark.value} {'<=' if source.mode == 'merge' else '<'} "
    return f" ({low}{source.cursor} <= {upper.value})"


def _jsonable(value: Any, source: Source, cursor: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise IngestError(f"source {source.name}: the cursor {cursor!r} holds {type(value).__name__} values; "
                          "a cursor is a number, a date or time, or text")
    return value


def _pg_numeric(f: pa.Field) -> str | None:
    """``DECIMAL(p,s)`` for a PostgreSQL ``numeric(p,s)`` column (the driver passes numerics as text)."""
    meta = f.metadata or {}
    if meta.get(b"POSTGRESQL:type") != b"numeric":
        return None
    try:
        typmod = int(meta.get(b"POSTGRESQL:typmod", b"-1")) - 4
    except ValueError:
        return None
    precision, scale = typmod >> 16, typmod & 0xFFFF
    return f"DECIMAL({precision},{scale})" if 0 < precision <= 38 else None


def _column_named(message: str, schema: pa.Schema) -> str:
    """``... in column 3 ...`` with the column's name added (the SQLite driver numbers columns)."""
    def name(match: re.Match) -> str:
        index = int(match.group(1))
        return f"column {index} ({schema.names[index]})" if index < len(schema.names) else match.group(0)

    return re.sub(r"column (\d+)", name, message.strip().splitlines()[0] if message.strip() else message)


def _hint(source: Source, detail: str) -> str | None:
    if "Type mismatch" in detail:
        return (f"the column's values have different types in SQLite; declare its type under "
                f"sources.{source.name}.schema (the values are cast while reading)")
    if "password authentication failed" in detail or "Failed to connect" in detail:
        names = ", ".join(source.url.names) if isinstance(source.url, SecretText) else "the connection string"
        return f"check {names} (sources.{source.name}.url) and that the database accepts connections from here"
    return None
