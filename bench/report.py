"""Turn the harness's results into Markdown: the tables, every target next to its figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
REFERENCE = "duckdb_raw"
LABELS = {
    "medallion": "**medallion_nb** (3 notebooks, papermill)",
    "duckdb_raw": "raw DuckDB SQL → Parquet",
    "polars_nb": "Polars (lazy, Parquet)",
    "pandas_nb": "pandas",
    "openmedallion_nb": "openmedallion (PyPI)",
}
RSS_TARGET_MB = 1536
EXPLORER_TARGET_S = 1.0


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} s"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:,.2f} GB" if value >= 1024 else f"{value:,.0f} MB"


def _ok(flag: bool | None) -> str:
    return "-" if flag is None else ("met" if flag else "**not met**")


def render(results: dict[str, Any]) -> str:
    lines = [f"Measured {results['started']} - {results.get('finished', '?')} with "
             f"`python bench/{results['command']}`; medallion_nb ran via "
             f"{'`medallion-nb run`' if results['via'] == 'cli' else 'papermill directly'}.",
             f"Machine: {results['machine']['cpus']} cores, {results['machine']['memory_gb']} GB RAM, "
             f"Python {results['machine']['python']}. Versions: "
             + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".", ""]
    if results.get("skipped"):
        lines += ["Skipped: " + "; ".join(f"{k} ({v})" for k, v in results["skipped"].items()), ""]
    lines += _targets(results)
    for size, data in results["sizes"].items():
        lines += _size_table(int(size), data, results["repeat"])
    extras = results.get("extras") or {}
    if extras:
        lines += _extras(extras)
    return "\n".join(lines).rstrip() + "\n"


def _size_table(orders: int, data: dict[str, Any], repeat: int) -> list[str]:
    out = [f"### {orders:,} orders", "",
           f"Median of {repeat} interleaved runs (min in brackets); CPU is user + system time of the whole "
           "process tree; peak RSS is the largest sum over the process tree (kernels included), worst run.", "",
           "| contender | bronze | silver | gold | total | CPU | peak RSS | x fastest | x raw DuckDB | "
           "gold = raw DuckDB |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    fastest = _fastest(data["contenders"])
    for name, s in data["contenders"].items():
        if not s.get("wall_s"):
            out.append(f"| {LABELS.get(name, name)} | failed | | | | | | | | |")
            continue
        lay = s["layers"]
        agrees = {True: "yes", False: "**no** (" + ", ".join(s["differs_on"]) + ")", None: "-"}[s["agrees"]]
        out.append(f"| {LABELS.get(name, name)} | {_s(lay.get('bronze'))} | {_s(lay.get('silver'))} | "
                   f"{_s(lay.get('gold'))} | **{_s(s['wall_s'])}** ({_s(s['wall_min_s'])}) | {_s(s['cpu_s'])} | "
                   f"{_mb(s['peak_rss_mb'])} | {s['wall_s'] / fastest[1]:.2f}x | {s.get('ratio', 0):.2f}x | "
                   f"{agrees} |")
    gold = data.get("gold") or {}
    if gold:
        out += ["", "Gold fingerprint (raw DuckDB; every contender marked *yes* produced exactly these rows): "
                + "; ".join(f"`{t}` {g['rows']:,} rows, checksum `{g['checksum']}`, revenue {g['revenue']:,.2f}"
                            for t, g in gold.items()) + "."]
    return [*out, ""]


def _targets(results: dict[str, Any]) -> list[str]:
    sizes = results["sizes"]
    biggest = str(max(int(s) for s in sizes))
    big = sizes[biggest]["contenders"]
    med, raw = big.get("medallion", {}), big.get(REFERENCE, {})
    extras = results.get("extras") or {}
    demo = (extras.get("demo") or {}).get("wall_s")
    single = (extras.get("single_notebook") or {}).get("wall_s")
    rows = ["### Targets", "", f"At {int(biggest):,} orders unless noted.", "",
            "| target | measured | |", "|---|---|---|"]
    fastest = _fastest(big)
    if med.get("wall_s") and fastest:
        name, best = fastest
        rows.append(f"| full run ≤ 1.1 x the fastest contender ({LABELS.get(name, name)}, {_s(best)}) | "
                    f"{_s(med['wall_s'])} = {med['wall_s'] / best:.2f}x | {_ok(med['wall_s'] <= 1.1 * best)} |")
    if med.get("wall_s") and raw.get("wall_s"):
        rows.append(f"| full run ≤ 1.0 x raw DuckDB + 2 s ({_s(raw['wall_s'])} + 2 s) | {_s(med['wall_s'])} "
                    f"({med['wall_s'] / raw['wall_s']:.2f}x raw) | {_ok(med['wall_s'] <= raw['wall_s'] + 2)} |")
    if med.get("peak_rss_mb"):
        rows.append(f"| peak RSS ≤ 1.5 GB, default settings (runner and kernels) | {_mb(med['peak_rss_mb'])} | "
                    f"{_ok(med['peak_rss_mb'] <= RSS_TARGET_MB)} |")
    verdicts = [s.get("agrees") for data in sizes.values() for s in data["contenders"].values()]
    if verdicts:
        differ = [f"{name} at {int(size):,}" for size, data in sizes.items()
                  for name, s in data["contenders"].items() if s.get("agrees") is False]
        rows.append(f"| every contender's gold identical (every size) | "
                    f"{'yes' if not differ else 'differs: ' + ', '.join(differ)} | {_ok(not differ)} |")
    for other in ("pandas_nb", "openmedallion_nb"):
        o = big.get(other, {})
        if med.get("wall_s") and o.get("wall_s"):
            speedup = o["wall_s"] / med["wall_s"]
            rows.append(f"| ≥ 2.5x faster than {LABELS[other]} | {speedup:.2f}x ({_s(o['wall_s'])}) | "
                        f"{_ok(speedup >= 2.5)} |")
    if demo is not None and single:
        rows.append(f"| demo data, three layers < 2 x one trivial papermill notebook (2 x {_s(single)}) | "
                    f"{_s(demo)} = {demo / single:.2f}x | {_ok(demo < 2 * single)} |")
    inc = extras.get("incremental")
    if inc and med.get("wall_s"):
        run = inc["run"]
        share = run["wall_s"] / med["wall_s"] if run.get("ok") else None
        rows.append(f"| incremental run, +1% orders ({inc['added_orders']:,}) < 10% of a full run | "
                    f"{_s(run['wall_s'])} = {share:.0%} of {_s(med['wall_s'])}; gold = full rebuild: "
                    f"{'yes' if run.get('agrees') else '**no**'} | {_ok(share is not None and share < 0.10)} |")
        nothing = inc.get("nothing_new")
        if nothing:
            fine = nothing.get("ok") and not nothing.get("new_versions")
            rows.append(f"| run with nothing new < 3 s, no new table versions | {_s(nothing['wall_s'])}, "
                        f"{len(nothing.get('new_versions', []))} new versions | "
                        f"{_ok(bool(fine) and nothing['wall_s'] < 3)} |")
    limited = (extras.get("memory_limit") or {}).get("runs", {})
    if "medallion" in limited:
        r = limited["medallion"]
        rows.append(f"| completes with a {extras['memory_limit']['limit']} DuckDB memory limit | "
                    + (f"yes: {_s(r['wall_s'])}, peak {_mb(r['peak_rss_mb'])}" if r["ok"] else "**failed**")
                    + f" | {_ok(r['ok'])} |")
    explorer = (extras.get("explorer") or {}).get("ops", {})
    for op, what in (("preview", "preview (another page)"), ("filter", "filter"), ("profile", "profile")):
        if op in explorer:
            rows.append(f"| explorer {what} on {extras['explorer'].get('rows', 0):,} order lines x "
                        f"{extras['explorer'].get('columns', 19)} columns < 1 s | "
                        f"{explorer[op]:.2f} s | {_ok(explorer[op] < EXPLORER_TARGET_S)} |")
    return [*rows, ""]


def _fastest(contenders: dict[str, Any]) -> tuple[str, float] | None:
    """The contender with the shortest median wall time among those whose gold agrees."""
    timed = [(name, s["wall_s"]) for name, s in contenders.items()
             if s.get("wall_s") and s.get("agrees") is not False]
    return min(timed, key=lambda item: item[1]) if timed else None


def _extras(extras: dict[str, Any]) -> list[str]:
    out = ["### Fixed overhead, memory limit, incremental run, explorer", ""]
    demo, single = extras.get("demo"), extras.get("single_notebook")
    if demo and demo.get("wall_s"):
        lay = demo["layers"]
        out.append(f"- **Demo data** (the repo's 4,000 orders), three layers: {_s(demo['wall_s'])} median "
                   f"(bronze {_s(lay.get('bronze'))}, silver {_s(lay.get('silver'))}, gold {_s(lay.get('gold'))}), "
                   f"peak {_mb(demo['peak_rss_mb'])}. One trivial two-cell notebook through papermill on its own: "
                   f"{_s(single and single['wall_s'])}.")
    limited = (extras.get("memory_limit") or {}).get("runs", {})
    for name, r in limited.items():
        out.append(f"- **{extras['memory_limit']['limit']} DuckDB memory limit**, {LABELS.get(name, name)}: "
                   + (f"{_s(r['wall_s'])}, peak {_mb(r['peak_rss_mb'])}, gold = raw DuckDB's: "
                      f"{ {True: 'yes', False: '**no**'}.get(r.get('agrees'), '-')}" if r["ok"]
                      else "failed: " + r.get("error", "")[-300:]))
    inc = extras.get("incremental")
    if inc:
        run, ref = inc["run"], inc["reference"]
        lay = run.get("layers", {})
        out.append(f"- **Incremental**: one more day file ({inc['file']}, {inc['added_orders']:,} new orders) "
                   f"landed after the full run; the next run took {_s(run['wall_s'])} (bronze {_s(lay.get('bronze'))}, "
                   f"silver {_s(lay.get('silver'))}, gold {_s(lay.get('gold'))}), peak {_mb(run['peak_rss_mb'])}; "
                   f"its gold equals raw DuckDB's full rebuild over all files: {'yes' if run.get('agrees') else 'no'} "
                   f"(rebuild took {_s(ref['wall_s'])}).")
        nothing = inc.get("nothing_new")
        if nothing:
            out.append(f"- **Nothing new**: the run after that took {_s(nothing['wall_s'])}, every layer up to date, "
                       f"{len(nothing.get('new_versions', []))} new table versions.")
    explorer = extras.get("explorer") or {}
    if explorer.get("ops"):
        ops = explorer["ops"]
        out.append(f"- **Explorer** on `silver.order_lines` ({explorer.get('rows', 0):,} rows), fresh process: "
                   + ", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in ops.items())
                   + f" (the filter matched {explorer.get('matched', 0):,} rows).")
    return [*out, ""]


def replace_section(doc: Path, text: str) -> None:
    """Put ``text`` between the bench markers of ``doc`` (appending the markers if missing)."""
    current = doc.read_text() if doc.exists() else ""
    block = f"{BEGIN}\n{text.rstrip()}\n{END}"
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        doc.write_text(head + block + tail)
    else:
        doc.write_text(current.rstrip() + ("\n\n" if current else "") + block + "\n")
