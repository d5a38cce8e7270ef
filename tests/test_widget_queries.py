"""The explorer's pure parts: query builders, the read-only WHERE check and the HTML/SVG rendering."""

from __future__ import annotations

import datetime as dt
import decimal
import os
from pathlib import Path

import pytest

import medallion_nb as mnb
from medallion_nb import UsageError
from medallion_nb.widgets import queries as q
from medallion_nb.widgets import render
from medallion_nb.widgets.readonly import check_where, known_functions
from tests.conftest import write_project

CONFIG = """
name: small
lake: lake
layers:
  - {name: bronze, notebook: nb.ipynb}
  - {name: silver, notebook: nb.ipynb}
  - {name: gold, notebook: nb.ipynb}
"""
# 200 rows: 60 days, 4 countries (50 rows each), 25 customers, every 10th note is null.
SALES = """
SELECT DATE '2026-01-01' + (i % 60)::INT                        AS order_date,
       ['DE', 'FR', 'IT', 'SE'][1 + i % 4]                       AS country,
       'C' || lpad((i % 25)::VARCHAR, 3, '0')                    AS customer,
       (1 + i % 5)::INTEGER                                      AS units,
       round(10 + (i * 7.31) % 90, 2)::DECIMAL(12,2)             AS revenue,
       ((i * 3.7) % 40 - 5)::DOUBLE                              AS margin,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'note ' || i END      AS note
FROM range(200) t(i)
"""
CUSTOMERS = """
SELECT 'C' || lpad(i::VARCHAR, 3, '0') AS customer, CASE WHEN i < 5 THEN 'gold' ELSE 'basic' END AS tier
FROM range(25) t(i)
"""


def make_small_lake(root: Path) -> Path:
    """A project with gold.sales in two versions (150 rows by run r1, then 200 by r2) and silver.customers."""
    write_project(root, CONFIG, {"nb.ipynb": "{}"})
    with mnb.connect(root, run_id="r1", notebook="gold") as lake:
        lake.write("gold.sales", SALES + " WHERE i < 150")
    with mnb.connect(root, run_id="r2", notebook="gold") as lake:
        lake.write("gold.sales", SALES)
        lake.write("silver.customers", CUSTOMERS)
    return root


@pytest.fixture
def lake(tmp_path: Path):
    with mnb.connect(make_small_lake(tmp_path / "small")) as handle:
        yield handle


@pytest.fixture
def sales(lake):
    return lake.table("gold.sales")


def where(lake, text: str) -> str:
    return check_where(text, tables=lake.tables(), functions=known_functions(lake.con))


# -- conditions from controls --------------------------------------------------------------
@pytest.mark.parametrize(("cond", "sql"), [
    (q.Condition("country", "=", "DE"), "country = 'DE'"),
    (q.Condition("country", "!=", "DE"), "country <> 'DE'"),
    (q.Condition("country", "in", "DE, FR"), "country IN ('DE', 'FR')"),
    (q.Condition("units", ">=", "4"), "units >= 4"),
    (q.Condition("units", "<", "2"), "units < 2"),
    (q.Condition("revenue", ">", "50.5"), "revenue > 50.5"),
    (q.Condition("margin", "<=", "0"), "margin <= 0"),
    (q.Condition("order_date", ">=", "2026-02-20"), "order_date >= DATE '2026-02-20'"),
    (q.Condition("note", "is null"), "note IS NULL"),
    (q.Condition("note", "is not null"), "note IS NOT NULL"),
    (q.Condition("note", "contains", "NOTE 1"), "lower(note) LIKE '%note 1%'"),
    (q.Condition("customer", "starts with", "c00"), "customer LIKE 'C00%'"),
])
def test_conditions_filter_like_sql(lake, sales, cond, sql):
    got = q.count_rows(q.filter_relation(sales, [cond]))
    assert got == lake.sql(f"SELECT count(*) FROM gold.sales WHERE {sql}").fetchall()[0][0]
    assert 0 < got < 200


