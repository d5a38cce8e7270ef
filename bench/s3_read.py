"""Reading a Delta table on S3 with DuckDB 2.x: Arrow datasets against an fsspec filesystem.

DuckDB's own S3 reader (the ``httpfs`` extension) is published for DuckDB 1.5.x only,
so a lake on object storage is read one of two ways:

- ``arrow``: a ``pyarrow.dataset`` over the table's current files on
  ``pyarrow.fs.S3FileSystem``, registered in DuckDB (``con.register``); DuckDB pushes
  the projection and the filter into the dataset scan;
- ``fsspec``: an fsspec filesystem (``fsspec``'s wrapper around the same
  ``S3FileSystem``) registered with ``con.register_filesystem``, then
  ``read_parquet('s3://...')`` as for local files.

Starts moto's S3 server (the tests' ``tests/servers.py``), writes one Delta table with
delta-rs, and times three queries per path, each in a fresh process with a fresh
connection: a full aggregate, a selective filter on a sorted column (row groups
skipped by statistics), and one column of all rows. Needs ``fsspec`` for the second
path (``pip install fsspec``; it is not a dependency of the project).

    python bench/s3_read.py --rows 2000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

QUERIES = {
    "aggregate": "SELECT day, count(*), sum(amount) FROM t GROUP BY day ORDER BY day",
    "filter": "SELECT count(*), sum(amount) FROM t WHERE id BETWEEN 1000000 AND 1010000",
    "one_column": "SELECT sum(quantity) FROM t",
}

CHILD = r'''
import json, sys, time
import duckdb, pyarrow.dataset as ds, pyarrow.fs as pafs
from deltalake import DeltaTable
path, uri, env = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
opts = {k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                            "AWS_ALLOW_HTTP")}
start = time.perf_counter()
files = DeltaTable(uri, storage_options=opts).file_uris()
s3 = pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], scheme="http", access_key=env["AWS_ACCESS_KEY_ID"],
                       secret_key=env["AWS_SECRET_ACCESS_KEY"], region=env["AWS_REGION"])
con = duckdb.connect()
queries = json.loads(sys.argv[4])
out = {}
if path == "arrow":
    con.register("t", ds.dataset([f.removeprefix("s3://") for f in files], filesystem=s3, format="parquet"))
else:
    from fsspec.implementations.arrow import ArrowFSWrapper
    class S3Wrapper(ArrowFSWrapper):
        protocol = "s3"
    con.register_filesystem(S3Wrapper(s3))
    con.execute("CREATE VIEW t AS SELECT * FROM read_parquet([" + ", ".join("'" + f + "'" for f in files) + "])")
setup = time.perf_counter() - start
for name, sql in queries.items():
    t0 = time.perf_counter()
    rows = con.execute(sql).fetchall()
    out[name] = {"s": time.perf_counter() - t0, "result": str(rows[:2])}
print(json.dumps({"setup_s": setup, "queries": out}))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import write_deltalake
    from servers import S3Server

    s3 = S3Server().start()
    try:
        env = s3.env()
        bucket = s3.bucket()
        uri = f"s3://{bucket}/lake/silver/order_lines"
        opts = {k: v for k, v in env.items() if k != "AWS_DEFAULT_REGION"}
        n = args.rows
        ids = pa.array(range(n), pa.int64())
        table = pa.table({"id": ids, "day": pc.cast(pc.divide(ids, n // 90 or 1), pa.int32()),
                          "amount": pc.multiply(pc.cast(pc.bit_wise_and(ids, 1023), pa.float64()), 1.5),
                          "quantity": pc.bit_wise_and(ids, 15), "note": pc.cast(ids, pa.string())})
        write_deltalake(uri, table, storage_options=opts, target_file_size=64 * 2**20)
        results: dict[str, dict[str, list[float]]] = {}
        answers: dict[str, dict[str, str]] = {}
        for round_ in range(args.repeat):
            for path in (("arrow", "fsspec") if round_ % 2 == 0 else ("fsspec", "arrow")):
                proc = subprocess.run([sys.executable, "-c", CHILD, path, uri, json.dumps(env), json.dumps(QUERIES)],
                                      capture_output=True, text=True, check=False, timeout=900)
                if proc.returncode != 0:
                    print(f"{path}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                data = json.loads(proc.stdout.strip().splitlines()[-1])
                for name, q in data["queries"].items():
                    results.setdefault(path, {}).setdefault(name, []).append(q["s"])
                    answers.setdefault(name, {})[path] = q["result"]
        for name, by_path in answers.items():
            if len(set(by_path.values())) > 1:
                raise SystemExit(f"{name}: the paths disagree: {by_path}")
        print(f"{n:,} rows, median of {args.repeat} (seconds):")
        for path, by_query in results.items():
            print(f"  {path:7s} " + "  ".join(f"{q} {statistics.median(v):.2f}" for q, v in by_query.items()))
        print(json.dumps({"rows": n, "results": results, "at": time.strftime("%Y-%m-%d")}))
    finally:
        s3.stop()


if __name__ == "__main__":
    main()
