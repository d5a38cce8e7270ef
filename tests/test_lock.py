"""One writer at a time: the writer lock, the commit guard, and ingests racing in real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import LakeError, LockHeldError
from medallion_nb.lock import RUN_LOCK_ENV, WriterLock, commit_guard, pid_alive
from tests.conftest import write_project

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
CONFIG = """
name: t
layers:
  - {name: bronze, notebook: nb.ipynb}
  - {name: silver, notebook: nb.ipynb}
sources:
  events:
    path: raw/events/*.csv
    mode: append
  people:
    path: raw/people/*.csv
    mode: merge
    keys: [person_id]
    cursor: updated_at
"""

# A process that holds the lock until it reads a line (or is killed).
HOLD = """
import sys
from medallion_nb.lock import WriterLock
lock = WriterLock(sys.argv[1])
lock.acquire(sys.argv[2], command="test holder")
print("held", flush=True)
sys.stdin.readline()
lock.release()
"""

# A process that ingests every source when told to go, and reports rows per source.
INGEST = """
import json, sys
import medallion_nb as mnb
lake = mnb.connect(sys.argv[1], run_id=sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
report = lake.ingest()
print(json.dumps({r.source: r.rows for r in report}), flush=True)
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_project(tmp_path / "p", CONFIG, {"nb.ipynb": NOTEBOOK})


def lake_dir(root: Path) -> Path:
    return root / "data" / "lake"


@contextmanager
def holder_process(lake: Path, run_id: str) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lake), run_id],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_the_holder_is_described_and_released(tmp_path: Path):
    lock = WriterLock(tmp_path / "lake")
    holder = lock.acquire("run-1", command="medallion-nb run")
    record = json.loads((tmp_path / "lake" / "_medallion" / "writer.json").read_text())
    assert record == {"run_id": "run-1", "host": socket.gethostname(), "pid": os.getpid(),
                      "since": holder.since, "command": "medallion-nb run", "scope": "run"}
    assert holder.env() == {RUN_LOCK_ENV: f"run-1:{os.getpid()}"}
    with pytest.raises(LockHeldError, match=r"locked: run run-1 \(pid \d+ on .+, since .+; medallion-nb run\)"):
        WriterLock(tmp_path / "lake").acquire("run-2")
    lock.release()
    assert not (tmp_path / "lake" / "_medallion" / "writer.json").exists()
    with WriterLock(tmp_path / "lake").hold("run-2") as second:
        assert second.run_id == "run-2"


def test_a_second_writer_is_refused_at_once_naming_the_holder(root: Path):
    with mnb.connect(root) as lake:
        lake.write("silver.t", "SELECT 1 AS a")
    with holder_process(lake_dir(root), "run-A") as proc:
        with pytest.raises(LockHeldError) as info:
            WriterLock(lake_dir(root)).acquire("run-B", wait=0)
        message = str(info.value)
        assert f"run run-A (pid {proc.pid} on {socket.gethostname()}, since 20" in message
        assert info.value.holder.run_id == "run-A"
        # A write made outside a run refuses too, and the table keeps its content ...
        with mnb.connect(root) as lake:
            with pytest.raises(LockHeldError, match="run run-A"):
                lake.write("silver.t", "SELECT 2 AS a")
            # ... while reading needs no lock.
            assert lake.sql("SELECT a FROM silver.t").fetchall() == [(1,)]
        with pytest.raises(LockHeldError, match=r"still held after waiting 0.2s"):
            WriterLock(lake_dir(root)).acquire("run-B", wait=0.2)


def test_a_waiting_writer_gets_the_lock_when_the_holder_finishes(root: Path):
    got: list[object] = []
    with holder_process(lake_dir(root), "run-A") as proc:
        lock = WriterLock(lake_dir(root))
        waiter = threading.Thread(target=lambda: got.append(lock.acquire("run-B", wait=None)))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive(), "the waiter must not get the lock while run-A holds it"
        proc.stdin.write("release\n")
        proc.stdin.flush()
        waiter.join()
    assert got[0].run_id == "run-B"
    assert lock.took_over is None  # run-A released it properly
    lock.release()


def test_a_dead_holder_is_taken_over(root: Path):
    with holder_process(lake_dir(root), "run-dead") as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # The killed run never removed its description; the kernel freed the flock.
    assert json.loads((lake_dir(root) / "_medallion" / "writer.json").read_text())["run_id"] == "run-dead"
    lock = WriterLock(lake_dir(root))
    holder = lock.acquire("run-next")
    assert holder.run_id == "run-next"
    assert lock.took_over is not None
    assert lock.took_over.run_id == "run-dead"
    lock.release()
    with mnb.connect(root) as lake:  # and writes outside a run work again
        assert lake.write("silver.t", "SELECT 1 AS a").version == 0


def test_a_kernel_of_a_dead_run_commits_nothing(root: Path, monkeypatch):
    with mnb.connect(root) as lake:
        lake.write("silver.t", "SELECT 1 AS a")
    with holder_process(lake_dir(root), "run-1") as proc:
        monkeypatch.setenv(RUN_LOCK_ENV, f"run-1:{proc.pid}")
        with mnb.connect(root, run_id="run-1") as lake:
            assert lake.write("silver.t", "SELECT 2 AS a").version == 1  # the runner is alive and holds it
        monkeypatch.setenv(RUN_LOCK_ENV, f"run-0:{proc.pid}")
        with mnb.connect(root, run_id="run-0") as lake, \
                pytest.raises(LakeError, match=r"run run-0 no longer holds the lake's writer lock \(it is held by run "
                                               r"run-1"):
            lake.write("silver.t", "SELECT 3 AS a")
        monkeypatch.setenv(RUN_LOCK_ENV, f"run-1:{proc.pid}")
        os.kill(proc.pid, signal.SIGKILL)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, but not reaped: a zombie counts as dead
        assert not pid_alive(proc.pid)
        with mnb.connect(root, run_id="run-1") as lake:
            with pytest.raises(LakeError, match=rf"run run-1 is no longer running \(runner pid {proc.pid} died\); "
                                                "nothing was committed"):
                lake.write("silver.t", "SELECT 4 AS a")
            assert lake.sql("SELECT a FROM silver.t").fetchall() == [(2,)]
            assert lake.history("silver.t")[0]["version"] == 1
    monkeypatch.setenv(RUN_LOCK_ENV, "no-pid")
    with mnb.connect(root) as lake, pytest.raises(LakeError, match="is not <run_id>:<runner pid>"):
        lake.write("silver.t", "SELECT 5 AS a")


def test_the_guard_is_reentrant_and_nests_under_a_lock_this_process_holds(root: Path):
    with mnb.connect(root) as lake:
        with commit_guard(lake) as outer:
            assert outer.scope == "write"
            with commit_guard(lake) as inner:
                assert inner == outer
            lake.write("silver.t", "SELECT 1 AS a")  # the write's own guard nests
        assert not (lake_dir(root) / "_medallion" / "writer.json").exists()
        with WriterLock(lake).hold("run-7") as holder:  # a runner writing in its own process
            with commit_guard(lake) as nested:
                assert nested == holder
            lake.write("silver.t", "SELECT 2 AS a")
        assert lake.history("silver.t")[0]["version"] == 1


def ingest_at_once(root: Path, processes: int) -> list[dict[str, int]]:
    """Start ``processes`` ingests, let them all connect, then let them go together."""
    procs = [subprocess.Popen([sys.executable, "-c", INGEST, str(root), f"run-{i}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(processes)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate()
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_concurrent_ingests_never_duplicate(root: Path):
    raw = root / "raw"
    expected_events = 0
    for round_ in range(3):
        # Round 0 creates the tables; later rounds add a file to each source while every process holds a stale view.
        (raw / "events").mkdir(parents=True, exist_ok=True)
        (raw / "people").mkdir(parents=True, exist_ok=True)
        lines = [f"{round_ * 100 + i},kind{i % 3}" for i in range(50)]
        (raw / "events" / f"e{round_}.csv").write_text("id,kind\n" + "\n".join(lines) + "\n")
        people = [f"{i},tier{round_},2026-01-0{round_ + 1} 00:00:00" for i in range(20 + round_ * 5)]
        (raw / "people" / f"p{round_}.csv").write_text("person_id,tier,updated_at\n" + "\n".join(people) + "\n")
        expected_events += 50
        results = ingest_at_once(root, 3)
        # Exactly one process loaded each new file; the others found nothing new.
        assert sorted(r["events"] for r in results) == [0, 0, 50]
        with mnb.connect(root) as lake:
            assert lake.sql("SELECT count(*), count(DISTINCT id) FROM bronze.events").fetchall() == \
                [(expected_events, expected_events)]
            assert lake.sql("SELECT count(*), count(DISTINCT person_id), min(tier) FROM bronze.people").fetchall() \
                == [(20 + round_ * 5, 20 + round_ * 5, f"tier{round_}")]
