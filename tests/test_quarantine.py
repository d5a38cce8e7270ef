"""One-pass quarantine writes (lake.write_split) and the latest row per key (lake.latest)."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

import medallion_nb as mnb
from medallion_nb.errors import LakeError
from tests.conftest import write_project

DATA = """
SELECT * FROM (VALUES
    (1, 'placed',  2,    'a'),
    (2, 'shipped', NULL, 'b'),
    (3, 'lost',    5,    'c'),
    (4, 'placed',  -1,   NULL),
    (5, 'shipped', 3,    'e')
) t(id, status, qty, code)
"""
RULES = {
    "missing qty": "qty IS NULL",
    "negative qty": "qty < 0",
    "unknown status": "status NOT IN ('placed', 'shipped')",
    "missing code": "code IS NULL",
}


@pytest.fixture
def lake(tmp_path: Path):
    root = write_project(tmp_path / "p", "name: p\nlayers: [{name: bronze, notebook: nb.ipynb}, "
                                         "{name: silver, notebook: nb.ipynb}]\n", {"nb.ipynb": "{}"})
    with mnb.connect(root) as handle:
        handle.write("bronze.orders", DATA)
        yield handle


def test_write_split_writes_both_sides_in_one_pass(lake):
    result = lake.write_split("SELECT * FROM bronze.orders", RULES, good="silver.orders",
                              good_columns="id, qty * 10 AS qty10, sum(qty) OVER () AS total",
                              bad="silver.quarantine", bad_columns="id, _quarantine_reason")
    assert lake.table("silver.orders").order("id").fetchall() == [(1, 20, 5), (5, 30, 5)]
    assert lake.table("silver.quarantine").order("id").fetchall() == [
        (2, "missing qty"), (3, "unknown status"), (4, "negative qty; missing code")]
    assert (result.good.rows, result.bad.rows) == (2, 3)
    assert result.counts == {"passed": 2, "missing qty": 1, "negative qty; missing code": 1, "unknown status": 1}
    assert [w.table for w in lake.writes[-2:]] == ["silver.orders", "silver.quarantine"]
    assert "silver.quarantine: replace 3 rows" in str(result)


def test_write_split_matches_split_then_write(lake):
    checked = lake.split("SELECT * FROM bronze.orders", RULES)
    lake.write_split("SELECT * FROM bronze.orders", RULES, good="silver.good", bad="silver.bad")
    assert lake.table("silver.good").order("id").fetchall() == checked.good.order("id").fetchall()
    assert lake.table("silver.bad").order("id").fetchall() == checked.bad.order("id").fetchall()
    assert lake.table("silver.bad").columns[-1] == "_quarantine_reason"


@pytest.mark.parametrize("source", ["query", "arrow stream"])
def test_write_split_sides_are_exactly_the_tagged_rows_and_cast_for_delta(lake, monkeypatch, source):
    monkeypatch.setattr("medallion_nb.quarantine.BATCH_ROWS", 1000)  # the stream: many batches
    sql = "SELECT range AS id, range::HUGEINT AS big, range % 7 AS r FROM range(10000)"
    if source == "query":  # two reads by DuckDB, which add up
        monkeypatch.setattr(mnb.quarantine, "_stage_once", lambda *args: pytest.fail("the reads did not add up"))
    table = duckdb.sql(sql).to_arrow_table()  # another connection's rows
    data = sql if source == "query" else pa.RecordBatchReader.from_batches(table.schema, table.to_batches(1000))
    result = lake.write_split(data, {"odd": "id % 2 = 1", "sevens": "r = 0"},
                              good="silver.even", bad="silver.odd", bad_columns="id, _quarantine_reason")
    expected = lake.sql(f"SELECT id, concat_ws('; ', CASE WHEN id % 2 = 1 THEN 'odd' END, "
                        f"CASE WHEN r = 0 THEN 'sevens' END) AS reason FROM ({sql})")
    bad = expected.filter("reason <> ''").order("id").fetchall()
    assert lake.table("silver.odd").order("id").fetchall() == bad
    assert lake.table("silver.even").project("id").order("id").fetchall() == \
        expected.filter("reason = ''").project("id").order("id").fetchall()
    assert (result.good.rows, result.bad.rows) == (10000 - len(bad), len(bad))
    assert result.counts == {"passed": 4285, "odd": 4286, "sevens": 715, "odd; sevens": 714}
    big = "BIGINT" if source == "query" else "DECIMAL(38,0)"  # HUGEINT stored as BIGINT; Arrow made it a decimal
    assert [str(t) for t in lake.table("silver.even").types] == ["BIGINT", big, "BIGINT"]


def test_write_split_keeps_every_copy_of_a_quarantined_row_and_nested_values(lake, monkeypatch):
    def no_second_try(*args):
        raise AssertionError("the two reads did not add up")

    monkeypatch.setattr(mnb.quarantine, "_stage_once", no_second_try)
    sql = ("SELECT range % 4 AS id, [range % 4, 1] AS tags, {'k': range % 4} AS info FROM range(12) "
           "UNION ALL SELECT 9, [9], {'k': 9} FROM range(0) "
           "UNION ALL SELECT 7, NULL, NULL")
    result = lake.write_split(sql, {"odd": "id % 2 = 1"}, good="silver.even", bad="silver.odd")
    assert (result.good.rows, result.bad.rows) == (6, 7)
    assert sorted(lake.table("silver.odd").fetchall(), key=str) == sorted(
        [(1, [1, 1], {"k": 1}, "odd")] * 3 + [(3, [3, 1], {"k": 3}, "odd")] * 3 + [(7, None, None, "odd")], key=str)
    assert lake.sql("SELECT count(*) FROM silver.even").fetchall() == [(6,)]


def test_write_split_of_no_rows_writes_two_empty_tables(lake):
    result = lake.write_split("SELECT * FROM bronze.orders WHERE id < 0", RULES, good="silver.good", bad="silver.bad")
    assert (result.good.rows, result.bad.rows) == (0, 0)
    assert result.counts == {"passed": 0}
    assert lake.count("silver.good") == lake.count("silver.bad") == 0


def test_write_split_whose_rows_change_between_reads_is_staged_again_in_one_read(lake, monkeypatch):
    # The input grows after the first read (as a query with now() or ties in a window can
    # change): the two reads do not add up, so the split is made again from one read.
    lake.con.execute("CREATE TABLE moving AS SELECT range AS id FROM range(100)")
    original = mnb.quarantine._Sides.stage_good

    def grow_then_stage(self, rows, con=None):
        if con is None:  # the second read of two (the one-read way stages through its own cursor)
            lake.con.execute("INSERT INTO moving SELECT range FROM range(100, 130)")
        return original(self, rows, con)

    monkeypatch.setattr(mnb.quarantine._Sides, "stage_good", grow_then_stage)
    result = lake.write_split("SELECT id FROM moving", {"odd": "id % 2 = 1"}, good="silver.even", bad="silver.odd")
    good = {r[0] for r in lake.table("silver.even").fetchall()}
    bad = {r[0] for r in lake.table("silver.odd").fetchall()}
    moving = {r[0] for r in lake.sql("SELECT id FROM moving").fetchall()}
    assert good | bad == moving
    assert not good & bad
    assert good == {i for i in moving if i % 2 == 0}
    assert result.counts == {"passed": len(good), "odd": len(bad)}
    assert not list(lake.project.lake.rglob("_medallion/staging/*"))
    assert lake.count("silver.even") == len(good)  # the files of the first attempt were not committed



def test_write_split_rules_that_read_the_clock_see_the_same_time_in_both_reads(lake, monkeypatch):
    # Row 1 is quarantined before the mark, row 2 after it, and the second read comes after
    # the mark: read at two times, row 1 would be on both sides (the counts still add up)
    # and row 2 on none.
    lake.con.execute("CREATE TABLE mark AS SELECT now() + INTERVAL 1 SECOND AS t")
    rules = {"early": "id = 1 AND now() <= (SELECT t FROM mark)", "late": "id = 2 AND now() > (SELECT t FROM mark)"}
    original = mnb.quarantine._Sides.stage_good

    def after_the_mark(self, rows, con=None):
        if con is None:  # the second read of two
            time.sleep(1.2)
        return original(self, rows, con)

    monkeypatch.setattr(mnb.quarantine._Sides, "stage_good", after_the_mark)
    lake.write_split("SELECT * FROM (VALUES (1), (2)) t(id)", rules, good="silver.good", bad="silver.bad")
    good = [r[0] for r in lake.table("silver.good").fetchall()]
    bad = [r[0] for r in lake.table("silver.bad").fetchall()]
    assert sorted(good + bad) == [1, 2]

def test_write_split_appends_and_keeps_empty_sides(lake):
    lake.write_split("SELECT * FROM bronze.orders WHERE id = 1", RULES, good="silver.good", bad="silver.bad")
    again = lake.write_split("SELECT * FROM bronze.orders WHERE id = 5", RULES, good="silver.good",
                             bad="silver.bad", mode="append")
    assert again.good.total_rows == 2
    assert again.bad.rows == 0
    assert lake.count("silver.bad") == 0
    assert lake.table("silver.bad").columns == ["id", "status", "qty", "code", "_quarantine_reason"]


def test_write_split_errors_name_the_problem(lake):
    with pytest.raises(LakeError, match=r"mode 'upsert' is not one of replace, append, merge"):
        lake.write_split("SELECT * FROM bronze.orders", RULES, good="silver.a", bad="silver.b", mode="upsert")
    with pytest.raises(LakeError, match=r"mode merge needs key"):
        lake.write_split("SELECT * FROM bronze.orders", RULES, good="silver.a", bad="silver.b", mode="merge")
    with pytest.raises(LakeError, match=r"'gold' is not a layer"):
        lake.write_split("SELECT * FROM bronze.orders", RULES, good="gold.a", bad="silver.b")
    with pytest.raises(LakeError, match=r"the columns for silver.a are not valid: .*nope"):
        lake.write_split("SELECT * FROM bronze.orders", RULES, good="silver.a", bad="silver.b", good_columns="nope")
    assert not lake.exists("silver.a")


def test_latest_keeps_the_first_row_per_key_by_the_order(lake):
    rows = lake.sql("""SELECT * FROM (VALUES (1, 'old', 1), (1, 'new', 2), (2, 'only', 1), (NULL, 'x', 1),
                                             (NULL, 'y', 3), (3, 'a', 5), (3, 'b', 5)) t(k, v, n)""")
    latest = lake.latest(rows, key="k", order_by="n DESC, v DESC")
    assert sorted(latest.fetchall(), key=str) == [(1, "new", 2), (2, "only", 1), (3, "b", 5), (None, "y", 3)]
    window = rows.query("r", "SELECT * FROM r QUALIFY row_number() OVER (PARTITION BY k ORDER BY n DESC, v DESC) = 1")
    assert sorted(latest.fetchall(), key=str) == sorted(window.fetchall(), key=str)


def test_latest_picks_the_same_row_among_ties_whatever_the_input_order(lake):
    values = ", ".join(f"({k}, {v}, 1)" for k in range(50) for v in range(4))
    rows = lake.sql(f"SELECT * FROM (VALUES {values}) t(k, v, n)")
    forward = lake.latest(rows.order("k, v"), key="k", order_by="n DESC").order("k").fetchall()
    backward = lake.latest(rows.order("k DESC, v DESC"), key="k", order_by="n DESC").order("k").fetchall()
    assert forward == backward
    assert len(forward) == 50


def test_latest_on_a_table_with_two_keys(lake):
    lake.write("bronze.events", "SELECT * FROM (VALUES ('a', 1, 10), ('a', 1, 11), ('a', 2, 5)) t(s, d, v)")
    assert sorted(lake.latest("bronze.events", key=["s", "d"], order_by="v DESC").fetchall()) == [
        ("a", 1, 11), ("a", 2, 5)]
    with pytest.raises(LakeError, match=r"latest: key nope is not a column \(columns: s, d, v\)"):
        lake.latest("bronze.events", key="nope", order_by="v")


def test_write_split_checks_expectations_on_the_staged_good_rows_before_any_commit(lake):
    first = lake.write_split("SELECT * FROM bronze.orders", RULES, good="silver.good", bad="silver.bad",
                             good_columns="id, qty * 10 AS amount",
                             expect={"fail": {"unique": ["id"]}, "warn": {"range": {"amount": {"max": 25}}}})
    assert first.report.ok
    assert [(r.rule, r.outcome, r.examples) for r in first.report.warnings] == [("range amount", "WARNING", ("30",))]
    assert "WARNING     range amount" in str(first)
    files = sorted(p.name for p in lake.project.lake.rglob("*.parquet"))
    with pytest.raises(mnb.ExpectationError, match="nothing was committed, the table stays at version 0") as info:
        lake.write_split("SELECT * FROM bronze.orders UNION ALL SELECT * FROM bronze.orders", RULES,
                         good="silver.good", bad="silver.bad", good_columns="id, qty * 10 AS amount",
                         expect={"fail": {"unique": ["id"]}})
    assert info.value.report.failed[0].examples == ("1 (2 rows)", "5 (2 rows)")
    # Neither side was committed, and the staged files are gone.
    assert [h["version"] for h in lake.history("silver.good")] == [0]
    assert [h["version"] for h in lake.history("silver.bad")] == [0]
    assert sorted(p.name for p in lake.project.lake.rglob("*.parquet")) == files
    with pytest.raises(mnb.QualityError, match="quarantine rows with the split's rules"):
        lake.write_split("SELECT * FROM bronze.orders", RULES, good="silver.good", bad="silver.bad",
                         expect={"quarantine": {"not_null": ["id"]}})
