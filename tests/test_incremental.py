"""Incremental processing: key sets from changes, writes that replace the rows of those keys, sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import LakeError
from medallion_nb.incremental import Keys
from tests.conftest import TWO_LAYERS as CONFIG
from tests.conftest import consumer as notebook
from tests.conftest import sorted_rows as rows
from tests.conftest import write_project


@pytest.fixture
def root(two_layers: Path) -> Path:
    return two_layers


def history(lake: mnb.Lakehouse, name: str) -> list[int]:
    return [h["version"] for h in lake.history(name)]


ORDERS = "SELECT * FROM (VALUES (1, 'a', 10), (2, 'b', 20), (3, 'a', 30)) t(id, grp, amount)"


def test_keys_of_changes_cover_new_and_removed_rows(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.o", ORDERS)
    with notebook(root) as lake:
        changes = lake.changes("bronze.o")
        keys = changes.keys("id")
        assert keys.full
        assert str(keys) == "every id (a full build)"
        assert rows(keys.filter("bronze.o")) == rows(lake.table("bronze.o"))  # full: nothing filtered
        lake.write("silver.o", changes.rows)
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT 2 AS id, 'c' AS grp, 21 AS amount", mode="merge", key="id",
                   delete="SELECT 3 AS id")
    with notebook(root) as lake:
        changes = lake.changes("bronze.o")
        keys = changes.keys("id")
        assert not keys.full
        assert rows(keys.relation()) == [(2,), (3,)]  # 2 changed, 3 was deleted
        assert str(keys) == "2 id values"
        groups = changes.keys("upper(grp) AS g")
        assert groups.columns == ("g",)
        assert rows(groups.relation()) == [("A",), ("B",), ("C",)]  # old and new values alike
        assert rows(keys.filter("bronze.o")) == [(2, "c", 21)]


def test_union_with_every_key_never_computes_the_other_set(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.o", ORDERS)
    with notebook(root) as lake:
        every = lake.changes("bronze.o").keys("id")
        # error() fails only when the query runs: binding it is fine.
        costly = lake.keys("SELECT CAST(error('must not run') AS INTEGER) AS id FROM bronze.o")
        both = every | costly
        assert both.full
        assert rows(both.filter("bronze.o")) == rows(lake.table("bronze.o"))
        with pytest.raises(LakeError, match="must not run"):
            len(costly)


def test_keys_from_a_query_with_named_inputs(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.o", ORDERS)
        lake.write("bronze.g", "SELECT 'a' AS grp")
    with notebook(root) as lake:
        groups = lake.changes("bronze.g").keys("grp")
        found = lake.keys("SELECT id FROM bronze.o WHERE grp IN (SELECT grp FROM changed_groups)",
                          changed_groups=groups)
        assert not found.full
        assert rows(found.relation()) == [(1,), (3,)]
        picked = lake.keys("SELECT 2 AS id") | found
        assert rows(picked.relation()) == [(1,), (2,), (3,)]
        with pytest.raises(LakeError, match="not a valid name"):
            lake.keys("SELECT 1 AS id", **{"bad name": groups})
        with pytest.raises(LakeError, match="same number of columns"):
            found | lake.keys("SELECT 1 AS a, 2 AS b")


def test_null_keys_match_null_keys(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.n", "SELECT * FROM (VALUES (1, 'x'), (NULL, 'y'), (2, NULL)) t(a, b)")
        keys = Keys(lake, ["a"], lambda: lake.sql("SELECT * FROM (VALUES (NULL::INT), (2)) t(a)"))
        assert rows(keys.filter("bronze.n")) == [(2, None), (None, "y")]
        pairs = Keys(lake, ["a", "b"], lambda: lake.sql("SELECT * FROM (VALUES (NULL::INT, 'y'), (2, NULL)) t(a, b)"))
        assert rows(pairs.filter("bronze.n")) == [(2, None), (None, "y")]
        plain = Keys(lake, ["a", "b"], lambda: lake.sql("SELECT 1 AS a, 'x' AS b"))
        assert rows(plain.filter("bronze.n")) == [(1, "x")]
        assert rows(plain.filter("bronze.n", on=["a", "b"])) == [(1, "x")]
        with pytest.raises(LakeError, match="1 expression"):
            plain.filter("bronze.n", on="a")


def test_replace_where_keys_replaces_every_row_of_those_keys(root):
    with mnb.connect(root) as lake:
        lake.write("silver.o", ORDERS, partition_by="grp")
        keys = Keys(lake, ["id"], lambda: lake.sql("SELECT * FROM (VALUES (2), (3), (4)) t(id)"))
        # 2 changes group, 3 disappears, 4 is new; 1 is untouched.
        result = lake.write("silver.o", "SELECT * FROM (VALUES (2, 'a', 22), (4, 'c', 40)) t(id, grp, amount)",
                            mode="replace_where", where=keys)
        assert result.mode == "replace_where"
        assert rows(lake.table("silver.o")) == [(1, "a", 10), (2, "a", 22), (4, "c", 40)]
        with pytest.raises(LakeError, match="do not match where"):
            lake.write("silver.o", "SELECT 9 AS id, 'a' AS grp, 1 AS amount", mode="replace_where", where=keys)
        with pytest.raises(LakeError, match="goes with mode='replace_where'"):
            lake.write("silver.o", ORDERS, mode="append", where=keys)


def test_every_key_replaces_the_table_schema_and_all(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.o", ORDERS)
        lake.write("silver.o", "SELECT 1 AS id")
    with notebook(root) as lake:
        every = lake.changes("bronze.o").keys("id")
        lake.write("silver.o", "SELECT id, amount FROM bronze.o", mode="replace_where", where=every)
        assert rows(lake.table("silver.o")) == [(1, 10), (2, 20), (3, 30)]
        assert lake.history("silver.o", 1)[0]["mode"] == "replace"


def test_a_write_that_changes_nothing_commits_nothing(root):
    with mnb.connect(root) as lake:
        lake.write("silver.o", ORDERS)
        none = Keys(lake, ["id"], lambda: lake.sql("SELECT 1 AS id WHERE false"))
        result = lake.write("silver.o", "SELECT * FROM silver.o WHERE false", mode="replace_where", where=none)
        assert result.skipped
        assert history(lake, "silver.o") == [0]
        # Removing rows is a change, even without new ones.
        gone = Keys(lake, ["id"], lambda: lake.sql("SELECT 3 AS id"))
        result = lake.write("silver.o", "SELECT * FROM silver.o WHERE false", mode="replace_where", where=gone)
        assert not result.skipped
        assert result.total_rows == 2
        assert lake.write("silver.o", "SELECT * FROM silver.o WHERE false", mode="append").skipped
        assert history(lake, "silver.o") == [1, 0]


def test_an_empty_write_records_consumption_once(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.o", ORDERS)
    with notebook(root) as lake:
        changes = lake.changes("bronze.o")
        lake.write("silver.o", changes.rows, mode="replace_where", where=changes.keys("id"))
        lake.write("silver.side", "SELECT 0 AS id")
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT 4 AS id, 'd' AS grp, 40 AS amount", mode="append")
    for _ in range(2):
        with notebook(root) as lake:
            keys = lake.changes("bronze.o").keys("id")
            lake.write("silver.o", keys.filter("bronze.o"), mode="replace_where", where=keys)
            # Nothing for this output, but it must record that it has seen version 1.
            lake.write("silver.side", "SELECT 0 AS id WHERE false", mode="replace_where", where=keys)
    with notebook(root) as lake:
        assert history(lake, "silver.o") == [1, 0]
        assert history(lake, "silver.side") == [1, 0]  # the empty commit once, then nothing
        assert lake.changes("bronze.o").start == 1


def test_write_split_replace_where_moves_a_row_between_the_sides(root):
    rules = {"negative": "amount < 0"}
    with mnb.connect(root) as lake:
        lake.write_split(ORDERS, rules, good="silver.ok", bad="silver.bad", partition_by="grp")
        assert lake.info("silver.ok")["rows"] == 3
        assert lake.store.snapshot("silver", "ok").partition_by == ("grp",)
        keys = Keys(lake, ["id"], lambda: lake.sql("SELECT * FROM (VALUES (1), (2), (3)) t(id)"))
        # 1 goes bad, 2 is fixed and stays good, 3 no longer exists.
        new = "SELECT * FROM (VALUES (1, 'a', -5), (2, 'b', 25)) t(id, grp, amount)"
        split = lake.write_split(new, rules, good="silver.ok", bad="silver.bad", mode="replace_where", where=keys,
                                 partition_by="grp")
        assert split.counts == {"passed": 1, "negative": 1}
        assert rows(lake.table("silver.ok")) == [(2, "b", 25)]
        assert rows(lake.table("silver.bad").project("id, amount")) == [(1, -5)]
        back = Keys(lake, ["id"], lambda: lake.sql("SELECT 1 AS id"))
        lake.write_split("SELECT 1 AS id, 'a' AS grp, 15 AS amount", rules, good="silver.ok", bad="silver.bad",
                         mode="replace_where", where=back, partition_by="grp")
        assert rows(lake.table("silver.ok")) == [(1, "a", 15), (2, "b", 25)]
        assert rows(lake.table("silver.bad")) == []
        with pytest.raises(LakeError, match="needs where="):
            lake.write_split(ORDERS, rules, good="silver.ok", bad="silver.bad", mode="replace_where")


def test_sync_rewrites_only_the_rows_that_differ(root):
    dims = "SELECT * FROM (VALUES (1, 'gold'), (2, 'silver'), (3, 'bronze')) t(id, tier)"
    with mnb.connect(root) as lake:
        first = lake.sync("silver.c", dims, key="id")
        assert (first.mode, first.rows) == ("replace", 3)
        same = lake.sync("silver.c", dims, key="id")
        assert same.skipped
        assert history(lake, "silver.c") == [0]
        changed = lake.sync("silver.c", "SELECT * FROM (VALUES (1, 'gold'), (2, 'gold'), (4, 'new')) t(id, tier)",
                            key="id")
        assert (changed.mode, changed.rows) == ("replace_where", 2)  # 2 changed, 4 new; 3 deleted, 1 untouched
        assert rows(lake.table("silver.c")) == [(1, "gold"), (2, "gold"), (4, "new")]
        # A duplicated row is a difference too (the rows are compared as multisets).
        dup = lake.sync("silver.c", "SELECT * FROM (VALUES (1, 'gold'), (2, 'gold'), (4, 'new'), (4, 'new')) "
                                    "t(id, tier)", key="id")
        assert dup.rows == 2
        assert lake.info("silver.c")["rows"] == 4
        wider = lake.sync("silver.c", "SELECT 1 AS id, 'gold' AS tier, 'DE' AS country", key="id")
        assert wider.mode == "replace"  # new columns: the table is replaced
        full = lake.sync("silver.c", "SELECT 1 AS id, 'gold' AS tier, 'DE' AS country", key="id", full_refresh=True)
        assert full.mode == "replace"
        assert not full.skipped
        with pytest.raises(LakeError, match="key nope is not a column"):
            lake.sync("silver.c", dims, key="nope")


def test_a_query_keeps_its_own_inputs_when_the_names_are_reused(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.o", ORDERS)
        first = lake.keys("SELECT id FROM bronze.o WHERE grp IN (SELECT g FROM picked)",
                          picked=Keys(lake, ["g"], lambda: lake.sql("SELECT 'a' AS g")))
        second = lake.keys("SELECT id FROM bronze.o WHERE grp IN (SELECT g FROM picked)",
                           picked=Keys(lake, ["g"], lambda: lake.sql("SELECT 'b' AS g")))
        assert rows(second.relation()) == [(2,)]
        assert rows(first.relation()) == [(1,), (3,)]  # computed after the name was reused


def test_a_table_the_notebook_never_wrote_gets_every_row_of_its_input(tmp_path: Path):
    # silver writes silver.a, then silver.b; a run that died between the two recorded what it
    # consumed on silver.a only: the next run reads every row, so silver.b is built from all of them.
    code = ('lake.write("silver.a", lake.changes("bronze.o").rows)\n'
            'lake.write("silver.b", lake.changes("bronze.o").rows)')
    book = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                       "source": code}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    root = write_project(tmp_path / "p", CONFIG.replace("silver, notebook: nb.ipynb", "silver, notebook: silver.ipynb"),
                         {"nb.ipynb": "{}", "silver.ipynb": json.dumps(book)})
    with mnb.connect(root) as lake:
        lake.write("bronze.o", ORDERS)
    with notebook(root) as lake:
        lake.write("silver.a", lake.changes("bronze.o").rows)  # the run dies here
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT 4 AS id, 'c' AS grp, 40 AS amount", mode="append")
    with notebook(root) as lake:
        changes = lake.changes("bronze.o")
        assert changes.full
        assert "silver.b, which this notebook writes, does not exist yet" in str(changes)
        lake.write("silver.a", changes.rows, mode="replace")
        lake.write("silver.b", changes.rows)
        assert lake.count("silver.b") == 4
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT 5 AS id, 'c' AS grp, 50 AS amount", mode="append")
    with notebook(root) as lake:  # both tables exist and hold the record: incremental again
        changes = lake.changes("bronze.o")
        assert not changes.full
        assert rows(changes.rows) == [(5, "c", 50)]


TOTALS = {"n": "count(amount)", "total": "sum(amount)", "low": "min(amount)", "high": "max(amount)"}
GROUPED = ("SELECT grp, count(amount) AS n, sum(amount) AS total, min(amount) AS low, max(amount) AS high "
           "FROM bronze.o WHERE amount <> 0 GROUP BY grp")


def roll(root: Path) -> tuple[bool, list[tuple], list[tuple]]:
    """One run of a notebook keeping silver.totals with rollup: (carried forward?, its rows, the GROUP BY's)."""
    with notebook(root) as lake:
        changes = lake.changes("bronze.o")
        totals = changes.rollup("grp", into="silver.totals", where="amount <> 0", **TOTALS)
        carried = "rollup_" in totals.sql_query()
        assert totals.types == lake.sql(GROUPED).types
        lake.sync("silver.totals", totals, key="grp")
        return carried, rows(lake.table("silver.totals")), rows(lake.sql(GROUPED))


def test_rollup_carries_the_totals_forward_and_equals_a_group_by_over_the_whole_table(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.o", ORDERS)
    carried, held, expected = roll(root)
    assert not carried  # first run: aggregated from the table
    assert held == expected == [("a", 2, 40, 10, 30), ("b", 1, 20, 20, 20)]
    with mnb.connect(root) as lake:  # appended rows: a new group, more rows in an old one, a null key
        lake.write("bronze.o", "SELECT * FROM (VALUES (4, 'a', 5), (5, 'c', 7), (6, NULL, 1), (7, 'b', 0)) "
                               "t(id, grp, amount)", mode="append")
    carried, held, expected = roll(root)
    assert carried
    assert held == expected
    assert ("a", 3, 45, 5, 30) in held
    with mnb.connect(root) as lake:  # an update moves a row between groups and lowers a max; a delete empties b
        lake.write("bronze.o", "SELECT 3 AS id, 'c' AS grp, 1 AS amount", mode="merge", key="id",
                   delete="SELECT 2 AS id")
    carried, held, expected = roll(root)
    assert carried
    assert held == expected
    assert ("a", 2, 15, 5, 10) in held
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT 8 AS id, 'a' AS grp, 2 AS amount", mode="append")
    with notebook(root) as lake:  # nothing written: silver.totals still records the version before
        lake.changes("bronze.o")
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT 9 AS id, 'a' AS grp, 3 AS amount", mode="append")
    carried, held, expected = roll(root)
    assert carried
    assert held == expected


def test_rollup_aggregates_the_table_when_its_totals_are_not_those_of_the_change_start(root):
    # The notebook writes silver.totals, then silver.other; a run dies between the two. The next
    # run's change starts at silver.other's record, before what silver.totals already holds:
    # adding the change to it would count those rows twice, so rollup aggregates the table.
    def run(*, dies: bool = False) -> bool:
        with notebook(root) as lake:
            changes = lake.changes("bronze.o")
            totals = changes.rollup("grp", into="silver.totals", where="amount <> 0", **TOTALS)
            lake.sync("silver.totals", totals, key="grp")
            if not dies:
                lake.write("silver.other", changes.rows, mode="replace_where", where=changes.keys("id"))
            return "rollup_" in totals.sql_query()

    with mnb.connect(root) as lake:
        lake.write("bronze.o", ORDERS)
    assert not run()
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT 4 AS id, 'a' AS grp, 5 AS amount", mode="append")
    assert run(dies=True)
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT 5 AS id, 'b' AS grp, 6 AS amount", mode="append")
    assert not run()  # silver.totals holds version 1, the change starts at 0
    with mnb.connect(root) as lake:
        assert rows(lake.table("silver.totals")) == rows(lake.sql(GROUPED))
        assert ("a", 3, 45, 5, 30) in rows(lake.table("silver.totals"))
        lake.write("bronze.o", "SELECT 6 AS id, 'b' AS grp, 7 AS amount", mode="append")
    assert run()  # both outputs hold version 2 again: carried forward
    with mnb.connect(root) as lake:
        assert rows(lake.table("silver.totals")) == rows(lake.sql(GROUPED))


def test_rollup_refuses_aggregates_it_cannot_carry_forward(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.o", ORDERS)
    with notebook(root) as lake:
        changes = lake.changes("bronze.o")
        with pytest.raises(LakeError, match=r"avg\(amount\)' cannot be updated from a change"):
            changes.rollup("grp", into="silver.t", mean="avg(amount)")
        with pytest.raises(LakeError, match="cannot be updated from a change"):
            changes.rollup("grp", into="silver.t", kinds="count(DISTINCT amount)")
        with pytest.raises(LakeError, match="name at least one aggregate"):
            changes.rollup("grp", into="silver.t")
