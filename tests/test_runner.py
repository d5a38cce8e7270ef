"""The runner: parameters, run ids, run records, and real papermill runs of small projects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest
from conftest import write_project
from notebook_factory import CONNECT, notebook_text, three_layer_project

import medallion_nb
from medallion_nb import NotebookRunError, ProjectError, UsageError, load_project
from medallion_nb.runner import (
    NotebookEngine,
    NotebookTask,
    RunObserver,
    check_run_id,
    load_record,
    new_run_id,
    notebook_parameters,
    parse_parameter,
    parse_value,
    run_pipeline,
)
from medallion_nb.runner.record import LayerRecord, NotebookRecord, RunRecord, tables_from_write_log
from medallion_nb.validation import duration_seconds

# -- parameters and run ids (no kernels) -----------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("FALSE", False), ("42", 42), ("-3", -3), ("0", 0), ("2.5", 2.5), ("1e3", 1000.0),
    ("2026-01-05", "2026-01-05"), ("007", "007"), ("hello world", "hello world"), ("", ""), ("nan", "nan"),
])
def test_parameter_values_are_typed(text, value):
    parsed = parse_value(text)
    assert parsed == value
    assert type(parsed) is type(value)


def test_parameters_need_a_name_and_an_equals_sign():
    assert parse_parameter("run_date=2026-01-05") == ("run_date", "2026-01-05")
    assert parse_parameter("query=a=b") == ("query", "a=b")
    with pytest.raises(UsageError, match=r"parameter 'limit': expected name=value"):
        parse_parameter("limit")
    with pytest.raises(UsageError, match=r"'2x' is not a valid parameter name"):
        parse_parameter("2x=1")


def test_notebook_parameters_layer_runner_values_project_defaults_and_overrides(tmp_path):
    root = write_project(tmp_path / "p", "name: p\nlayers:\n  - name: bronze\n    notebook: b.ipynb\n"
                         "parameters:\n  greeting: hi\n  run_date: '2026-01-01'\n",
                         {"b.ipynb": notebook_text()})
    project = load_project(root)
    params = notebook_parameters(project, "r1", {"full_refresh": True, "extra": 3})
    assert params == {"project_dir": str(root.resolve()), "run_id": "r1", "run_date": "2026-01-01",
                      "full_refresh": True, "greeting": "hi", "extra": 3}
    with pytest.raises(UsageError, match="parameter run_id is set by the runner; use --run-id"):
        notebook_parameters(project, "r1", {"run_id": "x"})
    with pytest.raises(UsageError, match="use --project instead of -p project_dir"):
        notebook_parameters(project, "r1", {"project_dir": "/elsewhere"})
    with pytest.raises(UsageError, match=r"run_date: '2026-13-01' is not an ISO date"):
        notebook_parameters(project, "r1", {"run_date": "2026-13-01"})
    with pytest.raises(UsageError, match=r"run_date: 20260101 is not an ISO date"):
        notebook_parameters(project, "r1", {"run_date": 20260101})
    with pytest.raises(UsageError, match="full_refresh: expected true or false, got 'yes'"):
        notebook_parameters(project, "r1", {"full_refresh": "yes"})


def test_run_ids_are_timestamps_with_a_suffix_and_safe_folder_names():
    first = new_run_id(datetime(2026, 11, 21, 6, 15, tzinfo=UTC))
    assert first.startswith("20261121T061500Z-")
    assert len(first) == len("20261121T061500Z-") + 4
    assert len({new_run_id() for _ in range(50)}) > 45
    assert check_run_id("nightly-2026.01_05") == "nightly-2026.01_05"
    for bad in ("", "..", "../x", "a/b", "-x", "a b", "x" * 129):
        with pytest.raises(UsageError, match="is not a safe folder name"):
            check_run_id(bad)


def test_layer_timeouts_are_iso_durations():
    assert duration_seconds("PT30M") == 1800
    assert duration_seconds("P1DT2H3M4S") == 93784
    assert duration_seconds("soon") is None


def test_write_log_lines_fold_into_one_entry_per_table():
    entries = [
        {"table": "silver.a", "mode": "replace", "rows": 5, "total_rows": 5, "version": 0},
        {"table": "silver.b", "mode": "append", "rows": 2, "total_rows": 9, "version": 4},
        {"table": "silver.a", "mode": "append", "rows": 3, "total_rows": 8, "version": 1},
    ]
    a, b = tables_from_write_log(entries, "nb/x.ipynb")
    assert (a.table, a.mode, a.rows, a.total_rows, a.version, a.writes) == ("silver.a", "append", 8, 8, 1, 2)
    assert (b.table, b.rows, b.notebook) == ("silver.b", 2, "nb/x.ipynb")


def test_the_run_record_is_replaced_atomically(tmp_path):
    layer = LayerRecord("bronze", [NotebookRecord("b.ipynb", "runs/r/bronze/b.ipynb", tmp_path / "none.jsonl")])
    record = RunRecord("r", "p", tmp_path, tmp_path / "runs" / "r", {"run_id": "r"}, [layer])
    record.save()
    layer.status = "succeeded"
    path = record.save()
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # no temporary file left behind
    assert load_record(path.parent)["layers"][0]["status"] == "succeeded"


def test_a_used_run_id_or_a_bad_layer_is_refused_before_anything_runs(tmp_path):
    project = load_project(three_layer_project(tmp_path / "tiny"))
    (project.runs / "taken").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"run id 'taken' was used before: .*taken exists"):
        run_pipeline(project, run_id="taken")
    with pytest.raises(ProjectError, match="no layer 'platinum'"):
        run_pipeline(project, layers=["platinum"])
    assert [p.name for p in project.runs.iterdir()] == ["taken"]


# -- real runs --------------------------------------------------------------------------


class Events(RunObserver):
    def __init__(self) -> None:
        self.events: list[str] = []

    def layer_started(self, record, layer):
        self.events.append(f"start {layer.name}")

    def layer_finished(self, record, layer):
        self.events.append(f"end {layer.name} {layer.status}")

    def run_finished(self, record):
        self.events.append(f"finished {record.status}")


@pytest.mark.notebook
def test_a_run_executes_layers_in_order_and_records_what_they_wrote(tmp_path):
    project = load_project(three_layer_project(tmp_path / "tiny"))
    events = Events()
    record = run_pipeline(project, run_id="r1", observer=events)

    assert events.events == ["start bronze", "end bronze succeeded", "start silver", "end silver succeeded",
                             "start gold", "end gold succeeded", "finished succeeded"]
    run_dir = project.runs / "r1"
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved == record.to_dict()
    assert (saved["run_id"], saved["project"], saved["status"]) == ("r1", "tiny", "succeeded")
    assert saved["started"] <= saved["finished"]
    layers = saved["layers"]
    assert [layer["name"] for layer in layers] == ["bronze", "silver", "gold"]
    assert layers[0]["started"] <= layers[1]["started"] <= layers[2]["started"]
    assert all(layer["status"] == "succeeded" and layer["duration_s"] > 0 for layer in layers)
    tables = {t["table"]: (t["rows"], t["total_rows"], t["version"]) for layer in layers for t in layer["tables"]}
    assert tables == {"bronze.numbers": (10, 10, 0), "silver.numbers": (10, 10, 0), "silver.evens": (5, 5, 0),
                      "gold.total": (1, 1, 0)}
    (silver,) = layers[1]["notebooks"]
    assert {k: silver[k] for k in ("notebook", "output", "status", "error", "reads")} == {
        "notebook": "notebooks/silver.ipynb", "output": "runs/r1/silver/silver.ipynb", "status": "succeeded",
        "error": None, "reads": ["bronze.numbers"]}  # recorded by the library as the notebook read it
    assert layers[0]["notebooks"][0]["finished"] <= silver["started"] < silver["finished"]

    # The executed copies are papermill's documents, with the injected parameters.
    for layer in ("bronze", "silver", "gold"):
        executed = nbformat.read(run_dir / layer / f"{layer}.ipynb", as_version=4)
        assert executed.metadata.papermill.parameters["run_id"] == "r1"
        injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
        assert f'project_dir = "{project.root}"' in injected.source
    with medallion_nb.connect(project.root) as lake:
        assert lake.sql("select total from gold.total").fetchall() == [(90,)]
        assert lake.info("gold.total")["last_run_id"] == "r1"


PARAMS_NOTEBOOK = (
    CONNECT,
    "import os, pandas as pd\n"
    "values = dict(project_dir=project_dir, run_id=run_id, run_date=run_date, full_refresh=full_refresh,\n"
    "              greeting=greeting, limit=limit, ratio=ratio, verbose=verbose, extra=extra,\n"
    "              cwd=os.getcwd(), write_log=os.environ['MEDALLION_WRITE_LOG'])\n"
    'lake.write("bronze.params", pd.DataFrame({"name": list(values), "value": [repr(v) for v in values.values()]}))',
)


@pytest.mark.notebook
def test_parameters_reach_the_notebook_with_their_types(tmp_path):
    root = write_project(tmp_path / "params", """\
