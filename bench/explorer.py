"""Explorer latency: preview, filter and profile of a big table, through the explorer app itself.

Run in a fresh process against a built lake; prints ``BENCH_RESULT {"ops": {op: seconds}, ...}``.
Each operation is what a person waits for after a click in ``GoldExplorer`` (the app is
driven by setting its controls, as the tests do): opening the table (its first page),
another page, the last page, a sort, a filter (row count plus its first page), and the
Profile tab on every row of the table and on the filtered rows (with the top values of
one column, which the tab shows too).

Usage: python bench/explorer.py PROJECT_DIR [TABLE]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import medallion_nb as mnb


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    project = argv[0]
    table = argv[1] if len(argv) > 1 else "silver.order_lines"
    from medallion_nb.widgets import GoldExplorer

    out: dict[str, float] = {}
    holder: dict[str, Any] = {}
    out["open"] = timed(lambda: holder.setdefault("app", GoldExplorer(mnb.connect(project), table)))
    app = holder["app"]
    rows = app.total_rows
    out["preview"] = timed(lambda: setattr(app.grid, "page", 1))
    out["preview_last_page"] = timed(lambda: setattr(app.grid, "page", -(-rows // app.grid.page_size) - 1))
    out["preview_sorted"] = timed(lambda: setattr(app.grid, "sort_column", "revenue"))
    with app._setting():  # pick column and operator without applying, as a person does before typing the value
        app.filter_column.value, app.filter_op.value = "category", "="
    out["filter"] = timed(lambda: setattr(app.filter_value, "value", "books"))
    matched = app.filtered_rows
    out["profile_filtered"] = timed(lambda: app.show("Profile"))
    app.show("Preview")
    app.clear_button.click()
    out["profile"] = timed(lambda: app.show("Profile"))
    if app.error:
        raise SystemExit(f"the explorer reported: {app.error}")
    print("BENCH_RESULT " + json.dumps({"ops": out, "rows": rows, "columns": len(app.types), "matched": matched}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
