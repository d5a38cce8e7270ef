"""Expectations: rows are checked before they are committed (write, audit, publish).

``lake.write(name, rows, expect={...})`` groups checks (the same mapping as
:func:`medallion_nb.quality.run_checks`) by what a failure does::

    lake.write("silver.order_lines", rows, expect={
        "fail": {"not_null": ["order_id"], "unique": ["order_id"], "row_count": {"min": 1}},
        "quarantine": {"range": {"quantity": {"min": 1}}, "sql": {"known product": "product_name IS NOT NULL"}},
        "warn": {"accepted_values": {"channel": ["web", "app", "store"]}},
    })

- ``quarantine``: rows that break a rule go to the quarantine table
  (``<layer>.<table>_quarantine`` unless named) with ``_quarantine_reason`` naming
  the rules; the other rows are written.
- ``fail``: checked on the rows that would be written; if one fails, nothing is
  committed (neither the table nor its quarantine), the table keeps its previous
  version, and :class:`~medallion_nb.errors.ExpectationError` carries the report.
- ``warn``: checked the same way; a failure is reported, and the rows are written.

The rows are staged once, audited, then committed or thrown away: a failed check
never becomes a table's current version. The report is on the returned result
(``result.report``) and in the run's write log.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import duckdb

from medallion_nb.checkspec import ACTIONS, columns_named, expect_problems
from medallion_nb.errors import ExpectationError, LakeError, QualityError
from medallion_nb.lock import commit_guard
from medallion_nb.quality import (
    REASON_COLUMN,
    CheckResult,
    QualityReport,
    evaluate,
    row_conditions,
    unique_keys,
)
from medallion_nb.reporting import report_expectations
from medallion_nb.sql import literal, quote_name
from medallion_nb.storage import WriteResult

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

QUARANTINE_SUFFIX = "_quarantine"


@dataclass(frozen=True)
class CheckedWrite(WriteResult):
    """A write whose rows were audited first: the write, its quality report and its quarantine write."""

    report: QualityReport | None = None
    quarantine: WriteResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_dict().items() if k not in ("report", "quarantine")}

    def __str__(self) -> str:
        lines = [super().__str__()]
        lines += [str(self.quarantine)] if self.quarantine else []
        lines += [str(self.report)] if self.report else []
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        head = f"<p><b>{html.escape(WriteResult.__str__(self))}</b></p>"
        if self.quarantine:
            head += f"<p>{html.escape(str(self.quarantine))}</p>"
        return head + (self.report._repr_html_() if self.report else "")


def parse_expect(expect: Any, name: str, columns: Sequence[str]) -> dict[str, Mapping[str, Any]]:
    """The checks of ``expect`` by action, validated against the rows' columns (every problem at once).

    Raises:
        QualityError: an unknown action or check, a bad shape, an unknown column, or a
            ``row_count`` asked to quarantine rows.
    """
    problems = expect_problems(expect)
    if problems and (not isinstance(expect, Mapping) or not expect):
        raise QualityError(f"write to {name}: expect must map actions ({', '.join(ACTIONS)}) to checks, "
                           f"got {expect!r}")
    for action, checks in expect.items():
        if action in ACTIONS and isinstance(checks, Mapping):
            problems += [f"{action}: {kind}: no column {col!r} (columns: {', '.join(columns)})"
                         for kind, col in columns_named(checks) if col not in columns]
    if problems:
        raise QualityError(f"expectations for {name} are invalid:\n" + "\n".join(f"  - {p}" for p in problems))
    return {action: expect[action] for action in ACTIONS if action in expect}


def quarantine_rules(checks: Mapping[str, Any]) -> dict[str, str]:
    """``{rule name: SQL true for a row to quarantine}`` for the checks of the ``quarantine`` action."""
    rules = {CheckResult(kind, target, 1).rule: cond for kind, target, cond in row_conditions(checks)}
    for cols in unique_keys(checks):
        key = ", ".join(quote_name(c) for c in cols)
        rules[CheckResult("unique", ", ".join(cols), 1).rule] = f"count(*) OVER (PARTITION BY {key}) > 1"
    return rules


def quarantine_table(name: str, quarantine: str | None) -> str:
    """Where the quarantined rows of ``name`` go: ``quarantine``, or ``<layer>.<table>_quarantine``."""
    return quarantine or name + QUARANTINE_SUFFIX


def tag(rel: duckdb.DuckDBPyRelation, rules: Mapping[str, str]) -> duckdb.DuckDBPyRelation:
    """``rel`` plus ``_quarantine_reason``: the rules a row breaks, "; "-separated, NULL for a good row."""
    if not rules:
        return rel.query("_rows", f"SELECT *, CAST(NULL AS VARCHAR) AS {REASON_COLUMN} FROM _rows")
    flags = ", ".join(f"CASE WHEN coalesce(({cond}), FALSE) THEN {literal(rule)} END" for rule, cond in rules.items())
    return rel.query("_rows", f"SELECT *, nullif(concat_ws('; ', {flags}), '') AS {REASON_COLUMN} FROM _rows")


def audit(good: duckdb.DuckDBPyRelation, bad: duckdb.DuckDBPyRelation | None, groups: Mapping[str, Mapping[str, Any]],
          *, name: str, rows: int, key: Sequence[str] = ()) -> QualityReport:
    """The report on rows about to be written: quarantine rules counted on the quarantined rows,
    ``fail`` and ``warn`` checks on the rows that would be committed.

    Raises:
        QualityError: a check's SQL cannot run.
    """
    results: list[CheckResult] = []
    checked = {a: c for a, c in groups.items() if a != "quarantine"}
    if checked:
        results += evaluate(good, checked, name=name, key=key).results
    if "quarantine" in groups and bad is not None:
        # A quarantined row breaks at least one rule, so counting each rule on the quarantined
        # rows alone gives the same numbers as on all rows (and examples from far fewer).
        found = evaluate(bad.project(f"* EXCLUDE ({REASON_COLUMN})"), {"quarantine": groups["quarantine"]},
                         name=name, key=key)
        results += found.results
    order = {action: i for i, action in enumerate(ACTIONS)}
    return QualityReport(name, rows, tuple(sorted(results, key=lambda r: order[r.action])))


def write_expected(lake: Lakehouse, name: str, rel: duckdb.DuckDBPyRelation, expect: Any, *, mode: str,
                   key: Sequence[str], metadata: Mapping[str, str] | None, quarantine: str | None,
                   report_key: Sequence[str] = (), options: Mapping[str, Any] | None = None) -> CheckedWrite:
    """Stage ``rel``, audit it against ``expect``, then commit it (and its quarantine) or nothing.

    Raises:
        ExpectationError: a ``fail`` expectation failed; nothing was committed.
        QualityError: the expectations are malformed.
        LakeError: the rows cannot be computed, or a commit failed.
    """
    groups = parse_expect(expect, name, rel.columns)
    bad_name = quarantine_table(name, quarantine) if "quarantine" in groups else None
    if bad_name:
        lake._split(bad_name)
    temp = _stage(lake, tag(rel, quarantine_rules(groups.get("quarantine", {}))), name)
    try:
        staged = lake.con.table(temp)
        good = staged.filter(f"{REASON_COLUMN} IS NULL").project(", ".join(quote_name(c) for c in rel.columns))
        bad = staged.filter(f"{REASON_COLUMN} IS NOT NULL") if bad_name else None
        total = staged.aggregate("count(*)").fetchall()[0][0]
        report = audit(good, bad, groups, name=name, rows=total, key=report_key or key)
        lake.reports.append(report)
        if not report.ok:
            report_expectations(report, run_id=lake.run_id, committed=False)
            version = _current_version(lake, name)
            kept = f"the table stays at version {version}" if version is not None else "the table was not created"
            raise ExpectationError(
                f"write to {name}: {len(report.failed)} expectation(s) failed; nothing was committed, {kept}\n"
                f"{report}", report=report)
        with commit_guard(lake):
            bad_result = None
            if bad_name and bad is not None:
                bad_mode = "replace" if mode == "replace" else "append"
                if bad_mode == "replace" or report.quarantined or not lake.exists(bad_name):
                    bad_result = lake._write_rows(bad_name, lake._storable(bad, bad_name), mode=bad_mode, keys=(),
                                                  metadata=None)
            result = lake._write_rows(name, good, mode=mode, keys=tuple(key), metadata=metadata, **(options or {}))
        report_expectations(report, run_id=lake.run_id, committed=True)
    finally:
        lake.con.execute(f"DROP TABLE IF EXISTS {temp}")
    values = {f.name: getattr(result, f.name) for f in fields(WriteResult)}
    return CheckedWrite(**values, report=report, quarantine=bad_result)


def _stage(lake: Lakehouse, tagged: duckdb.DuckDBPyRelation, name: str) -> str:
    """Compute the tagged rows once into a temporary table (DuckDB spills it to disk when memory is short)."""
    lake._expect_stages = getattr(lake, "_expect_stages", 0) + 1
    temp = f"__expect_{lake._expect_stages}"
    try:
        tagged.create(temp)
    except duckdb.Error as exc:
        raise LakeError(f"write to {name} failed; the table is unchanged: {exc}") from exc
    return temp


def _current_version(lake: Lakehouse, name: str) -> int | None:
    layer, table = lake._split(name)
    return lake.store.snapshot(layer, table).version if lake.store.exists(layer, table) else None
