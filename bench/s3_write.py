"""Writing a table to a lake on S3: how the Parquet gets there.

Three ways to put the rows of one DuckDB query into a Delta table on S3, each timed in a
fresh process against moto's S3 server on 127.0.0.1 (the tests' ``tests/servers.py``):

- ``duckdb-s3``: DuckDB's ``COPY ... TO 's3://...'`` through the fsspec filesystem registered on
  its connection (Arrow's ``S3FileSystem``), then a Delta commit of the files it reports
  (what ``lake.write`` does on a lake on S3);
- ``local-upload``: ``COPY`` to a local folder, then each file uploaded with obstore, then
  the same commit;
- ``delta-rs``: the query streamed as Arrow batches into delta-rs' own writer (``write_deltalake``).

``lake.write`` runs the library's whole write (stage, commit under the lease) on the S3
lake, ``lake.write partitioned`` the same with ``partition_by="day"`` (90 partitions, many
small files), and ``lake.write local`` the same on a local lake, for comparison. With
``--before DIR`` (a source tree of the library as it was, e.g. ``git archive <commit>
medallion_nb | tar -x -C DIR``) the two S3 ``lake.write`` cases also run against it.

    python bench/s3_write.py --rows 2000000 --repeat 3 [--before /tmp/medallion-before]

The moto server is a separate process: its CPU is not in the CPU column.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

QUERY = ("SELECT range AS id, (range % 90)::INTEGER AS day, (range % 1024) * 1.5 AS amount, "
         "range % 16 AS quantity, range::VARCHAR AS note FROM range({rows})")

CHILD = r'''
import json, os, sys, tempfile, time, uuid
from pathlib import Path
import duckdb
case, uri, rows, query = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
start = time.perf_counter()
if case.startswith("lake.write"):
    import medallion_nb as mnb
    with mnb.connect(sys.argv[5]) as lake:
        lake.write("silver.t", query, partition_by="day" if "partitioned" in case else None)
    print(json.dumps({"s": time.perf_counter() - start})); sys.exit()
from medallion_nb.objectstore import ObjectPath, register_filesystem
from medallion_nb.storage import TableStore
from medallion_nb.storage.stage import copy_rows
from medallion_nb.storage.delta import add_action
from medallion_nb.storage.stats import file_stats
root = ObjectPath.parse(uri)
store = TableStore(root)
con = duckdb.connect()
register_filesystem(con, root)
schema = con.sql(query + " LIMIT 0").to_arrow_table().schema
folder = root / "silver" / "t"
if case == "delta-rs":
    from deltalake import write_deltalake
    write_deltalake(str(folder), con.sql(query).to_arrow_reader(122880), mode="overwrite",
                    storage_options=store.storage_options)
else:
    if case == "duckdb-s3":
        files = copy_rows(con, query, folder)
        adds = [add_action(f.path.relative_to(folder).as_posix(), f.size, {}, file_stats(f.rows, f.columns, schema))
                for f in files]
    else:
        local = Path(tempfile.mkdtemp())
        files = copy_rows(con, query, local)
        adds = []
        for f in files:
            (folder / f.path.name).upload(f.path)
            adds.append(add_action(f.path.name, f.size, {}, file_stats(f.rows, f.columns, schema)))
            f.path.unlink()
    store.commit_files("silver", "t", adds, mode="overwrite", schema=schema)
print(json.dumps({"s": time.perf_counter() - start}))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="a source tree of the library as it was (its lake.write cases run against it too)")
    args = parser.parse_args()
    from servers import S3Server

    s3 = S3Server().start()
    scratch = Path(tempfile.mkdtemp(prefix="medallion-s3-write-"))
    try:
        env = {**os.environ, **s3.env()}
        query = QUERY.format(rows=args.rows)
        results: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        cases = ["duckdb-s3", "local-upload", "delta-rs", "lake.write", "lake.write partitioned", "lake.write local"]
        if args.before:
            cases += ["lake.write before", "lake.write partitioned before"]
        for round_ in range(args.repeat):
            for case in cases if round_ % 2 == 0 else list(reversed(cases)):
                bucket = s3.bucket()
                project = scratch / f"{case.replace(' ', '-')}-{round_}"
                project.mkdir()
                (project / "nb.ipynb").write_text("{}")
                lake = "lake" if case.endswith("local") else f"s3://{bucket}/lake"
                (project / "medallion.yaml").write_text(f"name: bench\nlake: {lake}\nlayers:\n"
                                                        "  - {name: silver, notebook: nb.ipynb}\n")
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                proc = subprocess.run([sys.executable, "-c", CHILD, case, f"s3://{bucket}/lake", str(args.rows), query,
                                       str(project)], capture_output=True, text=True, env=env, timeout=1800,
                                      cwd=args.before if case.endswith("before") else REPO, check=False)
                if proc.returncode != 0:
                    raise SystemExit(f"{case}: failed\n{proc.stderr[-3000:]}")
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                results.setdefault(case, []).append(json.loads(proc.stdout.strip().splitlines()[-1])["s"])
                cpu.setdefault(case, []).append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        print(f"{args.rows:,} rows, median of {args.repeat} (seconds: wall of the write; CPU of the process)")
        for case, times in results.items():
            print(f"  {case:30s} wall {statistics.median(times):.2f}  cpu {statistics.median(cpu[case]):.2f}")
        print(json.dumps({"rows": args.rows, "wall": results, "cpu": cpu, "at": time.strftime("%Y-%m-%d %H:%M"),
                          "load": os.getloadavg()}))
    finally:
        s3.stop()
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
