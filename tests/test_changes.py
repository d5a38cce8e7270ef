"""lake.changes(): the rows committed since this notebook last consumed a table, recorded with its output."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import LakeError
from medallion_nb.storage.changes import app_id
from tests.conftest import consumer as notebook
from tests.conftest import sorted_rows as rows


@pytest.fixture
def root(two_layers: Path) -> Path:
    return two_layers


def test_first_time_everything_then_only_what_is_new(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.orders", "SELECT range AS id, 'a' AS v FROM range(3)")
    with notebook(root) as lake:
        changes = lake.changes("bronze.orders")
        assert changes.full
        assert rows(changes.rows) == [(0, "a"), (1, "a"), (2, "a")]
        lake.write("silver.orders", changes.rows, mode="merge", key="id")
    with notebook(root) as lake:
        changes = lake.changes("bronze.orders")
        assert (changes.full, changes.start, changes.end, rows(changes.rows)) == (False, 0, 0, [])
        assert "nothing new since version 0" in str(changes)
    with mnb.connect(root) as lake:
        lake.write("bronze.orders", "SELECT 3 AS id, 'b' AS v", mode="append")
        lake.write("bronze.orders", "SELECT 4 AS id, 'c' AS v", mode="append")
    with notebook(root) as lake:
        changes = lake.changes("bronze.orders")
        assert (changes.start, changes.end, changes.added_files) == (0, 2, 2)
        assert rows(changes.rows) == [(3, "b"), (4, "c")]
        assert rows(changes.deleted) == []
        result = lake.write("silver.orders", changes.rows, mode="merge", key="id")
        assert result.total_rows == 5
        # Recorded in the same commit as the output: Delta's txn action.
        assert lake.store.transaction_version("silver", "orders", app_id("silver", "bronze.orders")) == 2


def test_appended_changes_read_only_the_new_files(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.e", "SELECT range AS id FROM range(100)")
        old = lake.store.snapshot("bronze", "e").files
    with notebook(root) as lake:
        lake.write("silver.e", lake.changes("bronze.e").rows)
    with mnb.connect(root) as lake:
        lake.write("bronze.e", "SELECT 1000 AS id", mode="append")
    with notebook(root) as lake:
        for path in old:  # the files consumed before are no longer readable at all
            Path(path).write_bytes(b"not parquet any more")
        assert lake.changes("bronze.e").rows.fetchall() == [(1000,)]


def test_rewrites_give_inserted_and_deleted_rows_not_the_carried_over_ones(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.c", "SELECT range AS id, 'v1' AS v FROM range(10)")
    with notebook(root) as lake:
        lake.write("silver.c", lake.changes("bronze.c").rows)
    with mnb.connect(root) as lake:
        lake.write("bronze.c", "SELECT * FROM (VALUES (3, 'v2'), (42, 'new')) t(id, v)", mode="merge", key="id",
                   delete="SELECT 7 AS id")
        lake.write("bronze.c", "SELECT 5 AS id, 'w' AS v", mode="replace_where", where="id = 5")
    with notebook(root) as lake:
        changes = lake.changes("bronze.c")
        assert changes.removed_files > 0
        assert rows(changes.rows) == [(3, "v2"), (42, "new"), (5, "w")]
        assert rows(changes.deleted) == [(3, "v1"), (5, "v1"), (7, "v1")]


def test_a_crash_before_the_output_commit_reads_the_same_change_again(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT range AS id FROM range(5)")
    with notebook(root) as lake:
        lake.write("silver.o", lake.changes("bronze.o").rows, mode="append")
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT 5 AS id", mode="append")
    with notebook(root) as lake:
        staged = lake.stage("silver.o", lake.changes("bronze.o").rows, mode="append")
        staged.abort()  # the notebook dies before its commit
    with notebook(root) as lake:
        changes = lake.changes("bronze.o")
        assert (changes.start, rows(changes.rows)) == (0, [(5,)])
        lake.write("silver.o", changes.rows, mode="append")
    with notebook(root) as lake:
        assert rows(lake.table("silver.o")) == [(i,) for i in range(6)]


def test_several_outputs_and_a_crash_between_them(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT range AS id FROM range(3)")
    with notebook(root) as lake:
        new = lake.changes("bronze.o").rows
        lake.write("silver.a", new, mode="append")
        lake.write("silver.b", new, mode="append")
        lake.write("silver.m", new, mode="merge", key="id")
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT 3 AS id", mode="append")
    with notebook(root) as lake:
        new = lake.changes("bronze.o").rows
        lake.write("silver.a", new, mode="append")
        # ... and the notebook dies here, before silver.b and silver.m.
    with notebook(root) as lake:
        changes = lake.changes("bronze.o")
        assert changes.start == 0  # the lowest version any output recorded
        again = lake.write("silver.a", changes.rows, mode="append")
        assert again.skipped  # silver.a already holds it: Delta's idempotent-writer rule
        assert "up to date" in str(again)
        lake.write("silver.b", changes.rows, mode="append")
        lake.write("silver.m", changes.rows, mode="merge", key="id")
        for table in ("silver.a", "silver.b", "silver.m"):
            assert rows(lake.table(table)) == [(0,), (1,), (2,), (3,)], table
    # A new change after a partial run: an append output cannot take a range it partly holds.
    with notebook(root) as lake:
        lake.write("silver.a", lake.changes("bronze.o").rows, mode="append")  # nothing new: skipped
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT 4 AS id", mode="append")
    with notebook(root) as lake:
        lake.write("silver.a", lake.changes("bronze.o").rows, mode="append")
    with mnb.connect(root) as lake:
        lake.write("bronze.o", "SELECT 5 AS id", mode="append")
    with notebook(root) as lake:
        with pytest.raises(LakeError, match=r"already holds bronze.o up to version 2, but the rows come from "
                                            r"versions 2..3; appending would add some rows twice"):
            lake.write("silver.a", lake.changes("bronze.o").rows, mode="append")
        lake.write("silver.b", lake.changes("bronze.o").rows, mode="append")


def test_nothing_new_writes_no_version_of_an_incremental_output(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.n", "SELECT 1 AS id")
    with notebook(root) as lake:
        lake.write("silver.n", lake.changes("bronze.n").rows, mode="merge", key="id")
    with notebook(root) as lake:
        result = lake.write("silver.n", lake.changes("bronze.n").rows, mode="merge", key="id")
        assert result.skipped
        assert [h["version"] for h in lake.history("silver.n")] == [0]


def test_full_refresh_gives_every_row_and_a_recreated_table_starts_over(root):
    with mnb.connect(root) as lake:
        lake.write("bronze.f", "SELECT range AS id FROM range(3)")
        for i in range(3):
            lake.write("bronze.f", f"SELECT {10 + i} AS id", mode="append")
    with notebook(root) as lake:
        lake.write("silver.f", lake.changes("bronze.f").rows)
    with notebook(root) as lake:
        changes = lake.changes("bronze.f", full_refresh=True)
        assert changes.full
        assert len(rows(changes.rows)) == 6
        assert not lake.write("silver.f", changes.rows, mode="append").skipped
    import shutil

    shutil.rmtree(root / "data" / "lake" / "bronze" / "f")
    with mnb.connect(root) as lake:
        lake.write("bronze.f", "SELECT 99 AS id")
    with notebook(root) as lake:
        changes = lake.changes("bronze.f")
        assert changes.full
        assert "re-created" in str(changes)
        assert rows(changes.rows) == [(99,)]


def test_changes_errors_say_what_to_do(root):
    with mnb.connect(root) as lake:
        with pytest.raises(LakeError, match="needs to know which notebook") as info:
            lake.changes("bronze.x")
        assert "notebook='<name>'" in str(info.value)
    with notebook(root) as lake:
        with pytest.raises(LakeError, match=r"table bronze\.x does not exist"):
            lake.changes("bronze.x")
        lake.write("bronze.x", "SELECT 1 AS id")
        lake.write("silver.x", lake.changes("bronze.x").rows)
        lake.write("bronze.x", "SELECT 2 AS id")  # a replace: files removed
        lake.vacuum(retain_hours=0)
    with notebook(root) as lake, pytest.raises(LakeError, match="were vacuumed") as info:
        lake.changes("bronze.x")
    assert "full_refresh=True" in str(info.value)


OPS = ("append", "merge", "replace_where", "replace", "nothing")


@pytest.mark.parametrize("seed", range(6))
def test_changes_equal_the_difference_of_the_two_versions(root, seed):
    """Property: after any sequence of writes, changes() is exactly (end EXCEPT ALL start) and back."""
    rnd = random.Random(seed)
    with mnb.connect(root) as lake:
        lake.write("bronze.p", "SELECT range AS id, range % 3 AS g, 'v0' AS v FROM range(20)")
    with notebook(root) as lake:
        lake.write("silver.copy", lake.changes("bronze.p").rows)
    for step in range(8):
        with mnb.connect(root) as lake:
            for _ in range(rnd.randint(1, 3)):
                op = rnd.choice(OPS)
                ids = rnd.sample(range(40), 4)
                values = ", ".join(f"({i}, {i % 3}, 's{step}')" for i in ids)
                new = f"SELECT * FROM (VALUES {values}) t(id, g, v)"
                if op == "append":
                    lake.write("bronze.p", new, mode="append")
                elif op == "merge":
                    lake.write("bronze.p", new, mode="merge", key="id", delete=f"SELECT {rnd.randint(0, 39)} AS id")
                elif op == "replace_where":
                    g = rnd.randint(0, 2)
                    lake.write("bronze.p", new + f" WHERE g = {g}", mode="replace_where", where=f"g = {g}")
                elif op == "replace" and rnd.random() < 0.3:
                    lake.write("bronze.p", new)
        with notebook(root) as lake:
            changes = lake.changes("bronze.p")
            if changes.start >= 0:
                before = lake.table("bronze.p", version=changes.start)
                after = lake.table("bronze.p", version=changes.end)
                assert rows(changes.rows) == rows(after.except_(before)), (seed, step)
                assert rows(changes.deleted) == rows(before.except_(after)), (seed, step)
            # Apply the change to the copy: it must equal the table.
            copy = lake.table("silver.copy").except_(changes.deleted).union(changes.rows) if not changes.full \
                else changes.rows
            lake.write("silver.copy", copy.to_arrow_table())
            assert rows(lake.table("silver.copy")) == rows(lake.table("bronze.p")), (seed, step)
