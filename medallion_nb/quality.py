"""Declarative data quality checks and their reports.

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
:class:`QualityError` carrying the whole report. The report says passed or FAILED in
words and gives a few failing examples for every kind of check: keys of the failing
rows, or the offending values — never the rows themselves. Routing rows that break
rules to a quarantine table instead of failing is :mod:`medallion_nb.quarantine`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb

from medallion_nb.checkspec import ACTIONS, columns_named, shape_problems
from medallion_nb.errors import QualityError
from medallion_nb.sql import literal, quote_name

if TYPE_CHECKING:
    import pandas as pd

    from medallion_nb.lakehouse import Lakehouse

EXAMPLES = 3  # failing examples shown per check
_OUTCOME = {"fail": "FAILED", "warn": "WARNING", "quarantine": "QUARANTINED"}
_SHOWN_CHARS = 40


@dataclass(frozen=True)
class CheckResult:
    """One check on one column (or expression), with what a failure does (``action``)."""

    check: str
    target: str
    failures: int
    detail: str = ""
    examples: tuple[str, ...] = ()
    action: str = "fail"

    @property
    def ok(self) -> bool:
        return self.failures == 0

    @property
    def rule(self) -> str:
        """The check's name, as a quarantined row's reason: ``not_null quantity``, or a ``sql`` check's label."""
        return self.target if self.check == "sql" else f"{self.check} {self.target}"

    @property
    def outcome(self) -> str:
        """``passed``, or what the failure did: ``FAILED``, ``WARNING`` or ``QUARANTINED``."""
        return "passed" if self.ok else _OUTCOME[self.action]

    def explain(self) -> str:
        """How it failed, in words: failing rows, detail and a few examples ("" when it passed)."""
        if self.ok:
            return ""
        parts = [] if self.check == "row_count" else [f"{self.failures:,} row{'' if self.failures == 1 else 's'}"]
        parts += [self.detail] if self.detail else []
        parts += [f"e.g. {', '.join(self.examples)}"] if self.examples else []
        return "; ".join(parts)

    def __str__(self) -> str:
        why = self.explain()
        return f"{self.outcome:<11} {self.check} {self.target}{': ' + why if why else ''}"


@dataclass(frozen=True)
class QualityReport:
    """The results of every check run on a table (or on rows about to be written to it)."""

    name: str
    rows: int
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """No check whose action is ``fail`` failed (warnings and quarantined rows are allowed)."""
        return not self.failed

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.ok and r.action == "fail")

    @property
    def warnings(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.ok and r.action == "warn")

    @property
    def quarantined(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.ok and r.action == "quarantine")

    def summary(self) -> str:
        """One line: how many checks passed, failed, warned and quarantined rows."""
        passed = sum(r.ok for r in self.results)
        text = f"quality of {self.name} on {self.rows:,} rows: {passed} of {len(self.results)} checks passed"
        for label, found in (("FAILED", self.failed), ("WARNING", self.warnings),
                             ("QUARANTINED rows", self.quarantined)):
            text += f", {len(found)} {label}" if found else ""
        return text

    def __repr__(self) -> str:
        return str(self)

    def __str__(self) -> str:
        return "\n".join([self.summary(), *(f"  {r}" for r in self.results)])

    def _repr_html_(self) -> str:
        # The outcome is a word, in bold when it is not "passed": no colour or emoji needed to read it.
        def outcome(r: CheckResult) -> str:
            return r.outcome if r.ok else f"<b>{r.outcome}</b>"

        rows = "".join(
            f"<tr><td>{outcome(r)}</td><td>{html.escape(r.check)}</td><td>{html.escape(r.target)}</td>"
            f"<td style='text-align:right'>{'' if r.check == 'row_count' else format(r.failures, ',')}</td>"
            f"<td>{html.escape('; '.join(filter(None, [r.detail, ', '.join(r.examples)])))}</td></tr>"
            for r in self.results
        )
        return (f"<p>{html.escape(self.summary())}</p><table><tr><th>result</th><th>check</th><th>target</th>"
                f"<th>failing rows</th><th>examples</th></tr>{rows}</table>")

    def raise_for_failures(self) -> QualityReport:
        """Return the report if no ``fail`` check failed.

        Raises:
            QualityError: a check failed; the message is the full report.
        """
        if not self.ok:
            raise QualityError(str(self), report=self)
        return self


def check_problems(checks: Any, columns: Sequence[str]) -> list[str]:
    """Everything wrong with a checks mapping (unknown kinds, bad shapes, unknown columns), at once."""
    problems = shape_problems(checks)
    if isinstance(checks, Mapping):
        problems += [f"{kind}: no column {col!r} (columns: {', '.join(columns)})"
                     for kind, col in columns_named(checks) if col not in columns]
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


def unique_keys(checks: Mapping[str, Any]) -> list[list[str]]:
    """The column lists of the ``unique`` checks."""
    return [list(item) if isinstance(item, list | tuple) else [item] for item in checks.get("unique", [])]


