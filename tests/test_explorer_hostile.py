"""Hostile WHERE conditions, typed into the explorer: each is refused or stopped, with a message in the app.

Every string goes through the widget (``app.where_text.value = ...``), as a
dashboard user's would. Two layers stop them: the parser check
(:mod:`medallion_nb.widgets.readonly`) and DuckDB's own sandbox on the
explorer's connection (:mod:`medallion_nb.widgets.sandbox`), plus the query
time limit. Whatever the reason, the app must show a red box, keep the
previous filter, and leave the lake and the disk untouched.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import medallion_nb as mnb
from medallion_nb.widgets import GoldExplorer
from medallion_nb.widgets.sandbox import ReadOnlyLake
from tests.test_widget_queries import make_small_lake

SELF_JOIN = "gold.sales a, gold.sales b, gold.sales c, gold.sales d, gold.sales e"  # 200^5 rows

HOSTILE = [
    # extension types: a cast to them would make DuckDB install an extension from the network
    "'1.2.3.4'::INET IS NOT NULL",
    "CAST(country AS INET) IS NULL",
    "TRY_CAST(country AS INET) IS NULL",
    "INET '10.0.0.1' IS NOT NULL",
    "country::STRUCT(a INET) IS NULL",
    "country::INET[] IS NULL",
    "'[1, 2, 3, 4]'::BOX_2D IS NOT NULL",
    "country::main.inet IS NULL",
    "country::other.main.mytype IS NULL",
    # sampling: different rows on every query
    "(SELECT 1 FROM gold.sales USING SAMPLE 1) = 1",
    "EXISTS (SELECT * FROM gold.sales USING SAMPLE 10%)",
    "EXISTS (SELECT * FROM gold.sales TABLESAMPLE 5)",
    "units IN (SELECT units FROM gold.sales USING SAMPLE reservoir(3 ROWS) REPEATABLE (1))",
    # table functions and files
    "country IN (SELECT column0 FROM read_csv('/etc/passwd'))",
    "EXISTS (FROM read_csv_auto('/etc/passwd'))",
    "EXISTS (FROM read_parquet('/tmp/x.parquet'))",
    "EXISTS (FROM read_json('/etc/hosts'))",
    "EXISTS (FROM read_text('/etc/hostname'))",
    "EXISTS (FROM read_blob('/etc/hostname'))",
    "EXISTS (FROM glob('/*'))",
    "EXISTS (FROM query('SELECT 1'))",
    "EXISTS (FROM query_table('gold.sales'))",
    "EXISTS (FROM sniff_csv('/etc/passwd'))",
    "EXISTS (FROM parquet_metadata('/tmp/x.parquet'))",
    "EXISTS (FROM range(1000000000000))",
    "EXISTS (FROM generate_series(1, 1000000000000))",
    "EXISTS (FROM delta_scan('/tmp/t'))",
    "EXISTS (FROM sqlite_scan('/tmp/x.db', 't'))",
    "EXISTS (FROM postgres_scan('host=127.0.0.1', 'public', 't'))",
    "country IN (SELECT * FROM '/etc/passwd')",
    "country IN (FROM 'data/lake/gold/sales/part-0.parquet')",
    "EXISTS (FROM duckdb_tables())",
    # settings, variables, secrets, state
    "current_setting('allowed_directories') IS NOT NULL",
    "current_setting('enable_external_access') = 'false'",
    "getenv('HOME') IS NOT NULL",
    "getvariable('x') IS NULL",
    "EXISTS (FROM duckdb_settings())",
    "EXISTS (FROM duckdb_secrets())",
    "EXISTS (FROM duckdb_extensions())",
    "nextval('seq') > 0",
    "setseed(0.5) IS NULL",
    "json_execute_serialized_sql('{}') IS NULL",
    "sleep_ms(100000) IS NULL",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "PRAGMA enable_profiling",
    # other statements
    "1=1; DROP TABLE gold.sales",
    "units > 1; SELECT 1",
    "1=1) ; ATTACH 'x.db' AS x; SELECT (1",
    "ATTACH ':memory:' AS x",
    "units IN (COPY gold.sales TO 'out.csv')",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CALL pragma_version()",
    "EXPORT DATABASE '/tmp/dump'",
    "CHECKPOINT",
    "(CREATE MACRO m() AS 1) IS NULL",
    "(CREATE SECRET s (TYPE s3)) IS NULL",
    "units > 1) UNION ALL SELECT * FROM gold.sales WHERE (1 = 1",
    "units > 1) ORDER BY (units",
    # tables that are not lake tables
    "EXISTS (SELECT * FROM information_schema.tables)",
    "EXISTS (SELECT * FROM pg_catalog.pg_class)",
    "EXISTS (SELECT * FROM __empty_1)",
    "EXISTS (SELECT * FROM gold.sales AT (VERSION => 0))",
    "EXISTS (WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r)",
    # unicode look-alikes and invisible characters
    "units ＞ 1",  # noqa: RUF001 (fullwidth greater-than)
    "units > 1；DROP TABLE gold.sales",  # noqa: RUF001 (fullwidth semicolon)
    "ｒead_csv('/etc/passwd') IS NULL",  # noqa: RUF001 (fullwidth r)
    "EXISTS (FROM reаd_csv('/etc/passwd'))",  # noqa: RUF001 (Cyrillic a)
    "units >\u200b1",
    "country = 'DE' \u202e--",
    "units > 1\x00; DROP TABLE gold.sales",
    # comment tricks
    "units > 1 -- ) LIMIT 0",
    "units > /* x */ 1",
    "units > 1 /* unterminated",
    "units > 1 --\nOR 1=1",
    "/*/ units > 1 /*/",
    # parameters and parser limits
    "units > $1",
    "units > ?",
    "(" * 3000 + "units > 1" + ")" * 3000,
    # long-running: bounded by the time limit
    f"(SELECT count(*) FROM {SELF_JOIN}) > 0",
    f"EXISTS (SELECT 1 FROM {SELF_JOIN} WHERE a.units * b.units * c.units * d.units * e.units = 7)",
    f"units < (SELECT max(a.units * b.units * c.units * d.units * e.units) FROM {SELF_JOIN})",
]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory):
    with mnb.connect(make_small_lake(tmp_path_factory.mktemp("hostile") / "small")) as handle:
        yield handle


@pytest.fixture(scope="module")
def app(lake):
    return GoldExplorer(lake, timeout=1.0)


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def test_the_catalogue_is_large_enough():
    assert len(HOSTILE) >= 60
    assert len(set(HOSTILE)) == len(HOSTILE)


@pytest.mark.parametrize("text", HOSTILE, ids=[f"{i:02d}" for i in range(len(HOSTILE))])
def test_hostile_where_is_refused_or_stopped_with_a_message(app, lake, text):
    app.where_text.value = "units = 5"
    assert app.error is None
    assert app.filtered_rows == 40
    files = _files(lake.project.root)
    app.where_text.value = text  # what typing and pressing Enter does
    assert app.error, f"accepted: {text!r}"
    assert 'class="mnb-note error"' in app.status.value
    assert "The previous filter is still applied" in app.status.value
    assert "Traceback" not in app.status.value
    assert app.filtered_rows == 40
    assert app.where == "(units = 5)"
    assert _files(lake.project.root) == files
    assert lake.count("gold.sales") == 200


@pytest.mark.parametrize("text", HOSTILE[-3:])
def test_long_running_conditions_are_stopped_by_the_time_limit(app, text):
    app.where_text.value = text
    assert app.error == ("counting the matching rows took longer than 1 s and was stopped; "
                         "narrow the filter or simplify the condition")
    app.where_text.value = "units = 4"  # the connection works again at once
    assert app.error is None
    assert app.filtered_rows == 40


def test_the_sandbox_holds_without_the_parser_check(lake, tmp_path):
    """Even SQL that the parser check would refuse cannot leave the lake on the explorer's connection."""
    sandbox = ReadOnlyLake(lake, timeout=5)
    con = sandbox.con
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    with pytest.raises(duckdb.PermissionException):
        con.sql(f"SELECT * FROM read_csv('{outside}')").fetchall()
    with pytest.raises(duckdb.PermissionException):
        con.sql("SELECT * FROM read_csv('/etc/passwd')").fetchall()
    with pytest.raises(duckdb.CatalogException, match="INET"):
        con.sql("SELECT '1.2.3.4'::INET").fetchall()  # no extension install attempt
    with pytest.raises(duckdb.Error):
        con.execute("LOAD inet")
    with pytest.raises(duckdb.InvalidInputException, match="locked"):
        con.execute("SET enable_external_access = true")
    with pytest.raises(duckdb.InvalidInputException, match="locked"):
        con.execute("SET allowed_directories = ['/']")
    with pytest.raises(duckdb.Error):
        con.execute(f"ATTACH '{tmp_path / 'other.db'}' AS other")
    assert not (tmp_path / "other.db").exists()
    assert sandbox.table("gold.sales").aggregate("count(*)").fetchall() == [(200,)]
    assert sandbox.table("gold.sales", version=0).aggregate("count(*)").fetchall() == [(150,)]
    sandbox.close()
