"""The demo pipeline for incremental tests: raw files that arrive day by day, and the notebooks' own code.

* :class:`Feed` writes the demo's raw files (orders per day, customers files, the products
  snapshot) as a small shop that evolves: new orders, orders re-delivered with other values
  (into and out of the quarantine), a customer's tier change, a product's new price, days
  with nothing new.
* :func:`run_notebooks` executes the code cells of the project's real layer notebooks in this
  process, parameters injected after the ``parameters`` cell as papermill does. It runs the
  notebooks' source itself, not a copy of their logic, so what it checks is what
  ``medallion-nb run`` executes — only without a kernel per notebook.
* :func:`lake_content` reads every table with deltalake + DuckDB (no medallion_nb), for comparisons.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import deltalake
import duckdb
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("bronze", "silver", "gold")
LINEAGE = ("_ingested_at", "_run_id")
START = date(2026, 3, 1)
CATEGORIES = ("toys", "books", "garden")
TIERS = ("bronze", "silver", "gold")


def new_project(root: Path) -> Path:
    """The demo project's config and notebooks in ``root``, with an empty ``data/raw``."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "medallion.yaml", root / "medallion.yaml")
    shutil.copytree(REPO / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (root / "data" / "raw" / "orders").mkdir(parents=True)
    (root / "data" / "raw" / "customers").mkdir(parents=True)
    return root


def copy_raw(src: Path, dest: Path) -> Path:
    """A fresh project in ``dest`` holding the raw files of ``src`` (for a full rebuild)."""
    new_project(dest)
    shutil.rmtree(dest / "data" / "raw")
    shutil.copytree(src / "data" / "raw", dest / "data" / "raw")
    return dest


@dataclass
class Order:
    customer: str
    product: str
    quantity: str
    price: str
    status: str


@dataclass
class Feed:
    """The raw files of a small shop, written into a project's ``data/raw`` one event at a time."""

    root: Path
    day: date = START
    products: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)   # id -> name, category, price, cost
    customers: dict[str, tuple[str, str, str]] = field(default_factory=dict)       # id -> name, country, tier
    orders: dict[str, Order] = field(default_factory=dict)
    updates: int = 0

    def __post_init__(self) -> None:
        for i in range(1, 5):
            self.products[f"P{i:03d}"] = (f"Item {i}", CATEGORIES[i % 3], f"{10 * i}.50", f"{5 * i}.25")
        for i in range(1, 7):
            self.customers[f"C{i:03d}"] = (f"Person {i}", "de", TIERS[i % 3])
        self.write_products()
        self.write_customers(self.customers)

    # -- files -------------------------------------------------------------------
    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    def write_products(self) -> None:
        path = self.raw / "products.csv"
        before = path.stat().st_size if path.exists() else None
        lines = ["product_id,name,category,unit_price,unit_cost"]
        lines += [f"{pid},{name},{cat},{price},{cost}"
                  for pid, (name, cat, price, cost) in sorted(self.products.items())]
        text = "\n".join(lines) + "\n"
        if before is not None and len(text.encode()) == before:
            text += "\n"  # the ingest notices a changed snapshot by its size; a blank line is no row
        path.write_text(text, encoding="utf-8")

    def write_customers(self, rows: dict[str, tuple[str, str, str]]) -> None:
        self.updates += 1
        stamp = f"{self.day}T00:00:{self.updates:02d}"
        lines = ["customer_id,name,email,country,tier,signup_date,updated_at"]
        lines += [f"{cid},{name},{cid.lower()}@example.com,{country},{tier},2025-12-01,{stamp}"
                  for cid, (name, country, tier) in sorted(rows.items())]
        (self.raw / "customers" / f"customers_{self.day}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def write_orders(self, ids: list[str], *, header_only: bool = False) -> None:
        lines = ["order_id,order_ts,customer_id,product_id,quantity,unit_price,status,channel"]
        if not header_only:
            for n, oid in enumerate(ids):
                o = self.orders[oid]
                ts = f"{self.day}T{8 + n % 12:02d}:{n % 60:02d}:00"
                lines.append(f"{oid},{ts},{o.customer},{o.product},{o.quantity},{o.price},{o.status},web")
        (self.raw / "orders" / f"orders_{self.day}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # -- events --------------------------------------------------------------------
    def next_day(self) -> None:
        self.day += timedelta(days=1)

    def new_orders(self, specs: list[tuple[int, int, int, str]]) -> list[str]:
        """A day of new orders: ``(customer, product, quantity, status)`` each; ids >= 5 are unknown products."""
        ids = []
        for customer, product, quantity, status in specs:
            oid = f"O{len(self.orders) + 1:05d}"
            price = self.products.get(f"P{product:03d}", ("", "", "9.99", ""))[2]
            self.orders[oid] = Order(f" C{customer:03d}", f"P{product:03d}", str(quantity), price, status)
            ids.append(oid)
        self.write_orders(ids)
        return ids

    def redeliver(self, picks: list[tuple[int, int, int]]) -> list[str]:
        """A day re-delivering existing orders with other values: ``(order index, quantity, product)``.

        Quantity 0 or an unknown product moves an order into the quarantine; a positive
        quantity with a known product moves it out.
        """
        ids = sorted(self.orders)
        chosen = []
        for index, quantity, product in picks:
            oid = ids[index % len(ids)]
            if oid in chosen:
                continue
            o = self.orders[oid]
            self.orders[oid] = Order(o.customer, f"P{product:03d}", str(quantity), o.price, "SHIPPED ")
            chosen.append(oid)
        self.write_orders(chosen)
        return chosen

    def change_tier(self, customer: int) -> None:
        cid = f"C{customer:03d}"
        name, country, tier = self.customers[cid]
        self.customers[cid] = (name, country, TIERS[(TIERS.index(tier) + 1) % 3])
        self.write_customers({cid: self.customers[cid]})

    def change_price(self, product: int, cents: int) -> None:
        pid = f"P{product:03d}"
        name, category, _price, cost = self.products[pid]
        self.products[pid] = (name, category, f"{cents // 100}.{cents % 100:02d}", cost)
        self.write_products()

    def add_product(self, product: int) -> None:
        """A product the shop did not have yet (orders that named it leave the quarantine)."""
        self.products.setdefault(f"P{product:03d}", (f"New {product}", "Books ", "7.00", "3.00"))
        self.write_products()

    def add_customer(self, customer: int) -> None:
        """A customer who was not known yet (orders that named them leave the quarantine)."""
        cid = f"C{customer:03d}"
        self.customers.setdefault(cid, (f"Newcomer {customer}", "nl", "bronze"))
        self.write_customers({cid: self.customers[cid]})

    def empty_day(self) -> None:
        """A day whose orders file holds only its header."""
        self.write_orders([], header_only=True)


# -- running the notebooks' code ------------------------------------------------------
def notebook_cells(project: Path, layer: str) -> tuple[str, list[str]]:
    """The parameters cell and the other code cells of a layer notebook, as source text."""
    book = json.loads((project / "notebooks" / f"{layer}.ipynb").read_text(encoding="utf-8"))
    params, cells = "", []
    for cell in book["cells"]:
        if cell["cell_type"] != "code":
            continue
        text = "".join(cell["source"])
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            params = text
        else:
            cells.append(text)
    return params, cells


def run_notebook(project: Path, layer: str, *, run_id: str, stop_after: int | None = None,
                 **parameters: Any) -> dict[str, Any]:
    """Execute a layer notebook's code cells here, parameters injected as papermill does.

    ``stop_after``: run only the first that many code cells after the parameters.
    Returns the notebook's namespace (its lakehouse handle closed).
    """
    params, cells = notebook_cells(project, layer)
    namespace: dict[str, Any] = {"__name__": f"notebook_{layer}"}
    exec(compile(params, f"{layer}.ipynb:parameters", "exec"), namespace)
    namespace.update({"project_dir": str(project), "run_id": run_id, "run_date": "", "full_refresh": False,
                      **parameters})
    try:
        for i, source in enumerate(cells if stop_after is None else cells[:stop_after]):
            exec(compile(source, f"{layer}.ipynb:cell {i}", "exec"), namespace)
    finally:
        lake = namespace.get("lake")
        if lake is not None:
            lake.close()
    return namespace


def hold_after(project: Path, layer: str, cells: int, marker: Path) -> None:
    """Run the first ``cells`` code cells of a layer notebook, touch ``marker``, then wait to be killed."""
    import time

    params, code = notebook_cells(project, layer)
    namespace: dict[str, Any] = {"__name__": f"notebook_{layer}"}
    exec(compile(params, f"{layer}.ipynb:parameters", "exec"), namespace)
    namespace.update({"project_dir": str(project), "run_id": "killed", "run_date": "", "full_refresh": False})
    for i, source in enumerate(code[:cells]):
        exec(compile(source, f"{layer}.ipynb:cell {i}", "exec"), namespace)
    marker.write_text("ready", encoding="utf-8")
    time.sleep(600)


def run_notebooks(project: Path, run_id: str, **parameters: Any) -> None:
    """Bronze, silver and gold, in order, as one run."""
    for layer in LAYERS:
        run_notebook(project, layer, run_id=run_id, **parameters)


# -- reading what the pipeline wrote ----------------------------------------------------
def table_dirs(project: Path) -> list[tuple[str, str]]:
    lake = project / "data" / "lake"
    return sorted((layer, t.name) for layer in LAYERS if (lake / layer).is_dir()
                  for t in (lake / layer).iterdir() if (t / "_delta_log").is_dir())


def read_table(project: Path, layer: str, table: str) -> list[tuple]:
    """A table's rows, sorted, without the per-run lineage columns (deltalake + DuckDB only)."""
    dt = deltalake.DeltaTable(str(project / "data" / "lake" / layer / table))
    con = duckdb.connect()
    schema = pa.schema(dt.schema().to_arrow())
    partitions = dt.metadata().partition_columns
    if dt.file_uris():
        rel = con.sql("SELECT * FROM read_parquet($files, hive_partitioning = $hive)",
                      params={"files": dt.file_uris(), "hive": bool(partitions)})
    else:
        rel = con.from_arrow(schema.empty_table())
    keep = [f.name for f in schema if f.name not in LINEAGE]
    # Partition columns come back from the folder names as text: cast them to the table's types.
    types = {f.name: f.type for f in schema}
    exprs = [f'CAST("{c}" AS {_duck_type(con, types[c])}) AS "{c}"' if c in partitions else f'"{c}"' for c in keep]
    return sorted(rel.project(", ".join(exprs)).fetchall(), key=repr)


def _duck_type(con: duckdb.DuckDBPyConnection, kind: pa.DataType) -> str:
    return str(con.from_arrow(pa.schema([("x", kind)]).empty_table()).types[0])


def lake_content(project: Path) -> dict[str, list[tuple]]:
    return {f"{layer}.{table}": read_table(project, layer, table) for layer, table in table_dirs(project)}


def versions(project: Path) -> dict[str, int]:
    return {f"{layer}.{table}": deltalake.DeltaTable(str(project / "data" / "lake" / layer / table)).version()
            for layer, table in table_dirs(project)}


def differences(actual: dict[str, list[tuple]], expected: dict[str, list[tuple]]) -> list[str]:
    """Readable differences between two lakes' contents (empty when equal)."""
    out = []
    for name in sorted(set(actual) | set(expected)):
        a, e = actual.get(name), expected.get(name)
        if a == e:
            continue
        if a is None or e is None:
            out.append(f"{name}: only in the {'rebuild' if a is None else 'incremental lake'}")
            continue
        extra = [r for r in a if r not in e][:3]
        missing = [r for r in e if r not in a][:3]
        out.append(f"{name}: {len(a)} rows, rebuild has {len(e)}; extra {extra}; missing {missing}")
    return out