def test_values_are_constants_not_sql(sales):
    rel = q.filter_relation(sales, [q.Condition("country", "=", "DE' OR '1'='1")])
    assert q.count_rows(rel) == 0
    rel = q.filter_relation(sales, [q.Condition("country", "in", "DE,x'); DROP TABLE gold.sales; --")])
    assert q.count_rows(rel) == 50


def test_conditions_combine_with_and(sales):
    rel = q.filter_relation(sales, [q.Condition("country", "=", "DE"), q.Condition("units", "=", "1")])
    assert rel.aggregate("min(country), max(country), min(units), max(units)").fetchall() == [("DE", "DE", 1, 1)]


@pytest.mark.parametrize(("cond", "message"), [
    (q.Condition("nope", "=", "1"), r"filter: 'nope' is not a column \(columns: order_date, country"),
    (q.Condition("units", "=", "many"), r"filter on units: 'many' is not a whole number"),
    (q.Condition("revenue", ">", "1,5"), r"filter on revenue: '1,5' is not a number"),
    (q.Condition("order_date", "=", "31/01/2026"), r"filter on order_date: '31/01/2026' is not an ISO date"),
    (q.Condition("units", "like", "1"), r"operator 'like' is not one of =, !=, <"),
    (q.Condition("units", "=", " "), r"filter on units: type a value for '='"),
    (q.Condition("units", "in", " , "), r"'in' needs values separated by commas"),
])
def test_bad_conditions_say_what_is_wrong(sales, cond, message):
    with pytest.raises(q.FilterError, match=message):
        q.filter_relation(sales, [cond])


def test_typed_values_cover_booleans_and_timestamps(lake):
    rel = lake.sql("SELECT i, i % 2 = 0 AS even, TIMESTAMP '2026-01-01 00:00:00' + INTERVAL (i) HOUR AS ts "
                   "FROM range(10) t(i)")
    assert q.count_rows(q.filter_relation(rel, [q.Condition("even", "=", "yes")])) == 5
    assert q.count_rows(q.filter_relation(rel, [q.Condition("ts", ">", "2026-01-01 07:30")])) == 2
    with pytest.raises(q.FilterError, match="'maybe' is not true or false"):
        q.filter_relation(rel, [q.Condition("even", "=", "maybe")])


def test_describe_filter_shows_values_as_typed(sales):
    text = q.describe_filter([q.Condition("country", "=", "DE"), q.Condition("note", "is null")], "units > 2")
    assert text == "country = 'DE' AND note is null AND units > 2"
    types = q.column_types(sales)
    conditions = [q.Condition("units", ">", " 100000"), q.Condition("revenue", "<=", "9.5"),
                  q.Condition("order_date", ">=", "2026-01-20"), q.Condition("country", "in", "DE, FR"),
                  q.Condition("units", "in", "1,2"), q.Condition("customer", "contains", "c00")]
    assert q.describe_filter(conditions, "", types) == (
        "units > 100000 AND revenue <= 9.5 AND order_date >= 2026-01-20 AND country in ('DE', 'FR') "
        "AND units in (1, 2) AND customer contains 'c00'")


def test_duckdb_type_names(sales):
    names = q.column_type_names(sales)
    assert names == {"order_date": "DATE", "country": "VARCHAR", "customer": "VARCHAR", "units": "INTEGER",
                     "revenue": "DECIMAL(12,2)", "margin": "DOUBLE", "note": "VARCHAR"}


# -- the WHERE expression ------------------------------------------------------------------
def test_where_expressions_that_only_read_are_accepted(lake, sales):
    checked = where(lake, "revenue > 50 AND country IN ('DE', 'FR') AND lower(note) LIKE '%1%'")
    assert checked.startswith("(")
    assert checked.endswith(")")
    expected = lake.sql("SELECT count(*) FROM gold.sales WHERE revenue > 50 AND country IN ('DE', 'FR') "
                        "AND lower(note) LIKE '%1%'").fetchall()[0][0]
    assert q.count_rows(q.filter_relation(sales, (), checked)) == expected > 0
    # a subquery over another lake table is still only reading
    checked = where(lake, "customer IN (SELECT customer FROM silver.customers WHERE tier = 'gold')")
    assert q.count_rows(q.filter_relation(sales, (), checked)) == 40
    assert where(lake, "   ") == ""


