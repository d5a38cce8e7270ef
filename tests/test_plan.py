"""The run plan as a Hamilton DAG: order, dependencies, selection, text and drawings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import write_project
from notebook_factory import notebook_text

from medallion_nb import MedallionError, ProjectError, load_project
from medallion_nb.runner import LayerRecord, NotebookTask, build_plan
from medallion_nb.runner.plan import LayerStep, NotebookStep, StepRunner

CONFIG = """\
name: plans
layers:
  - name: bronze
    notebook: notebooks/bronze.ipynb
  - name: silver
    notebooks: [notebooks/orders.ipynb, notebooks/customers.ipynb]
    timeout: PT10M
  - name: gold
    notebook: notebooks/gold.ipynb
"""


@pytest.fixture
def project(tmp_path: Path):
    files = {f"notebooks/{n}.ipynb": notebook_text() for n in ("bronze", "orders", "customers", "gold")}
    return load_project(write_project(tmp_path / "plans", CONFIG, files))


def test_layers_follow_each_other_and_notebooks_feed_their_layer(project):
    plan = build_plan(project)
    assert plan.layer_names == ("bronze", "silver", "gold")
    bronze, silver, gold = plan.steps
    assert (bronze.after, silver.after, gold.after) == (None, "bronze", "silver")
    assert [nb.notebook.name for nb in silver.notebooks] == ["orders.ipynb", "customers.ipynb"]
    assert silver.layer.timeout == "PT10M"

    nodes = plan.driver.graph.nodes
    deps = {name: sorted(d.name for d in node.dependencies) for name, node in nodes.items()}
    assert deps["bronze_bronze_ipynb"] == ["run"]
    assert deps["bronze"] == ["bronze_bronze_ipynb", "run"]
    assert deps["silver_orders_ipynb"] == ["bronze", "run"]
    assert deps["silver_customers_ipynb"] == ["bronze", "run"]
    assert deps["silver"] == ["run", "silver_customers_ipynb", "silver_orders_ipynb"]
    assert deps["gold_gold_ipynb"] == ["run", "silver"]
    assert nodes["silver_orders_ipynb"].tags["notebook"] == "notebooks/orders.ipynb"


def test_chosen_layers_run_in_project_order_one_after_another(project):
    plan = build_plan(project, ["gold", "bronze", "gold"])
    assert plan.layer_names == ("bronze", "gold")
    assert plan.steps[1].after == "bronze"
    assert "silver" not in plan.driver.graph.nodes


def test_an_unknown_layer_lists_the_known_ones(project):
    with pytest.raises(ProjectError, match=r"no layer 'platinum' \(layers are: bronze, silver, gold\)"):
        build_plan(project, ["platinum"])


class Recorder(StepRunner):
    """A StepRunner that only notes the order in which Hamilton calls the nodes."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def notebook_task(self, step: NotebookStep, after: LayerRecord | None) -> NotebookTask:
        self.calls.append(f"task {step.node} after={after.name if after else None}")
        blocked = after.name if after is not None and after.status != "succeeded" else None
        return NotebookTask(step.layer, step.notebook, Path("out.ipynb"), {}, blocked_by=blocked)

    def run_layer(self, step: LayerStep, tasks: Sequence[NotebookTask]) -> LayerRecord:
        self.calls.append(f"layer {step.name} ({len(tasks)} tasks)")
        status = "skipped" if any(t.blocked_by for t in tasks) else "failed" if step.name == self.fail else "succeeded"
        return LayerRecord(step.name, [], status=status)


def test_hamilton_executes_the_dag_layer_by_layer(project):
    runner = Recorder(fail="silver")
    results = build_plan(project).execute(runner)
    assert {name: r.status for name, r in results.items()} == {
        "bronze": "succeeded", "silver": "failed", "gold": "skipped"}
    calls = runner.calls
    assert calls.index("layer bronze (1 tasks)") < calls.index("task silver_orders_ipynb after=bronze")
    assert calls.index("task silver_customers_ipynb after=bronze") < calls.index("layer silver (2 tasks)")
    assert calls.index("layer silver (2 tasks)") < calls.index("task gold_gold_ipynb after=silver")
    assert calls[-1] == "layer gold (1 tasks)"


def test_node_names_are_identifiers_even_for_odd_notebook_names(tmp_path):
    config = "name: odd\nlayers:\n  - name: run\n    notebooks: ['nb/01 Load-Orders.ipynb', nb/x.ipynb]\n"
    files = {"nb/01 Load-Orders.ipynb": notebook_text(), "nb/x.ipynb": notebook_text()}
    plan = build_plan(load_project(write_project(tmp_path / "odd", config, files)))
    (step,) = plan.steps
    assert step.node == "run_2"  # "run" is the DAG's input
    assert [nb.node for nb in step.notebooks] == ["run_01_load_orders_ipynb", "run_x_ipynb"]


def test_describe_lists_layers_notebooks_and_dependencies(project):
    text = build_plan(project).describe()
    assert text.splitlines()[0] == "plans: 3 layer(s), 4 notebook(s) (Hamilton DAG of 7 nodes)"
    assert "1. bronze (first; timeout PT1H)  [node bronze]" in text
    assert "2. silver (after bronze, notebooks in parallel; timeout PT10M)  [node silver]" in text
    assert "3. gold (after silver; timeout PT1H)  [node gold]" in text
    lines = text.splitlines()
    orders = next(i for i, line in enumerate(lines) if "notebooks/orders.ipynb" in line)
    assert lines[orders - 1].startswith("2. silver")
    assert "[node silver_orders_ipynb]" in lines[orders]


def test_dot_source_has_every_node_and_edge(project):
    dot = build_plan(project).dot()
    for edge in ("bronze_bronze_ipynb -> bronze", "bronze -> silver_orders_ipynb",
                 "silver_customers_ipynb -> silver", "silver -> gold_gold_ipynb", "gold_gold_ipynb -> gold"):
        assert edge in dot
    assert "notebooks/orders.ipynb" in dot  # notebook nodes are labelled with their file


def test_images_are_drawn_by_graphviz(project):
    plan = build_plan(project)
    svg = plan.image("svg").decode()
    assert svg.lstrip().startswith("<?xml")
    assert "<svg" in svg
    assert "silver_orders_ipynb" in svg
    assert plan.image("png").startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="cannot draw the DAG as 'gif'; use one of dot, png, svg, pdf"):
        plan.image("gif")


def test_a_missing_dot_program_is_a_clear_error(project, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(MedallionError, match=r"needs Graphviz's `dot` program") as err:
        build_plan(project).image("png")
    assert "write a .dot file" in str(err.value)
