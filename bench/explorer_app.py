"""Explorer latency through the app itself: what a person waits for after each click.

Builds (once) a gold-like table of N rows in a scratch project, then times, in a
fresh process, opening the explorer on it, a filter from the controls, the next
page, a sort, the profile and the chart. Prints ``BENCH_RESULT {op: seconds}``.

Usage: python bench/explorer_app.py SCRATCH_DIR [ROWS]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import medallion_nb as mnb

CONFIG = "name: bench\nlake: lake\nlayers: [{name: gold, notebook: nb.ipynb}]\n"
TABLE = """
SELECT TIMESTAMP '2025-01-01' + INTERVAL (i * 15) SECOND                    AS ordered_at,
       ['DE', 'FR', 'IT', 'SE', 'ES', 'PL', 'NL', 'US'][1 + i % 8]            AS country,
       ['books', 'toys', 'garden', 'home', 'beauty'][1 + (i // 7) % 5]        AS category,
       'C' || lpad((i % 50000)::VARCHAR, 6, '0')                              AS customer_id,
       (1 + i % 9)::BIGINT                                                     AS units,
       round(5 + (i * 7.31) % 500, 2)::DECIMAL(18,2)                          AS revenue,
       ((i * 3.7) % 40 - 5)::DOUBLE                                            AS margin,
       CASE WHEN i % 50 = 0 THEN NULL ELSE 'note ' || (i % 1000) END          AS note
FROM range({rows}) t(i)
"""


def build(root: Path, rows: int) -> None:
    marker = root / f".built-{rows}"
    if marker.exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    (root / "medallion.yaml").write_text(CONFIG)
    (root / "nb.ipynb").write_text("{}")
    with mnb.connect(root, run_id="bench") as lake:
        lake.write("gold.orders", TABLE.format(rows=rows))
    marker.write_text("")


def timed(fn):
    start = time.perf_counter()
    fn()
    return round(time.perf_counter() - start, 3)


def main(argv: list[str]) -> int:
    root, rows = Path(argv[0]), int(argv[1]) if len(argv) > 1 else 2_000_000
    build(root, rows)
    from medallion_nb.widgets import GoldExplorer

    lake = mnb.connect(root)
    out: dict[str, float] = {}
    holder: dict[str, GoldExplorer] = {}
    out["open"] = timed(lambda: holder.setdefault("app", GoldExplorer(lake, "gold.orders")))
    app = holder["app"]

    def filter_() -> None:
        app.filter_column.value = "country"
        app.filter_value.value = "DE"

    out["filter"] = timed(filter_)
    grid = getattr(app, "grid", None)
    if grid is not None:  # the paged grid
        out["next_page"] = timed(lambda: setattr(grid, "page", 1))
        out["sort"] = timed(lambda: setattr(grid, "sort_column", "revenue"))
    else:
        out["next_page"] = timed(app.next_button.click)
        out["sort"] = timed(lambda: setattr(app.sort_column, "value", "revenue"))
    out["profile"] = timed(lambda: app.show("Profile"))
    out["chart"] = timed(lambda: app.show("Chart"))
    app.clear_button.click()
    app.show("Preview")
    out["profile_all_rows"] = timed(lambda: app.show("Profile"))
    out["chart_all_rows"] = timed(lambda: app.show("Chart"))
    print("BENCH_RESULT " + json.dumps({"rows": rows, "matched": app.filtered_rows, "ops": out}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
