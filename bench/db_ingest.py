"""Database sources: time and peak memory of loading a PostgreSQL (or SQLite) table into bronze.

Starts a private PostgreSQL server (the tests' ``tests/servers.py``, Debian's
``postgresql`` package), fills a table of order lines (10 columns: integers, a
``numeric(12,2)``, text, a timestamp, a date, a boolean, a double) on the server with
``generate_series``, and loads it with ``lake.ingest()`` in a fresh process, measured
with :func:`bench.measure.run_measured` (wall time, CPU, peak RSS of the process).
Each size also gets an incremental run after 1% of the rows were updated and 1% added
(``mode: merge``, ``cursor: updated_at``). Loading several sizes shows whether memory
grows with the table: rows stream from the driver to DuckDB's Parquet writer in
batches, so it should not.

    python bench/db_ingest.py --rows 1000000 --rows 4000000 [--sqlite]

SQLite: the same rows in a file, loaded with ``format: sqlite``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench.measure import RESULT_PREFIX, load_average, run_measured  # noqa: E402

COLUMNS = """id bigint primary key, order_id bigint not null, customer_id integer not null,
             amount numeric(12,2) not null, product text not null, note text, updated_at timestamptz not null,
             order_date date not null, paid boolean not null, weight double precision"""
FILL = """insert into order_lines
          select i, i / 3, (i * 7919) % 100000, round((i % 10000) * 1.37, 2), 'product-' || (i % 5000),
                 case when i % 10 = 0 then null else 'note number ' || i end,
                 {base} + (i || ' seconds')::interval,
                 date '2026-01-01' + (i % 365)::int, i % 2 = 0, i * 0.001
          from generate_series({start}::bigint, {stop}) i"""
FIRST = "timestamptz '2026-01-01 00:00:00+00'"
# Changes get cursor values past every earlier one, as an updated_at column does.
LATER = "(select max(updated_at) + interval '1 day' from order_lines)"
CHANGE = f"""update order_lines set amount = amount + 1, updated_at = {LATER} where id % 100 = 0"""


def config(fmt: str) -> str:
    where = "url: ${BENCH_DB_URL}" if fmt == "postgres" else "path: shop.sqlite"
    return (f"name: bench\nlayers:\n  - {{name: bronze, notebook: nb.ipynb}}\nsources:\n  order_lines:\n"
            f"    format: {fmt}\n    {where}\n    table: order_lines\n    mode: merge\n    keys: [id]\n"
            "    cursor: updated_at\n")


def child(project: str) -> None:
    """Load the source once, in this process; print the result line."""
    import resource

    import medallion_nb as mnb

    start = time.perf_counter()
    with mnb.connect(project) as lake:
        report = lake.ingest()
        rows = lake.count("bronze.order_lines")
    print(RESULT_PREFIX + json.dumps({
        "loaded": report.rows, "rows_in_table": rows, "seconds": time.perf_counter() - start,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }), flush=True)


def fill_sqlite(path: Path, pg) -> None:
    """The same rows in SQLite, copied from PostgreSQL in chunks."""
    out = sqlite3.connect(path)
    out.execute("create table order_lines (id integer primary key, order_id integer, customer_id integer, "
                "amount numeric, product text, note text, updated_at text, order_date text, paid integer, "
                "weight real)")
    with pg.connect() as con, con.cursor() as cur:
        cur.execute("select id, order_id, customer_id, amount::text, product, note, "
                    "to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'), order_date::text, "
                    "paid::int, weight from order_lines")
        for batch in cur.fetch_record_batch():
            out.executemany("insert into order_lines values (?,?,?,?,?,?,?,?,?,?)", zip(*batch.to_pydict().values(),
                                                                                       strict=True))
    out.commit()
    out.close()


def measure(project: Path, env: dict[str, str]) -> dict:
    m = run_measured([sys.executable, __file__, "--child", str(project)], env=env, timeout=1800)
    if not m.ok:
        raise SystemExit(f"load failed:\n{m.output_tail}")
    return {"wall_s": round(m.wall_s, 2), "cpu_s": round(m.cpu_s, 2), "peak_rss_mb": round(m.peak_rss_mb),
            **m.result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="table sizes (default: 1,000,000)")
    parser.add_argument("--sqlite", action="store_true", help="also load the same rows from a SQLite file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    from servers import PostgresServer

    results = []
    work = Path(tempfile.mkdtemp(prefix="medallion-bench-db-"))
    pg = PostgresServer().start()
    try:
        env = {"BENCH_DB_URL": pg.url}
        pg.execute(f"create table order_lines ({COLUMNS})")
        have = 0
        for rows in sorted(args.rows or [1_000_000]):
            pg.execute(FILL.format(start=have + 1, stop=rows, base=FIRST), "vacuum analyze order_lines")
            have = rows
            size_mb = pg.query("select pg_total_relation_size('order_lines') / 1048576")[0][0]
            formats = ["postgres", "sqlite"] if args.sqlite else ["postgres"]
            for fmt in formats:
                project = work / f"{fmt}-{rows}"
                shutil.rmtree(project, ignore_errors=True)
                project.mkdir()
                (project / "medallion.yaml").write_text(config(fmt), encoding="utf-8")
                (project / "nb.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, '
                                                  '"nbformat_minor": 5}', encoding="utf-8")
                if fmt == "sqlite":
                    fill_sqlite(project / "shop.sqlite", pg)
                first = measure(project, env)
                print(f"{fmt} {rows:,} rows ({size_mb} MB in PostgreSQL): initial load {first}", flush=True)
                results.append({"format": fmt, "rows": rows, "table_mb": size_mb, "run": "initial", **first})
            # 1% updated, 1% new: an incremental merge by cursor (PostgreSQL).
            pg.execute(CHANGE, FILL.format(start=have + 1, stop=have + rows // 100, base=LATER))
            have += rows // 100
            second = measure(work / f"postgres-{rows}", env)
            expected = pg.query("select count(*) from order_lines")[0][0]
            if second["rows_in_table"] != expected:
                raise SystemExit(f"bronze has {second['rows_in_table']:,} rows, the source {expected:,}")
            print(f"postgres {rows:,} rows: incremental (1% updated, 1% new) {second}", flush=True)
            results.append({"format": "postgres", "rows": rows, "run": "incremental", **second})
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"load_average": load_average(), "results": results}, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
