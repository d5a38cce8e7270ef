"""A guard that catches tests opening files outside the repository.

The suite must pass in a clone of the repository on its own, so no test may read
files in a folder next to it or anywhere else it happens to find on the
developer's machine. An audit hook (``sys.addaudithook``) sees every ``open``,
``os.listdir`` and ``os.scandir`` of this Python process, and records the paths
outside what a test may use:

* the repository itself;
* the Python installation and the virtualenv (``sys.prefix`` and friends);
* system folders (``/usr``, ``/etc``, ``/proc``, …) and the per-user configuration
  and cache files that libraries read (``~/.jupyter``, ``~/.cache``, ``~/.hamilton.conf``:
  the dot-entries of the home folder);
* the temporary folder, except what was already in it when the session started
  (a leftover from something else, or the folder the repository itself sits in):
  pytest's ``tmp_path`` and the temporary files libraries create are new.

What it cannot see: reads by other processes (kernels, the CLI run as a
subprocess) and by native code (DuckDB, delta-rs open files in C++/Rust).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

_EVENTS = frozenset({"open", "os.listdir", "os.scandir"})
_SYSTEM = ("/usr", "/etc", "/proc", "/sys", "/dev", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/run", "/var")


def _norm(path: str | os.PathLike[str]) -> str:
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class ReadGuard:
    """Records files opened outside the allowed places; see the module docstring."""

    def __init__(self, repo: Path, *, tmp: str | None = None) -> None:
        self.repo = _norm(repo)
        self.home = _norm(os.path.expanduser("~"))
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        self.allowed: list[str] = [self.repo, *(_norm(p) for p in prefixes), *_SYSTEM]
        self.tmp = _norm(tmp or tempfile.gettempdir())
        # What lies in the temporary folder now was not made by this session.
        self.tmp_before = {_norm(os.path.join(self.tmp, name)) for name in os.listdir(self.tmp)}
        self.seen: list[str] = []
        self._active = False

    def allow(self, folder: str | os.PathLike[str]) -> None:
        """Allow a folder (pytest's base temporary folder, which may have existed before)."""
        self.allowed.append(_norm(folder))

    def outside(self, path: str) -> bool:
        """Whether a test may not open ``path`` (absolute, normalised)."""
        if any(_under(path, root) for root in self.allowed):
            return False
        if _under(path, self.home) and path != self.home and path[len(self.home):].lstrip(os.sep).startswith("."):
            return False  # per-user configuration and caches
        if _under(path, self.tmp):
            return any(_under(path, old) for old in self.tmp_before)
        return True

    def install(self) -> None:
        """Start recording (an audit hook cannot be removed: :meth:`stop` only mutes it)."""
        if not self._active:
            self._active = True
            sys.addaudithook(self._hook)

    def stop(self) -> None:
        self._active = False

    def take(self) -> list[str]:
        """The paths recorded since the last call, each once, in the order they were opened."""
        seen, self.seen = self.seen, []
        return list(dict.fromkeys(seen))

    def _hook(self, event: str, args: tuple) -> None:
        if event not in _EVENTS or not self._active or not args:
            return
        raw = args[0]
        if isinstance(raw, bytes):
            raw = os.fsdecode(raw)
        if not isinstance(raw, (str, os.PathLike)):
            return  # a file descriptor
        path = _norm(raw)
        if self.outside(path):
            self.seen.append(path)


def describe(paths: Iterable[str], repo: str) -> str:
    """The failure message for files opened outside the repository."""
    listed = "\n".join(f"  {p}" for p in paths)
    return (f"opened outside the repository {repo}:\n{listed}\n"
            "The suite must pass in a clone of the repository on its own: vendor what the test needs "
            "into the repository, or make it in tmp_path.")


GUARD = ReadGuard(Path(__file__).resolve().parents[1])
