"""Database sources: PostgreSQL (a real server started for the tests) and SQLite tables loaded into bronze.

Every load is checked against the source itself: the rows in bronze, lineage columns
left out, are the rows the database holds (or, for an append by cursor, every version
of them that was read).
"""

from __future__ import annotations

import itertools
import sqlite3

import pytest
from conftest import write_project

from medallion_nb import connect
from medallion_nb.errors import IngestError, ProjectError, SecretError
from medallion_nb.ingest import STATE_KEY
from medallion_nb.project import load_project

_NAMES = itertools.count()
BRONZE = "layers:\n  - name: bronze\n    notebook: nb.ipynb\n"
EMPTY_NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def project(tmp_path, sources: str, name: str = "p"):
    return write_project(tmp_path / name, f"name: {name}\n{BRONZE}sources:\n{sources}", {"nb.ipynb": EMPTY_NOTEBOOK})


# -- configuration ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "message"), [
    ("format: postgres\n    table: t\n    mode: replace", r"orders\.url: missing \(required\)"),
    ("format: postgres\n    url: postgresql://app:hunter2@db/shop\n    table: t\n    mode: replace",
     r"orders\.url: has a password written in plain text.*\$\{ORDERS_DB_URL\}"),
    ("format: postgres\n    url: postgresql://app:hunter2@db/${DB}\n    table: t\n    mode: replace",
     r"orders\.url: has a password written in plain text"),
    ("format: postgres\n    url: host=db password=hunter2\n    table: t\n    mode: replace",
     r"orders\.url: has a password written in plain text"),
    ("format: postgres\n    url: mysql://db/shop\n    table: t\n    mode: replace",
     r"orders\.url: 'mysql://db/shop' is not a postgresql:// URL"),
    ("format: postgres\n    url: ${U}\n    mode: replace", r"orders: give either table: .* or query: .*exactly one"),
    ("format: postgres\n    url: ${U}\n    table: t\n    query: select 1\n    mode: replace", r"exactly one"),
    ("format: postgres\n    url: ${U}\n    table: t\n    mode: append", r"orders\.cursor: required when a database"),
    ("format: postgres\n    url: ${U}\n    table: t\n    mode: replace\n    cursor: c", r"orders\.cursor: not used"),
    ("format: postgres\n    url: ${U}\n    table: t\n    mode: append\n    cursor: c\n    deletes: true",
     r"orders\.deletes: only with mode: merge"),
    ("format: postgres\n    url: ${U}\n    table: 'x; drop'\n    mode: replace", r"orders\.table: .* is not a table"),
    ("format: postgres\n    url: ${U}\n    table: t\n    mode: replace\n    delimiter: ';'",
     r"orders: delimiter: not for postgres sources"),
    ("format: sqlite\n    url: ${U}\n    table: t\n    mode: replace", r"orders\.url: not for sqlite sources"),
    ("format: sqlite\n    table: t\n    mode: replace", r"orders\.path: missing \(required\): the SQLite"),
    ("path: data/*.csv\n    table: t", r"orders: table: only for database sources"),
])
def test_database_source_settings_are_checked(tmp_path, spec, message):
    with pytest.raises(ProjectError, match=message):
        load_project(project(tmp_path, f"  orders:\n    {spec}\n"))


def test_a_connection_string_from_a_secret_or_without_a_password_is_accepted(tmp_path):
    root = project(tmp_path, "  a:\n    format: postgres\n    url: ${ORDERS_DB_URL}\n    table: public.orders\n"
                             "    mode: merge\n    keys: [id]\n    cursor: updated_at\n"
                             "  b:\n    format: postgres\n    url: postgresql://app:${PW}@db:5432/shop\n"
                             "    query: select 1 as x\n    mode: replace\n"
                             "  c:\n    format: postgres\n    url: postgresql://app@db/shop\n    table: t\n"
                             "    mode: replace\n"
                             "  d:\n    path: shop.sqlite\n    table: t\n    mode: replace\n")
    loaded = load_project(root)
    assert [s.format for s in loaded.sources] == ["postgres", "postgres", "postgres", "sqlite"]
    assert loaded.secret_references() == {"ORDERS_DB_URL": "sources.a.url", "PW": "sources.b.url"}
    assert str(loaded.source("b").url) == "postgresql://app:${PW}@db:5432/shop"


# -- PostgreSQL --------------------------------------------------------------------------------------------------
@pytest.fixture
def pg(postgres_server, monkeypatch):
    """The test server, with a fresh schema for this test and ``PG_URL`` set."""
    schema = f"t{next(_NAMES)}_{id(monkeypatch) % 10_000}"
    postgres_server.execute(f"create schema {schema}")
    monkeypatch.setenv("PG_URL", postgres_server.url)
    postgres_server.schema = schema
    return postgres_server


