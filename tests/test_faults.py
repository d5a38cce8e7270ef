"""Killing runs: SIGKILL `medallion-nb run` at many points, recover, and end where an uninterrupted run ends.

The runner is killed alone (SIGKILL, no chance to clean up); its kernels must die
with it (they get the parent-death signal), so nothing commits after the kill.
Each kill point is a cell of a layer notebook (seen on the runner's progress
lines) plus a short delay, so kills land before, inside and after writes: the
creation of new tables in an empty lake, bronze's merge of customers, silver's
replaces. After every kill: no kernel of the killed run is alive, ``connect()``
opens the lake, and the next run marks the killed run ``interrupted``. At the end
one normal run brings the lake to the state of an uninterrupted run, table for
table: same row counts, same checksums.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from medallion_nb import connect
from tests.conftest import copy_demo_project

# 26 runs of the demo: a few minutes on an idle machine, more on a busy one.
pytestmark = [pytest.mark.notebook, pytest.mark.timeout(2400)]

VENV_BIN = Path(sys.executable).parent
# Differ between any two runs by design: when and by which run a row was loaded.
LINEAGE = {"_ingested_at", "_run_id"}
# (notebook, cell index counted like the source notebook, delay after the cell started in seconds)
KILL_POINTS = [
    ("bronze", 2, 0.0), ("bronze", 4, 0.0), ("bronze", 4, 0.3), ("bronze", 4, 0.8), ("bronze", 6, 0.0),
    ("bronze", 6, 0.2), ("silver", 2, 0.0), ("silver", 4, 0.0), ("silver", 4, 0.2), ("silver", 5, 0.1),
    ("silver", 7, 0.0), ("silver", 9, 0.1), ("silver", 13, 0.0), ("silver", 13, 0.3), ("silver", 16, 0.0),
    ("silver", 16, 0.2), ("gold", 2, 0.0), ("gold", 6, 0.0), ("gold", 6, 0.2), ("gold", 8, 0.1),
    ("gold", 10, 0.0), ("gold", 8, 0.3), ("silver", 13, 0.6), ("bronze", 4, 0.1),
]


def checksums(project: Path) -> dict[str, tuple[int, int]]:
    """Per table: (rows, an order-independent hash of the rows without lineage columns)."""
    out = {}
    with connect(project) as lake:
        for name in lake.tables():
            rel = lake.table(name)
            columns = [c for c in rel.columns if c not in LINEAGE]
            row = ", ".join(f'"{c}"' for c in columns)
            rows, digest = lake.sql(f"SELECT count(*), coalesce(sum(hash(({row}))), 0) FROM {name}").fetchall()[0]
            out[name] = (rows, int(digest))
    return out


def start(project: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MEDALLION_KESTRA_OUTPUTS", None)
    return subprocess.Popen([str(VENV_BIN / "medallion-nb"), "run", "--project", str(project), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def kill_at(proc: subprocess.Popen, notebook: str, cell: int, delay: float) -> tuple[bool, list[int]]:
    """Read the runner's progress until ``notebook``'s cell ``cell`` starts, wait ``delay``, SIGKILL the runner.

    Returns whether the point was reached (else the run ended first) and the kernels' pids.
    """
    assert proc.stderr is not None
    wanted = f"notebooks/{notebook}.ipynb: cell {cell}/"
    for line in proc.stderr:
        if line.startswith(wanted):
            time.sleep(delay)
            kernels = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
            os.kill(proc.pid, signal.SIGKILL)  # the runner alone: its kernels must follow by themselves
            proc.wait(timeout=60)
            return True, kernels
    proc.wait(timeout=600)
    return False, []


def alive(pids: list[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except psutil.NoSuchProcess:
            continue
    return found


def test_killed_runs_recover_to_the_uninterrupted_lake(tmp_path):
    reference = copy_demo_project(tmp_path / "reference")
    proc = start(reference, "--run-id", "reference")
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    expected = checksums(reference)
    assert {"bronze.orders", "bronze.customers", "silver.order_lines", "gold.daily_sales"} <= set(expected)

    project = copy_demo_project(tmp_path / "killed")
    killed = []
    for i, (notebook, cell, delay) in enumerate(KILL_POINTS):
        run_id = f"kill-{i:02d}"
        # The notebook with the kill point and what depends on it run again (--force); the rest is up to date.
        proc = start(project, "--run-id", run_id, "--force", "--select", f"notebooks/{notebook}.ipynb+")
        reached, kernels = kill_at(proc, notebook, cell, delay)
        assert reached, f"{run_id}: {notebook} cell {cell} was never reached (exit code {proc.returncode})"
        killed.append(run_id)
        # The kernels died with the runner: nothing of the killed run can commit any more.
        deadline = time.monotonic() + 30
        while alive(kernels) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive(kernels) == [], f"{run_id}: kernels {alive(kernels)} outlived their runner"
        with connect(project) as lake:  # the lake opens after every kill
            for name in lake.tables():
                lake.count(name)

    proc = start(project, "--run-id", "recovered")
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    assert checksums(project) == expected
    # A killed run's record says it was interrupted (the next run marked it), unless the kill
    # came after the run had ended (its last cell was quick): then it says succeeded.
    statuses = {run_id: json.loads((project / "runs" / run_id / "run.json").read_text())["status"]
                for run_id in killed}
    assert set(statuses.values()) <= {"interrupted", "succeeded"}, statuses
    assert sum(s == "interrupted" for s in statuses.values()) >= 20, statuses
