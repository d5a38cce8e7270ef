"""The lakehouse handle: one DuckDB connection that sees every table of every layer.

``connect(project_dir)`` opens the project's lake. Each Delta table under
``<lake>/<layer>/<table>`` is exposed as the view ``<layer>.<table>`` over the
Parquet files of its current version, so DuckDB reads it natively, in
parallel, with projection and filter push-down. Reads are lazy relations;
writes are in :mod:`medallion_nb.writing` (DuckDB writes the new rows as Parquet,
one Delta commit publishes them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from medallion_nb.engine import open_duckdb
from medallion_nb.errors import LakeError
from medallion_nb.lock import commit_guard
from medallion_nb.names import RESERVED_LAYERS, parse_table_name
from medallion_nb.objectstore import register_filesystem
from medallion_nb.project import Project, load_project
from medallion_nb.reporting import recording, report_read
from medallion_nb.snapshots import Manifest, resolve, table_snapshot
from medallion_nb.sql import IDENT, quote_ident
from medallion_nb.storage import Snapshot, TableStore, WriteResult, readable, scan_sql
from medallion_nb.writing import WritePath

if TYPE_CHECKING:
    import pandas as pd
    from deltalake import DeltaTable

    from medallion_nb.engine import Rows
    from medallion_nb.ingest import IngestReport
    from medallion_nb.lineage import Lineage, TableStats
    from medallion_nb.quality import QualityReport
    from medallion_nb.quarantine import Split
    from medallion_nb.storage.changes import Consumption
    from medallion_nb.widgets import GoldExplorer


class Lakehouse(WritePath):
    """A project's lake, queryable with SQL as ``bronze.x``, ``silver.y``, ``gold.z``.

    Create it with :func:`connect`. Use it as a context manager or call
    :meth:`close` when done.

    What the methods take (one rule each, never guessed from the text):

    - a table (``name``, ``good``, ``bad``, ``table``): its name, ``"<layer>.<table>"``;
    - rows (``data`` of :meth:`write`, :meth:`stage`, :meth:`sync`, :meth:`split`,
      :meth:`write_split`, :meth:`keys`, :meth:`relation`): a DuckDB relation, SQL text
      (a query that returns rows), a pandas DataFrame or Arrow data; a ``str`` is SQL;
    - a table or rows (``data`` of :meth:`check` and :meth:`latest`, and
      :meth:`Keys.filter <medallion_nb.incremental.Keys.filter>`): a table name, or rows
      that are not text (a relation such as ``lake.sql("SELECT ...")``, a DataFrame, Arrow
      data); a ``str`` is a table name.

    Anything else raises :class:`~medallion_nb.errors.LakeError` naming the method, the
    argument and what it takes.
    """

    def __init__(
        self,
        project: Project,
        *,
        run_id: str = "dev",
        notebook: str | None = None,
        memory_limit: str | None = None,
        threads: int | None = None,
        snapshot: str | None = None,
    ) -> None:
        self.project = project
        self.run_id = run_id
        self.notebook = notebook
        self.store = TableStore(project.lake)
        self.layers = tuple(layer.name for layer in project.layers)
        self.writes: list[WriteResult] = []
        self.reports: list[QualityReport] = []  # quality reports of checks and expectations run through this handle
        # snapshot=None: the latest commits; "published" or a run id: that published snapshot (read-only).
        self.snapshot = snapshot
        self.manifest: Manifest | None = None
        self.snapshot_note: str | None = None
        self._snapshots: dict[tuple[str, str], Snapshot] = {}  # what each view reads
        self._reads: set[tuple[str, str]] = set()  # (table, how) already in the run's write log
        self._splits = 0  # temporary tables made by split()
        # What this handle's notebook consumed with changes() (by table); recorded with every write.
        self.consumed: dict[str, Consumption] = {}
        # Caches of changes(): each table's log, opened once until the next commit, and the
        # tables this handle's notebook writes (by its lineage; None until asked).
        self._txn_handles: dict[tuple[str, str], DeltaTable] = {}
        self._notebook_writes: tuple[str, ...] | None = None
        self.con = open_duckdb(project, memory_limit, threads)
        register_filesystem(self.con, project.lake)  # a lake on object storage: DuckDB reads s3:// through Arrow
        for layer in self.layers:
            if layer in RESERVED_LAYERS:
                raise LakeError(f"layer name {layer!r} is reserved by DuckDB; rename the layer in medallion.yaml")
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(layer)}")
        try:
            self.refresh()
        except BaseException:
            self.con.close()
            raise

    # -- context manager -------------------------------------------------
    def __enter__(self) -> Lakehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.con.close()

    def __repr__(self) -> str:
        seen = f", {self.manifest}" if self.manifest else (f", {self.snapshot_note}" if self.snapshot_note else "")
        return f"<Lakehouse {self.project.name!r} at {self.project.lake} ({len(self.tables())} tables{seen})>"

    # -- names -----------------------------------------------------------
    def split_name(self, name: str, *, what: str | None = None) -> tuple[str, str]:
        """``"silver.orders"`` -> ``("silver", "orders")``, checked against this project's layers.

        ``what`` (e.g. ``"check: data"``) starts the message of the error.

        Raises:
            LakeError: ``name`` is not a ``"<layer>.<table>"`` string (SQL text, a relation, ...),
                or its layer is not one of the project's.
        """
        return parse_table_name(name, self.layers, what=what)

    def _check_case(self, layer: str, table: str) -> None:
        """Refuse a table whose name differs from an existing one only in case (DuckDB names ignore case)."""
        for lay, other in self.store.tables():
            if lay == layer and other != table and other.lower() == table.lower():
                raise LakeError(f"table {layer}.{table}: {layer}.{other} already exists, and names that differ "
                                "only in case would be one table in SQL; use the existing name or another one")

    def _view(self, layer: str, table: str) -> str:
        return f"{quote_ident(layer)}.{quote_ident(table)}"

    # -- reading ---------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the lake folder so tables written by other processes show up.

        A handle on the published snapshot moves to the snapshot published since.

        Raises:
            LakeError: the snapshot asked for cannot be read (unknown run, vacuumed version).
        """
        if self.snapshot is not None:
            self.manifest, self.snapshot_note = resolve(self.project.lake, self.snapshot)
        if self.manifest is not None:
            for name in self.tables():
                layer, table = name.split(".", 1)
                if IDENT.match(table):
                    self._register(layer, table, table_snapshot(self.store, name, self.manifest.tables[name],
                                                                self.manifest))
            return
        for layer, table in self.store.tables():
            if layer in self.layers and IDENT.match(table):
                self._register(layer, table, self.store.snapshot(layer, table))

    def _register(self, layer: str, table: str, snap: Snapshot) -> None:
        try:
            self.con.execute(f"CREATE OR REPLACE VIEW {self._view(layer, table)} AS "
                             f"{scan_sql(self.con, snap.files, snap.schema, snap.partition_by)}")
        except duckdb.Error as exc:
            raise LakeError(f"table {layer}.{table} (version {snap.version}) cannot be read: {exc}",
                            hint="a data file its Delta log references is missing or damaged; restore it, "
                                 "or rebuild the table (run its layer with full_refresh=true)") from exc
        self._snapshots[(layer, table)] = snap

    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> duckdb.DuckDBPyRelation | None:
        """Run SQL against the lake; a query returns a lazy relation.

        Raises:
            LakeError: DuckDB rejected the query (the message is DuckDB's).
        """
        try:
            rel = self.con.sql(query, params=params)
        except duckdb.Error as exc:
            raise LakeError(f"query failed: {exc}") from exc
        self._read_sql(query)
        return rel

    def _read_sql(self, query: str) -> None:
        if recording():
            from medallion_nb.lineage import sql_tables

            for name in sorted(sql_tables(query, self.layers)):
                self._read(name, "sql")

    def _read(self, name: str, how: str) -> None:
        """Note in the run's write log that this notebook read ``name`` (once per table and way)."""
        if (name, how) not in self._reads:
            self._reads.add((name, how))
            report_read(name, run_id=self.run_id, how=how)

    def table(self, name: str, *, version: int | None = None) -> duckdb.DuckDBPyRelation:
        """A lazy relation over ``<layer>.<table>`` (or an earlier version of it).

        Raises:
            LakeError: ``name`` is not a table name, or the table or version does not exist.
        """
        layer, table = self.split_name(name, what="table: name")
        if self.manifest is not None and name not in self.manifest.tables:
            raise LakeError(f"table {name} is not in the {self.manifest}",
                            hint="connect without snapshot= to read the latest commits")
        if not self.store.exists(layer, table):
            known = ", ".join(self.tables(layer)) or "none yet"
            raise LakeError(f"table {name} does not exist (tables in {layer}: {known})",
                            hint=f"run the {layer} layer first" if layer in self.layers else None)
        if recording():
            self._read(name, "table")
        if version is None:
            known = self._snapshots.get((layer, table))
            if self.manifest is None and (known is None or self.store.missing(known.files)):
                # Written, or vacuumed, by another process since this handle read the log.
                self._register(layer, table, readable(name, self.store.snapshot(layer, table), self.store))
            return self.con.table(f"{layer}.{table}")
        snap = readable(name, self.store.snapshot(layer, table, version), self.store)
        return self.con.sql(scan_sql(self.con, snap.files, snap.schema, snap.partition_by))

    def exists(self, name: str) -> bool:
        """Whether ``<layer>.<table>`` has been written."""
        layer, table = self.split_name(name, what="exists: name")
        if self.manifest is not None:
            return name in self.manifest.tables
        return self.store.exists(layer, table)

    def tables(self, layer: str | None = None) -> list[str]:
        """Names of the tables in the lake (``layer.table``), in layer order."""
        order = {name: i for i, name in enumerate(self.layers)}
        found = [tuple(n.split(".", 1)) for n in self.manifest.tables] if self.manifest else self.store.tables()
        found = [(lay, t) for lay, t in found if lay in order and (layer is None or lay == layer)]
        return [f"{lay}.{t}" for lay, t in sorted(found, key=lambda x: (order[x[0]], x[1]))]

    def count(self, name: str) -> int:
        """Row count of a table, read from Delta's file statistics (no scan)."""
        layer, table = self.split_name(name, what="count: name")
        return self.store.snapshot(layer, table, self._pinned(name)).rows

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The versions of a table, newest first, with the run that wrote each."""
        layer, table = self.split_name(name, what="history: name")
        return self.store.history(layer, table, limit)

    def info(self, name: str) -> dict[str, Any]:
        """Schema, row count, version and last writer (run id, and time as a UTC datetime) of a table."""
        layer, table = self.split_name(name, what="info: name")
        pinned = self._pinned(name)
        snap = self.store.snapshot(layer, table, pinned)
        last = self.store.history(layer, table, 1)
        if pinned is not None:  # the commit that made the version this handle reads
            last = [h for h in self.store.history(layer, table) if h["version"] == pinned]
        return {
            "table": name,
            "rows": snap.rows,
            "version": snap.version,
            "columns": [(f.name, str(f.type)) for f in snap.schema],
            "last_run_id": last[0]["run_id"] if last else None,
            "last_written": (datetime.fromtimestamp(last[0]["timestamp"] / 1000, UTC)
                             if last and last[0]["timestamp"] is not None else None),
            "files": len(snap.files),
        }

    def _pinned(self, name: str) -> int | None:
        """The version of ``name`` this handle reads: the snapshot's, or None for the latest."""
        if self.manifest is None:
            return None
        if name not in self.manifest.tables:
            raise LakeError(f"table {name} is not in the {self.manifest}",
                            hint="connect without snapshot= to read the latest commits")
        return self.manifest.tables[name]

    def _check_writable(self, what: str) -> None:
        if self.snapshot is not None:
            raise LakeError(f"{what}: this handle reads the snapshot {self.snapshot!r} and cannot write",
                            hint="connect without snapshot= to write")

    # -- the other jobs, delegated ---------------------------------------
    def secret(self, parameter: str) -> str:
        """The value of a secret parameter (``name: ${VARIABLE}`` in medallion.yaml), read from the environment now.

        Keep it in a variable and pass it on; do not display it (a cell's output is saved in the executed notebook).

        Raises:
            SecretError: the parameter is not a secret in medallion.yaml, or its variable is not set.
        """
        from medallion_nb.secrets import parameter_secret

        return parameter_secret(self.project, parameter)

    def ingest(self, source: str | None = None, *, run_date: str | None = None,
               full_refresh: bool = False, rebuild: str | Sequence[str] = ()) -> IngestReport:
        """Load raw sources into bronze (all of them, or one by name); see :mod:`medallion_nb.ingest`.

        Returns one result per source (a list that shows as tables in a notebook).

        ``rebuild`` names sources to reload from all their current files.

        Raises:
            IngestError: a source cannot be read.
            LockHeldError: a run holds the lake's writer lock.
        """
        from medallion_nb.ingest import ingest_sources

        self._check_writable("ingest")
        # Under the writer lock from reading the ingest state to the last commit, with the
        # views re-read first: a second ingest waits and then finds the files already loaded.
        with commit_guard(self):
            self.refresh()
            return ingest_sources(self, source, run_date=run_date, full_refresh=full_refresh, rebuild=rebuild)

    def check(self, data: str | Rows, checks: Mapping[str, Any], *, name: str | None = None, fail: bool = True,
              key: str | Sequence[str] = ()) -> QualityReport:
        """Run quality checks on a table (``"silver.orders"``) or on rows; see :mod:`medallion_nb.quality`.

        A ``str`` is a table name; for the rows of a query pass ``lake.sql("SELECT ...")``.
        ``name`` labels the report (default: the table name, else ``rows``). ``key`` names the
        columns that identify a row in the report's failing examples (default: the first
        ``unique`` check's columns, else the first column).

        Raises:
            LakeError: ``data`` is not a table name or rows (SQL text, for one), or the table does not exist.
            QualityError: a check failed (unless ``fail=False``) or is malformed.
        """
        from medallion_nb.quality import run_checks

        label = name or (data if isinstance(data, str) else "rows")
        rel = self.table_or_rows(data, what="check: data")
        return run_checks(self, rel, checks, name=label, fail=fail, key=(key,) if isinstance(key, str) else key)

    def table_or_rows(self, data: str | Rows, *, what: str) -> duckdb.DuckDBPyRelation:
        """A table's relation (``data`` is ``"<layer>.<table>"``), or rows given as a relation, DataFrame or Arrow data.

        For the methods that take a table or rows (:meth:`check`, :meth:`latest`): a ``str``
        is always a table name, never SQL. ``what`` (e.g. ``"check: data"``) starts the message
        of the error.

        Raises:
            LakeError: a ``str`` that is not a table name (the hint points at ``lake.sql``), an
                unknown table, or a value that is neither.
        """
        if isinstance(data, str):
            self.split_name(data, what=what)
            return self.table(data)
        return self.relation(data, what=what, text=False)

    def split(self, data: Rows, rules: Mapping[str, str]) -> Split:
        """Divide rows into ``good`` and ``bad`` (with reasons) by named rules.

        Each rule is SQL that is true for a row that must be quarantined. The
        tagged rows are computed once into a temporary table (DuckDB spills it
        to disk when memory is short), so writing both halves reads the input once.
        """
        from medallion_nb.quarantine import split

        self._splits += 1
        temp = f"__split_{self._splits}"
        tagged = split(self.relation(data, what="split: data"), rules)
        try:
            tagged.all.create(temp)
        except duckdb.Error as exc:
            raise LakeError(f"split failed: {exc}") from exc
        return tagged.over(self.con.table(temp))

    def latest(self, data: str | Rows, *, key: str | Sequence[str], order_by: str) -> duckdb.DuckDBPyRelation:
        """The latest row per key of a table (``"bronze.orders"``) or of rows, e.g. the last delivery of each order.

        A ``str`` is a table name; for the rows of a query pass ``lake.sql("SELECT ...")``
        (it is read up to three times, so a table or a cheap query). Same rows as
        ``QUALIFY row_number() OVER (PARTITION BY key ORDER BY order_by) = 1``, but only
        duplicated keys are sorted; see :func:`medallion_nb.dedupe.latest`.

        Raises:
            LakeError: ``data`` is not a table name or rows (SQL text, for one), an unknown
                table or key column, or an ``order_by`` DuckDB rejects.
        """
        from medallion_nb.dedupe import latest

        rel = self.table_or_rows(data, what="latest: data")
        return latest(rel, (key,) if isinstance(key, str) else tuple(key), order_by)

    def quality(self) -> pd.DataFrame:
        """Every check run through this handle (expectations on writes, ``check``), one row per check.

        A small pandas DataFrame: table, action, check, target, result in words
        (passed / FAILED / WARNING / QUARANTINED), failing rows and a few examples.
        """
        from medallion_nb.quality import summary_frame

        return summary_frame(self.reports)

    def lineage(self) -> Lineage:
        """The project's lineage: which notebook reads and writes which table, with row counts.

        In a notebook it is drawn (with Graphviz) or printed; ``str()`` gives the text.
        """
        from medallion_nb.lineage import project_lineage

        return project_lineage(self.project, read_stats(self.project))

    def explore(self, table: str | None = None, **options: Any) -> GoldExplorer:
        """Open the gold explorer widget on this lake; see :mod:`medallion_nb.widgets`."""
        from medallion_nb.widgets import GoldExplorer

        return GoldExplorer(self, table, **options)

    def summary(self) -> pd.DataFrame:
        """The writes made through this handle, as a small pandas DataFrame.

        ``inserted`` and ``updated`` appear only when a merge was made (blank for other modes).
        """
        import pandas as pd

        columns = ["table", "mode", "rows", "inserted", "updated", "total_rows", "version"]
        if not any(w.mode == "merge" for w in self.writes):
            columns = [c for c in columns if c not in ("inserted", "updated")]
        frame = pd.DataFrame([w.to_dict() for w in self.writes], columns=columns)
        for column in columns[2:]:
            frame[column] = frame[column].astype("Int64")  # whole numbers; <NA> where a count does not apply
        return frame


