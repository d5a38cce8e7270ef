"""The explorer's read path: a DuckDB connection that can only read the lake, and a time limit per query.

Whatever people type into the explorer (filter values, a ``WHERE`` condition)
runs here, never on the lakehouse's own connection. The connection is closed
off by DuckDB's own settings, in the order they must be given:
``allowed_directories`` (the lake folder), ``enable_external_access = false``
(no other files, no network, no ``ATTACH``), no automatic extension install or
load, and ``lock_configuration = true`` so nothing can switch these back. The
lake's tables are views over their Parquet files, as on the lakehouse
connection. Every query is interrupted after ``timeout`` seconds.

A lake on object storage is read through the filesystem registered on the
connection (:func:`medallion_nb.objectstore.register_filesystem`), registered
read-only, before the settings are locked; ``allowed_directories`` is then the
lake's ``s3://bucket/prefix/``, so other keys of the bucket, other buckets and local
files stay out of reach, and nothing can be written to the lake.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from medallion_nb.errors import LakeError
from medallion_nb.objectstore import ObjectPath, register_filesystem
from medallion_nb.sql import IDENT, literal, quote_ident, quote_name
from medallion_nb.widgets.queries import FilterError

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0  # seconds a single explorer query may run


class QueryTimeout(FilterError):
    """An explorer query ran longer than the time limit and was stopped."""


class ReadOnlyLake:
    """A sandboxed DuckDB connection over a lake's tables, for queries built from what people type.

    The tables and versions are the lake handle's: the latest commits, or the
    published snapshot it was opened on (``connect(..., snapshot="published")``).

    Args:
        lake: the lakehouse whose tables are exposed (read from its folder; its connection is not used).
        timeout: seconds after which a query is interrupted (:class:`QueryTimeout`).
    """

    def __init__(self, lake: Lakehouse, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.lake = lake
        self.timeout = float(timeout)
        self.versions: dict[str, int] = {}
        self._empty = 0
        self.con = _sandboxed_connection(lake.project.lake, memory_limit=lake.project.duckdb.memory_limit,
                                         threads=lake.project.duckdb.threads)
        for layer in lake.layers:
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(layer)}")
        self.functions = frozenset(name.lower() for (name,) in self.con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() "
            "WHERE function_type IN ('scalar', 'aggregate', 'macro')").fetchall())
        self.types = frozenset(name.lower() for (name,) in self.con.execute(
            "SELECT DISTINCT type_name FROM duckdb_types()").fetchall())
        self.refresh()

    def close(self) -> None:
        """Close the sandboxed connection."""
        self.con.close()

    # -- tables -----------------------------------------------------------
    def refresh(self) -> None:
        """(Re)create one view per lake table, over the files of the version the lake handle reads."""
        manifest = getattr(self.lake, "manifest", None)
        self.versions = dict(manifest.tables) if manifest is not None else {}
        self._tables = []
        self._files: dict[str, tuple[str, ...]] = {}
        for name in self.lake.tables():
            layer, table = name.split(".", 1)
            if not IDENT.match(table):
                continue
            version = self.versions.get(name)
            self.con.execute(f"CREATE OR REPLACE VIEW {quote_ident(layer)}.{quote_ident(table)} AS "
                             f"{self._scan_sql(layer, table, version)}")
            self._tables.append(name)

    def tables(self, layer: str | None = None) -> list[str]:
        """The tables this connection exposes (``layer.table``), in the lake's order."""
        return [t for t in self._tables if layer is None or t.partition(".")[0] == layer]

    def table(self, name: str, *, version: int | None = None) -> duckdb.DuckDBPyRelation:
        """A lazy relation over a table (or an earlier version of it) on the sandboxed connection.

        Raises:
            LakeError: the table or version does not exist.
        """
        if name not in self._tables:
            known = ", ".join(self._tables) or "none yet"
            raise LakeError(f"table {name} does not exist (tables: {known})")
        layer, table = name.split(".", 1)
        if version is None:
            return self.con.table(f"{quote_ident(layer)}.{quote_ident(table)}")
        return self.con.sql(self._scan_sql(layer, table, version))

    def files(self, name: str) -> tuple[str, ...]:
        """The data files of the table version this connection shows (its view reads exactly these)."""
        return self._files.get(name, ())

    def version(self, name: str) -> int | None:
        """The pinned version of a table, or None when the latest version is shown."""
        return self.versions.get(name)

    def _scan_sql(self, layer: str, table: str, version: int | None) -> str:
        snap = self.lake.store.snapshot(layer, table, version)
        columns = ", ".join(quote_name(c) for c in snap.schema.names)
        if version == self.versions.get(f"{layer}.{table}") and not snap.partition_by:
            self._files[f"{layer}.{table}"] = tuple(f.removeprefix("file://") for f in snap.files)
        if snap.files:
            files = ", ".join(literal(f.removeprefix("file://")) for f in snap.files)
            return f"SELECT {columns} FROM read_parquet([{files}], union_by_name = true)"
        # An empty table still has a schema: scan an empty Arrow table of it.
        self._empty += 1
        empty = f"__empty_{self._empty}"
        self.con.register(empty, snap.schema.empty_table())
        return f"SELECT {columns} FROM {empty}"

    # -- running ----------------------------------------------------------
    @contextlib.contextmanager
    def deadline(self, what: str = "the query") -> Iterator[None]:
        """Interrupt whatever runs on the connection inside the block after ``timeout`` seconds.

        Raises:
            QueryTimeout: the block was interrupted; the message says how to narrow it.
        """
        timer = threading.Timer(self.timeout, self.con.interrupt)
        timer.daemon = True
        timer.start()
        try:
            yield
        except duckdb.InterruptException as exc:
            raise QueryTimeout(f"{what} took longer than {self.timeout:g} s and was stopped; "
                               "narrow the filter or simplify the condition") from exc
        finally:
            timer.cancel()

    def run(self, fn: Callable[[], T], what: str = "the query") -> T:
        """``fn()`` under the time limit (see :meth:`deadline`)."""
        with self.deadline(what):
            return fn()


def _sandboxed_connection(lake: Path | ObjectPath, *, memory_limit: str | None,
                          threads: int | None) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB that can read files under ``lake`` and nothing else, settings locked."""
    spill = Path(tempfile.gettempdir()) / "medallion_nb_spill" / f"{os.getpid()}-explorer"
    spill.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"temp_directory": str(spill)}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = threads
    con = duckdb.connect(config=config)
    if isinstance(lake, ObjectPath):
        register_filesystem(con, lake, read_only=True)
        allowed = lake.uri + "/"
    else:
        allowed = str(Path(lake).resolve()) + os.sep
    # allowed_directories first: it cannot be set once external access is off.
    for statement in (
        f"SET allowed_directories = [{literal(allowed)}]",
        "SET enable_external_access = false",
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        "SET lock_configuration = true",
    ):
        try:
            con.execute(statement)
        except duckdb.Error as exc:
            con.close()
            raise LakeError(f"cannot set up the explorer's read-only connection ({statement}): {exc}") from exc
    return con