ORDERS = """create table {s}.orders (id integer primary key, customer text not null, amount numeric(12,2),
            status text, updated_at timestamptz not null)"""


def insert(pg, ids, *, status="new", minute=0):
    values = ", ".join(f"({i}, 'c{i % 7}', {i * 1.25:.2f}, '{status}', "
                       f"timestamptz '2026-01-01 00:00:00+00' + interval '{minute} minutes' + interval '{i} seconds')"
                       for i in ids)
    pg.execute(f"insert into {pg.schema}.orders values {values}")


def source_rows(pg, where="true"):
    return sorted(pg.query(f"select id, customer, amount::text, status, "
                           f"(extract(epoch from updated_at) * 1000000)::bigint from {pg.schema}.orders "
                           f"where {where}"))


def bronze_rows(lake, table="bronze.orders"):
    return sorted(lake.sql(f"select id, customer, amount::varchar, status, epoch_us(updated_at) from {table}")
                  .fetchall())


def pg_project(tmp_path, pg, *, mode="merge", extra="", table="orders", name="p"):
    keys = "\n    keys: [id]" if mode == "merge" else ""
    return project(tmp_path, f"  orders:\n    format: postgres\n    url: ${{PG_URL}}\n    table: {pg.schema}.{table}\n"
                             f"    mode: {mode}{keys}{extra}\n", name=name)


def test_postgres_initial_load_then_inserts_and_updates_by_cursor_and_by_merge(tmp_path, pg):
    pg.execute(ORDERS.format(s=pg.schema))
    insert(pg, range(1, 501))
    merged = pg_project(tmp_path, pg, extra="\n    cursor: updated_at", name="merged")
    appended = pg_project(tmp_path, pg, mode="append", extra="\n    cursor: updated_at", name="appended")
    for root in (merged, appended):
        with connect(root) as lake:
            [result] = lake.ingest()
            assert result.rows == 500
            assert bronze_rows(lake) == source_rows(pg)
            # Types come from the database: numeric(12,2) -> DECIMAL(12,2), timestamptz -> TIMESTAMPTZ.
            types = dict(zip(lake.table("bronze.orders").columns, map(str, lake.table("bronze.orders").types),
                             strict=True))
            assert types["amount"] == "DECIMAL(12,2)"
            assert types["updated_at"] == "TIMESTAMP WITH TIME ZONE"
            assert lake.sql("select distinct _source_file from bronze.orders").fetchall() == [
                (f"postgres table {pg.schema}.orders",)]
    before = source_rows(pg)

    insert(pg, range(501, 531), minute=60)  # 30 new rows
    pg.execute(f"update {pg.schema}.orders set status = 'paid', amount = amount + 1, "
               f"updated_at = updated_at + interval '2 hours' where id between 10 and 19")  # 10 updated
    with connect(merged) as lake:
        [result] = lake.ingest()
        # Past the mark: 40 changed rows, plus the row at the mark itself (read again, harmless in a merge).
        assert result.write.inserted == 30
        assert bronze_rows(lake) == source_rows(pg)
    with connect(appended) as lake:
        [result] = lake.ingest()
        assert result.rows == 40  # strictly past the mark: each change once
        rows = bronze_rows(lake)
        assert len(rows) == 540
        assert sorted(set(rows) - set(before)) == sorted(set(source_rows(pg)) - set(before))
        latest = lake.sql("select id, customer, amount::varchar, status, epoch_us(updated_at) from bronze.orders "
                          "qualify row_number() over (partition by id order by updated_at desc) = 1").fetchall()
        assert sorted(latest) == source_rows(pg)

    # Nothing new: no new table version, and the report says so.
    for root in (merged, appended):
        with connect(root) as lake:
            version = lake.info("bronze.orders")["version"]
            [result] = lake.ingest()
            assert result.rows == 0
            assert "nothing new" in str(result)
            assert lake.info("bronze.orders")["version"] == version


