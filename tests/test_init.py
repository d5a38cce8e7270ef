"""`medallion-nb init`: a new project that works straight away, and never an overwritten folder."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import nbformat
import pytest
from papermill.inspection import inspect_notebook

from medallion_nb import ProjectError, UsageError, connect, load_project
from medallion_nb.cli import main
from medallion_nb.export import read_manifest
from medallion_nb.scaffold import init_project, template_dir
from medallion_nb.snapshots import published

EXPECTED_FILES = {
    ".gitignore", "README.md", "medallion.yaml",
    "notebooks/bronze.ipynb", "notebooks/silver.ipynb", "notebooks/gold.ipynb",
    "data/raw/stores.csv", "data/raw/sales/sales_2026-01-01.csv", "data/raw/sales/sales_2026-01-02.csv",
    "data/raw/sales/sales_2026-01-03.csv",
    "kestra/docker-compose.yml", "kestra/Dockerfile", "kestra/flows/medallion.demo2.demo2.yml",
    "kestra/wheels/README.md",
}
VENV_BIN = str(Path(sys.executable).parent)


def test_init_creates_a_loadable_project(tmp_path):
    made = init_project("demo2", tmp_path / "demo2")
    assert made.root == tmp_path / "demo2"
    assert {p.as_posix() for p in made.files} == EXPECTED_FILES
    project = load_project(made.root)
    assert project.name == "demo2"
    assert project.namespace == "medallion.demo2"
    assert [layer.name for layer in project.layers] == ["bronze", "silver", "gold"]
    assert [s.name for s in project.sources] == ["sales", "stores"]
    assert project.schedule is None
    readme = (made.root / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# demo2\n")
    assert "$" not in readme
    assert [p.name for p in tmp_path.iterdir()] == ["demo2"]  # no staging folder left


def test_init_names_with_dashes_get_a_valid_namespace(tmp_path):
    project = load_project(init_project("sales-eu", tmp_path / "x").root)
    assert (project.name, project.namespace) == ("sales-eu", "medallion.sales_eu")


@pytest.mark.parametrize("name", ["bronze", "silver", "gold"])
def test_template_notebooks_follow_the_contract(name):
    path = template_dir() / "notebooks" / f"{name}.ipynb"
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    assert book.metadata["kernelspec"]["name"] == "python3"
    params = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    lines = params[0].source.splitlines()
    names = [line.split("=")[0].strip() for line in lines]
    assert names[:4] == ["project_dir", "run_id", "run_date", "full_refresh"]
    assert names[4:] == (["rebuild_sources"] if name == "bronze" else [])
    assert all("  # " in line for line in lines)  # name = literal  # help
    assert set(inspect_notebook(str(path))) >= {"project_dir", "run_id", "run_date", "full_refresh"}
    code = [c for c in book.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == []
        assert cell.execution_count is None
        tree = ast.parse(cell.source)
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda)]
        assert len(cell.source.splitlines()) <= 25
    assert book.cells[0].cell_type == "markdown"
    assert sum(c.cell_type == "markdown" for c in book.cells) >= 3
    assert any("mnb.connect(project_dir" in c.source for c in code)


def test_the_commented_expectations_of_the_template_load_when_uncommented(tmp_path):
    root = init_project("demo2", tmp_path / "demo2").root
    config = root / "medallion.yaml"
    text = config.read_text(encoding="utf-8")
    block = ["# expectations:", "#   gold.daily_store_sales:", "#     warn: {range: {units: {max: 100}}}"]
    assert "\n".join(block) in text
    assert load_project(root).expectations == {}
    for line in block:
        text = text.replace(line, line[2:])
    config.write_text(text, encoding="utf-8")
    assert load_project(root).expectations == {"gold.daily_store_sales": {"warn": {"range": {"units": {"max": 100}}}}}


def test_init_refuses_an_existing_folder(tmp_path, capsys, monkeypatch):
    target = tmp_path / "demo2"
    target.mkdir()
    (target / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ProjectError, match="already exists; medallion-nb init never overwrites files"):
        init_project("demo2", target)
    monkeypatch.chdir(tmp_path)
    assert main(["init", "demo2"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err
    assert "--dir" in err
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo2"]


def test_init_fills_an_empty_folder(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    made = init_project("demo2", target)
    assert (made.root / "medallion.yaml").is_file()
    assert load_project(target).name == "demo2"


def test_init_rejects_bad_names(tmp_path, capsys):
    for bad in ("Demo", "2fast", "my project", "../x", ""):
        with pytest.raises(UsageError, match="is not a valid project name"):
            init_project(bad, tmp_path / "x")
    assert main(["init", "Bad", "--dir", str(tmp_path / "bad")]) == 2
    assert "lowercase" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_init_with_dir(tmp_path, capsys):
    assert main(["init", "acme", "--dir", str(tmp_path / "projects" / "acme")]) == 0
    out = capsys.readouterr().out
    assert "created project acme" in out
    assert "medallion-nb run" in out
    assert load_project(tmp_path / "projects" / "acme").name == "acme"


@pytest.mark.notebook
def test_init_then_run_then_export_works(tmp_path):
    """`medallion-nb init demo2 && cd demo2 && medallion-nb run`, in a fresh folder, as a user types it."""
    env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "")}
    shell = ("set -e\nmedallion-nb init demo2\ncd demo2\nmedallion-nb run --run-id first\n"
             "medallion-nb export\n")
    proc = subprocess.run(["/bin/sh", "-c", shell], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = tmp_path / "demo2"
    assert (root / "runs" / "first" / "gold" / "gold.ipynb").is_file()
    with connect(root) as lake:
        daily = lake.sql("SELECT sale_date::VARCHAR, store_id, sales, units, revenue::DOUBLE "
                         "FROM gold.daily_store_sales ORDER BY ALL").fetchall()
        quarantined = lake.sql("SELECT sale_id, _quarantine_reason FROM silver.sales_quarantine ORDER BY 1").fetchall()
        rejected = lake.sql("SELECT _source_file, line, column_name, raw_line FROM bronze.sales_rejects "
                            "ORDER BY 1, 2").fetchall()
    # Straight from the sample CSVs: 1005 arrives twice (kept once), 1006 has an unknown store,
    # 1010 a zero quantity; 1011's timestamp and 1016's quantity do not fit their declared types;
    # " S3" is trimmed.
    assert quarantined == [("1006", "unknown store"), ("1010", "quantity not positive")]
    assert rejected == [("data/raw/sales/sales_2026-01-02.csv", 6, "sold_at", "1011,not a time,S3,Coffee,1,3.50"),
                        ("data/raw/sales/sales_2026-01-03.csv", 6, "quantity",
                         "1016,2026-01-03T18:20:00,S1,Coffee,2 cups,3.50")]
    assert daily == [
        ("2026-01-01", "S1", 2, 5, 12.4), ("2026-01-01", "S2", 2, 2, 11.5), ("2026-01-01", "S3", 1, 2, 13.8),
        ("2026-01-02", "S1", 1, 1, 3.5), ("2026-01-02", "S2", 1, 2, 8.0), ("2026-01-02", "S3", 1, 4, 7.2),
        ("2026-01-03", "S1", 1, 3, 10.5), ("2026-01-03", "S2", 1, 2, 4.0), ("2026-01-03", "S3", 2, 3, 13.9),
    ]
    manifest = read_manifest(root / "exports")
    assert [(t["table"], t["rows"], t["run_id"]) for t in manifest["tables"]] == [
        ("gold.daily_store_sales", 9, "first")]
    parquet = root / "exports" / "daily_store_sales.parquet"
    assert duckdb.sql(f"SELECT count(*), sum(revenue)::DOUBLE FROM '{parquet}'").fetchall() == [(9, 84.8)]
    record = json.loads((root / "runs" / "first" / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "succeeded"


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(["medallion-nb", "run", *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def _quality(notebook: Path) -> str:
    """The text of what ``lake.quality()`` showed in an executed notebook."""
    book = nbformat.read(notebook, as_version=4)
    [cell] = [c for c in book.cells if c.source == "lake.quality()"]
    return cell.outputs[0]["data"]["text/plain"]


@pytest.mark.notebook
def test_a_failing_expectation_in_silver_keeps_the_tables_and_publishes_nothing(tmp_path):
    """The template's silver checks its rows before the commit: a bad delivery fails the run with a data error."""
    root = init_project("demo2", tmp_path / "demo2").root
    first = _run(root, "--run-id", "first")
    assert first.returncode == 0, first.stdout + first.stderr
    # Each notebook shows the checks of its writes, run before they were committed.
    for layer, checks in (("silver", 6), ("gold", 5)):
        shown = _quality(root / "runs" / "first" / layer / f"{layer}.ipynb")
        assert (shown.count(" passed "), shown.count("FAILED")) == (checks, 0), shown
    before = published(root)
    with connect(root) as lake:
        versions = {name: lake.info(name)["version"] for name in ("silver.sales", "silver.sales_quarantine")}
        sales = lake.sql("SELECT * FROM silver.sales ORDER BY sale_id").fetchall()

    # A day whose file has an impossible quantity: no quarantine rule catches it, the expectation does.
    sales_dir = root / "data" / "raw" / "sales"
    (sales_dir / "sales_2026-01-04.csv").write_text(
        "sale_id,sold_at,store_id,product,quantity,unit_price\n"
        "1017,2026-01-04T09:00:00,S1,Coffee,5000,3.50\n"
        "1018,2026-01-04T09:30:00,S2,Coffee,1,4.00\n", encoding="utf-8")
    second = _run(root, "--run-id", "second")
    assert second.returncode == 3, second.stdout + second.stderr  # a data error: a retry cannot fix it
    assert "ExpectationError: write to silver.sales: 1 expectation(s) failed; nothing was committed, " \
           "the table stays at version 0" in second.stderr
    assert "FAILED      range quantity: 1 row; e.g. 5000" in second.stderr
    record = json.loads((root / "runs" / "second" / "run.json").read_text(encoding="utf-8"))
    assert [(layer["name"], layer["status"]) for layer in record["layers"]] == [
        ("bronze", "succeeded"), ("silver", "failed"), ("gold", "skipped")]
    assert published(root) == before  # the published snapshot is the first run's
    with connect(root) as lake:
        assert {name: lake.info(name)["version"] for name in versions} == versions
        assert lake.sql("SELECT * FROM silver.sales ORDER BY sale_id").fetchall() == sales
        assert lake.sql("SELECT count(*) FROM bronze.sales WHERE sale_id = '1017'").fetchall() == [(1,)]

    # A corrected delivery the next day: silver builds the sales it had not consumed, and publishes.
    (sales_dir / "sales_2026-01-05.csv").write_text(
        "sale_id,sold_at,store_id,product,quantity,unit_price\n"
        "1017,2026-01-04T09:00:00,S1,Coffee,5,3.50\n", encoding="utf-8")
    third = _run(root, "--run-id", "third")
    assert third.returncode == 0, third.stdout + third.stderr
    assert published(root).run_id == "third"
    with connect(root, snapshot="published") as lake:
        assert lake.sql("SELECT sale_id, quantity FROM silver.sales WHERE sale_id IN ('1017', '1018') "
                        "ORDER BY 1").fetchall() == [("1017", 5), ("1018", 1)]
        assert lake.sql("SELECT sales, units, revenue::DOUBLE FROM gold.daily_store_sales "
                        "WHERE sale_date = '2026-01-04' ORDER BY store_id").fetchall() == [(1, 5, 17.5), (1, 1, 4.0)]
