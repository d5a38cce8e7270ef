"""A deterministic generator of the demo's raw e-commerce data, at any volume.

The same code writes the small demo set committed in ``data/raw/`` and the
millions of orders the benchmarks use. It is plain DuckDB SQL over ``range()``
with an integer mixing function instead of a random generator, so a given
``(orders, days, seed)`` always produces byte-identical files. Money is computed
in whole cents and written as ``DECIMAL(12, 2)`` (``148.50``), never as a double,
so the output does not change with how a DuckDB release rounds or prints floats.

The data is dirty on purpose, the way real feeds are:

* about 0.5% of orders are delivered again in the next day's file;
* about 0.1% have a missing, zero or negative quantity;
* about 0.2% name a product id that does not exist, 0.1% an unknown customer;
* status, country and category values vary in case and surrounding spaces;
* a few order dates are malformed (``2026-02-30``, ``15/01/2026``);
* a later customers file changes the tier (and email) of some customers.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb

from medallion_nb.errors import UsageError

DEFAULT_START = date(2026, 1, 1)


@dataclass(frozen=True)
class SampleSpec:
    """How much data to write."""

    orders: int = 4_000
    days: int = 35
    customers: int | None = None
    products: int | None = None
    start: date = DEFAULT_START
    seed: int = 7

    @property
    def n_customers(self) -> int:
        return self.customers or min(100_000, max(200, self.orders // 100))

    @property
    def n_products(self) -> int:
        return self.products or min(5_000, max(40, self.orders // 2_000))


_MACROS = """
CREATE OR REPLACE MACRO mix1(a) AS ((xor(a, a >> 15) * 73244475) % 4294967296);
CREATE OR REPLACE MACRO mix2(b) AS (xor(b, b >> 13));
CREATE OR REPLACE MACRO mix(x, salt) AS (mix2(mix1(mix2(mix1((x * 2654435761 + salt * 40503) % 4294967296)))));
CREATE OR REPLACE MACRO pick(x, salt, n) AS (mix(x, salt) % n);
CREATE OR REPLACE MACRO money(cents) AS (CAST(CAST(cents AS DECIMAL(18, 0)) * 0.01 AS DECIMAL(12, 2)));
"""

_CATEGORIES = ["electronics", "home", "garden", "toys", "books", "sports", "beauty", "grocery"]
_TIERS = ["bronze", "silver", "gold"]
_COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "PL", "SE", "US"]
_STATUSES = ["placed", "shipped", "delivered", "delivered", "delivered", "cancelled"]
_FIRST = ["Ada", "Ben", "Chen", "Dana", "Emil", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kai", "Lena"]
_LAST = ["Meyer", "Ng", "Okafor", "Petit", "Quinn", "Rossi", "Silva", "Tan", "Ueda", "Vogel", "Weiss"]


def _list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v + "'" for v in values) + "]"


def _copy(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({sql}) TO '{path}' (HEADER, DELIMITER ',')")


def generate(out: str | Path, spec: SampleSpec | None = None,
             progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Write products, customers and daily order files under ``out``.

    Files: ``products.csv``, ``customers/customers_<date>.csv`` (an initial
    snapshot and a later update) and ``orders/orders_<date>.csv`` (one a day).
    Existing files of the same names are replaced; files are written to a
    temporary folder first and moved in place when complete. ``progress`` is
    told, in words, each step as it starts.

    Returns:
        How many rows went into each kind of file.

    Raises:
        UsageError: fewer than 1 order or 2 days.
    """
    spec = spec or SampleSpec()
    if spec.orders < 1 or spec.days < 2:
        raise UsageError("sample data needs at least 1 order and 2 days")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(_MACROS)
    s = spec.seed
    with tempfile.TemporaryDirectory(dir=out, prefix=".sample-") as tmp_name:
        tmp = Path(tmp_name)
        step = progress or (lambda text: None)
        step(f"products: {spec.n_products:,}")
        counts = {"products": _products(con, spec, s, tmp / "products.csv")}
        step(f"customers: {spec.n_customers:,}")
        counts.update(_customers(con, spec, s, tmp / "customers"))
        step(f"orders: {spec.orders:,} over {spec.days} daily files")
        counts.update(_orders(con, spec, s, tmp / "orders"))
        step(f"moving the files into {out}")
        for item in sorted(tmp.iterdir()):
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            item.rename(target)
    con.close()
    return counts


