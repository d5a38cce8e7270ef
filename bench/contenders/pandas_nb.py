"""pandas: the demo's logic as a typical pandas notebook user writes it (read everything, transform, to Parquet).

Usage: python bench/contenders/pandas_nb.py PROJECT_DIR OUT_DIR
Prints one line ``BENCH_RESULT {"layers": {...}}`` at the end.
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import pandas as pd
from layers import arguments, run_layers


def _read_csvs(pattern: str, root: Path) -> pd.DataFrame:
    frames = []
    for path in sorted(glob.glob(pattern)):
        df = pd.read_csv(path, dtype=str, keep_default_na=False, engine="pyarrow")
        df["_source_file"] = str(Path(path).relative_to(root))
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out["_ingested_at"] = pd.Timestamp.now(tz="UTC")
    out["_run_id"] = "bench"
    return out


def bronze(root: Path, out: Path) -> None:
    raw = root / "data" / "raw"
    _read_csvs(str(raw / "orders" / "orders_*.csv"), root).to_parquet(out / "orders.parquet", index=False)
    customers = _read_csvs(str(raw / "customers" / "customers_*.csv"), root)
    customers = (customers.sort_values(["updated_at", "_source_file"])
                 .drop_duplicates("customer_id", keep="last"))
    customers.to_parquet(out / "customers.parquet", index=False)
    _read_csvs(str(raw / "products.csv"), root).to_parquet(out / "products.parquet", index=False)


def silver(bronze_dir: Path, out: Path) -> None:
    products = pd.read_parquet(bronze_dir / "products.parquet")
    products = products.sort_values("_ingested_at").assign(product_id=products.product_id.str.strip())
    products = products.drop_duplicates("product_id", keep="last")
    products = pd.DataFrame({
        "product_id": products.product_id,
        "name": products.name.str.strip(),
        "category": products.category.str.strip().str.lower(),
        "unit_price": pd.to_numeric(products.unit_price).round(2),
        "unit_cost": pd.to_numeric(products.unit_cost).round(2),
    })
    products.to_parquet(out / "products.parquet", index=False)

    c = pd.read_parquet(bronze_dir / "customers.parquet")
    customers = pd.DataFrame({
        "customer_id": c.customer_id.str.strip(),
        "name": c.name.str.strip(),
        "email": c.email.str.strip().str.lower(),
        "country": c.country.str.strip().str.upper(),
        "tier": c.tier.str.strip().str.lower(),
        "signup_date": pd.to_datetime(c.signup_date).dt.date,
        "updated_at": pd.to_datetime(c.updated_at),
    })
    customers.to_parquet(out / "customers.parquet", index=False)

    o = pd.read_parquet(bronze_dir / "orders.parquet")
    o = o.sort_values(["order_id", "_source_file", "_ingested_at"]).drop_duplicates("order_id", keep="last")
    orders = pd.DataFrame({
        "order_id": o.order_id,
        "ordered_at": pd.to_datetime(o.order_ts, format="%Y-%m-%dT%H:%M:%S", errors="coerce"),
        "customer_id": o.customer_id.str.strip(),
        "product_id": o.product_id.str.strip(),
        "quantity": pd.to_numeric(o.quantity, errors="coerce").astype("Int64"),
        "unit_price": pd.to_numeric(o.unit_price, errors="coerce").round(2),
        "status": o.status.str.strip().str.lower(),
        "channel": o.channel.str.strip().str.lower(),
        "raw_order_ts": o.order_ts, "raw_quantity": o.quantity, "raw_unit_price": o.unit_price,
        "_source_file": o._source_file,
    })
    orders = orders.merge(products[["product_id", "name", "category", "unit_cost"]]
                          .rename(columns={"name": "product_name"}), on="product_id", how="left")
    orders = orders.merge(customers[["customer_id", "name", "tier", "country"]]
                          .rename(columns={"name": "customer_name"}), on="customer_id", how="left")

    rules = {
        "order_ts is not a valid timestamp": orders.ordered_at.isna(),
        "quantity missing or not positive": orders.quantity.isna() | (orders.quantity <= 0),
        "unit_price missing or negative": orders.unit_price.isna() | (orders.unit_price < 0),
        "unknown product_id": orders.product_name.isna(),
        "unknown customer_id": orders.customer_name.isna(),
    }
    reason = pd.Series("", index=orders.index)
    for text, mask in rules.items():
        mask = mask.fillna(False).astype(bool)
        reason = reason.where(~mask, reason + "; " + text)
    orders["_quarantine_reason"] = reason.str.removeprefix("; ")
    bad = orders[orders._quarantine_reason != ""]
    good = orders[orders._quarantine_reason == ""].copy()

    bad[["order_id", "raw_order_ts", "customer_id", "product_id", "raw_quantity", "raw_unit_price", "status",
         "_source_file", "_quarantine_reason"]].to_parquet(out / "orders_quarantine.parquet", index=False)
    good["order_date"] = good.ordered_at.dt.date
    good["quantity"] = good.quantity.astype("int64")
    good[["order_id", "ordered_at", "order_date", "customer_id", "product_id", "quantity", "unit_price",
          "status", "channel"]].to_parquet(out / "orders.parquet", index=False)
    good["order_month"] = good.ordered_at.dt.to_period("M").dt.to_timestamp().dt.date
    good["revenue"] = (good.quantity * good.unit_price).round(2)
    good["cost"] = (good.quantity * good.unit_cost).round(2)
    good["margin"] = (good.quantity * (good.unit_price - good.unit_cost)).round(2)
    good[["order_id", "ordered_at", "order_date", "order_month", "customer_id", "customer_name", "tier", "country",
          "product_id", "product_name", "category", "channel", "status", "quantity", "unit_price", "unit_cost",
          "revenue", "cost", "margin"]].to_parquet(out / "order_lines.parquet", index=False)


def gold(silver_dir: Path, out: Path) -> None:
    lines = pd.read_parquet(silver_dir / "order_lines.parquet")
    lines = lines[lines.status != "cancelled"]

    by_month = (lines.groupby(["order_month", "category"], as_index=False)
                .agg(orders=("order_id", "size"), units=("quantity", "sum"), revenue=("revenue", "sum"),
                     cost=("cost", "sum"), margin=("margin", "sum"))
                .rename(columns={"order_month": "month"}))
    by_month["margin_pct"] = (by_month.margin / by_month.revenue.where(by_month.revenue != 0)).round(4)
    by_month.sort_values(["month", "category"]).to_parquet(out / "revenue_by_category_month.parquet", index=False)

    customers = pd.read_parquet(silver_dir / "customers.parquet")
    per_customer = lines.groupby("customer_id", as_index=False).agg(
        first_order=("order_date", "min"), last_order=("order_date", "max"), orders=("order_id", "count"),
        revenue=("revenue", "sum"), margin=("margin", "sum"))
    clv = customers[["customer_id", "name", "tier", "country"]].merge(per_customer, on="customer_id", how="left")
    clv["orders"] = clv.orders.fillna(0).astype("int64")
    clv["revenue"] = clv.revenue.fillna(0)
    clv["margin"] = clv.margin.fillna(0)
    clv["rank"] = clv.revenue.round(2).rank(method="dense", ascending=False).astype("int64")
    clv.sort_values(["rank", "customer_id"]).to_parquet(out / "customer_lifetime_value.parquet", index=False)

    daily = (lines.groupby("order_date", as_index=False)
             .agg(orders=("order_id", "size"), units=("quantity", "sum"), revenue=("revenue", "sum"),
                  margin=("margin", "sum"), customers=("customer_id", "nunique")))
    daily.sort_values("order_date").to_parquet(out / "daily_sales.parquet", index=False)


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, argv)
    return run_layers([("bronze", bronze), ("silver", silver), ("gold", gold)], args.project.resolve(), args.out)


if __name__ == "__main__":
    sys.exit(main())