name: params
layers:
  - name: bronze
    notebook: notebooks/bronze.ipynb
parameters:
  greeting: hi
  run_date: "2026-01-05"
""", {"notebooks/bronze.ipynb": notebook_text(
        *PARAMS_NOTEBOOK, extra_parameters='greeting = "hello"\nlimit = 1\nratio = 0.5\nverbose = False\nextra = ""')})
    project = load_project(root)
    params = {"limit": parse_value("5"), "ratio": parse_value("2.5"), "verbose": parse_value("true"),
              "extra": parse_value("abc")}
    run_pipeline(project, run_id="p1", parameters=params)
    with medallion_nb.connect(root) as lake:
        seen = dict(lake.sql("select name, value from bronze.params").fetchall())
    run_dir = root.resolve() / "runs" / "p1"
    assert seen == {
        "project_dir": repr(str(root.resolve())), "run_id": "'p1'", "run_date": "'2026-01-05'",
        "full_refresh": "False", "greeting": "'hi'", "limit": "5", "ratio": "2.5", "verbose": "True",
        "extra": "'abc'", "cwd": repr(str(root.resolve() / "notebooks")),
        "write_log": repr(str(run_dir / "bronze" / "bronze.writes.jsonl")),
    }


@pytest.mark.notebook
def test_a_failing_notebook_stops_the_run_and_names_layer_cell_and_output(tmp_path):
    failing = (CONNECT, 'lake.write("silver.numbers", "select n from bronze.numbers")',
               "x = 1\ny = x / 0", "print('never')")
    project = load_project(three_layer_project(tmp_path / "tiny", silver_cells=failing))
    events = Events()
    with pytest.raises(NotebookRunError) as err:
        run_pipeline(project, run_id="f1", observer=events)

    run_dir = project.runs / "f1"
    message = str(err.value)
    assert message.splitlines() == [
        "layer 'silver' failed: notebooks/silver.ipynb, cell 4 (In [5]): ZeroDivisionError: division by zero",
        "  failing cell starts: x = 1",
        f"  executed notebook: {run_dir / 'silver' / 'silver.ipynb'}",
        f"  hint: run record: {run_dir / 'run.json'}",
    ]
    source = nbformat.read(project.root / "notebooks" / "silver.ipynb", as_version=4)
    assert source.cells[4].source.startswith("x = 1")  # "cell 4" is the source notebook's cell
    # The same, as structure (like papermill's PapermillExecutionError), for code that handles it.
    error = err.value
    assert (error.layer, error.notebook, error.cell_index, error.execution_count) == (
        "silver", "notebooks/silver.ipynb", 4, 5)
    assert (error.ename, error.evalue, error.output) == ("ZeroDivisionError", "division by zero",
                                                         run_dir / "silver" / "silver.ipynb")
    assert [f.notebook for f in error.failures] == ["notebooks/silver.ipynb"]
    assert error.failures[0].source == "x = 1"
    assert error.retryable
    assert error.record.status == "failed"
    assert events.events[-3:] == ["end silver failed", "end gold skipped", "finished failed"]

    record = load_record(run_dir)
    assert record["status"] == "failed"
    assert record["error"].startswith("layer 'silver' failed")
    assert [layer["status"] for layer in record["layers"]] == ["succeeded", "failed", "skipped"]
    silver = record["layers"][1]
    assert silver["notebooks"][0]["error"] == {"cell_index": 4, "execution_count": 5, "source": "x = 1",
                                               "ename": "ZeroDivisionError", "evalue": "division by zero"}
    assert [t["table"] for t in silver["tables"]] == ["silver.numbers"]  # written before the failure
    assert record["layers"][2]["error"] == ("not run: silver.numbers (notebooks/silver.ipynb) did not succeed")

    executed = nbformat.read(run_dir / "silver" / "silver.ipynb", as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["ZeroDivisionError"]
    assert not (run_dir / "gold").exists()  # gold's kernel was started ahead, then discarded
    with medallion_nb.connect(project.root) as lake:
        assert not lake.exists("gold.total")


def wait_for_each_other(folder, me: str, other: str) -> str:
    """A cell that marks ``me`` as running, then waits until ``other`` runs too (at most 5 minutes)."""
    return (f"import pathlib, time\nhere = pathlib.Path({str(folder)!r})\n(here / {me!r}).touch()\n"
            "deadline = time.monotonic() + 300\n"
            f"while not (here / {other!r}).exists():\n"
            f"    assert time.monotonic() < deadline, '{other} did not run while {me} was running'\n"
            "    time.sleep(0.05)")


@pytest.mark.notebook
def test_notebooks_of_one_layer_run_side_by_side(tmp_path):
    # Each notebook waits until the other has started: run one after the other, the first
    # would wait in vain and fail. No clock is compared, so a slow machine cannot fail it.
    def meeting(table: str, me: str, other: str) -> str:
        return notebook_text(CONNECT, wait_for_each_other(tmp_path, me, other),
                             f'lake.write("{table}", "select \'{me}\' as notebook")')
    root = write_project(tmp_path / "par", """\
