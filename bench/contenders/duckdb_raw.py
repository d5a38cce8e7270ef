"""Raw DuckDB: the demo's business logic as plain SQL writing Parquet — the practical limit.

One process, one connection, each layer's tables written as Parquet files and
read back by the next layer, exactly the work the notebooks do minus the
notebooks, the table format and the library.

Usage: python bench/contenders/duckdb_raw.py PROJECT_DIR OUT_DIR [--memory-limit 1GB]
Prints one line ``BENCH_RESULT {"layers": {...}}`` at the end.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import duckdb
from layers import arguments, run_layers


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _csv(con: duckdb.DuckDBPyConnection, pattern: Path) -> str:
    """read_csv options for files that share the first file's header: every column text, nothing sniffed."""
    names = con.sql(f"SELECT * FROM read_csv({_q(pattern)}, all_varchar = true, header = true) LIMIT 0").columns
    columns = "{" + ", ".join(f"'{n}': 'VARCHAR'" for n in names) + "}"
    return (f"read_csv({_q(pattern)}, columns = {columns}, header = true, delim = ',', quote = '\"', "
            f"escape = '\"', auto_detect = false, filename = '__file')")


def bronze(con: duckdb.DuckDBPyConnection, raw: Path, out: Path) -> None:
    lineage = "now() AS _ingested_at, __file AS _source_file, 'bench' AS _run_id"
    con.execute(f"""COPY (SELECT * EXCLUDE (__file), {lineage}
                          FROM {_csv(con, raw / 'orders' / 'orders_*.csv')})
                    TO {_q(out / 'orders.parquet')}""")
    con.execute(f"""COPY (SELECT * EXCLUDE (__file), {lineage}
                          FROM {_csv(con, raw / 'customers' / 'customers_*.csv')}
                          QUALIFY row_number() OVER (PARTITION BY customer_id
                                                     ORDER BY updated_at DESC NULLS LAST, __file DESC) = 1)
                    TO {_q(out / 'customers.parquet')}""")
    con.execute(f"""COPY (SELECT * EXCLUDE (__file), {lineage}
                          FROM {_csv(con, raw / 'products.csv')})
                    TO {_q(out / 'products.parquet')}""")


def silver(con: duckdb.DuckDBPyConnection, bronze_dir: Path, out: Path) -> None:
    def src(name: str) -> str:
        return f"read_parquet({_q(bronze_dir / (name + '.parquet'))})"

    con.execute(f"""COPY (
        SELECT trim(product_id) AS product_id, trim(name) AS name, lower(trim(category)) AS category,
               CAST(unit_price AS DECIMAL(12,2)) AS unit_price, CAST(unit_cost AS DECIMAL(12,2)) AS unit_cost
        FROM {src('products')}
        QUALIFY row_number() OVER (PARTITION BY trim(product_id) ORDER BY _ingested_at DESC) = 1
    ) TO {_q(out / 'products.parquet')}""")
    con.execute(f"""COPY (
        SELECT trim(customer_id) AS customer_id, trim(name) AS name, lower(trim(email)) AS email,
               upper(trim(country)) AS country, lower(trim(tier)) AS tier,
               CAST(signup_date AS DATE) AS signup_date, CAST(updated_at AS TIMESTAMP) AS updated_at
        FROM {src('customers')}
    ) TO {_q(out / 'customers.parquet')}""")
    con.execute(f"""CREATE TEMP TABLE tagged AS
        WITH dup AS (SELECT order_id FROM {src('orders')} GROUP BY order_id HAVING count(*) > 1),
        latest AS (  -- the latest delivery of each order; only orders delivered twice are sorted
            SELECT * FROM {src('orders')} ANTI JOIN dup USING (order_id)
            UNION ALL
            (SELECT * FROM {src('orders')} SEMI JOIN dup USING (order_id)
             QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY _source_file DESC, _ingested_at DESC) = 1)
        ), typed AS (
            SELECT o.order_id,
                   try_strptime(o.order_ts, '%Y-%m-%dT%H:%M:%S') AS ordered_at,
                   trim(o.customer_id) AS customer_id, trim(o.product_id) AS product_id,
                   try_cast(o.quantity AS INTEGER) AS quantity,
                   try_cast(o.unit_price AS DECIMAL(12,2)) AS unit_price,
                   lower(trim(o.status)) AS status, lower(trim(o.channel)) AS channel,
                   o.order_ts AS raw_order_ts, o.quantity AS raw_quantity, o.unit_price AS raw_unit_price,
                   o._source_file,
                   p.name AS product_name, p.category, p.unit_cost,
                   c.name AS customer_name, c.tier, c.country
            FROM latest o
            LEFT JOIN read_parquet({_q(out / 'products.parquet')}) p ON p.product_id = trim(o.product_id)
            LEFT JOIN read_parquet({_q(out / 'customers.parquet')}) c ON c.customer_id = trim(o.customer_id)
        )
        SELECT *, nullif(concat_ws('; ',
                   CASE WHEN ordered_at IS NULL THEN 'order_ts is not a valid timestamp' END,
                   CASE WHEN quantity IS NULL OR quantity <= 0 THEN 'quantity missing or not positive' END,
                   CASE WHEN unit_price IS NULL OR unit_price < 0 THEN 'unit_price missing or negative' END,
                   CASE WHEN product_name IS NULL THEN 'unknown product_id' END,
                   CASE WHEN customer_name IS NULL THEN 'unknown customer_id' END), '') AS _quarantine_reason
        FROM typed""")
    con.execute(f"""COPY (
        SELECT order_id, raw_order_ts, customer_id, product_id, raw_quantity, raw_unit_price, status,
               _source_file, _quarantine_reason
        FROM tagged WHERE _quarantine_reason IS NOT NULL
    ) TO {_q(out / 'orders_quarantine.parquet')}""")
    con.execute(f"""COPY (
        SELECT order_id, ordered_at, CAST(ordered_at AS DATE) AS order_date, customer_id, product_id,
               quantity, unit_price, status, channel
        FROM tagged WHERE _quarantine_reason IS NULL
    ) TO {_q(out / 'orders.parquet')}""")
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
    con.execute("DROP TABLE tagged")


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
    config = {"memory_limit": args.memory_limit} if args.memory_limit else {}
    con = duckdb.connect(config=config)
    steps = [(layer, functools.partial(step, con)) for layer, step in (("bronze", bronze), ("silver", silver),
                                                                         ("gold", gold))]
    return run_layers(steps, args.project / "data" / "raw", args.out)


if __name__ == "__main__":
    sys.exit(main())
