"""What an ingestion did, per source and per file: shown in the notebook, logged for the run record."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medallion_nb.storage import WriteResult

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class FileReport:
    """The accounting of one file: every data line was loaded or rejected.

    ``lines`` counts the file's records (its non-blank lines after the header;
    a quoted value spanning lines is one record). ``loaded + rejected == lines``
    holds for every file that was read.
    """

    file: str
    lines: int
    loaded: int
    rejected: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "lines": self.lines, "loaded": self.loaded,
                               "rejected": self.rejected}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class IngestResult:
    """What one source's ingestion did."""

    source: str
    table: str
    mode: str
    new_files: tuple[str, ...]
    rows: int
    not_yet_due: tuple[str, ...] = ()
    write: WriteResult | None = None
    notes: tuple[str, ...] = field(default=())
    files: tuple[FileReport, ...] = ()
    rejected: int = 0
    warnings: tuple[str, ...] = ()
    rejects_table: str | None = None
    # Database sources: what was read, e.g. "from postgres table public.orders (updated_at <= ...)".
    read: str | None = None

    def __repr__(self) -> str:
        return f"<IngestResult {self}>"

    def __str__(self) -> str:
        if self.read is not None:
            text = f"{self.table}: {self.rows:,} rows {self.read}" if self.new_files else f"{self.table}: {self.read}"
        elif not self.new_files:
            text = f"{self.table}: nothing new ({self.source})"
        else:
            text = f"{self.table}: {self.rows:,} rows from {len(self.new_files)} new file(s)"
            if self.rejected:
                text += f", {self.rejected:,} rejected (see {self.rejects_table})"
        return "\n".join([text, *(f"  warning: {w}" for w in self.warnings), *(f"  note: {n}" for n in self.notes)])

    def to_log(self, run_id: str) -> dict[str, Any]:
        """The write-log line of this ingestion (``kind: ingest``), read into the run record."""
        return {"kind": "ingest", "source": self.source, "table": self.table, "run_id": run_id,
                "rows": self.rows, "rejected": self.rejected, "rejects_table": self.rejects_table,
                "files": [f.to_dict() for f in self.files], "warnings": list(self.warnings),
                "notes": list(self.notes), **({"read": self.read} if self.read is not None else {})}


class IngestReport(list):
    """The results of one ingestion run, one per source; shows as tables in a notebook."""

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self)

    @property
    def rejected(self) -> int:
        return sum(r.rejected for r in self)

    @property
    def warnings(self) -> list[str]:
        return [f"{r.source}: {w}" for r in self for w in r.warnings]

    def files(self) -> pd.DataFrame:
        """Per file: source, lines, rows loaded, rows rejected and a note, as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame([{"source": r.source, **f.to_dict()} for r in self for f in r.files],
                            columns=["source", "file", "lines", "loaded", "rejected", "note"])

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        def cell(value: Any, right: bool = False) -> str:
            style = " style='text-align:right'" if right else ""
            return f"<td{style}>{html.escape(str(value))}</td>"

        def num(value: int | None) -> str:
            return cell("" if value is None else f"{value:,}", right=True)

        rows = "".join(
            f"<tr>{cell(r.table)}{cell(r.mode)}{num(len(r.new_files))}{num(r.rows)}{num(r.rejected)}"
            f"{num(r.write.total_rows if r.write else None)}"
            f"{cell(', '.join(r.not_yet_due[:3]) + (' ...' if len(r.not_yet_due) > 3 else ''))}</tr>"
            for r in self
        )
        out = ["<table><tr><th>table</th><th>mode</th><th>new files</th><th>rows loaded</th>"
               f"<th>rows rejected</th><th>rows in table</th><th>not due yet (after run_date)</th></tr>{rows}</table>"]
        for r in self:
            for w in r.warnings:
                out.append(f"<p style='color:#b45309'><b>warning</b> ({html.escape(r.source)}): {html.escape(w)}</p>")
            for n in r.notes:
                out.append(f"<p><b>note</b> ({html.escape(r.source)}): {html.escape(n)}</p>")
        files = [(r.source, f) for r in self for f in r.files]
        if files:
            body = "".join(f"<tr>{cell(s)}{cell(f.file)}{num(f.lines)}{num(f.loaded)}{num(f.rejected)}"
                           f"{cell(f.note)}</tr>" for s, f in files)
            flagged = sum(1 for _, f in files if f.rejected or f.note)
            summary = f"{len(files)} file(s) read, every line accounted for" + (
                f"; {flagged} with rejects or notes" if flagged else "")
            out.append(f"<details{' open' if flagged or len(files) <= 20 else ''}><summary>{html.escape(summary)}"
                       "</summary><table><tr><th>source</th><th>file</th><th>data lines</th><th>loaded</th>"
                       f"<th>rejected</th><th>note</th></tr>{body}</table></details>")
        return "".join(out)
