"""Expectations: rows audited before they are committed; a failing `fail` never becomes the current version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import ExpectationError, QualityError
from medallion_nb.expectations import CheckedWrite
from medallion_nb.reporting import WRITE_LOG_ENV, read_write_log
from medallion_nb.snapshots import publish, published
from tests.conftest import write_project

ORDERS = """
SELECT * FROM (VALUES
    (1, 'placed',  2,    'web'),
    (2, 'shipped', NULL, 'app'),
    (3, 'lost',    5,    'web'),
    (4, 'placed',  -1,   'fax'),
    (5, 'placed',  1,    'store')
) t(id, status, qty, channel)
"""
GOOD = "SELECT range AS id, 'placed' AS status, 1 AS qty, 'web' AS channel FROM range(3)"


@pytest.fixture
def lake(tmp_path: Path):
    root = write_project(tmp_path / "p", "name: p\nlayers: [{name: silver, notebook: nb.ipynb}]\n",
                         {"nb.ipynb": "{}"})
    with mnb.connect(root, run_id="r1") as handle:
        yield handle


def test_a_failing_fail_expectation_leaves_the_table_at_its_previous_version(lake):
    first = lake.write("silver.orders", GOOD, expect={"fail": {"not_null": ["qty"]}})
    assert first.version == 0
    assert first.report.ok
    with pytest.raises(ExpectationError) as info:
        lake.write("silver.orders", ORDERS, expect={"fail": {"not_null": ["qty"], "range": {"qty": {"min": 1}}},
                                                    "quarantine": {"accepted_values": {"channel": ["web", "app"]}}})
    message = str(info.value)
    assert message.splitlines()[0] == ("write to silver.orders: 1 expectation(s) failed; nothing was committed, "
                                       "the table stays at version 0")
    assert "FAILED      not_null qty: 1 row; e.g. id=2" in message
    assert info.value.report.failed[0].rule == "not_null qty"
    assert info.value.retryable is False
    # The table, its history and its quarantine are as they were.
    assert lake.table("silver.orders").aggregate("count(*)").fetchall() == [(3,)]
    assert [h["version"] for h in lake.history("silver.orders")] == [0]
    assert not lake.exists("silver.orders_quarantine")


def test_a_failing_first_write_creates_no_table(lake):
    with pytest.raises(ExpectationError, match="nothing was committed, the table was not created"):
        lake.write("silver.orders", ORDERS, expect={"fail": {"row_count": {"min": 10}}})
    assert not lake.exists("silver.orders")
    assert lake.tables() == []
    assert not list(lake.project.lake.rglob("*.parquet"))  # the staged rows were thrown away


# BOOM fails near its last rows, once DuckDB has begun writing the staged Parquet files.
MANY = "SELECT range AS id, range % 3 AS part, 'placed' AS status, 1 AS qty, 'web' AS channel FROM range(400000)"
BOOM = MANY.replace("'placed' AS status", "CASE WHEN range > 390000 THEN error('boom') ELSE 'placed' END AS status")
ABORTED_FIRST_WRITES = {
    "failing expectation": (ExpectationError, lambda lake: lake.write(
        "silver.orders", MANY, expect={"fail": {"row_count": {"max": 10}}})),
    "failing expectation, partitioned": (ExpectationError, lambda lake: lake.write(
        "silver.orders", MANY, partition_by="part", expect={"fail": {"row_count": {"max": 10}}})),
    "failing expectation with a quarantine": (ExpectationError, lambda lake: lake.write(
        "silver.orders", MANY, expect={"fail": {"row_count": {"max": 10}},
                                       "quarantine": {"range": {"id": {"min": 5}}}})),
    "failing expectation of a split": (ExpectationError, lambda lake: lake.write_split(
        MANY, {"small id": "id < 5"}, good="silver.orders", bad="silver.orders_rejects",
        expect={"fail": {"unique": ["part"]}})),
    "query failing while staging": (mnb.LakeError, lambda lake: lake.write("silver.orders", BOOM)),
    "query failing while staging, partitioned": (mnb.LakeError, lambda lake: lake.write(
        "silver.orders", BOOM, partition_by="part")),
    "check failing to run": (QualityError, lambda lake: lake.write(
        "silver.orders", MANY, expect={"fail": {"sql": {"boom": "error('boom')::BOOLEAN"}}})),
}


@pytest.mark.parametrize("case", ABORTED_FIRST_WRITES)
def test_an_aborted_first_write_leaves_no_table_folder(lake, case):
    error, write = ABORTED_FIRST_WRITES[case]
    with pytest.raises(error):
        write(lake)
    silver = lake.project.lake / "silver"
    assert sorted(p.relative_to(silver).as_posix() for p in silver.rglob("*")) == []  # no folder, no file
    assert lake.tables() == []
    with mnb.connect(lake.project.root) as reader:  # a new reader opens the lake and sees no table
        assert reader.tables() == []
        with pytest.raises(mnb.LakeError, match=r"silver\.orders"):
            reader.table("silver.orders")
        assert reader.vacuum(retain_hours=0) == {}  # nothing left to reclaim
    assert lake.write("silver.orders", GOOD).version == 0  # the next write creates the table


def test_quarantine_sends_failing_rows_away_with_the_rules_names(lake):
    result = lake.write("silver.orders", ORDERS, expect={
        "quarantine": {"not_null": ["qty"], "range": {"qty": {"min": 1}},
                       "accepted_values": {"channel": ["web", "app", "store"]}},
        "fail": {"row_count": {"min": 1}, "unique": ["id"]},
    })
    assert result.rows == 3
    assert sorted(r[0] for r in lake.sql("SELECT id FROM silver.orders").fetchall()) == [1, 3, 5]
    bad = lake.sql("SELECT id, _quarantine_reason FROM silver.orders_quarantine ORDER BY id").fetchall()
    assert bad == [(2, "not_null qty"), (4, "accepted_values channel; range qty")]
    assert result.quarantine.table == "silver.orders_quarantine"
    report = result.report
    assert report.ok
    assert report.rows == 5
    assert {r.rule: (r.failures, r.examples) for r in report.quarantined} == {
        "not_null qty": (1, ("id=2",)), "range qty": (1, ("-1",)), "accepted_values channel": (1, ("'fax'",))}
    assert "QUARANTINED not_null qty: 1 row; e.g. id=2" in str(result)
    # The fail checks saw the rows that were written: three rows, unique ids.
    assert {r.rule: r.ok for r in report.results if r.action == "fail"} == {"row_count at least 1": True,
                                                                           "unique id": True}
    # A later replace with nothing to quarantine empties the quarantine too.
    lake.write("silver.orders", GOOD, expect={"quarantine": {"not_null": ["qty"]}})
    assert lake.count("silver.orders_quarantine") == 0


def test_quarantine_by_unique_key_and_to_a_named_table(lake):
    result = lake.write("silver.orders", "SELECT * FROM (VALUES (1, 'a'), (1, 'b'), (2, 'c')) t(id, v)",
                        expect={"quarantine": {"unique": ["id"]}}, quarantine="silver.rejects")
    assert lake.sql("SELECT id, v FROM silver.orders").fetchall() == [(2, "c")]
    assert lake.sql("SELECT id, v, _quarantine_reason FROM silver.rejects ORDER BY v").fetchall() == [
        (1, "a", "unique id"), (1, "b", "unique id")]
    assert result.report.quarantined[0].examples == ("1 (2 rows)",)


def test_warn_writes_and_reports(lake):
    result = lake.write("silver.orders", ORDERS,
                        expect={"warn": {"accepted_values": {"status": ["placed", "shipped"]}}})
    assert result.rows == 5
    assert result.report.ok
    assert [(r.rule, r.outcome, r.examples) for r in result.report.warnings] == [
        ("accepted_values status", "WARNING", ("'lost'",))]
    assert "WARNING     accepted_values status: 1 row; e.g. 'lost'" in str(result)
    assert "<b>WARNING</b>" in result._repr_html_()


def test_append_and_merge_audit_the_new_rows(lake):
    lake.write("silver.orders", GOOD)
    with pytest.raises(ExpectationError, match="stays at version 0"):
        lake.write("silver.orders", ORDERS, mode="append", expect={"fail": {"not_null": ["qty"]}})
    result = lake.write("silver.orders", "SELECT 1 AS id, 'shipped' AS status, 4 AS qty, 'app' AS channel",
                        mode="merge", key="id", expect={"fail": {"range": {"qty": {"min": 1}}}})
    assert (result.version, result.updated, result.inserted) == (1, 1, 0)
    assert lake.count("silver.orders") == 3


def test_malformed_expectations_are_refused_before_anything_is_written(lake):
    with pytest.raises(QualityError) as info:
        lake.write("silver.orders", ORDERS, expect={
            "fial": {"not_null": ["id"]},
            "quarantine": {"row_count": {"min": 1}, "not_null": ["qyt"]},
            "warn": {"sql": {"empty": ""}},
        })
    assert str(info.value).splitlines() == [
        "expectations for silver.orders are invalid:",
        "  - unknown action 'fial' (known: fail, warn, quarantine)",
        "  - warn: sql: empty: expected SQL that is true for a good row, got ''",
        "  - quarantine: row_count is about the whole table, not a row; use it under fail or warn",
        "  - quarantine: not_null: no column 'qyt' (columns: id, status, qty, channel)",
    ]
    with pytest.raises(QualityError, match="expect must map actions"):
        lake.write("silver.orders", ORDERS, expect={})
    assert not lake.exists("silver.orders")


def test_expectations_are_in_the_write_log(lake, tmp_path: Path, monkeypatch):
    log = tmp_path / "writes.jsonl"
    monkeypatch.setenv(WRITE_LOG_ENV, str(log))
    lake.write("silver.orders", ORDERS, expect={"quarantine": {"not_null": ["qty"]}})
    with pytest.raises(ExpectationError):
        lake.write("silver.orders", ORDERS, expect={"fail": {"not_null": ["qty"]}})
    entries = [e for e in read_write_log(log) if e.get("kind") == "expectations"]
    assert [(e["table"], e["ok"], e["committed"], e["failed"], e["quarantined"]) for e in entries] == [
        ("silver.orders", True, True, [], {"not_null qty": 1}),
        ("silver.orders", False, False, ["not_null qty"], {}),
    ]
    writes = [e["table"] for e in read_write_log(log) if e.get("kind", "write") == "write"]
    assert writes == ["silver.orders", "silver.orders_quarantine"]
    json.dumps(entries)


def test_the_published_snapshot_is_unchanged_after_a_failed_write(lake):
    root = lake.project.root
    version = lake.write("silver.orders", GOOD).version
    publish(root, "r1", {"silver.orders": version})
    with pytest.raises(ExpectationError):
        lake.write("silver.orders", ORDERS, expect={"fail": {"not_null": ["qty"]}})
    assert published(root).tables == {"silver.orders": 0}
    with mnb.connect(root, snapshot="published") as reader:
        assert reader.sql("SELECT count(*) FROM silver.orders").fetchall() == [(3,)]
    with mnb.connect(root) as latest:  # and the latest commit is the same version
        assert latest.info("silver.orders")["version"] == 0


def test_the_handle_lists_every_check_it_ran(lake):
    lake.write("silver.orders", ORDERS, expect={"warn": {"not_null": ["qty"]}, "fail": {"unique": ["id"]}})
    with pytest.raises(QualityError):
        lake.check("silver.orders", {"range": {"qty": {"min": 0}}})
    frame = lake.quality()
    assert frame[["table", "action", "check", "result", "failing rows", "examples"]].values.tolist() == [
        ["silver.orders", "fail", "unique", "passed", 0, ""],
        ["silver.orders", "warn", "not_null", "WARNING", 1, "id=2"],
        ["silver.orders", "fail", "range", "FAILED", 1, "-1"],
    ]


DECLARED = """
name: p
layers: [{name: silver, notebook: nb.ipynb}]
expectations:
  silver.orders:
    fail: {not_null: [qty]}
    quarantine: {accepted_values: {channel: [web, app, store]}}
