"""Delta Lake tables on disk: DuckDB writes the Parquet, delta-rs commits it.

- :mod:`~medallion_nb.storage.stage`: a write is staged (DuckDB writes the rows as
  Parquet, with statistics), can be audited, then committed or aborted;
- :mod:`~medallion_nb.storage.plan`: how a write is staged and committed (as files, or through delta-rs);
- :mod:`~medallion_nb.storage.delta`: the Delta log through ``deltalake`` (delta-rs):
  which tables exist, snapshots, history, commits of staged files, merge;
- :mod:`~medallion_nb.storage.stats`: Delta file statistics from DuckDB's;
- :mod:`~medallion_nb.storage.rewrite`: the files a ``replace_where`` replaces;
- :mod:`~medallion_nb.storage.changes`: rows changed since a notebook last consumed a table;
- :mod:`~medallion_nb.storage.vacuum`: reclaiming files no version needs;
- :mod:`~medallion_nb.storage.scan`: how DuckDB reads a table's files.

File-system failures are reported cause first by :mod:`medallion_nb.oserrors`.
"""

from medallion_nb.names import WRITE_MODES
from medallion_nb.storage.changes import Changes, consumption_for, read_changes
from medallion_nb.storage.delta import METADATA_PREFIX, Snapshot, TableStore, WriteResult, dumps
from medallion_nb.storage.scan import readable, scan_sql
from medallion_nb.storage.stage import Staged, stage
from medallion_nb.storage.vacuum import vacuum_lake

__all__ = [
    "METADATA_PREFIX",
    "WRITE_MODES",
    "Changes",
    "Snapshot",
    "Staged",
    "TableStore",
    "WriteResult",
    "consumption_for",
    "dumps",
    "read_changes",
    "readable",
    "scan_sql",
    "stage",
    "vacuum_lake",
]