@pytest.mark.parametrize(("text", "message"), [
    ("1=1; DROP TABLE gold.sales", r"';' is not allowed"),
    ("units > 1; SELECT 1", r"';' is not allowed"),
    ("1=1) ; ATTACH 'x.db' AS x; SELECT (1", r"';' is not allowed"),
    ("units IN (COPY gold.sales TO 'out.csv')", r"COPY is not allowed; a filter can only read rows"),
    ("ATTACH 'other.db'", r"ATTACH is not allowed"),
    ("units > 1 AND (INSERT INTO gold.sales VALUES (1))", r"INSERT is not allowed"),
    ("units = 1 OR (DELETE FROM gold.sales) IS NULL", r"DELETE is not allowed"),
    ("(UPDATE gold.sales SET units = 0) IS NULL", r"UPDATE is not allowed"),
    ("(CREATE TABLE x AS SELECT 1) IS NULL", r"CREATE is not allowed"),
    ("1=1 OR (DROP TABLE gold.sales) IS NULL", r"DROP is not allowed"),
    ("PRAGMA version", r"PRAGMA is not allowed"),
    ("SET threads = 1", r"SET is not allowed"),
    ("INSTALL httpfs", r"INSTALL is not allowed"),
    ("LOAD httpfs", r"LOAD is not allowed"),
    ("CALL pragma_version()", r"CALL is not allowed"),
    ("EXPORT DATABASE 'dir'", r"EXPORT is not allowed"),
    ("country IN (SELECT column0 FROM read_csv('/etc/passwd'))", r"read_csv\(\.\.\.\) is not allowed"),
    ("EXISTS (SELECT * FROM read_parquet('x.parquet'))", r"read_parquet\(\.\.\.\) is not allowed"),
    ("EXISTS (FROM read_text('/etc/hostname'))", r"read_text\(\.\.\.\) is not allowed"),
    ("EXISTS (FROM glob('/*'))", r"glob\(\.\.\.\) is not allowed"),
    ("EXISTS (FROM query('SELECT 1'))", r"query\(\.\.\.\) is not allowed"),
    ("EXISTS (FROM duckdb_settings())", r"duckdb_settings\(\.\.\.\) is not allowed"),
    ("country IN (SELECT * FROM '/etc/passwd')", r"'/etc/passwd' is not a lake table"),
    ("country IN (SELECT country FROM sales)", r"'sales' is not a lake table; a subquery may read "
                                               r"gold\.sales, silver\.customers only"),
    ("EXISTS (SELECT * FROM information_schema.tables)", r"'information_schema.tables' is not a lake table"),
    ("EXISTS (SELECT * FROM other.main.t)", r"is not a lake table"),
    ("current_setting('threads') = '1'", r"function current_setting\(\) is not allowed"),
    ("getvariable('x') IS NULL", r"function getvariable\(\) is not allowed"),
    ("nextval('seq') > 0", r"function nextval\(\) is not allowed"),
    ("st_area(st_point(1, 2)) > 0", r"unknown function st_\w+\(\); only functions already loaded"),
    ("units > 1) ORDER BY (units", r"must be a single condition"),
    ("units > 1) UNION ALL SELECT * FROM gold.sales WHERE (1 = 1", r"must be a single condition"),
    ("units > 1) GROUP BY ALL HAVING (count(*) > 0", r"must be a single condition"),
    ("units > 1 -- ) LIMIT 0", r"comments \(-- or /\* \*/\) are not allowed"),
    ("units > /* x */ 1", r"comments"),
    ("units >", r"filter is not valid SQL: syntax error"),
])
def test_where_expressions_that_could_do_more_than_read_are_refused(lake, text, message):
    with pytest.raises(q.FilterError, match=message):
        where(lake, text)


def test_a_refused_expression_never_runs(lake, tmp_path):
    target = tmp_path / "stolen.csv"
    with pytest.raises(q.FilterError):
        where(lake, f"1=1; COPY gold.sales TO '{target}'")
    assert not target.exists()
    assert lake.count("gold.sales") == 200


