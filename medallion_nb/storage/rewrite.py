"""Which files a ``replace_where`` write replaces, and the rows it must keep from them.

A ``replace_where`` commit removes every current file that holds a row matching the
condition. A file whose rows all match is just removed; a file holding matching and
other rows is removed and its other rows are written again (copy on write), in the same
commit. On a table partitioned by the condition's columns, files are whole partitions:
nothing is rewritten. Without a condition, the partitions present in the new rows are
replaced (dynamic partition overwrite).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import duckdb
import pyarrow as pa

from medallion_nb.storage.delta import DataFile, Snapshot, remove_action
from medallion_nb.storage.scan import scan_sql

FILE_COLUMN = "__medallion_file"


def replaced_files(con: duckdb.DuckDBPyConnection, base: Snapshot, where: str | None, schema: pa.Schema,
                   partitions: Collection[tuple[str | None, ...]],
                   copy_kept: Callable[[str], list[Any]]) -> tuple[list[Any], list[Any]]:
    """The remove actions of a replace_where commit and the files of the rows it keeps.

    ``partitions`` are the partition values of the new rows (used when ``where`` is None);
    ``copy_kept(select_sql)`` writes kept rows into the table folder and returns the files.
    """
    if where is None:
        drop = [f for f in base.data_files if _key(f, base.partition_by) in partitions]
        return [remove_action(f) for f in drop], []
    by_path = {f.path: f for f in base.data_files}
    if not by_path:
        return [], []
    scan = scan_sql(con, list(by_path), schema, base.partition_by, filename=FILE_COLUMN)
    matching = dict(con.sql(f"SELECT {FILE_COLUMN}, count(*) FROM ({scan}) WHERE ({where}) "
                            f"GROUP BY ALL").fetchall())
    touched = [by_path[p] for p in matching if p in by_path]
    partial = [f for f in touched if not f.rows or matching[f.path] < f.rows]
    kept = []
    if partial:
        columns = ", ".join(f'"{c}"' for c in schema.names)
        rest = scan_sql(con, [f.path for f in partial], schema, base.partition_by)
        kept = copy_kept(f"SELECT {columns} FROM ({rest}) WHERE ({where}) IS NOT TRUE")
    return [remove_action(f) for f in touched], kept


def _key(data_file: DataFile, partition_by: tuple[str, ...]) -> tuple[str | None, ...]:
    return tuple(data_file.partition.get(c) for c in partition_by)
