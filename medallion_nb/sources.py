"""Raw sources in ``medallion.yaml``: what bronze ingests and how (types, nulls, dialect, bad rows)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medallion_nb.validation import COLUMN, Checks, duckdb_type, kind

LOAD_MODES = ("replace", "append", "merge")
SOURCE_FORMATS = ("csv", "parquet", "json")
ON_BAD_ROWS = ("fail", "quarantine")
ON_SCHEMA_CHANGE = ("add_columns", "fail")
# The encodings DuckDB's CSV reader decodes itself (others need an extension).
CSV_ENCODINGS = ("utf-8", "utf-16", "latin-1")
REJECTS_SUFFIX = "_rejects"
SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

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
                "decimal_separator", "on_bad_rows", "on_schema_change", "rename", "normalize_names")
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
            if not isinstance(sname, str) or not SOURCE_NAME.match(sname):
                self.problem(key, "source names must be lowercase identifiers (they become bronze table names)")
                continue
            if sname.endswith(REJECTS_SUFFIX) and sname[: -len(REJECTS_SUFFIX)] in raw:
                self.problem(key, f"clashes with the rejects table of source {sname[: -len(REJECTS_SUFFIX)]!r} "
                                  f"(bronze.{sname}); rename the source")
            spec = self.mapping(spec, key, _SOURCE_KEYS, ("path",))
            if not spec:
                continue
            source = self.source(sname, spec, key)
            if source is not None:
                out.append(source)
        return tuple(out)

    def source(self, sname: str, spec: dict, key: str) -> Source | None:
        path = self.string(spec.get("path"), f"{key}.path") if "path" in spec else None
        fmt = self.choice(spec.get("format", _guess_format(path)), f"{key}.format", SOURCE_FORMATS)
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

    def schema(self, raw: Any, key: str) -> tuple[tuple[str, str], ...]:
        if not isinstance(raw, dict):
            self.problem(key, f"expected a mapping of column name to DuckDB type, got {kind(raw)}")
            return ()
        out, seen = [], set()
        for column, dtype in raw.items():
            if not isinstance(column, str) or not COLUMN.match(column):
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
            if not COLUMN.match(column):
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


def _option_value(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _option_value(v) for k, v in value.items())
    return value is None or isinstance(value, str | int | float | bool)


def _guess_format(path: str | None) -> str:
    if path:
        for fmt, endings in (("parquet", (".parquet",)), ("json", (".json", ".jsonl", ".ndjson"))):
            if path.endswith(endings):
                return fmt
    return "csv"