"""


def test_expectations_declared_in_the_project_apply_to_every_write(tmp_path: Path):
    root = write_project(tmp_path / "p", DECLARED, {"nb.ipynb": "{}"})
    with mnb.connect(root) as lake:
        with pytest.raises(ExpectationError, match="not_null qty"):
            lake.write("silver.orders", ORDERS)
        assert not lake.exists("silver.orders")
        # A write's own expectations add to the declared ones.
        result = lake.write("silver.orders", ORDERS.replace("NULL", "7"),
                            expect={"warn": {"range": {"qty": {"min": 1}}}})
        assert sorted(r.rule for r in result.report.results) == ["accepted_values channel", "not_null qty",
                                                                 "range qty"]
        assert lake.sql("SELECT id FROM silver.orders_quarantine").fetchall() == [(4,)]
        assert not isinstance(lake.write("silver.other", ORDERS), CheckedWrite)  # other tables: as they are


def test_declared_expectations_are_validated_with_the_project(tmp_path: Path):
    bad = DECLARED.replace("silver.orders:", "gold.orders:").replace("not_null: [qty]", "not_nul: [qty]") + \
        "  orders: {warn: {row_count: {min: 1}}}\n"
    root = write_project(tmp_path / "p", bad, {"nb.ipynb": "{}"})
    with pytest.raises(mnb.ProjectError) as info:
        mnb.load_project(root)
    text = str(info.value)
    assert "expectations.gold.orders: no layer 'gold' (layers are: silver)" in text
    assert "expectations.gold.orders: fail: unknown check 'not_nul'" in text
    assert "expectations.orders: expected a table name <layer>.<table>" in text


def test_write_options_pass_through_an_audited_write(lake):
    result = lake.write("silver.orders", ORDERS, partition_by="status",
                        expect={"quarantine": {"not_null": ["qty"]}, "fail": {"row_count": {"min": 1}}})
    assert result.rows == 4
    assert sorted(p.name for p in (lake.project.lake / "silver" / "orders").iterdir() if p.is_dir()) == [
        "_delta_log", "status=lost", "status=placed"]
    lake.write("silver.orders", "SELECT 9 AS id, 'placed' AS status, 1 AS qty, 'web' AS channel",
               mode="replace_where", where="status = 'placed'", expect={"fail": {"not_null": ["qty"]}})
    assert lake.sql("SELECT id FROM silver.orders ORDER BY id").fetchall() == [(3,), (9,)]
