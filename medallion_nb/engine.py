"""The lakehouse's DuckDB connection (memory limit, threads, a spill folder of its own) and what it reads.

An explicit argument wins, then the environment, then ``medallion.yaml``'s ``duckdb:``
section, else DuckDB's own defaults (80% of RAM, all cores): see
:func:`medallion_nb.project.duckdb_settings`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import duckdb
import pyarrow as pa

from medallion_nb.errors import LakeError
from medallion_nb.names import TABLE_NAME, kind_of
from medallion_nb.project import Project, duckdb_settings

if TYPE_CHECKING:
    import pandas as pd

# Rows, as the lakehouse's methods take them: a relation, SQL text, a DataFrame or Arrow data.
Rows: TypeAlias = "duckdb.DuckDBPyRelation | str | pd.DataFrame | pa.Table | pa.RecordBatch | pa.RecordBatchReader"
ROWS_RULE = "a DuckDB relation, SQL text, a pandas DataFrame or Arrow data"
ROWS_NOT_TEXT_RULE = "a table name (<layer>.<table>) or rows: a DuckDB relation (e.g. lake.sql('SELECT ...')), " \
    "a pandas DataFrame or Arrow data"


def open_duckdb(project: Project, memory_limit: str | None = None,
                threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection configured for the project.

    Raises:
        LakeError: DuckDB refused the settings.
    """
    # One spill folder per process: parallel notebooks must not share DuckDB's temp files.
    spill = Path(tempfile.gettempdir()) / "medallion_nb_spill" / str(os.getpid())
    # DuckDB creates the last folder only: without the parent, work larger
    # than the memory limit fails ("Failed to create directory") instead of spilling.
    spill.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"temp_directory": str(spill)}
    settings = duckdb_settings(project, memory_limit, threads)
    if settings.memory_limit:
        config["memory_limit"] = settings.memory_limit
    if settings.threads:
        config["threads"] = settings.threads
    try:
        return duckdb.connect(config=config)
    except duckdb.Error as exc:
        raise LakeError(f"cannot start DuckDB with {config}: {exc}") from exc


def to_relation(con: duckdb.DuckDBPyConnection, data: object, *, what: str = "data",
                text: bool = True) -> duckdb.DuckDBPyRelation:
    """Turn SQL text, a relation, a DataFrame or Arrow data into a relation on ``con``.

    ``what`` names the argument in messages (e.g. ``"write: data"``); with ``text=False`` the
    caller has handled ``str`` (a table name) and anything else is refused here.

    Raises:
        LakeError: a failing query, a statement that returns no rows, or a value that is not rows.
    """
    if isinstance(data, duckdb.DuckDBPyRelation):
        return data
    try:
        if isinstance(data, str) and text:
            rel = con.sql(data)
            if rel is None:
                raise LakeError(f"{what}: expected a query that returns rows, got: {data[:80]!r}")
            return rel
        if isinstance(data, pa.Table | pa.RecordBatchReader | pa.RecordBatch):
            return con.from_arrow(data)
        if hasattr(data, "to_numpy") and hasattr(data, "columns"):
            return con.from_df(data)
    except duckdb.Error as exc:
        named = isinstance(data, str) and TABLE_NAME.match(data.strip())
        raise LakeError(f"{what}: query failed: {exc}",
                        hint=f"{data.strip()!r} is a table name; pass lake.table({data.strip()!r}) for its rows"
                        if named else None) from exc
    raise LakeError(f"{what}: expected {ROWS_RULE if text else ROWS_NOT_TEXT_RULE}, got {kind_of(data)}")
