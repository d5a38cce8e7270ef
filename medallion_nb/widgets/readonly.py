"""Refuse any SQL ``WHERE`` expression that could do more than read lake tables.

The explorer lets people type a condition. DuckDB parses it (its tokenizer and
``json_serialize_sql``, never executing it) wrapped as
``SELECT * FROM placeholder WHERE (<expression>)``; the text is accepted only
if that is still exactly one plain ``SELECT`` whose condition calls loaded
functions and reads lake tables, nothing else.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Collection, Iterator
from typing import Any

import duckdb

from medallion_nb.widgets.queries import FilterError

# Statements a filter can never contain. A WHERE expression cannot hold them
# anyway; refusing them by keyword gives a clearer message than a parse error.
_FORBIDDEN_KEYWORDS = frozenset((
    "alter", "analyze", "attach", "begin", "call", "checkpoint", "commit", "copy", "create", "deallocate",
    "delete", "describe", "detach", "drop", "execute", "explain", "export", "grant", "import", "insert",
    "install", "load", "merge", "pivot", "pragma", "prepare", "reset", "revoke", "rollback", "set", "show",
    "summarize", "truncate", "unpivot", "update", "use", "vacuum",
))
# Scalar functions that read settings, variables or sequences, change state, or stall.
_FORBIDDEN_FUNCTIONS = frozenset((
    "current_setting", "getenv", "getvariable", "nextval", "currval", "setval", "setseed", "write_log",
    "sleep_ms", "pg_sleep", "current_query", "json_deserialize_sql", "json_execute_serialized_sql",
))
# Kinds of FROM items that bring rows from outside the lake tables (DuckDB's TableReferenceType).
_FORBIDDEN_SOURCES = frozenset(("PIVOT", "SHOW_REF", "COLUMN_DATA", "DELIM_GET", "CTE", "BOUND_TABLE_REF",
                                "INVALID"))
_PLACEHOLDER = "__medallion_filter__"
# Type constructors the parser spells out when it reads T[], STRUCT(...), MAP(...), ...
_TYPE_CONSTRUCTORS = frozenset(("list", "array", "struct", "map", "union", "enum", "decimal", "numeric"))


@functools.cache
def _parser() -> duckdb.DuckDBPyConnection:
    # A private connection only ever used to parse text (json_serialize_sql), never to run it.
    return duckdb.connect()


def known_functions(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """Names of the scalar and aggregate functions (and macros) already loaded in ``con``.

    A filter may only call these: an unknown name could make DuckDB install an extension.
    """
    rows = con.execute("SELECT DISTINCT function_name FROM duckdb_functions() "
                       "WHERE function_type IN ('scalar', 'aggregate', 'macro')").fetchall()
    return frozenset(name.lower() for (name,) in rows)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def known_types(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """Names of the types (and their aliases) already loaded in ``con``; a filter may only cast to these."""
    rows = con.execute("SELECT DISTINCT type_name FROM duckdb_types()").fetchall()
    return frozenset(name.lower() for (name,) in rows)


def check_where(where: str, *, tables: Collection[str], functions: Collection[str],
                types: Collection[str] | None = None) -> str:
    """Check that a SQL ``WHERE`` expression can only read, and return it ready for ``rel.filter``.

    The text must be one boolean expression. It may call the loaded scalar
    functions and read lake tables (``x IN (SELECT ... FROM gold.y)``), but not
    run statements (write, attach, copy, set, install, ...), call table
    functions (``read_csv``, ``glob``, ``query``, ...), read other tables or
    files, or call functions that read settings or change state.

    Args:
        where: the expression, e.g. ``revenue > 100 AND country = 'DE'``; empty means no filter.
        tables: the lake tables a subquery may read (``layer.table``).
        functions: the function names it may call (see :func:`known_functions`).
        types: the type names it may cast to (see :func:`known_types`); default: those of a plain DuckDB.

    Returns:
        ``""`` for an empty expression, else the expression in parentheses.

    Raises:
        FilterError: the expression is refused; the message says why.
    """
    text = where.strip()
    if not text:
        return ""
    try:
        return _check(text, tables, functions, _default_types() if types is None else types)
    except FilterError:
        raise
    except Exception as exc:  # a parse tree we did not foresee must be refused, never crash the app
        raise FilterError(f"filter cannot be checked ({type(exc).__name__}: {exc}); "
                          "write a plain condition such as revenue > 100 AND country = 'DE'") from exc


@functools.cache
def _default_types() -> frozenset[str]:
    return known_types(_parser())


def _check(text: str, tables: Collection[str], functions: Collection[str], types: Collection[str]) -> str:
    for char in text:
        # Invisible and control characters can hide what a condition does (U+200B, U+202E, NUL...).
        if unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs") and char not in "\t\n\r":
            raise FilterError(f"filter: invisible or control character U+{ord(char):04X} is not allowed; "
                              "type the condition as plain text")
    try:
        tokens = duckdb.tokenize(text)
    except (duckdb.Error, RuntimeError) as exc:
        raise FilterError(f"filter is not valid SQL: {exc}") from exc
    for i, (start, kind) in enumerate(tokens):
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(text)
        word = text[start:end].strip()
        if kind == duckdb.token_type.comment:
            raise FilterError("filter: comments (-- or /* */) are not allowed; write one condition")
        if kind == duckdb.token_type.operator and word.startswith(";"):
            raise FilterError("filter: ';' is not allowed; a filter is one condition, not a second statement")
        if kind == duckdb.token_type.keyword and word.lower() in _FORBIDDEN_KEYWORDS:
            raise FilterError(f"filter: {word.upper()} is not allowed; a filter can only read rows "
                              "(write a condition such as revenue > 100 AND country = 'DE')")
    statement = f"SELECT * FROM {_PLACEHOLDER} WHERE ({text})"
    parsed = json.loads(_parser().execute("SELECT json_serialize_sql(?)", [statement]).fetchall()[0][0])
    if parsed.get("error"):
        message = str(parsed.get("error_message", "cannot parse")).replace(statement, text)
        raise FilterError(f"filter is not valid SQL: {message}")
    _check_shape(parsed)
    condition = parsed["statements"][0]["node"]["where_clause"]
    allowed_tables = {name.lower() for name in tables}
    allowed_functions = {name.lower() for name in functions}
    allowed_types = {name.lower() for name in types} | _TYPE_CONSTRUCTORS
    for node in _walk(condition):
        _check_node(node, allowed_tables, allowed_functions, allowed_types)
    return f"({text})"


def _check_shape(parsed: dict[str, Any]) -> None:
    """The wrapped statement must still be exactly ``SELECT * FROM placeholder WHERE (...)``."""
    statements = parsed.get("statements") or []
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    source = node.get("from_table") or {}
    select = node.get("select_list") or []
    ok = (
        node.get("type") == "SELECT_NODE"
        and len(select) == 1 and select[0].get("class") == "STAR" and not select[0].get("exclude_list")
        and source.get("type") == "BASE_TABLE" and source.get("table_name") == _PLACEHOLDER
        and not source.get("schema_name") and not source.get("sample") and not source.get("at_clause")
        and not node.get("modifiers") and not node.get("group_expressions") and not node.get("group_sets")
        and node.get("having") is None and node.get("qualify") is None and node.get("sample") is None
        and not (node.get("cte_map") or {}).get("map")
        and node.get("where_clause") is not None
    )
    if not ok:
        raise FilterError("filter must be a single condition (what follows WHERE), "
                          "e.g. revenue > 100 AND country = 'DE'")


def _check_node(node: dict[str, Any], tables: set[str], functions: set[str], types: set[str]) -> None:
    kind = node.get("type")
    if not isinstance(kind, str):  # e.g. a sample's size carries {"type": {"id": ...}}
        kind = ""
    if node.get("sample"):
        raise FilterError("filter: USING SAMPLE / TABLESAMPLE is not allowed; a filter must give the same rows "
                          "every time (pages, counts and downloads agree)")
    if node.get("class") == "TYPE":
        type_name = str(node.get("type_name", ""))
        if node.get("catalog") or node.get("schema") or type_name.lower() not in types:
            raise FilterError(f"filter: type {type_name} is not available; cast to a built-in type such as "
                              "VARCHAR, INTEGER, DOUBLE, DECIMAL(18,2), DATE or TIMESTAMP")
    if kind == "TABLE_FUNCTION":
        function = (node.get("function") or {}).get("function_name") or "a table function"
        raise FilterError(f"filter: {function}(...) is not allowed; a filter can read lake tables only, "
                          "not files or table functions")
    if kind == "BASE_TABLE":
        if node.get("at_clause"):
            raise FilterError("filter: AT (VERSION => ...) is not allowed; use the History tab for earlier versions")
        schema, table = node.get("schema_name") or "", node.get("table_name") or ""
        name = f"{schema}.{table}" if schema else table
        if node.get("catalog_name") or name.lower() not in tables:
            raise FilterError(f"filter: {name!r} is not a lake table; a subquery may read "
                              f"{', '.join(sorted(tables)) or 'lake tables'} only")
    elif kind in _FORBIDDEN_SOURCES:
        raise FilterError(f"filter: a {kind.lower().replace('_', ' ')} source is not allowed in a filter subquery")
    if node.get("class") == "FUNCTION":
        name = str(node.get("function_name", "")).lower()
        if name in _FORBIDDEN_FUNCTIONS:
            raise FilterError(f"filter: function {name}() is not allowed; it reads settings or changes state")
        if name not in functions:
            raise FilterError(f"filter: unknown function {name}(); only functions already loaded can be used")
