"""The plan of a run as a Hamilton DAG: one node per notebook, one node per layer.

For a project with layers ``bronze -> silver (orders, customers) -> gold`` the DAG is::

    bronze_bronze_ipynb -> bronze -> silver_orders_ipynb    -> silver -> gold_gold_ipynb -> gold
                                  -> silver_customers_ipynb ->

A notebook node (``<layer>_<notebook>_ipynb``) produces the task that executes
that notebook; it depends on the previous layer's node, so a layer's notebooks
are only scheduled once the layer before them is done. A layer node (named
after the layer) runs its notebooks' tasks side by side and produces the
layer's :class:`~medallion_nb.runner.record.LayerRecord`. Every node also takes
the ``run`` input, the :class:`StepRunner` that does the actual work.

The plan reads its layer order and dependencies back from the built DAG, and a
run is Hamilton executing that DAG (:meth:`Plan.execute`); ``medallion-nb dag``
prints or draws the same graph.
"""

from __future__ import annotations

import importlib.util
import inspect
import keyword
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from medallion_nb.errors import MedallionError
from medallion_nb.project import Layer, Project
from medallion_nb.runner.execute import NotebookTask
from medallion_nb.runner.record import LayerRecord

RUN_INPUT = "run"
IMAGE_FORMATS = ("png", "svg", "pdf")
GRAPH_FORMATS = ("dot", *IMAGE_FORMATS)


@dataclass(frozen=True)
class NotebookStep:
    """A notebook node of the plan."""

    node: str
    layer: str
    notebook: Path


@dataclass(frozen=True)
class LayerStep:
    """A layer node of the plan, with its notebooks and the layer it waits for."""

    node: str
    layer: Layer
    notebooks: tuple[NotebookStep, ...]
    after: str | None

    @property
    def name(self) -> str:
        return self.layer.name


class StepRunner(ABC):
    """What the plan's nodes call; the runner implements it (the DAG's ``run`` input)."""

    @abstractmethod
    def notebook_task(self, step: NotebookStep, after: LayerRecord | None) -> NotebookTask:
        """The task executing ``step``'s notebook (``blocked_by`` set if ``after`` did not succeed)."""

    @abstractmethod
    def run_layer(self, step: LayerStep, tasks: Sequence[NotebookTask]) -> LayerRecord:
        """Run a layer's tasks (or skip the layer when they are blocked) and return its record."""


