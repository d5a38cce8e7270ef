"""Run a project's notebooks with papermill, planned and executed as a Hamilton DAG.

``run_pipeline(project)`` executes the notebooks (in parallel where their
lineage allows) and writes the run record; ``build_plan(project)`` gives the
DAG (``Plan.describe()``, ``Plan.dot()``).
"""

from medallion_nb.names import check_run_id
from medallion_nb.runner.execute import CellError, NotebookEngine, NotebookOutcome, NotebookTask
from medallion_nb.runner.params import new_run_id, notebook_parameters, parse_parameter, parse_value
from medallion_nb.runner.plan import NotebookStep, Plan, build_plan
from medallion_nb.runner.progress import (
    ConsoleProgress,
    NotebookProgress,
    RunObserver,
    format_summary,
    layer_result,
)
from medallion_nb.runner.record import LayerRecord, NotebookRecord, RunRecord, load_record
from medallion_nb.runner.run import EXIT_DATA, run_pipeline

__all__ = [
    "EXIT_DATA",
    "CellError",
    "ConsoleProgress",
    "LayerRecord",
    "NotebookEngine",
    "NotebookOutcome",
    "NotebookProgress",
    "NotebookRecord",
    "NotebookStep",
    "NotebookTask",
    "Plan",
    "RunObserver",
    "RunRecord",
    "build_plan",
    "check_run_id",
    "format_summary",
    "layer_result",
    "load_record",
    "new_run_id",
    "notebook_parameters",
    "parse_parameter",
    "parse_value",
    "run_pipeline",
]
