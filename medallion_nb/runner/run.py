"""Run a project's layers: parameters, run ids, the run folder and the run record.

``run_pipeline`` builds the plan (a Hamilton DAG, see :mod:`.plan`) and has
Hamilton execute it with a :class:`_Run` as the DAG's ``run`` input. For each
layer, ``_Run`` asks the engine to start the next layer's kernels, runs the
layer's notebooks, reads back what they wrote and saves the run record.

The run folder::

    <runs>/<run_id>/run.json                      the run record
    <runs>/<run_id>/<layer>/<notebook>.ipynb      executed copy (papermill output)
    <runs>/<run_id>/<layer>/<notebook>.writes.jsonl   tables the notebook wrote
    <runs>/<run_id>/<layer>/<notebook>.kernel.log     the kernel's own stdout/stderr
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from medallion_nb.errors import NotebookRunError
from medallion_nb.project import Project, Scalar
from medallion_nb.reporting import WRITE_LOG_ENV
from medallion_nb.runner.execute import NotebookEngine, NotebookOutcome, NotebookTask
from medallion_nb.runner.plan import LayerStep, NotebookStep, Plan, StepRunner, build_plan
from medallion_nb.runner.progress import RunObserver
from medallion_nb.runner.record import LayerRecord, NotebookRecord, RunRecord, utc_now

# Set by the runner; -p cannot override them.
RUNNER_PARAMETERS = {"project_dir": "--project", "run_id": "--run-id"}
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_INT = re.compile(r"^[+-]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def new_run_id(now: datetime | None = None) -> str:
    """A run id like ``20261121T061500Z-3f9a``: UTC time plus a random suffix."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(2)}"


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a safe folder name.

    Raises:
        ValueError: it is empty, too long, or has characters other than letters, digits, ``.``, ``_``, ``-``.
    """
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValueError(f"run id {run_id!r} is not a safe folder name: use up to 128 letters, digits, "
                         "'.', '_' or '-', starting with a letter or digit")
    return run_id


def parse_value(text: str) -> Scalar:
    """A ``-p`` value: ``true``/``false`` -> bool, integers, decimals, anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INT.match(text.strip()):
        return int(text)
    if _FLOAT.match(text.strip()):
        return float(text)
    return text


def parse_parameter(text: str) -> tuple[str, Scalar]:
    """Split a ``name=value`` command-line parameter and parse its value.

    Raises:
        ValueError: no ``=``, or the name is not a Python identifier.
    """
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        raise ValueError(f"parameter {text!r}: expected name=value (e.g. -p run_date=2026-01-05)")
    if not name.isidentifier():
        raise ValueError(f"parameter {text!r}: {name!r} is not a valid parameter name (a Python identifier)")
    return name, parse_value(value)


def notebook_parameters(project: Project, run_id: str, overrides: Mapping[str, Scalar] | None = None,
                        ) -> dict[str, Scalar]:
    """The parameters every layer notebook gets: runner values, project defaults, then overrides.

    Raises:
        ValueError: an override of a runner-set parameter, or a bad ``run_date``/``full_refresh``.
    """
    overrides = dict(overrides or {})
    for name, option in RUNNER_PARAMETERS.items():
        if name in overrides:
            raise ValueError(f"parameter {name} is set by the runner; use {option} instead of -p {name}=...")
    params: dict[str, Scalar] = {"project_dir": str(project.root), "run_id": run_id,
                                 "run_date": "", "full_refresh": False}
    params.update(project.parameters)
    params.update(overrides)
    params["project_dir"], params["run_id"] = str(project.root), run_id
    run_date = params["run_date"]
    if run_date is None:
        params["run_date"] = ""
    elif run_date != "":
        try:
            date.fromisoformat(str(run_date))
        except ValueError:
            raise ValueError(f"parameter run_date: {run_date!r} is not an ISO date (YYYY-MM-DD) or empty") from None
        if not isinstance(run_date, str):
            raise ValueError(f"parameter run_date: {run_date!r} is not an ISO date (YYYY-MM-DD) or empty")
    if not isinstance(params["full_refresh"], bool):
        raise ValueError(f"parameter full_refresh: expected true or false, got {params['full_refresh']!r}")
    return params


