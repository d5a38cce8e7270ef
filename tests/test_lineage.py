"""Table-level lineage: inferred from the notebooks' code and SQL, declared where it cannot be."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, write_project
from notebook_factory import CONNECT, notebook_text

from medallion_nb import ProjectError, load_project
from medallion_nb.lineage import TableStats, infer_notebook, project_lineage, sql_tables

LAYERS = ("bronze", "silver", "gold")


def test_the_demo_lineage_is_the_expected_table_graph():
    lineage = project_lineage(load_project(REPO))
    graph = {lineage.relative(nb.notebook): (nb.sources, nb.reads, nb.writes) for nb in lineage.notebooks}
    assert graph == {
        "notebooks/bronze.ipynb": (("customers", "orders", "products"), (),
                                   ("bronze.customers", "bronze.customers_rejects", "bronze.orders",
                                    "bronze.orders_rejects", "bronze.products", "bronze.products_rejects")),
        "notebooks/silver.ipynb": ((), ("bronze.customers", "bronze.orders", "bronze.products"),
                                   ("silver.customers", "silver.order_lines", "silver.orders",
                                    "silver.orders_quarantine", "silver.products")),
        "notebooks/gold.ipynb": ((), ("silver.customers", "silver.order_lines"),
                                 ("gold.customer_lifetime_value", "gold.daily_sales",
                                  "gold.revenue_by_category_month")),
    }
    assert all(nb.complete for nb in lineage.notebooks)
    assert [lineage.relative(up.notebook) for up in lineage.upstream_notebooks(lineage.notebook(
        "notebooks/gold.ipynb"))] == ["notebooks/silver.ipynb"]


@pytest.mark.parametrize(("sql", "tables"), [
    ("SELECT * FROM bronze.orders", {"bronze.orders"}),
    ("WITH x AS (SELECT * FROM bronze.orders) SELECT * FROM x JOIN silver.p p ON true", {"bronze.orders", "silver.p"}),
    ('SELECT 1 WHERE a IN (SELECT id FROM "gold"."my t")', {"gold.my t"}),
    ("SELECT * FROM o LEFT JOIN silver.products p USING (id)", {"silver.products"}),
    ("SELECT * FROM main.t, other.x", set()),  # not a layer of the project
    ("CREATE TABLE t AS SELECT * FROM silver.x", {"silver.x"}),  # not a SELECT: DuckDB's name scan
    ("order_id, ordered_at", set()),  # not SQL at all
])
def test_sql_is_read_by_duckdbs_own_parser(sql, tables):
    assert sql_tables(sql, LAYERS) == tables


def test_library_calls_name_reads_and_writes(tmp_path):
    nb = tmp_path / "n.ipynb"
    nb.write_text(notebook_text(
        CONNECT,
        "%time x = 1\n!ls",
        'rel = lake.table("bronze.a")\nlake.write("silver.b", rel, mode="merge", key="id")',
        'lake.write_split(lake.sql("select * from bronze.c"), {"bad": "x < 0"}, good="silver.good", bad="silver.bad")',
        'lake.changes("bronze.d")\nlake.latest("bronze.e", key="id", order_by="t")',
        "lake.ingest('orders')",
        'q = """\nSELECT * FROM silver.b\n"""\nlake.write("gold.c", q)',
        'lake.sql(f"select * from {name}")\nlake.write(name, q)',
    ), encoding="utf-8")
    found = infer_notebook(nb, LAYERS, ("orders", "customers"))
    assert found.reads == {"bronze.a", "bronze.c", "bronze.d", "bronze.e", "silver.b"}
    assert found.writes == {"silver.b", "silver.good", "silver.bad", "gold.c"}
    assert found.sources == {"orders"}
    assert found.unresolved == ("cell 9, line 1: SQL built at run time (f-string)",
                                "cell 9, line 2: a table name computed at run time")


def test_declared_reads_and_writes_complete_what_parsing_cannot_tell(tmp_path):
    root = write_project(tmp_path / "p", """\
name: p
layers:
  - name: bronze
    notebook: b.ipynb
  - name: silver
    notebooks:
      - path: s.ipynb
        reads: [bronze.x]
        writes: [silver.y]
""", {"b.ipynb": notebook_text(CONNECT, 'lake.write("bronze.x", "select 1 as n")'),
      "s.ipynb": notebook_text(CONNECT, 'name = "silver.y"\nlake.write(name, lake.sql(f"select * from {src}"))')})
    lineage = project_lineage(load_project(root))
    s = lineage.notebook("s.ipynb")
    assert (s.reads, s.writes, s.declared, s.complete) == (("bronze.x",), ("silver.y",), True, True)
    assert lineage.writers["silver.y"] is s


def test_config_errors_in_declarations_are_named(tmp_path):
    root = write_project(tmp_path / "p", """\
name: p
layers:
  - name: bronze
    notebooks:
      - path: b.ipynb
        reads: silver.x
        writes: [NotATable]
        extra: 1
""", {"b.ipynb": notebook_text()})
    with pytest.raises(ProjectError) as err:
        load_project(root)
    text = str(err.value)
    assert "layers.bronze.notebooks[0].reads: expected a list of <layer>.<table> names" in text
    assert "layers.bronze.notebooks[0].writes: expected a list of <layer>.<table> names" in text
    assert "layers.bronze.notebooks[0].extra: unknown key (allowed: path, reads, writes)" in text


def test_lineage_that_contradicts_the_layers_lists_every_problem(tmp_path):
    root = write_project(tmp_path / "p", """\
name: p
layers:
  - name: bronze
    notebooks: [a.ipynb, b.ipynb]
  - name: silver
    notebook: s.ipynb
""", {"a.ipynb": notebook_text(CONNECT, 'lake.write("bronze.x", lake.table("silver.y"))'),
      "b.ipynb": notebook_text(CONNECT, 'lake.write("bronze.x", "select 1 as n")'),
      "s.ipynb": notebook_text(CONNECT, 'lake.write("silver.y", "select 1 as n")')})
    with pytest.raises(ProjectError) as err:
        project_lineage(load_project(root))
    text = str(err.value)
    assert "bronze.x is written by a.ipynb and by b.ipynb; one notebook writes a table" in text
    assert ("a.ipynb (layer bronze) reads silver.y, which layer silver writes later "
            "(layers run in the order bronze, silver)") in text
    assert "declare reads:/writes: per notebook" in text


def test_table_nodes_show_rows_and_last_run():
    lineage = project_lineage(load_project(REPO), {"silver.orders": TableStats(3_912, 4, "nightly-7")})
    assert "silver.orders (3,912 rows, run nightly-7)" in lineage.describe()
    assert '"silver.orders\\n3,912 rows\\nrun nightly-7"' in lineage.dot()
    bundle = lineage._repr_mimebundle_()
    assert bundle["text/plain"] == lineage.describe()
    assert "<svg" in bundle["image/svg+xml"]


def test_notebooks_in_odd_places_keep_their_path(tmp_path):
    root = write_project(tmp_path / "odd", "name: odd\nlayers:\n  - name: bronze\n    notebook: 'nb/01 Load.ipynb'\n",
                         {"nb/01 Load.ipynb": notebook_text(CONNECT, 'lake.write("bronze.t", "select 1 as n")')})
    lineage = project_lineage(load_project(root))
    assert lineage.relative(lineage.notebooks[0].notebook) == "nb/01 Load.ipynb"
    assert Path(lineage.select(["bronze.t"]).pop()).name == "01 Load.ipynb"
