"""Declarative data quality checks and quarantine of bad rows.

Checks are a plain mapping, so they read well in a notebook::

    lake.check("silver.orders", {
        "not_null": ["order_id", "customer_id"],
        "unique": ["order_id"],
        "accepted_values": {"status": ["placed", "shipped", "delivered", "cancelled"]},
        "range": {"quantity": {"min": 1, "max": 1000}},
        "row_count": {"min": 1},
        "sql": {"shipped after ordered": "shipped_at IS NULL OR shipped_at >= ordered_at"},
    })

Every check is evaluated (one scan for the row-level ones), and a failure raises
:class:`QualityError` carrying the whole report. ``split`` routes rows that break
named rules to a quarantine relation with the reasons, instead of failing.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb

from medallion_nb.errors import QualityError
from medallion_nb.sql import literal, quote_name

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

CHECK_KINDS = ("not_null", "unique", "accepted_values", "range", "row_count", "sql")
REASON_COLUMN = "_quarantine_reason"


@dataclass(frozen=True)
class CheckResult:
    """One check on one column (or expression)."""

    check: str
    target: str
    failures: int
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.failures == 0


@dataclass(frozen=True)
class QualityReport:
    """The results of every check run on a table."""

    name: str
    rows: int
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    def __repr__(self) -> str:
        return str(self)

    def __str__(self) -> str:
        head = f"quality of {self.name}: {len(self.results) - len(self.failed)}/{len(self.results)} checks passed"
        lines = [head + f" on {self.rows:,} rows"]
        for r in self.results:
            mark = "ok  " if r.ok else "FAIL"
            extra = f" ({r.failures:,} rows{'; ' + r.detail if r.detail else ''})" if not r.ok else ""
            lines.append(f"  {mark} {r.check} {r.target}{extra}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{'✅' if r.ok else '❌'}</td><td>{html.escape(r.check)}</td>"
            f"<td>{html.escape(r.target)}</td><td style='text-align:right'>{r.failures:,}</td>"
            f"<td>{html.escape(r.detail)}</td></tr>"
            for r in self.results
        )
        return (f"<b>Quality of {html.escape(self.name)}</b> — {self.rows:,} rows, "
                f"{len(self.failed)} failed check(s)<table><tr><th></th><th>check</th><th>target</th>"
                f"<th>failing rows</th><th>detail</th></tr>{rows}</table>")

    def raise_for_failures(self) -> QualityReport:
        """Return the report if every check passed.

        Raises:
            QualityError: a check failed; the message is the full report.
        """
        if not self.ok:
            raise QualityError(str(self), report=self)
        return self


def _problems(checks: Mapping[str, Any], columns: Sequence[str]) -> list[str]:
    problems = [f"unknown check {kind!r} (known: {', '.join(CHECK_KINDS)})" for kind in checks
                if kind not in CHECK_KINDS]
    named: list[tuple[str, str]] = []
    for kind in ("not_null", "unique"):
        for item in checks.get(kind, []):
            for col in (item if isinstance(item, list | tuple) else [item]):
                named.append((kind, col))
    for kind in ("accepted_values", "range"):
        named.extend((kind, col) for col in checks.get(kind, {}))
    problems += [f"{kind}: no column {col!r} (columns: {', '.join(columns)})"
                 for kind, col in named if col not in columns]
    return problems


def row_conditions(checks: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(check, target, SQL condition true for a failing row)`` for every row-level check."""
    out = []
    for col in checks.get("not_null", []):
        out.append(("not_null", col, f"{quote_name(col)} IS NULL"))
    for col, values in checks.get("accepted_values", {}).items():
        allowed = ", ".join(literal(v) for v in values)
        out.append(("accepted_values", col, f"{quote_name(col)} IS NOT NULL AND {quote_name(col)} NOT IN ({allowed})"))
    for col, bounds in checks.get("range", {}).items():
        parts = []
        if bounds.get("min") is not None:
            parts.append(f"{quote_name(col)} < {literal(bounds['min'])}")
        if bounds.get("max") is not None:
            parts.append(f"{quote_name(col)} > {literal(bounds['max'])}")
        if parts:
            out.append(("range", col, " OR ".join(parts)))
    for label, expr in checks.get("sql", {}).items():
        out.append(("sql", label, f"NOT coalesce(({expr}), FALSE)"))
    return out


