"""End to end: `medallion-nb run` on a copy of the demo project, checked against plain SQL over the raw CSVs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import deltalake
import duckdb
import pyarrow as pa
import pytest

pytestmark = pytest.mark.notebook


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medallion_nb", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def read_delta(project: Path, layer: str, table: str) -> duckdb.DuckDBPyRelation:
    """Read a table with deltalake + DuckDB only: what a BI tool would do, no medallion_nb."""
    dt = deltalake.DeltaTable(str(project / "data" / "lake" / layer / table))
    con = duckdb.connect()
    if not dt.file_uris():  # an empty table (e.g. a source without rejects): its schema, no rows
        return con.from_arrow(pa.schema(dt.schema().to_arrow()).empty_table())
    return con.sql("SELECT * FROM read_parquet($files)", params={"files": dt.file_uris()})


def expected_gold(raw: Path) -> dict[str, list[tuple]]:
    """The demo's gold tables computed directly from the raw CSVs, independently of the notebooks."""
    con = duckdb.connect()
    csv = "all_varchar = true, header = true, delim = ','"
    con.execute(f"""
        CREATE TEMP TABLE products AS
        SELECT trim(product_id) AS product_id, lower(trim(category)) AS category,
               unit_cost::DECIMAL(12,2) AS unit_cost
        FROM read_csv('{raw}/products.csv', {csv});
        CREATE TEMP TABLE customers AS
        SELECT trim(customer_id) AS customer_id, trim(name) AS name, lower(trim(tier)) AS tier,
               upper(trim(country)) AS country
        FROM read_csv('{raw}/customers/*.csv', {csv})
        QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY updated_at DESC) = 1;
        CREATE TEMP TABLE lines AS
        WITH o AS (
            SELECT * FROM read_csv('{raw}/orders/*.csv', {csv}, filename = true)
            QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY filename DESC) = 1
        )
        SELECT o.order_id, trim(o.customer_id) AS customer_id,
               strptime(o.order_ts, '%Y-%m-%dT%H:%M:%S')::DATE AS day,
               o.quantity::INT AS qty, o.unit_price::DECIMAL(12,2) AS price, p.category, p.unit_cost
        FROM o JOIN products p ON p.product_id = trim(o.product_id)
               JOIN customers c ON c.customer_id = trim(o.customer_id)
        WHERE try_strptime(o.order_ts, '%Y-%m-%dT%H:%M:%S') IS NOT NULL
          AND try_cast(o.quantity AS INT) > 0 AND try_cast(o.unit_price AS DECIMAL(12,2)) >= 0
          AND lower(trim(o.status)) <> 'cancelled';
    """)
    return {
        "revenue_by_category_month": con.sql("""
            SELECT date_trunc('month', day)::DATE, category, count(*), sum(qty),
                   sum(qty * price), sum(qty * (price - unit_cost))
            FROM lines GROUP BY ALL ORDER BY 1, 2""").fetchall(),
        "daily_sales": con.sql("""
            SELECT day, count(*), sum(qty), sum(qty * price), count(DISTINCT customer_id)
            FROM lines GROUP BY ALL ORDER BY 1""").fetchall(),
        "customer_lifetime_value": con.sql("""
            SELECT c.customer_id, c.tier, count(l.order_id), coalesce(sum(l.qty * l.price), 0)
            FROM customers c LEFT JOIN lines l USING (customer_id) GROUP BY ALL ORDER BY 1""").fetchall(),
    }


def actual_gold(project: Path) -> dict[str, list[tuple]]:
    return {
        "revenue_by_category_month": read_delta(project, "gold", "revenue_by_category_month").project(
            "month, category, orders, units, revenue, margin").order("1, 2").fetchall(),
        "daily_sales": read_delta(project, "gold", "daily_sales").project(
            "order_date, orders, units, revenue, customers").order("1").fetchall(),
        "customer_lifetime_value": read_delta(project, "gold", "customer_lifetime_value").project(
            "customer_id, tier, orders, revenue").order("1").fetchall(),
    }


