"""SQL text we build: the one place that quotes identifiers and values, and maps types to Delta.

Values should go to DuckDB as parameters wherever it takes them; these helpers are for
the places it does not (identifiers, reader options, literals inside generated
expressions and views).
"""

from __future__ import annotations

from typing import Any

import duckdb

from medallion_nb.errors import LakeError
from medallion_nb.names import IDENT

# DuckDB types Delta Lake cannot store, and what they are written as.
DELTA_CASTS = {
    "UTINYINT": "SMALLINT",
    "USMALLINT": "INTEGER",
    "UINTEGER": "BIGINT",
    "UBIGINT": "DECIMAL(20,0)",
    "HUGEINT": "BIGINT",
    "UHUGEINT": "DECIMAL(38,0)",
    "TIMESTAMP_NS": "TIMESTAMP",
    "TIMESTAMP_MS": "TIMESTAMP",
    "TIMESTAMP_S": "TIMESTAMP",
    "TIME": "VARCHAR",
    "TIME WITH TIME ZONE": "VARCHAR",
    "INTERVAL": "VARCHAR",
    "UUID": "VARCHAR",
    "BIT": "VARCHAR",
}


def quote_ident(name: str) -> str:
    """Quote a column or table identifier after checking it is a plain name.

    Raises:
        LakeError: the name is not letters, digits and underscores.
    """
    if not isinstance(name, str) or not IDENT.match(name):
        raise LakeError(f"{name!r} is not a valid name (letters, digits and _, not starting with a digit)")
    return f'"{name}"'


def quote_name(name: str) -> str:
    """Quote any existing column name (from a relation's columns), escaping quotes."""
    return '"' + str(name).replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A SQL literal for a string, number, boolean, None, or a mapping of those (a struct)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(str(k))}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


def storable_columns(rel: duckdb.DuckDBPyRelation, name: str) -> list[str] | None:
    """The projection that makes ``rel`` storable in Delta, or None when it already is.

    Raises:
        LakeError: a column name is not a plain name, or names repeat.
    """
    exprs, changed = [], False
    for column, dtype in zip(rel.columns, rel.types, strict=True):
        if not IDENT.match(column):
            raise LakeError(f"write to {name}: column name {column!r} is not a plain name; "
                            "alias it (letters, digits and _)")
        kind = str(dtype)
        target = DELTA_CASTS.get(kind) or ("VARCHAR" if kind.startswith(("ENUM", "UNION")) else None)
        if target:
            exprs.append(f"CAST({quote_ident(column)} AS {target}) AS {quote_ident(column)}")
            changed = True
        else:
            exprs.append(quote_ident(column))
    if len({c.lower() for c in rel.columns}) != len(rel.columns):
        raise LakeError(f"write to {name}: duplicate column names in {rel.columns}")
    return exprs if changed else None
