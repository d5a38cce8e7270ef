"""Import hygiene: dependencies point inward (cli -> runner/kestra/widgets -> lakehouse... -> project -> errors).

Read from the source with ``ast``: every ``import`` of a medallion_nb module, at
module level (what runs on import) and inside functions (lazy imports count too
for the direction of dependencies). ``if TYPE_CHECKING:`` blocks are left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "medallion_nb"

# Rank of each module (or package): a module imports from a lower or the same rank, never a higher one
# (and, at module level, never in a cycle).
RANKS = {
    "errors": 0, "names": 0, "validation": 0, "reporting": 0, "sampledata": 0, "oserrors": 0,
    "secrets": 1, "sources": 1, "sql": 1, "project": 1, "checkspec": 1, "objectstore": 1, "runfolder": 1,
    "lakemeta": 2, "lock": 2, "lease": 2, "dedupe": 2, "quality": 2,
    "storage": 3, "lineage": 3, "incremental": 3,
    "snapshots": 4, "quarantine": 4, "expectations": 4, "engine": 4,
    "writing": 5, "lakehouse": 5, "ingest": 5, "export": 5,
    "runner": 6, "kestra": 6, "widgets": 6, "scaffold": 6,
    "": 7,  # the package itself (medallion_nb/__init__.py)
    "cli": 8, "__main__": 9,
}
# Same rank, but they must not lean on each other: each is driven from the command line only.
PEERS = {"runner", "kestra", "widgets"}
# Known inward-pointing exceptions, each with its reason. Keep this list short.
ALLOWED = {
    ("lakehouse", "widgets"): "lake.explore() opens the gold explorer (a lazy import inside that method)",
    ("errors", "secrets"): "error messages redact resolved secret values (lazy, when a message is built)",
    ("storage", "snapshots"): "vacuum keeps the files that published snapshots still reference (lazy)",
    ("scaffold", ""): "init reads the package version",
    ("widgets", ""): "the dashboard reads the package version",
}


def unit(module: str) -> str:
    """``medallion_nb.runner.plan`` -> ``runner``: the first level below the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(module-level imports, imports inside functions) of medallion_nb modules in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top: set[str] = set()
    lazy: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            found: list[str] = []
            if isinstance(child, ast.Import):
                found = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                # from medallion_nb.runner import freshness: the submodule, not the package
                folder = REPO.joinpath(*child.module.split("."))
                found = [f"{child.module}.{a.name}" for a in child.names
                         if (folder / f"{a.name}.py").exists() or (folder / a.name).is_dir()] or [child.module]
            (lazy if in_function else top).update(n for n in found if n.split(".")[0] == "medallion_nb")
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(tree, False)
    return top, lazy - top


def sources() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "templates" not in p.parts]


def test_every_module_has_a_rank():
    missing = sorted({unit(module_name(p)) for p in sources()} - set(RANKS))
    assert not missing, f"add these to RANKS in {__file__}: {missing}"


def test_dependencies_point_inward():
    problems = []
    for path in sources():
        name = module_name(path)
        here = unit(name)
        top, lazy = imports(path)
        for target in sorted(top | lazy):
            there = unit(target)
            if there == here or (here, there) in ALLOWED:
                continue
            if RANKS[there] > RANKS[here] or (here in PEERS and there in PEERS):
                when = "at import" if target in top else "inside a function"
                problems.append(f"{name} imports {target} ({when}): rank {RANKS[here]} -> {RANKS[there]}")
    assert not problems, "imports that point outward:\n" + "\n".join(problems)


def test_no_import_cycles_at_module_level():
    graph = {}
    for path in sources():
        top, _ = imports(path)
        graph[module_name(path)] = {t for t in top if t != module_name(path)}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def unit_graph(*, lazy: bool) -> dict[str, set[str]]:
    """Which unit imports which (at module level, and with ``lazy`` inside functions too), ALLOWED left out."""
    graph: dict[str, set[str]] = {}
    for path in sources():
        here = unit(module_name(path))
        top, inside = imports(path)
        graph.setdefault(here, set()).update(
            there for there in map(unit, top | (inside if lazy else set()))
            if there != here and (here, there) not in ALLOWED)
    return graph


def test_no_import_cycles_even_through_lazy_imports():
    """Between units, a lazy import is no way around the layering: only the ALLOWED exceptions close a circle."""
    try:
        tuple(TopologicalSorter(unit_graph(lazy=True)).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle (counting imports inside functions): {' -> '.join(exc.args[1])}")


def test_every_allowed_exception_is_needed():
    """An exception stays listed only while the import exists and points outward."""
    found = set()
    for path in sources():
        here = unit(module_name(path))
        top, inside = imports(path)
        found |= {(here, unit(t)) for t in top | inside}
    stale = [pair for pair in ALLOWED if pair not in found or RANKS[pair[1]] <= RANKS[pair[0]]]
    assert not stale, f"remove from ALLOWED (no such outward import): {stale}"


def test_the_lakehouse_imports_what_builds_on_it_only_lazily():
    """quarantine, expectations, ingest, quality and widgets are imported inside the methods that use them."""
    top, inside = imports(PACKAGE / "lakehouse.py")
    top |= imports(PACKAGE / "writing.py")[0]
    later = {"quarantine", "expectations", "ingest", "quality", "widgets"}
    assert not {unit(t) for t in top} & later
    assert {unit(t) for t in inside} & later


def test_lineage_lives_in_the_core_and_the_core_loads_no_runner_machinery():
    """lake.lineage() renders in a notebook without Hamilton, papermill or ipywidgets."""
    code = ("import sys, medallion_nb.lineage, medallion_nb.lakehouse; "
            "bad = sorted(m for m in ('hamilton', 'papermill', 'ipywidgets', 'medallion_nb.runner') "
            "if m in sys.modules); print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_catch_an_outward_import(tmp_path):
    bad = tmp_path / "lineage.py"
    bad.write_text("from medallion_nb.runner import run_pipeline\n", encoding="utf-8")
    top, _ = imports(bad)
    assert top == {"medallion_nb.runner"}
    assert RANKS[unit("medallion_nb.runner")] > RANKS["lineage"]
