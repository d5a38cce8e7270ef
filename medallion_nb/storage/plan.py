"""How a write will be staged and committed, decided from the new rows and the table as it is.

A write goes straight into the table folder and is committed as files (``direct``) unless
it needs delta-rs' own writer: a merge into an existing table, an append that adds
columns, a replace that changes the partitioning. Appends and replaces of part of a table
take the table's schema: the new rows are cast to it and missing columns filled with nulls.

On a lake on object storage every write is staged in a local folder
(:func:`local_staging_folder`); a direct one is uploaded to the table folder at its commit
(``upload_to``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from medallion_nb.errors import LakeError
from medallion_nb.lock import pid_alive
from medallion_nb.objectstore import ObjectPath
from medallion_nb.sql import quote_name
from medallion_nb.storage.delta import Snapshot, delta_arrow_schema
from medallion_nb.storage.scan import duckdb_types

PARTITION_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "VARCHAR", "DATE", "BOOLEAN")
# A write to a lake on object storage stages in <system temp dir>/<LOCAL_STAGING><pid>-<layer>.<table>-<id>/.
LOCAL_STAGING = "medallion_nb-staging-"


@dataclass
class Plan:
    """How a write is staged and committed."""

    mode: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    direct: bool
    base: Snapshot | None
    keys: tuple[str, ...] = ()
    where: str | None = None
    scratch: Path | ObjectPath | None = None
    # A lake on object storage: the table folder the locally staged files are uploaded to at commit.
    upload_to: ObjectPath | None = None
    delete_files: tuple[str, ...] = ()


def make_plan(con: duckdb.DuckDBPyConnection, name: str, rel: duckdb.DuckDBPyRelation, mode: str, keys: tuple[str, ...],
          where: str | None, partition_by: Sequence[str] | None, base: Snapshot | None, deleting: bool) -> Plan:
    new_schema = delta_arrow_schema(arrow_schema(con, rel))
    if mode == "merge":
        if not keys:
            raise LakeError(f"write to {name}: mode merge needs key=... (the columns that identify a row)")
        missing = [k for k in keys if k not in rel.columns]
        if missing:
            raise LakeError(f"write to {name}: merge key {', '.join(missing)} is not a column of the new rows "
                            f"(columns: {', '.join(rel.columns)})")
    elif deleting:
        raise LakeError(f"write to {name}: delete=... goes with mode='merge' (the keys to delete)")
    if where is not None and mode != "replace_where":
        raise LakeError(f"write to {name}: where=... goes with mode='replace_where'")
    wanted = tuple(partition_by) if partition_by is not None else None
    if wanted:
        check_partitioning(con, name, rel, wanted)
    if base is None:
        return Plan(mode, new_schema, wanted or (), True, None, keys, where)
    current = base.partition_by
    table_cols = set(base.schema.names)
    if mode == "replace":
        target = wanted if wanted is not None else (current if set(current) <= set(rel.columns) else ())
        return Plan(mode, new_schema, target, target == current, base)
    if wanted is not None and wanted != current:
        raise LakeError(f"write to {name} ({mode}): the table is partitioned by "
                        f"({', '.join(current) or 'nothing'}), not ({', '.join(wanted) or 'nothing'}); "
                        "change the partitioning with mode='replace'")
    added = [c for c in rel.columns if c not in table_cols]
    if mode == "append":
        return Plan(mode, base.schema if not added else new_schema, current, not added, base)
    if mode == "merge":
        missing = [k for k in keys if k not in table_cols]
        if missing:
            raise LakeError(f"write to {name}: merge key {', '.join(missing)} is not a column of the table")
        return Plan(mode, new_schema, current, False, base, keys)
    # replace_where
    if added:
        raise LakeError(f"write to {name} (replace_where): column(s) {', '.join(added)} are not in the table; "
                        "replace_where cannot add columns (use mode='replace')")
    if where is None and not current:
        raise LakeError(f"write to {name}: replace_where needs where=... (the rows to replace), "
                        "or a table with partition_by (then the partitions in the new rows are replaced)")
    return Plan(mode, base.schema, current, True, base, keys, where)


def arrow_schema(con: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation) -> pa.Schema:
    """The Arrow schema ``rel`` produces, without running it (it may be a stream that reads once)."""
    columns = ", ".join(f"CAST(NULL AS {kind}) AS {quote_name(name)}" for name, kind in zip(rel.columns, rel.types,
                                                                                          strict=True))
    return con.sql(f"SELECT {columns} LIMIT 0").to_arrow_table().schema


def aligned_select(con: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, view: str, plan: Plan) -> str:
    """The rows of ``view`` with the columns and types of the plan's schema (casts only where they differ)."""
    have = dict(zip(rel.columns, (str(t) for t in rel.types), strict=True))
    want = duckdb_types(con, plan.schema)
    if list(have) == list(want) and have == want:
        return f"SELECT * FROM {view}"
    exprs = []
    for column, kind in want.items():
        if column not in have:
            exprs.append(f"CAST(NULL AS {kind}) AS {quote_name(column)}")
        elif have[column] != kind:
            exprs.append(f"CAST({quote_name(column)} AS {kind}) AS {quote_name(column)}")
        else:
            exprs.append(quote_name(column))
    return f"SELECT {', '.join(exprs)} FROM {view}"


def check_partitioning(con: duckdb.DuckDBPyConnection, name: str, rel: duckdb.DuckDBPyRelation,
                        partition_by: tuple[str, ...]) -> None:
    types = dict(zip(rel.columns, (str(t) for t in rel.types), strict=True))
    missing = [c for c in partition_by if c not in types]
    if missing:
        raise LakeError(f"write to {name}: partition column {', '.join(missing)} is not a column of the new rows")
    bad = [f"{c} ({types[c]})" for c in partition_by if types[c] not in PARTITION_TYPES]
    if bad:
        raise LakeError(f"write to {name}: cannot partition by {', '.join(bad)}; partition columns must be "
                        "whole numbers, text, dates or booleans (e.g. a day or a month as DATE)")
    if len(partition_by) >= len(types):
        raise LakeError(f"write to {name}: partition_by names every column; keep at least one column in the files")


def local_staging_folder(name: str) -> Path:
    """A new local folder to stage a write to a lake on object storage (created by the write).

    ``<system temp dir>/medallion_nb-staging-<pid>-<layer>.<table>-<id>``; the write deletes it.
    Folders left by processes that died mid-write (their pid is gone) are deleted on the way.
    """
    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for leftover in base.glob(LOCAL_STAGING + "*"):
            pid = leftover.name.removeprefix(LOCAL_STAGING).partition("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)
    return base / f"{LOCAL_STAGING}{os.getpid()}-{name}-{uuid.uuid4().hex[:12]}"
