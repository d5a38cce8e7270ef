"""The deterministic sample data generator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from medallion_nb.cli import main
from medallion_nb.sampledata import SampleSpec, generate
from tests.conftest import REPO


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.csv")):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_arguments_give_identical_files(tmp_path: Path):
    spec = SampleSpec(orders=500, days=5)
    generate(tmp_path / "a", spec)
    generate(tmp_path / "b", spec)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    generate(tmp_path / "c", SampleSpec(orders=500, days=5, seed=8))
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_the_committed_demo_data_is_what_the_generator_writes(tmp_path: Path):
    assert main(["sample-data", "--out", str(tmp_path / "raw")]) == 0
    assert digest(tmp_path / "raw") == digest(REPO / "data" / "raw")


def test_volumes_and_dirt(tmp_path: Path):
    counts = generate(tmp_path, SampleSpec(orders=20_000, days=10))
    assert counts["orders"] == 20_000
    assert len(list((tmp_path / "orders").glob("orders_*.csv"))) == 10
    con = duckdb.connect()
    orders = f"read_csv('{tmp_path}/orders/*.csv', all_varchar=true, header=true, delim=',')"
    (rows, distinct, bad_qty, unknown_product, bad_ts, odd_status) = con.execute(f"""
        SELECT count(*), count(DISTINCT order_id),
               count(*) FILTER (WHERE try_cast(quantity AS INT) IS NULL OR try_cast(quantity AS INT) <= 0),
               count(*) FILTER (WHERE product_id = 'P99999'),
               count(*) FILTER (WHERE try_strptime(order_ts, '%Y-%m-%dT%H:%M:%S') IS NULL),
               count(*) FILTER (WHERE status <> lower(trim(status)))
        FROM {orders}""").fetchall()[0]
    assert distinct == 20_000
    assert 0.003 < (rows - distinct) / distinct < 0.008      # ~0.5% re-delivered orders
    assert 5 <= bad_qty <= 40                               # ~0.1% bad quantities
    assert 15 <= unknown_product <= 70                      # ~0.2% unknown products
    assert bad_ts >= 2                                      # malformed dates
    assert odd_status > 1000                                # casing / whitespace noise
    changes = con.execute(f"""
        SELECT count(*) FROM read_csv('{tmp_path}/customers/*.csv', all_varchar=true, filename=true) a
        JOIN read_csv('{tmp_path}/customers/*.csv', all_varchar=true, filename=true) b
          ON a.customer_id = b.customer_id AND a.filename < b.filename
        WHERE lower(trim(a.tier)) <> lower(trim(b.tier))""").fetchall()[0][0]
    assert changes >= 1                                     # a customer's tier changes in a later file
