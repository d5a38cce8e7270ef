"""Declarative quality checks and quarantine."""

from __future__ import annotations

from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import QualityError
from medallion_nb.quality import REASON_COLUMN
from tests.conftest import write_project

DATA = """
SELECT * FROM (VALUES
    (1, 'placed',  2,    'a'),
    (2, 'shipped', NULL, 'b'),
    (2, 'lost',    5,    'c'),
    (4, 'placed',  -1,   NULL)
) t(id, status, qty, code)
"""


@pytest.fixture
def lake(tmp_path: Path):
    root = write_project(tmp_path / "p", "name: p\nlayers: [{name: silver, notebook: nb.ipynb}]\n",
                         {"nb.ipynb": "{}"})
    with mnb.connect(root) as handle:
        handle.write("silver.orders", DATA)
        yield handle


def test_passing_checks_return_the_report(lake):
    report = lake.check("silver.orders", {"not_null": ["id"], "row_count": {"min": 1, "max": 10}})
    assert report.ok
    assert report.rows == 4
    assert "2/2 checks passed on 4 rows" in str(report)


def test_failures_are_all_reported_at_once(lake):
    with pytest.raises(QualityError) as info:
        lake.check("silver.orders", {
            "not_null": ["qty", "code", "id"],
            "unique": ["id"],
            "accepted_values": {"status": ["placed", "shipped"]},
            "range": {"qty": {"min": 1}},
            "row_count": {"min": 5},
            "sql": {"codes are lower case": "code = lower(code)"},
        }, name="silver.orders")
    report = info.value.report
    failed = {(r.check, r.target): r.failures for r in report.failed}
    assert failed == {
        ("not_null", "qty"): 1,
        ("not_null", "code"): 1,
        ("unique", "id"): 2,
        ("accepted_values", "status"): 1,
        ("range", "qty"): 1,
        ("row_count", "between 5 and None"): 1,
        ("sql", "codes are lower case"): 1,
    }
    text = str(info.value)
    assert "FAIL unique id (2 rows; e.g. 2)" in text
    assert "ok   not_null id" in text
    assert "<table>" in report._repr_html_()


def test_warn_only_mode_returns_a_failing_report(lake):
    report = lake.check("silver.orders", {"not_null": ["qty"]}, fail=False)
    assert not report.ok


def test_malformed_checks_are_refused_with_names(lake):
    with pytest.raises(QualityError, match=r"unknown check 'not_nul'"):
        lake.check("silver.orders", {"not_nul": ["id"]})
    with pytest.raises(QualityError, match=r"not_null: no column 'qyt' \(columns: id, status, qty, code\)"):
        lake.check("silver.orders", {"not_null": ["qyt"]})
    with pytest.raises(QualityError, match="could not run"):
        lake.check("silver.orders", {"sql": {"broken": "no_such_column > 1"}})


def test_split_quarantines_bad_rows_with_every_reason(lake):
    checked = lake.split("SELECT * FROM silver.orders", {
        "missing qty": "qty IS NULL",
        "negative qty": "qty < 0",
        "unknown status": "status NOT IN ('placed', 'shipped')",
        "missing code": "code IS NULL",
    })
    assert checked.good.fetchall() == [(1, "placed", 2, "a")]
    assert checked.good.columns == ["id", "status", "qty", "code"]
    bad = [(row[0], row[-1]) for row in checked.bad.order("id, status").fetchall()]
    assert checked.bad.columns[-1] == REASON_COLUMN
    assert bad == [(2, "unknown status"), (2, "missing qty"), (4, "negative qty; missing code")]
    assert checked.counts() == {"passed": 1, "missing qty": 1, "negative qty; missing code": 1, "unknown status": 1}
    # Every input row lands on exactly one side.
    assert len(checked.good.fetchall()) + len(checked.bad.fetchall()) == 4
