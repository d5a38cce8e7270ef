"""Run a project's notebooks: the run folder, the writer lock, the run record.

``run_pipeline`` builds the plan (a Hamilton DAG of sources, notebooks and
tables, see :mod:`.plan`), takes the lake's writer lock, and has Hamilton
execute the DAG with a :class:`_Run` as its ``run`` input. ``_Run`` is also a
Hamilton lifecycle hook (``NodeExecutionHook``): before and after each notebook
node it updates the run record and tells the observer; a node whose input is a
failed notebook's sentinel (Hamilton's ``GracefulErrorAdapter``) is recorded as
skipped.

The run folder is laid out as :mod:`medallion_nb.runfolder` says.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hamilton.lifecycle import NodeExecutionHook

from medallion_nb import errors
from medallion_nb.errors import MedallionError, NotebookFailure, NotebookRunError, UsageError
from medallion_nb.lock import WriterLock
from medallion_nb.names import check_run_id
from medallion_nb.project import Project, Scalar
from medallion_nb.reporting import KESTRA_ENV, WRITE_LOG_ENV, read_write_log
from medallion_nb.runfolder import RECORD_NAME, notebook_files, record_file, run_folder
from medallion_nb.runner import freshness
from medallion_nb.runner.execute import NotebookEngine, NotebookOutcome, NotebookTask
from medallion_nb.runner.params import new_run_id, notebook_parameters
from medallion_nb.runner.plan import NOT_RUN, NOT_SELECTED, NotebookFailed, NotebookStep, Plan, build_plan
from medallion_nb.runner.progress import RunObserver, default_observer
from medallion_nb.runner.publish import publish_record
from medallion_nb.runner.record import (
    DONE,
    LayerRecord,
    NotebookRecord,
    RunRecord,
    load_record,
    notebook_from_dict,
    utc_now,
    utc_precise,
)
from medallion_nb.validation import duration_seconds

EXIT_OK, EXIT_FAILED, EXIT_DATA = 0, 1, 3

# Kernels started at the start of a run for the notebooks after the first ones (see
# _Run._prepare_first). One waiting with the library imported holds ~200 MB: at 10M orders
# a second one, waiting through bronze's ingest, raised the run's peak memory by 140 MB
# (past 1.5 GB). So the next notebook's kernel starts warm, the one after it bare (~50 MB),
# importing the library when its upstream notebook starts.
WARM_AHEAD, COLD_AHEAD = 1, 1


def run_pipeline(
    project: Project,
    *,
    layers: Sequence[str] | None = None,
    select: Sequence[str] | None = None,
    parameters: Mapping[str, Scalar] | None = None,
    run_id: str | None = None,
    observer: RunObserver | None = None,
    engine: NotebookEngine | None = None,
    force: bool = False,
    wait: float | None = 0,
    resume: str | None = None,
    attach: bool = False,
    publish: bool = True,
) -> RunRecord:
    """Execute the project's notebooks (all, some layers, or a ``select`` slice) and record the run.

    Notebooks run as soon as the tables they read are written, side by side where
    the lineage allows; a failing notebook skips exactly what depends on it. A
    notebook whose inputs, source and parameters did not change since its last
    successful run is not run (``up to date``) unless ``force`` or ``full_refresh``.

    Args:
        project: the loaded project.
        layers: names of layers to run (their notebooks); all by default.
        select: dbt-style selectors (``silver.orders+``, ``+gold.sales``); see :meth:`Lineage.select`.
        parameters: notebook parameters overriding the project's defaults.
        run_id: the run's id and folder name; a new timestamped id by default.
        observer: told about progress; by default a progress widget inside a notebook, else nothing.
        engine: executes notebooks; a :class:`NotebookEngine` by default.
        force: run every selected notebook even when it is up to date.
        wait: seconds to wait for another run's writer lock (0: refuse at once, None: as long as it takes).
        resume: the id of an earlier run to continue: its notebooks that did not succeed run again,
            with the same parameters, into the same run folder.
        attach: add to the run ``run_id`` if it exists (a scheduler running one task per layer): its
            record keeps the other notebooks; a notebook that failed there with a data error is not
            run again (a scheduler's retry ends at once with exit code 3).
        publish: publish the run's table versions when it succeeds (see :mod:`.publish`); a scheduler
            running one task per layer publishes once, after the last layer.

    Returns:
        The run record (also saved as ``<runs>/<run_id>/run.json``).

    Raises:
        ProjectError: an unknown layer, a selector that matches nothing, lineage that contradicts the layers.
        UsageError: a bad run id, an existing run folder, or bad parameters.
        LockHeldError: another run holds the lake's writer lock (the message names it).
        NotebookRunError: a notebook failed; names the layer, the cell and the executed notebook;
            ``retryable`` is False when every failure is a data or config error.
    """
    previous = None
    if resume is not None:
        run_id, parameters, select, layers, previous = _resume(project, resume, parameters, select, layers)
    plan = build_plan(project, layers, select)
    run_id = check_run_id(run_id) if run_id is not None else new_run_id()
    params = notebook_parameters(project, run_id, parameters)
    run_dir = run_folder(project, run_id)
    if attach and record_file(run_dir).is_file():
        previous = load_record(record_file(run_dir))
        _refuse_retrying_data_errors(previous, plan, run_dir)
    elif run_dir.exists() and resume is None:
        raise UsageError(f"run id {run_id!r} was used before: {run_dir} exists; choose another --run-id")
    observer = observer or default_observer()
    lock = WriterLock(project)
    holder = lock.acquire(run_id, wait=wait)
    try:
        _mark_abandoned(project, run_id)
        record = _new_record(project, plan, run_id, params, run_dir, previous)
        run = _Run(plan, record, params, observer, engine or NotebookEngine(), holder.env(),
                   force=force or bool(params.get("full_refresh")), publish=publish)
        return run.execute()
    finally:
        lock.release()


def _new_record(project: Project, plan: Plan, run_id: str, params: Mapping[str, Scalar], run_dir: Path,
                previous: Mapping[str, Any] | None) -> RunRecord:
    record = RunRecord(run_id=run_id, project=project.name, project_dir=project.root, run_dir=run_dir,
                       parameters=params, layers=[], selection=[step.node for step in plan.steps])
    done = {}
    if previous is not None:  # resumed or attached: the other notebooks stay in the record as they were
        record.resumed = utc_now()
        record.started = previous.get("started", record.started)
        record.selection = list(previous.get("selection") or record.selection)
        done = {nb["notebook"]: nb for layer in previous.get("layers", []) for nb in layer.get("notebooks", [])}
    chosen = {step.node for step in plan.steps}
    for layer in project.layers:
        notebooks = []
        for step in (s for s in plan.all_steps if s.layer_name == layer.name):
            if step.node in chosen:
                notebooks.append(_notebook_record(plan, record, step, retry=previous is not None))
            elif step.node in done:
                notebooks.append(notebook_from_dict(done[step.node], _paths(record, step)[1]))
        if notebooks:
            entry = LayerRecord(layer.name, notebooks)
            entry.collect_writes()
            entry.settle()
            record.layers.append(entry)
    return record


def _notebook_record(plan: Plan, record: RunRecord, step: NotebookStep, *, retry: bool = False) -> NotebookRecord:
    output, write_log, kernel_log = _paths(record, step)
    if retry:  # keep the failed attempt's files next to the new ones
        stamp = utc_now().replace(":", "")
        for path in (output, write_log, kernel_log):
            if path.exists():
                path.rename(path.with_name(f"{path.stem}.failed-{stamp}{path.suffix}"))
    return NotebookRecord(step.node, plan.relative(output), write_log)


def _paths(record: RunRecord, step: NotebookStep) -> tuple[Path, Path, Path]:
    files = notebook_files(record.run_dir, step.layer_name, step.notebook)
    return files.output, files.write_log, files.kernel_log


class _Run(NodeExecutionHook):
    """One run: the DAG's ``run`` input and the Hamilton hook that records it."""

    def __init__(self, plan: Plan, record: RunRecord, params: dict[str, Scalar], observer: RunObserver,
                 engine: NotebookEngine, lock_env: Mapping[str, str], *, force: bool, publish: bool = True) -> None:
        self.plan = plan
        self.record = record
        self.params = params
        self.observer = observer
        self.engine = engine
        self.lock_env = dict(lock_env)
        self.force = force
        self.mutex = threading.RLock()
        self.outcomes: dict[str, NotebookOutcome] = {}
        self.clock: dict[str, float] = {}
        self.fresh = freshness.State(plan.project)
        self.stopping = threading.Event()
        self.publish = publish

    # -- the whole run -------------------------------------------------------------
    def execute(self) -> RunRecord:
        record = self.record
        started = time.monotonic()
        record.save()
        self.observer.run_started(record)
        try:
            with self.engine, _terminate_as_interrupt():
                self._prepare_first()
                self._supervise()
            failed = [layer for layer in record.layers if layer.status == "failed"]
            unfinished = failed or [layer for layer in record.layers if layer.status == "skipped"]
            record.status = "failed" if unfinished else "succeeded"
            record.error = "\n".join(layer.error or "" for layer in unfinished) or None
            if record.status == "succeeded" and self.publish:
                publish_record(self.plan.project, record)
                record.published = True
            elif record.status == "succeeded":
                record.status = "waiting"  # for its publish step (a scheduler's last task)
        except BaseException as exc:  # Ctrl-C or a bug: the record still says how far the run got
            self.stopping.set()
            record.status = "failed"
            record.error = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
            for layer in record.layers:
                for nb in layer.notebooks:
                    if nb.status == "running":
                        nb.status, nb.finished = "failed", utc_precise()
                    elif nb.status == "pending":
                        nb.status, nb.reason = "skipped", f"not run: {record.error}"
                layer.collect_writes()
                layer.settle()
                if layer.error is None and layer.status in ("failed", "skipped"):
                    layer.error = record.error
            record.exit_code = 130 if isinstance(exc, KeyboardInterrupt) else EXIT_FAILED
            raise
        finally:
            record.finished = utc_now()
            record.duration_s = round(time.monotonic() - started, 3)
            if record.exit_code is None:
                record.exit_code = self._exit_code()
            record.save()
            self.observer.run_finished(record)
        if record.status == "failed":
            raise NotebookRunError(record.error or "the run failed", failures=self._failures(),
                                   record=record, retryable=record.exit_code != EXIT_DATA,
                                   hint=f"run record: {record.path}")
        return record

    def _failures(self) -> tuple[NotebookFailure, ...]:
        return tuple(_notebook_failure(layer.name, nb.to_dict(), self.record.project_dir)
                     for layer in self.record.layers for nb in layer.notebooks if nb.status == "failed")

    def _supervise(self) -> None:
        """Have Hamilton execute the plan in a thread while this one stays free for Ctrl-C and SIGTERM.

        (A signal may be delivered to any thread; a main thread blocked in a lock
        without a timeout would not see it until the run ended.)
        """
        failure: list[BaseException] = []

        def execute() -> None:
            try:
                self.plan.execute(self, adapters=[self])
            except BaseException as exc:  # handed to the supervising thread, which raises it
                failure.append(exc)

        worker = threading.Thread(target=execute, name="medallion-run")
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.2)
        except BaseException:
            self.stopping.set()
            self.engine.stop_all()
            worker.join()
            raise
        if failure:
            raise failure[0]

    def _prepare_first(self) -> None:
        """Start kernels now: those of the notebooks that wait for no other one, and the next ones.

        The first notebooks' kernels start while Hamilton is imported and builds the DAG, so
        the first notebook does not wait for both one after the other. When one of them has
        work to do, the kernels of the next notebooks (by dependency: ``WARM_AHEAD`` with the
        preload, ``COLD_AHEAD`` more without it) start at the same time: starting a kernel is
        single-threaded Python, so they use the cores the first kernel's start leaves idle
        instead of competing with a running notebook's queries later. A kernel whose notebook
        turns out to be up to date is stopped unused.
        """
        upstream = {step.node: {up.node for up in self.plan.upstream(step)} for step in self.plan.steps}
        starting = [step for step in self.plan.steps if not upstream[step.node]]
        first = starting if self.force else [
            step for step in starting if not self.fresh.up_to_date(step, self.fresh.fingerprint(step, self.params))]
        # The next notebooks in the order they can run: those waiting only for the first ones, then theirs.
        ahead: list[NotebookStep] = []
        done = {step.node for step in starting}
        while first and len(ahead) < WARM_AHEAD + COLD_AHEAD:
            level = [step for step in self.plan.steps if step.node not in done and upstream[step.node] <= done]
            if not level:
                break
            ahead += level
            done |= {step.node for step in level}
        self.engine.prepare([self._task(step) for step in first + ahead[:WARM_AHEAD]])
        self.engine.prepare([self._task(step) for step in ahead[WARM_AHEAD:WARM_AHEAD + COLD_AHEAD]], warm=False)

    def _exit_code(self) -> int:
        if self.record.status in ("succeeded", "waiting"):
            return EXIT_OK
        failures = [nb.error for layer in self.record.layers for nb in layer.notebooks
                    if nb.status == "failed" and nb.error]
        if failures and all(_data_error(e.get("ename", "")) for e in failures):
            return EXIT_DATA
        return EXIT_FAILED

    # -- what the DAG's nodes call ---------------------------------------------------
    def source_state(self, name: str) -> dict[str, Any]:
        return self.fresh.source(name)

    def table_state(self, name: str) -> dict[str, Any]:
        return self.fresh.table(name)

    def notebook(self, node: str, inputs: Mapping[str, Any]) -> Any:
        step = self.plan.step(node)
        if self.stopping.is_set():  # interrupted: start nothing new
            raise NotebookFailed(node)
        fingerprint = self.fresh.fingerprint(step, self.params)
        if not self.force and self.fresh.up_to_date(step, fingerprint):
            task = self._task(step)
            self.engine.discard(task)  # started ahead in case it had work
            _note_up_to_date(task.output, step.node, self.fresh.last_run(step))
            with self.mutex:
                self.outcomes[node] = NotebookOutcome(task, "up to date", 0.0)
            return "up to date"
        before = self.fresh.versions(step)
        # The notebooks that wait for this one get their kernels started now, so they are ready.
        self.engine.prepare([self._task(s) for s in self.plan.dependents(node)])
        (outcome,) = self.engine.run([self._task(step)], timeout=duration_seconds(step.layer.timeout))
        with self.mutex:
            self.outcomes[node] = outcome
        if not outcome.ok:
            raise NotebookFailed(node)
        nb = self.record.notebook(node)
        self.fresh.remember(step, fingerprint, before, nb_reads(nb), self.record.run_id)
        return "succeeded"

    def _task(self, step: NotebookStep) -> NotebookTask:
        output, write_log, kernel_log = _paths(self.record, step)
        # The runner reports writes to Kestra itself: kernels print nothing into the notebooks.
        env = {WRITE_LOG_ENV: str(write_log), KESTRA_ENV: "", **self.lock_env}
        return NotebookTask(step.layer_name, step.notebook, output, self.params, env=env, kernel_log=kernel_log,
                            on_cell=lambda index, total, label: self._cell(step, index, total, label))

    def _cell(self, step: NotebookStep, index: int, total: int, label: str) -> None:
        nb = self.record.notebook(step.node)
        rows = sum(int(e.get("rows") or 0) for e in read_write_log(nb.write_log) if e.get("kind", "write") == "write")
        elapsed = time.monotonic() - self.clock.get(step.node, time.monotonic())
        self.observer.cell_started(self.record, nb, index, total, label, elapsed, rows)

    # -- Hamilton's lifecycle hooks: the record and progress ----------------------------
    def run_before_node_execution(self, *, node_name: str, node_tags: dict[str, Any], node_kwargs: dict[str, Any],
                                  **future_kwargs: Any) -> None:
        if node_tags.get("kind") != "notebook" or _blocked(node_kwargs):
            return
        with self.mutex:
            nb = self.record.notebook(node_name)
            layer = self.record.layer_of(node_name)
            nb.status, nb.started = "running", utc_precise()
            self.clock[node_name] = time.monotonic()
            if layer.status == "pending":
                layer.status, layer.started = "running", utc_now()
                self.clock[layer.name] = time.monotonic()
                self.observer.layer_started(self.record, layer)
            self.record.save()
            self.observer.notebook_started(self.record, nb)

    def run_after_node_execution(self, *, node_name: str, node_tags: dict[str, Any], node_kwargs: dict[str, Any],
                                 result: Any, error: Exception | None, success: bool, **future_kwargs: Any) -> None:
        if node_tags.get("kind") != "notebook":
            return
        with self.mutex:
            nb = self.record.notebook(node_name)
            layer = self.record.layer_of(node_name)
            blocked = _blocked(node_kwargs)
            if blocked:
                nb.status = "skipped"
                nb.reason = f"not run: {self._why(blocked)} did not succeed"
            else:
                self._finish(node_name, nb, result, error)
            layer.collect_writes()
            layer.settle()
            if layer.status not in ("pending", "running"):
                self._finish_layer(layer)
            self.record.save()
            self.observer.notebook_finished(self.record, nb)
            if layer.status not in ("pending", "running"):
                self.observer.layer_finished(self.record, layer)

    def _finish(self, node: str, nb: NotebookRecord, result: Any, error: Exception | None) -> None:
        outcome = self.outcomes.get(node)
        nb.finished = utc_precise()
        if outcome is not None and outcome.status == "up to date":
            nb.status, nb.started = "up to date", nb.started or nb.finished
            nb.reason = "its inputs, source and parameters did not change since run " + \
                (self.fresh.last_run(self.plan.step(node)) or "?")
            nb.duration_s = 0.0
            return
        if outcome is None:  # the node itself failed (a bug in the runner, not in the notebook)
            nb.status = "failed"
            nb.error = {"ename": type(error).__name__ if error else "Error", "evalue": str(error or ""),
                        "cell_index": None, "execution_count": None, "source": ""}
            return
        nb.status = outcome.status if result is not NOT_RUN else "failed"
        nb.duration_s = round(outcome.duration_s, 3)
        nb.error = outcome.error.to_dict() if outcome.error else None

    def _finish_layer(self, layer: LayerRecord) -> None:
        layer.duration_s = round(time.monotonic() - self.clock[layer.name], 3) if layer.name in self.clock else None
        problems = []
        for nb in layer.notebooks:
            if nb.status == "failed":
                problems.append(self._failure(layer.name, nb))
            elif nb.status == "skipped":
                problems.append(f"{nb.notebook}: {nb.reason}")
        layer.error = "\n".join(problems) or None
        if layer.status == "skipped" and all(nb.status == "skipped" for nb in layer.notebooks):
            reasons = sorted({nb.reason or "" for nb in layer.notebooks})
            layer.error = reasons[0] if len(reasons) == 1 else layer.error

    def _why(self, blocked: list[str]) -> str:
        names = []
        for name in blocked:
            writer = self.plan.lineage.writers.get(name)
            names.append(f"{name} ({self.plan.relative(writer.notebook)})" if writer else name)
        return ", ".join(names)

    def _failure(self, layer: str, nb: NotebookRecord) -> str:
        return _notebook_failure(layer, nb.to_dict(), self.record.project_dir).describe()


