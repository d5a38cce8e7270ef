"""Bronze ingestion: load the project's raw sources into ``bronze.<source>``.

Each run reads only what is new: files not ingested before (by path and size),
and, where a source has a cursor column, rows past the highest cursor already
loaded. Database sources (PostgreSQL, SQLite) stream a table or a query in
batches (:mod:`medallion_nb.ingest.database`). CSV files are read on a fixed dialect with the source's declared types,
null markers and encoding; every file's data lines are accounted for as rows
loaded or rows rejected (``bronze.<source>_rejects``). Rows get lineage columns
(``_ingested_at``, ``_source_file``, ``_run_id``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING

from medallion_nb.errors import IngestError
from medallion_nb.ingest.csvfiles import LINEAGE_COLUMNS
from medallion_nb.ingest.database import ingest_database
from medallion_nb.ingest.files import STATE_KEY
from medallion_nb.ingest.load import ingest_source
from medallion_nb.ingest.report import FileReport, IngestReport, IngestResult
from medallion_nb.reporting import report_ingest
from medallion_nb.validation import parse_run_date

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

__all__ = ["LINEAGE_COLUMNS", "STATE_KEY", "FileReport", "IngestReport", "IngestResult", "ingest_sources"]


def ingest_sources(lake: Lakehouse, source: str | None = None, *, run_date: str | date | None = None,
                   full_refresh: bool = False, rebuild: str | Iterable[str] = ()) -> IngestReport:
    """Ingest every configured source (or the one named) into bronze.

    Args:
        lake: the lakehouse to write to.
        source: only this source (default: all of them, in config order).
        run_date: files dated after it (``date_in_name``) wait for a later run.
        full_refresh: rebuild every source from all its files.
        rebuild: source name(s) to rebuild from all their current files (a comma-separated
            string works too): rows of files that are gone or changed disappear.

    Raises:
        IngestError: a source's files cannot be read, or a schema change is refused.
        ProjectError: an unknown source name.
        UsageError: ``run_date`` is not an ISO date.
    """
    if "bronze" not in lake.layers:
        raise IngestError("the project has no layer named 'bronze' to ingest into")
    names = [n.strip() for n in (rebuild.split(",") if isinstance(rebuild, str) else rebuild) if n.strip()]
    for name in names:
        lake.project.source(name)
    sources = [lake.project.source(source)] if source else list(lake.project.sources)
    due = parse_run_date(run_date)
    report = IngestReport()
    for src in sources:
        again = full_refresh or src.name in names
        result = ingest_database(lake, src, again) if src.is_database else ingest_source(lake, src, due, again)
        report_ingest(result.to_log(lake.run_id))
        report.append(result)
    return report
