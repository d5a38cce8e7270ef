"""The generated flow's commands really run the pipeline.

Each task is executed as Kestra would: in order, in a fresh working directory,
with its Pebble rendered for one execution id and trigger date, through
``/bin/sh`` with ``set -e`` (Kestra's failFast), the task's ``env`` added and
papermill/medallion-nb on PATH. Only the project mount differs: the flow's
``project_dir`` variable points at a temporary copy of the demo project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from medallion_nb import connect
from medallion_nb.cli import main
from tests.conftest import copy_demo_project
from tests.kestra_sim import Execution, check_references, flow_inputs, render, run_flow

pytestmark = pytest.mark.notebook

VENV_BIN = str(Path(sys.executable).parent)
LINEAGE = {"_ingested_at", "_run_id"}  # differ between any two runs by design


def generated_flow(project: Path) -> dict:
    """The flow file `medallion-nb kestra` writes for ``project``, read back as Kestra would."""
    assert main(["kestra", "--project", str(project)]) == 0
    [flow_file] = (project / "kestra" / "flows").glob("*.yml")
    flow = yaml.safe_load(flow_file.read_text(encoding="utf-8"))
    assert check_references(flow) == []
    return flow


def execute(flow: dict, project: Path, workroot: Path, execution_id: str, trigger: datetime | None,
            inputs: dict | None = None) -> Execution:
    execution = Execution(execution_id, datetime.now(UTC), flow_inputs(flow, inputs), trigger_date=trigger)
    return run_flow(flow, execution, workroot, variables={"project_dir": str(project)}, path_prefix=VENV_BIN)


def lake_contents(project: Path) -> dict[str, list[str]]:
    """Every table's rows (lineage columns left out), sorted, as text."""
    contents = {}
    with connect(project) as lake:
        for name in lake.tables():
            rel = lake.table(name)
            columns = ", ".join(f'"{c}"' for c in rel.columns if c not in LINEAGE)
            contents[name] = sorted(repr(row) for row in rel.project(columns).fetchall())
    return contents


