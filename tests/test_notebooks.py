"""nbval over the project's notebooks, run in order in a temporary copy of the demo project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

from tests.conftest import REPO

LAYER_NOTEBOOKS = ["bronze.ipynb", "silver.ipynb", "gold.ipynb"]


def notebooks_in_order(folder: Path) -> list[Path]:
    others = sorted(p.name for p in folder.glob("*.ipynb") if p.name not in LAYER_NOTEBOOKS)
    return [folder / name for name in [*LAYER_NOTEBOOKS, *others]]


@pytest.mark.notebook
def test_every_notebook_runs_clean_with_its_defaults(demo_project: Path):
    """The notebooks run as a person runs them in JupyterLab: from notebooks/, default parameters."""
    books = notebooks_in_order(demo_project / "notebooks")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(demo_project), *map(str, books)],
        cwd=demo_project, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    assert "failed" not in result.stdout
    # The notebooks wrote to the temporary project's lake, never to the repository's.
    assert (demo_project / "data" / "lake" / "gold").is_dir()


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb")))
def test_notebooks_follow_the_contract(name: str):
    book = json.loads((REPO / "notebooks" / name).read_text(encoding="utf-8"))
    code = [c for c in book["cells"] if c["cell_type"] == "code"]
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    # papermill must be able to read every parameter (one `name = literal  # help` per line).
    declared = papermill.inspect_notebook(str(REPO / "notebooks" / name))
    required = ("project_dir", "run_id", "run_date", "full_refresh") if name in LAYER_NOTEBOOKS else ("project_dir",)
    for parameter in required:
        assert parameter in declared, f"parameter {parameter} missing or unreadable by papermill"
        assert declared[parameter]["help"], f"parameter {parameter} has no help comment"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "outputs are stripped"
    assert any(c["cell_type"] == "markdown" for c in book["cells"]), "markdown explains the notebook"
    for cell in code:
        text = "".join(cell["source"])
        assert "\ndef " not in f"\n{text}", "logic lives in medallion_nb/"
        assert "\nclass " not in f"\n{text}", "logic lives in medallion_nb/"
    assert book["metadata"]["kernelspec"]["name"] == "python3"
