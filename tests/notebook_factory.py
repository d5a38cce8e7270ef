"""Tiny projects with real layer notebooks, for the runner's tests."""

from __future__ import annotations

from pathlib import Path

import nbformat
from conftest import THREE_LAYERS, write_project

PARAMETERS = '''project_dir = ".."      # project folder
run_id = "dev"          # set by the runner
run_date = ""           # ISO date; empty means today
full_refresh = False    # rebuild instead of incremental'''


def notebook_text(*cells: str, extra_parameters: str = "") -> str:
    """A notebook (JSON text) with the standard parameters cell followed by ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMETERS + ("\n" + extra_parameters if extra_parameters else ""))
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A layer"), params,
                *(nbformat.v4.new_code_cell(src) for src in cells)]
    return nbformat.writes(nb)


CONNECT = "import medallion_nb\nlake = medallion_nb.connect(project_dir, run_id=run_id)"


def write_cell(table: str, rows: int) -> str:
    return f'lake.write("{table}", "select range as n from range({rows})")'


def three_layer_project(root: Path, *, silver_cells: tuple[str, ...] | None = None) -> Path:
    """bronze writes bronze.numbers (10 rows), silver writes silver.numbers and silver.evens, gold gold.total."""
    silver = silver_cells or (
        CONNECT,
        'lake.write("silver.numbers", "select n * 2 as n from bronze.numbers")',
        'lake.write("silver.evens", "select n from bronze.numbers where n % 2 = 0")',
    )
    return write_project(root, f"name: tiny\nlayers:{THREE_LAYERS}", {
        "notebooks/bronze.ipynb": notebook_text(CONNECT, write_cell("bronze.numbers", 10)),
        "notebooks/silver.ipynb": notebook_text(*silver),
        "notebooks/gold.ipynb": notebook_text(
            CONNECT, 'lake.write("gold.total", "select sum(n) as total from silver.numbers")'),
    })
