"""The incremental runs alone: a full run, one more day of orders, then a run with nothing new.

    python bench/incremental.py --orders 1000000 --orders 10000000 [--days 90] [--work DIR]

For each size: generate (or reuse) the raw files, run the pipeline once from scratch with
``medallion-nb run`` (the full run), land one more day holding 1% new orders, run again
(the incremental run), then run once more with nothing new. The incremental run's gold is
compared with raw DuckDB's full rebuild over all the files, and the run with nothing new must
leave every table at its version. Prints one JSON line per size (``INCREMENTAL {...}``) and a
summary; ``--json`` keeps them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from contenders import CONTENDERS  # noqa: E402
from gold import same  # noqa: E402
from run import REFERENCE, add_new_orders, log, new_project, raw_data, run_contender, table_versions  # noqa: E402


def measure(work: Path, orders: int, days: int, fraction: float) -> dict[str, Any]:
    medallion, reference = CONTENDERS["medallion"], CONTENDERS[REFERENCE]
    raw = raw_data(work, orders, days)
    project = new_project(work / "runs" / f"incremental-{orders}", raw)
    log(f"{orders:,} orders: full run")
    full = run_contender(medallion, project, project / "bench-out-full", via="cli")
    name, added = add_new_orders(project, fraction)
    log(f"{orders:,} orders: incremental run after {name} ({added:,} new orders)")
    inc = run_contender(medallion, project, project / "bench-out-incremental", via="cli")
    before = table_versions(project)
    log(f"{orders:,} orders: a run with nothing new")
    nothing = run_contender(medallion, project, project / "bench-out-nothing", via="cli")
    after = table_versions(project)
    nothing["new_versions"] = sorted(t for t in after if after[t] != before.get(t))
    check = new_project(work / "runs" / f"incremental-check-{orders}", project / "data" / "raw")
    log(f"{orders:,} orders: raw DuckDB's full rebuild over the same files")
    ref = run_contender(reference, check, check / "bench-out", via="cli")
    inc["agrees"] = bool(inc["ok"] and ref["ok"] and not same(inc["gold"], ref["gold"]))
    shutil.rmtree(check, ignore_errors=True)
    shutil.rmtree(project, ignore_errors=True)
    return {"orders": orders, "days": days, "file": name, "added_orders": added, "full": full,
            "incremental": inc, "nothing_new": nothing, "reference": ref}


def summary(result: dict[str, Any]) -> str:
    full, inc, nothing = result["full"], result["incremental"], result["nothing_new"]

    def layers(run: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v:.1f} s" for k, v in run.get("layers", {}).items())

    return (f"{result['orders']:,} orders: full {full['wall_s']:.1f} s (CPU {full['cpu_s']:.1f} s; {layers(full)}); "
            f"+{result['added_orders']:,} orders {inc['wall_s']:.1f} s = {inc['wall_s'] / full['wall_s']:.0%} "
            f"(CPU {inc['cpu_s']:.1f} s; {layers(inc)}), gold = full rebuild: {'yes' if inc['agrees'] else 'NO'}; "
            f"nothing new {nothing['wall_s']:.1f} s, {len(nothing['new_versions'])} new table versions")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, action="append", help="data size(s); default 1000000")
    parser.add_argument("--days", type=int, default=90, help="days of order files (default 90)")
    parser.add_argument("--fraction", type=float, default=0.01, help="new orders in the extra day (default 0.01)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medallion-bench"), help="scratch folder")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for orders in args.orders or [1_000_000]:
        result = measure(work, orders, args.days, args.fraction)
        results.append(result)
        print("INCREMENTAL " + json.dumps(result, default=str), flush=True)
        log(summary(result))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    ok = all(r["incremental"]["ok"] and r["incremental"]["agrees"] and r["nothing_new"]["ok"]
             and not r["nothing_new"]["new_versions"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
