"""The errors medallion_nb raises on purpose.

Every message is written for the person running the pipeline: it says what went
wrong, where (file, table, column or key) and, where useful, what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class MedallionError(Exception):
    """Base of every error we raise on purpose; ``str(err)`` is shown to users as is.

    ``retryable`` is False for errors that running again cannot fix (bad data, bad
    config): a scheduler should not retry them.
    """

    retryable: bool = True

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        from medallion_nb.secrets import redact

        # A secret resolved in this process never reaches a message (a driver may quote a connection string).
        message, hint = redact(message), (None if hint is None else redact(hint))
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class ProjectError(MedallionError):
    """``medallion.yaml`` is missing or invalid; the message lists every problem."""

    retryable = False

    def __init__(self, problems: list[str] | str, *, hint: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems), hint=hint)


class UsageError(MedallionError):
    """A function or command was given a value it cannot take: a bad run id, ``-p`` value or date,
    an argument of the wrong kind. The message says what was expected; the CLI exits with 2."""

    retryable = False  # the same call fails the same way


class LakeError(MedallionError):
    """A table could not be read or written (unknown table, bad key, failed write)."""


class LockHeldError(MedallionError):
    """Another process holds the lake's writer lock; ``holder`` describes it (run id, host, pid, since)."""

    def __init__(self, message: str, *, holder: object = None, hint: str | None = None) -> None:
        self.holder = holder
        super().__init__(message, hint=hint)


class IngestError(MedallionError):
    """A raw source could not be read; the message names the source and the file."""

    retryable = False  # bad or missing data: running again cannot fix it


class QualityError(MedallionError):
    """Quality checks failed; ``report`` holds every result."""

    retryable = False

    def __init__(self, message: str, *, report: object = None, hint: str | None = None) -> None:
        self.report = report
        super().__init__(message, hint=hint)


class ExpectationError(QualityError):
    """A ``fail`` expectation failed on rows about to be written; nothing was committed. ``report`` says why."""


@dataclass(frozen=True)
class NotebookFailure:
    """Where and why one notebook of a run stopped, as papermill reports a failing cell.

    ``cell_index`` counts the cells of the source notebook from 0 and ``execution_count``
    is the ``In [n]`` of the executed copy (both None when the notebook stopped outside a
    cell: a dead kernel, a timeout before the first cell); ``source`` is the failing
    cell's first line; ``output`` the executed notebook.
    """

    layer: str
    notebook: str
    ename: str
    evalue: str = ""
    cell_index: int | None = None
    execution_count: int | None = None
    source: str = ""
    output: Path | None = None

    def describe(self) -> str:
        """The failure in a few lines: layer, notebook, cell and error; the cell's first line; the executed copy."""
        where = ""
        if self.cell_index is not None:
            count = f" (In [{self.execution_count}])" if self.execution_count is not None else ""
            where = f"cell {self.cell_index}{count}: "
        what = f"{self.ename}: {self.evalue}" if self.evalue else self.ename
        lines = [f"layer {self.layer!r} failed: {self.notebook}, {where}{what}"]
        if self.source:
            lines.append(f"  failing cell starts: {self.source}")
        if self.output is not None:
            lines.append(f"  executed notebook: {self.output}")
        return "\n".join(lines)


class NotebookRunError(MedallionError):
    """A run failed: names the layer, the notebook, the failing cell and the executed notebook.

    ``failures`` holds a :class:`NotebookFailure` per notebook that failed; ``layer``,
    ``notebook``, ``cell_index``, ``execution_count``, ``ename``, ``evalue`` and ``output``
    are those of the first (None when no notebook failed, e.g. a run that is not published).
    ``record`` is the run record (:class:`medallion_nb.runner.RunRecord`) when the run started.
    """

    def __init__(self, message: str, *, failures: tuple[NotebookFailure, ...] = (), record: Any = None,
                 retryable: bool = True, hint: str | None = None) -> None:
        self.failures = tuple(failures)
        self.record = record
        self.retryable = retryable
        super().__init__(message, hint=hint)

    def _first(self, field: str) -> Any:
        return getattr(self.failures[0], field) if self.failures else None

    @property
    def layer(self) -> str | None:
        return self._first("layer")

    @property
    def notebook(self) -> str | None:
        return self._first("notebook")

    @property
    def cell_index(self) -> int | None:
        return self._first("cell_index")

    @property
    def execution_count(self) -> int | None:
        return self._first("execution_count")

    @property
    def ename(self) -> str | None:
        return self._first("ename")

    @property
    def evalue(self) -> str | None:
        return self._first("evalue")

    @property
    def output(self) -> Path | None:
        return self._first("output")


class SecretError(MedallionError):
    """A ``${NAME}`` secret cannot be resolved (the variable is not set) or is misused (passed as ``-p``)."""

    retryable = False  # configuration: running again cannot fix it


class FlowError(MedallionError):
    """A Kestra flow cannot be generated from the project."""
