"""The demo pipeline run incrementally equals a full rebuild over the same files, after every day.

Files arrive day by day (:class:`tests.demo_pipeline.Feed`): new orders, orders re-delivered
with other values — into and out of the quarantine —, a customer's new tier, a product's new
price, products and customers that were unknown, days with an empty file or no file at all.
After each day the lake that ran incrementally is compared, table for table, with a lake built
from scratch over the same files; the gold tables also with plain SQL over the raw files.

* The property test drives many random sequences through the notebooks' own code cells
  (:func:`tests.demo_pipeline.run_notebook` executes the cells of ``notebooks/*.ipynb``, not
  a copy of their logic) — a kernel per notebook and step would take too long.
* A representative sequence runs the real notebooks with ``medallion-nb run`` (papermill,
  Jupyter kernels), and ends with a run that finds nothing new.
* A silver run killed with SIGKILL between its writes, then run again, ends equal to the rebuild.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.demo_pipeline import (
    REPO,
    Feed,
    copy_raw,
    differences,
    lake_content,
    new_project,
    run_notebook,
    run_notebooks,
    versions,
)
from tests.test_pipeline import actual_gold, expected_gold

pytestmark = pytest.mark.notebook

STATUSES = ("placed", "Shipped", " delivered", "CANCELLED")
orders_spec = st.tuples(st.integers(1, 9), st.integers(1, 6), st.integers(-1, 5), st.sampled_from(STATUSES))
DAY_KINDS = {
    "new_orders": st.tuples(st.just("new_orders"), st.lists(orders_spec, min_size=1, max_size=6)),
    "redeliver": st.tuples(st.just("redeliver"), st.lists(st.tuples(st.integers(0, 60), st.integers(-1, 4),
                                                                    st.integers(1, 6)), min_size=1, max_size=4)),
    "change_tier": st.tuples(st.just("change_tier"), st.integers(1, 6)),
    "change_price": st.tuples(st.just("change_price"), st.integers(1, 4), st.integers(100, 99_999)),
    "add_product": st.tuples(st.just("add_product"), st.integers(5, 6)),
    "add_customer": st.tuples(st.just("add_customer"), st.integers(7, 9)),
    "empty_day": st.tuples(st.just("empty_day")),
    "nothing": st.tuples(st.just("nothing")),
}
# Every kind of day once per sequence, in a random order with random contents.
SEQUENCES = st.permutations(list(DAY_KINDS)).flatmap(lambda order: st.tuples(*(DAY_KINDS[k] for k in order)))
FIRST_DAY = ("new_orders", [(1, 1, 2, "placed"), (2, 5, 1, " delivered"), (9, 2, 3, "Shipped"), (3, 3, 0, "placed"),
                            (4, 4, 1, "CANCELLED")])


def land(feed: Feed, *events: tuple) -> None:
    """Let one day's files arrive (at most one orders file a day)."""
    feed.next_day()
    for kind, *args in events:
        if kind != "nothing":
            getattr(feed, kind)(*args)


def assert_equals_rebuild(project: Path, rebuild_dir: Path, what: str) -> None:
    rebuilt = copy_raw(project, rebuild_dir)
    run_notebooks(rebuilt, "rebuild")
    problems = differences(lake_content(project), lake_content(rebuilt))
    assert not problems, f"after {what}, the incremental lake differs from a full rebuild:\n" + "\n".join(problems)
    assert actual_gold(project) == expected_gold(project / "data" / "raw"), f"gold after {what} differs from plain SQL"


# Three fixed sequences in CI (about a minute); MEDALLION_PROPERTY_EXAMPLES=50 explores new random ones.
EXPLORE = int(os.environ.get("MEDALLION_PROPERTY_EXAMPLES", "0"))