class Plan:
    """Layers and notebooks of a project (or of chosen layers) as a Hamilton DAG."""

    def __init__(self, project: Project, layers: Sequence[Layer]) -> None:
        from hamilton import ad_hoc_utils, base, driver

        self.project = project
        module = ad_hoc_utils.create_temporary_module(*self._node_functions(layers))
        self.driver = driver.Builder().with_modules(module).with_adapters(base.DictResult()).build()
        self.steps = self._steps_from_dag()

    # -- building the DAG -------------------------------------------------------

    def _node_functions(self, layers: Sequence[Layer]) -> list[Callable[..., Any]]:
        taken = {RUN_INPUT}
        functions = []
        after: str | None = None
        for layer in layers:
            layer_node = _unique(_identifier(layer.name), taken)
            notebook_nodes = []
            for position, notebook in enumerate(layer.notebooks):
                name = _unique(_identifier(f"{layer.name}_{notebook.stem}_ipynb"), taken)
                notebook_nodes.append(name)
                inputs: dict[str, Any] = {RUN_INPUT: StepRunner}
                if after:
                    inputs[after] = LayerRecord
                functions.append(_node(
                    name, inputs, NotebookTask, self._notebook_body(name, after),
                    f"The task executing {self.relative(notebook)} (layer {layer.name}).",
                    kind="notebook", layer=layer.name, notebook=self.relative(notebook), position=str(position),
                    display_name=self.relative(notebook),
                ))
            inputs = {RUN_INPUT: StepRunner} | dict.fromkeys(notebook_nodes, NotebookTask)
            functions.append(_node(
                layer_node, inputs, LayerRecord, self._layer_body(layer_node, notebook_nodes),
                f"Layer {layer.name}: runs {len(notebook_nodes)} notebook(s) side by side.",
                kind="layer", layer=layer.name, timeout=layer.timeout, display_name=layer.name,
            ))
            after = layer_node
        return functions

    def _notebook_body(self, name: str, after: str | None) -> Callable[..., NotebookTask]:
        def body(run: StepRunner, **upstream: LayerRecord) -> NotebookTask:
            return run.notebook_task(self.notebook_step(name), upstream[after] if after else None)
        return body

    def _layer_body(self, name: str, notebook_nodes: list[str]) -> Callable[..., LayerRecord]:
        def body(run: StepRunner, **tasks: NotebookTask) -> LayerRecord:
            return run.run_layer(self.layer_step(name), [tasks[n] for n in notebook_nodes])
        return body

    def _steps_from_dag(self) -> tuple[LayerStep, ...]:
        nodes = self.driver.graph.nodes
        layer_nodes = {name: n for name, n in nodes.items() if n.tags.get("kind") == "layer"}
        notebooks_of = {
            name: sorted((d for d in n.dependencies if d.tags.get("kind") == "notebook"),
                         key=lambda d: int(d.tags["position"]))
            for name, n in layer_nodes.items()
        }
        waits_for = {
            name: {d.name for nb in notebooks_of[name] for d in nb.dependencies if d.name in layer_nodes}
            for name in layer_nodes
        }
        by_name = {layer.name: layer for layer in self.project.layers}
        steps = []
        for name in TopologicalSorter(waits_for).static_order():
            after = sorted(waits_for[name])
            layer = by_name[layer_nodes[name].tags["layer"]]
            notebooks = tuple(NotebookStep(nb.name, layer.name, self.project.root / nb.tags["notebook"])
                              for nb in notebooks_of[name])
            steps.append(LayerStep(name, layer, notebooks, after[0] if after else None))
        return tuple(steps)

    # -- using it ----------------------------------------------------------------

    def layer_step(self, node: str) -> LayerStep:
        return next(step for step in self.steps if step.node == node)

    def notebook_step(self, node: str) -> NotebookStep:
        return next(nb for step in self.steps for nb in step.notebooks if nb.node == node)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps)

    def execute(self, runner: StepRunner) -> dict[str, LayerRecord]:
        """Have Hamilton execute the DAG with ``runner`` as its ``run`` input."""
        results = self.driver.execute([step.node for step in self.steps], inputs={RUN_INPUT: runner})
        return {step.name: results[step.node] for step in self.steps}

    def describe(self) -> str:
        """The plan as text: layers in order, each with its notebooks and what it waits for."""
        n_notebooks = sum(len(step.notebooks) for step in self.steps)
        lines = [f"{self.project.name}: {len(self.steps)} layer(s), {n_notebooks} notebook(s) "
                 f"(Hamilton DAG of {len(self.driver.graph.nodes) - 1} nodes)"]
        width = max((len(self.relative(nb.notebook)) for step in self.steps for nb in step.notebooks), default=0)
        for i, step in enumerate(self.steps, 1):
            waits = f"after {step.after}" if step.after else "first"
            together = ", notebooks in parallel" if len(step.notebooks) > 1 else ""
            lines.append(f"{i}. {step.name} ({waits}{together}; timeout {step.layer.timeout})  [node {step.node}]")
            lines += [f"     {self.relative(nb.notebook).ljust(width)}  [node {nb.node}]" for nb in step.notebooks]
        return "\n".join(lines)

    def dot(self) -> str:
        """The DAG in Graphviz's DOT language (needs the ``graphviz`` Python package, not the binary).

        Raises:
            MedallionError: the graphviz package is not installed.
        """
        if importlib.util.find_spec("graphviz") is None:
            raise MedallionError("drawing the DAG needs the graphviz Python package",
                                 hint="pip install 'medallion_nb[graph]' (and Graphviz's `dot` for images)")
        graph = self.driver.display_all_functions(
            None, graphviz_kwargs={"graph_attr": {"label": f"{self.project.name} run plan"}},
            show_legend=False, orient="LR", hide_inputs=True, show_schema=False,
            custom_style_function=_style,
        )
        return graph.source

    def image(self, fmt: str) -> bytes:
        """The DAG drawn as ``png``, ``svg`` or ``pdf``.

        Raises:
            MedallionError: the graphviz package or Graphviz's ``dot`` program is missing.
        """
        if fmt not in IMAGE_FORMATS:
            raise ValueError(f"cannot draw the DAG as {fmt!r}; use one of {', '.join(GRAPH_FORMATS)}")
        source = self.dot()
        import graphviz

        try:
            return graphviz.Source(source).pipe(format=fmt)
        except graphviz.ExecutableNotFound as exc:
            raise MedallionError(f"drawing the DAG as {fmt} needs Graphviz's `dot` program, which is not on PATH",
                                 hint="install Graphviz (e.g. apt install graphviz), or write a .dot file") from exc

    def relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.project.root).as_posix()
        except ValueError:
            return str(path)


def build_plan(project: Project, layers: Sequence[str] | None = None) -> Plan:
    """The plan for ``project``: all its layers, or the named ones in project order.

    Raises:
        ProjectError: a name is not a layer of the project (the message lists the layers).
    """
    if not layers:
        return Plan(project, project.layers)
    wanted = {project.layer(name).name for name in layers}
    return Plan(project, [layer for layer in project.layers if layer.name in wanted])


def _node(name: str, inputs: dict[str, Any], output: Any, body: Callable[..., Any], doc: str,
          **tags: str) -> Callable[..., Any]:
    """A function Hamilton reads as a node: its name, typed keyword parameters and tags."""
    from hamilton.function_modifiers import tag

    def node(**kwargs: Any) -> Any:
        return body(**kwargs)

    node.__name__ = node.__qualname__ = name
    node.__doc__ = doc
    node.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, annotation=t) for k, t in inputs.items()],
        return_annotation=output,
    )
    node.__annotations__ = {**inputs, "return": output}
    return tag(**tags)(node)


def _identifier(text: str) -> str:
    name = re.sub(r"\W", "_", text.lower())
    return f"n_{name}" if name[:1].isdigit() else name


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken or keyword.iskeyword(candidate):
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def _style(*, node: Any, node_class: str) -> tuple[dict[str, str], str | None, str | None]:
    """Notebook nodes drawn as notes, layer nodes as boxes (Hamilton's custom_style_function)."""
    if node.tags.get("kind") == "notebook":
        return {"shape": "note", "fillcolor": "#fff4d6"}, node_class, "notebook"
    if node.tags.get("kind") == "layer":
        return {"fillcolor": "#b4d8e4"}, node_class, "layer"
    return {}, node_class, None