def _products(con: duckdb.DuckDBPyConnection, spec: SampleSpec, s: int, path: Path) -> int:
    # Money is whole cents (integers) until it is written as DECIMAL: no double is ever
    # rounded or printed, so the files do not depend on how a DuckDB release formats floats.
    con.execute(f"""
    CREATE OR REPLACE TEMP TABLE gen_products AS
    SELECT i, printf('P%05d', i + 1) AS product_id, cat, initcap_name, price_cents,
           (price_cents * (45 + pick(i, {s} + 3, 30)) + 50) // 100 AS cost_cents
    FROM (SELECT range AS i,
                 {_list(_CATEGORIES)}[pick(range, {s} + 1, {len(_CATEGORIES)}) + 1] AS cat,
                 {_list(["Basic", "Classic", "Deluxe", "Eco", "Pro", "Smart", "Ultra"])}
                     [pick(range, {s} + 4, 7) + 1] AS initcap_name,
                 250 + pick(range, {s} + 5, 39750) AS price_cents
          FROM range({spec.n_products}))""")
    sql = f"""
    SELECT product_id,
           initcap_name || ' ' || (i + 1) AS name,
           CASE pick(i, {s} + 2, 4)
                WHEN 0 THEN upper(cat) WHEN 1 THEN '  ' || cat || ' '
                WHEN 2 THEN upper(cat[1]) || cat[2:] ELSE cat END AS category,
           money(price_cents) AS unit_price,
           money(cost_cents) AS unit_cost
    FROM gen_products
    ORDER BY i"""
    _copy(con, sql, path)
    return spec.n_products


