"""Bronze ingest of a year of daily CSV files: declared types and null markers against no options.

A source's options must never fall off the fast read path (a fixed dialect, one
``read_csv`` per header, no sniffing): the same daily order files are ingested into a
fresh lake as plain text (no options at all) and with a declared schema, null markers
and ``on_bad_rows: quarantine`` (typed columns, rejects, per-file accounting). Raw
DuckDB reading the same files with a fixed dialect and writing one Parquet file is the
practical limit. Each case runs in its own process, rounds interleaved; the figure is
the median of the ``lake.ingest()`` call's own time (and of the process's wall time,
CPU and peak RSS, from :func:`bench.measure.run_measured`).

    python bench/ingest.py --orders 2000000 --days 365 --repeat 3 --doc docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import RESULT_PREFIX, load_average, run_measured

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
SOURCES = {
    "no options": "    path: data/raw/orders/orders_*.csv\n",
    "schema + null markers": (
        "    path: data/raw/orders/orders_*.csv\n"
        "    schema: {order_ts: TIMESTAMP, quantity: INTEGER, unit_price: \"DECIMAL(12,2)\"}\n"
        "    null_values: ['', 'NA']\n"
        "    on_bad_rows: quarantine\n"
    ),
}
RAW = "raw DuckDB (fixed dialect, one Parquet file)"
BEGIN, END = "<!-- ingest:begin -->", "<!-- ingest:end -->"


def child(case: str, project: Path) -> None:
    """Run one case in this process and print its result line."""
    if case == RAW:
        import duckdb

        files = sorted(str(p) for p in (project / "data/raw/orders").glob("*.csv"))
        names = ["order_id", "order_ts", "customer_id", "product_id", "quantity", "unit_price", "status", "channel"]
        columns = "{" + ", ".join(f"'{n}': 'VARCHAR'" for n in names) + "}"
        start = time.perf_counter()
        con = duckdb.connect()
        con.execute(f"COPY (SELECT * FROM read_csv($files, columns = {columns}, header = true, auto_detect = false, "
                    "delim = ',', quote = '\"', escape = '\"', filename = true)) "
                    f"TO '{project / 'orders.parquet'}' (FORMAT parquet)", {"files": files})
        rows = con.sql(f"SELECT count(*) FROM '{project / 'orders.parquet'}'").fetchall()[0][0]
        print(RESULT_PREFIX + json.dumps({"seconds": time.perf_counter() - start, "rows": rows, "rejected": 0}))
        return
    import medallion_nb as mnb

    with mnb.connect(project, run_id="bench") as lake:
        start = time.perf_counter()
        (result,) = lake.ingest("orders")
        seconds = time.perf_counter() - start
    assert all(f.loaded + f.rejected == f.lines for f in result.files)
    print(RESULT_PREFIX + json.dumps({"seconds": seconds, "rows": result.rows, "rejected": result.rejected,
                                      "files": len(result.files)}))


def make_project(work: Path, case: str, raw: Path) -> Path:
    project = work / "projects" / case.split()[0]
    shutil.rmtree(project, ignore_errors=True)
    (project / "data/raw/orders").mkdir(parents=True)
    for f in sorted((raw / "orders").glob("*.csv")):
        os.link(f, project / "data/raw/orders" / f.name)
    (project / "nb.ipynb").write_text(NOTEBOOK)
    source = SOURCES.get(case, SOURCES["no options"])
    (project / "medallion.yaml").write_text(
        f"name: bench\nlayers:\n  - {{name: bronze, notebook: nb.ipynb}}\nsources:\n  orders:\n{source}")
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/medallion-bench-ingest"))
    parser.add_argument("--doc", type=Path, help=f"replace the part between {BEGIN} and {END} in this file")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "PROJECT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return

    from medallion_nb.sampledata import SampleSpec, generate

    shutil.rmtree(args.work, ignore_errors=True)
    raw = args.work / "raw"
    generate(raw, SampleSpec(orders=args.orders, days=args.days))
    files = sorted((raw / "orders").glob("*.csv"))
    size = sum(f.stat().st_size for f in files)
    cases = [*SOURCES, RAW]
    results: dict[str, list[dict]] = {c: [] for c in cases}
    for round_ in range(args.repeat):
        for case in cases[round_ % len(cases):] + cases[:round_ % len(cases)]:
            project = make_project(args.work, case, raw)
            m = run_measured([sys.executable, str(Path(__file__).resolve()), "--child", case, str(project)],
                             env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
            if not m.ok:
                raise SystemExit(f"{case} failed:\n{m.output_tail}")
            results[case].append({"ingest_s": m.result["seconds"], "wall_s": m.wall_s, "cpu_s": m.cpu_s,
                                  "peak_mb": m.peak_rss_mb, "rows": m.result["rows"],
                                  "rejected": m.result["rejected"]})
            shutil.rmtree(project)
            print(f"round {round_ + 1} {case}: ingest {m.result['seconds']:.2f} s, wall {m.wall_s:.2f} s", flush=True)
    table = report(results, len(files), size, args, load_average())
    print(table)
    if args.doc:
        text = args.doc.read_text(encoding="utf-8")
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        args.doc.write_text(text[:start] + "\n" + table + "\n" + text[end:], encoding="utf-8")
    shutil.rmtree(args.work, ignore_errors=True)


def report(results: dict[str, list[dict]], files: int, size: int, args: argparse.Namespace, load: float) -> str:
    def med(case: str, key: str) -> float:
        return statistics.median(r[key] for r in results[case])

    base = med("no options", "ingest_s")
    lines = [f"{files} daily files, {args.orders:,} orders ({size / 2**20:,.0f} MiB of CSV), median of "
             f"{args.repeat} runs per case, 2 cores (load average {load:.1f} at the end):", "",
             "| case | rows loaded | rows rejected | `lake.ingest()` | vs no options | process wall | CPU | peak RSS |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for case, runs in results.items():
        ratio = med(case, "ingest_s") / base
        lines.append(f"| {case} | {runs[0]['rows']:,} | {runs[0]['rejected']:,} | {med(case, 'ingest_s'):.2f} s | "
                     f"{ratio:.2f} x | {med(case, 'wall_s'):.2f} s | {med(case, 'cpu_s'):.2f} s | "
                     f"{med(case, 'peak_mb'):,.0f} MiB |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
