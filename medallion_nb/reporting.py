"""Where a write is reported besides its return value.

The runner sets ``MEDALLION_WRITE_LOG`` to a JSON-lines file before it starts a
layer's kernel; every write the notebook makes appends one line to it, which is
how the run record learns which tables a layer wrote and how many rows. Other
kinds of lines carry a ``"kind"`` (``"write"`` when absent): ``"read"`` is a
table the notebook read (``lake.table``, ``lake.sql``, ``lake.changes``), for lineage. Under
Kestra (``MEDALLION_KESTRA_OUTPUTS`` set) each write is also printed in Kestra's
script output protocol so the Kestra UI shows rows per table.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

WRITE_LOG_ENV = "MEDALLION_WRITE_LOG"
KESTRA_ENV = "MEDALLION_KESTRA_OUTPUTS"


def report_write(result: Any, *, run_id: str) -> None:
    """Record one write in the run's write log and, under Kestra, as task outputs."""
    entry = {**result.to_dict(), "run_id": run_id, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    log_line(entry)
    if os.environ.get(KESTRA_ENV):
        print(kestra_line(result), flush=True)


def report_expectations(report: Any, *, run_id: str, committed: bool) -> None:
    """Record the expectations checked on a write (``"kind": "expectations"``) in the run's write log."""
    entry = {
        "kind": "expectations", "table": report.name, "rows": report.rows, "ok": report.ok, "committed": committed,
        "failed": [r.rule for r in report.failed], "warnings": [r.rule for r in report.warnings],
        "quarantined": {r.rule: r.failures for r in report.quarantined},
        "run_id": run_id, "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    log_line(entry)


def log_line(entry: dict[str, Any]) -> bool:
    """Append one line to the write log, if the runner set one; returns whether it did."""
    log = os.environ.get(WRITE_LOG_ENV)
    if not log:
        return False
    path = Path(log)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One short line per entry, appended: concurrent notebooks each write whole lines,
    # so the log stays parseable.
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
    return True


def recording() -> bool:
    """Whether this process runs under the runner (so reads are worth recording)."""
    return bool(os.environ.get(WRITE_LOG_ENV))


def report_read(table: str, *, run_id: str, how: str, version: int | None = None) -> None:
    """Record that the notebook read ``table`` (``how``: table, sql or changes), for lineage."""
    entry: dict[str, Any] = {"kind": "read", "table": table, "how": how, "run_id": run_id,
                             "at": datetime.now(UTC).isoformat(timespec="seconds")}
    if version is not None:
        entry["version"] = version
    log_line(entry)


def report_ingest(entry: dict[str, Any]) -> None:
    """Record one source's ingestion (``"kind": "ingest"``, per-file rows loaded and rejected) in the write log."""
    log_line({**entry, "at": datetime.now(UTC).isoformat(timespec="seconds")})


def kestra_line(result: Any) -> str:
    """The ``::{...}::`` line Kestra's script tasks parse into outputs and metrics."""
    payload = kestra_payload(result.table, result.rows, result.total_rows, result.version)
    return "::" + json.dumps(payload, sort_keys=True) + "::"


def kestra_payload(table: str, rows: int, total_rows: int, version: int) -> dict[str, Any]:
    """Outputs (``<layer>_<table>: {rows, total_rows, version}``) and metrics of one table, for Kestra."""
    return {
        "outputs": {table.replace(".", "_"): {"rows": rows, "total_rows": total_rows, "version": version}},
        "metrics": [
            {"name": "rows_written", "type": "counter", "value": rows, "tags": {"table": table}},
            {"name": "table_rows", "type": "counter", "value": total_rows, "tags": {"table": table}},
        ],
    }


def read_write_log(path: Path) -> list[dict[str, Any]]:
    """The writes recorded in a write log, in order (missing file: none)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
