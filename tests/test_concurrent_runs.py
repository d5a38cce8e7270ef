"""Two runs at once, and a reader while they write: one writer at a time, readers see whole runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from medallion_nb import MedallionError, connect
from medallion_nb.lakemeta import meta_dir
from medallion_nb.project import load_project
from tests.conftest import copy_demo_project

pytestmark = pytest.mark.notebook

VENV_BIN = Path(sys.executable).parent


def start(project: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen([str(VENV_BIN / "medallion-nb"), "run", "--project", str(project), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def consistent_gold(project: Path) -> tuple[str | None, float, float]:
    """(published run, revenue by day, revenue by month) as one reader of the published snapshot sees them."""
    with connect(project, snapshot="published") as lake:
        daily = lake.sql("SELECT coalesce(sum(revenue), 0) FROM gold.daily_sales").fetchall()[0][0]
        monthly = lake.sql("SELECT coalesce(sum(revenue), 0) FROM gold.revenue_by_category_month").fetchall()[0][0]
        return lake.manifest.run_id if lake.manifest else None, float(daily), float(monthly)


def hold_gold_until(project: Path, release: Path) -> None:
    """Make gold's notebook wait for ``release`` to exist: the first run holds the lock until the test says so."""
    path = project / "notebooks" / "gold.ipynb"
    book = json.loads(path.read_text(encoding="utf-8"))
    wait = (f"import pathlib, time\nrelease = pathlib.Path({str(release)!r})\ndeadline = time.monotonic() + 600\n"
            "while not release.exists():\n    assert time.monotonic() < deadline, 'never released'\n"
            "    time.sleep(0.05)")
    book["cells"].insert(3, {"cell_type": "code", "execution_count": None, "id": "hold", "metadata": {},
                             "outputs": [], "source": wait})
    path.write_text(json.dumps(book), encoding="utf-8")


def test_a_second_run_refuses_or_waits_and_readers_see_only_published_runs(tmp_path):
    project = copy_demo_project(tmp_path / "shop")
    release = tmp_path / "release"
    hold_gold_until(project, release)
    first = start(project, "--run-id", "first", "-p", "run_date=2026-01-20")
    holder = meta_dir(load_project(project)) / "writer.json"
    deadline = time.monotonic() + 300  # only stops a hung test
    while not holder.exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)

    # Refused at once, naming the holder.
    refused = start(project, "--run-id", "refused")
    _, err = refused.communicate(timeout=300)
    assert refused.returncode == 1
    assert "is locked: run first (pid " in err
    assert not (project / "runs" / "refused").exists()
    # Waits for the first run, then runs (the rest of the month).
    waiting = start(project, "--run-id", "second", "--wait", "600")
    time.sleep(1)  # not needed for correctness: gives the waiting run time to queue up behind the lock
    release.touch()

    seen: list[tuple[str | None, float, float]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(consistent_gold(project))
            except MedallionError as exc:  # before the first publish there may be no gold to read
                seen.append((f"error: {type(exc).__name__}", 0.0, 0.0))
            time.sleep(0.05)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        _, err1 = first.communicate(timeout=900)
        _, err2 = waiting.communicate(timeout=900)
    finally:
        stop.set()
        thread.join()
    assert first.returncode == 0, err1
    assert waiting.returncode == 0, err2
    record = json.loads((project / "runs" / "second" / "run.json").read_text())
    assert record["started"] >= json.loads((project / "runs" / "first" / "run.json").read_text())["finished"]

    with connect(project) as lake:
        dupes = lake.sql("SELECT count(*) - count(DISTINCT (order_id, _source_file)) FROM bronze.orders").fetchall()
        files = lake.sql("SELECT count(DISTINCT _source_file) FROM bronze.orders").fetchall()
    assert dupes == [(0,)]
    assert files == [(35,)]
    # The reader only ever saw whole published runs: both gold tables from the same run agree.
    published = [s for s in seen if s[0] in ("first", "second")]
    assert published, seen[-5:]
    for run_id, daily, monthly in published:
        assert abs(daily - monthly) < 0.01, (run_id, daily, monthly)
    assert seen[-1][0] == "second"