def test_a_filter_that_fails_when_bound_names_the_problem(lake, sales):
    checked = where(lake, "no_such_column > 1")
    with pytest.raises(q.FilterError, match=r"filter \(no_such_column > 1\): Binder Error"):
        q.filter_relation(sales, (), checked)


# -- pages ---------------------------------------------------------------------------------
def test_pages_use_limit_and_offset_and_sort_nulls_last(sales):
    page = q.page_relation(sales, order_by="note", descending=True, limit=25, offset=175)
    rows = page.fetchall()
    assert len(rows) == 25
    assert [r[6] for r in rows[-20:]] == [None] * 20  # nulls come last even when descending
    assert "LIMIT" in page.sql_query().upper()
    assert "OFFSET" in page.sql_query().upper()
    first = q.page_relation(sales, order_by="revenue", limit=3).fetchall()
    assert [r[4] for r in first] == sorted(r[4] for r in sales.fetchall())[:3]
    assert len(q.page_relation(sales, limit=10, offset=195).fetchall()) == 5
    assert len(q.page_relation(sales, limit=None).fetchall()) == 200


def test_sorting_by_an_unknown_column_is_refused(sales):
    with pytest.raises(q.FilterError, match="sort: 'x' is not a column"):
        q.page_relation(sales, order_by="x")


# -- profile and top values ----------------------------------------------------------------
def test_profile_counts_nulls_distinct_min_max_mean(sales):
    profile = {p.column: p for p in q.profile_columns(sales)}
    assert profile["note"].nulls == 20
    assert profile["note"].count == 180
    assert profile["country"].distinct == 4
    assert profile["customer"].distinct == 25
    assert profile["units"].minimum == 1
    assert profile["units"].maximum == 5
    assert profile["units"].mean == 3.0
    assert profile["order_date"].minimum == dt.date(2026, 1, 1)
    assert profile["order_date"].maximum == dt.date(2026, 3, 1)
    assert profile["order_date"].mean is None
    assert isinstance(profile["revenue"].maximum, decimal.Decimal)


def test_profile_from_file_statistics_equals_the_profile_of_a_scan(lake):
    # Three files: two appends of different rows, text whose min and max sit in different files.
    lake.write("silver.parts", "SELECT 'm' || i AS name, i AS n, NULL::VARCHAR AS note FROM range(5) t(i)")
    lake.write("silver.parts", "SELECT 'a' || i AS name, i * 10 AS n, 'x' AS note FROM range(3) t(i)", mode="append")
    lake.write("silver.parts", "SELECT 'z' AS name, NULL::BIGINT AS n, 'b' AS note", mode="append")
    files = lake._snapshots[("silver", "parts")].files
    rel = lake.table("silver.parts")
    assert len(files) >= 3
    scanned = q.profile_columns(rel)
    from_stats = q.profile_columns(rel, files=files, con=lake.con)
    assert from_stats == scanned
    profile = {p.column: p for p in from_stats}
    assert (profile["name"].minimum, profile["name"].maximum) == ("a0", "z")
    assert (profile["note"].minimum, profile["note"].maximum, profile["note"].nulls) == ("b", "x", 5)
    assert (profile["n"].count, profile["n"].minimum, profile["n"].maximum) == (8, 0, 20)
    assert q.profile_columns(rel, distinct=False, files=files, con=lake.con)[0].distinct is None


@pytest.mark.parametrize("where", ["", "country IN ('DE', 'FR') AND units > 1"])
def test_profile_equals_exact_sql_column_by_column(lake, where):
    rel = q.filter_relation(lake.table("gold.sales"), where=f"({where})" if where else "")
    condition = f"WHERE {where}" if where else ""
    for p in q.profile_columns(rel):
        mean = f"avg({p.column})::DOUBLE" if q.is_numeric(p.type) else "NULL"
        oracle = lake.sql(f"SELECT count({p.column}), count(*) - count({p.column}), count(DISTINCT {p.column}), "
                          f"min({p.column}), max({p.column}), {mean} FROM gold.sales {condition}").fetchall()[0]
        assert (p.count, p.nulls, p.distinct, p.minimum, p.maximum) == oracle[:5], p.column
        assert p.mean == (None if oracle[5] is None else pytest.approx(oracle[5], rel=1e-12)), p.column


