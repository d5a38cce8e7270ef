"""Raw sources in ``medallion.yaml``: what bronze ingests and how (types, nulls, dialect, bad rows)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medallion_nb.names import IDENT, LOAD_MODES, NAME
from medallion_nb.secrets import SecretText, parse
from medallion_nb.validation import Checks, duckdb_type, kind

FILE_FORMATS = ("csv", "parquet", "json")
# Read through Arrow-native ADBC drivers (see medallion_nb.ingest.database).
DATABASE_FORMATS = ("postgres", "sqlite")
SOURCE_FORMATS = (*FILE_FORMATS, *DATABASE_FORMATS)
ON_BAD_ROWS = ("fail", "quarantine")
ON_SCHEMA_CHANGE = ("add_columns", "fail")
# The encodings DuckDB's CSV reader decodes itself (others need an extension).
CSV_ENCODINGS = ("utf-8", "utf-16", "latin-1")
REJECTS_SUFFIX = "_rejects"
# A database table: name or schema.name (letters, digits, _ and $).
DB_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")

# CSV reader options a source sets with its own keys; given in options: they would
# turn off the fixed-dialect read or bypass the accounting.
_CSV_MANAGED_OPTIONS = {
    "columns": "schema", "types": "schema", "dtypes": "schema", "column_types": "schema",
    "all_varchar": "schema", "auto_detect": None, "union_by_name": "on_schema_change",
    "nullstr": "null_values", "null_str": "null_values", "encoding": "encoding",
    "delim": "delimiter", "sep": "delimiter", "quote": "quote", "escape": "escape", "header": "header",
    "store_rejects": "on_bad_rows", "ignore_errors": "on_bad_rows", "rejects_table": "on_bad_rows",
    "rejects_scan": "on_bad_rows", "rejects_limit": "on_bad_rows", "filename": None,
    "normalize_names": "normalize_names", "names": "rename", "column_names": "rename",
    "sample_size": None, "skip": None, "comment": None, "compression": None, "parallel": None,
    "strict_mode": None, "null_padding": None,
    "dateformat": "date_format", "date_format": "date_format", "timestampformat": "timestamp_format",
    "timestamp_format": "timestamp_format", "decimal_separator": "decimal_separator",
}
_SOURCE_KEYS = ("path", "format", "mode", "keys", "cursor", "date_in_name", "options", "schema", "null_values",
                "encoding", "delimiter", "quote", "escape", "header", "date_format", "timestamp_format",
                "decimal_separator", "on_bad_rows", "on_schema_change", "rename", "normalize_names",
                "url", "table", "query", "deletes")
_DATABASE_KEYS = ("url", "table", "query", "deletes")
_FILE_ONLY_KEYS = ("date_in_name", "options", "rename", "on_schema_change")
_CSV_KEYS = ("null_values", "encoding", "delimiter", "quote", "escape", "header", "date_format",
             "timestamp_format", "decimal_separator", "on_bad_rows", "normalize_names")


@dataclass(frozen=True)
class Source:
    """A raw source that bronze ingests into ``bronze.<name>``."""

    name: str
    path: str
    format: str = "csv"
    mode: str = "append"
    keys: tuple[str, ...] = ()
    cursor: str | None = None
    date_in_name: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    # Declared columns, in order: (name, DuckDB type). Undeclared columns stay text.
    schema: tuple[tuple[str, str], ...] = ()
    null_values: tuple[str, ...] = ()
    encoding: str = "utf-8"
    delimiter: str = ","
    quote: str = '"'
    escape: str = '"'
    header: bool = True
    date_format: str | None = None
    timestamp_format: str | None = None
    decimal_separator: str | None = None
    on_bad_rows: str = "fail"
    on_schema_change: str = "add_columns"
    # Header name -> column name, applied before anything else looks at the columns.
    rename: Mapping[str, str] = field(default_factory=dict)
    normalize_names: bool = False
    # Database sources: a connection string (postgres; usually a SecretText), a table or a query,
    # and whether rows gone from the source are deleted from bronze (merge only).
    url: str | SecretText | None = None
    table: str | None = None
    query: str | None = None
    deletes: bool = False

    @property
    def is_database(self) -> bool:
        """Whether rows come from a database (``format: postgres`` or ``sqlite``) rather than files."""
        return self.format in DATABASE_FORMATS

    @property
    def rejects_table(self) -> str:
        """The table that keeps the rows this source could not load: ``bronze.<name>_rejects``."""
        return f"{self.name}{REJECTS_SUFFIX}"

    def declared_type(self, column: str) -> str | None:
        """The DuckDB type ``schema:`` gives a column (matched case-insensitively), or None."""
        for name, dtype in self.schema:
            if name.lower() == column.lower():
                return dtype
        return None


class SourceChecks(Checks):
    """Validation of the ``sources:`` section."""

    def sources(self, raw: Any) -> tuple[Source, ...]:
        if not isinstance(raw, dict):
            self.problem("sources", f"expected a mapping of source name to settings, got {kind(raw)}")
            return ()
        out = []
        for sname, spec in raw.items():
            key = f"sources.{sname}"
            if not isinstance(sname, str) or not NAME.match(sname):
                self.problem(key, "source names must be lowercase identifiers (they become bronze table names)")
                continue
            if sname.endswith(REJECTS_SUFFIX) and sname[: -len(REJECTS_SUFFIX)] in raw:
                self.problem(key, f"clashes with the rejects table of source {sname[: -len(REJECTS_SUFFIX)]!r} "
                                  f"(bronze.{sname}); rename the source")
            spec = self.mapping(spec, key, _SOURCE_KEYS)
            if not spec:
                continue
            source = self.source(sname, spec, key)
            if source is not None:
                out.append(source)
        return tuple(out)

    def source(self, sname: str, spec: dict, key: str) -> Source | None:
        path = self.string(spec.get("path"), f"{key}.path") if "path" in spec else None
        fmt = self.choice(spec.get("format", _guess_format(path)), f"{key}.format", SOURCE_FORMATS)
        if fmt in DATABASE_FORMATS:
            return self.database_source(sname, spec, key, fmt, path)
        if path is None and "path" not in spec:
            self.problem(f"{key}.path", "missing (required)")
        elif path and "://" in path:
            self.problem(f"{key}.path", f"{path!r}: source files are read from the local file system only, "
                                        "not from object storage; sync them to a local folder (e.g. aws s3 sync) "
                                        "or mount the bucket, and give that folder")
        given = [k for k in _DATABASE_KEYS if k in spec]
        if fmt and given:
            self.problem(key, f"{', '.join(given)}: only for database sources (format: postgres or sqlite)")
        mode = self.choice(spec.get("mode", "append"), f"{key}.mode", LOAD_MODES)
        keys = self.names(spec["keys"], f"{key}.keys") if "keys" in spec else ()
        if mode == "merge" and not keys:
            self.problem(f"{key}.keys", "required when mode is merge (the columns that identify a row)")
        cursor = spec.get("cursor")
        if cursor is not None:
            cursor = self.string(cursor, f"{key}.cursor")
        date_in_name = self.boolean(spec.get("date_in_name", False), f"{key}.date_in_name")
        options = spec.get("options", {})
        if not isinstance(options, dict) or not all(
            isinstance(k, str) and k.isidentifier() and _option_value(v) for k, v in options.items()
        ):
            self.problem(f"{key}.options", "expected a mapping of reader option name to a string, number, "
                                           "boolean or a mapping of those")
            options = {}
        csv_only = [k for k in _CSV_KEYS if k in spec]
        if fmt and fmt != "csv" and csv_only:
            self.problem(key, f"{', '.join(csv_only)}: only for csv sources (this one is {fmt})")
        if fmt == "csv":
            for name in options:
                if name.lower() in _CSV_MANAGED_OPTIONS:
                    instead = _CSV_MANAGED_OPTIONS[name.lower()]
                    self.problem(f"{key}.options.{name}",
                                 "set by medallion_nb for a fixed-dialect, fully accounted read; "
                                 + (f"use sources.{sname}.{instead} instead" if instead else "it cannot be changed"))
        schema = self.schema(spec.get("schema", {}), f"{key}.schema")
        rename = self.rename(spec.get("rename", {}), f"{key}.rename")
        header = self.boolean(spec.get("header", True), f"{key}.header")
        if not header and not schema and fmt == "csv":
            self.problem(f"{key}.schema", "required when header is false (it names the columns, in file order)")
        settings = {
            "schema": schema,
            "null_values": self.null_values(spec.get("null_values", []), f"{key}.null_values"),
            "encoding": self.encoding(spec.get("encoding", "utf-8"), f"{key}.encoding"),
            "delimiter": self.char(spec.get("delimiter", ","), f"{key}.delimiter", max_len=4),
            "quote": self.char(spec.get("quote", '"'), f"{key}.quote"),
            "escape": self.char(spec.get("escape", '"'), f"{key}.escape"),
            "header": header,
            "date_format": self.optional_string(spec.get("date_format"), f"{key}.date_format"),
            "timestamp_format": self.optional_string(spec.get("timestamp_format"), f"{key}.timestamp_format"),
            "decimal_separator": self.optional_string(spec.get("decimal_separator"), f"{key}.decimal_separator"),
            "on_bad_rows": self.choice(spec.get("on_bad_rows", "fail"), f"{key}.on_bad_rows", ON_BAD_ROWS),
            "on_schema_change": self.choice(spec.get("on_schema_change", "add_columns"),
                                            f"{key}.on_schema_change", ON_SCHEMA_CHANGE),
            "rename": rename,
            "normalize_names": self.boolean(spec.get("normalize_names", False), f"{key}.normalize_names"),
        }
        if settings["decimal_separator"] not in (None, ".", ","):
            self.problem(f"{key}.decimal_separator", f"{settings['decimal_separator']!r} is not '.' or ','")
        if None in (settings["on_bad_rows"], settings["on_schema_change"], settings["encoding"]) \
                or not (path and fmt and mode):
            return None
        return Source(sname, path, fmt, mode, keys, cursor, date_in_name, dict(options), **settings)

    def database_source(self, sname: str, spec: dict, key: str, fmt: str, path: str | None) -> Source | None:
        """A ``format: postgres`` or ``sqlite`` source: a table or a query, read in batches."""
        wrong = [k for k in (*_CSV_KEYS, *_FILE_ONLY_KEYS) if k in spec]
        if wrong:
            self.problem(key, f"{', '.join(wrong)}: not for {fmt} sources (they read a table or a query)")
        url: str | SecretText | None = None
        if fmt == "postgres":
            if "path" in spec:
                self.problem(f"{key}.path", "not for postgres sources; give url: ${NAME} (a connection string "
                                            "from the environment)")
            url = self.connection_url(spec.get("url"), f"{key}.url") if "url" in spec else None
            if "url" not in spec:
                self.problem(f"{key}.url", "missing (required): the connection string, from a secret, e.g. "
                                           "url: ${ORDERS_DB_URL}")
        else:
            if "url" in spec:
                self.problem(f"{key}.url", "not for sqlite sources; give path: (the database file)")
            if "path" not in spec:
                self.problem(f"{key}.path", "missing (required): the SQLite database file")
        table = self.string(spec["table"], f"{key}.table", DB_TABLE, "a table name (name or schema.name)") \
            if "table" in spec else None
        query = self.string(spec["query"], f"{key}.query") if "query" in spec else None
        if ("table" in spec) == ("query" in spec):
            self.problem(key, "give either table: (a table to copy) or query: (a SELECT), exactly one")
        mode = self.choice(spec.get("mode", "append"), f"{key}.mode", LOAD_MODES)
        keys = self.names(spec["keys"], f"{key}.keys") if "keys" in spec else ()
        cursor = self.string(spec["cursor"], f"{key}.cursor") if "cursor" in spec else None
        if mode == "merge" and not keys:
            self.problem(f"{key}.keys", "required when mode is merge (the columns that identify a row)")
        if mode == "append" and "cursor" not in spec:
            self.problem(f"{key}.cursor", "required when a database source is appended: the column whose values "
                                          "only grow (an id, or an updated_at), so each run reads only new rows")
        if mode == "replace" and cursor:
            self.problem(f"{key}.cursor", "not used with mode: replace (every run reads the whole source)")
        deletes = self.boolean(spec.get("deletes", False), f"{key}.deletes")
        if deletes and mode != "merge":
            self.problem(f"{key}.deletes", "only with mode: merge (rows gone from the source are deleted by key)")
        schema = self.schema(spec.get("schema", {}), f"{key}.schema")
        if not (fmt and mode) or (fmt == "postgres" and url is None) or (fmt == "sqlite" and not path) \
                or not (table or query):
            return None
        return Source(sname, path or "", fmt, mode, keys, cursor, schema=schema, url=url, table=table, query=query,
                      deletes=deletes)

    def connection_url(self, raw: Any, key: str) -> str | SecretText | None:
        """A connection string: from a secret, or at least with no password written in plain text."""
        if not isinstance(raw, str) or not raw.strip():
            self.problem(key, f"expected a connection string such as ${{ORDERS_DB_URL}}, got {kind(raw)}")
            return None
        value = parse(raw, key)
        literal = value.literal_parts() if value is not None else raw
        if _has_password(literal):
            self.problem(key, "has a password written in plain text; medallion.yaml is not the place for it: "
                              "write the whole connection string as ${NAME} (e.g. url: ${ORDERS_DB_URL}) or only "
                              "the password (postgresql://app:${ORDERS_DB_PASSWORD}@db:5432/shop), and set the "
                              "variable in the environment (docs/secrets.md)")
            return None
        if value is None and not raw.startswith(("postgresql://", "postgres://")):
            self.problem(key, f"{raw!r} is not a postgresql:// URL or a ${{NAME}} reference")
            return None
        return value if value is not None else raw

    def schema(self, raw: Any, key: str) -> tuple[tuple[str, str], ...]:
        if not isinstance(raw, dict):
            self.problem(key, f"expected a mapping of column name to DuckDB type, got {kind(raw)}")
            return ()
        out, seen = [], set()
        for column, dtype in raw.items():
            if not isinstance(column, str) or not IDENT.match(column):
                self.problem(f"{key}.{column}", "column names are letters, digits and _ (not starting with a digit)")
                continue
            if column.lower() in seen:
                self.problem(f"{key}.{column}", "given twice (column names are matched case-insensitively)")
                continue
            seen.add(column.lower())
            parsed = duckdb_type(dtype)
            if parsed is None:
                self.problem(f"{key}.{column}", f"{dtype!r} is not a DuckDB type (e.g. INTEGER, DECIMAL(12,2), "
                                                "DATE, TIMESTAMP, VARCHAR)")
                continue
            out.append((column, parsed))
        return tuple(out)

    def rename(self, raw: Any, key: str) -> Mapping[str, str]:
        if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
            self.problem(key, "expected a mapping of header name to column name")
            return {}
        for header, column in raw.items():
            if not IDENT.match(column):
                self.problem(f"{key}.{header}", f"{column!r} is not a plain column name (letters, digits and _)")
        return dict(raw)

    def null_values(self, raw: Any, key: str) -> tuple[str, ...]:
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            self.problem(key, f"expected a list of strings such as ['', 'NA'], got {kind(raw)}")
            return ()
        return tuple(raw)

    def encoding(self, raw: Any, key: str) -> str | None:
        try:
            name = codecs.lookup(raw).name if isinstance(raw, str) else None
        except LookupError:
            name = None
        canonical = {"utf-8": "utf-8", "utf-16": "utf-16", "iso8859-1": "latin-1", "latin-1": "latin-1"}.get(name or "")
        if canonical is None:
            self.problem(key, f"{raw!r} is not one of {', '.join(CSV_ENCODINGS)} (the encodings DuckDB reads "
                              "natively); convert the files, e.g. with iconv")
        return canonical


def _has_password(url: str) -> bool:
    """Whether a connection string carries a password of its own (``user:pw@`` or ``password=``)."""
    if re.search(r"(^|[?&\s])password\s*=\s*[^&\s]", url, re.IGNORECASE):
        return True
    rest = url.split("://", 1)[1] if "://" in url else ""
    userinfo, at, _ = rest.partition("/")[0].rpartition("@")
    return bool(at) and ":" in userinfo and bool(userinfo.split(":", 1)[1])


def _option_value(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _option_value(v) for k, v in value.items())
    return value is None or isinstance(value, str | int | float | bool)


def _guess_format(path: str | None) -> str:
    if path:
        for fmt, endings in (("parquet", (".parquet",)), ("json", (".json", ".jsonl", ".ndjson")),
                             ("sqlite", (".sqlite", ".sqlite3"))):
            if path.endswith(endings):
                return fmt
    return "csv"
