"""GoldExplorer without a browser: set control values, assert on what the app computes and shows."""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import LakeError
from medallion_nb.widgets import GoldExplorer
from tests.conftest import write_project
from tests.test_widget_queries import CONFIG, make_small_lake


@pytest.fixture
def lake(tmp_path: Path):
    with mnb.connect(make_small_lake(tmp_path / "small")) as handle:
        yield handle


@pytest.fixture
def app(lake):
    return GoldExplorer(lake)


def downloaded(app) -> tuple[str, bytes, str]:
    """Press Download the way the browser does (a comm message) and collect what is streamed back."""
    sent = []
    app.download.send = lambda content, buffers=None: sent.append((content, buffers))
    app.download._handle(app.download, {"event": "request"}, [])
    assert sent[0][0]["event"] == "begin", sent
    assert sent[-1][0]["event"] == "end", sent
    data = b"".join(b"".join(bytes(x) for x in buffers) for c, buffers in sent if c["event"] == "chunk")
    return sent[0][0]["filename"], data, sent[-1][0]["text"]


def test_opens_the_first_gold_table_with_its_facts(app):
    assert app.table.options == ("gold.sales",)
    assert app.name == "gold.sales"
    assert app.layer.value == "gold"
    assert (app.total_rows, app.filtered_rows) == (200, 200)
    assert "200 rows" in app.summary.value
    assert "version 1" in app.summary.value
    assert "by run <code>r2</code>" in app.summary.value
    assert len(app.page_rows) == 20
    assert app.grid.info == "rows 1\u201320 of 200"
    assert (app.grid.page, app.grid.pages, app.grid.first_row) == (0, 10, 1)
    assert [c["name"] for c in app.grid.columns] == ["order_date", "country", "customer", "units", "revenue",
                                                      "margin", "note"]
    assert app.grid.rows[0] == ["2026-01-01", "DE", "C000", "1", "10.00", "-5.00", None]
    bundle = app._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == app.root.model_id
    assert app.lake.info("gold.sales")["last_written"].tzinfo == dt.UTC


def test_pages_sorting_by_header_and_page_jump(app):
    app.grid.page_size = 50
    app.grid.sort_column = "revenue"  # what a click on the header sets
    app.grid.sort_desc = True
    first = app.page_rows
    assert len(first) == 50
    assert [r[4] for r in first] == sorted((r[4] for r in first), reverse=True)
    top = app.lake.sql("SELECT max(revenue) FROM gold.sales").fetchall()[0][0]
    assert first[0][4] == top
    assert app.grid.pages == 4
    app.grid.page = 3  # typed into the page box
    assert app.page == 3
    assert len(app.page_rows) == 50
    assert app.grid.info == "rows 151\u2013200 of 200"
    assert app.grid.first_row == 151
    app.grid.page = 9  # past the end: the last page
    assert app.page == 3
    app.grid.page = 2
    assert app.page_rows[0][4] <= first[-1][4]
    app.grid.sort_desc = False  # sorting goes back to the first page
    assert app.page == 0
    assert app.page_rows[0][4] == app.lake.sql("SELECT min(revenue) FROM gold.sales").fetchall()[0][0]
    app.grid.widths = {"note": 90}  # column widths are kept while paging
    app.grid.page = 1
    assert app.grid.widths == {"note": 90}


def test_filter_from_controls(app):
    app.filter_column.value = "country"
    assert app.filtered_rows == 200  # no value typed yet: nothing filtered, no error
    assert app.error is None
    app.filter_value.value = "DE"
    assert app.filtered_rows == 50
    assert {r[1] for r in app.page_rows} == {"DE"}
    assert "50 of 200 rows match country = &#x27;DE&#x27;" in app.status.value
    app.filter_column.value = "units"
    app.filter_op.value = ">"
    app.filter_value.value = "3"
    assert "80 of 200 rows match units &gt; 3<" in app.status.value  # a number, shown without quotes
    app.filter_column.value = "country"
    app.filter_op.value = "="
    app.filter_value.value = "DE"
    app.filter_op.value = "!="
    assert app.filtered_rows == 150
    assert "DE" not in {r[1] for r in app.page_rows}
    app.filter_column.value = "note"
    app.filter_op.value = "is null"
    assert app.filtered_rows == 20
    app.clear_button.click()
    assert app.filtered_rows == 200
    assert app.status.value == ""


