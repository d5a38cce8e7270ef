"""The latest row per key, computed the cheap way.

``QUALIFY row_number() OVER (PARTITION BY key ORDER BY ...) = 1`` is the
obvious SQL, but DuckDB's window operator holds every row of the input, all
columns, in memory while it sorts them — on a 10-million-row bronze table that
is several GB and most of the time. Duplicates are rare in practice, so
:func:`latest` finds the keys that occur more than once (reading the key
columns only, grouping by their hash), passes every other row straight
through, and runs the window on the duplicated keys alone. The result is the
same set of rows.

Rows of one key that tie on the ordering are told apart by a hash of the whole row,
so the same input always gives the same rows (the window alone picks one of the tied
rows arbitrarily, and may pick another the next time the query runs). A write that
reads its rows twice (``lake.write_split``) relies on that.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from medallion_nb.errors import LakeError
from medallion_nb.sql import quote_name


def latest(rel: duckdb.DuckDBPyRelation, keys: Sequence[str], order_by: str) -> duckdb.DuckDBPyRelation:
    """One row per ``keys``: the first by ``order_by`` (SQL, e.g. ``"updated_at DESC"``).

    Returns the same rows as ``QUALIFY row_number() OVER (PARTITION BY keys
    ORDER BY order_by) = 1`` (null keys form one group, as there); among rows that
    tie on ``order_by``, always the same one. ``rel`` is
    read up to three times, so pass a table or a cheap relation, not an
    expensive query.

    Raises:
        LakeError: no keys, a key that is not a column, or SQL DuckDB rejects.
    """
    if not keys:
        raise LakeError("latest needs at least one key column")
    missing = [k for k in keys if k not in rel.columns]
    if missing:
        raise LakeError(f"latest: key {', '.join(missing)} is not a column (columns: {', '.join(rel.columns)})")
    # Keys are compared by their 64-bit hash: a collision only sends a few more
    # rows through the window, which partitions by the real key, so the result is exact.
    def key_hash(alias: str) -> str:
        return "hash(" + ", ".join(f"{alias}.{quote_name(k)}" for k in keys) + ")"

    partition = ", ".join("__tied." + quote_name(k) for k in keys)
    sql = f"""
        WITH _dup AS (SELECT {key_hash("r")} AS _h FROM _rows r GROUP BY 1 HAVING count(*) > 1)
        SELECT r.* FROM _rows r ANTI JOIN _dup d ON {key_hash("r")} = d._h
        UNION ALL
        (SELECT __tied.* FROM _rows __tied SEMI JOIN _dup d ON {key_hash("__tied")} = d._h
         QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {order_by}, hash(__tied)) = 1)
    """
    try:
        return rel.query("_rows", sql)
    except duckdb.Error as exc:
        raise LakeError(f"latest by {', '.join(keys)} ordered by {order_by}: {exc}") from exc