def run_checks(lake: Lakehouse, rel: duckdb.DuckDBPyRelation, checks: Mapping[str, Any], *,
               name: str = "rows", fail: bool = True) -> QualityReport:
    """Evaluate ``checks`` on ``rel``; by default raise if any fails.

    Raises:
        QualityError: a check is malformed, or (with ``fail``) a check failed.
    """
    problems = _problems(checks, rel.columns)
    if problems:
        raise QualityError(f"checks for {name} are invalid:\n" + "\n".join(f"  - {p}" for p in problems))
    conditions = row_conditions(checks)
    selects = ["count(*)"] + [f"count(*) FILTER (WHERE {cond})" for _, _, cond in conditions]
    try:
        counts = rel.query("_checked", f"SELECT {', '.join(selects)} FROM _checked").fetchall()[0]
    except duckdb.Error as exc:
        raise QualityError(f"checks for {name} could not run: {exc}") from exc
    rows = counts[0]
    results = [CheckResult(kind, target, n) for (kind, target, _), n in zip(conditions, counts[1:], strict=True)]
    for item in checks.get("unique", []):
        cols = list(item) if isinstance(item, list | tuple) else [item]
        key = ", ".join(quote_name(c) for c in cols)
        dupes = rel.query("_checked", f"SELECT {key}, count(*) AS n FROM _checked GROUP BY ALL "
                                      f"HAVING count(*) > 1 ORDER BY n DESC").fetchall()
        sample = ", ".join(str(d[0] if len(cols) == 1 else d[:-1]) for d in dupes[:3])
        results.append(CheckResult("unique", ", ".join(cols), sum(d[-1] for d in dupes),
                                   f"e.g. {sample}" if dupes else ""))
    if "row_count" in checks:
        low, high = checks["row_count"].get("min"), checks["row_count"].get("max")
        bad = (low is not None and rows < low) or (high is not None and rows > high)
        results.append(CheckResult("row_count", f"between {low} and {high}", int(bad),
                                   f"has {rows:,} rows" if bad else ""))
    report = QualityReport(name, rows, tuple(results))
    return report.raise_for_failures() if fail else report


@dataclass(frozen=True)
class Split:
    """Rows that passed the rules, and rows that did not with the reasons why."""

    all: duckdb.DuckDBPyRelation
    columns: tuple[str, ...]

    @property
    def good(self) -> duckdb.DuckDBPyRelation:
        """The rows that broke no rule, with the input's columns."""
        return self.all.filter(f"{REASON_COLUMN} IS NULL").project(", ".join(quote_name(c) for c in self.columns))

    @property
    def bad(self) -> duckdb.DuckDBPyRelation:
        """The rows that broke a rule, with ``_quarantine_reason``."""
        return self.all.filter(f"{REASON_COLUMN} IS NOT NULL")

    def over(self, tagged: duckdb.DuckDBPyRelation) -> Split:
        """The same split over an already tagged (e.g. materialised) relation."""
        return Split(tagged, self.columns)

    def counts(self) -> dict[str, int]:
        """Rows per quarantine reason, plus ``passed``."""
        sql = f"SELECT coalesce({REASON_COLUMN}, 'passed'), count(*) FROM _t GROUP BY 1"
        rows = self.all.query("_t", sql).fetchall()
        return dict(sorted(rows, key=lambda r: (r[0] != "passed", r[0])))


def split(rel: duckdb.DuckDBPyRelation, rules: Mapping[str, str]) -> Split:
    """Divide rows by named rules; each rule is SQL that is true for a *bad* row.

    ``bad`` has every column plus ``_quarantine_reason`` listing the rules a row
    broke ("; "-separated); ``good`` has the rows that broke none. Both are lazy.
    """
    if not rules:
        raise QualityError("split needs at least one rule: {reason: SQL true for a bad row}")
    flags = [f"CASE WHEN coalesce(({cond}), FALSE) THEN {literal(reason)} END" for reason, cond in rules.items()]
    reason = f"concat_ws('; ', {', '.join(flags)})"
    tagged = rel.query("_rows", f"SELECT *, nullif({reason}, '') AS {REASON_COLUMN} FROM _rows")
    return Split(tagged, tuple(rel.columns))
