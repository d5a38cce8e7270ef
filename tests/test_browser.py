"""The explorer and the dashboard in a real browser: JupyterLab and Voila, driven in headless Chromium.

Builds the demo lake with ``medallion-nb run`` on a copy of the demo project,
serves it on 127.0.0.1, opens ``notebooks/explore_gold.ipynb`` (and the dashboard
that ``medallion-nb dashboard`` serves) in Debian's Chromium (never a downloaded
browser; ``.ci/install-test-tools.sh`` installs it) and uses the widgets like a
person would. Screenshots go to ``test-artifacts/``; those of the docs to ``docs/images/``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import snapshots
from tests.conftest import REPO, copy_demo_project

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("MEDALLION_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
ARTIFACTS = REPO / "test-artifacts"
# The docs' screenshots are refreshed on request (MEDALLION_UPDATE_DOC_IMAGES=1): a test run leaves tracked files alone.
DOC_IMAGES = REPO / "docs" / "images" if os.environ.get("MEDALLION_UPDATE_DOC_IMAGES") else ARTIFACTS / "docs-images"
TOKEN = "medallion-browser-test"
FILTER_FROM = "2026-01-20"  # daily_sales rows on or after this day are what the UI filter keeps


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo project whose lake was built by ``medallion-nb run``."""
    root = copy_demo_project(tmp_path_factory.mktemp("browser") / "shop")
    run = subprocess.run([sys.executable, "-m", "medallion_nb", "run", "--project", str(root)], cwd=root,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with mnb.connect(root) as lake:
        assert lake.exists("gold.daily_sales"), run.stdout
        if snapshots.published(root) is None:  # publish the run's versions, as the runner does after a success
            snapshots.publish(root, lake.info("gold.daily_sales")["last_run_id"],
                              {name: lake.info(name)["version"] for name in lake.tables()})
    return root


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(port: int, proc: subprocess.Popen, log: Path, path: str | None, timeout: float = 90) -> None:
    """Wait until the server accepts connections (and answers ``path`` with 200, if given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if path is None:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                return
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"server on port {port} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _server(kind: str, root: Path, scratch: Path, notebook: str = "explore_gold.ipynb") -> tuple[list[str], int, str]:
    """Command line, port and page URL of a JupyterLab or Voila server for the explorer notebook."""
    port = _free_port()
    if kind == "dashboard":
        cmd = [sys.executable, "-m", "medallion_nb", "dashboard", "--project", str(root), f"--port={port}",
               f"--token={TOKEN}"]
        return cmd, port, f"http://127.0.0.1:{port}/?token={TOKEN}"
    if kind == "jupyterlab":
        # Do not ask about (or fetch) Jupyter news: no network, no popup over the widgets.
        news = scratch / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        news.parent.mkdir(parents=True, exist_ok=True)
        news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={TOKEN}",
               f"--LabApp.workspaces_dir={scratch / 'workspaces'}",
               f"--LabApp.user_settings_dir={scratch / 'settings'}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--ServerApp.port_retries=0"] + (["--allow-root"] if os.geteuid() == 0 else [])
        return cmd, port, f"http://127.0.0.1:{port}/lab/tree/notebooks/{notebook}?token={TOKEN}"
    cmd = [sys.executable, "-m", "voila", "notebooks/explore_gold.ipynb", "--no-browser", f"--port={port}",
           "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", "--show_tracebacks=True"]
    return cmd, port, f"http://127.0.0.1:{port}/"


@contextlib.contextmanager
def _serving(kind: str, root: Path, scratch: Path, notebook: str = "explore_gold.ipynb") -> Iterator[str]:
    """A running JupyterLab, Voila or ``medallion-nb dashboard`` server; yields its URL, stops it after."""
    cmd, port, url = _server(kind, root, scratch, notebook)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"), "IPYTHONDIR": str(scratch / "ipython"),
           "JUPYTER_DATA_DIR": str(scratch / "data"), "JUPYTER_PLATFORM_DIRS": "1"}
    log = scratch / f"{kind}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        # Voila runs the notebook for every page request, so only its port is polled.
        _wait_ready(port, proc, log, f"/api/status?token={TOKEN}" if kind == "jupyterlab" else None)
        yield url
    finally:
        _stop(proc)
    assert proc.returncode is not None


@pytest.fixture(params=["jupyterlab", "voila"])
def served(request: pytest.FixtureRequest, demo_lake: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(kind, url) of a running server; stopped after the test."""
    with _serving(request.param, demo_lake, tmp_path) as url:
        yield request.param, url


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run .ci/install-test-tools.sh (apt-get install chromium)"
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1500, "height": 1100}, accept_downloads=True)
        context.set_default_timeout(60_000)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def _expected_rows(root: Path) -> list[tuple]:
    with mnb.connect(root) as lake:
        return lake.sql("SELECT order_date::VARCHAR, orders FROM gold.daily_sales "
                        "WHERE order_date >= ?::DATE ORDER BY order_date", params=[FILTER_FROM]).fetchall()


