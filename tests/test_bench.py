"""The benchmark harness, on a tiny data set: it runs, the contenders agree, the report is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.notebook
def test_harness_runs_medallion_and_raw_duckdb_and_they_agree(tmp_path: Path):
    report, results = tmp_path / "report.md", tmp_path / "results.json"
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nintro\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nnotes\n")
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--orders", "20000", "--days", "10", "--repeat", "1",
         "--contenders", "duckdb_raw,medallion", "--no-extras", "--work", str(tmp_path / "work"),
         "--report", str(report), "--json", str(results), "--doc", str(doc)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    data = json.loads(results.read_text())
    size = data["sizes"]["20000"]
    medallion, raw = size["contenders"]["medallion"], size["contenders"]["duckdb_raw"]
    assert medallion["ok"]
    assert raw["ok"]
    assert medallion["agrees"] is True
    assert set(medallion["layers"]) == {"bronze", "silver", "gold"}
    assert medallion["peak_rss_mb"] > raw["peak_rss_mb"] > 10  # the kernels were measured, not just the wrapper
    gold = size["gold"]
    assert gold["daily_sales"]["rows"] == 10
    assert gold["customer_lifetime_value"]["rows"] == 200  # every customer, with or without orders
    assert gold["revenue_by_category_month"]["rows"] > 0

    text = report.read_text()
    assert "| **medallion_nb**" in text
    assert "| raw DuckDB SQL" in text
    assert "peak RSS ≤ 1.5 GB" in text
    assert doc.read_text().startswith("# Performance\n\nintro\n\n<!-- bench:begin -->\nMeasured ")
    assert doc.read_text().endswith("<!-- bench:end -->\n\nnotes\n")
    assert not (tmp_path / "work").exists()  # the scratch folder is removed


@pytest.mark.notebook
def test_incremental_bench_measures_one_more_day_and_a_run_with_nothing_new(tmp_path: Path):
    results = tmp_path / "incremental.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "incremental.py"), "--orders", "20000", "--days", "10",
         "--work", str(tmp_path / "work"), "--json", str(results)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(results.read_text())
    assert result["added_orders"] == 200
    assert result["file"] == "orders_2026-01-11.csv"
    assert result["full"]["ok"]
    assert result["incremental"]["ok"]
    assert result["incremental"]["agrees"] is True  # gold after the extra day = raw DuckDB over all files
    assert result["nothing_new"]["ok"]
    assert result["nothing_new"]["new_versions"] == []
    assert "nothing new" in done.stderr
    assert "0 new table versions" in done.stderr
