"""Table-level lineage: which notebook reads and writes which lake table.

Before a run, each layer notebook's code cells are parsed: Python with
:mod:`ast` for the library calls that name tables (``lake.table("silver.x")``,
``lake.write("gold.y", ...)``, ``lake.ingest()``...), and every string in the
code that DuckDB's own parser accepts as SQL for the tables its ``FROM`` clauses
name. What parsing cannot tell (SQL built at run time) is declared per notebook
in ``medallion.yaml`` (``reads:`` / ``writes:``). From that comes a graph of
sources -> notebooks -> tables -> notebooks, across layers, which the runner
executes and ``medallion-nb dag`` / ``lake.lineage()`` show.

At run time the library records what each notebook really read and wrote in
its write log (``reporting.py``), so a run record can be compared with the plan.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import duckdb

from medallion_nb.errors import MedallionError, ProjectError, UsageError
from medallion_nb.names import TABLE_NAME
from medallion_nb.project import Layer, Project

# Library calls whose first argument is a table the notebook reads (``keys.filter("silver.x")`` too).
READ_CALLS = frozenset({"table", "changes", "latest", "check", "filter"})
# Library calls whose first argument (or good=/bad=) is a table the notebook writes.
WRITE_CALLS = frozenset({"write", "sync"})
SPLIT_WRITE_CALLS = frozenset({"write_split"})
INGEST_CALLS = frozenset({"ingest"})
# Calls that take SQL text: an f-string or a variable name here is SQL we cannot read before the run.
SQL_CALLS = frozenset({"sql", "query", "execute"})
_LOOKS_LIKE_SQL = re.compile(r"\b(select|from|with)\b", re.IGNORECASE)


@dataclass(frozen=True)
class NotebookLineage:
    """What one notebook reads and writes.

    ``unresolved`` lists what parsing could not tell (``"cell 4, line 2: SQL built at
    run time"``); such a notebook waits for the whole layer before it unless its
    reads are declared in ``medallion.yaml``.
    """

    notebook: Path
    layer: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()
    declared: bool = False

    @property
    def complete(self) -> bool:
        """Whether the reads are known (fully inferred, or declared)."""
        return self.declared or not self.unresolved


@dataclass(frozen=True)
class TableStats:
    """What the lake says about a table, shown next to it in the graph."""

    rows: int | None = None
    version: int | None = None
    last_run: str | None = None


@dataclass(frozen=True)
class Lineage:
    """The lineage graph of a project: sources, notebooks and tables."""

    project: Project
    notebooks: tuple[NotebookLineage, ...]
    stats: Mapping[str, TableStats] = field(default_factory=dict)

    # -- the graph --------------------------------------------------------------
    def relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.project.root).as_posix()
        except ValueError:
            return str(path)

    def notebook(self, name: str | Path) -> NotebookLineage:
        """The notebook by path (absolute, or relative to the project folder).

        Raises:
            UsageError: no notebook of the project has that path.
        """
        found = self.find(name)
        if found is None:
            known = ", ".join(self.relative(nb.notebook) for nb in self.notebooks) or "none"
            raise UsageError(f"lineage: no notebook {str(name)!r} in the project (notebooks: {known})")
        return found

    def find(self, name: str | Path) -> NotebookLineage | None:
        """The notebook by path (absolute, or relative to the project folder), or None."""
        for nb in self.notebooks:
            if Path(name) == nb.notebook or str(name) == self.relative(nb.notebook):
                return nb
        return None

    @property
    def writers(self) -> dict[str, NotebookLineage]:
        """Each table the project writes, with the notebook that writes it."""
        return {table: nb for nb in self.notebooks for table in nb.writes}

    @property
    def tables(self) -> tuple[str, ...]:
        """Every table in the graph (written, or read from outside the project), in layer order."""
        names = {t for nb in self.notebooks for t in (*nb.reads, *nb.writes)}
        order = {layer.name: i for i, layer in enumerate(self.project.layers)}
        return tuple(sorted(names, key=lambda t: (order.get(t.partition(".")[0], len(order)), t)))

    def upstream_notebooks(self, nb: NotebookLineage) -> tuple[NotebookLineage, ...]:
        """The notebooks ``nb`` must wait for: the writers of what it reads, else the layer before it."""
        writers = self.writers
        found = {writers[t].notebook: writers[t] for t in nb.reads if t in writers and writers[t] is not nb}
        if not nb.complete:
            found.update({other.notebook: other for other in self._layer_before(nb)})
        return tuple(found.values())

    def _layer_before(self, nb: NotebookLineage) -> tuple[NotebookLineage, ...]:
        names = [layer.name for layer in self.project.layers]
        index = names.index(nb.layer)
        if index == 0:
            return ()
        return tuple(other for other in self.notebooks if other.layer == names[index - 1])

    def downstream(self, notebooks: Iterable[NotebookLineage]) -> set[Path]:
        """Paths of ``notebooks`` and of every notebook that (transitively) waits for them."""
        todo = list(notebooks)
        seen: set[Path] = set()
        while todo:
            nb = todo.pop()
            if nb.notebook in seen:
                continue
            seen.add(nb.notebook)
            todo += [other for other in self.notebooks
                     if any(up.notebook == nb.notebook for up in self.upstream_notebooks(other))]
        return seen

    def upstream(self, notebooks: Iterable[NotebookLineage]) -> set[Path]:
        """Paths of ``notebooks`` and of every notebook they (transitively) wait for."""
        todo = list(notebooks)
        seen: set[Path] = set()
        while todo:
            nb = todo.pop()
            if nb.notebook not in seen:
                seen.add(nb.notebook)
                todo += self.upstream_notebooks(nb)
        return seen

    def select(self, selectors: Iterable[str]) -> set[Path]:
        """Notebooks chosen by dbt-style selectors.

        ``silver.orders`` is the notebook that writes the table, ``silver.orders+`` that
        notebook and everything downstream of it, ``+gold.sales`` everything upstream too.
        A notebook path or a layer name works in place of a table.

        Raises:
            ProjectError: a selector names no table, notebook or layer of the project.
        """
        chosen: set[Path] = set()
        problems = []
        for selector in selectors:
            name = selector.strip().strip("+")
            matched = self._match(name)
            if not matched:
                known = ", ".join(self.writers) or "none"
                problems.append(f"--select {selector}: {name!r} is not a table written by a notebook, a notebook "
                                f"or a layer of {self.project.name} (tables: {known})")
                continue
            chosen |= {nb.notebook for nb in matched}
            if selector.strip().endswith("+"):
                chosen |= self.downstream(matched)
            if selector.strip().startswith("+"):
                chosen |= self.upstream(matched)
        if problems:
            raise ProjectError(problems)
        return chosen

    def _match(self, name: str) -> list[NotebookLineage]:
        if name in self.writers:
            return [self.writers[name]]
        by_layer = [nb for nb in self.notebooks if nb.layer == name]
        if by_layer:
            return by_layer
        return [nb for nb in self.notebooks if name in (self.relative(nb.notebook), nb.notebook.name)]

    # -- showing it -------------------------------------------------------------
    def describe(self) -> str:
        """The graph as text: per layer, each notebook with what it reads and writes."""
        lines = [f"{self.project.name}: {len(self.notebooks)} notebook(s), {len(self.tables)} table(s)"]
        for layer in self.project.layers:
            lines.append(f"{layer.name}:")
            for nb in (n for n in self.notebooks if n.layer == layer.name):
                lines.append(f"  {self.relative(nb.notebook)}")
                reads = [f"source {s}" for s in nb.sources] + list(nb.reads)
                if nb.unresolved and not nb.declared:
                    reads.append("(more: " + "; ".join(nb.unresolved) + ")")
                lines.append("    reads   " + (", ".join(reads) or "-"))
                lines.append("    writes  " + (", ".join(self._table_label(t) for t in nb.writes) or "-"))
                after = [self.relative(up.notebook) for up in self.upstream_notebooks(nb)]
                lines.append("    after   " + (", ".join(after) or "nothing (can start at once)"))
        return "\n".join(lines)

    def _table_label(self, table: str) -> str:
        stats = self.stats.get(table)
        if stats is None or stats.rows is None:
            return table
        extra = f"{stats.rows:,} rows"
        if stats.last_run:
            extra += f", run {stats.last_run}"
        return f"{table} ({extra})"

    def dot(self) -> str:
        """The graph in Graphviz's DOT language: sources, notebooks (notes) and tables, by layer."""
        out = ["digraph lineage {", "  rankdir=LR;", f"  label={_dot(self.project.name + ' lineage')};",
               '  node [fontname="Helvetica", fontsize=11];']
        sources = sorted({s for nb in self.notebooks for s in nb.sources})
        if sources:
            out.append('  subgraph cluster_sources { label="sources"; style=dashed;')
            out += [f"    {_dot('source:' + s)} [label={_dot(s)}, shape=cylinder];" for s in sources]
            out.append("  }")
        for layer in self.project.layers:
            out.append(f"  subgraph {_dot('cluster_' + layer.name)} {{ label={_dot(layer.name)}; style=rounded;")
            for nb in (n for n in self.notebooks if n.layer == layer.name):
                out.append(f"    {_dot(self.relative(nb.notebook))} [shape=note, style=filled, "
                           f"fillcolor=\"#fff4d6\", label={_dot(nb.notebook.name)}];")
            for table in (t for t in self.tables if t.partition(".")[0] == layer.name):
                out.append(f"    {_dot(table)} [shape=box, style=\"rounded,filled\", fillcolor=\"#b4d8e4\", "
                           f"label={_dot(self._dot_label(table))}];")
            out.append("  }")
        for nb in self.notebooks:
            name = _dot(self.relative(nb.notebook))
            out += [f"  {_dot('source:' + s)} -> {name};" for s in nb.sources]
            out += [f"  {_dot(t)} -> {name};" for t in nb.reads]
            out += [f"  {name} -> {_dot(t)};" for t in nb.writes]
            if not nb.complete:
                out += [f"  {_dot(self.relative(up.notebook))} -> {name} [style=dashed];"
                        for up in self._layer_before(nb)]
        out.append("}")
        return "\n".join(out)

    def _dot_label(self, table: str) -> str:
        stats = self.stats.get(table)
        if stats is None or stats.rows is None:
            return table
        lines = [table, f"{stats.rows:,} rows"]
        if stats.last_run:
            lines.append(f"run {stats.last_run}")
        return "\n".join(lines)

    def image(self, fmt: str = "svg") -> bytes:
        """The graph drawn by Graphviz as ``svg``, ``png`` or ``pdf``.

        Raises:
            MedallionError: the graphviz Python package or Graphviz's ``dot`` program is missing.
        """
        try:
            import graphviz
        except ImportError:
            raise MedallionError("drawing the lineage needs the graphviz Python package",
                                 hint="pip install 'medallion_nb[graph]' (and Graphviz's `dot` for images)") from None
        try:
            return graphviz.Source(self.dot()).pipe(format=fmt)
        except graphviz.ExecutableNotFound as exc:
            raise MedallionError(f"drawing the lineage as {fmt} needs Graphviz's `dot` program, which is not on PATH",
                                 hint="install Graphviz (e.g. apt install graphviz), or write a .dot file") from exc

    def __str__(self) -> str:
        return self.describe()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """In a notebook: the picture when Graphviz is there, else the text."""
        bundle: dict[str, Any] = {"text/plain": self.describe()}
        try:
            svg = self.image("svg").decode("utf-8")
        except MedallionError:  # no Graphviz here: the text says the same
            return bundle
        bundle["image/svg+xml"] = svg
        return bundle


def _dot(text: str) -> str:
    return json.dumps(text)


# -- building it ---------------------------------------------------------------------


def project_lineage(project: Project, stats: Mapping[str, TableStats] | None = None) -> Lineage:
    """Infer (and merge with declarations) the lineage of every notebook of the project.

    Raises:
        ProjectError: the notebooks contradict the layer order or each other (a table
            written by two notebooks, a notebook reading a later layer's table); every
            problem is listed.
    """
    layer_names = tuple(layer.name for layer in project.layers)
    notebooks = tuple(notebook_lineage(project, layer, path)
                      for layer in project.layers for path in layer.notebooks)
    lineage = Lineage(project, notebooks, dict(stats or {}))
    _check(lineage, layer_names)
    return lineage


def notebook_lineage(project: Project, layer: Layer, path: Path) -> NotebookLineage:
    """One notebook's reads and writes: inferred from its code, plus what ``medallion.yaml`` declares."""
    layers = tuple(other.name for other in project.layers)
    found = infer_notebook(path, layers, tuple(s.name for s in project.sources))
    declared = layer.declaration(path)
    reads, writes, sources = set(found.reads), set(found.writes), set(found.sources)
    if declared is not None:
        reads |= set(declared.reads or ())
        writes |= set(declared.writes or ())
    bronze = project.layers[0].name if "bronze" not in layers else "bronze"
    writes |= {f"{bronze}.{s}" for s in sources}
    # A quarantining source also writes its rejects table.
    writes |= {f"{bronze}.{src.rejects_table}" for src in project.sources
               if src.name in sources and src.on_bad_rows == "quarantine"}
    reads -= writes
    order = {name: i for i, name in enumerate(layers)}

    def ordered(names: set[str]) -> tuple[str, ...]:
        return tuple(sorted(names, key=lambda t: (order.get(t.partition(".")[0], len(order)), t)))

    return NotebookLineage(path, layer.name, ordered(reads), ordered(writes), tuple(sorted(sources)),
                           found.unresolved, declared is not None and declared.reads is not None)


@dataclass
class _Found:
    reads: set[str] = field(default_factory=set)
    writes: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    unresolved: tuple[str, ...] = ()


def infer_notebook(path: Path, layers: tuple[str, ...], sources: tuple[str, ...]) -> _Found:
    """Parse a notebook's code cells for the tables it reads and writes."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProjectError(f"{path}: cannot read the notebook: {exc}") from exc
    found = _Found()
    unresolved: list[str] = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        text = cell.get("source", "")
        text = "".join(text) if isinstance(text, list) else text
        visitor = _CellVisitor(layers, sources, f"cell {index}")
        try:
            tree = ast.parse(_without_magics(text))
        except SyntaxError as exc:
            unresolved.append(f"cell {index}, line {exc.lineno}: not Python")
            continue
        visitor.visit(tree)
        found.reads |= visitor.reads
        found.writes |= visitor.writes
        found.sources |= visitor.sources
        unresolved += visitor.unresolved
    found.unresolved = tuple(unresolved)
    return found


def _without_magics(text: str) -> str:
    """IPython magics and shell escapes become blank lines, so line numbers stay right."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in text.splitlines())


class _CellVisitor(ast.NodeVisitor):
    def __init__(self, layers: tuple[str, ...], sources: tuple[str, ...], where: str) -> None:
        self.layers = layers
        self.all_sources = sources
        self.where = where
        self.reads: set[str] = set()
        self.writes: set[str] = set()
        self.sources: set[str] = set()
        self.unresolved: list[str] = []

    def _table(self, node: ast.AST | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = TABLE_NAME.match(node.value.strip())
            if match and match.group(1) in self.layers:
                return node.value.strip()
            return None
        if node is not None and not isinstance(node, ast.Constant):
            self.unresolved.append(f"{self.where}, line {node.lineno}: a table name computed at run time")
        return None

    def visit_Call(self, node: ast.Call) -> None:
        attr = node.func.attr if isinstance(node.func, ast.Attribute) else None
        first = node.args[0] if node.args else None
        if attr in WRITE_CALLS:
            name = self._table(first or _keyword(node, "name"))
            if name:
                self.writes.add(name)
        elif attr in SPLIT_WRITE_CALLS:
            for key in ("good", "bad"):
                name = self._table(_keyword(node, key))
                if name:
                    self.writes.add(name)
        elif attr in READ_CALLS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            name = self._table(first)
            if name:
                self.reads.add(name)
        elif attr in INGEST_CALLS:
            source = first or _keyword(node, "source")
            if source is None:
                self.sources |= set(self.all_sources)
            elif isinstance(source, ast.Constant) and isinstance(source.value, str):
                self.sources.add(source.value)
            else:
                self.unresolved.append(f"{self.where}, line {node.lineno}: a source chosen at run time")
        if attr in SQL_CALLS | WRITE_CALLS | READ_CALLS:
            for arg in (*node.args, *(k.value for k in node.keywords)):
                if isinstance(arg, ast.JoinedStr):
                    self.unresolved.append(f"{self.where}, line {arg.lineno}: SQL built at run time (f-string)")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _LOOKS_LIKE_SQL.search(node.value):
            self.reads |= sql_tables(node.value, self.layers)


def _keyword(node: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


@cache
def _parser() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def sql_tables(sql: str, layers: Iterable[str]) -> set[str]:
    """``layer.table`` names that ``sql`` reads, by DuckDB's own parser (empty if it is not SQL)."""
    layers = set(layers)
    try:
        tree = json.loads(_parser().execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    except duckdb.Error:
        return set()
    if tree.get("error"):
        if tree.get("error_type") == "parser":
            return set()
        # Not a SELECT (json_serialize_sql handles only those): DuckDB's table-name scan.
        try:
            names = duckdb.get_table_names(sql, qualified=True)
        except duckdb.Error:
            return set()
        found = {name.split(" AS ")[0].replace('"', "") for name in names}
        return {n for n in found if n.partition(".")[0] in layers and n.count(".") == 1}
    found: set[str] = set()
    _base_tables(tree, layers, found)
    return found


def _base_tables(tree: Any, layers: set[str], found: set[str]) -> None:
    if isinstance(tree, dict):
        if tree.get("type") == "BASE_TABLE" and tree.get("schema_name") in layers and not tree.get("catalog_name"):
            found.add(f"{tree['schema_name']}.{tree['table_name']}")
        for value in tree.values():
            _base_tables(value, layers, found)
    elif isinstance(tree, list):
        for value in tree:
            _base_tables(value, layers, found)


def _check(lineage: Lineage, layers: tuple[str, ...]) -> None:
    problems = []
    writer: dict[str, NotebookLineage] = {}
    for nb in lineage.notebooks:
        for table in nb.writes:
            if table in writer:
                problems.append(f"{table} is written by {lineage.relative(writer[table].notebook)} and by "
                                f"{lineage.relative(nb.notebook)}; one notebook writes a table")
            writer[table] = nb
    order = {name: i for i, name in enumerate(layers)}
    for nb in lineage.notebooks:
        for table in nb.reads:
            source = writer.get(table)
            if source is not None and order[source.layer] > order[nb.layer]:
                problems.append(f"{lineage.relative(nb.notebook)} (layer {nb.layer}) reads {table}, which layer "
                                f"{source.layer} writes later (layers run in the order {', '.join(layers)})")
    if problems:
        raise ProjectError([f"{lineage.project.config_path}: the notebooks' lineage does not fit the layers:",
                            *(f"  - {p}" for p in problems)],
                           hint="declare reads:/writes: per notebook in medallion.yaml where inference is wrong")