def read_stats(project: Project) -> dict[str, TableStats]:
    """Row count, version and last run of every table in the lake (from Delta metadata, no scan)."""
    from medallion_nb.lineage import TableStats

    store = TableStore(project.lake)
    stats = {}
    for layer, table in store.tables():
        try:
            snap = store.snapshot(layer, table)
            last = store.history(layer, table, 1)
        except Exception:
            continue
        stats[f"{layer}.{table}"] = TableStats(snap.rows, snap.version, last[0].get("run_id") if last else None)
    return stats


def connect(
    project_dir: str | Path = ".",
    *,
    run_id: str = "dev",
    notebook: str | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
    snapshot: str | None = None,
) -> Lakehouse:
    """Open a project's lake.

    Args:
        project_dir: the project folder (or any folder inside it).
        run_id: recorded with every write (the runner passes the run's id).
        notebook: recorded with every write, to tell which notebook wrote it.
        memory_limit: DuckDB memory limit such as ``"1GB"``; larger work spills to
            disk. Default: ``MEDALLION_MEMORY_LIMIT``, else ``duckdb.memory_limit``
            in medallion.yaml, else DuckDB's own (80% of RAM).
        threads: DuckDB threads. Default: ``MEDALLION_THREADS``, else
            ``duckdb.threads`` in medallion.yaml, else all cores.
        snapshot: None (default) reads the latest commits of every table;
            ``"published"`` reads the table versions of the last successful run
            (the latest commits, with ``lake.snapshot_note`` saying so, while
            nothing is published); a run id reads the lake as that run published
            it. A handle on a snapshot cannot write.

    Raises:
        ProjectError: the project's ``medallion.yaml`` is missing or invalid.
        LakeError: the snapshot cannot be read (unknown run id, vacuumed version).
    """
    project = load_project(project_dir)
    return Lakehouse(project, run_id=run_id, notebook=notebook, memory_limit=memory_limit, threads=threads,
                     snapshot=snapshot)
