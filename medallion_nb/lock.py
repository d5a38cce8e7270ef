"""One writer at a time: the lake's writer lock.

A run holds ``<lake>/_medallion/writer.lock`` with ``fcntl.flock`` while it writes,
and describes itself in ``<lake>/_medallion/writer.json`` (run id, host, pid, since,
command). The kernel releases a flock when its holder dies, so a lock whose holder
was killed is simply free: the next writer takes it over (and learns from the
leftover ``writer.json`` which run died). Readers never take the lock.

The runner holds the lock for a whole run and tells its notebook kernels so through
``MEDALLION_RUN_LOCK=<run_id>:<runner pid>``. Every commit enters
:func:`commit_guard`: inside a run it checks that the runner is still alive and
still holds the lock; outside a run (a notebook on its own) it takes the lock for
the duration of the write, and refuses, naming the holder, while a run writes.

A lake on object storage has no ``flock``: there the lock is a lease object,
``<lake>/_medallion/writer.lease``, taken and renewed with conditional writes
(:mod:`medallion_nb.lease`), with the same API and messages.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medallion_nb.errors import LakeError, LockHeldError
from medallion_nb.lakemeta import lake_path, meta_dir, read_json, write_json_atomic
from medallion_nb.lease import LEASE_FILE, Lease, pid_alive
from medallion_nb.objectstore import ObjectPath
from medallion_nb.oserrors import failure

RUN_LOCK_ENV = "MEDALLION_RUN_LOCK"
LOCK_FILE = "writer.lock"
HOLDER_FILE = "writer.json"
# A write outside a run waits this long for another such write (never for a run).
WRITE_WAIT_SECONDS = 120.0
SCOPES = ("run", "write")


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) the writer lock."""

    run_id: str
    host: str
    pid: int
    since: str
    command: str = ""
    scope: str = "run"  # "run": a pipeline run; "write": one write made outside a run

    def __str__(self) -> str:
        what = f"run {self.run_id}" if self.scope == "run" else f"a write by {self.run_id!r} outside a run"
        doing = f"; {self.command}" if self.command else ""
        return f"{what} (pid {self.pid} on {self.host}, since {self.since}{doing})"

    def env(self) -> dict[str, str]:
        """The environment that tells a notebook kernel it writes for this run."""
        return {RUN_LOCK_ENV: f"{self.run_id}:{self.pid}"}

    def alive(self) -> bool | None:
        """Whether the holding process still exists (None: it runs on another host)."""
        if self.host != socket.gethostname():
            return None
        return pid_alive(self.pid)


