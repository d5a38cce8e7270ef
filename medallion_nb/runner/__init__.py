"""Run a project's layer notebooks with papermill, planned as a Hamilton DAG.

``run_pipeline(project)`` executes the layers in order and writes the run record;
``build_plan(project)`` gives the DAG (``Plan.describe()``, ``Plan.dot()``).
"""

from medallion_nb.runner.execute import CellError, NotebookEngine, NotebookOutcome, NotebookTask
from medallion_nb.runner.plan import LayerStep, NotebookStep, Plan, build_plan
from medallion_nb.runner.progress import ConsoleProgress, RunObserver, format_summary, layer_result
from medallion_nb.runner.record import LayerRecord, RunRecord, load_record
from medallion_nb.runner.run import (
    check_run_id,
    new_run_id,
    notebook_parameters,
    parse_parameter,
    parse_value,
    run_pipeline,
)

__all__ = [
    "CellError",
    "ConsoleProgress",
    "LayerRecord",
    "LayerStep",
    "NotebookEngine",
    "NotebookOutcome",
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
