"""The lakehouse's DuckDB connection (memory limit, threads, a spill folder of its own) and what it reads.

An explicit argument wins, then the environment, then ``medallion.yaml``'s ``duckdb:``
section, else DuckDB's own defaults (80% of RAM, all cores): see
:func:`medallion_nb.project.duckdb_settings`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from medallion_nb.errors import LakeError
from medallion_nb.project import Project, duckdb_settings


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


def to_relation(con: duckdb.DuckDBPyConnection, data: Any) -> duckdb.DuckDBPyRelation:
    """Turn SQL text, a relation, a DataFrame or Arrow data into a relation on ``con``.

    Raises:
        LakeError: a failing query, a statement that returns no rows, or an unknown kind of data.
    """
    if isinstance(data, duckdb.DuckDBPyRelation):
        return data
    try:
        if isinstance(data, str):
            rel = con.sql(data)
            if rel is None:
                raise LakeError(f"write expects a query that returns rows, got: {data[:80]!r}")
            return rel
        if isinstance(data, pa.Table | pa.RecordBatchReader | pa.RecordBatch):
            return con.from_arrow(data)
        if hasattr(data, "to_numpy") and hasattr(data, "columns"):
            return con.from_df(data)
    except duckdb.Error as exc:
        raise LakeError(f"query failed: {exc}") from exc
    raise LakeError(f"cannot write a {type(data).__name__}; pass a DuckDB relation, SQL text, "
                    "a pandas DataFrame or an Arrow table")