class WriterLock:
    """The writer lock of one lake.

    ``with WriterLock(lake).hold(run_id, wait=60) as holder:`` holds it for a block;
    ``acquire`` / ``release`` (or ``with lock:`` after ``acquire``) for longer spans.
    """

    def __init__(self, lake: Any) -> None:
        self.root = lake_path(lake)
        self.folder = meta_dir(self.root)
        # On object storage: a lease object instead of flock + writer.json.
        self.lease = Lease(self.folder) if isinstance(self.folder, ObjectPath) else None
        self.path = self.folder / (LEASE_FILE if self.lease else LOCK_FILE)
        self.holder_path = self.path if self.lease else self.folder / HOLDER_FILE
        self.holder: Holder | None = None
        # What writer.json said when we took the lock: a holder that died without releasing it.
        self.took_over: Holder | None = None
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"<WriterLock {self.path} {'held by ' + str(self.holder) if self.holder else 'not held here'}>"

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None or (self.lease is not None and self.lease.held)

    def acquire(self, run_id: str, *, wait: float | None = 0, command: str | None = None,
                scope: str = "run") -> Holder:
        """Take the lock for ``run_id``.

        Args:
            run_id: the run that will write.
            wait: seconds to wait for the current holder to finish; 0 refuses at
                once, None waits as long as it takes.
            command: what the holder is doing, shown to whoever is refused.
            scope: ``"run"`` for a pipeline run, ``"write"`` for one write outside a run.

        Raises:
            LockHeldError: another process holds the lock (the message names it).
            LakeError: the lock file cannot be created (e.g. a read-only lake).
        """
        if self.held:
            raise LakeError(f"the writer lock {self.path} is already held here by {self.holder}")
        if scope not in SCOPES:
            raise LakeError(f"writer lock scope {scope!r} is not one of {', '.join(SCOPES)}")
        if self.lease is not None:
            return self._acquire_lease(run_id, wait, command, scope)
        fd = self._open()
        try:
            self._flock(fd, wait)
            stale = self.current()
            holder = Holder(run_id, socket.gethostname(), os.getpid(),
                            datetime.now(UTC).isoformat(timespec="seconds"),
                            command if command is not None else _command_line(), scope)
            write_json_atomic(self.holder_path, asdict(holder))
        except BaseException:
            os.close(fd)  # closing the descriptor releases the flock too
            raise
        self._fd, self.holder = fd, holder
        self.took_over = stale if stale and (stale.pid, stale.host) != (holder.pid, holder.host) else None
        _process_state(self.path).owner = self
        return holder

    def _acquire_lease(self, run_id: str, wait: float | None, command: str | None, scope: str) -> Holder:
        assert self.lease is not None
        deadline = None if wait is None else time.monotonic() + max(wait, 0)
        pause = 0.05
        while True:
            holder = Holder(run_id, socket.gethostname(), os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"),
                            command if command is not None else _command_line(), scope)
            taken, other = self.lease.try_acquire(asdict(holder))
            if taken:
                self.holder = holder
                self.took_over = _holder(other) if other else None
                _process_state(self.path).owner = self
                return holder
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise self._held_error(wait) from None
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, 1.0)

    def release(self) -> None:
        """Give the lock back (nothing happens if this object does not hold it)."""
        if self.lease is not None:
            if self.lease.held or self.holder is not None:
                state = _process_state(self.path)
                if state.owner is self:
                    state.owner = None
                self.lease.release()
                self.holder = None
            return
        if self._fd is None:
            return
        state = _process_state(self.path)
        if state.owner is self:
            state.owner = None
        # writer.json goes first, while we still hold the lock: one left behind means its holder died.
        with contextlib.suppress(FileNotFoundError):
            self.holder_path.unlink()
        fd, self._fd, self.holder = self._fd, None, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @contextlib.contextmanager
    def hold(self, run_id: str, *, wait: float | None = 0, command: str | None = None,
             scope: str = "run") -> Iterator[Holder]:
        """Hold the lock for the ``with`` block; see :meth:`acquire`.

        Raises:
            LockHeldError: another process holds the lock.
        """
        holder = self.acquire(run_id, wait=wait, command=command, scope=scope)
        try:
            yield holder
        finally:
            self.release()

    def __enter__(self) -> WriterLock:
        if not self.held:
            raise LakeError("acquire the writer lock before `with lock:`, or use `with lock.hold(run_id):`")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def current(self) -> Holder | None:
        """What ``writer.json`` (the lease) says: the holder, or one that died holding the lock; None if free."""
        try:
            data = self.lease.current() if self.lease is not None else read_json(self.holder_path)
        except LakeError:
            return None  # half-written by a holder that was killed mid-write: nobody to name
        return _holder(data)

    # -- internals -------------------------------------------------------
    def _open(self) -> int:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LakeError(failure(exc, self.path, "cannot open the writer lock"),
                            hint="writing needs write access to the lake folder") from exc

    def _flock(self, fd: int, wait: float | None) -> None:
        deadline = None if wait is None else time.monotonic() + max(wait, 0)
        pause = 0.02
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise self._held_error(wait) from None
                time.sleep(pause if left is None else min(pause, left))
                pause = min(pause * 2, 0.5)

    def _held_error(self, wait: float | None) -> LockHeldError:
        holder = self.current()
        # The holder writes writer.json just after it takes the lock: give it a moment.
        for _ in range(20):
            if holder is not None:
                break
            time.sleep(0.05)
            holder = self.current()
        who = str(holder) if holder else "another process (it has not described itself yet)"
        waited = f" (still held after waiting {wait:g}s)" if wait else ""
        return LockHeldError(
            f"the lake {self.root} is locked: {who} is writing to it{waited}",
            holder=holder,
            hint="one writer at a time: wait for it to finish (or wait longer), or stop it; "
                 "a lock whose holder died is taken over automatically",
        )