def test_profile_falls_back_to_a_scan_when_a_file_lacks_a_column(lake):
    lake.write("silver.grown", "SELECT i AS n FROM range(3) t(i)")
    lake.write("silver.grown", "SELECT 7 AS n, 'new' AS label", mode="append")  # adds a column
    snap = lake._snapshots[("silver", "grown")]
    profile = {p.column: p for p in q.profile_columns(lake.table("silver.grown"), files=snap.files, con=lake.con)}
    assert (profile["label"].count, profile["label"].nulls, profile["n"].maximum) == (1, 3, 7)


def test_distinct_count_of_one_column(sales):
    assert q.top_values(sales, "customer").distinct == 25
    assert q.top_values(sales, "country").distinct == 4


def test_top_values(sales):
    filtered = q.filter_relation(sales, [q.Condition("units", "=", "1")])
    top = q.top_values(filtered, "country", n=3).values
    assert top == [("DE", 10), ("FR", 10), ("IT", 10)]
    with pytest.raises(q.FilterError, match="top values: 'nope' is not a column"):
        q.top_values(sales, "nope")


@pytest.mark.parametrize("column", ["country", "customer", "units", "note", "margin"])
def test_top_values_count_distinct_values_exactly(lake, column):
    rel = lake.table("gold.sales")
    top = q.top_values(rel, column, n=3)
    oracle = lake.sql(f"SELECT {column}, count(*) AS n FROM gold.sales GROUP BY ALL "
                      f"ORDER BY n DESC, {column} ASC NULLS LAST LIMIT 3").fetchall()
    assert top.values == oracle
    assert top.distinct == lake.sql(f"SELECT count(DISTINCT {column}) FROM gold.sales").fetchall()[0][0]


def test_top_values_count_nulls_as_a_value_but_not_as_a_distinct_value(sales):
    nulls_first = q.filter_relation(sales, where="note IS NULL OR note = 'note 1'")
    top = q.top_values(nulls_first, "note")
    assert top.values == [(None, 20), ("note 1", 1)]
    assert top.distinct == 1
    empty = q.top_values(q.filter_relation(sales, [q.Condition("units", "=", "99")]), "note")
    assert (empty.values, empty.distinct) == ([], 0)
    with pytest.raises(q.FilterError, match="top values: 'nope' is not a column"):
        q.top_values(sales, "nope")


def test_the_first_repeating_text_column_is_picked_for_top_values(lake):
    lake.write("silver.events", "SELECT 'E' || i AS event_id, 'free text ' || i AS comment, i AS n, "
                                "['web', 'app'][1 + i % 2] AS channel, ['a', 'b', 'c'][1 + i % 3] AS kind "
                                "FROM range(500) t(i)")
    events = lake.table("silver.events")
    assert q.repeating_text_column(events) == "channel"  # identifiers and free text passed over
    assert q.repeating_text_column(events, max_values=1) is None
    # Judged on the first rows: all 500 event ids are distinct, the first 40 are few enough.
    assert q.repeating_text_column(events, rows=40, max_values=40) == "event_id"
    assert q.repeating_text_column(lake.sql("SELECT 1 AS n")) is None


# -- chart data ----------------------------------------------------------------------------
def test_chart_groups_and_aggregates(sales, lake):
    data = q.chart_data(sales, x="country", y="revenue", agg="sum")
    truth = lake.sql("SELECT country, sum(revenue)::DOUBLE FROM gold.sales GROUP BY 1 ORDER BY 2 DESC").fetchall()
    assert list(zip(data.labels, data.values, strict=True)) == truth
    assert data.title == "sum(revenue) by country"
    assert not data.truncated
    rows = q.chart_data(sales, x="country")
    assert rows.values == [50.0] * 4
    assert rows.labels == ["DE", "FR", "IT", "SE"]