def test_the_high_water_mark_is_committed_with_the_rows(tmp_path, pg):
    pg.execute(ORDERS.format(s=pg.schema))
    insert(pg, range(1, 11))
    root = pg_project(tmp_path, pg, extra="\n    cursor: updated_at\n    schema:\n      status: INTEGER")
    pg.execute(f"update {pg.schema}.orders set status = '1'")
    with connect(root) as lake:
        lake.ingest()
        history = lake.store.raw_history("bronze", "orders")
        state = next(c[STATE_KEY] for c in history if STATE_KEY in c)
        assert '"type": "timestamp with time zone"' in state
        version = lake.info("bronze.orders")["version"]
    # A row that cannot be typed fails the load: neither rows nor mark move.
    insert(pg, [11, 12], status="not a number", minute=5)
    with connect(root) as lake:
        with pytest.raises(IngestError, match="source orders"):
            lake.ingest()
        assert lake.info("bronze.orders")["version"] == version
        assert lake.count("bronze.orders") == 10
    # Fixed at the source: the next load picks up exactly the rows the failed one could not.
    pg.execute(f"update {pg.schema}.orders set status = '2' where id > 10")
    with connect(root) as lake:
        lake.ingest()
        assert lake.sql("select count(*), sum(status) from bronze.orders").fetchall() == [(12, 14)]


def test_postgres_merge_with_deletes_and_a_query_source(tmp_path, pg):
    pg.execute(ORDERS.format(s=pg.schema))
    insert(pg, range(1, 101))
    root = project(tmp_path,
                   f"  orders:\n    format: postgres\n    url: ${{PG_URL}}\n    table: {pg.schema}.orders\n"
                   "    mode: merge\n    keys: [id]\n    deletes: true\n"
                   f"  big_customers:\n    format: postgres\n    url: ${{PG_URL}}\n    mode: replace\n"
                   f"    query: select customer, count(*) as n, sum(amount) as total from {pg.schema}.orders "
                   "group by customer having count(*) > 14\n")
    with connect(root) as lake:
        lake.ingest()
        assert bronze_rows(lake) == source_rows(pg)
    pg.execute(f"delete from {pg.schema}.orders where id % 10 = 0",
               f"update {pg.schema}.orders set status = 'paid' where id % 10 = 1")
    insert(pg, [200, 201])
    with connect(root) as lake:
        orders, _ = lake.ingest()
        assert orders.write.deleted == 10
        assert bronze_rows(lake) == source_rows(pg)
        expected = pg.query(f"select customer, count(*)::int, sum(amount)::text from {pg.schema}.orders "
                            "group by customer having count(*) > 14")
        assert sorted(lake.sql("select customer, n, total::varchar from bronze.big_customers").fetchall()) == \
            sorted((c, n, t) for c, n, t in expected)


def test_postgres_problems_name_the_source_and_never_the_password(tmp_path, pg, monkeypatch):
    pg.execute(ORDERS.format(s=pg.schema))
    insert(pg, range(1, 4))
    root = pg_project(tmp_path, pg, extra="\n    cursor: changed_at")
    with connect(root) as lake, pytest.raises(
            IngestError, match=r"column 'changed_at' .* is not in postgres table .*columns are: id, customer, "
                               r"amount, status, updated_at"):
        lake.ingest()
    root = pg_project(tmp_path, pg, name="ok")
    monkeypatch.delenv("PG_URL")
    with connect(root) as lake, pytest.raises(SecretError, match=r"sources\.orders\.url: the environment variable "
                                                                   r"PG_URL is not set"):
        lake.ingest()
    monkeypatch.setenv("PG_URL", pg.url.replace(pg.password, pg.password + "x"))
    with connect(root) as lake, pytest.raises(IngestError) as caught:
        lake.ingest()
    message = str(caught.value)
    assert "source orders: postgres table" in message
    assert "password authentication failed" in message
    assert "check PG_URL (sources.orders.url)" in message
    assert pg.password not in message


