"""`medallion-nb run` and `medallion-nb dag`: exit codes, progress, summary and errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_project
from notebook_factory import CONNECT, notebook_text, three_layer_project

from medallion_nb.cli import main


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return three_layer_project(tmp_path / "tiny")


@pytest.mark.notebook
def test_run_prints_a_line_per_cell_per_notebook_per_layer_and_a_summary(tiny, capsys):
    assert main(["run", "--project", str(tiny), "--run-id", "c1", "-p", "greeting=hi"]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines[0] == "run c1 of tiny: 3 notebooks (bronze, silver, gold)"
    # Not a terminal: one plain line per cell, with the cell's first code line, time and rows so far.
    silver_cells = [line for line in lines if line.startswith("notebooks/silver.ipynb: cell ")]
    assert [line.split(" (")[0] for line in silver_cells] == [
        'notebooks/silver.ipynb: cell 1/5 A layer: project_dir = ".."      # project folder',
        "notebooks/silver.ipynb: cell 2/5 A layer: import medallion_nb",
        'notebooks/silver.ipynb: cell 3/5 A layer: lake.write("silver.numbers", "select n * 2 as n fr…',
        'notebooks/silver.ipynb: cell 4/5 A layer: lake.write("silver.evens", "select n from bronze.n…',
    ]
    assert silver_cells[2].endswith(", 0 rows written)")
    assert silver_cells[3].endswith(", 10 rows written)")
    done = [line for line in lines if line.startswith("[")]
    assert [line.split(" ")[:3] for line in done] == [["[1/3]", "bronze", "ok"], ["[2/3]", "silver", "ok"],
                                                      ["[3/3]", "gold", "ok"]]
    assert done[1].endswith("s (2 tables, 15 rows)")
    assert lines.index(silver_cells[-1]) < lines.index(done[1])
    assert any(line.startswith("notebooks/silver.ipynb: ok ") and line.endswith("(2 tables, 15 rows)")
               for line in lines)
    lines = out.splitlines()
    assert lines[0].startswith("run c1 succeeded in ")
    assert lines[1].split() == ["layer", "status", "time", "table", "rows", "total", "rows"]
    assert lines[2].split()[:2] == ["bronze", "succeeded"]
    assert lines[2].split()[3:] == ["bronze.numbers", "10", "10"]
    assert lines[3].split()[3:] == ["silver.numbers", "10", "10"]
    assert lines[4].split() == ["silver.evens", "5", "5"]
    assert lines[5].split()[3:] == ["gold.total", "1", "1"]
    assert lines[6].startswith("record: ")
    assert lines[6].endswith("runs/c1/run.json")
    record = json.loads((tiny / "runs" / "c1" / "run.json").read_text())
    assert record["parameters"]["greeting"] == "hi"


@pytest.mark.notebook
def test_run_chosen_layers_only(tiny, capsys):
    assert main(["run", "--project", str(tiny), "--layer", "silver", "--layer", "bronze", "--run-id", "c2"]) == 0
    err = capsys.readouterr().err
    assert "[1/2] bronze ok" in err
    assert "[2/2] silver ok" in err
    assert "gold" not in err.split("\n", 1)[1]
    record = json.loads((tiny / "runs" / "c2" / "run.json").read_text())
    assert [layer["name"] for layer in record["layers"]] == ["bronze", "silver"]
    assert sorted(p.name for p in (tiny / "data" / "lake").iterdir()) == ["_medallion", "bronze", "silver"]


@pytest.mark.notebook
def test_a_failing_run_exits_1_names_the_cell_and_skips_later_layers(tmp_path, capsys):
    root = three_layer_project(tmp_path / "bad", silver_cells=(
        CONNECT, 'numbers = lake.table("bronze.numbers")', "raise KeyError('no such column: amount')",
        'lake.write("silver.numbers", numbers)'))
    assert main(["run", "--project", str(root), "--run-id", "f1"]) == 1
    out, err = capsys.readouterr()
    assert "[2/3] silver FAILED" in err
    assert "[3/3] gold skipped" in err
    executed = root.resolve() / "runs" / "f1" / "silver" / "silver.ipynb"
    assert ("error: layer 'silver' failed: notebooks/silver.ipynb, cell 4 (In [5]): "
            "KeyError: 'no such column: amount'") in err
    assert "  failing cell starts: raise KeyError('no such column: amount')" in err
    assert f"  executed notebook: {executed}" in err
    assert executed.is_file()
    assert [line.split()[:2] for line in out.splitlines()[2:5]] == [
        ["bronze", "succeeded"], ["silver", "failed"], ["gold", "skipped"]]
    assert not (root / "data" / "lake" / "gold").exists()


@pytest.mark.notebook
def test_a_data_error_exits_3(tmp_path, capsys):
    root = three_layer_project(tmp_path / "bad", silver_cells=(
        CONNECT, 'lake.check("bronze.numbers", {"row_count": {"min": 1000}})',
        'lake.write("silver.numbers", "select * from bronze.numbers")'))
    assert main(["run", "--project", str(root), "--run-id", "d1"]) == 3
    assert "QualityError" in capsys.readouterr().err
    record = json.loads((root / "runs" / "d1" / "run.json").read_text())
    assert (record["status"], record["exit_code"]) == ("failed", 3)
    # A scheduler's retry of the same run (--attach) ends at once: a data error is not run again.
    assert main(["run", "--project", str(root), "--run-id", "d1", "--attach", "--layer", "silver"]) == 3
    err = capsys.readouterr().err
    assert "error: not run again: notebooks/silver.ipynb failed in an earlier attempt of run d1 with Quality" in err
    assert json.loads((root / "runs" / "d1" / "run.json").read_text()) == record


def test_bad_config_exits_2_with_the_problem(tmp_path, capsys):
    root = write_project(tmp_path / "broken", "name: broken\nlayers:\n  - name: bronze\n    notebook: nope.ipynb\n")
    assert main(["run", "--project", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "layers.bronze.notebooks[0]: 'nope.ipynb' does not exist" in err
    (root / "medallion.yaml").write_text("name: [unclosed\n")
    assert main(["dag", "--project", str(root)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_unknown_layer_exits_2_listing_the_layers(tiny, capsys):
    assert main(["run", "--project", str(tiny), "--layer", "platinum"]) == 2
    assert "no layer 'platinum' (layers are: bronze, silver, gold)" in capsys.readouterr().err
    assert not (tiny / "runs").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["-p", "limit"], "argument -p/--param: parameter 'limit': expected name=value"),
    (["--run-id", "../escape"], "argument --run-id: run id '../escape' is not a safe folder name"),
])
def test_bad_arguments_are_usage_errors(tiny, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--project", str(tiny), *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_parameters_the_runner_sets_cannot_be_overridden(tiny, capsys):
    assert main(["run", "--project", str(tiny), "-p", "run_id=x"]) == 2
    assert "error: parameter run_id is set by the runner; use --run-id" in capsys.readouterr().err


def test_dag_prints_the_plan_of_the_nearest_project(tiny, capsys, monkeypatch):
    monkeypatch.chdir(tiny / "notebooks")
    assert main(["dag"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "tiny: 3 notebook(s), 4 table(s)",
        "bronze:",
        "  notebooks/bronze.ipynb",
        "    reads   -",
        "    writes  bronze.numbers",
        "    after   nothing (can start at once)",
        "silver:",
        "  notebooks/silver.ipynb",
        "    reads   bronze.numbers",
        "    writes  silver.evens, silver.numbers",
        "    after   notebooks/bronze.ipynb",
        "gold:",
        "  notebooks/gold.ipynb",
        "    reads   silver.numbers",
        "    writes  gold.total",
        "    after   notebooks/silver.ipynb",
    ]
    assert main(["dag", "--layer", "gold"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "selected: notebooks/gold.ipynb"


def test_dag_writes_dot_and_images(tiny, tmp_path, capsys):
    for name in ("plan.dot", "plan.svg", "img/plan.png"):
        assert main(["dag", "--project", str(tiny), "--out", str(tmp_path / name)]) == 0
        assert f"wrote {tmp_path / name}" in capsys.readouterr().out
    assert '"silver.numbers" -> "notebooks/gold.ipynb"' in (tmp_path / "plan.dot").read_text()
    assert "<svg" in (tmp_path / "plan.svg").read_text()
    assert (tmp_path / "img" / "plan.png").read_bytes().startswith(b"\x89PNG")
    assert main(["dag", "--project", str(tiny), "--out", str(tmp_path / "plan.gif")]) == 2
    assert "cannot draw the DAG as 'gif'" in capsys.readouterr().err


@pytest.mark.notebook
def test_the_console_script_runs_a_layer(tiny):
    proc = subprocess.run([Path(sys.executable).with_name("medallion-nb"), "run", "--layer", "bronze",
                           "--run-id", "s1"], cwd=tiny, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "[1/1] bronze ok" in proc.stderr
    assert "bronze.numbers" in proc.stdout
    assert "Passed unknown parameter" not in proc.stderr
    assert "WARNING" not in proc.stderr
    assert (tiny / "runs" / "s1" / "bronze" / "bronze.ipynb").is_file()


@pytest.mark.notebook
def test_ctrl_c_stops_the_kernels_and_leaves_a_valid_record(tmp_path):
    sleeping = tmp_path / "sleeping"
    cell = f"import time, pathlib\npathlib.Path({str(sleeping)!r}).touch()\ntime.sleep(3600)"
    root = write_project(tmp_path / "slow", "name: slow\nlayers:\n  - name: bronze\n    notebook: nb/a.ipynb\n"
                         "  - name: gold\n    notebook: nb/b.ipynb\n",
                         {"nb/a.ipynb": notebook_text(cell, CONNECT, 'lake.write("bronze.x", "select 1 as n")'),
                          "nb/b.ipynb": notebook_text(CONNECT, 'lake.table("bronze.x")')})
    record = root / "runs" / "c1" / "run.json"
    proc = subprocess.Popen([Path(sys.executable).with_name("medallion-nb"), "run", "--run-id", "c1"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Wait for bronze's kernel to be in its hour-long cell (the deadline only stops a hung test).
        deadline = time.monotonic() + 300
        while not sleeping.exists():
            assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
            assert time.monotonic() < deadline, "bronze never reached its sleeping cell"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130
    saved = json.loads(record.read_text())
    assert (saved["status"], saved["error"]) == ("failed", "interrupted")
    assert [layer["status"] for layer in saved["layers"]] == ["failed", "skipped"]
    assert "run c1 failed" in out
