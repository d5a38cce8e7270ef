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

The rows are staged once (DuckDB writes them as Parquet; with ``quarantine`` both
sides, see :func:`medallion_nb.quarantine.staged_split`), audited on the staged files, then committed or
thrown away: a failed check never becomes a table's current version. The report
is on the returned result (``result.report``) and in the run's write log.
``lake.write_split`` (:func:`write_split`) audits its ``good`` rows the same way
before either side is committed; the quarantine mechanics (rules, staging
both sides) are in :mod:`medallion_nb.quarantine`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import duckdb

from medallion_nb.checkspec import ACTIONS, columns_named, expect_problems, merge_expect
from medallion_nb.errors import ExpectationError, LakeError, QualityError
from medallion_nb.lock import commit_guard
from medallion_nb.names import WRITE_MODES
from medallion_nb.quality import CheckResult, QualityReport, evaluate
from medallion_nb.quarantine import REASON_COLUMN, SplitResult, quarantine_rules, quarantine_table, staged_split
from medallion_nb.reporting import report_expectations
from medallion_nb.storage import WriteResult

if TYPE_CHECKING:
    from medallion_nb.lakehouse import Lakehouse

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


def expectations_for(lake: Lakehouse, name: str, expect: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A write's own expectations combined with those medallion.yaml declares for ``name`` (None: none)."""
    declared = lake.project.expectations.get(name)
    if expect is None and not declared:
        return None
    return merge_expect(declared, expect) if declared else expect


def audit_staged(lake: Lakehouse, name: str, expect: Any, good: duckdb.DuckDBPyRelation, *, rows: int,
                 bad: duckdb.DuckDBPyRelation | None = None, key: Sequence[str] = ()) -> QualityReport:
    """Audit staged rows: the report if no ``fail`` expectation failed.

    Raises:
        ExpectationError: a ``fail`` expectation failed (the caller commits nothing).
        QualityError: the expectations are malformed.
    """
    groups = parse_expect(expect, name, good.columns)
    report = audit(good, bad, groups, name=name, rows=rows, key=key)
    lake.reports.append(report)
    if not report.ok:
        report_expectations(report, run_id=lake.run_id, committed=False)
        version = _current_version(lake, name)
        kept = f"the table stays at version {version}" if version is not None else "the table was not created"
        raise ExpectationError(f"write to {name}: {len(report.failed)} expectation(s) failed; nothing was "
                               f"committed, {kept}\n{report}", report=report)
    return report


def write_expected(lake: Lakehouse, name: str, rel: duckdb.DuckDBPyRelation, expect: Any, *, mode: str,
                   key: Sequence[str], metadata: Mapping[str, str] | None, quarantine: str | None,
                   options: Mapping[str, Any] | None = None, once: bool = False) -> CheckedWrite:
    """Stage ``rel``, audit it against ``expect``, then commit it (and its quarantine) or nothing.

    Raises:
        ExpectationError: a ``fail`` expectation failed; nothing was committed.
        QualityError: the expectations are malformed.
        LakeError: the rows cannot be computed, or a commit failed.
    """
    groups = parse_expect(expect, name, rel.columns)
    if "quarantine" not in groups:
        with lake.stage(name, rel, mode=mode, key=key or None, **(options or {})) as staged:
            report = audit_staged(lake, name, groups, staged.relation, rows=staged.rows, key=key)
            result = staged.commit(metadata)
        report_expectations(report, run_id=lake.run_id, committed=True)
        return _checked(result, report, None)
    bad_name = quarantine_table(name, quarantine)
    rules = quarantine_rules(groups["quarantine"])
    with staged_split(lake, rel, rules, good=name, bad=bad_name, mode=mode, keys=key,
                      good_options=options, once=once) as (good, bad, _counts):
        report = audit_staged(lake, name, groups, good.relation, rows=good.rows + bad.rows, bad=bad.relation,
                              key=key)
        with commit_guard(lake):
            result = good.commit(metadata)
            # An append that quarantined nothing leaves an existing quarantine table alone.
            keep = mode == "replace" or bad.rows or not lake.exists(bad_name)
            bad_result = bad.commit() if keep else None
    report_expectations(report, run_id=lake.run_id, committed=True)
    return _checked(result, report, bad_result)


def write_split(lake: Lakehouse, rel: duckdb.DuckDBPyRelation, rules: Mapping[str, str], *, good: str, bad: str,
                good_columns: str = "*", bad_columns: str = "*", mode: str = "replace",
                key: str | Sequence[str] | None = None, expect: Mapping[str, Any] | None = None,
                where: str | None = None, partition_by: str | Sequence[str] | None = None,
                once: bool = False) -> SplitResult:
    """Write the rows of ``rel`` that break no rule to ``good``, the others to ``bad``.

    Each rule is SQL that is true for a row that must be quarantined (as in
    :func:`medallion_nb.quarantine.split`). ``good_columns`` and ``bad_columns``
    are the select lists written to each table; ``bad_columns`` can name
    ``_quarantine_reason`` (the rules a row broke, "; "-separated).

    With ``mode="merge"`` both tables are merged by ``key``, and a key that lands on
    one side is deleted from the other: a row re-delivered with a fix leaves the
    quarantine, a row that went bad leaves the good table, and neither keeps a stale copy.
    With ``mode="replace_where"`` both tables replace the rows matching ``where`` (the keys
    a run recomputed): a row now on one side is gone from the other, and a row that no
    longer exists is gone from both. ``partition_by`` partitions ``good`` (when it is
    created or replaced). ``once``: the rows can be read only once (an Arrow stream);
    otherwise DuckDB reads them twice (see :func:`medallion_nb.quarantine.staged_split`).

    ``expect`` (``fail`` / ``warn`` checks, plus those declared for ``good`` in
    medallion.yaml) is evaluated on the staged ``good`` rows before anything is
    committed: a failing ``fail`` check commits neither table.

    Raises:
        LakeError: a bad table name, mode or key, a projection DuckDB rejects, or a
            failed write (a table whose commit failed is unchanged).
        ExpectationError: a ``fail`` expectation failed; nothing was committed.
    """
    if mode not in WRITE_MODES:
        raise LakeError(f"write_split to {good} and {bad}: mode {mode!r} is not one of {', '.join(WRITE_MODES)}")
    keys = (key,) if isinstance(key, str) else tuple(key or ())
    groups = expectations_for(lake, good, expect)
    if groups and "quarantine" in groups:
        raise QualityError(f"write_split to {good}: quarantine rows with the split's rules; "
                           "its expectations take fail and warn")
    if mode == "replace_where" and not where:
        raise LakeError(f"write_split to {good} and {bad}: mode replace_where needs where=... (the rows to replace)")
    options = {"partition_by": (partition_by,) if isinstance(partition_by, str) else tuple(partition_by)} \
        if partition_by is not None else None
    with staged_split(lake, rel, rules, good=good, bad=bad, good_columns=good_columns, bad_columns=bad_columns,
                      mode=mode, keys=keys, where=where, good_options=options,
                      once=once) as (good_staged, bad_staged, counts):
        report = audit_staged(lake, good, groups, good_staged.relation, rows=good_staged.rows, key=keys) \
            if groups else None
        with commit_guard(lake):
            good_result = good_staged.commit()
            bad_result = bad_staged.commit()
    if report is not None:
        report_expectations(report, run_id=lake.run_id, committed=True)
    ordered = dict(sorted(counts.items(), key=lambda item: (item[0] != "passed", -item[1], item[0])))
    return SplitResult(good_result, bad_result, ordered, report)


def _checked(result: WriteResult, report: QualityReport, quarantined: WriteResult | None) -> CheckedWrite:
    values = {f.name: getattr(result, f.name) for f in fields(WriteResult)}
    return CheckedWrite(**values, report=report, quarantine=quarantined)


def _current_version(lake: Lakehouse, name: str) -> int | None:
    layer, table = lake.split_name(name)
    return lake.store.snapshot(layer, table).version if lake.store.exists(layer, table) else None