# -- SQLite ------------------------------------------------------------------------------------------------------
def sqlite_db(path, rows):
    con = sqlite3.connect(path)
    con.execute("create table if not exists orders (id integer primary key, customer text, amount numeric, "
                "status text, updated_at text)")
    con.executemany("insert or replace into orders values (?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()


def row(i, status="new", day=1):
    return (i, f"c{i % 7}", round(i * 1.25, 2), status, f"2026-01-{day:02d} 10:{i // 60 % 60:02d}:{i % 60:02d}")


def sqlite_rows(path, where="true"):
    con = sqlite3.connect(path)
    try:
        return sorted(con.execute(f"select id, customer, amount, status, updated_at from orders where {where}"))
    finally:
        con.close()


def test_sqlite_initial_load_then_inserts_updates_and_deletes(tmp_path):
    root = project(tmp_path, "  orders:\n    path: data/shop.sqlite\n    table: orders\n    mode: merge\n"
                             "    keys: [id]\n    cursor: updated_at\n    schema:\n      amount: DECIMAL(10,2)\n"
                             "  orders_log:\n    format: sqlite\n    path: data/shop.sqlite\n"
                             "    query: select id, status, updated_at from orders\n    mode: append\n"
                             "    cursor: updated_at\n"
                             "  orders_all:\n    format: sqlite\n    path: data/shop.sqlite\n    table: orders\n"
                             "    mode: merge\n    keys: [id]\n    deletes: true\n")
    db = root / "data" / "shop.sqlite"
    db.parent.mkdir()
    sqlite_db(db, [row(i) for i in range(1, 201)])
    query = "select id, customer, cast(amount as double), status, updated_at from {t}"
    with connect(root) as lake:
        report = lake.ingest()
        assert [r.rows for r in report] == [200, 200, 200]
        assert sorted(lake.sql(query.format(t="bronze.orders")).fetchall()) == sqlite_rows(db)
        assert str(lake.table("bronze.orders").types[2]) == "DECIMAL(10,2)"
    sqlite_db(db, [row(i, "paid", day=2) for i in range(1, 21)] + [row(i, day=3) for i in range(201, 211)])
    con = sqlite3.connect(db)
    con.execute("delete from orders where id between 100 and 104")
    con.commit()
    con.close()
    with connect(root) as lake:
        _, logged, everything = lake.ingest()
        assert logged.rows == 30
        assert everything.write.deleted == 5
        assert sorted(lake.sql(query.format(t="bronze.orders_all")).fetchall()) == sqlite_rows(db)
        # The cursor merge has no deletes: the 5 removed rows stay, everything else matches.
        assert sorted(lake.sql(query.format(t="bronze.orders")).fetchall()) == \
            sorted(sqlite_rows(db) + [row(i) for i in range(100, 105)])
        assert lake.count("bronze.orders_log") == 230


def test_sqlite_mixed_value_types_fail_clearly_and_a_declared_type_reads_them(tmp_path):
    db = tmp_path / "mixed.sqlite"
    con = sqlite3.connect(db)
    con.execute("create table readings (id integer primary key, value)")
    con.executemany("insert into readings values (?, ?)", [(i, i) for i in range(1, 70_000)] + [(70_000, "n/a")])
    con.commit()
    con.close()
    plain = project(tmp_path, f"  readings:\n    path: {db}\n    table: readings\n    mode: replace\n", name="plain")
    with connect(plain) as lake, pytest.raises(IngestError, match=r"source readings: sqlite table readings: reading "
                                                                   r"its rows failed .*column 1 \(value\)") as caught:
        lake.ingest()
    assert "declare its type under sources.readings.schema" in str(caught.value)
    typed = project(tmp_path, f"  readings:\n    path: {db}\n    table: readings\n    mode: replace\n"
                              "    schema:\n      value: VARCHAR\n", name="typed")
    with connect(typed) as lake:
        lake.ingest()
        assert lake.sql("select count(*), count(try_cast(value as integer)) from bronze.readings").fetchall() == [
            (70_000, 69_999)]
    before = db.read_bytes()  # the file is only read
    with connect(typed) as lake:
        lake.ingest()
    assert db.read_bytes() == before


def test_a_missing_sqlite_file_is_named(tmp_path):
    root = project(tmp_path, "  orders:\n    path: nowhere.sqlite\n    table: orders\n    mode: replace\n")
    with connect(root) as lake, pytest.raises(IngestError, match=r"source orders: the SQLite database nowhere\.sqlite "
                                                                   r"does not exist"):
        lake.ingest()


def test_postgres_rows_are_read_without_bind_parameters(tmp_path, pg, monkeypatch):
    # The driver streams a result (COPY) only for a query without parameters; with one, libpq
    # holds the whole result in memory (see docs/performance.md). The mark goes in as a literal.
    from medallion_nb.ingest import database

    pg.execute(ORDERS.format(s=pg.schema))
    insert(pg, range(1, 21))
    root = pg_project(tmp_path, pg, extra="\n    cursor: updated_at")
    with connect(root) as lake:
        lake.ingest()
    insert(pg, range(21, 31), minute=5)
    seen = []
    execute = database._Database.execute

    def recording(self, sql, params=()):
        seen.append((sql, params))
        return execute(self, sql, params)

    monkeypatch.setattr(database._Database, "execute", recording)
    with connect(root) as lake:
        [result] = lake.ingest()
        assert result.rows == 11  # the 10 new rows and the one at the mark
        assert bronze_rows(lake) == source_rows(pg)
    reads = [(sql, params) for sql, params in seen if sql.startswith("SELECT *") and "LIMIT 0" not in sql]
    assert len(reads) == 1
    assert reads[0][1] == ()
    assert ">= CAST('2026-01-01 00:00:20+00' AS timestamp with time zone)" in reads[0][0]