def _preview_rows(page) -> list[list[str]]:
    return page.eval_on_selector_all(
        ".mnb-preview table tbody tr",
        "rows => rows.map(r => Array.from(r.querySelectorAll('td')).map(td => td.textContent))")


def test_explorer_filters_in_the_browser(served, browser_page, demo_lake, tmp_path):
    kind, url = served
    page = browser_page
    page.goto(url)
    if kind == "jupyterlab":
        # Run every cell from the menu, as a person would.
        page.locator(".jp-Notebook").first.wait_for()
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        page.locator("#jp-main-statusbar, .jp-StatusBar-Widget").first.wait_for()
        _wait_for_kernel_idle(page)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    picker = page.locator(".mnb-table-picker select")
    picker.wait_for(timeout=120_000)

    # Choose a table through the UI.
    picker.select_option(label="gold.daily_sales")
    with mnb.connect(demo_lake) as lake:
        last_run = lake.info("gold.daily_sales")["last_run_id"]
    summary = page.locator(".mnb .mnb-muted", has_text="gold.daily_sales").first
    summary.wait_for()
    assert f"by run {last_run}" in summary.inner_text()
    total = len(_all_days(demo_lake))
    page.get_by_text(f"of {total}").first.wait_for()

    # Filter: order_date >= FILTER_FROM, applied with the Apply button.
    page.locator(".mnb-filter-column select").select_option(label="order_date")
    page.locator(".mnb-filter-op select").select_option(label=">=")
    page.locator(".mnb-filter-value input").fill(FILTER_FROM)
    page.locator(".mnb-apply button, button.mnb-apply").first.click()
    expected = _expected_rows(demo_lake)
    status = page.locator(".mnb-status .mnb-note.ok")
    status.wait_for()
    assert f"{len(expected)} of {total} rows match order_date >= {FILTER_FROM}" in status.inner_text()

    # The preview shows exactly the filtered rows (first page of 20, in table order).
    page.wait_for_function("() => document.querySelector('.mnb-preview tbody tr td:nth-child(2)')"
                           f" && document.querySelector('.mnb-preview tbody tr td:nth-child(2)').textContent"
                           f" >= '{FILTER_FROM}'")
    rows = _preview_rows(page)
    shown = sorted((r[1], r[2]) for r in rows)
    assert shown == [(day, f"{orders:,}") for day, orders in expected[:20]]
    assert all(day >= FILTER_FROM for day, _ in shown)

    ARTIFACTS.mkdir(exist_ok=True)
    picker.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(ARTIFACTS / f"explorer-{kind}.png"))
    if kind == "voila":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOC_IMAGES / "explorer.png"))

    # A click on a header sorts by it (largest first on the second click); the page box jumps.
    header = page.locator('.mnb-preview th[data-column="orders"]')
    header.click()
    header.locator(".mnb-sort-arrow", has_text="\u25b2").wait_for()
    header.click()
    header.locator(".mnb-sort-arrow", has_text="\u25bc").wait_for()
    most = max(orders for _, orders in expected)
    page.wait_for_function(f"() => document.querySelector('.mnb-preview tbody tr td:nth-child(3)')"
                           f".textContent === '{most:,}'")

    # A WHERE that tries to do more than read is refused with a message.
    where = page.locator(".mnb-where input")
    where.fill("1=1; DROP TABLE gold.daily_sales")
    where.press("Enter")
    error = page.locator(".mnb-status .mnb-note.error")
    error.wait_for()
    assert "';' is not allowed" in error.inner_text()
    assert "previous filter is still applied" in error.inner_text()

    # The filtered rows download as CSV, straight into the browser.
    _download_and_check(page, tmp_path, expected)

    # The chart follows the filter too: a time axis over the filtered days.
    page.locator(".lm-TabBar-tab", has_text="Chart").first.click()
    chart = page.locator(".mnb-chart-view .mnb-chart")
    chart.wait_for()
    chart.locator("svg").first.wait_for()
    chart.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"explorer-{kind}-chart.png"))
    if kind == "voila":
        page.screenshot(path=str(DOC_IMAGES / "explorer-chart.png"))

    # The profile of the filtered rows: one line per column, and the top values of a column
    # with its exact number of distinct values (the filtered days are distinct).
    page.locator(".lm-TabBar-tab", has_text="Profile").first.click()
    profile = page.locator(".mnb-table", has=page.locator("caption", has_text=f"profile of {len(expected)} rows"))
    profile.wait_for()
    with mnb.connect(demo_lake) as lake:
        columns = lake.table("gold.daily_sales").columns
    assert profile.locator("tbody tr td:first-child").all_inner_texts() == columns
    page.locator(".mnb-top-column select").select_option(label="order_date")
    page.locator(".mnb-table caption", has_text=f"{len(expected)} distinct values of order_date").wait_for()