def test_chart_bins_dates_on_a_time_axis(sales):
    data = q.chart_data(sales, x="order_date", y="units", agg="sum", bucket="month")
    assert data.axis == "time"
    assert data.labels == [dt.datetime(2026, 1, 1), dt.datetime(2026, 2, 1), dt.datetime(2026, 3, 1)]
    assert sum(data.values) == sales.aggregate("sum(units)").fetchall()[0][0]
    assert data.title == "sum(units) by order_date (month)"
    auto = q.chart_data(sales, x="order_date", y="units")
    assert auto.bucket == "day"  # 60 days: one bin per day
    assert len(auto.labels) == 60
    monthly = sales.aggregate("date_trunc('month', order_date) AS month, sum(units) AS units", "1")
    assert q.chart_data(monthly, x="month", y="units").bucket == "month"  # never finer than the data
    assert q.chart_data(monthly, x="month", y="units").values == data.values


def test_a_timestamp_over_ten_days_bins_by_day_with_gaps_shown(lake):
    # Readings every 7 minutes from 1 to 10 March, none on 4 and 7 March.
    rel = lake.sql("""
        SELECT ts, 1.5 AS kwh FROM (
            SELECT TIMESTAMP '2026-03-01 00:00' + INTERVAL (i * 7) MINUTE AS ts FROM range(2057) t(i))
        WHERE day(ts) NOT IN (4, 7)""")
    data = q.chart_data(rel, x="ts", y="kwh")
    assert (data.axis, data.bucket, data.title) == ("time", "day", "sum(kwh) by ts (day)")
    assert data.labels == [dt.datetime(2026, 3, d) for d in range(1, 11)]
    gaps = [label.day for label, value in zip(data.labels, data.values, strict=True) if value is None]
    assert gaps == [4, 7]  # the empty days are there, without a value, so the line breaks
    per_day = dict(rel.aggregate("day(ts), sum(kwh)::DOUBLE", "day(ts)").fetchall())
    assert {label.day: value for label, value in zip(data.labels, data.values, strict=True) if value} == per_day
    assert not data.truncated
    assert data.note == ""


@pytest.mark.parametrize(("span", "dates_only", "bucket"), [
    (dt.timedelta(hours=20), False, "hour"),
    (dt.timedelta(days=4), False, "hour"),
    (dt.timedelta(days=4), True, "day"),
    (dt.timedelta(days=10), False, "day"),
    (dt.timedelta(days=110), False, "day"),
    (dt.timedelta(days=400), False, "week"),
    (dt.timedelta(days=3 * 365), False, "month"),
    (dt.timedelta(days=20 * 365), False, "quarter"),
    (dt.timedelta(days=80 * 365), False, "year"),
])
def test_auto_bucket_follows_the_span(span, dates_only, bucket):
    start = dt.datetime(2026, 1, 1)
    assert q.auto_bucket(start, start + span, dates_only=dates_only) == bucket


def test_chart_cuts_groups_and_says_so(sales):
    data = q.chart_data(sales, x="order_date", bucket="day", max_points=10)
    assert len(data.labels) == 10
    assert data.truncated
    assert data.groups == 60
    assert data.labels[0] == dt.datetime(2026, 1, 1)
    assert data.note.startswith("Showing the first 10 of 60 days")
    categories = q.chart_data(sales, x="customer", y="revenue", max_points=5)
    assert (len(categories.labels), categories.groups) == (5, 25)
    assert categories.values == sorted(categories.values, reverse=True)
    assert categories.note == ("Showing the largest 5 of 25 groups; the other 20 are left out. "
                               "Filter to see them.")


def test_chart_of_a_numeric_x_is_ordered_by_x(sales):
    data = q.chart_data(sales, x="units")
    assert data.axis == "number"
    assert data.labels == [1, 2, 3, 4, 5]
    assert data.values == [40.0] * 5