name: par
layers:
  - name: bronze
    notebooks: [notebooks/left.ipynb, notebooks/right.ipynb]
  - name: gold
    notebook: notebooks/gold.ipynb
""", {"notebooks/left.ipynb": meeting("bronze.left", "left", "right"),
      "notebooks/right.ipynb": meeting("bronze.right", "right", "left"),
      "notebooks/gold.ipynb": notebook_text(CONNECT, 'lake.write("gold.both", "select * from bronze.left '
                                                     'union all select * from bronze.right")')})
    record = run_pipeline(load_project(root), run_id="par1")
    bronze, gold = record.layers
    assert [t.table for t in bronze.tables] == ["bronze.left", "bronze.right"]
    assert [nb.output for nb in bronze.notebooks] == ["runs/par1/bronze/left.ipynb", "runs/par1/bronze/right.ipynb"]
    assert [t.rows for t in gold.tables] == [2]
    with medallion_nb.connect(root) as lake:
        assert sorted(lake.sql("select notebook from gold.both").fetchall()) == [("left",), ("right",)]
    assert (root / "runs/par1/bronze/left.writes.jsonl").is_file()
    assert (root / "runs/par1/bronze/right.writes.jsonl").is_file()


@pytest.mark.notebook
def test_a_layer_over_its_timeout_is_stopped(tmp_path):
    # The layer's clock starts with its kernel, so on a loaded machine the timeout may strike
    # before the sleeping cell starts. The cell leaves a mark when it starts; what the message
    # must name depends on that mark, never on how fast the machine is.
    started, finished = tmp_path / "started", tmp_path / "finished"
    cell = f"import time, pathlib\npathlib.Path({str(started)!r}).touch()\ntime.sleep(3600)\n" \
           f"pathlib.Path({str(finished)!r}).touch()"
    root = write_project(tmp_path / "slow", "name: slow\nlayers:\n  - name: bronze\n    notebook: nb/slow.ipynb\n"
                         "    timeout: PT5S\n", {"nb/slow.ipynb": notebook_text(cell)})
    with pytest.raises(NotebookRunError) as err:
        run_pipeline(load_project(root), run_id="t1")  # returns at all: the hour-long cell was stopped
    first, *rest = str(err.value).splitlines()
    assert first.startswith("layer 'bronze' failed: nb/slow.ipynb")
    assert first.endswith("Timeout: still running at the layer timeout (5s); stopped")
    if started.exists():  # the usual case: the timeout struck in the sleeping cell, which the message names
        assert first == ("layer 'bronze' failed: nb/slow.ipynb, cell 2 (In [3]): Timeout: still running at the "
                         "layer timeout (5s); stopped")
        assert rest[0] == "  failing cell starts: import time, pathlib"
    assert not finished.exists()
    record = load_record(root / "runs" / "t1")
    assert (record["status"], record["layers"][0]["status"]) == ("failed", "failed")


@pytest.mark.notebook
def test_a_dying_kernel_fails_its_notebook_only(tmp_path):
    nb = tmp_path / "die.ipynb"
    nb.write_text(notebook_text("import os\nos._exit(3)"), encoding="utf-8")
    with NotebookEngine(preload=None) as engine:
        (outcome,) = engine.run([NotebookTask("bronze", nb, tmp_path / "out" / "die.ipynb", {"run_id": "x"})])
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert (outcome.error.ename, outcome.error.evalue) == ("DeadKernelError", "Kernel died")
    assert (outcome.error.cell_index, outcome.error.first_line) == (2, "import os")
    assert (tmp_path / "out" / "die.ipynb").is_file()


# -- lineage-driven runs ------------------------------------------------------------------

TWO_SILVERS = """\
name: two
layers:
  - name: bronze
    notebook: notebooks/bronze.ipynb
  - name: silver
    notebooks: [notebooks/left.ipynb, notebooks/right.ipynb]
  - name: gold
    notebooks: [notebooks/from_left.ipynb, notebooks/from_right.ipynb]