def cli_run(project: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "medallion_nb", "run", "--project", str(project), *args],
                          capture_output=True, text=True, timeout=900, check=False,
                          env={**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_flow_builds_the_same_lake_as_medallion_nb_run(tmp_path, demo_project):
    by_cli = copy_demo_project(tmp_path / "by_cli")
    cli_run(by_cli, "--run-id", "cli-run")

    config = demo_project / "medallion.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("kestra:\n", "kestra:\n  export: true\n"),
                      encoding="utf-8")
    flow = generated_flow(demo_project)
    assert [t["id"] for t in flow["tasks"]] == ["bronze", "silver", "gold", "publish", "export"]
    # The daily schedule's run for the day the last file landed.
    execution = execute(flow, demo_project, tmp_path / "work", "4wjtkzwVGBM9yKnjm3yv8r",
                        datetime(2026, 2, 4, 6, 0, tzinfo=UTC))
    assert execution.failed is None
    assert execution.error_logs == []  # nothing on stderr: Kestra would log it as errors

    by_flow = lake_contents(demo_project)
    assert set(by_flow) == set(lake_contents(by_cli))
    assert {t for t in by_flow if t.startswith("gold.")} == {
        "gold.revenue_by_category_month", "gold.customer_lifetime_value", "gold.daily_sales"}
    assert by_flow == lake_contents(by_cli)

    # Each layer's executed notebook: the task's output file, and kept in the project's runs folder.
    for layer in ("bronze", "silver", "gold"):
        run = execution.runs[layer]
        kept = demo_project / "runs" / execution.id / layer / f"{layer}.ipynb"
        assert run.output_files[f"{layer}.ipynb"].read_bytes() == kept.read_bytes()
        book = json.loads(kept.read_text(encoding="utf-8"))
        injected = next(c for c in book["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
        source = "".join(injected["source"])
        assert f'run_id = "{execution.id}"' in source
        assert 'run_date = "2026-02-04"' in source
        assert "full_refresh = False" in source
        assert f'project_dir = "{demo_project}"' in source
        assert (demo_project / "runs" / execution.id / layer / f"{layer}.writes.jsonl").is_file()
        assert (demo_project / "runs" / execution.id / layer / f"{layer}.kernel.log").is_file()
        assert "rows_written" not in kept.read_text(encoding="utf-8")  # Kestra's ::{...}:: lines: task log only
    # One run record for the whole execution, published by the last task.
    record = json.loads((demo_project / "runs" / execution.id / "run.json").read_text(encoding="utf-8"))
    assert (record["status"], record["published"]) == ("succeeded", True)
    assert [layer["name"] for layer in record["layers"]] == ["bronze", "silver", "gold"]
    with connect(demo_project, snapshot="published") as lake:
        assert lake.info("gold.daily_sales")["last_run_id"] == execution.id
    # The runner's ::{...}:: lines reached Kestra's parser.
    assert execution.runs["bronze"].outputs["bronze_orders"]["rows"] > 0
    assert execution.runs["gold"].outputs["gold_daily_sales"]["total_rows"] == len(by_flow["gold.daily_sales"])
    assert {m["tags"]["table"] for m in execution.runs["silver"].metrics} >= {"silver.orders", "silver.order_lines"}
    # Every write is recorded with the Kestra execution id as the run id.
    with connect(demo_project) as lake:
        assert lake.info("gold.daily_sales")["last_run_id"] == execution.id
    # export: true ends the flow with an export of gold; its manifest is the task's output file.
    manifest = json.loads(execution.runs["export"].output_files["manifest.json"].read_text(encoding="utf-8"))
    assert {t["table"]: t["rows"] for t in manifest["tables"]} == {
        name: len(rows) for name, rows in by_flow.items() if name.startswith("gold.")}
    assert (demo_project / "exports" / "daily_sales.parquet").is_file()


def test_each_execution_processes_its_trigger_date(tmp_path, demo_project):
    flow = generated_flow(demo_project)
    first = execute(flow, demo_project, tmp_path / "work", "exec-jan10", datetime(2026, 1, 10, 6, 0, tzinfo=UTC))
    assert first.failed is None
    assert landed(demo_project) == {"orders": date(2026, 1, 10), "customers": date(2026, 1, 1)}
    assert latest_sale(demo_project) == date(2026, 1, 10)

    # A backfill of 2026-01-20 (the next execution): bronze loads only the files that landed since.
    second = execute(flow, demo_project, tmp_path / "work", "exec-jan20", datetime(2026, 1, 20, 6, 0, tzinfo=UTC))
    assert second.failed is None
    assert landed(demo_project) == {"orders": date(2026, 1, 20), "customers": date(2026, 1, 1)}
    assert latest_sale(demo_project) == date(2026, 1, 20)
    with connect(demo_project) as lake:
        by_run = dict(lake.sql("""
            SELECT _run_id, count(DISTINCT _source_file) FROM bronze.orders GROUP BY 1""").fetchall())
    assert by_run == {"exec-jan10": 10, "exec-jan20": 10}
    assert (demo_project / "runs" / "exec-jan20" / "gold" / "gold.ipynb").is_file()

    # The same day again (a repeated backfill): nothing new, every layer up to date, and
    # still outputs and metrics for every table, with 0 rows written.
    again = execute(flow, demo_project, tmp_path / "work", "exec-jan20-again", datetime(2026, 1, 20, 6, 0, tzinfo=UTC))
    assert again.failed is None
    record = json.loads((demo_project / "runs" / "exec-jan20-again" / "run.json").read_text(encoding="utf-8"))
    assert {layer["status"] for layer in record["layers"]} == {"up to date"}
    assert again.runs["bronze"].outputs["bronze_orders"]["rows"] == 0
    assert again.runs["gold"].outputs["gold_daily_sales"]["total_rows"] > 0
    assert landed(demo_project) == {"orders": date(2026, 1, 20), "customers": date(2026, 1, 1)}

    # A manual run with the run_date input, and no trigger, processes the input's day.
    third = execute(flow, demo_project, tmp_path / "work", "manual-1", None, {"run_date": date(2026, 1, 22)})
    assert third.failed is None
    assert landed(demo_project) == {"orders": date(2026, 1, 22), "customers": date(2026, 1, 22)}


def test_failing_layer_stops_the_flow_and_is_named(tmp_path, demo_project):
    silver = demo_project / "notebooks" / "silver.ipynb"
    book = json.loads(silver.read_text(encoding="utf-8"))
    book["cells"].insert(4, {"cell_type": "code", "execution_count": None, "id": "boom", "metadata": {},
                             "outputs": [], "source": "raise RuntimeError('bad silver rule')"})
    silver.write_text(json.dumps(book), encoding="utf-8")
    flow = generated_flow(demo_project)
    execution = execute(flow, demo_project, tmp_path / "work", "exec-fail", datetime(2026, 1, 5, 6, 0, tzinfo=UTC))
    assert execution.failed == "silver"
    assert list(execution.runs) == ["bronze", "silver"]  # gold never ran
    assert execution.runs["silver"].returncode != 0
    assert "bad silver rule" in execution.runs["silver"].stdout  # the notebook's traceback, logged as INFO
    # Kestra logs stderr as ERROR: the layers that succeeded wrote none, the failed one a single line.
    assert execution.error_logs[0] == {
        "taskId": "silver",
        "message": "layer silver failed; see the log above and the executed notebooks in runs/exec-fail/silver"}
    # The executed notebook with the error is the task's output file, and the run record says what failed.
    assert "bad silver rule" in execution.runs["silver"].output_files["silver.ipynb"].read_text(encoding="utf-8")
    record = json.loads((demo_project / "runs" / "exec-fail" / "run.json").read_text(encoding="utf-8"))
    assert [layer["status"] for layer in record["layers"]] == ["succeeded", "failed"]
    assert record["published"] is False
    # The executed notebook with the error is kept for the post-mortem.
    kept = (demo_project / "runs" / "exec-fail" / "silver" / "silver.ipynb").read_text(encoding="utf-8")
    assert "bad silver rule" in kept
    message = render(flow["errors"][0]["message"], execution.context(flow, {"project_dir": str(demo_project)}))
    assert "Failed task: silver" in message
    assert "Error: layer silver failed" in message
    assert "execution exec-fail" in message
    with connect(demo_project) as lake:
        assert not lake.tables("gold")


def landed(project: Path) -> dict[str, date]:
    """Per bronze source, the date of the newest file loaded."""
    with connect(project) as lake:
        return {
            source: lake.sql(f"SELECT max(regexp_extract(_source_file, '(\\d{{4}}-\\d{{2}}-\\d{{2}})', 1))::DATE "
                             f"FROM bronze.{source}").fetchall()[0][0]
            for source in ("orders", "customers")
        }


def latest_sale(project: Path) -> date:
    with connect(project) as lake:
        return lake.sql("SELECT max(order_date) FROM gold.daily_sales").fetchall()[0][0]

