"""Polars: the demo's logic as a Polars user writes it (lazy frames, streaming sinks to Parquet).

Usage: python bench/contenders/polars_nb.py PROJECT_DIR OUT_DIR
Prints one line ``BENCH_RESULT {"layers": {...}}`` at the end.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import polars as pl
from layers import arguments, run_layers

MONEY = pl.Decimal(12, 2)
TOTAL = pl.Decimal(18, 2)


def _scan_csv(pattern: Path, root: Path) -> pl.LazyFrame:
    frame = pl.scan_csv(pattern, infer_schema=False, include_file_paths="_source_file")
    return frame.with_columns(
        pl.col("_source_file").str.strip_prefix(str(root) + "/"),
        pl.lit(dt.datetime.now(dt.UTC)).alias("_ingested_at"),
        pl.lit("bench").alias("_run_id"),
    )


def bronze(root: Path, out: Path) -> None:
    raw = root / "data" / "raw"
    _scan_csv(raw / "orders" / "orders_*.csv", root).sink_parquet(out / "orders.parquet")
    customers = (_scan_csv(raw / "customers" / "customers_*.csv", root)
                 .sort(["updated_at", "_source_file"], nulls_last=False)
                 .unique("customer_id", keep="last"))
    customers.sink_parquet(out / "customers.parquet")
    _scan_csv(raw / "products.csv", root).sink_parquet(out / "products.parquet")


def silver(bronze_dir: Path, out: Path) -> None:
    products = (pl.scan_parquet(bronze_dir / "products.parquet")
                .with_columns(pl.col("product_id").str.strip_chars())
                .sort("_ingested_at").unique("product_id", keep="last")
                .select("product_id", pl.col("name").str.strip_chars(),
                        pl.col("category").str.strip_chars().str.to_lowercase(),
                        pl.col("unit_price").cast(MONEY), pl.col("unit_cost").cast(MONEY)))
    products.sink_parquet(out / "products.parquet")
    customers = pl.scan_parquet(bronze_dir / "customers.parquet").select(
        pl.col("customer_id").str.strip_chars(), pl.col("name").str.strip_chars(),
        pl.col("email").str.strip_chars().str.to_lowercase(),
        pl.col("country").str.strip_chars().str.to_uppercase(),
        pl.col("tier").str.strip_chars().str.to_lowercase(),
        pl.col("signup_date").str.to_date(), pl.col("updated_at").str.to_datetime())
    customers.sink_parquet(out / "customers.parquet")

    orders = (pl.scan_parquet(bronze_dir / "orders.parquet")
              .sort(["order_id", "_source_file", "_ingested_at"])
              .unique("order_id", keep="last")
              .select(
                  "order_id",
                  pl.col("order_ts").str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False).alias("ordered_at"),
                  pl.col("customer_id").str.strip_chars(), pl.col("product_id").str.strip_chars(),
                  pl.col("quantity").cast(pl.Int32, strict=False),
                  pl.col("unit_price").cast(MONEY, strict=False),
                  pl.col("status").str.strip_chars().str.to_lowercase(),
                  pl.col("channel").str.strip_chars().str.to_lowercase(),
                  pl.col("order_ts").alias("raw_order_ts"), pl.col("quantity").alias("raw_quantity"),
                  pl.col("unit_price").alias("raw_unit_price"), "_source_file")
              .join(pl.scan_parquet(out / "products.parquet")
                    .select("product_id", pl.col("name").alias("product_name"), "category", "unit_cost"),
                    on="product_id", how="left")
              .join(pl.scan_parquet(out / "customers.parquet")
                    .select("customer_id", pl.col("name").alias("customer_name"), "tier", "country"),
                    on="customer_id", how="left"))
    rules = {
        "order_ts is not a valid timestamp": pl.col("ordered_at").is_null(),
        "quantity missing or not positive": pl.col("quantity").is_null() | (pl.col("quantity") <= 0),
        "unit_price missing or negative": pl.col("unit_price").is_null() | (pl.col("unit_price") < 0),
        "unknown product_id": pl.col("product_name").is_null(),
        "unknown customer_id": pl.col("customer_name").is_null(),
    }
    reason = pl.concat_str([pl.when(cond.fill_null(False)).then(pl.lit(text)) for text, cond in rules.items()],
                           separator="; ", ignore_nulls=True)
    tagged = orders.with_columns(pl.when(reason != "").then(reason).alias("_quarantine_reason")).collect()

    tagged.filter(pl.col("_quarantine_reason").is_not_null()).select(
        "order_id", "raw_order_ts", "customer_id", "product_id", "raw_quantity", "raw_unit_price", "status",
        "_source_file", "_quarantine_reason").write_parquet(out / "orders_quarantine.parquet")
    good = tagged.filter(pl.col("_quarantine_reason").is_null()).with_columns(
        pl.col("ordered_at").dt.date().alias("order_date"))
    del tagged
    good.select("order_id", "ordered_at", "order_date", "customer_id", "product_id", "quantity", "unit_price",
                "status", "channel").write_parquet(out / "orders.parquet")
    good.select(
        "order_id", "ordered_at", "order_date", pl.col("ordered_at").dt.truncate("1mo").dt.date().alias("order_month"),
        "customer_id", "customer_name", "tier", "country", "product_id", "product_name", "category", "channel",
        "status", "quantity", "unit_price", "unit_cost",
        (pl.col("quantity") * pl.col("unit_price")).cast(TOTAL).alias("revenue"),
        (pl.col("quantity") * pl.col("unit_cost")).cast(TOTAL).alias("cost"),
        (pl.col("quantity") * (pl.col("unit_price") - pl.col("unit_cost"))).cast(TOTAL).alias("margin"),
    ).write_parquet(out / "order_lines.parquet")


def gold(silver_dir: Path, out: Path) -> None:
    lines = pl.scan_parquet(silver_dir / "order_lines.parquet").filter(pl.col("status") != "cancelled")
    (lines.group_by(pl.col("order_month").alias("month"), "category")
     .agg(pl.len().alias("orders"), pl.col("quantity").sum().alias("units"), pl.col("revenue").sum(),
          pl.col("cost").sum(), pl.col("margin").sum())
     .with_columns((pl.col("margin").cast(pl.Float64) / pl.col("revenue").cast(pl.Float64)).round(4)
                   .alias("margin_pct"))
     .sort("month", "category")
     .sink_parquet(out / "revenue_by_category_month.parquet"))
    per_customer = lines.group_by("customer_id").agg(
        pl.col("order_date").min().alias("first_order"), pl.col("order_date").max().alias("last_order"),
        pl.col("order_id").count().alias("orders"), pl.col("revenue").sum(), pl.col("margin").sum())
    (pl.scan_parquet(silver_dir / "customers.parquet").select("customer_id", "name", "tier", "country")
     .join(per_customer, on="customer_id", how="left")
     .with_columns(pl.col("orders").fill_null(0), pl.col("revenue").fill_null(0), pl.col("margin").fill_null(0))
     .with_columns(pl.col("revenue").rank("dense", descending=True).alias("rank"))
     .sort("rank", "customer_id")
     .sink_parquet(out / "customer_lifetime_value.parquet"))
    (lines.group_by("order_date")
     .agg(pl.len().alias("orders"), pl.col("quantity").sum().alias("units"), pl.col("revenue").sum(),
          pl.col("margin").sum(), pl.col("customer_id").n_unique().alias("customers"))
     .sort("order_date")
     .sink_parquet(out / "daily_sales.parquet"))


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, argv)
    return run_layers([("bronze", bronze), ("silver", silver), ("gold", gold)], args.project.resolve(), args.out)


if __name__ == "__main__":
    sys.exit(main())