def _note_up_to_date(output: Path, notebook: str, last_run: str | None) -> None:
    """In place of the executed copy of a notebook that was not run: a one-cell note saying why.

    Written as plain JSON (nbformat 4.5): a run in which every notebook is up to date
    never imports nbformat, whose schema validation costs seconds to import.
    """
    text = (f"**{notebook} was not run: it is up to date.** Its inputs, its code and its parameters did not "
            f"change since its last successful run ({last_run}); that run's executed notebook is in its run folder.")
    note = {"cells": [{"cell_type": "markdown", "id": "up-to-date", "metadata": {}, "source": text}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(note, indent=1) + "\n", encoding="utf-8")


def nb_reads(nb: NotebookRecord) -> list[str]:
    """Tables the notebook read, as its write log recorded them."""
    return sorted({e["table"] for e in read_write_log(nb.write_log) if e.get("kind") == "read" and "table" in e})


def _blocked(node_kwargs: Mapping[str, Any]) -> list[str]:
    """Inputs that carry a failed notebook's sentinel (the node will not run)."""
    return [name for name, value in node_kwargs.items() if value is NOT_RUN]


def _refuse_retrying_data_errors(previous: Mapping[str, Any], plan: Plan, run_dir: Path) -> None:
    """A notebook that failed with a data error is not run again in the same run (a retry cannot fix it).

    Raises:
        NotebookRunError: with ``retryable`` False (exit code 3).
    """
    chosen = {step.node for step in plan.steps}
    for layer in previous.get("layers", []):
        for nb in layer.get("notebooks", []):
            error = nb.get("error") or {}
            if nb.get("notebook") in chosen and nb.get("status") == "failed" and _data_error(error.get("ename", "")):
                raise NotebookRunError(
                    f"not run again: {nb['notebook']} failed in an earlier attempt of run "
                    f"{previous.get('run_id')} with {error.get('ename')}: {error.get('evalue')} — a data or "
                    "config error that running again will not fix",
                    failures=(_notebook_failure(layer.get("name", ""), nb, Path(previous.get("project_dir", "."))),),
                    retryable=False,
                    hint=f"fix the data or the notebook, then start a new run; record: {record_file(run_dir)}")


def _notebook_failure(layer: str, nb: Mapping[str, Any], project_dir: Path) -> NotebookFailure:
    """A failed notebook's entry of the run record, as the error's structure."""
    error = nb.get("error") or {}
    return NotebookFailure(layer, nb.get("notebook", ""), str(error.get("ename") or "Error"),
                           str(error.get("evalue") or ""), error.get("cell_index"), error.get("execution_count"),
                           error.get("source") or "", project_dir / nb["output"] if nb.get("output") else None)


def _data_error(ename: str) -> bool:
    """Whether a notebook's error is one of ours that retrying cannot fix."""
    cls = getattr(errors, ename, None)
    return isinstance(cls, type) and issubclass(cls, MedallionError) and not cls.retryable


@contextmanager
def _terminate_as_interrupt() -> Iterable[None]:
    """SIGTERM (e.g. a scheduler stopping the run) ends the run like Ctrl-C: kernels stopped, record saved."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _mark_abandoned(project: Project, current: str) -> list[str]:
    """Mark records of runs whose runner died (still ``running``, runner gone) as ``interrupted``.

    Called while holding the writer lock, so no other run of this lake is running.
    """
    from medallion_nb.lock import pid_alive
    from medallion_nb.runner.record import mark_interrupted

    marked = []
    if not project.runs.is_dir():
        return marked
    for path in project.runs.glob(f"*/{RECORD_NAME}"):
        if path.parent.name == current:
            continue
        try:
            data = load_record(path)
        except (OSError, ValueError):
            continue
        if data.get("status") != "running":
            continue
        runner = data.get("runner") or {}
        if runner.get("host") not in (None, _host()):
            continue  # a runner on another host: we cannot tell whether it lives
        pid = runner.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and pid_alive(pid):
            continue
        mark_interrupted(path, data)
        marked.append(path.parent.name)
    return marked


def _host() -> str:
    import socket

    return socket.gethostname()


def _resume(project: Project, run_id: str, parameters: Mapping[str, Scalar] | None,
            select: Sequence[str] | None, layers: Sequence[str] | None
            ) -> tuple[str, Mapping[str, Scalar], list[str], None, dict[str, Any]]:
    """What ``--resume RUN_ID`` runs: the earlier run's notebooks that did not succeed, same parameters."""
    run_id = check_run_id(run_id)
    path = record_file(run_folder(project, run_id))
    if not path.is_file():
        raise UsageError(f"--resume {run_id}: no run record {path}")
    if parameters or select or layers:
        raise UsageError("--resume runs what the earlier run did not finish, with its parameters; "
                         "leave out --layer, --select and -p")
    data = load_record(path)
    if data.get("status") == "succeeded":
        raise UsageError(f"--resume {run_id}: that run succeeded; nothing to resume")
    todo = [nb["notebook"] for layer in data.get("layers", []) for nb in layer.get("notebooks", [])
            if nb.get("status") not in DONE]
    if not todo:
        todo = list(data.get("selection") or [])
    params = {k: v for k, v in (data.get("parameters") or {}).items() if k not in ("project_dir", "run_id")}
    return run_id, params, todo, None, data


__all__ = ["EXIT_DATA", "EXIT_FAILED", "EXIT_OK", "NOT_SELECTED", "run_pipeline"]