def _customers(con: duckdb.DuckDBPyConnection, spec: SampleSpec, s: int, folder: Path) -> dict[str, int]:
    n = spec.n_customers
    base = f"""
    SELECT i, printf('C%06d', i + 1) AS customer_id,
           {_list(_FIRST)}[pick(i, {s} + 11, {len(_FIRST)}) + 1] || ' ' ||
               {_list(_LAST)}[pick(i, {s} + 12, {len(_LAST)}) + 1] AS name,
           country_code,
           {_list(_TIERS)}[pick(i, {s} + 14, 3) + 1] AS tier,
           DATE '{spec.start}' - CAST(pick(i, {s} + 15, 900) AS INTEGER) AS signup_date
    FROM (SELECT range AS i, {_list(_COUNTRIES)}[pick(range, {s} + 13, {len(_COUNTRIES)}) + 1] AS country_code
          FROM range({n}))"""
    first = f"""
    SELECT customer_id, name,
           lower(replace(name, ' ', '.')) || i || '@example.com' AS email,
           CASE pick(i, {s} + 16, 5) WHEN 0 THEN lower(country_code) WHEN 1 THEN ' ' || country_code || ' '
                ELSE country_code END AS country,
           CASE pick(i, {s} + 17, 7) WHEN 0 THEN upper(tier) WHEN 1 THEN tier || ' ' ELSE tier END AS tier,
           signup_date,
           TIMESTAMP '{spec.start}' - INTERVAL 1 DAY AS updated_at
    FROM ({base}) ORDER BY i"""
    update_day = spec.start + timedelta(days=min(spec.days - 1, max(1, spec.days * 3 // 5)))
    # Customer 1 always moves up a tier, so the demo has a known example; ~2% of the others too.
    later = f"""
    SELECT customer_id, name,
           lower(replace(name, ' ', '.')) || i || '@example.org' AS email,
           country_code AS country,
           CASE tier WHEN 'bronze' THEN 'silver' ELSE 'gold' END AS tier,
           signup_date,
           TIMESTAMP '{update_day}' + INTERVAL 6 HOUR AS updated_at
    FROM ({base}) WHERE i = 0 OR pick(i, {s} + 18, 50) = 0 ORDER BY i"""
    _copy(con, first, folder / f"customers_{spec.start}.csv")
    _copy(con, later, folder / f"customers_{update_day}.csv")
    changed = con.execute(f"SELECT count(*) FROM ({later})").fetchall()[0][0]
    return {"customers": n, "customer_updates": changed}


def _orders(con: duckdb.DuckDBPyConnection, spec: SampleSpec, s: int, folder: Path) -> dict[str, int]:
    n, days = spec.orders, spec.days
    orders = f"""
    SELECT i,
           CAST(i * {days} // {n} AS INTEGER) AS day,
           printf('O%08d', i + 1) AS order_id,
           CASE WHEN pick(i, {s} + 21, 1000) = 0 THEN 'C999999'
                ELSE printf('C%06d', pick(i, {s} + 22, {spec.n_customers}) + 1) END AS customer_id,
           CASE WHEN pick(i, {s} + 23, 500) = 0 THEN 'P99999'
                ELSE printf('P%05d', pick(i, {s} + 24, {spec.n_products}) + 1) END AS product_id,
           CASE WHEN pick(i, {s} + 25, 1000) = 0
                THEN {_list(["", "0", "-1", "-3"])}[pick(i, {s} + 26, 4) + 1]
                ELSE CAST(1 + pick(i, {s} + 27, 4) * pick(i, {s} + 28, 2) AS VARCHAR) END AS quantity,
           pick(i, {s} + 29, 10) = 0 AS discounted,
           {_list(_STATUSES)}[pick(i, {s} + 30, {len(_STATUSES)}) + 1] AS status_clean,
           pick(i, {s} + 31, 7) AS status_style,
           pick(i, {s} + 32, 200) = 0 AS duplicated,
           CASE WHEN i = 0 OR pick(i, {s} + 33, 2500) = 0 THEN pick(i, {s} + 34, 2) + 1 ELSE 0 END AS bad_date,
           pick(i, {s} + 35, 86400) AS second_of_day
    FROM (SELECT range AS i FROM range({n}))"""
    con.execute(f"CREATE OR REPLACE TEMP TABLE gen_orders AS {orders}")
    rows = f"""
    SELECT o.day + CASE WHEN copy = 1 THEN 1 ELSE 0 END AS file_day,
           o.order_id,
           CASE o.bad_date
                WHEN 1 THEN strftime(DATE '{spec.start}' + o.day, '%d/%m/%Y')
                WHEN 2 THEN strftime(DATE '{spec.start}' + o.day, '%Y-02-30')
                ELSE strftime(TIMESTAMP '{spec.start}' + to_days(o.day) + to_seconds(o.second_of_day),
                              '%Y-%m-%dT%H:%M:%S') END AS order_ts,
           o.customer_id, o.product_id, o.quantity,
           money(CASE WHEN o.discounted THEN (coalesce(p.price_cents, 999) * 9 + 5) // 10
                      ELSE coalesce(p.price_cents, 999) END) AS unit_price,
           CASE o.status_style WHEN 0 THEN upper(o.status_clean) WHEN 1 THEN ' ' || o.status_clean
                WHEN 2 THEN upper(o.status_clean[1]) || o.status_clean[2:] ELSE o.status_clean END AS status,
           {_list(["web", "app", "store"])}[pick(o.i, {s} + 36, 3) + 1] AS channel
    FROM gen_orders o
    LEFT JOIN gen_products p ON p.product_id = o.product_id
    CROSS JOIN (SELECT 0 AS copy UNION ALL SELECT 1) c
    WHERE c.copy = 0 OR (o.duplicated AND o.day + 1 < {days})
    """
    staging = folder.parent / ".orders_by_day"
    con.execute(
        f"COPY (SELECT * EXCLUDE (file_day), file_day FROM ({rows}) ORDER BY file_day, order_id) "
        f"TO '{staging}' (FORMAT csv, HEADER, PARTITION_BY (file_day), WRITE_PARTITION_COLUMNS false)"
    )
    folder.mkdir(parents=True, exist_ok=True)
    for part in sorted(staging.glob("file_day=*")):
        day = spec.start + timedelta(days=int(part.name.split("=", 1)[1]))
        written = sorted(part.glob("*.csv"))
        target = folder / f"orders_{day}.csv"
        if len(written) == 1:
            written[0].rename(target)
        else:
            con.execute(f"COPY (SELECT * FROM read_csv({[str(w) for w in written]!r}, header=true, "
                        f"all_varchar=true) ORDER BY order_id) TO '{target}' (HEADER)")
    shutil.rmtree(staging)
    dupes = con.execute(f"SELECT count(*) FROM gen_orders WHERE duplicated AND day + 1 < {days}").fetchall()[0][0]
    return {"orders": n, "order_rows": n + dupes, "order_files": days}
