"""The plan of a run: the project's lineage as a Hamilton DAG, and the slice of it to run.

For the demo the DAG is::

    source:orders ─┐
    source:customers ─> notebooks/bronze.ipynb -> bronze.orders ... -> notebooks/silver.ipynb -> silver.* -> ...

A notebook node waits only for the tables it reads (and, when its reads cannot
be inferred nor are declared, for every notebook of the layer before it), so
independent notebooks run side by side, within a layer and across layers.
Hamilton executes the DAG (:meth:`Plan.execute`) on a thread pool
(``FutureAdapter``); a failing notebook becomes a sentinel that Hamilton's
``GracefulErrorAdapter`` passes on, so exactly what depends on it is skipped.
Notebooks outside the selection (``--layer``, ``--select``) are given to
Hamilton as overrides, so their tables are read as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medallion_nb.errors import ProjectError, UsageError
from medallion_nb.lineage import Lineage, NotebookLineage, project_lineage
from medallion_nb.project import Layer, Project

IMAGE_FORMATS = ("png", "svg", "pdf")
GRAPH_FORMATS = ("dot", *IMAGE_FORMATS)


class NotRun:
    """The value of a node that did not produce one (its notebook failed or was skipped)."""

    def __repr__(self) -> str:
        return "NOT_RUN"


NOT_RUN = NotRun()


@dataclass(frozen=True)
class NotebookStep:
    """A notebook of the plan."""

    node: str  # the Hamilton node: the notebook's path relative to the project
    layer: Layer
    notebook: Path
    lineage: NotebookLineage

    @property
    def layer_name(self) -> str:
        return self.layer.name


class Plan:
    """The notebooks of a project (or a selection of them) and the Hamilton DAG that runs them."""

    def __init__(self, project: Project, lineage: Lineage, selected: set[Path]) -> None:
        self.project = project
        self.lineage = lineage
        layer_of = {nb: layer for layer in project.layers for nb in layer.notebooks}
        self.all_steps = tuple(NotebookStep(lineage.relative(nb.notebook), layer_of[nb.notebook], nb.notebook, nb)
                               for nb in lineage.notebooks)
        self.steps = tuple(step for step in self.all_steps if step.notebook in selected)

    @functools.cached_property
    def driver(self) -> Any:
        """The Hamilton driver of the DAG (built, and Hamilton imported, on first use).

        A run starts its first kernels before it needs the DAG, so that importing
        Hamilton (and pandas, which Hamilton imports) overlaps with their start.
        """
        from hamilton import driver

        from medallion_nb.runner import nodes

        return (driver.Builder()
                .with_modules(nodes)
                .with_config({**self._config(), "hamilton.enable_power_user_mode": True})
                .build())

    def _config(self) -> dict[str, Any]:
        from hamilton.function_modifiers import group, source, value

        from medallion_nb.runner import nodes

        lineage = self.lineage
        writers = lineage.writers
        names = sorted({s for nb in lineage.notebooks for s in nb.sources})
        sources = {f"source:{s}": {"name": value(s)} for s in names}
        notebooks = {}
        for step in self.all_steps:
            nb = step.lineage
            inputs = [f"source:{s}" for s in nb.sources] + list(nb.reads)
            if not nb.complete:  # cannot tell what it reads: after the whole layer before it
                inputs += [lineage.relative(up.notebook) for up in lineage.upstream_notebooks(nb)
                           if up.notebook not in {writers[t].notebook for t in nb.reads if t in writers}]
            notebooks[step.node] = {"path": value(step.node),
                                    "inputs": group(**{i: source(i) for i in inputs}) if inputs else value({})}
        tables = {}
        for name in lineage.tables:
            writer = writers.get(name)
            node = lineage.relative(writer.notebook) if writer else None
            tables[name] = {"name": value(name),
                            "written_by": group(**{node: source(node)}) if node else value({})}
        return {nodes.SOURCES: sources, nodes.NOTEBOOKS: notebooks, nodes.TABLES: tables}

    # -- using it ----------------------------------------------------------------
    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers that have a selected notebook, in project order."""
        chosen = {step.layer_name for step in self.steps}
        return tuple(layer for layer in self.project.layers if layer.name in chosen)

    def step(self, node: str) -> NotebookStep:
        return next(step for step in self.all_steps if step.node == node)

    def upstream(self, step: NotebookStep) -> list[NotebookStep]:
        """Selected notebooks that ``step`` waits for, from the lineage alone (no Hamilton)."""
        waits_for = {nb.notebook for nb in self.lineage.upstream_notebooks(step.lineage)}
        return [other for other in self.steps if other.notebook in waits_for and other is not step]

    def dependents(self, node: str) -> list[NotebookStep]:
        """Selected notebooks that read what ``node``'s notebook writes (directly)."""
        graph = self.driver.graph.nodes
        selected = {step.node for step in self.steps}
        found = []
        for table in graph[node].depended_on_by:
            for reader in table.depended_on_by:
                if reader.name in selected and reader.name not in {s.node for s in found}:
                    found.append(self.step(reader.name))
        for reader in graph[node].depended_on_by:  # notebooks waiting for the whole layer
            if reader.tags.get("kind") == "notebook" and reader.name in selected:
                found.append(self.step(reader.name))
        return found

    def execute(self, run: Any, *, adapters: Sequence[Any] = ()) -> dict[str, Any]:
        """Have Hamilton execute the selected notebooks, in parallel where the graph allows.

        ``run`` is the DAG's ``run`` input (it executes notebooks and reads tables);
        ``adapters`` are Hamilton lifecycle adapters (hooks) added to the run.
        """
        from hamilton import driver
        from hamilton.lifecycle import GracefulErrorAdapter
        from hamilton.plugins.h_threadpool import FutureAdapter

        from medallion_nb.runner import nodes

        selected = {step.node for step in self.steps}
        # Notebooks outside the selection are not run: their tables are read as they are.
        overrides = {step.node: NOT_SELECTED for step in self.all_steps if step.node not in selected}
        workers = max(4, len(self.driver.graph.nodes))
        dr = (driver.Builder()
              .with_modules(nodes)
              .with_config({**self._config(), "hamilton.enable_power_user_mode": True})
              .with_adapters(GracefulErrorAdapter(NotebookFailed, sentinel_value=NOT_RUN), *adapters,
                             FutureAdapter(max_workers=workers, thread_name_prefix="medallion-plan"))
              .build())
        wanted = [step.node for step in self.steps]
        wanted += [t for step in self.steps for t in step.lineage.writes]
        return dr.execute(wanted, inputs={nodes.RUN_INPUT: run}, overrides=overrides)

    def describe(self) -> str:
        """The plan as text: tables, notebooks and what each waits for."""
        text = self.lineage.describe()
        if len(self.steps) != len(self.all_steps):
            chosen = ", ".join(step.node for step in self.steps)
            text += f"\nselected: {chosen}"
        return text

    def dot(self) -> str:
        """The lineage graph in Graphviz's DOT language."""
        return self.lineage.dot()

    def image(self, fmt: str) -> bytes:
        """The lineage graph drawn as ``png``, ``svg`` or ``pdf``.

        Raises:
            MedallionError: the graphviz package or Graphviz's ``dot`` program is missing.
            UsageError: an unknown format.
        """
        if fmt not in IMAGE_FORMATS:
            raise UsageError(f"cannot draw the DAG as {fmt!r}; use one of {', '.join(GRAPH_FORMATS)}")
        return self.lineage.image(fmt)

    def relative(self, path: Path) -> str:
        return self.lineage.relative(path)


class NotSelected:
    """The value given to a notebook outside the selection: its tables are read as they are."""

    def __repr__(self) -> str:
        return "NOT_SELECTED"


NOT_SELECTED = NotSelected()


class NotebookFailed(Exception):
    """Raised by a notebook node that failed; Hamilton skips what depends on it."""


def build_plan(project: Project, layers: Sequence[str] | None = None, select: Iterable[str] | None = None,
               *, stats: Any = None) -> Plan:
    """The plan for ``project``: all its notebooks, those of the named layers, or a ``--select`` slice.

    Raises:
        ProjectError: a name is not a layer of the project, a selector matches nothing,
            or the lineage contradicts the layer order.
    """
    lineage = project_lineage(project, stats)
    chosen = {nb.notebook for nb in lineage.notebooks}
    if layers:
        wanted = {project.layer(name).name for name in layers}
        chosen = {nb.notebook for nb in lineage.notebooks if nb.layer in wanted}
    if select:
        chosen &= lineage.select(select)
        if not chosen:
            raise ProjectError(f"--select {' '.join(select)} and --layer {' '.join(layers or [])} "
                               "have no notebook in common")
    return Plan(project, lineage, chosen)