def _holder(data: Any) -> Holder | None:
    if not isinstance(data, dict):
        return None
    try:
        return Holder(**{k: data[k] for k in Holder.__dataclass_fields__ if k in data})
    except TypeError:
        return None


# -- the guard around every commit ----------------------------------------

@dataclass
class _ProcessState:
    """This process's relation to one lake's lock: re-entrancy within the process."""

    mutex: threading.RLock
    owner: WriterLock | None = None  # a lock this process holds (a runner, or the outermost guard)
    depth: int = 0


_states: dict[Path | ObjectPath, _ProcessState] = {}
_states_mutex = threading.Lock()


def _process_state(path: Path | ObjectPath) -> _ProcessState:
    key = path if isinstance(path, ObjectPath) else path.absolute()
    with _states_mutex:
        if key not in _states:
            _states[key] = _ProcessState(threading.RLock())
        return _states[key]


@contextlib.contextmanager
def commit_guard(lake: Any, *, run_id: str | None = None, command: str | None = None) -> Iterator[Holder | None]:
    """Hold the right to commit to ``lake`` for the ``with`` block; re-entrant within a process.

    Inside a run (``MEDALLION_RUN_LOCK`` set) it checks that the runner is alive
    and still holds the lock. Outside a run it takes the lock for the block,
    waiting for another write outside a run but refusing at once while a run holds it.

    Raises:
        LakeError: the run this process writes for is no longer running.
        LockHeldError: a run (or, after waiting, another write) holds the lock.
    """
    lock = WriterLock(lake)
    state = _process_state(lock.path)
    with state.mutex:
        if state.depth or state.owner is not None:
            if state.owner is not None and state.owner.lease is not None and state.owner.lease.lost:
                raise LakeError(f"{state.owner.lease.lost}; nothing was committed",
                                hint="a writer that cannot renew its lease for longer than it lasts loses it")
            state.depth += 1
            try:
                yield state.owner.holder if state.owner else None
            finally:
                state.depth -= 1
            return
        env = os.environ.get(RUN_LOCK_ENV)
        if env:
            holder = check_run(lock, env)
            state.depth += 1
            try:
                yield holder
            finally:
                state.depth -= 1
            return
        writer = run_id or getattr(lake, "run_id", None) or "dev"
        notebook = getattr(lake, "notebook", None)
        holder = _acquire_for_write(lock, writer, command or f"{notebook or 'python'}: a write outside a run")
        state.depth += 1
        try:
            yield holder
        finally:
            state.depth -= 1
            lock.release()


def _acquire_for_write(lock: WriterLock, run_id: str, command: str) -> Holder:
    deadline = time.monotonic() + WRITE_WAIT_SECONDS
    while True:
        try:
            return lock.acquire(run_id, wait=0, command=command, scope="write")
        except LockHeldError as exc:
            holder = exc.holder
            if holder is not None and holder.scope == "run":
                raise
            if time.monotonic() >= deadline:
                raise lock._held_error(WRITE_WAIT_SECONDS) from None
        # Another single write outside a run holds it: that will not take long.
        time.sleep(0.1)


def check_run(lock: WriterLock, env: str) -> Holder:
    """Check that the run named by ``MEDALLION_RUN_LOCK`` is alive and holds the lock.

    Raises:
        LakeError: the value is malformed, the runner died, or another holder has the lock.
    """
    run_id, _, pid_text = env.rpartition(":")
    if not run_id or not pid_text.isdigit():
        raise LakeError(f"{RUN_LOCK_ENV}={env!r} is not <run_id>:<runner pid>",
                        hint="it is set by medallion-nb run; unset it to write outside a run")
    pid = int(pid_text)
    if not pid_alive(pid):
        raise LakeError(f"run {run_id} is no longer running (runner pid {pid} died); nothing was committed")
    holder = lock.current()
    if holder is None or (holder.run_id, holder.pid) != (run_id, pid):
        now = f"it is held by {holder}" if holder else "nobody holds it"
        raise LakeError(f"run {run_id} no longer holds the lake's writer lock ({now}); nothing was committed")
    return holder


def _command_line() -> str:
    args = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    text = " ".join(args)
    return text if len(text) <= 200 else text[:197] + "..."
