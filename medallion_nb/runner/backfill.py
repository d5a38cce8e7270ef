"""Backfill: run the pipeline once per day of a date range, oldest first.

Each day is one run with ``run_date`` set to that day and the run id
``backfill-<day>``. A day whose run already succeeded is not run again, a day
whose run failed or was interrupted is resumed, and within a run notebooks
whose inputs did not change are up to date, so a repeated backfill changes
nothing. What a day's run processes is what the notebooks do with ``run_date``
(the demo's bronze ingests the files dated up to that day).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, timedelta

from medallion_nb.errors import UsageError
from medallion_nb.project import Project, Scalar
from medallion_nb.runfolder import record_file, run_folder
from medallion_nb.runner.progress import RunObserver
from medallion_nb.runner.record import RunRecord, load_record
from medallion_nb.runner.run import run_pipeline

RUN_ID_PREFIX = "backfill-"


def days(start: date, end: date) -> Iterator[date]:
    """The days from ``start`` to ``end``, both included.

    Raises:
        UsageError: ``end`` is before ``start``.
    """
    if end < start:
        raise UsageError(f"backfill: --end {end} is before --start {start}")
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def backfill(project: Project, start: date, end: date, *, layers: Sequence[str] | None = None,
             select: Sequence[str] | None = None, parameters: Mapping[str, Scalar] | None = None,
             force: bool = False, wait: float | None = 0,
             observer_factory: Callable[[], RunObserver] | None = None) -> list[tuple[date, str]]:
    """Run the pipeline for each day from ``start`` to ``end``, in order.

    Returns:
        ``(day, what happened)`` per day: ``"succeeded"``, ``"resumed"`` or ``"already done"``.

    Raises:
        UsageError: ``run_date`` among ``parameters``, or ``end`` before ``start``.
        NotebookRunError: a day failed; later days are not run.
    """
    parameters = dict(parameters or {})
    if "run_date" in parameters:
        raise UsageError("backfill sets run_date for each day; leave out -p run_date")
    done: list[tuple[date, str]] = []
    for day in days(start, end):
        run_id = f"{RUN_ID_PREFIX}{day.isoformat()}"
        path = record_file(run_folder(project, run_id))
        observer = observer_factory() if observer_factory else None
        previous = load_record(path) if path.is_file() else None
        if previous is not None and previous.get("status") == "succeeded" and not force:
            done.append((day, "already done"))
            continue
        if previous is not None and not force:
            record: RunRecord = run_pipeline(project, resume=run_id, observer=observer, wait=wait)
            done.append((day, "resumed" if record.status == "succeeded" else record.status))
            continue
        if previous is not None:  # --force: a new attempt under a new id
            run_id = f"{run_id}-{len(list(project.runs.glob(run_id + '*')))}"
        run_pipeline(project, layers=layers, select=select, parameters={**parameters, "run_date": day.isoformat()},
                     run_id=run_id, observer=observer, force=force, wait=wait)
        done.append((day, "succeeded"))
    return done