def duration_seconds(text: str) -> float | None:
    """Seconds in an ISO-8601 duration such as ``PT30M`` (``None`` if it is not one)."""
    match = _DURATION.match(text)
    if not match:
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def run_pipeline(
    project: Project,
    *,
    layers: Sequence[str] | None = None,
    parameters: Mapping[str, Scalar] | None = None,
    run_id: str | None = None,
    observer: RunObserver | None = None,
    engine: NotebookEngine | None = None,
) -> RunRecord:
    """Execute the project's layers in order with papermill and record the run.

    Args:
        project: the loaded project.
        layers: names of the layers to run (in project order); all by default.
        parameters: notebook parameters overriding the project's defaults.
        run_id: the run's id and folder name; a new timestamped id by default.
        observer: told about progress (the CLI prints it).
        engine: executes notebooks; a :class:`NotebookEngine` by default.

    Returns:
        The run record (also saved as ``<runs>/<run_id>/run.json``).

    Raises:
        ProjectError: an unknown layer name.
        ValueError: a bad run id, an existing run folder, or bad parameters.
        NotebookRunError: a notebook failed; names the layer, the cell and the executed notebook.
    """
    plan = build_plan(project, layers)
    run_id = check_run_id(run_id) if run_id is not None else new_run_id()
    params = notebook_parameters(project, run_id, parameters)
    run_dir = project.runs / run_id
    if run_dir.exists():
        raise ValueError(f"run id {run_id!r} was used before: {run_dir} exists; choose another --run-id")
    observer = observer or RunObserver()
    started = time.monotonic()
    record = RunRecord(run_id=run_id, project=project.name, project_dir=project.root, run_dir=run_dir,
                       parameters=params, layers=[])
    run = _Run(plan, record, params, observer, engine or NotebookEngine())
    record.layers = [LayerRecord(step.name, [run.notebook_record(nb) for nb in step.notebooks])
                     for step in plan.steps]
    record.save()
    observer.run_started(record)
    try:
        with run.engine:
            plan.execute(run)
        failed = [layer for layer in record.layers if layer.status == "failed"]
        record.status = "failed" if failed else "succeeded"
        record.error = "\n".join(layer.error or "" for layer in failed) or None
    except BaseException as exc:  # Ctrl-C or a bug: the record still says how far the run got
        record.status = "failed"
        record.error = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        for layer in record.layers:
            if layer.status == "running":
                layer.status, layer.error = "failed", record.error
                layer.collect_writes()
            elif layer.status == "pending":
                layer.status, layer.error = "skipped", f"not run: {record.error}"
        raise
    finally:
        record.finished = utc_now()
        record.duration_s = round(time.monotonic() - started, 3)
        record.save()
        observer.run_finished(record)
    if record.status == "failed":
        raise NotebookRunError(record.error or "the run failed", hint=f"run record: {record.path}")
    return record


class _Run(StepRunner):
    """The DAG's ``run`` input: turns plan steps into tasks and layers into records."""

    def __init__(self, plan: Plan, record: RunRecord, params: dict[str, Scalar], observer: RunObserver,
                 engine: NotebookEngine) -> None:
        self.plan = plan
        self.record = record
        self.params = params
        self.observer = observer
        self.engine = engine

    def _paths(self, step: NotebookStep) -> tuple[Path, Path, Path]:
        folder = self.record.run_dir / step.layer
        name = step.notebook.stem
        return folder / f"{name}.ipynb", folder / f"{name}.writes.jsonl", folder / f"{name}.kernel.log"

    def notebook_record(self, step: NotebookStep) -> NotebookRecord:
        output, write_log, _ = self._paths(step)
        return NotebookRecord(self.plan.relative(step.notebook), self.plan.relative(output), write_log)

    def task(self, step: NotebookStep, blocked_by: str | None = None) -> NotebookTask:
        output, write_log, kernel_log = self._paths(step)
        return NotebookTask(step.layer, step.notebook, output, self.params,
                            env={WRITE_LOG_ENV: str(write_log)}, kernel_log=kernel_log, blocked_by=blocked_by)

    def notebook_task(self, step: NotebookStep, after: LayerRecord | None) -> NotebookTask:
        blocked = after is not None and after.status != "succeeded"
        return self.task(step, blocked_by=after.name if blocked and after else None)

    def run_layer(self, step: LayerStep, tasks: Sequence[NotebookTask]) -> LayerRecord:
        index = self.plan.steps.index(step) + 1
        total = len(self.plan.steps)
        layer = self.record.layer(step.name)
        blocked_by = next((task.blocked_by for task in tasks if task.blocked_by), None)
        if blocked_by:
            layer.status = "skipped"
            layer.error = f"not run: layer {blocked_by!r} did not succeed"
            for nb in layer.notebooks:
                nb.status = "skipped"
            self.record.save()
            self.observer.layer_finished(index, total, layer)
            return layer
        layer.status, layer.started = "running", utc_now()
        self.record.save()
        self.observer.layer_started(index, total, layer)
        if index < total:
            # Start the next layer's kernels now so they are ready when this layer ends.
            self.engine.prepare([self.task(nb) for nb in self.plan.steps[index].notebooks])
        started = time.monotonic()
        outcomes = self.engine.run(tasks, timeout=duration_seconds(step.layer.timeout))
        layer.duration_s = round(time.monotonic() - started, 3)
        for nb, outcome in zip(layer.notebooks, outcomes, strict=True):
            nb.status, nb.duration_s = outcome.status, round(outcome.duration_s, 3)
            nb.error = outcome.error.to_dict() if outcome.error else None
        layer.collect_writes()
        failures = [o for o in outcomes if not o.ok]
        layer.status = "failed" if failures else "succeeded"
        layer.error = "\n".join(self._failure(step, o) for o in failures) or None
        self.record.save()
        self.observer.layer_finished(index, total, layer)
        return layer

    def _failure(self, step: LayerStep, outcome: NotebookOutcome) -> str:
        error = outcome.error
        assert error is not None
        source = self.plan.relative(outcome.task.notebook)
        lines = [f"layer {step.name!r} failed: {source}, {error.describe()}"]
        if error.first_line:
            lines.append(f"  failing cell starts: {error.first_line}")
        lines.append(f"  executed notebook: {outcome.task.output}")
        return "\n".join(lines)
