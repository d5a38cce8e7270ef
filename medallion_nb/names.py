"""The names and words medallion_nb gives a meaning to, each rule defined once.

A table is named ``<layer>.<table>``; a layer or a source is a lowercase identifier
that DuckDB does not keep for itself; a project name may also hold ``-``; a run id
is a safe folder name; a write is one of four modes. Everything that checks or
builds such a name imports the rule from here.
"""

from __future__ import annotations

import re

from medallion_nb.errors import LakeError, UsageError

# A column or table identifier: usable in SQL without quoting.
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A layer or a source: a lowercase identifier (a layer is a DuckDB schema).
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# <layer>.<table>
TABLE_NAME = re.compile(r"^([a-z][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)$")
TABLE_NAME_RULE = "<layer>.<table>, e.g. silver.orders"
# Schema names DuckDB keeps for itself (or resolves as catalogs); a layer is a schema.
RESERVED_LAYERS = ("main", "temp", "system", "memory", "information_schema", "pg_catalog")

PROJECT_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
PROJECT_NAME_RULE = "lowercase letters, digits, '_' or '-', starting with a letter"

# A run id is a folder name (runs/<run_id>/) and a manifest's file name (_medallion/runs/<run_id>.json).
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RUN_ID_RULE = "up to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"

# How a write changes a table (lake.write); sources load, and write_split writes, with the
# modes that need no where= (LOAD_MODES).
WRITE_MODES = ("replace", "append", "merge", "replace_where")
LOAD_MODES = ("replace", "append", "merge")


def parse_table_name(name: object, layers: tuple[str, ...] | None = None, *,
                     what: str | None = None) -> tuple[str, str]:
    """``"silver.orders"`` -> ``("silver", "orders")``, checked (against ``layers`` when given).

    ``what`` names the argument for the message, e.g. ``"check: data"``.

    Raises:
        LakeError: ``name`` is not a string, not ``<layer>.<table>`` (e.g. SQL text), names a
            layer not in ``layers``, or a table that is not a plain name.
    """
    at = f"{what}: " if what else ""
    if not isinstance(name, str):
        raise LakeError(f"{at}expected a table name ({TABLE_NAME_RULE}), got {kind_of(name)}")
    layer, dot, table = name.partition(".")
    if not dot or any(ch.isspace() for ch in name):
        raise LakeError(f"{at}table name {name!r} must be {TABLE_NAME_RULE}",
                        hint="for the rows of a query, pass lake.sql('SELECT ...') instead of a table name"
                        if any(ch.isspace() for ch in name) else None)
    if layers is not None and layer not in layers:
        raise LakeError(f"{at}table {name!r}: {layer!r} is not a layer of this project "
                        f"(layers: {', '.join(layers)})")
    if not IDENT.match(table):
        raise LakeError(f"{at}{table!r} is not a valid name (letters, digits and _, not starting with a digit)")
    return layer, table


def check_run_id(run_id: object) -> str:
    """Return ``run_id`` if it is a safe folder name.

    Raises:
        UsageError: it is empty, too long, or has characters other than letters, digits, ``.``, ``_``, ``-``.
    """
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise UsageError(f"run id {run_id!r} is not a safe folder name: use {RUN_ID_RULE}")
    return run_id


def check_project_name(name: object) -> str:
    """Return ``name`` if it is a project name.

    Raises:
        UsageError: it is not lowercase letters, digits, ``_`` or ``-`` starting with a letter.
    """
    if not isinstance(name, str) or not PROJECT_NAME.match(name):
        raise UsageError(f"{name!r} is not a valid project name: use {PROJECT_NAME_RULE} (e.g. sales_pipeline)")
    return name


def kind_of(value: object) -> str:
    """What a value is, for a message: ``a DuckDBPyRelation``, ``an int (3)``."""
    if value is None:
        return "None"
    kind = type(value).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    shown = f" ({value!r})" if isinstance(value, int | float | bool) else ""
    return f"{article} {kind}{shown}"
