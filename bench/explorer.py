"""Explorer latency: preview, filter and profile of a big table, through the explorer app itself.

Run in a fresh process against a built lake; prints ``BENCH_RESULT {"ops": {op: seconds}, ...}``.
Each operation is what a person waits for after a click in ``GoldExplorer`` (the app is
driven by setting its controls, as the tests do): opening the table (its first page),
another page, the last page, a sort, a filter (row count plus its first page), and the
Profile tab on every row of the table and on the filtered rows (with the top values of
the column the tab opens on, which it shows too).

``ops`` are wall-clock seconds; ``cpu`` the process's CPU seconds for the same operations
(all DuckDB threads), steadier than wall time on a machine shared with other work.

Usage: python bench/explorer.py PROJECT_DIR [TABLE]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import medallion_nb as mnb


class Timings:
    """Wall-clock and CPU seconds per operation."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, op: str, fn: Callable[[], Any]) -> Any:
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        self.wall[op] = time.perf_counter() - start
        self.cpu[op] = round(time.process_time() - cpu, 3)
        return result


def main(argv: list[str]) -> int:
    project = argv[0]
    table = argv[1] if len(argv) > 1 else "silver.order_lines"
    from medallion_nb.widgets import GoldExplorer

    timed = Timings()
    app = timed("open", lambda: GoldExplorer(mnb.connect(project), table))
    rows = app.total_rows
    timed("preview", lambda: setattr(app.grid, "page", 1))
    timed("preview_last_page", lambda: setattr(app.grid, "page", -(-rows // app.grid.page_size) - 1))
    timed("preview_sorted", lambda: setattr(app.grid, "sort_column", "revenue"))
    with app._setting():  # pick column and operator without applying, as a person does before typing the value
        app.filter_column.value, app.filter_op.value = "category", "="
    timed("filter", lambda: setattr(app.filter_value, "value", "books"))
    matched = app.filtered_rows
    timed("profile_filtered", lambda: app.show("Profile"))
    app.show("Preview")
    app.clear_button.click()
    timed("profile", lambda: app.show("Profile"))
    if app.error:
        raise SystemExit(f"the explorer reported: {app.error}")
    print("BENCH_RESULT " + json.dumps({"ops": timed.wall, "cpu": timed.cpu, "rows": rows, "columns": len(app.types),
                                        "matched": matched, "top_values_of": app.top_column.value}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