def evaluate(rel: duckdb.DuckDBPyRelation, groups: Mapping[str, Mapping[str, Any]], *, name: str = "rows",
             key: Sequence[str] = ()) -> QualityReport:
    """Evaluate checks grouped by action (``{"fail": checks, "warn": checks}``) on ``rel``.

    Row-level checks of every group are counted in one scan; only failing checks
    are looked at again, for examples: the keys of a few failing rows (``key``,
    else the first ``unique`` check's columns, else the first other column), or
    the offending values for ``accepted_values`` and ``range``.

    Raises:
        QualityError: a check is malformed or its SQL cannot run.
    """
    problems = [f"{action}: {p}" if len(groups) > 1 else p
                for action, checks in groups.items() for p in check_problems(checks, rel.columns)]
    problems += [f"unknown action {action!r} (known: {', '.join(ACTIONS)})" for action in groups
                 if action not in ACTIONS]
    if problems:
        raise QualityError(f"checks for {name} are invalid:\n" + "\n".join(f"  - {p}" for p in problems))
    conditions = [(action, *cond) for action, checks in groups.items() for cond in row_conditions(checks)]
    selects = ["count(*)"] + [f"count(*) FILTER (WHERE {cond})" for *_, cond in conditions]
    rows, *counts = _query(rel, f"SELECT {', '.join(selects)} FROM _checked", name)[0]
    uniques = [cols for checks in groups.values() for cols in unique_keys(checks)]
    results = []
    for (action, kind, target, cond), failures in zip(conditions, counts, strict=True):
        examples = _examples(rel, kind, target, cond, list(key) or (uniques[:1] or [[]])[0], name) \
            if failures else ()
        results.append(CheckResult(kind, target, failures, examples=examples, action=action))
    for action, checks in groups.items():
        for cols in unique_keys(checks):
            results.append(_unique(rel, cols, action, name))
        if "row_count" in checks:
            low, high = checks["row_count"].get("min"), checks["row_count"].get("max")
            bad = (low is not None and rows < low) or (high is not None and rows > high)
            results.append(CheckResult("row_count", _between(low, high), int(bad), f"has {rows:,} rows" if bad else "",
                                       action=action))
    return QualityReport(name, rows, tuple(results))


def run_checks(lake: Lakehouse, rel: duckdb.DuckDBPyRelation, checks: Mapping[str, Any], *,
               name: str = "rows", fail: bool = True, key: Sequence[str] = ()) -> QualityReport:
    """Evaluate ``checks`` on ``rel``; by default raise if any fails.

    Raises:
        QualityError: a check is malformed, or (with ``fail``) a check failed.
    """
    report = evaluate(rel, {"fail": checks}, name=name, key=key)
    lake.reports.append(report)
    return report.raise_for_failures() if fail else report


def summary_frame(reports: Sequence[QualityReport]) -> pd.DataFrame:
    """One row per check of ``reports``, as a small pandas DataFrame."""
    import pandas as pd

    columns = ["table", "action", "check", "target", "result", "failing rows", "examples"]
    return pd.DataFrame([(rep.name, r.action, r.check, r.target, r.outcome, r.failures,
                          "; ".join(filter(None, [r.detail, ", ".join(r.examples)])))
                         for rep in reports for r in rep.results], columns=columns)


def _query(rel: duckdb.DuckDBPyRelation, sql: str, name: str) -> list[tuple]:
    try:
        return rel.query("_checked", sql).fetchall()
    except duckdb.Error as exc:
        raise QualityError(f"checks for {name} could not run: {exc}") from exc


def _examples(rel: duckdb.DuckDBPyRelation, kind: str, target: str, cond: str, key: list[str],
              name: str) -> tuple[str, ...]:
    if kind in ("accepted_values", "range"):
        # The offending values themselves, the most frequent first.
        col = quote_name(target)
        found = _query(rel, f"SELECT {col}, count(*) AS n FROM _checked WHERE {cond} "
                            f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {EXAMPLES}", name)
        return tuple(_show(value) + (f" ({n:,} rows)" if n > 1 else "") for value, n in found)
    # A row's key says which row to look at; a not-null column's value says nothing.
    key = [c for c in key if c != target] or [c for c in rel.columns if c != target][:1]
    if not key:
        return ()
    found = _query(rel, f"SELECT {', '.join(quote_name(c) for c in key)} FROM _checked WHERE {cond} "
                        f"LIMIT {EXAMPLES}", name)
    label = key[0] if len(key) == 1 else f"({', '.join(key)})"
    return tuple(f"{label}={_show_key(row)}" for row in found)


def _unique(rel: duckdb.DuckDBPyRelation, cols: list[str], action: str, name: str) -> CheckResult:
    key = ", ".join(quote_name(c) for c in cols)
    # Grouping millions of text keys holds each of them in a hash table; their 64-bit hashes
    # are smaller and faster to group. Only rows whose hash occurs twice are grouped by the
    # key itself, so a hash collision costs a little time, never a wrong count.
    failures, groups = _query(rel, f"""
        WITH _twice AS (SELECT hash({key}) AS _h FROM _checked GROUP BY 1 HAVING count(*) > 1)
        SELECT coalesce(sum(n), 0), count(*) FROM (
            SELECT count(*) AS n FROM _checked SEMI JOIN _twice ON hash({key}) = _twice._h
            GROUP BY {key} HAVING count(*) > 1)""", name)[0]
    examples: tuple[str, ...] = ()
    if failures:
        dupes = _query(rel, f"SELECT {key}, count(*) AS n FROM _checked GROUP BY {key} HAVING count(*) > 1 "
                            f"ORDER BY n DESC LIMIT {EXAMPLES}", name)
        examples = tuple(f"{_show_key(row[:-1])} ({row[-1]:,} rows)" for row in dupes)
    detail = f"{groups:,} duplicated key{'' if groups == 1 else 's'}" if failures else ""
    return CheckResult("unique", ", ".join(cols), int(failures), detail, examples, action)


def _between(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f"at least {low}" if low is not None else f"at most {high}"


def _show_key(row: Sequence[Any]) -> str:
    return _show(row[0]) if len(row) == 1 else "(" + ", ".join(_show(v) for v in row) + ")"


def _show(value: Any) -> str:
    """One value as a short text: strings quoted, long ones cut, NULL for a missing value."""
    if value is None:
        return "NULL"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS - 3] + "..."