def snapshot(project: Path) -> dict[str, list[tuple]]:
    """Every table's full content, sorted, without the per-run lineage columns."""
    out = {}
    for layer in ("bronze", "silver", "gold"):
        for table in sorted(p.name for p in (project / "data" / "lake" / layer).iterdir()):
            rel = read_delta(project, layer, table)
            keep = [c for c in rel.columns if c not in ("_ingested_at", "_run_id")]
            out[f"{layer}.{table}"] = sorted(rel.project(", ".join(f'"{c}"' for c in keep)).fetchall(), key=repr)
    return out


def test_run_builds_the_lake_and_gold_matches_plain_sql(demo_project: Path):
    first = cli("run", "--project", str(demo_project), "--run-id", "first", cwd=demo_project)
    assert first.returncode == 0, first.stdout + first.stderr
    for layer in ("bronze", "silver", "gold"):
        assert layer in first.stdout
    assert "gold.daily_sales" in first.stdout  # the summary lists the tables written

    assert actual_gold(demo_project) == expected_gold(demo_project / "data" / "raw")
    record = json.loads((demo_project / "runs" / "first" / "run.json").read_text())
    assert [layer["status"] for layer in record["layers"]] == ["succeeded"] * 3
    for layer in ("bronze", "silver", "gold"):
        assert (demo_project / "runs" / "first" / layer / f"{layer}.ipynb").is_file()

    # Quarantine keeps what silver could not clean, with reasons; nothing disappears.
    quarantine = read_delta(demo_project, "silver", "orders_quarantine")
    reasons = {r[0] for r in quarantine.project("_quarantine_reason").fetchall()}
    assert {"unknown product_id", "quantity missing or not positive"} <= {p for r in reasons for p in r.split("; ")}
    distinct_orders = read_delta(demo_project, "bronze", "orders").project("count(DISTINCT order_id)").fetchall()
    clean = read_delta(demo_project, "silver", "orders").project("count(*)").fetchall()
    assert distinct_orders[0][0] == clean[0][0] + quarantine.project("count(*)").fetchall()[0][0]

    # Bronze accounts for every raw line: loaded into bronze.orders or kept in bronze.orders_rejects.
    raw = duckdb.connect()
    for path in sorted((demo_project / "data" / "raw" / "orders").glob("*.csv")):
        lines = sum(1 for line in path.read_text().splitlines() if line.strip()) - 1
        name = f"data/raw/orders/{path.name}"
        loaded = read_delta(demo_project, "bronze", "orders").filter(f"_source_file = '{name}'").count("*")
        rejected = read_delta(demo_project, "bronze", "orders_rejects").filter(f"_source_file = '{name}'").count("*")
        assert loaded.fetchall()[0][0] + rejected.fetchall()[0][0] == lines, name
    # ... and every order in the raw files is a clean order, in silver's quarantine, or a bronze reject.
    raw_ids = {r[0] for r in raw.sql(f"SELECT DISTINCT split_part(line, ',', 1) FROM read_csv("
                                     f"'{demo_project}/data/raw/orders/*.csv', columns={{'line': 'VARCHAR'}}, "
                                     "delim='\t', header=true, quote='')").fetchall()}
    rejected_ids = {r[0].split(",")[0] for r in read_delta(demo_project, "bronze", "orders_rejects")
                    .project("raw_line").fetchall()}
    assert rejected_ids, "the demo data has malformed order dates; bronze should reject them"
    clean_ids = {r[0] for r in read_delta(demo_project, "silver", "orders").project("order_id").fetchall()}
    held_ids = {r[0] for r in quarantine.project("order_id").fetchall()}
    assert raw_ids == clean_ids | held_ids | rejected_ids
    ingest = [e for layer in record["layers"] for nb in layer["notebooks"] for e in nb.get("events", [])
              if e.get("kind") == "ingest"]
    orders = next(e for e in ingest if e["source"] == "orders")
    assert len(orders["files"]) == 35
    assert sum(f["rejected"] for f in orders["files"]) == len(rejected_ids)
    assert all(f["loaded"] + f["rejected"] == f["lines"] for f in orders["files"])

    before = snapshot(demo_project)
    second = cli("run", "--project", str(demo_project), "--run-id", "second", cwd=demo_project)
    assert second.returncode == 0, second.stdout + second.stderr
    assert snapshot(demo_project) == before  # no file ingested twice, gold identical
    record = json.loads((demo_project / "runs" / "second" / "run.json").read_text())
    assert [layer["status"] for layer in record["layers"]] == ["up to date"] * 3  # nothing new: nothing run

    versions = {t: deltalake.DeltaTable(str(demo_project / "data/lake" / t)).version()
                for t in ("bronze/orders", "silver/order_lines", "gold/daily_sales")}
    # Forced, gold runs but finds nothing new in silver: it writes nothing. A full refresh rebuilds it.
    forced = cli("run", "--project", str(demo_project), "--layer", "gold", "--force", "--run-id", "gold-forced",
                 cwd=demo_project)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert {t: deltalake.DeltaTable(str(demo_project / "data/lake" / t)).version() for t in versions} == versions
    only_gold = cli("run", "--project", str(demo_project), "--layer", "gold", "-p", "full_refresh=true",
                    "--run-id", "gold-only", cwd=demo_project)
    assert only_gold.returncode == 0, only_gold.stdout + only_gold.stderr
    record = json.loads((demo_project / "runs" / "gold-only" / "run.json").read_text())
    assert [layer["name"] for layer in record["layers"] if layer["status"] == "succeeded"] == ["gold"]
    after = {t: deltalake.DeltaTable(str(demo_project / "data/lake" / t)).version() for t in versions}
    assert after["bronze/orders"] == versions["bronze/orders"]
    assert after["silver/order_lines"] == versions["silver/order_lines"]
    assert after["gold/daily_sales"] == versions["gold/daily_sales"] + 1


