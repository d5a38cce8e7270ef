"""The write path on its own: DuckDB writing the Parquet (now) against delta-rs encoding Arrow (before).

Each case runs in a fresh process through ``lake.write`` (or, where the earlier code had
no such mode, delta-rs' own call), on a copy of a prepared lake, and is measured with
:func:`bench.measure.run_measured` (wall time, CPU of the process, peak RSS). The
"before" figures run the same script against the library as it was before DuckDB wrote
the files (``--before`` names a source tree of it, e.g. from
``git archive <commit> medallion_nb | tar -x -C DIR``).

    python bench/write_path.py --rows 1000000 --rows 10000000 --before /tmp/medallion-before

Cases, on an order-lines table of 19 columns:

- ``replace``: write the whole table;
- ``replace_partitioned``: the same, partitioned by day (90 partitions; now only);
- ``append``: add 1% new rows;
- ``merge``: upsert 1% of the rows by ``order_id`` (half of them new);
- ``replace_where``: replace one day of 90 (``where=`` on the unpartitioned table;
  the "before" code has no such mode, so delta-rs' predicate overwrite stands in);
- ``replace_where_partitioned``: the same on a table partitioned by day (now only);
- ``changes``: read the 1% appended since the last consumption (now) against reading
  the whole table (before: there was no way to read only what changed);
- ``write_split``: the whole source split by a rule into a passing table and a
  quarantine of 1% of the rows (``lake.write_split``; ``--before`` compares with a tree
  whose split streamed the rows through Python).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.measure import RESULT_PREFIX, load_average, run_measured

REPO = Path(__file__).resolve().parents[1]
CONFIG = "name: bench\nlayers:\n  - {name: silver, notebook: nb.ipynb}\n"
SOURCE = """
SELECT range AS order_id, TIMESTAMP '2026-01-01' + (range % 7776000) * INTERVAL 1 SECOND AS ordered_at,
       DATE '2026-01-01' + (range % 90)::INT AS order_date,
       'C' || lpad((range % 100000)::VARCHAR, 6, '0') AS customer_id,
       'Customer ' || (range % 100000) AS customer_name, ['bronze', 'silver', 'gold'][range % 3 + 1] AS tier,
       ['DE', 'FR', 'NL', 'IT'][range % 4 + 1] AS country, 'P' || (range % 500) AS product_id,
       'Product ' || (range % 500) AS product_name, 'cat' || (range % 8) AS category,
       ['web', 'app', 'store'][range % 3 + 1] AS channel, ['placed', 'shipped', 'delivered'][range % 3 + 1] AS status,
       (hash(range) % 5 + 1)::INTEGER AS quantity, ((hash(range) % 10000) / 100)::DECIMAL(12, 2) AS unit_price,
       ((hash(range) % 5000) / 100)::DECIMAL(12, 2) AS unit_cost,
       ((hash(range) % 50000) / 100)::DECIMAL(18, 2) AS revenue, ((hash(range) % 25000) / 100)::DECIMAL(18, 2) AS cost,
       ((hash(range) % 25000) / 100)::DECIMAL(18, 2) AS margin, hash(range) % 1000 AS score
