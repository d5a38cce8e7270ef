"""`medallion-nb backfill`: one run per day, in order; repeating it changes nothing."""

from __future__ import annotations

import json
from datetime import date

import pytest

from medallion_nb import UsageError, connect
from medallion_nb.cli import main
from medallion_nb.runner.backfill import days

pytestmark = pytest.mark.notebook


def test_days_are_in_order_and_the_range_is_checked():
    assert list(days(date(2026, 1, 30), date(2026, 2, 2))) == [
        date(2026, 1, 30), date(2026, 1, 31), date(2026, 2, 1), date(2026, 2, 2)]
    with pytest.raises(UsageError, match="--end 2026-01-01 is before --start 2026-01-02"):
        list(days(date(2026, 1, 2), date(2026, 1, 1)))


def versions(project) -> dict[str, int]:
    with connect(project) as lake:
        return {name: lake.info(name)["version"] for name in lake.tables()}


def test_backfill_runs_each_day_in_order_and_is_idempotent(demo_project, capsys):
    assert main(["backfill", "--project", str(demo_project), "--start", "2026-01-02", "--end", "2026-01-04"]) == 0
    records = [json.loads((demo_project / "runs" / f"backfill-2026-01-0{d}" / "run.json").read_text())
               for d in (2, 3, 4)]
    assert [r["parameters"]["run_date"] for r in records] == ["2026-01-02", "2026-01-03", "2026-01-04"]
    assert [r["status"] for r in records] == ["succeeded"] * 3
    assert records[0]["finished"] <= records[1]["started"]
    assert records[1]["finished"] <= records[2]["started"]
    with connect(demo_project) as lake:
        by_run = dict(lake.sql("SELECT _run_id, max(regexp_extract(_source_file, '(\\d{4}-\\d{2}-\\d{2})', 1)) "
                               "FROM bronze.orders GROUP BY 1").fetchall())
        last_day = lake.sql("SELECT max(order_date) FROM gold.daily_sales").fetchall()[0][0]
    assert by_run == {"backfill-2026-01-02": "2026-01-02", "backfill-2026-01-03": "2026-01-03",
                      "backfill-2026-01-04": "2026-01-04"}
    assert str(last_day) == "2026-01-04"
    before = versions(demo_project)
    capsys.readouterr()

    # Again: every day is already done; nothing runs, no table gets a new version.
    assert main(["backfill", "--project", str(demo_project), "--start", "2026-01-02", "--end", "2026-01-04"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-3:] == ["2026-01-02 already done", "2026-01-03 already done", "2026-01-04 already done"]
    assert versions(demo_project) == before
    with pytest.raises(SystemExit):
        main(["backfill", "--project", str(demo_project), "--start", "2026-01-02"])