@settings(max_examples=EXPLORE or 3, deadline=None, derandomize=not EXPLORE, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(days=SEQUENCES)
def test_incremental_runs_equal_a_full_rebuild_after_every_day(tmp_path_factory: pytest.TempPathFactory,
                                                               days: list[tuple]):
    base = tmp_path_factory.mktemp("property")
    project = new_project(base / "shop")
    feed = Feed(project)
    for n, day in enumerate([FIRST_DAY, *days]):
        land(feed, day)
        before = versions(project)
        run_notebooks(project, f"day{n}")
        if day[0] in ("nothing", "empty_day"):
            changed = {t: (v, before.get(t)) for t, v in versions(project).items()
                       if v != before.get(t) and not t.startswith("bronze.")}
            assert not changed, f"a run with nothing new wrote new versions: {changed}"
        assert_equals_rebuild(project, base / f"rebuild-{n}", f"day {n} ({day[0]})")


# Days of several events each, so that few runs cover every kind.
REPRESENTATIVE = [
    [FIRST_DAY],
    [("redeliver", [(0, 0, 1), (1, 3, 2), (3, 2, 3)]),   # into the quarantine, out of it, and a new product
     ("change_tier", 2)],
    [("change_price", 3, 4_250), ("add_product", 5),    # the orders that named product 5 leave the quarantine
     ("new_orders", [(5, 2, 2, "placed"), (7, 1, 1, "Shipped")])],
    [("empty_day",)],
]


def cli_run(project: Path, run_id: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "medallion_nb", "run", "--project", str(project), "--run-id", run_id],
                          cwd=project, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((project / "runs" / run_id / "run.json").read_text())


def test_medallion_nb_run_day_after_day_equals_a_full_rebuild(tmp_path: Path):
    """The real notebooks through papermill, each day; then a run with nothing new is up to date."""
    project = new_project(tmp_path / "shop")
    feed = Feed(project)
    for n, events in enumerate(REPRESENTATIVE):
        land(feed, *events)
        cli_run(project, f"day{n}")
        assert_equals_rebuild(project, tmp_path / f"rebuild-{n}", f"day {n} ({', '.join(e[0] for e in events)})")
    before = versions(project)
    record = cli_run(project, "nothing-new")
    assert [layer["status"] for layer in record["layers"]] == ["up to date"] * 3
    assert versions(project) == before


# Code cells of notebooks/silver.ipynb after the parameters: a kill after the dimensions were
# written, and one after the fact and the quarantine were written but before silver.orders.
AFTER_DIMENSIONS, AFTER_FACT = 3, 7


@pytest.mark.parametrize("cells", [AFTER_DIMENSIONS, AFTER_FACT])
def test_a_silver_run_killed_between_its_writes_then_run_again_equals_a_full_rebuild(tmp_path: Path, cells: int):
    project = new_project(tmp_path / "shop")
    feed = Feed(project)
    land(feed, FIRST_DAY)
    run_notebooks(project, "first")
    for events in REPRESENTATIVE[1:3]:
        land(feed, *events)
    run_notebook(project, "bronze", run_id="second")
    before = versions(project)

    marker = tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from tests.demo_pipeline import hold_after; "
         "hold_after(Path(sys.argv[1]), 'silver', int(sys.argv[2]), Path(sys.argv[3]))",
         str(project), str(cells), str(marker)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert child.poll() is None, child.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the silver run never reached the cell to kill it at"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()

    # The kill left silver half written: some tables have a new version, others do not.
    after = versions(project)
    moved = {t for t in after if t.startswith("silver.") and after[t] != before.get(t)}
    if cells == AFTER_DIMENSIONS:
        assert moved == {"silver.products", "silver.customers"}
    else:
        assert {"silver.order_lines", "silver.orders_quarantine"} <= moved
        assert "silver.orders" not in moved

    run_notebook(project, "silver", run_id="retry")
    run_notebook(project, "gold", run_id="retry")
    assert_equals_rebuild(project, tmp_path / "rebuild", f"a silver run killed after {cells} cells and a retry")


def demo_files_up_to(dest: Path, day: str) -> Path:
    """A fresh project with the demo's raw files dated on or before ``day`` (what a rebuild as of that day sees)."""
    project = new_project(dest)
    raw = REPO / "data" / "raw"
    shutil.copy2(raw / "products.csv", project / "data" / "raw" / "products.csv")
    for folder in ("orders", "customers"):
        for path in sorted((raw / folder).glob("*.csv")):
            if path.stem.rsplit("_", 1)[1] <= day:
                shutil.copy2(path, project / "data" / "raw" / folder / path.name)
    return project


def test_run_date_builds_the_lake_as_of_that_day_and_never_rolls_it_back(tmp_path: Path):
    project = demo_files_up_to(tmp_path / "shop", "9999-12-31")
    for n, day in enumerate(["2026-01-10", "2026-01-23"]):  # the tier change lands on 2026-01-22
        run_notebooks(project, f"day{n}", run_date=day)
        as_of = demo_files_up_to(tmp_path / f"as-of-{day}", day)
        run_notebooks(as_of, "rebuild")
        problems = differences(lake_content(project), lake_content(as_of))
        assert not problems, f"run_date={day} differs from a build over the files up to that day:\n" + \
            "\n".join(problems)
    # An earlier day on a lake that holds later ones: nothing is due that is not loaded, nothing changes.
    before, content = versions(project), lake_content(project)
    run_notebooks(project, "earlier", run_date="2026-01-05")
    assert versions(project) == before
    assert lake_content(project) == content