"""


def two_silvers(root, *, left_wait=None, right_cells=None):
    """bronze -> silver.left, silver.right (independent) -> gold.from_left, gold.from_right."""
    sleep = "import time\ntime.sleep(1)"
    return write_project(root, TWO_SILVERS, {
        "notebooks/bronze.ipynb": notebook_text(CONNECT, 'lake.write("bronze.n", "select range as n from range(10)")'),
        "notebooks/left.ipynb": notebook_text(CONNECT, left_wait or sleep,
                                              'lake.write("silver.left", "select * from bronze.n")'),
        "notebooks/right.ipynb": notebook_text(*(right_cells or (
            CONNECT, sleep, 'lake.write("silver.right", "select n * 2 as n from bronze.n")'))),
        "notebooks/from_left.ipynb": notebook_text(CONNECT, 'lake.write("gold.l", "select sum(n) s from silver.left")'),
        "notebooks/from_right.ipynb": notebook_text(
            CONNECT, 'lake.write("gold.r", "select sum(n) s from silver.right")'),
    })


@pytest.mark.notebook
def test_independent_notebooks_run_concurrently_and_a_failure_skips_only_its_dependents(tmp_path):
    # The silver notebooks wait for each other (no clock compared): run one after the other, left would fail.
    failing = (CONNECT, 'numbers = lake.table("bronze.n")', wait_for_each_other(tmp_path, "right", "left"),
               "raise ValueError('bad right')", 'lake.write("silver.right", numbers)')
    project = load_project(two_silvers(tmp_path / "two", left_wait=wait_for_each_other(tmp_path, "left", "right"),
                                       right_cells=failing))
    with pytest.raises(NotebookRunError, match=r"layer 'silver' failed: notebooks/right.ipynb, cell 5"):
        run_pipeline(project, run_id="t1")
    record = load_record(project.runs / "t1")
    notebooks = {nb["notebook"]: nb for layer in record["layers"] for nb in layer["notebooks"]}
    left, right = notebooks["notebooks/left.ipynb"], notebooks["notebooks/right.ipynb"]
    # The two silver notebooks overlapped: each started before the other finished.
    assert left["started"] < right["finished"]
    assert right["started"] < left["finished"]
    assert {name: nb["status"] for name, nb in notebooks.items()} == {
        "notebooks/bronze.ipynb": "succeeded", "notebooks/left.ipynb": "succeeded",
        "notebooks/right.ipynb": "failed", "notebooks/from_left.ipynb": "succeeded",
        "notebooks/from_right.ipynb": "skipped"}
    assert notebooks["notebooks/from_right.ipynb"]["reason"] == ("not run: silver.right (notebooks/right.ipynb) "
                                                                "did not succeed")
    assert notebooks["notebooks/from_left.ipynb"]["started"] >= left["finished"]
    with medallion_nb.connect(project.root) as lake:
        assert lake.exists("gold.l")
        assert not lake.exists("gold.r")


@pytest.mark.notebook
def test_select_runs_exactly_the_slice_and_nothing_new_is_up_to_date(tmp_path):
    project = load_project(two_silvers(tmp_path / "two"))
    run_pipeline(project, run_id="all")
    with medallion_nb.connect(project.root) as lake:
        versions = {t: lake.info(t)["version"] for t in lake.tables()}

    record = run_pipeline(project, run_id="slice", select=["silver.right+"], force=True)
    assert record.selection == ["notebooks/right.ipynb", "notebooks/from_right.ipynb"]
    assert [nb.notebook for layer in record.layers for nb in layer.notebooks] == record.selection
    with medallion_nb.connect(project.root) as lake:
        after = {t: lake.info(t)["version"] for t in lake.tables()}
    changed = sorted(t for t in after if after[t] != versions[t])
    assert changed == ["gold.r", "silver.right"]

    # Nothing changed since: every notebook is up to date, no table gets a new version.
    again = run_pipeline(project, run_id="noop")
    assert {nb.status for layer in again.layers for nb in layer.notebooks} == {"up to date"}
    assert [layer.status for layer in again.layers] == ["up to date"] * 3
    with medallion_nb.connect(project.root) as lake:
        assert {t: lake.info(t)["version"] for t in lake.tables()} == after
    # Such a run starts no kernel: the command never even imports papermill, nbformat or jupyter_client,
    # and the note it leaves in place of each executed copy is a valid notebook.
    code = ("import sys; from medallion_nb.cli import main; "
            "code = main(['run', '--project', sys.argv[1], '--run-id', 'noop-cli']); "
            "print(sorted(m for m in ('papermill', 'nbformat', 'jupyter_client') if m in sys.modules)); "
            "sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, str(project.root)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    note = nbformat.read(project.runs / "noop-cli" / "bronze" / "bronze.ipynb", as_version=4)
    nbformat.validate(note)
    assert "up to date" in note.cells[0].source

    # Editing a notebook's code re-runs it and what reads its tables.
    left = project.root / "notebooks" / "left.ipynb"
    left.write_text(left.read_text().replace("select * from bronze.n", "select * from bronze.n where n > 0"))
    edited = run_pipeline(project, run_id="edited")
    statuses = {nb.notebook: nb.status for layer in edited.layers for nb in layer.notebooks}
    assert statuses == {"notebooks/bronze.ipynb": "up to date", "notebooks/left.ipynb": "succeeded",
                        "notebooks/right.ipynb": "up to date", "notebooks/from_left.ipynb": "succeeded",
                        "notebooks/from_right.ipynb": "up to date"}


@pytest.mark.notebook
def test_resume_runs_again_what_did_not_succeed(tmp_path):
    root = two_silvers(tmp_path / "two", right_cells=(CONNECT, "raise ValueError('not yet')"))
    project = load_project(root)
    with pytest.raises(NotebookRunError):
        run_pipeline(project, run_id="r1")
    (root / "notebooks" / "right.ipynb").write_text(notebook_text(
        CONNECT, 'lake.write("silver.right", "select n * 2 as n from bronze.n")'))
    record = run_pipeline(project, resume="r1")
    assert record.run_id == "r1"
    assert record.status == "succeeded"
    statuses = {nb.notebook: nb.status for layer in record.layers for nb in layer.notebooks}
    assert statuses == dict.fromkeys(statuses, "succeeded")
    assert len(statuses) == 5
    kept = sorted(p.suffix for p in (project.runs / "r1" / "silver").glob("right.failed-*"))
    assert ".ipynb" in kept  # the failed attempt's executed notebook stays, next to the new one
    with medallion_nb.connect(root) as lake:
        assert lake.sql("select s from gold.r").fetchall() == [(90,)]
        assert lake.history("silver.left")[0]["run_id"] == "r1"
        assert len(lake.history("silver.left")) == 1  # left succeeded the first time: not run again


def test_a_run_refuses_at_once_while_another_holds_the_lock(tmp_path):
    from medallion_nb.errors import LockHeldError
    from medallion_nb.lock import WriterLock

    project = load_project(three_layer_project(tmp_path / "tiny"))
    with WriterLock(project).hold("other-run", command="medallion-nb run"):
        with pytest.raises(LockHeldError, match=r"run other-run \(pid \d+ on .*\) is writing to it"):
            run_pipeline(project, run_id="second")
        with pytest.raises(LockHeldError, match=r"still held after waiting 0.2s"):
            run_pipeline(project, run_id="third", wait=0.2)
    assert not (project.runs / "second").exists()


# -- kernels started ahead ----------------------------------------------------------------

def kernel_marks(path):
    """Preload code: each kernel appends its pid and its notebook's write log to ``path``."""
    return ("import os, pathlib\n"
            f"with pathlib.Path({str(path)!r}).open('a') as f:\n"
            "    f.write(f\"{os.getpid()} {os.environ.get('MEDALLION_WRITE_LOG', '')}\\n\")")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.notebook