def test_chart_follows_the_filter(sales):
    filtered = q.filter_relation(sales, [q.Condition("country", "=", "SE")])
    assert q.chart_data(filtered, x="country").labels == ["SE"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"x": "nope"}, "chart x: 'nope' is not a column"),
    ({"x": "country", "y": "nope"}, "chart y: 'nope' is not a column"),
    ({"x": "country", "y": "note", "agg": "sum"}, r"cannot sum note \(varchar\)"),
    ({"x": "country", "y": "units", "agg": "median"}, "aggregation 'median' is not one of"),
    ({"x": "country", "bucket": "month"}, "country is varchar, not a date or timestamp"),
    ({"x": "order_date", "bucket": "fortnight"}, "bucket 'fortnight' is not one of auto, hour, day"),
])
def test_bad_chart_requests(sales, kwargs, message):
    with pytest.raises(q.FilterError, match=message):
        q.chart_data(sales, **kwargs)


# -- versions ------------------------------------------------------------------------------
def test_compare_versions(lake):
    now, then = lake.table("gold.sales"), lake.table("gold.sales", version=0)
    diff = q.compare_relations(now, then)
    assert (diff.rows_now, diff.rows_then, diff.only_now, diff.only_then) == (200, 150, 50, 0)
    assert diff.summary(0) == "rows: 150 in version 0, 200 now · 50 distinct rows only now, 0 only in version 0"
    changed = lake.sql("SELECT * EXCLUDE (note), units * 2 AS units2 FROM gold.sales")
    diff = q.compare_relations(changed, now)
    assert diff.added == ["units2"]
    assert diff.removed == ["note"]
    assert diff.only_now is None
    assert "columns added: units2 · columns removed: note" in diff.summary(1)


# -- rendering -----------------------------------------------------------------------------
def test_html_table_escapes_and_formats():
    out = render.html_table(["a<b", "n"], [("<script>x</script>", 1234567), (None, 0.5)], first_row=1)
    assert "<script>" not in out
    assert "&lt;script&gt;" in out
    assert "a&lt;b" in out
    assert '<td class="num">1,234,567</td>' in out
    assert '<td class="null">null</td>' in out
    assert "<td class=\"num\">0.5</td>" in out
    assert "no rows" in render.html_table(["a"], [])


def test_svg_chart_draws_one_bar_per_value_and_a_line():
    svg = render.svg_chart(["a", "b", "c"], [1.0, -2.0, None], kind="bar", title="t <1>")
    assert svg.startswith("<svg")
    assert svg.count('class="mnb-bar"') == 2
    assert "t &lt;1&gt;" in svg
    line = render.svg_chart([1, 2, 3], [1.0, 2.0, 3.0], kind="line")
    assert 'class="mnb-line"' in line
    assert line.count("<circle") == 3
    assert "no data" in render.svg_chart([], [], kind="bar")
    with pytest.raises(UsageError, match="chart kind 'pie' is not bar or line"):
        render.svg_chart([1], [1], kind="pie")


def test_percentages_read_like_percentages():
    assert render.percent(1, 24) == "4.2%"
    assert render.percent(0, 24) == "0%"
    assert render.percent(24, 24) == "100%"
    assert render.percent(1, 5000) == "<0.1%"
    assert render.percent(1, 3) == "33.3%"
    assert render.percent(1, 2) == "50.0%"


def test_chart_helper_for_notebooks_draws_with_bqplot_and_keeps_a_static_copy(sales):
    import bqplot

    shown = render.chart(sales, x="order_date", y="revenue", bucket="month", title="Revenue")
    assert isinstance(shown.figure, bqplot.Figure)
    assert isinstance(shown.figure.axes[0].scale, bqplot.DateScale)
    assert shown.figure.title == "Revenue"
    assert len(shown.figure.marks[0].x) == 3
    svg = shown.svg()
    assert "Revenue" in svg
    assert 'class="mnb-line"' in svg
    bars = render.chart(sales, x="country", y="revenue")
    assert isinstance(bars.figure.marks[0], bqplot.Bars)
    assert list(bars.figure.marks[0].x) == [c for c, in sales.aggregate("country, sum(revenue) AS s", "country")
                                            .order("s DESC").project("country").fetchall()]


def test_core_modules_do_not_import_ipywidgets():
    import subprocess
    import sys

    code = ("import sys, medallion_nb.widgets.queries, medallion_nb.widgets.readonly, medallion_nb.widgets.render;"
            "print('ipywidgets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ})
    assert out.stdout.strip() == "False"