def test_where_expression_combines_with_the_condition(app):
    app.filter_column.value = "country"
    app.filter_value.value = "DE"
    app.where_text.value = "units >= 4 AND customer IN (SELECT customer FROM silver.customers WHERE tier = 'gold')"
    expected = app.lake.sql("SELECT count(*) FROM gold.sales WHERE country = 'DE' AND units >= 4 AND customer IN "
                            "('C000', 'C001', 'C002', 'C003', 'C004')").fetchall()[0][0]
    assert app.filtered_rows == expected > 0
    assert all(r[1] == "DE" and r[3] >= 4 for r in app.page_rows)


@pytest.mark.parametrize(("text", "message"), [
    ("1=1; DROP TABLE gold.sales", "';' is not allowed"),
    ("EXISTS (FROM read_csv('/etc/passwd'))", r"read_csv(...) is not allowed"),
    ("ATTACH 'x.db'", "ATTACH is not allowed"),
    ("units > 'many'", "filter failed: Conversion Error"),
    ("(SELECT 1 FROM gold.sales USING SAMPLE 1) = 1", "USING SAMPLE / TABLESAMPLE is not allowed"),
    ("'1.2.3.4'::INET IS NOT NULL", "type INET is not available"),
])
def test_refused_where_keeps_the_previous_filter_and_says_why(app, text, message):
    app.where_text.value = "units = 5"
    assert app.filtered_rows == 40
    app.where_text.value = text
    assert message in app.error
    assert message.replace("'", "&#x27;") in app.status.value
    assert "The previous filter is still applied" in app.status.value
    assert app.filtered_rows == 40
    assert {r[3] for r in app.page_rows} == {5}
    assert app.lake.count("gold.sales") == 200
    app.where_text.value = "units = 4"
    assert app.error is None
    assert app.filtered_rows == 40


def test_bad_value_for_the_column_type_is_explained(app):
    app.filter_column.value = "units"
    app.filter_value.value = "lots"
    assert app.error == "filter on units: 'lots' is not a whole number"
    assert app.filtered_rows == 200


def test_profile_follows_the_filter_in_duckdb_types_and_percentages(app):
    app.filter_column.value = "country"
    app.filter_value.value = "FR"
    app.show("Profile")
    profile = {p.column: p for p in app.profile}
    assert profile["country"].distinct == 1
    assert profile["country"].count == 50
    assert profile["note"].nulls == 0  # nulls are the rows i % 10 == 0, all in DE and IT
    assert "profile of 50 rows" in app.profile_html.value
    assert app.top_column.value == "country"
    assert app.top_values == [("FR", 50)]
    assert '<td class="num">100%</td>' in app.top_html.value
    app.top_column.value = "units"
    assert sum(n for _, n in app.top_values) == 50
    assert '<td class="num">20.0%</td>' in app.top_html.value  # 10 of 50 rows
    html = app.profile_html.value
    assert "<td class=\"\">DECIMAL(12,2)</td>" in html  # DuckDB's type names, as in the Schema tab
    assert "decimal128" not in html
    assert "null</td>" not in html  # no mean for text and dates: an empty cell, not "null"
    app.show("Schema")
    assert "<td class=\"\">DECIMAL(12,2)</td>" in app.schema_html.value
    assert "<td class=\"\">DATE</td>" in app.schema_html.value
    app.clear_button.click()
    app.show("Profile")
    assert '<td class="">note</td><td class="">VARCHAR</td><td class="num">180</td><td class="num">20</td>' \
           '<td class="num">10.0%</td>' in app.profile_html.value


def test_top_values_open_on_a_repeating_text_column_not_on_an_identifier(lake):
    lake.write("silver.events",
               "SELECT 'E' || i AS event_id, ['web', 'app'][1 + i % 2] AS channel FROM range(300) t(i)")
    lake.write("silver.ids", "SELECT 'E' || i AS event_id, 'K' || i AS key FROM range(300) t(i)")
    lake.refresh()
    app = GoldExplorer(lake, "silver.events")
    assert app.top_column.value == "channel"
    app.show("Profile")
    assert app.top_values == [("app", 150), ("web", 150)]
    assert "2 distinct values of channel" in app.top_html.value
    app.table.value = "silver.ids"  # no text column repeats: the first one, as before
    assert app.top_column.value == "event_id"


