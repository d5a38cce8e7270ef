"""The lakehouse handle: layer views, lazy reads, the three write modes, atomicity."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

import medallion_nb as mnb
from medallion_nb import LakeError, UsageError
from tests.conftest import write_project

CONFIG = """
name: t
layers:
  - {name: bronze, notebook: nb.ipynb}
  - {name: silver, notebook: nb.ipynb}
  - {name: gold, notebook: nb.ipynb}
"""
NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


@pytest.fixture
def lake(tmp_path: Path):
    root = write_project(tmp_path / "p", CONFIG, {"nb.ipynb": NOTEBOOK})
    with mnb.connect(root, run_id="r1") as handle:
        yield handle


def rows(lake, sql: str) -> list[tuple]:
    return lake.sql(sql).fetchall()


def test_written_tables_are_queryable_as_layer_dot_table(lake):
    result = lake.write("silver.items", "SELECT range AS id, 'x' || range AS name FROM range(5)")
    assert (result.table, result.mode, result.rows, result.version, result.total_rows) == ("silver.items", "replace",
                                                                                           5, 0, 5)
    assert rows(lake, "SELECT count(*), max(id) FROM silver.items") == [(5, 4)]
    assert lake.tables() == ["silver.items"]
    assert lake.count("silver.items") == 5


def test_reads_are_lazy_relations(lake):
    lake.write("bronze.numbers", "SELECT range AS n FROM range(1000)")
    rel = lake.table("bronze.numbers").filter("n % 2 = 0")
    assert isinstance(rel, duckdb.DuckDBPyRelation)
    assert rel.aggregate("count(*)").fetchall() == [(500,)]


def test_replace_swaps_content_and_schema(lake):
    lake.write("gold.t", "SELECT 1 AS a, 'x' AS b")
    result = lake.write("gold.t", "SELECT 2.5 AS c")
    assert result.version == 1
    assert lake.table("gold.t").columns == ["c"]
    assert rows(lake, "SELECT * FROM gold.t") == [(pytest.approx(2.5),)]


def test_append_adds_rows_and_new_columns(lake):
    lake.write("bronze.e", "SELECT 1 AS id")
    lake.write("bronze.e", "SELECT 2 AS id, 'new' AS extra", mode="append")
    assert rows(lake, "SELECT id, extra FROM bronze.e ORDER BY id") == [(1, None), (2, "new")]


def test_merge_updates_matching_keys_and_inserts_the_rest(lake):
    lake.write("silver.c", "SELECT * FROM (VALUES (1, 'a', 10), (2, 'b', 20), (3, 'c', 30)) t(id, name, score)")
    result = lake.write("silver.c", "SELECT * FROM (VALUES (2, 'B', 21), (4, 'd', 40)) t(id, name, score)",
                        mode="merge", key="id")
    assert (result.inserted, result.updated, result.total_rows) == (1, 1, 4)
    assert rows(lake, "SELECT * FROM silver.c ORDER BY id") == [(1, "a", 10), (2, "B", 21), (3, "c", 30),
                                                                (4, "d", 40)]


def test_merge_on_a_composite_key(lake):
    lake.write("silver.m", "SELECT * FROM (VALUES (1, 'x', 1), (1, 'y', 2)) t(a, b, v)", mode="merge", key=["a", "b"])
    lake.write("silver.m", "SELECT * FROM (VALUES (1, 'y', 20), (2, 'y', 3)) t(a, b, v)", mode="merge",
               key=["a", "b"])
    assert rows(lake, "SELECT * FROM silver.m ORDER BY a, b") == [(1, "x", 1), (1, "y", 20), (2, "y", 3)]


def test_merge_refuses_duplicate_or_null_keys_and_leaves_the_table(lake):
    lake.write("silver.k", "SELECT 1 AS id, 'a' AS v")
    with pytest.raises(LakeError, match=r"merge key \(id\) is not unique in the new rows \(e.g. 2\)"):
        lake.write("silver.k", "SELECT * FROM (VALUES (2, 'x'), (2, 'y')) t(id, v)", mode="merge", key="id")
    with pytest.raises(LakeError, match=r"1 new row\(s\) have a null merge key \(id\)"):
        lake.write("silver.k", "SELECT NULL::INT AS id, 'x' AS v", mode="merge", key="id")
    with pytest.raises(LakeError, match="merge key nope is not a column of the new rows"):
        lake.write("silver.k", "SELECT 3 AS id", mode="merge", key="nope")
    with pytest.raises(LakeError, match="mode merge needs key"):
        lake.write("silver.k", "SELECT 3 AS id", mode="merge")
    assert rows(lake, "SELECT * FROM silver.k") == [(1, "a")]
    assert lake.history("silver.k")[0]["version"] == 0


def test_a_write_that_fails_midway_leaves_the_table_unchanged(lake):
    lake.write("silver.safe", "SELECT range AS id FROM range(10)")
    # The cast fails only at row 1,500,000: earlier batches have already streamed to the table format.
    failing = ("SELECT CAST(CASE WHEN range < 1500000 THEN range::VARCHAR ELSE 'oops' END AS BIGINT) AS id "
               "FROM range(2000000)")
    with pytest.raises(LakeError, match=r"write to silver.safe \(replace\) failed; the table is unchanged"):
        lake.write("silver.safe", failing)
    assert rows(lake, "SELECT count(*) FROM silver.safe") == [(10,)]
    assert lake.history("silver.safe")[0]["version"] == 0
    # A fresh handle (another reader) sees the same.
    with mnb.connect(lake.project.root) as other:
        assert other.count("silver.safe") == 10


def test_dataframes_and_arrow_tables_can_be_written(lake):
    lake.write("bronze.df", pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    lake.write("bronze.arrow", pa.table({"a": [3]}))
    assert rows(lake, "SELECT sum(a) FROM (SELECT a FROM bronze.df UNION ALL SELECT a FROM bronze.arrow)") == [(6,)]


def test_types_delta_cannot_store_are_converted(lake):
    lake.write("gold.types", "SELECT 200::UTINYINT AS u, sum(x)::HUGEINT AS h, INTERVAL 1 DAY AS i, "
                             "'a'::ENUM('a', 'b') AS e, TIME '10:00:00' AS t FROM (SELECT 1 AS x)")
    rel = lake.table("gold.types")
    assert [str(t) for t in rel.types] == ["SMALLINT", "BIGINT", "VARCHAR", "VARCHAR", "VARCHAR"]
    assert rel.fetchall()[0][:2] == (200, 1)


def test_bad_names_and_modes_are_clear_errors(lake):
    with pytest.raises(LakeError, match=r"must be <layer>\.<table>"):
        lake.write("orders", "SELECT 1 AS a")
    with pytest.raises(LakeError, match=r"'platinum' is not a layer of this project \(layers: bronze, silver, gold\)"):
        lake.write("platinum.x", "SELECT 1 AS a")
    with pytest.raises(LakeError, match="is not a valid name"):
        lake.write("gold.bad-name", "SELECT 1 AS a")
    with pytest.raises(LakeError, match="mode 'upsert' is not one of replace, append, merge"):
        lake.write("gold.x", "SELECT 1 AS a", mode="upsert")
    with pytest.raises(LakeError, match=r"table gold.missing does not exist"):
        lake.table("gold.missing")
    with pytest.raises(LakeError, match="column name 'a b' is not a plain name"):
        lake.write("gold.x", 'SELECT 1 AS "a b"')


def test_history_and_time_travel(lake):
    lake.write("gold.h", "SELECT 1 AS v")
    lake.run_id = "r2"
    lake.write("gold.h", "SELECT 2 AS v")
    history = lake.history("gold.h")
    assert [(h["version"], h["run_id"], h["mode"]) for h in history] == [(1, "r2", "replace"), (0, "r1", "replace")]
    assert lake.table("gold.h", version=0).fetchall() == [(1,)]
    assert lake.table("gold.h").fetchall() == [(2,)]
    info = lake.info("gold.h")
    assert (info["rows"], info["version"], info["last_run_id"]) == (1, 1, "r2")


def test_empty_tables_keep_their_schema(lake):
    lake.write("silver.empty", "SELECT 1 AS id, 'x' AS name WHERE false")
    assert lake.table("silver.empty").columns == ["id", "name"]
    assert rows(lake, "SELECT count(*) FROM silver.empty") == [(0,)]


def test_tables_written_by_another_process_appear_after_refresh(lake):
    other = mnb.connect(lake.project.root, run_id="other")
    other.write("gold.shared", "SELECT 42 AS answer")
    other.close()
    lake.refresh()
    assert rows(lake, "SELECT answer FROM gold.shared") == [(42,)]


def test_gold_tables_are_readable_without_our_library(lake):
    lake.write("gold.plain", "SELECT range AS id FROM range(3)")
    path = lake.project.lake / "gold" / "plain"
    code = (
        "import deltalake, duckdb, sys; "
        f"t = deltalake.DeltaTable({str(path)!r}); "
        "print(duckdb.sql('SELECT sum(id) FROM read_parquet($files)', params={'files': t.file_uris()}).fetchall())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[(3,)]"


def test_writes_are_logged_for_the_runner(lake, tmp_path, monkeypatch):
    log = tmp_path / "writes.jsonl"
    monkeypatch.setenv("MEDALLION_WRITE_LOG", str(log))
    lake.write("gold.logged", "SELECT 1 AS a")
    from medallion_nb.reporting import read_write_log

    entries = read_write_log(log)
    assert [(e["table"], e["rows"], e["run_id"]) for e in entries] == [("gold.logged", 1, "r1")]


def test_core_modules_do_not_import_ui_or_notebook_packages():
    code = (
        "import sys, medallion_nb, medallion_nb.ingest, medallion_nb.quality, medallion_nb.storage; "
        "bad = [m for m in ('ipywidgets', 'papermill', 'nbclient') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_missing_data_file_is_a_clear_error(lake):
    lake.write("silver.fragile", "SELECT 1 AS a")
    for part in (lake.project.lake / "silver" / "fragile").glob("*.parquet"):
        part.unlink()
    with pytest.raises(LakeError, match=r"table silver.fragile \(version 0\) cannot be read") as info:
        mnb.connect(lake.project.root)
    assert "full_refresh" in str(info.value)


def test_duckdb_resources_come_from_the_project_unless_overridden(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MEDALLION_MEMORY_LIMIT", raising=False)
    root = write_project(tmp_path / "q", CONFIG + "duckdb: {memory_limit: 512MB, threads: 1}\n",
                         {"nb.ipynb": NOTEBOOK})

    def settings(**kwargs) -> tuple:
        with mnb.connect(root, **kwargs) as handle:
            return handle.sql("SELECT current_setting('memory_limit'), current_setting('threads')").fetchall()[0]

    assert settings() == ("488.2 MiB", 1)
    monkeypatch.setenv("MEDALLION_MEMORY_LIMIT", "256MB")
    assert settings()[0] == "244.1 MiB"
    assert settings(memory_limit="128MB", threads=2) == ("122.0 MiB", 2)


def test_bad_duckdb_settings_are_config_errors(tmp_path: Path):
    root = write_project(tmp_path / "q", CONFIG + "duckdb: {memory_limit: lots, threads: 0}\n", {"nb.ipynb": NOTEBOOK})
    with pytest.raises(mnb.ProjectError, match=r"duckdb.memory_limit: 'lots' is not a size") as info:
        mnb.connect(root)
    assert "duckdb.threads: expected a whole number >= 1, got 0" in str(info.value)


def test_vacuum_reclaims_old_versions_and_keeps_the_current_table(lake):
    from medallion_nb.cli import main

    for i in range(3):
        lake.write("gold.v", f"SELECT {i} AS v")
    folder = lake.project.lake / "gold" / "v"
    assert len(list(folder.glob("*.parquet"))) == 3
    assert lake.vacuum(retain_hours=0, dry_run=True)["gold.v"]
    assert len(list(folder.glob("*.parquet"))) == 3  # a dry run deletes nothing
    assert main(["vacuum", "--project", str(lake.project.root), "--retain-hours", "0"]) == 0
    assert len(list(folder.glob("*.parquet"))) == 1
    lake.refresh()
    assert rows(lake, "SELECT v FROM gold.v") == [(2,)]
    assert lake.vacuum(retain_hours=0) == {"gold.v": []}
    with pytest.raises(UsageError, match="retain_hours must be a number of hours >= 0, got -1"):
        lake.vacuum(retain_hours=-1)
    assert main(["vacuum", "--project", str(lake.project.root), "--retain-hours", "-1"]) == 2  # the same rule


# -- the input contract: a table name, rows, or a table or rows; never guessed from the text ------------------

ROWS_SQL = "SELECT * FROM (VALUES (1, 'a', 3), (1, 'b', 5), (2, 'c', 7)) t(id, tag, n)"


def rows_as(kind: str, lake):
    """The same three rows as each kind of rows the methods take."""
    table = lake.sql(ROWS_SQL).to_arrow_table()
    return {"relation": lambda: lake.sql(ROWS_SQL), "sql": lambda: ROWS_SQL, "dataframe": table.to_pandas,
            "arrow": lambda: table, "batch": lambda: table.to_batches()[0],
            "reader": lambda: pa.RecordBatchReader.from_batches(table.schema, table.to_batches())}[kind]()


@pytest.mark.parametrize("kind", ["relation", "sql", "dataframe", "arrow", "batch", "reader"])
def test_every_kind_of_rows_is_written_alike(lake, kind):
    lake.write("silver.t", rows_as(kind, lake))
    assert rows(lake, "SELECT id, tag, n FROM silver.t ORDER BY tag") == [(1, "a", 3), (1, "b", 5), (2, "c", 7)]
    split = lake.write_split(rows_as(kind, lake), {"odd": "n % 7 = 0"}, good="silver.g", bad="silver.b")
    assert (split.good.rows, split.bad.rows) == (2, 1)
    assert sorted(lake.split(rows_as(kind, lake), {"big": "n > 4"}).counts().items()) == [("big", 2), ("passed", 1)]
    assert lake.sync("silver.s", rows_as(kind, lake), key=["id", "tag"]).total_rows == 3


@pytest.mark.parametrize("kind", ["table", "relation", "dataframe", "arrow"])
def test_check_and_latest_take_a_table_name_or_rows(lake, kind):
    lake.write("bronze.events", ROWS_SQL)
    data = "bronze.events" if kind == "table" else rows_as(kind, lake)
    assert lake.check(data, {"not_null": ["id"], "row_count": {"min": 3}}).ok
    assert sorted(lake.latest(data, key="id", order_by="n DESC").fetchall()) == [(1, "b", 5), (2, "c", 7)]
    keys = lake.keys("SELECT 2 AS id")
    assert keys.filter(data).fetchall() == [(2, "c", 7)]


@pytest.mark.parametrize("call", [
    lambda lake: lake.check("SELECT * FROM silver.t", {"not_null": ["id"]}),
    lambda lake: lake.latest("SELECT * FROM silver.t", key="id", order_by="n"),
    lambda lake: lake.keys("SELECT 1 AS id").filter("SELECT * FROM silver.t"),
], ids=["check", "latest", "filter"])
def test_sql_text_where_a_table_name_belongs_is_named_and_points_at_lake_sql(lake, call):
    lake.write("silver.t", ROWS_SQL)
    with pytest.raises(LakeError) as info:
        call(lake)
    message = str(info.value)
    assert "data: table name 'SELECT * FROM silver.t' must be <layer>.<table>" in message
    assert "is not a layer" not in message
    assert "lake.sql('SELECT ...')" in (info.value.hint or "")


@pytest.mark.parametrize(("call", "message"), [
    (lambda lake: lake.write("silver.x", 42),
     "write: data: expected a DuckDB relation, SQL text, a pandas DataFrame or Arrow data, got an int (42)"),
    (lambda lake: lake.write(lake.sql("SELECT 1 AS id"), "SELECT 1 AS id"),
     r"write: name: expected a table name (<layer>.<table>, e.g. silver.orders), got a DuckDBPyRelation"),
    (lambda lake: lake.write("SELECT 1 AS id", "SELECT 1 AS id"), "write: name: table name 'SELECT 1 AS id' must be"),
    (lambda lake: lake.write("silver.x", "SELECT 1 AS id", mode="merge", key="id", delete={"id": 1}),
     "write: delete: expected a DuckDB relation, SQL text, a pandas DataFrame or Arrow data, got a dict"),
    (lambda lake: lake.stage("silver.x", None), "write: data: expected a DuckDB relation"),
    (lambda lake: lake.write_split("SELECT 1 AS id", {"r": "id > 1"}, good="silver.g", bad=None),
     "write_split: bad: expected a table name (<layer>.<table>, e.g. silver.orders), got None"),
    (lambda lake: lake.write_split(7, {"r": "id > 1"}, good="silver.g", bad="silver.b"),
     "write_split: data: expected a DuckDB relation, SQL text, a pandas DataFrame or Arrow data, got an int (7)"),
    (lambda lake: lake.split([1, 2], {"r": "id > 1"}), "split: data: expected a DuckDB relation"),
    (lambda lake: lake.sync("silver.x", 1.5, key="id"), "sync: data: expected a DuckDB relation"),
    (lambda lake: lake.sync("silver", "SELECT 1 AS id", key="id"), "sync: name: table name 'silver' must be"),
    (lambda lake: lake.keys(None), "keys: data: expected a DuckDB relation"),
    (lambda lake: lake.check(None, {"not_null": ["id"]}),
     "check: data: expected a table name (<layer>.<table>) or rows: a DuckDB relation (e.g. lake.sql('SELECT ...')), "
     "a pandas DataFrame or Arrow data, got None"),
    (lambda lake: lake.latest(3, key="id", order_by="id"), "latest: data: expected a table name (<layer>.<table>) "
                                                           "or rows"),
    (lambda lake: lake.table("platinum.t"),
     "table: name: table 'platinum.t': 'platinum' is not a layer of this project (layers: bronze, silver, gold)"),
    (lambda lake: lake.vacuum("silver"), "vacuum: name: table name 'silver' must be <layer>.<table>"),
    (lambda lake: lake.info(lake.sql("SELECT 1")), "info: name: expected a table name"),
    (lambda lake: lake.count("gold"), "count: name: table name 'gold' must be"),
], ids=["write-data", "write-name-relation", "write-name-sql", "write-delete", "stage-data", "write_split-bad",
        "write_split-data", "split-data", "sync-data", "sync-name", "keys-data", "check-data", "latest-data",
        "table-layer", "vacuum-name", "info-name", "count-name"])
def test_a_wrong_input_names_the_method_argument_and_what_it_takes(lake, call, message):
    with pytest.raises(LakeError) as info:
        call(lake)
    assert message in str(info.value)
    assert lake.tables() == []  # nothing was written


def test_a_table_name_given_as_rows_points_at_lake_table(lake):
    lake.write("silver.t", ROWS_SQL)
    with pytest.raises(LakeError, match=r"write: data: query failed") as info:
        lake.write("gold.t", "silver.t")
    assert "lake.table('silver.t')" in (info.value.hint or "")
    assert not lake.exists("gold.t")


def test_public_methods_say_what_they_take_and_return():
    """No public method of the lakehouse hides a real type behind Any (``**options`` aside)."""
    import inspect

    from medallion_nb.lakehouse import Lakehouse

    loose = []
    for name, method in inspect.getmembers(Lakehouse, inspect.isfunction):
        if name.startswith("_"):
            continue
        signature = inspect.signature(method)
        if signature.return_annotation in (inspect.Signature.empty, "Any"):
            loose.append(f"{name} returns {signature.return_annotation}")
        loose += [f"{name}({p.name})" for p in signature.parameters.values()
                  if p.kind is not p.VAR_KEYWORD and p.name != "self" and p.annotation in (p.empty, "Any")]
    assert not loose, loose
