"""Failures of the file system, said cause first.

DuckDB and delta-rs report a full disk or a denied permission deep inside a long
message ("Failed to parse parquet ...", "Generic LocalFileSystem error ..." followed
by a Rust backtrace with terminal colour codes). :func:`failure` puts the cause and
the path first, on one line: ``disk full: /lake/silver/orders (write to silver.orders
failed; the table is unchanged)``. The cause comes from the error number when Python
has it, else from the C library's own text for that number inside the message, else
from looking at the folder itself (read-only mount, no space left, not writable).
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BACKTRACE = re.compile(r"^\s*(\d+: |at |Stack backtrace:|Backtrace)")
_CAUSES = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
}
# Free space below this on the lake's file system counts as full when a write failed.
_NEARLY_FULL = 1 << 20


def clean_message(text: str, limit: int = 600) -> str:
    """``text`` without colour codes and backtrace lines, on few lines, at most ``limit`` characters."""
    lines = []
    for line in _ANSI.sub("", text).splitlines():
        if _BACKTRACE.match(line):
            continue
        if line.strip():
            lines.append(line.rstrip())
    out = "\n".join(lines)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def cause_of(exc: BaseException, path: Path | None = None) -> str | None:
    """The file-system cause of ``exc`` ("disk full", "permission denied", ...) or None.

    With ``path``, an error that names no cause is explained by the state of the
    file system there (only pass it for errors of a file operation).
    """
    for err in _chain(exc):
        if isinstance(err, OSError) and err.errno in _CAUSES:
            return _CAUSES[err.errno]
    text = " ".join(str(err) for err in _chain(exc))
    for code, cause in _CAUSES.items():
        if os.strerror(code) in text:
            return cause
    return _probe(path) if path is not None else None


def failure(exc: BaseException, path: Any, action: str, *, probe: bool = True) -> str:
    """One line for a failed file operation: the cause and path first when known, then ``action``.

    ``probe=False`` for errors that need not come from the file system (a bad
    value in a query): then only the error itself can name a cause. A location on
    object storage (not a :class:`~pathlib.Path`) is never probed as a local folder.
    """
    cause = cause_of(exc, path if probe and isinstance(path, Path) else None)
    if cause:
        return f"{cause}: {path} ({action})"
    return f"{action}: {clean_message(str(exc))}"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _probe(path: Path) -> str | None:
    """Look at the nearest existing folder of ``path`` for a reason writes fail there."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    if stat.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if stat.f_bavail * stat.f_frsize < _NEARLY_FULL or (stat.f_files and stat.f_favail == 0):
        return "disk full"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    return None
