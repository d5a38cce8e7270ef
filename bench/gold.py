"""Compare the gold tables of the contenders: row counts and order-independent checksums.

Each contender leaves its three gold tables somewhere (Delta tables, Parquet
files); :func:`fingerprint` reads them with DuckDB, brings every column to one
canonical text form (dates as dates, counts as integers, money rounded to
cents, ratios to 4 decimals) and sums a 64-bit hash of each row, so two
contenders agree exactly when they produced the same rows.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

MONEY = "money"
RATIO = "ratio"
DATE = "date"
INT = "int"
TEXT = "text"

# table -> [(column, kind)]: the columns every contender must produce.
GOLD_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "revenue_by_category_month": [
        ("month", DATE), ("category", TEXT), ("orders", INT), ("units", INT),
        ("revenue", MONEY), ("cost", MONEY), ("margin", MONEY), ("margin_pct", RATIO)],
    "customer_lifetime_value": [
        ("customer_id", TEXT), ("name", TEXT), ("tier", TEXT), ("country", TEXT),
        ("first_order", DATE), ("last_order", DATE), ("orders", INT),
        ("revenue", MONEY), ("margin", MONEY), ("rank", INT)],
    "daily_sales": [
        ("order_date", DATE), ("orders", INT), ("units", INT), ("revenue", MONEY),
        ("margin", MONEY), ("customers", INT)],
}
GOLD_TABLES = tuple(GOLD_COLUMNS)


def _canonical(column: str, kind: str) -> str:
    c = f'"{column}"'
    if kind == MONEY:
        return f"CAST(round(CAST({c} AS DOUBLE), 2) AS DECIMAL(18,2))::VARCHAR"
    if kind == RATIO:
        return f"printf('%.4f', round(CAST({c} AS DOUBLE), 4))"
    if kind == DATE:
        return f"CAST({c} AS DATE)::VARCHAR"
    if kind == INT:
        return f"CAST({c} AS BIGINT)::VARCHAR"
    return f"CAST({c} AS VARCHAR)"


def parquet_scan(files: list[Path] | list[str]) -> str:
    """A DuckDB table expression over Parquet files."""
    quoted = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"read_parquet([{quoted}])"


def delta_scan(table_dir: Path) -> str:
    """A DuckDB table expression over the current version of a Delta table."""
    from deltalake import DeltaTable

    files = [u.removeprefix("file://") for u in DeltaTable(str(table_dir)).file_uris()]
    return parquet_scan(files)


def fingerprint(scans: dict[str, str]) -> dict[str, dict[str, object]]:
    """``{table: {"rows": n, "checksum": hex, "revenue": total}}`` for each gold table.

    ``scans`` maps each gold table name to a DuckDB table expression that reads it.
    """
    con = duckdb.connect()
    out: dict[str, dict[str, object]] = {}
    for table, columns in GOLD_COLUMNS.items():
        row = "concat_ws('|', " + ", ".join(
            f"coalesce({_canonical(c, kind)}, '∅')" for c, kind in columns) + ")"
        rows, checksum, revenue = con.sql(
            f"SELECT count(*), sum(hash({row})::HUGEINT) % 18446744073709551616, "
            f"round(sum(CAST(revenue AS DOUBLE)), 2) FROM {scans[table]}"
        ).fetchall()[0]
        out[table] = {"rows": int(rows), "checksum": f"{int(checksum or 0):016x}", "revenue": revenue}
    con.close()
    return out


def same(a: dict[str, dict[str, object]], b: dict[str, dict[str, object]]) -> list[str]:
    """The gold tables on which two fingerprints differ (empty: identical results)."""
    return [t for t in GOLD_TABLES if (a[t]["rows"], a[t]["checksum"]) != (b[t]["rows"], b[t]["checksum"])]