def _download_and_check(page, tmp_path: Path, expected: list[tuple]) -> None:
    page.locator(".lm-TabBar-tab", has_text="Download").first.click()
    with page.expect_download() as info:
        page.locator("button.mnb-download-button").first.click()
    assert info.value.suggested_filename == "gold.daily_sales-filtered.csv"
    csv_path = tmp_path / "download.csv"
    info.value.save_as(csv_path)
    rows = list(csv.reader(io.StringIO(csv_path.read_text())))
    assert rows[0][:2] == ["order_date", "orders"]
    assert sorted((r[0], int(r[1])) for r in rows[1:]) == expected


def test_dashboard_for_people_who_do_not_write_code(demo_lake, browser_page, tmp_path):
    """``medallion-nb dashboard``: no code, no server paths, freshness from the published run, downloads."""
    page = browser_page
    before = {p for p in demo_lake.rglob("*") if "runs" not in p.parts}
    with _serving("dashboard", demo_lake, tmp_path) as url:
        page.goto(url)
        page.locator(".mnb-dashboard").wait_for(timeout=120_000)
        page.locator(".mnb-dashboard .mnb-chart svg").first.wait_for()
        manifest = snapshots.published(demo_lake)
        text = page.locator("body").inner_text()
        assert "shop" in page.locator("h1.mnb-title").inner_text()
        assert "Orders, customers and products of a small web shop" in text
        assert f"Data as of the pipeline run {manifest.run_id}" in text
        assert "Revenue and margin per product category and month." in text
        assert "Revenue per day" in text
        # No code, commands or server paths (a markdown cell's prose is an input area too, and may stay).
        assert page.locator(".jp-CodeCell .jp-InputArea, .jp-CodeMirrorEditor, .cm-editor").count() == 0
        for leak in ("import ", "Dashboard(", "medallion-nb", "pip install", str(demo_lake), "/tmp/", "/work/",
                     "site-packages", "Traceback"):
            assert leak not in text, leak
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOC_IMAGES / "dashboard.png"), full_page=True)

        # Filter through the explorer, then download: the file arrives in the browser.
        page.locator(".mnb-table-picker select").select_option(label="gold.daily_sales")
        page.locator(".mnb-filter-column select").select_option(label="order_date")
        page.locator(".mnb-filter-op select").select_option(label=">=")
        page.locator(".mnb-filter-value input").fill(FILTER_FROM)
        page.locator(".mnb-apply button, button.mnb-apply").first.click()
        page.locator(".mnb-status .mnb-note.ok").wait_for()
        _download_and_check(page, tmp_path, _expected_rows(demo_lake))
        assert {p for p in demo_lake.rglob("*") if "runs" not in p.parts} == before  # nothing written


def test_a_saved_explorer_notebook_reopens_with_a_static_copy(demo_lake, browser_page, tmp_path):
    """Executed and saved, then opened without running: the saved copy shows, not 'model not found'."""
    import nbformat
    from nbclient import NotebookClient
    from nbformat.sign import NotebookNotary

    source = demo_lake / "notebooks" / "explore_gold.ipynb"
    nb = nbformat.read(source, as_version=4)
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(source.parent)}}).execute()
    nb.metadata.pop("widgets", None)  # JupyterLab does not save widget state unless asked to
    saved = source.with_name("saved_explorer.ipynb")
    (tmp_path / "data").mkdir(exist_ok=True)
    NotebookNotary(data_dir=str(tmp_path / "data")).sign(nb)  # trusted, as a notebook saved in JupyterLab is
    nbformat.write(nb, saved)
    page = browser_page
    with _serving("jupyterlab", demo_lake, tmp_path, notebook=saved.name) as url:
        page.goto(url)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        static = page.locator(".mnb-static").first
        static.wait_for()
        page.wait_for_timeout(3000)  # give the widget manager time to give up on the missing models
        static.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "explorer-saved.png"))
        assert static.is_visible()
        assert "a saved copy. Run the notebook again to explore it live." in static.inner_text()
        assert page.locator(".mnb-static table tbody tr").count() >= 1
        broken = page.get_by_text("Error displaying widget")
        assert all(not broken.nth(i).is_visible() for i in range(broken.count()))
        page.screenshot(path=str(ARTIFACTS / "explorer-saved.png"))


def _all_days(root: Path) -> list[tuple]:
    with mnb.connect(root) as lake:
        return lake.table("gold.daily_sales").project("order_date").fetchall()


def _wait_for_kernel_idle(page) -> None:
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.jp-Notebook-ExecutionIndicator, .jp-StatusBar-TextItem'))"
        ".some(el => /Idle/.test(el.getAttribute('data-status') || el.textContent || ''))",
        timeout=120_000)