FROM range({start}, {stop})
"""
CASES = ("replace", "replace_partitioned", "append", "merge", "replace_where", "replace_where_partitioned", "changes",
         "write_split")
NOW_ONLY = ("replace_partitioned", "replace_where_partitioned")


def child(case: str, project: str, source: str, rows: int) -> None:
    """Run one case in this process (the measured one) and print its own timing."""
    import time

    import medallion_nb as mnb

    print("library:", mnb.__file__, flush=True)

    new = f"read_parquet('{source}')"
    part = rows // 100
    start = time.perf_counter()
    with mnb.connect(project, notebook="bench") as lake:
        has_stage = hasattr(lake, "stage")
        table = "silver.lines_by_day" if case == "replace_where_partitioned" else "silver.lines"
        if case == "replace":
            result = lake.write(table, f"SELECT * FROM {new}")
        elif case == "replace_partitioned":
            result = lake.write("silver.lines_by_day", f"SELECT * FROM {new}", partition_by="order_date")
        elif case == "append":
            result = lake.write(table, f"SELECT * REPLACE (order_id + {rows} AS order_id) FROM {new} LIMIT {part}",
                                mode="append")
        elif case == "merge":
            result = lake.write(table, f"SELECT * REPLACE (order_id + {part // 2} AS order_id, 'merged' AS status) "
                                       f"FROM {new} WHERE order_id % 100 = 7", mode="merge", key="order_id")
        elif case.startswith("replace_where"):
            day = "DATE '2026-02-01'"
            rows_of_day = f"SELECT * REPLACE ('redone' AS status) FROM {new} WHERE order_date = {day}"
            if has_stage:
                result = lake.write(table, rows_of_day, mode="replace_where", where=f"order_date = {day}")
            else:
                import deltalake

                deltalake.write_deltalake(str(lake.project.lake / "silver" / "lines"),
                                          lake.sql(rows_of_day).to_arrow_reader(122_880), mode="overwrite",
                                          predicate="order_date = '2026-02-01'")
                result = "delta-rs predicate overwrite"
        elif case == "write_split":
            result = lake.write_split(f"SELECT * FROM {new}", {"low score": "score < 10"}, good="silver.split_good",
                                      good_columns="* EXCLUDE (score)", bad="silver.split_bad",
                                      bad_columns="order_id, score, _quarantine_reason")
        elif case == "changes":
            rel = lake.changes(table).rows if has_stage else lake.table(table)
            result = rel.aggregate("count(*), sum(revenue), count(DISTINCT customer_id)").fetchall()[0]
        else:
            raise SystemExit(f"unknown case {case}")
    print(RESULT_PREFIX + json.dumps({"op_s": round(time.perf_counter() - start, 3), "result": str(result)}))


def prepare(work: Path, rows: int) -> tuple[Path, Path]:
    """The source Parquet and a prepared project whose lake holds the table (written with the new code)."""
    source = work / f"source-{rows}.parquet"
    project = work / f"prepared-{rows}"
    if not source.exists():
        import duckdb

        duckdb.sql(f"COPY ({SOURCE.format(start=0, stop=rows)}) TO '{source}' (FORMAT parquet)")
    if not project.exists():
        project.mkdir(parents=True)
        (project / "medallion.yaml").write_text(CONFIG, encoding="utf-8")
        (project / "nb.ipynb").write_text("{}", encoding="utf-8")
        code = (f"import medallion_nb as mnb\n"
                f"with mnb.connect({str(project)!r}, notebook='bench') as lake:\n"
                f"    lake.write('silver.lines', \"SELECT * FROM read_parquet('{source}')\")\n"
                f"    lake.write('silver.lines_by_day', \"SELECT * FROM read_parquet('{source}')\", "
                f"partition_by='order_date')\n"
                f"    lake.write('silver.consumer', lake.changes('silver.lines').rows.limit(1))\n"
                f"    lake.write('silver.lines', \"SELECT * REPLACE (order_id + {rows} AS order_id) "
                f"FROM read_parquet('{source}') LIMIT {rows // 100}\", mode='append')\n")
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    return source, project


def measure(case: str, variant: str, code_root: Path, source: Path, prepared: Path, rows: int,
            work: Path) -> dict[str, object]:
    project = work / f"run-{rows}-{case}-{variant}"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(prepared, project)
    # -S: no site processing, so the editable install's import hook cannot pick the library;
    # the code root comes first, then the installed packages.
    packages = [p for p in sys.path if p.endswith("site-packages")]
    env = {"PYTHONPATH": os.pathsep.join([str(code_root), str(REPO), *packages]), "MEDALLION_WRITE_LOG": ""}
    m = run_measured([sys.executable, "-S", str(Path(__file__).resolve()), "--child", case, str(project),
                      str(source), str(rows)], env=env, cwd=work)
    shutil.rmtree(project, ignore_errors=True)
    if not m.ok:
        raise SystemExit(f"{case} ({variant}) failed:\n{m.output_tail}")
    return {"case": case, "variant": variant, "rows": rows, "wall_s": round(m.wall_s, 2), "cpu_s": round(m.cpu_s, 2),
            "peak_rss_mb": round(m.peak_rss_mb), **m.result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="table size (repeatable; default 1,000,000)")
    parser.add_argument("--before", type=Path, help="source tree of the library before DuckDB wrote the files")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--work", type=Path, default=Path("/tmp/medallion-write-bench"))
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--child", nargs=4, metavar=("CASE", "PROJECT", "SOURCE", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, project, source, rows = args.child
        child(case, project, source, int(rows))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    variants = [("now", REPO)] + ([("before", args.before)] if args.before else [])
    for rows in args.rows or [1_000_000]:
        source, prepared = prepare(args.work, rows)
        for case in args.cases.split(","):
            for variant, root in variants:
                if case in NOW_ONLY and variant == "before":
                    continue
                load = load_average()
                found = measure(case, variant, root, source, prepared, rows, args.work)
                found["load_before"] = round(load, 2)
                results.append(found)
                print(json.dumps(found), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print("\n| rows | case | variant | wall | CPU | peak RSS |\n|---:|---|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['rows']:,} | {r['case']} | {r['variant']} | {r['wall_s']} s | {r['cpu_s']} s | "
              f"{r['peak_rss_mb']} MB |")
    os.sync()


if __name__ == "__main__":
    main()