def test_a_backfill_run_date_builds_gold_as_of_that_day(demo_project: Path):
    result = cli("run", "--project", str(demo_project), "-p", "run_date=2026-01-10", cwd=demo_project)
    assert result.returncode == 0, result.stdout + result.stderr
    days = read_delta(demo_project, "gold", "daily_sales").project("min(order_date), max(order_date)").fetchall()
    assert str(days[0][0]) == "2026-01-01"
    assert str(days[0][1]) == "2026-01-10"


def test_rebuild_source_drops_the_rows_of_a_vanished_file(demo_project: Path):
    first = cli("run", "--project", str(demo_project), "--layer", "bronze", "--run-id", "first", cwd=demo_project)
    assert first.returncode == 0, first.stdout + first.stderr
    gone = demo_project / "data/raw/orders/orders_2026-01-02.csv"
    gone.unlink()
    second = cli("run", "--project", str(demo_project), "--layer", "bronze", "--run-id", "second", "--force",
                 cwd=demo_project)
    assert second.returncode == 0, second.stdout + second.stderr
    record = json.loads((demo_project / "runs" / "second" / "run.json").read_text())
    (orders,) = [e for nb in record["layers"][0]["notebooks"] for e in nb.get("events", [])
                 if e.get("kind") == "ingest" and e["source"] == "orders"]
    assert "data/raw/orders/orders_2026-01-02.csv" in orders["warnings"][0]
    files = read_delta(demo_project, "bronze", "orders").project("_source_file").distinct().fetchall()
    assert ("data/raw/orders/orders_2026-01-02.csv",) in files

    bad = cli("run", "--project", str(demo_project), "--rebuild-source", "refunds", cwd=demo_project)
    assert bad.returncode == 2
    assert "no source 'refunds' (sources are: orders, customers, products)" in bad.stderr

    third = cli("run", "--project", str(demo_project), "--layer", "bronze", "--rebuild-source", "orders",
                "--run-id", "third", cwd=demo_project)
    assert third.returncode == 0, third.stdout + third.stderr
    files = read_delta(demo_project, "bronze", "orders").project("_source_file").distinct().fetchall()
    assert len(files) == 34
    assert ("data/raw/orders/orders_2026-01-02.csv",) not in files
