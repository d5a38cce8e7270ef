"""Explorer latency: preview, filter and profile of a big table with the explorer's own query builders.

Run in a fresh process against a built lake; prints ``BENCH_RESULT {op: seconds}``.
Each operation is what the explorer runs when a person clicks: one page of rows,
a sorted page, a filter (row count plus its first page) and the column profile
(approximate distinct counts, as the explorer does above its exact-count limit).

Usage: python bench/explorer.py PROJECT_DIR [TABLE]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import medallion_nb as mnb
from medallion_nb.widgets import queries as q


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main(argv: list[str]) -> int:
    project = argv[0]
    table = argv[1] if len(argv) > 1 else "silver.order_lines"
    out: dict[str, float] = {}
    out["open"], lake = timed(lambda: mnb.connect(project))
    rel = lake.table(table)
    rows = lake.count(table)
    out["preview"], _ = timed(lambda: q.page_relation(rel, limit=20).fetchall())
    out["preview_last_page"], _ = timed(lambda: q.page_relation(rel, limit=20, offset=rows - 20).fetchall())
    out["preview_sorted"], _ = timed(lambda: q.page_relation(rel, order_by="revenue", descending=True,
                                                              limit=20).fetchall())

    def filtered() -> int:
        sub = q.filter_relation(rel, [q.Condition("category", "=", "books"), q.Condition("revenue", ">", "100")])
        count = q.count_rows(sub)
        q.page_relation(sub, limit=20).fetchall()
        return count

    out["filter"], matched = timed(filtered)
    out["profile"], _ = timed(lambda: q.profile_columns(rel, exact_distinct=False))
    out["profile_exact"], _ = timed(lambda: q.profile_columns(rel, exact_distinct=True))
    print("BENCH_RESULT " + json.dumps({"ops": out, "rows": rows, "matched": matched}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
