"""How DuckDB reads a set of a table's data files: one ``read_parquet`` over them.

DuckDB's native Parquet reader scans the files in parallel with projection and filter
push-down. Partition columns are not stored in the files (Delta's layout); their values
are in the ``column=value`` folder names, which DuckDB and delta-rs write the same way
(``__HIVE_DEFAULT_PARTITION__`` for null, percent-escapes for other characters), so
the reader takes them from there, typed as the table declares them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from medallion_nb.errors import LakeError
from medallion_nb.sql import literal, quote_name
from medallion_nb.storage.delta import Snapshot, TableStore

_EMPTY = itertools.count()


def duckdb_types(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> dict[str, str]:
    """The DuckDB type of every column of an Arrow schema, by name."""
    rel = con.from_arrow(empty_table(schema))
    return {name: str(kind) for name, kind in zip(rel.columns, rel.types, strict=True)}


def empty_table(schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` with no rows (``schema.empty_table()`` imports pandas, half a second)."""
    return pa.Table.from_batches([], schema=schema)


def scan_sql(con: duckdb.DuckDBPyConnection, files: Sequence[str], schema: pa.Schema,
             partition_by: Sequence[str] = (), *, filename: str | None = None) -> str:
    """A ``SELECT`` of ``schema``'s columns, in order, over ``files`` (absolute paths).

    With ``filename``, a last column of that name holds each row's file path.
    """
    columns = ", ".join(quote_name(c) for c in schema.names)
    if not files:
        # No file, still a schema: scan an empty Arrow table of it.
        empty = f"__medallion_empty_{next(_EMPTY)}"
        con.register(empty, empty_table(schema))
        extra = f", NULL::VARCHAR AS {quote_name(filename)}" if filename else ""
        return f"SELECT {columns}{extra} FROM {empty}"
    paths = ", ".join(literal(f) for f in files)
    options = "union_by_name = true"
    if filename:
        options += f", filename = {literal(filename)}"
        columns += f", {quote_name(filename)}"
    if partition_by:
        types = duckdb_types(con, schema)
        hive = ", ".join(f"{literal(c)}: {literal(types[c])}" for c in partition_by)
        options += f", hive_partitioning = true, hive_types = {{{hive}}}"
    else:
        options += ", hive_partitioning = false"
    return f"SELECT {columns} FROM read_parquet([{paths}], {options})"


def readable(name: str, snap: Snapshot, store: TableStore) -> Snapshot:
    """``snap`` if all its data files are there.

    Raises:
        LakeError: some were deleted (by vacuum, usually), so this version cannot be read.
    """
    gone = store.missing(snap.files)
    if gone:
        raise LakeError(f"version {snap.version} of {name} cannot be read: {len(gone)} of its {len(snap.files)} "
                        f"data file(s) are gone (vacuumed or deleted), e.g. {gone[0]}",
                        hint="read a newer version (time travel reaches back as far as vacuum's retention)")
    return snap
