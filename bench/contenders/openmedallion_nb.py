"""openmedallion (dlt + Polars + Hamilton, from PyPI): the demo's logic in its YAML config and Polars UDFs.

Runs in its own virtualenv (bench/.venv-openmedallion, see bench/README.md).
Writes an openmedallion project (main/bronze/silver/gold YAML and UDF files)
into OUT_DIR/project and runs its three layer engines — the same
``BronzeLoader``, ``SilverTransformer`` and ``GoldAggregator`` that its
``medallion run`` Hamilton DAG calls — timing each.

What it can express and what needed UDFs:
- bronze: its ``local_files`` source (Polars ``read_csv``, types inferred); it
  has no file-lineage column, so the dedupe keeps the last row read (files are
  read in name order, so the latest delivery — duplicate deliveries are exact copies);
- silver: built-in ``normalize``/``deduplicate``/``cast`` transforms, UDFs for
  parsing, the joins and the quarantine (derived tables);
- gold: daily_sales is declarative (filter UDF + group_by metrics); the two
  others need a pre-aggregation UDF (margin_pct, the customer join and the dense rank).

Usage: bench/.venv-openmedallion/bin/python bench/contenders/openmedallion_nb.py PROJECT_DIR OUT_DIR
Prints one line ``BENCH_RESULT {"layers": {...}}`` at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import yaml

SILVER_UDF = '''
import polars as pl
from pathlib import Path

RULES = {
    "order_ts is not a valid timestamp": pl.col("ordered_at").is_null(),
    "quantity missing or not positive": pl.col("quantity").is_null() | (pl.col("quantity") <= 0),
    "unit_price missing or negative": pl.col("unit_price").is_null() | (pl.col("unit_price") < 0),
    "unknown product_id": pl.col("product_name").is_null(),
    "unknown customer_id": pl.col("customer_name").is_null(),
}


def latest_customer(df: pl.DataFrame) -> pl.DataFrame:
    return (df.sort("updated_at").unique("customer_id", keep="last")
              .with_columns(pl.col("signup_date").str.to_date(), pl.col("updated_at").str.to_datetime()))


def type_orders(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(
        "order_id",
        pl.col("order_ts").str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False).alias("ordered_at"),
        "customer_id", "product_id",
        pl.col("quantity").cast(pl.Int64, strict=False),
        pl.col("unit_price").cast(pl.Float64, strict=False).round(2),
        "status", "channel",
        pl.col("order_ts").alias("raw_order_ts"),
        pl.col("quantity").cast(pl.String).alias("raw_quantity"),
        pl.col("unit_price").cast(pl.String).alias("raw_unit_price"))


def _tagged(silver_dir) -> pl.DataFrame:
    silver = Path(silver_dir)
    products = pl.read_parquet(silver / "products.parquet").select(
        "product_id", pl.col("name").alias("product_name"), "category", "unit_cost")
    customers = pl.read_parquet(silver / "customers.parquet").select(
        "customer_id", pl.col("name").alias("customer_name"), "tier", "country")
    orders = (pl.read_parquet(silver / "orders_typed.parquet")
              .join(products, on="product_id", how="left").join(customers, on="customer_id", how="left"))
    reason = pl.concat_str([pl.when(c.fill_null(False)).then(pl.lit(t)) for t, c in RULES.items()],
                           separator="; ", ignore_nulls=True)
    return orders.with_columns(pl.when(reason != "").then(reason).alias("_quarantine_reason"))


def quarantine(silver_dir) -> pl.DataFrame:
    return _tagged(silver_dir).filter(pl.col("_quarantine_reason").is_not_null()).select(
        "order_id", "raw_order_ts", "customer_id", "product_id", "raw_quantity", "raw_unit_price", "status",
        "_quarantine_reason")


def order_lines(silver_dir) -> pl.DataFrame:
    good = _tagged(silver_dir).filter(pl.col("_quarantine_reason").is_null())
    return good.select(
        "order_id", "ordered_at", pl.col("ordered_at").dt.date().alias("order_date"),
        pl.col("ordered_at").dt.truncate("1mo").dt.date().alias("order_month"),
        "customer_id", "customer_name", "tier", "country", "product_id", "product_name", "category",
        "channel", "status", "quantity", "unit_price", "unit_cost",
        (pl.col("quantity") * pl.col("unit_price")).round(2).alias("revenue"),
        (pl.col("quantity") * pl.col("unit_cost")).round(2).alias("cost"),
        (pl.col("quantity") * (pl.col("unit_price") - pl.col("unit_cost"))).round(2).alias("margin"))


def clean_orders(silver_dir) -> pl.DataFrame:
    return pl.read_parquet(Path(silver_dir) / "order_lines.parquet").select(
        "order_id", "ordered_at", "order_date", "customer_id", "product_id", "quantity", "unit_price",
        "status", "channel")
'''

GOLD_UDF = '''
import polars as pl
from pathlib import Path


def not_cancelled(df: pl.DataFrame, silver_dir) -> pl.DataFrame:
    return df.filter(pl.col("status") != "cancelled")


def by_category_month(df: pl.DataFrame, silver_dir) -> pl.DataFrame:
    return (df.filter(pl.col("status") != "cancelled")
              .group_by(pl.col("order_month").alias("month"), "category")
              .agg(pl.len().alias("orders"), pl.col("quantity").sum().alias("units"), pl.col("revenue").sum(),
                   pl.col("cost").sum(), pl.col("margin").sum())
              .with_columns((pl.col("margin") / pl.col("revenue")).round(4).alias("margin_pct"))
              .sort("month", "category"))


def lifetime_value(df: pl.DataFrame, silver_dir) -> pl.DataFrame:
    per_customer = (df.filter(pl.col("status") != "cancelled").group_by("customer_id")
                      .agg(pl.col("order_date").min().alias("first_order"),
                           pl.col("order_date").max().alias("last_order"),
                           pl.col("order_id").count().alias("orders"), pl.col("revenue").sum(),
                           pl.col("margin").sum()))
    customers = pl.read_parquet(Path(silver_dir) / "customers.parquet").select("customer_id", "name", "tier",
                                                                               "country")
    return (customers.join(per_customer, on="customer_id", how="left")
                     .with_columns(pl.col("orders").fill_null(0), pl.col("revenue").fill_null(0.0),
                                   pl.col("margin").fill_null(0.0))
                     .with_columns(pl.col("revenue").round(2).rank("dense", descending=True).alias("rank"))
                     .sort("rank", "customer_id"))
'''


def write_project(root: Path, raw: Path, out: Path) -> Path:
    project = out / "project" / "shop"
    (project / "udf").mkdir(parents=True, exist_ok=True)
    (project / "udf" / "silver_shop.py").write_text(SILVER_UDF)
    (project / "udf" / "gold_shop.py").write_text(GOLD_UDF)
    silver_udf, gold_udf = str(project / "udf" / "silver_shop.py"), str(project / "udf" / "gold_shop.py")
    configs = {
        "main.yaml": {
            "pipeline": {"name": "shop"},
            "includes": {"bronze": "bronze.yaml", "silver": "silver.yaml", "gold": "gold.yaml"},
            "paths": {"bronze": str(out / "bronze"), "silver": str(out / "silver"), "gold": str(out),
                      "export": str(out / "export")},
        },
        "bronze.yaml": {"sources": [{"type": "local_files", "tables": [
            {"name": "orders", "path": str(raw / "orders" / "orders_*.csv")},
            {"name": "customers", "path": str(raw / "customers" / "customers_*.csv")},
            {"name": "products", "path": str(raw / "products.csv")},
        ]}]},
        "silver.yaml": {"bronze_to_silver": {
            "tables": [
                {"source_file": "products.parquet", "output_file": "products.parquet", "transforms": [
                    {"type": "normalize", "columns": {"product_id": "strip", "name": "strip",
                                                      "category": "strip_lower"}},
                    {"type": "deduplicate", "subset": ["product_id"], "keep": "last"},
                    {"type": "cast", "columns": {"unit_price": "Float64", "unit_cost": "Float64"}}]},
                {"source_file": "customers.parquet", "output_file": "customers.parquet", "transforms": [
                    {"type": "normalize", "columns": {"customer_id": "strip", "name": "strip", "email": "strip_lower",
                                                      "country": "upper", "tier": "strip_lower"}},
                    {"type": "normalize", "columns": {"country": "strip"}},
                    {"type": "udf", "file": silver_udf, "function": "latest_customer"}]},
                {"source_file": "orders.parquet", "output_file": "orders_typed.parquet", "transforms": [
                    {"type": "deduplicate", "subset": ["order_id"], "keep": "last"},
                    {"type": "normalize", "columns": {"customer_id": "strip", "product_id": "strip",
                                                      "status": "strip_lower", "channel": "strip_lower"}},
                    {"type": "udf", "file": silver_udf, "function": "type_orders"}]},
            ],
            "derived_tables": [
                {"udf": {"file": silver_udf, "function": "quarantine"}, "output_file": "orders_quarantine.parquet"},
                {"udf": {"file": silver_udf, "function": "order_lines"}, "output_file": "order_lines.parquet"},
                {"udf": {"file": silver_udf, "function": "clean_orders"}, "output_file": "orders.parquet"},
            ],
        }},
        "gold.yaml": {"silver_to_gold": {"projects": [{"name": "gold", "aggregations": [
            {"source_file": "order_lines.parquet", "output_file": "revenue_by_category_month.parquet",
             "pre_agg_udf": {"file": gold_udf, "function": "by_category_month"}},
            {"source_file": "order_lines.parquet", "output_file": "customer_lifetime_value.parquet",
             "pre_agg_udf": {"file": gold_udf, "function": "lifetime_value"}},
            {"source_file": "order_lines.parquet", "output_file": "daily_sales.parquet",
             "pre_agg_udf": {"file": gold_udf, "function": "not_cancelled"},
             "group_by": ["order_date"],
             "metrics": [{"agg": "count", "alias": "orders"},
                         {"column": "quantity", "agg": "sum", "alias": "units"},
                         {"column": "revenue", "agg": "sum", "alias": "revenue"},
                         {"column": "margin", "agg": "sum", "alias": "margin"},
                         {"column": "customer_id", "agg": "count_distinct", "alias": "customers"}],
             "sort": {"columns": ["order_date"]}},
        ]}]}},
    }
    for name, content in configs.items():
        (project / name).write_text(yaml.safe_dump(content, sort_keys=False))
    return project


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    start = time.perf_counter()
    from openmedallion.config.loader import load_project
    from openmedallion.pipeline.bronze import BronzeLoader
    from openmedallion.pipeline.gold import GoldAggregator
    from openmedallion.pipeline.silver import SilverTransformer

    project = write_project(args.project.resolve(), args.project.resolve() / "data" / "raw", out)
    with contextlib.redirect_stdout(io.StringIO()):
        cfg = load_project(project.name, project.parent)
    cfg["_explore"], cfg["_debug"] = False, False
    times = {}
    for layer, engine in (("bronze", lambda: BronzeLoader(cfg).load()),
                          ("silver", lambda: SilverTransformer(cfg).transform()),
                          ("gold", lambda: GoldAggregator(cfg).aggregate())):
        with contextlib.redirect_stdout(io.StringIO()):
            engine()
        times[layer] = time.perf_counter() - start
        start = time.perf_counter()
    print("BENCH_RESULT " + json.dumps({"layers": times}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
