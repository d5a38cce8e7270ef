"""The writer lock of a lake on object storage: a lease object, taken and renewed with conditional writes.

Object stores have no ``flock``, and the writers of a shared lake may run on different
machines. So the lock is one object, ``<lake>/_medallion/writer.lease``, holding who
holds it (run id, host, pid, since, command) and until when (``expires``):

- **taking** it is a conditional write: create the object only if it does not exist
  (``If-None-Match: *``), or replace a released or expired one only if it is still the
  version just read (``If-Match: <etag>``). Of two writers racing, exactly one wins;
- the holder **renews** it (a conditional write again) every third of its time to
  live, from a background thread, for as long as it holds it;
- **releasing** it marks it released (conditionally: a lease someone else took over
  after it expired is left alone);
- a lease whose holder stopped renewing (killed, machine gone) is **taken over**
  once it has expired; on the holder's own host a dead pid is taken over at once.

A holder that stops renewing for longer than the time to live (a machine frozen, a
network cut) can be overtaken; every commit therefore checks first that the lease
still names it. Clocks of the machines sharing a lake must agree to well within the
time to live (NTP does that).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from medallion_nb.errors import LakeError
from medallion_nb.objectstore import ObjectChanged, ObjectExists, ObjectPath

LEASE_FILE = "writer.lease"
LEASE_SECONDS_ENV = "MEDALLION_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 120.0


def lease_seconds() -> float:
    """The lease's time to live: ``MEDALLION_LEASE_SECONDS`` or 120 s.

    Raises:
        LakeError: the variable is not a number of seconds >= 1.
    """
    text = os.environ.get(LEASE_SECONDS_ENV, "").strip()
    if not text:
        return DEFAULT_LEASE_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value < 1:
        raise LakeError(f"environment variable {LEASE_SECONDS_ENV}={text!r} is not a number of seconds >= 1",
                        hint=f"fix or unset {LEASE_SECONDS_ENV}")
    return value


class Lease:
    """The lease object of one lake (see the module docs)."""

    def __init__(self, folder: ObjectPath, ttl: float | None = None) -> None:
        self.path = folder / LEASE_FILE
        self.ttl = float(ttl) if ttl is not None else lease_seconds()
        self.record: dict[str, Any] | None = None  # what we wrote, while we hold it
        self.lost: str | None = None  # why we no longer hold it (taken over after it expired)
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        return self.record is not None

    def read(self) -> tuple[dict[str, Any] | None, str | None]:
        """The lease as stored (None if there is none, or it is unreadable) and its ETag."""
        found = self.path.read_versioned()
        if found is None:
            return None, None
        try:
            data = json.loads(found[0])
        except ValueError:
            return {}, found[1]  # damaged: treat as free (its writer could not have finished a PUT)
        return (data if isinstance(data, dict) else {}), found[1]

    def current(self) -> dict[str, Any] | None:
        """The holder the lease names, unless it was released (an expired one is still named)."""
        data, _ = self.read()
        return data if data and not data.get("released") else None

    def try_acquire(self, holder: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
        """Take the lease for ``holder`` if it is free, released or expired.

        Returns ``(True, previous)`` when taken (``previous``: a holder that died holding it,
        or None) or ``(False, holder)`` with the live holder (None if another writer
        won a race just now: try again).
        """
        data, etag = self.read()
        record = {**holder, "token": uuid.uuid4().hex, "ttl": self.ttl, "released": False,
                  "expires": time.time() + self.ttl}
        body = json.dumps(record, sort_keys=True).encode()
        try:
            if data is None:
                new_etag = self.path.write_bytes(body, create=True)
                previous = None
            elif live(data):
                return False, data
            else:
                new_etag = self.path.write_bytes(body, etag=etag)
                previous = data if data and not data.get("released") else None
        except (ObjectExists, ObjectChanged):
            return False, None
        with self._mutex:
            self.record, self._etag, self.lost = record, new_etag, None
        self._start_renewing()
        return True, previous

    def renew(self) -> bool:
        """Push the expiry forward; False (and :attr:`lost` set) if someone took the lease over."""
        with self._mutex:
            if self.record is None:
                return False
            record = {**self.record, "expires": time.time() + self.ttl}
            try:
                self._etag = self.path.write_bytes(json.dumps(record, sort_keys=True).encode(), etag=self._etag)
            except ObjectChanged:
                self.lost = f"the lease {self.path} was taken over by another writer after it expired"
                self.record = None
                return False
            self.record = record
            return True

    def release(self) -> None:
        """Mark the lease released (unless someone took it over meanwhile); stop renewing."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self._thread = None
        with self._mutex:
            record, etag, self.record, self._etag = self.record, self._etag, None, None
        if record is None:
            return
        done = {**record, "released": True, "expires": time.time()}
        try:
            self.path.write_bytes(json.dumps(done, sort_keys=True).encode(), etag=etag)
        except ObjectChanged:
            return  # taken over after it expired: the lease is someone else's now

    def _start_renewing(self) -> None:
        self._stop = threading.Event()
        stop = self._stop
        interval = max(self.ttl / 3, 0.2)

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    if not self.renew():
                        return
                except LakeError:
                    continue  # the store did not answer this time; the next renewal may get through

        self._thread = threading.Thread(target=loop, name=f"lease-renew {self.path}", daemon=True)
        self._thread.start()


def live(data: dict[str, Any]) -> bool:
    """Whether a lease record still holds: not released, not expired, and on this host its pid is alive."""
    if not data or data.get("released"):
        return False
    try:
        expires = float(data.get("expires", 0))
    except (TypeError, ValueError):
        return False
    if expires <= time.time():
        return False
    pid = data.get("pid")
    return not (data.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): existence is all we can tell
    # The state letter follows the command name, which is in parentheses and may contain spaces.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
