"""Benchmark medallion_nb against raw DuckDB, Polars, pandas and openmedallion on the demo's pipeline.

    python bench/run.py --orders 1000000 --orders 10000000 --repeat 3 --doc docs/performance.md

For each data size it generates the raw CSVs once (``medallion-nb sample-data``),
then runs every contender ``--repeat`` times, interleaved (round r runs the
contenders in an order rotated by r, so none always runs on a warm or a busy
machine), each in a fresh project folder and its own process. Every run's gold
tables are fingerprinted and must match raw DuckDB's. At the largest size it
also measures a run under a 1 GB DuckDB memory limit, an incremental run that
adds 1% new orders (and then a run with nothing new), and the explorer's
preview/filter/profile latency; on the tiny demo data it measures the fixed cost
of a run. ``bench/incremental.py`` measures the incremental runs alone.

Results: a JSON file (``--json``, git-ignored) and a Markdown report
(``--report``; with ``--doc FILE`` the part of FILE between the
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` markers is replaced).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from contenders import CONTENDERS, PYTHON, REPO, Contender  # noqa: E402
from gold import fingerprint, same  # noqa: E402
from measure import Measurement, load_average, run_measured  # noqa: E402
from report import render, replace_section  # noqa: E402

MEDALLION = str(Path(PYTHON).parent / "medallion-nb")
REFERENCE = "duckdb_raw"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- data and project folders ---------------------------------------------
def raw_data(work: Path, orders: int, days: int) -> Path:
    """The raw CSVs for ``orders`` orders (generated once, reused by every run)."""
    raw = work / "data" / f"orders-{orders}-days-{days}"
    stamp = raw / ".complete"
    if not stamp.exists():
        log(f"generating {orders:,} orders over {days} days in {raw}")
        shutil.rmtree(raw, ignore_errors=True)
        subprocess.run([MEDALLION, "sample-data", "--orders", str(orders), "--days", str(days), "--out", str(raw)],
                       check=True, stdout=subprocess.DEVNULL)
        stamp.write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    return raw


def _link_tree(src: Path, dest: Path) -> None:
    """Hard-link the files of ``src`` under ``dest`` (no copy; paths stay inside the project)."""
    for path in src.rglob("*"):
        if path.name.startswith("."):
            continue
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)


def new_project(where: Path, raw: Path) -> Path:
    """A fresh copy of the demo project (config + notebooks) whose data/raw is ``raw``."""
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    shutil.copy2(REPO / "medallion.yaml", where / "medallion.yaml")
    shutil.copytree(REPO / "notebooks", where / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    _link_tree(raw, where / "data" / "raw")
    return where


def add_new_orders(project: Path, fraction: float) -> tuple[str, int]:
    """Land one more day of orders: ``fraction`` of all orders so far, copied from the last day with new ids.

    The copies keep the data's dirt (bad dates and quantities, unknown ids,
    casing, duplicates of earlier orders are not added); their ids continue
    after the largest existing id and their timestamps move to the new day.
    """
    import datetime as dt

    import duckdb

    orders = sorted((project / "data" / "raw" / "orders").glob("orders_*.csv"))
    last_day = dt.date.fromisoformat(orders[-1].stem.removeprefix("orders_"))
    new_day = last_day + dt.timedelta(days=1)
    target = orders[-1].with_name(f"orders_{new_day}.csv")
    con = duckdb.connect()
    every = "read_csv([" + ", ".join(f"'{p}'" for p in orders) + "], all_varchar = true, header = true)"
    (total, top), = con.sql(f"SELECT count(*), max(CAST(order_id[2:] AS BIGINT)) FROM {every}").fetchall()
    take = max(1, int(total * fraction))
    con.execute(f"""COPY (
        SELECT printf('O%08d', {top} + row_number() OVER (ORDER BY order_id)) AS order_id,
               replace(order_ts, '{last_day}', '{new_day}') AS order_ts,
               customer_id, product_id, quantity, unit_price, status, channel
        FROM (SELECT * FROM read_csv('{orders[-1]}', all_varchar = true, header = true)
              USING SAMPLE {take} ROWS (reservoir, 42))
        ORDER BY order_id) TO '{target}' (HEADER, DELIMITER ',')""")
    con.close()
    return target.name, take


# -- runs ------------------------------------------------------------------
def run_contender(contender: Contender, project: Path, out: Path, *, via: str, env: dict[str, str] | None = None,
                  extra: list[str] | None = None, timeout: float = 3600) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    argv = contender.argv(project, out) + (["--via", via] if contender.name == "medallion" else []) + (extra or [])
    load_before = load_average()
    m: Measurement = run_measured(argv, cwd=project, env=env, timeout=timeout, log=out / "run.log")
    record: dict[str, Any] = {
        "contender": contender.name, "ok": m.ok, "wall_s": m.wall_s, "cpu_s": m.cpu_s,
        "peak_rss_mb": m.peak_rss_mb, "layers": m.result.get("layers", {}), "load_before": load_before,
        "load_after": load_average(),
    }
    if not m.ok:
        record["error"] = m.output_tail
        log(f"{contender.name} FAILED (exit {m.returncode}):\n{m.output_tail}")
        return record
    record["gold"] = fingerprint({t: contender.gold(project, out, t) for t in
                                  ("revenue_by_category_month", "customer_lifetime_value", "daily_sales")})
    return record


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r["ok"]]
    if not ok:
        return {"ok": False, "runs": len(runs)}
    layers = sorted({k for r in ok for k in r["layers"]})
    return {
        "ok": len(ok) == len(runs), "runs": len(runs),
        "wall_s": statistics.median(r["wall_s"] for r in ok),
        "wall_min_s": min(r["wall_s"] for r in ok),
        "cpu_s": statistics.median(r["cpu_s"] for r in ok),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ok),
        "layers": {k: statistics.median(r["layers"].get(k, 0.0) for r in ok) for k in layers},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, action="append", help="data size(s); default 1000000 and 10000000")
    parser.add_argument("--days", type=int, default=90, help="days of order files (default 90)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender and size (default 3)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help=f"comma-separated, from {', '.join(CONTENDERS)} (default: all)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medallion-bench"), help="scratch folder")
    parser.add_argument("--via", choices=("auto", "cli", "papermill"), default="auto",
                        help="how to run medallion_nb: `medallion-nb run` (cli), papermill directly, or cli "
                             "when this install has it (auto, default)")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the fixed-overhead, incremental, explorer and memory-limit measurements")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB memory limit of the limited run (1GB)")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/<time>.json)")
    parser.add_argument("--report", type=Path, default=BENCH / "results" / "report.md", help="Markdown report")
    parser.add_argument("--doc", type=Path, help="also write the report into this file between the bench markers")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (default: delete it)")
    args = parser.parse_args(argv)

    sizes = args.orders or [1_000_000, 10_000_000]
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contender(s) {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    skipped = {n: why for n in names if (why := CONTENDERS[n].available())}
    for name, why in skipped.items():
        log(f"skipping {name}: {why}")
    contenders = [CONTENDERS[n] for n in names if n not in skipped]
    via = args.via
    if via == "auto":
        cli = subprocess.run([MEDALLION, "run", "--help"], capture_output=True).returncode == 0
        via = "cli" if cli else "papermill"
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    results: dict[str, Any] = {
        "started": started, "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
        "versions": _versions(), "via": via, "days": args.days, "repeat": args.repeat,
        "sizes": {}, "skipped": skipped,
    }

    try:
        raws = {n: raw_data(work, n, args.days) for n in sizes}
        runs: dict[int, dict[str, list[dict[str, Any]]]] = {n: {c.name: [] for c in contenders} for n in sizes}
        keep_medallion: dict[int, Path] = {}
        for r in range(args.repeat):
            for n in sizes:
                order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
                for c in order:
                    project = new_project(work / "runs" / f"{c.name}-{n}", raws[n])
                    log(f"round {r + 1}/{args.repeat}: {c.name} on {n:,} orders")
                    record = run_contender(c, project, project / "bench-out", via=via)
                    runs[n][c.name].append(record)
                    log(f"  {record['wall_s']:.1f} s, peak {record['peak_rss_mb']:.0f} MB"
                        + ("" if record["ok"] else " FAILED"))
                    if c.name == "medallion" and record["ok"]:
                        keep_medallion[n] = project
                    else:
                        shutil.rmtree(project, ignore_errors=True)
        for n in sizes:
            results["sizes"][str(n)] = _size_summary(runs[n])

        if not args.no_extras:
            biggest = max(sizes)
            results["extras"] = extras(work, contenders, raws[biggest], biggest, keep_medallion.get(biggest),
                                       via=via, repeat=args.repeat, memory_limit=args.memory_limit,
                                       reference_gold=results["sizes"][str(biggest)]["gold"])
    finally:
        results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        json_path = args.json or BENCH / "results" / f"{started.replace(':', '')}.json"
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        log(f"results: {json_path}")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    text = render(results)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    log(f"report: {args.report}")
    if args.doc:
        replace_section(args.doc, text)
        log(f"updated {args.doc}")
    disagree = [f"{n}: {c}" for n, s in results["sizes"].items() for c, v in s["contenders"].items()
                if v.get("agrees") is False]
    failed = [f"{n}: {c}" for n, s in results["sizes"].items() for c, v in s["contenders"].items() if not v["ok"]]
    if disagree or failed:
        log("gold results differ: " + ", ".join(disagree) if disagree else "runs failed: " + ", ".join(failed))
        return 1
    return 0


def _size_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    reference = next((r["gold"] for r in runs.get(REFERENCE, []) if r["ok"]), None)
    out: dict[str, Any] = {"contenders": {}, "gold": reference}
    for name, records in runs.items():
        summary = summarise(records)
        golds = [r["gold"] for r in records if r["ok"]]
        summary["agrees"] = None if reference is None or not golds else all(not same(g, reference) for g in golds)
        summary["differs_on"] = sorted({t for g in golds for t in same(g, reference)}) if reference else []
        summary["all_runs"] = records
        out["contenders"][name] = summary
    ref = out["contenders"].get(REFERENCE, {})
    for summary in out["contenders"].values():
        if summary.get("wall_s") and ref.get("wall_s"):
            summary["ratio"] = summary["wall_s"] / ref["wall_s"]
    return out


def extras(work: Path, contenders: list[Contender], raw: Path, orders: int, built: Path | None, *, via: str,
           repeat: int, memory_limit: str, reference_gold: dict[str, Any] | None) -> dict[str, Any]:
    """Fixed overhead, memory limit, incremental run and explorer latency (medallion_nb)."""
    out: dict[str, Any] = {"orders": orders}
    medallion = CONTENDERS["medallion"]
    if medallion not in contenders:
        return out
    # Fixed overhead: the whole pipeline on the tiny demo data, and one trivial notebook through papermill.
    demo_runs, single = [], []
    trivial = _trivial_notebook(work)
    for r in range(repeat):
        project = new_project(work / "runs" / "demo", REPO / "data" / "raw")
        log(f"fixed overhead {r + 1}/{repeat}: demo data")
        demo_runs.append(run_contender(medallion, project, project / "bench-out", via=via))
        m = run_measured([PYTHON, "-m", "papermill", "--no-progress-bar", str(trivial),
                          str(work / "trivial-out.ipynb")])
        single.append({"wall_s": m.wall_s, "peak_rss_mb": m.peak_rss_mb, "ok": m.ok})
    out["demo"] = summarise(demo_runs) | {"all_runs": demo_runs}
    out["single_notebook"] = {"wall_s": statistics.median(s["wall_s"] for s in single),
                              "peak_rss_mb": max(s["peak_rss_mb"] for s in single), "ok": all(s["ok"] for s in single)}
    shutil.rmtree(work / "runs" / "demo", ignore_errors=True)

    # A run under a DuckDB memory limit (spilling to disk), medallion_nb and raw DuckDB.
    limited = {}
    for c, env, extra in ((medallion, {"MEDALLION_MEMORY_LIMIT": memory_limit}, None),
                          (CONTENDERS[REFERENCE], None, ["--memory-limit", memory_limit])):
        project = new_project(work / "runs" / f"limited-{c.name}", raw)
        log(f"memory limit {memory_limit}: {c.name} on {orders:,} orders")
        limited[c.name] = run_contender(c, project, project / "bench-out", via=via, env=env, extra=extra)
        if limited[c.name]["ok"] and reference_gold:
            limited[c.name]["agrees"] = not same(limited[c.name]["gold"], reference_gold)
        shutil.rmtree(project, ignore_errors=True)
    out["memory_limit"] = {"limit": memory_limit, "runs": limited}

    if built is None:
        return out
    # Explorer latency on the big order-lines table, in a fresh process.
    log("explorer latency")
    m = run_measured([PYTHON, str(BENCH / "explorer.py"), str(built)])
    out["explorer"] = m.result | {"ok": m.ok, "peak_rss_mb": m.peak_rss_mb}
    # Incremental: one more day with 1% new orders, then the same pipeline again.
    name, added = add_new_orders(built, 0.01)
    log(f"incremental: added {added:,} orders in {name}")
    inc = run_contender(medallion, built, built / "bench-out-incremental", via=via)
    check = new_project(work / "runs" / "incremental-check", built / "data" / "raw")
    ref = run_contender(CONTENDERS[REFERENCE], check, check / "bench-out", via=via)
    inc["agrees"] = bool(inc["ok"] and ref["ok"] and not same(inc["gold"], ref["gold"]))
    # And once more with nothing new: every notebook up to date, no table gets a new version.
    before = table_versions(built)
    log("incremental: a run with nothing new")
    nothing = run_contender(medallion, built, built / "bench-out-nothing", via=via)
    after = table_versions(built)
    nothing["new_versions"] = sorted(t for t in after if after[t] != before.get(t))
    out["incremental"] = {"file": name, "added_orders": added, "run": inc, "reference": ref, "nothing_new": nothing}
    shutil.rmtree(check, ignore_errors=True)
    return out


def table_versions(project: Path) -> dict[str, int]:
    """The current Delta version of every table of a project's lake."""
    from deltalake import DeltaTable

    lake = project / "data" / "lake"
    return {f"{log.parent.parent.name}.{log.parent.name}": DeltaTable(str(log.parent)).version()
            for log in sorted(lake.glob("*/*/_delta_log")) if not log.parent.parent.name.startswith("_")}


def _trivial_notebook(work: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('x = 1  # a parameter')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("x + 1")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = work / "trivial.ipynb"
    nbformat.write(nb, path)
    return path


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("medallion_nb", "duckdb", "deltalake", "pyarrow", "polars", "pandas", "papermill"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    om = BENCH / ".venv-openmedallion" / "bin" / "python"
    if om.exists():
        got = subprocess.run([str(om), "-c", "from importlib.metadata import version as v; "
                              "print(v('openmedallion'), v('polars'), v('dlt'))"], capture_output=True, text=True)
        if got.returncode == 0:
            om_version, om_polars, om_dlt = got.stdout.split()
            found |= {"openmedallion": om_version, "openmedallion's polars": om_polars, "openmedallion's dlt": om_dlt}
    return found


if __name__ == "__main__":
    sys.exit(main())
