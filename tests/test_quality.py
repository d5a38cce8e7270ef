"""Declarative quality checks and quarantine."""

from __future__ import annotations

from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import QualityError
from medallion_nb.quarantine import REASON_COLUMN
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
    assert str(report) == ("quality of silver.orders on 4 rows: 2 of 2 checks passed\n"
                           "  passed      not_null id\n"
                           "  passed      row_count between 1 and 10")


def test_failures_are_all_reported_at_once_with_examples_for_every_kind(lake):
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
    failed = {(r.check, r.target): (r.failures, r.examples) for r in report.failed}
    assert failed == {
        ("not_null", "qty"): (1, ("id=2",)),           # the key of the failing row, not its (null) value
        ("not_null", "code"): (1, ("id=4",)),
        ("unique", "id"): (2, ("2 (2 rows)",)),
        ("accepted_values", "status"): (1, ("'lost'",)),  # the value that is not accepted
        ("range", "qty"): (1, ("-1",)),
        ("row_count", "at least 5"): (1, ()),
        ("sql", "codes are lower case"): (1, ("id=4",)),
    }
    text = str(info.value)
    assert text.splitlines()[0] == "quality of silver.orders on 4 rows: 1 of 8 checks passed, 7 FAILED"
    assert "  FAILED      unique id: 2 rows; 1 duplicated key; e.g. 2 (2 rows)" in text
    assert "  FAILED      accepted_values status: 1 row; e.g. 'lost'" in text
    assert "  FAILED      row_count at least 5: has 4 rows" in text
    assert "  passed      not_null id" in text
    page = report._repr_html_()
    assert "<b>FAILED</b>" in page
    assert "<td>passed</td>" in page
    assert "&#x27;lost&#x27;" in page
    # Readable without colour or emoji fonts: the outcome is always a word.
    assert all(ord(ch) < 0x2000 for ch in text + page)


def test_examples_use_the_given_key_and_never_dump_rows(lake):
    lake.write("silver.wide", "SELECT range AS id, 'k' || (range % 7) AS code, repeat('x', 200) AS note, "
                              "CASE WHEN range % 2 = 0 THEN NULL ELSE range END AS qty FROM range(1000)")
    report = lake.check("silver.wide", {"not_null": ["qty"], "accepted_values": {"code": ["k1"]},
                                        "range": {"qty": {"max": 990}}}, key=["code", "id"], fail=False)
    by_check = {r.check: r for r in report.results}
    assert by_check["not_null"].failures == 500
    assert len(by_check["not_null"].examples) == 3
    assert all(e.startswith("(code, id)=('k") for e in by_check["not_null"].examples)
    assert by_check["accepted_values"].examples == ("'k0' (143 rows)", "'k2' (143 rows)", "'k3' (143 rows)")
    assert by_check["range"].examples == ("991", "993", "995")
    assert "xxxxxxxx" not in str(report)  # other columns of the failing rows are never shown
    long = lake.check("silver.wide", {"accepted_values": {"note": ["y"]}}, fail=False)
    assert long.results[0].examples == ("'" + "x" * 36 + "... (1,000 rows)",)


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
    with pytest.raises(QualityError) as info:
        lake.check("silver.orders", {"not_null": "id", "range": {"qty": {"low": 1}}, "accepted_values": {"status": []},
                                     "row_count": 5})
    assert str(info.value).splitlines()[1:] == [
        "  - not_null: expected a list of column names, got 'id'",
        "  - accepted_values: status: expected a non-empty list of values, got []",
        "  - range: qty: expected {min: ..., max: ...} (either or both), got {'low': 1}",
        "  - row_count: expected {min: ..., max: ...} (either or both), got 5",
    ]


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
