"""The run plan: the lineage as a Hamilton DAG, selection, and Hamilton executing it (no kernels here)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_project
from notebook_factory import CONNECT, notebook_text

from medallion_nb import MedallionError, ProjectError, UsageError, load_project
from medallion_nb.runner import build_plan
from medallion_nb.runner.plan import NOT_RUN, NOT_SELECTED, NotebookFailed

CONFIG = """\
name: plans
layers:
  - name: bronze
    notebook: notebooks/bronze.ipynb
  - name: silver
    notebooks: [notebooks/orders.ipynb, notebooks/customers.ipynb]
    timeout: PT10M
  - name: gold
    notebooks: [notebooks/sales.ipynb, notebooks/people.ipynb]
"""

NOTEBOOKS = {
    "notebooks/bronze.ipynb": (CONNECT, 'lake.write("bronze.orders", "select 1 as id")',
                               'lake.write("bronze.customers", "select 1 as id")'),
    "notebooks/orders.ipynb": (CONNECT, 'lake.write("silver.orders", lake.sql("select * from bronze.orders"))'),
    "notebooks/customers.ipynb": (CONNECT, 'c = lake.table("bronze.customers")',
                                  'lake.write("silver.customers", c)'),
    "notebooks/sales.ipynb": (CONNECT, 'lake.write("gold.sales", """\n  SELECT o.* FROM silver.orders o\n""")'),
    "notebooks/people.ipynb": (CONNECT, 'lake.write("gold.people", "select * from silver.customers")'),
}


@pytest.fixture
def project(tmp_path: Path):
    files = {path: notebook_text(*cells) for path, cells in NOTEBOOKS.items()}
    return load_project(write_project(tmp_path / "plans", CONFIG, files))


def deps(plan) -> dict[str, list[str]]:
    return {name: sorted(d.name for d in node.dependencies if d.name != "run")
            for name, node in plan.driver.graph.nodes.items() if node.tags.get("kind")}


def test_the_dag_is_the_lineage_tables_and_notebooks(project):
    plan = build_plan(project)
    assert deps(plan) == {
        "notebooks/bronze.ipynb": [],
        "bronze.orders": ["notebooks/bronze.ipynb"],
        "bronze.customers": ["notebooks/bronze.ipynb"],
        "notebooks/orders.ipynb": ["bronze.orders"],
        "notebooks/customers.ipynb": ["bronze.customers"],
        "silver.orders": ["notebooks/orders.ipynb"],
        "silver.customers": ["notebooks/customers.ipynb"],
        "notebooks/sales.ipynb": ["silver.orders"],
        "notebooks/people.ipynb": ["silver.customers"],
        "gold.sales": ["notebooks/sales.ipynb"],
        "gold.people": ["notebooks/people.ipynb"],
    }
    kinds = {name: node.tags["kind"] for name, node in plan.driver.graph.nodes.items() if node.tags.get("kind")}
    assert kinds["notebooks/orders.ipynb"] == "notebook"
    assert kinds["silver.orders"] == "table"
    assert [s.node for s in plan.steps] == ["notebooks/bronze.ipynb", "notebooks/orders.ipynb",
                                            "notebooks/customers.ipynb", "notebooks/sales.ipynb",
                                            "notebooks/people.ipynb"]
    assert plan.step("notebooks/orders.ipynb").layer.timeout == "PT10M"


def test_select_takes_a_table_and_what_is_downstream_or_upstream(project):
    def chosen(*selectors: str, layers=None) -> list[str]:
        return [s.node for s in build_plan(project, layers, list(selectors)).steps]

    assert chosen("silver.orders") == ["notebooks/orders.ipynb"]
    assert chosen("silver.orders+") == ["notebooks/orders.ipynb", "notebooks/sales.ipynb"]
    assert chosen("+gold.people") == ["notebooks/bronze.ipynb", "notebooks/customers.ipynb",
                                      "notebooks/people.ipynb"]
    assert chosen("bronze.orders+") == ["notebooks/bronze.ipynb", "notebooks/orders.ipynb",
                                        "notebooks/customers.ipynb", "notebooks/sales.ipynb",
                                        "notebooks/people.ipynb"]  # bronze writes both bronze tables
    assert chosen("silver") == ["notebooks/orders.ipynb", "notebooks/customers.ipynb"]
    assert chosen("notebooks/people.ipynb") == ["notebooks/people.ipynb"]
    assert chosen("bronze.orders+", layers=["gold"]) == ["notebooks/sales.ipynb", "notebooks/people.ipynb"]
    with pytest.raises(ProjectError, match=r"--select silver\.nope\+: 'silver\.nope' is not a table"):
        build_plan(project, None, ["silver.nope+"])


def test_an_unknown_layer_lists_the_known_ones(project):
    with pytest.raises(ProjectError, match=r"no layer 'platinum' \(layers are: bronze, silver, gold\)"):
        build_plan(project, ["platinum"])


class FakeRun:
    """The DAG's ``run`` input without kernels: notes when each notebook ran; ``fail`` ones fail.

    The notebooks in ``meet`` wait for each other before they end: run one after the
    other, the first would wait in vain (and fail), so overlap is proven without timing.
    """

    def __init__(self, fail: set[str] = frozenset(), meet: set[str] = frozenset()) -> None:
        self.fail = fail
        self.meet = meet
        self.barrier = threading.Barrier(len(meet)) if meet else None
        self.spans: dict[str, tuple[float, float]] = {}
        self.tables: list[str] = []
        self.lock = threading.Lock()

    def source_state(self, name: str) -> dict[str, Any]:
        return {"digest": name}

    def table_state(self, name: str) -> dict[str, Any]:
        with self.lock:
            self.tables.append(name)
        return {"version": 0}

    def notebook(self, node: str, inputs: dict[str, Any]) -> str:
        started = time.monotonic()
        if node in self.meet:
            self.barrier.wait(timeout=120)
        with self.lock:
            self.spans[node] = (started, time.monotonic())
        if node in self.fail:
            raise NotebookFailed(node)
        return "succeeded"


def test_hamilton_runs_independent_notebooks_side_by_side(project):
    run = FakeRun(meet={"notebooks/orders.ipynb", "notebooks/customers.ipynb"})
    results = build_plan(project).execute(run)
    assert results["gold.sales"] == {"version": 0}
    spans = run.spans
    orders, customers = spans["notebooks/orders.ipynb"], spans["notebooks/customers.ipynb"]
    assert orders[0] < customers[1], "silver notebooks did not overlap"
    assert customers[0] < orders[1], "silver notebooks did not overlap"
    # Each notebook starts only after the notebook writing its inputs has ended.
    assert spans["notebooks/sales.ipynb"][0] >= orders[1]
    assert spans["notebooks/people.ipynb"][0] >= customers[1]
    assert spans["notebooks/orders.ipynb"][0] >= spans["notebooks/bronze.ipynb"][1]


def test_a_failure_skips_exactly_what_depends_on_it(project):
    run = FakeRun(fail={"notebooks/orders.ipynb"})
    results = build_plan(project).execute(run)
    assert results["notebooks/orders.ipynb"] is NOT_RUN
    assert results["silver.orders"] is NOT_RUN
    assert results["notebooks/sales.ipynb"] is NOT_RUN
    assert results["gold.sales"] is NOT_RUN
    assert "notebooks/sales.ipynb" not in run.spans  # never called
    assert results["gold.people"] == {"version": 0}
    assert set(run.spans) == {"notebooks/bronze.ipynb", "notebooks/orders.ipynb", "notebooks/customers.ipynb",
                              "notebooks/people.ipynb"}


def test_notebooks_outside_the_selection_are_not_run(project):
    run = FakeRun()
    plan = build_plan(project, None, ["silver.orders+"])
    results = plan.execute(run)
    assert set(run.spans) == {"notebooks/orders.ipynb", "notebooks/sales.ipynb"}
    assert "bronze.orders" in run.tables  # read as it is
    assert NOT_SELECTED not in results.values()


def test_a_notebook_whose_reads_cannot_be_told_waits_for_the_layer_before(tmp_path):
    config = CONFIG.replace("notebooks: [notebooks/sales.ipynb, notebooks/people.ipynb]",
                            "notebook: notebooks/dyn.ipynb")
    files = {path: notebook_text(*cells) for path, cells in NOTEBOOKS.items()}
    files["notebooks/dyn.ipynb"] = notebook_text(
        CONNECT, 't = "orders"\nlake.write("gold.x", lake.sql(f"select * from silver.{t}"))')
    plan = build_plan(load_project(write_project(tmp_path / "dyn", config, files)))
    assert deps(plan)["notebooks/dyn.ipynb"] == ["notebooks/customers.ipynb", "notebooks/orders.ipynb"]
    assert "SQL built at run time (f-string)" in plan.describe()

    declared = config.replace("notebook: notebooks/dyn.ipynb",
                              "notebooks:\n      - path: notebooks/dyn.ipynb\n        reads: [silver.orders]")
    plan = build_plan(load_project(write_project(tmp_path / "declared", declared, files)))
    assert deps(plan)["notebooks/dyn.ipynb"] == ["silver.orders"]


def test_describe_lists_notebooks_with_reads_writes_and_what_they_wait_for(project):
    text = build_plan(project).describe()
    lines = text.splitlines()
    assert lines[0] == "plans: 5 notebook(s), 6 table(s)"
    i = lines.index("  notebooks/sales.ipynb")
    assert lines[i + 1:i + 4] == ["    reads   silver.orders", "    writes  gold.sales",
                                  "    after   notebooks/orders.ipynb"]


def test_dot_source_has_tables_notebooks_and_edges(project):
    dot = build_plan(project).dot()
    for edge in ('"notebooks/bronze.ipynb" -> "bronze.orders"', '"bronze.orders" -> "notebooks/orders.ipynb"',
                 '"silver.customers" -> "notebooks/people.ipynb"', '"notebooks/sales.ipynb" -> "gold.sales"'):
        assert edge in dot
    assert 'subgraph "cluster_silver"' in dot


def test_images_are_drawn_by_graphviz(project):
    plan = build_plan(project)
    svg = plan.image("svg").decode()
    assert "<svg" in svg
    assert "silver.orders" in svg
    assert plan.image("png").startswith(b"\x89PNG")
    with pytest.raises(UsageError, match="cannot draw the DAG as 'gif'; use one of dot, png, svg, pdf"):
        plan.image("gif")


def test_a_missing_dot_program_is_a_clear_error(project, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(MedallionError, match=r"needs Graphviz's `dot` program") as err:
        build_plan(project).image("png")
    assert "write a .dot file" in str(err.value)