def test_a_large_table_is_profiled_without_distinct_counts_and_top_values_give_one(app, monkeypatch):
    from medallion_nb.widgets import explorer

    monkeypatch.setattr(explorer, "EXACT_DISTINCT_VALUES", 1000)  # gold.sales: 200 rows x 7 columns
    app.show("Profile")
    profile = {p.column: p for p in app.profile}
    assert profile["customer"].distinct is None
    assert (profile["customer"].minimum, profile["customer"].maximum) == ("C000", "C024")
    assert profile["note"].nulls == 20
    assert "<th>distinct</th>" not in app.profile_html.value
    assert "distinct values left out" in app.profile_html.value
    app.top_column.value = "customer"
    assert app.top_distinct == 25  # exact: the groups of the top values' GROUP BY
    assert "25 distinct values of customer" in app.top_html.value
    assert "estimated" not in app.top_html.value
    app.filter_column.value = "country"
    app.filter_value.value = "FR"  # 50 rows: exact counts in the profile again
    app.show("Profile")
    assert {p.column: p for p in app.profile}["customer"].distinct == 25
    assert "<th>distinct</th>" in app.profile_html.value
    assert app.distinct_button.layout.display == "none"


def test_count_distinct_values_counts_every_column_of_a_large_profile_exactly(app, monkeypatch):
    from medallion_nb.widgets import explorer

    monkeypatch.setattr(explorer, "EXACT_DISTINCT_VALUES", 1000)
    app.filter_column.value = "units"
    app.filter_op.value = ">"
    app.filter_value.value = "1"  # 160 rows x 7 columns: over the limit
    app.show("Profile")
    assert app.distinct_button.layout.display != "none"
    assert "Count distinct values" in app.profile_html.value
    app.distinct_button.click()
    assert "<th>distinct</th>" in app.profile_html.value
    assert app.distinct_button.layout.display == "none"
    for p in app.profile:
        oracle = app.lake.sql(f"SELECT count(DISTINCT {p.column}) FROM gold.sales WHERE units > 1").fetchall()[0][0]
        assert p.distinct == oracle, p.column
    app.where_text.value = "margin > -100"  # a new filter, the same 160 rows: left out again until asked
    assert "<th>distinct</th>" not in app.profile_html.value
    assert app.distinct_button.layout.display != "none"
    app.layer.value = "bronze"  # no tables there: nothing to count
    assert app.name is None
    assert app.distinct_button.layout.display == "none"


def test_count_distinct_values_that_fail_keep_the_profile_and_say_why(app, monkeypatch):
    from medallion_nb.widgets import explorer
    from medallion_nb.widgets.sandbox import QueryTimeout

    monkeypatch.setattr(explorer, "EXACT_DISTINCT_VALUES", 1000)
    app.show("Profile")
    profile_columns = explorer.q.profile_columns

    def slow(rel, *, distinct=True, **kwargs):
        if distinct:
            raise QueryTimeout("the profile took longer than 30 s and was stopped; narrow the filter")
        return profile_columns(rel, distinct=distinct, **kwargs)

    monkeypatch.setattr(explorer.q, "profile_columns", slow)
    app.distinct_button.click()
    assert "the profile took longer than 30 s" in app.profile_html.value
    assert "profile of 200 rows" in app.profile_html.value
    assert "<th>distinct</th>" not in app.profile_html.value
    assert app.count_distinct is False


def test_chart_updates_with_controls_and_filter(app, lake):
    import bqplot

    app.show("Chart")
    assert app.chart_x.value == "order_date"
    assert app.chart_y.value == "revenue"
    assert app.chart.axis == "time"
    assert app.chart.bucket == "day"
    assert len(app.chart.labels) == 60  # one bin per day
    figure = app.chart_view.children[0]
    assert isinstance(figure.axes[0].scale, bqplot.DateScale)
    assert not app.chart_bucket.disabled
    app.chart_bucket.value = "month"
    assert app.chart.title == "sum(revenue) by order_date (month)"
    assert len(app.chart.labels) == 3
    assert len(figure.marks[0].x) == 3
    app.chart_x.value = "country"
    assert app.chart_bucket.disabled
    assert isinstance(figure.marks[0], bqplot.Bars)  # text on x: bars, not a line
    app.chart_y.value = "(rows)"
    assert app.chart.values == [50.0] * 4
    assert app.chart_agg.disabled
    app.filter_column.value = "country"
    app.filter_op.value = "in"
    app.filter_value.value = "SE, IT"
    assert app.chart.labels == ["IT", "SE"]  # recomputed because the Chart tab is showing
    assert app.chart_y.options == ("(rows)", "units", "revenue", "margin")  # only numeric columns to aggregate
    app.chart_x.value = "customer"
    app.chart_y.value = "revenue"
    app.clear_button.click()
    assert app.chart.groups == 25
    assert app.chart_note.value == ""


