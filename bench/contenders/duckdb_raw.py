"""Raw DuckDB: the demo's business logic as plain SQL writing Parquet — the practical limit.

One process, one connection, each layer's tables written as Parquet files and
read back by the next layer: exactly the work the notebooks do minus the
notebooks, the table format, the checks and the library. It is written as well
as plain DuckDB allows, so the ratios measure the toolkit, not a weak reference:

- bronze reads the CSVs with a fixed dialect and the declared types and null
  markers (as the project's sources declare them); rows that do not parse go to
  DuckDB's reject tables, which are written as the rejects file;
- every query streams from its source to DuckDB's Parquet writer; nothing holds
  all the rows. The latest delivery of each order sorts only the orders that
  were delivered twice (their key hashes are the one small temporary table), and
  the quarantine is a second streaming pass over the same joins with the opposite
  filter, writing the few bad rows;
- ``preserve_insertion_order`` is off (no output here depends on the order of an
  unordered scan), which lets DuckDB write without buffering rows to keep order.

Usage: python bench/contenders/duckdb_raw.py PROJECT_DIR OUT_DIR [--memory-limit 1GB]
Prints one line ``BENCH_RESULT {"layers": {...}}`` at the end.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import duckdb
from layers import arguments, run_layers

# The types and null markers the demo's medallion.yaml declares for its sources.
ORDERS = {"order_id": "VARCHAR", "order_ts": "TIMESTAMP", "customer_id": "VARCHAR", "product_id": "VARCHAR",
          "quantity": "INTEGER", "unit_price": "DECIMAL(12,2)", "status": "VARCHAR", "channel": "VARCHAR"}
CUSTOMERS = {"customer_id": "VARCHAR", "name": "VARCHAR", "email": "VARCHAR", "country": "VARCHAR",
             "tier": "VARCHAR", "signup_date": "DATE", "updated_at": "TIMESTAMP"}
PRODUCTS = {"product_id": "VARCHAR", "name": "VARCHAR", "category": "VARCHAR", "unit_price": "DECIMAL(12,2)",
            "unit_cost": "DECIMAL(12,2)"}
LINEAGE = "now() AS _ingested_at, __file AS _source_file, 'bench' AS _run_id"


def _q(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _csv(pattern: Path, types: dict[str, str]) -> str:
    """read_csv with a fixed dialect and declared types: nothing sniffed, bad rows to the reject tables."""
    columns = "{" + ", ".join(f"'{n}': '{t}'" for n, t in types.items()) + "}"
    return (f"read_csv({_q(pattern)}, columns = {columns}, header = true, delim = ',', quote = '\"', "
            f"escape = '\"', auto_detect = false, nullstr = ['', 'NA'], store_rejects = true, "
            f"filename = '__file')")


def bronze(con: duckdb.DuckDBPyConnection, raw: Path, out: Path) -> None:
    con.execute(f"COPY (SELECT * EXCLUDE (__file), {LINEAGE} FROM {_csv(raw / 'orders' / 'orders_*.csv', ORDERS)}) "
                f"TO {_q(out / 'orders.parquet')}")
    con.execute(f"""COPY (SELECT e.line, e.column_name, e.error_type, e.csv_line, s.file_path
                          FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id))
                    TO {_q(out / 'orders_rejects.parquet')}""")
    con.execute(f"""COPY (SELECT * EXCLUDE (__file), {LINEAGE}
                          FROM {_csv(raw / 'customers' / 'customers_*.csv', CUSTOMERS)}
                          QUALIFY row_number() OVER (PARTITION BY customer_id
                                                     ORDER BY updated_at DESC NULLS LAST, __file DESC) = 1)
                    TO {_q(out / 'customers.parquet')}""")
    con.execute(f"COPY (SELECT * EXCLUDE (__file), {LINEAGE} FROM {_csv(raw / 'products.csv', PRODUCTS)}) "
                f"TO {_q(out / 'products.parquet')}")


def silver(con: duckdb.DuckDBPyConnection, bronze_dir: Path, out: Path) -> None:
    def src(name: str) -> str:
        return f"read_parquet({_q(bronze_dir / (name + '.parquet'))})"

    con.execute(f"""COPY (
        SELECT trim(product_id) AS product_id, trim(name) AS name, lower(trim(category)) AS category,
               unit_price, unit_cost
        FROM {src('products')}
        QUALIFY row_number() OVER (PARTITION BY trim(product_id) ORDER BY _ingested_at DESC) = 1
    ) TO {_q(out / 'products.parquet')}""")
    con.execute(f"""COPY (
        SELECT trim(customer_id) AS customer_id, trim(name) AS name, lower(trim(email)) AS email,
               upper(trim(country)) AS country, lower(trim(tier)) AS tier, signup_date, updated_at
        FROM {src('customers')}
    ) TO {_q(out / 'customers.parquet')}""")
    # The hashes of the order ids delivered more than once: a small table (reads one column).
    con.execute(f"CREATE TEMP TABLE dup AS SELECT hash(order_id) AS h FROM {src('orders')} "
                "GROUP BY 1 HAVING count(*) > 1")
    con.execute(f"""CREATE TEMP VIEW tagged AS
        WITH latest AS (  -- the latest delivery of each order; only orders delivered twice are sorted
            SELECT * FROM {src('orders')} o ANTI JOIN dup ON hash(o.order_id) = dup.h
            UNION ALL
            (SELECT * FROM {src('orders')} o SEMI JOIN dup ON hash(o.order_id) = dup.h
             QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY _source_file DESC, _ingested_at DESC) = 1)
        ), joined AS (
            SELECT o.order_id, o.order_ts AS ordered_at,
                   trim(o.customer_id) AS customer_id, trim(o.product_id) AS product_id,
                   o.quantity, o.unit_price,
                   lower(trim(o.status)) AS status, lower(trim(o.channel)) AS channel, o._source_file,
                   p.name AS product_name, p.category, p.unit_cost,
                   c.name AS customer_name, c.tier, c.country
            FROM latest o
            LEFT JOIN read_parquet({_q(out / 'products.parquet')}) p ON p.product_id = trim(o.product_id)
            LEFT JOIN read_parquet({_q(out / 'customers.parquet')}) c ON c.customer_id = trim(o.customer_id)
        )
        SELECT *, nullif(concat_ws('; ',
                   CASE WHEN ordered_at IS NULL THEN 'order_ts missing' END,
                   CASE WHEN quantity IS NULL OR quantity <= 0 THEN 'quantity missing or not positive' END,
                   CASE WHEN unit_price IS NULL OR unit_price < 0 THEN 'unit_price missing or negative' END,
                   CASE WHEN product_name IS NULL THEN 'unknown product_id' END,
                   CASE WHEN customer_name IS NULL THEN 'unknown customer_id' END), '') AS _quarantine_reason
        FROM joined""")
    con.execute(f"""COPY (
        SELECT order_id, ordered_at, CAST(ordered_at AS DATE) AS order_date,
               CAST(date_trunc('month', ordered_at) AS DATE) AS order_month,
               customer_id, customer_name, tier, country, product_id, product_name, category, channel, status,
               quantity, unit_price, unit_cost,
               CAST(quantity * unit_price AS DECIMAL(18,2)) AS revenue,
               CAST(quantity * unit_cost AS DECIMAL(18,2)) AS cost,
               CAST(quantity * (unit_price - unit_cost) AS DECIMAL(18,2)) AS margin
        FROM tagged WHERE _quarantine_reason IS NULL
    ) TO {_q(out / 'order_lines.parquet')}""")
    con.execute(f"""COPY (
        SELECT order_id, ordered_at, customer_id, product_id, quantity, unit_price, status,
               _source_file, _quarantine_reason
        FROM tagged WHERE _quarantine_reason IS NOT NULL
    ) TO {_q(out / 'orders_quarantine.parquet')}""")
    con.execute(f"""COPY (
        SELECT order_id, ordered_at, order_date, customer_id, product_id, quantity, unit_price, status, channel
        FROM read_parquet({_q(out / 'order_lines.parquet')})
    ) TO {_q(out / 'orders.parquet')}""")
    con.execute("DROP VIEW tagged")
    con.execute("DROP TABLE dup")


def gold(con: duckdb.DuckDBPyConnection, silver_dir: Path, out: Path) -> None:
    lines = f"read_parquet({_q(silver_dir / 'order_lines.parquet')})"
    con.execute(f"""COPY (
        SELECT order_month AS month, category, count(*) AS orders, sum(quantity) AS units,
               sum(revenue) AS revenue, sum(cost) AS cost, sum(margin) AS margin,
               round(sum(margin) / nullif(sum(revenue), 0), 4) AS margin_pct
        FROM {lines} WHERE status <> 'cancelled'
        GROUP BY order_month, category ORDER BY month, category
    ) TO {_q(out / 'revenue_by_category_month.parquet')}""")
    con.execute(f"""COPY (
        SELECT c.customer_id, c.name, c.tier, c.country,
               min(l.order_date) AS first_order, max(l.order_date) AS last_order,
               count(l.order_id) AS orders, coalesce(sum(l.revenue), 0) AS revenue,
               coalesce(sum(l.margin), 0) AS margin,
               dense_rank() OVER (ORDER BY coalesce(sum(l.revenue), 0) DESC) AS rank
        FROM read_parquet({_q(silver_dir / 'customers.parquet')}) c
        LEFT JOIN {lines} l ON l.customer_id = c.customer_id AND l.status <> 'cancelled'
        GROUP BY c.customer_id, c.name, c.tier, c.country
        ORDER BY rank, customer_id
    ) TO {_q(out / 'customer_lifetime_value.parquet')}""")
    con.execute(f"""COPY (
        SELECT order_date, count(*) AS orders, sum(quantity) AS units, sum(revenue) AS revenue,
               sum(margin) AS margin, count(DISTINCT customer_id) AS customers
        FROM {lines} WHERE status <> 'cancelled'
        GROUP BY order_date ORDER BY order_date
    ) TO {_q(out / 'daily_sales.parquet')}""")


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, argv, memory_limit=True)
    config = {"preserve_insertion_order": False}
    if args.memory_limit:
        config["memory_limit"] = args.memory_limit
    con = duckdb.connect(config=config)
    steps = [(layer, functools.partial(step, con)) for layer, step in (("bronze", bronze), ("silver", silver),
                                                                         ("gold", gold))]
    return run_layers(steps, args.project / "data" / "raw", args.out)


if __name__ == "__main__":
    sys.exit(main())
