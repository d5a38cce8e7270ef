"""The errors medallion_nb raises on purpose.

Every message is written for the person running the pipeline: it says what went
wrong, where (file, table, column or key) and, where useful, what to do next.
"""

from __future__ import annotations


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


class NotebookRunError(MedallionError):
    """A layer notebook failed; names the layer, the executed notebook and the failing cell."""


class SecretError(MedallionError):
    """A ``${NAME}`` secret cannot be resolved (the variable is not set) or is misused (passed as ``-p``)."""

    retryable = False  # configuration: running again cannot fix it


class FlowError(MedallionError):
    """A Kestra flow cannot be generated from the project."""