def test_a_kernel_started_ahead_for_a_notebook_that_is_up_to_date_is_stopped_unused(tmp_path):
    root = three_layer_project(tmp_path / "tiny")
    marks = tmp_path / "kernels.txt"
    run_pipeline(load_project(root), run_id="t1", engine=NotebookEngine(preload=kernel_marks(marks)))
    # bronze's code changes (it still writes bronze.numbers, by its lineage) and this time it writes
    # nothing: it runs and silver is up to date. gold's code changes too: it runs, and waits for
    # silver's kernel to be gone (a kernel left running would fail it after two minutes).
    (root / "notebooks" / "bronze.ipynb").write_text(
        notebook_text(CONNECT, "if lake.exists('bronze.numbers'):\n    pass\nelse:\n    " +
                      'lake.write("bronze.numbers", "select range as n from range(10)")'), encoding="utf-8")
    wait_for_silver = (
        "import os, pathlib, time\n"
        f"pid = next(int(line.split()[0]) for line in pathlib.Path({str(marks)!r}).read_text().splitlines()\n"
        "           if '/silver/' in line)\n"
        "deadline = time.monotonic() + 120\n"
        "while time.monotonic() < deadline:\n"
        "    try:\n"
        "        os.kill(pid, 0)\n"
        "    except ProcessLookupError:\n"
        "        break\n"
        "    time.sleep(0.1)\n"
        "else:\n"
        "    raise RuntimeError(f'the kernel started for silver ({pid}) is still running')")
    (root / "notebooks" / "gold.ipynb").write_text(notebook_text(
        CONNECT, wait_for_silver, 'lake.write("gold.total", "select sum(n) as total from silver.numbers")'),
        encoding="utf-8")
    marks.unlink()
    record = run_pipeline(load_project(root), run_id="t2", engine=NotebookEngine(preload=kernel_marks(marks)))
    status = {nb.notebook: nb.status for layer in record.layers for nb in layer.notebooks}
    assert status == {"notebooks/bronze.ipynb": "succeeded", "notebooks/silver.ipynb": "up to date",
                      "notebooks/gold.ipynb": "succeeded"}
    started = dict(line.split(" ", 1) for line in marks.read_text().splitlines())
    # silver's kernel was started with bronze's, before anyone knew silver would be up to date ...
    assert sorted(Path(log).parent.name for log in started.values()) == ["bronze", "gold", "silver"]
    # ... and was stopped unused: no process, no kernel log left in the run folder.
    assert not any(alive(int(pid)) for pid in started)
    assert not list((root / "runs" / "t2").glob("silver/*.kernel.log"))
    assert list((root / "runs" / "t2").glob("bronze/*.kernel.log"))


@pytest.mark.notebook
def test_the_executed_notebook_keeps_papermills_record_of_every_cell(tmp_path):
    nb = tmp_path / "nb.ipynb"
    nb.write_text(notebook_text("x = 1", "print('two')", "x + 2"), encoding="utf-8")
    with NotebookEngine(preload=None) as engine:
        (outcome,) = engine.run([NotebookTask("bronze", nb, tmp_path / "out" / "nb.ipynb", {"run_id": "x"})])
    assert outcome.ok
    executed = nbformat.read(tmp_path / "out" / "nb.ipynb", as_version=4)
    assert [c.metadata.papermill["status"] for c in executed.cells] == ["completed"] * len(executed.cells)
    assert all(c.metadata.papermill["end_time"] for c in executed.cells)
    assert executed.cells[-2].outputs[0]["text"] == "two\n"
    assert executed.cells[-1].outputs[0]["data"]["text/plain"] == "3"