def test_history_and_side_by_side_versions(app):
    app.filter_column.value = "units"
    app.filter_value.value = "1"
    app.show("History")
    assert [(h["version"], h["run_id"], h["rows"]) for h in app.versions.history] == [(1, "r2", 200), (0, "r1", 150)]
    assert "r1" in app.versions.history_html.value
    assert [v for _, v in app.versions.version.options] == [None, 0]
    app.versions.version.value = 0
    diff = app.versions.diff
    assert (diff.rows_now, diff.rows_then, diff.only_now, diff.only_then) == (40, 30, 10, 0)
    html = app.versions.compare_html.value
    assert "version 0: 30 rows" in html
    assert "current (version 1)" in html
    assert "rows: 30 in version 0, 40 now" in html
    app.filter_value.value = "2"  # the comparison follows the filter
    assert app.versions.diff.rows_now == 40
    assert app.versions.diff.rows_then == 30
    assert app.versions.version.value == 0


def test_download_streams_the_filtered_sorted_rows_without_writing_files(app, lake):
    before = set(lake.project.root.rglob("*"))
    app.filter_column.value = "country"
    app.filter_value.value = "IT"
    app.grid.sort_column = "revenue"
    app.show("Download")
    filename, data, text = downloaded(app)
    assert filename == "gold.sales-filtered.csv"
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert len(rows) == 50
    assert {r["country"] for r in rows} == {"IT"}
    revenues = [float(r["revenue"]) for r in rows]
    assert revenues == sorted(revenues)
    assert data.decode().splitlines()[0].replace('"', "").startswith("order_date,country,")
    assert text.startswith("50 rows matching the filter")
    assert set(lake.project.root.rglob("*")) == before  # nothing written on the server
    app.clear_button.click()
    filename, data, _ = downloaded(app)
    assert filename == "gold.sales.csv"
    assert len(data.decode().splitlines()) == 201


def test_any_layer_on_request(lake, tmp_path):
    app = GoldExplorer(lake, "silver.customers")
    assert app.layer.value == "silver"
    assert app.name == "silver.customers"
    assert app.total_rows == 25
    app.layer.value = ""
    assert app.table.options == ("silver.customers", "gold.sales")
    assert app.name == "silver.customers"
    app.table.value = "gold.sales"
    assert app.total_rows == 200
    assert app.filter_column.options[1:] == tuple((c, c) for c in app.types)


def test_unknown_table_is_refused(lake):
    with pytest.raises(LakeError, match=r"table gold.nope does not exist \(tables: silver.customers, gold.sales\)"):
        GoldExplorer(lake, "gold.nope")
    with pytest.raises(LakeError, match="'platinum' is not a layer of this project"):
        GoldExplorer(lake, "platinum.x")


def test_empty_lake_says_what_to_do_and_refresh_finds_new_tables(tmp_path):
    root = write_project(tmp_path / "empty", CONFIG, {"nb.ipynb": "{}"})
    with mnb.connect(root) as lake:
        app = GoldExplorer(lake)
        assert app.name is None
        assert "No tables in gold yet" in app.summary.value
        assert "medallion-nb" not in app.summary.value
        with mnb.connect(root, run_id="later") as writer:
            writer.write("gold.kpis", "SELECT 1 AS one")
        app.refresh_button.click()
        assert app.name == "gold.kpis"
        assert app.page_rows == [(1,)]
        assert "by run <code>later</code>" in app.summary.value


def test_a_table_deleted_meanwhile_is_reported_in_the_app(lake):
    lake.write("gold.extra", "SELECT 1 AS x")
    app = GoldExplorer(lake, "gold.sales")
    shutil.rmtree(lake.project.lake / "gold" / "extra")
    app.table.value = "gold.extra"
    assert "table gold.extra does not exist" in app.summary.value
    assert app.relation is None
    app.table.value = "gold.sales"  # the app keeps working
    assert app.filtered_rows == 200


def test_lake_explore_opens_the_explorer_on_a_table(tmp_path):
    import medallion_nb as mnb
    from medallion_nb.widgets import GoldExplorer
    from tests.conftest import write_project

    root = write_project(tmp_path / "p", "name: p\nlayers: [{name: gold, notebook: nb.ipynb}]\n", {"nb.ipynb": "{}"})
    with mnb.connect(root) as lake:
        lake.write("gold.t", "SELECT range AS id FROM range(3)")
        app = lake.explore("gold.t")
        assert isinstance(app, GoldExplorer)
        assert app.lake is lake
