"""The dashboard without a browser: what it shows, which snapshot it reads, and how the CLI starts Voila."""

from __future__ import annotations

import sys
from pathlib import Path

import bqplot
import pytest

import medallion_nb as mnb
from medallion_nb import snapshots
from medallion_nb.project import load_project
from medallion_nb.widgets import ChartSpec, Dashboard
from medallion_nb.widgets.serve import DASHBOARD_NOTEBOOK, PROJECT_ENV, dashboard_server
from tests.conftest import write_project
from tests.test_widget_queries import make_small_lake

CONFIG = """
name: small
description: Sales of a small shop, for the sales team.
lake: lake
layers:
  - {name: bronze, notebook: nb.ipynb}
  - {name: silver, notebook: nb.ipynb}
  - {name: gold, notebook: nb.ipynb}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_small_lake(tmp_path / "small")
    (root / "medallion.yaml").write_text(CONFIG)
    return root


def test_nothing_published_yet_shows_the_latest_data_with_a_note(project):
    board = Dashboard(project)
    assert board.lake.manifest is None
    assert "<h1 class=\"mnb-title\">small</h1>" in board.header.value
    assert "Sales of a small shop, for the sales team." in board.header.value
    assert "No pipeline run has been published yet, so this shows the latest data written." in board.header.value
    assert board.tables == ["gold.sales"]
    assert board.explorer.total_rows == 200
    assert "<td class=\"num\">200</td>" in board.tables_html.value


def test_the_published_run_is_what_the_dashboard_shows(project):
    with mnb.connect(project) as lake:
        snapshots.publish(project, "r2", {"gold.sales": 0, "silver.customers": 0})  # gold.sales v0: 150 rows
        lake.write("gold.sales", "SELECT * FROM gold.sales LIMIT 10")  # a later, unpublished write
    board = Dashboard(project, descriptions={"gold.sales": "One row per order line."},
                      charts=[ChartSpec("gold.sales", "order_date", "revenue", title="Revenue per day"),
                              ChartSpec("gold.sales", "country", title="Rows by country")])
    assert "Data as of the pipeline run r2, published" in board.header.value
    assert board.explorer.total_rows == 150
    assert board.explorer.filtered_rows == 150
    assert "<td class=\"num\">150</td>" in board.tables_html.value
    assert "One row per order line." in board.tables_html.value
    figures = [box.children[0] for box in board.charts.children]
    assert [f.title for f in figures] == ["Revenue per day", "Rows by country"]
    assert isinstance(figures[0].axes[0].scale, bqplot.DateScale)
    assert isinstance(figures[1].marks[0], bqplot.Bars)
    page = board.header.value + board.tables_html.value
    assert str(project) not in page
    assert "medallion-nb" not in page


def test_default_charts_and_a_broken_chart_is_a_message(project):
    board = Dashboard(project, charts=None)
    assert [(c.table, c.x, c.y) for c in board.chart_specs] == [("gold.sales", "order_date", "revenue")]
    broken = Dashboard(project, charts=[ChartSpec("gold.sales", "nope")])
    assert "chart x: &#x27;nope&#x27; is not a column" in broken.charts.children[0].value


def test_the_project_comes_from_the_environment_the_cli_sets(project, monkeypatch):
    monkeypatch.setenv(PROJECT_ENV, str(project))
    assert Dashboard().lake.project.root == project.resolve()


def test_dashboard_server_serves_on_localhost_with_a_token(project, tmp_path):
    server = dashboard_server(load_project(project), port=9123, token="s3cret")
    assert server.notebook == DASHBOARD_NOTEBOOK.resolve()  # the project has no dashboard notebook of its own
    assert server.argv[:4] == [sys.executable, "-m", "voila", "dashboard.ipynb"]
    assert "--Voila.ip=127.0.0.1" in server.argv
    assert "--port=9123" in server.argv
    assert "--Voila.token=s3cret" in server.argv
    assert "--show_tracebacks=False" in server.argv
    assert server.url == "http://127.0.0.1:9123/?token=s3cret"
    assert server.env == {PROJECT_ENV: str(load_project(project).root)}
    own = write_project(tmp_path / "own", "name: own\nlayers: [{name: gold, notebook: nb.ipynb}]\n",
                        {"nb.ipynb": "{}", "notebooks/dashboard.ipynb": "{}"})
    chosen = dashboard_server(load_project(own))
    assert chosen.notebook == (own / "notebooks" / "dashboard.ipynb").resolve()
    assert chosen.cwd == chosen.notebook.parent
    assert len(chosen.url.split("token=")[1]) >= 24  # a fresh random token


def test_the_dashboard_command_is_documented_in_help(capsys):
    from medallion_nb.cli import main

    with pytest.raises(SystemExit):
        main(["dashboard", "--help"])
    out = capsys.readouterr().out
    assert "127.0.0.1" in out
    assert "--token" in out
