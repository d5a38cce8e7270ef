"""The generated Kestra flow: valid against Kestra's schema, and right where the schema cannot tell."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

import medallion_nb
from medallion_nb import FlowError, load_project
from medallion_nb.cli import main
from medallion_nb.kestra import build_compose, build_flow, kestra_files, render_flow, run_date_expression
from medallion_nb.kestra.compose import UV_IMAGE, dockerfile_lines, kestra_configuration
from medallion_nb.scaffold import init_project, template_dir
from tests.conftest import KESTRA_SCHEMA, REPO, write_project
from tests.kestra_sim import Execution, check_references, evaluate, flow_inputs, iter_tasks, references, render

SCHEMA = KESTRA_SCHEMA / "kestra-flow-subset.compat-1.3-2.0.schema.json"
SCHEMA_1_3 = KESTRA_SCHEMA / "kestra-flow-subset.schema.json"
TEMPLATE_NOTEBOOK = template_dir() / "notebooks" / "gold.ipynb"


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def schema_problems(validator: Draft7Validator, flow: dict) -> str | None:
    errors = list(validator.iter_errors(flow))
    if not errors:
        return None
    worst = best_match(errors)
    return f"{'/'.join(map(str, worst.absolute_path))}: {worst.message}"


def notebook_files(*paths: str) -> dict[str, str]:
    text = TEMPLATE_NOTEBOOK.read_text(encoding="utf-8")
    return dict.fromkeys(paths, text)


def project_with(tmp_path: Path, extra: str = "", layers: str | None = None, files: dict | None = None) -> Path:
    layers = layers or """
  - name: bronze
    notebook: notebooks/bronze.ipynb
  - name: silver
    notebook: notebooks/silver.ipynb
    timeout: PT10M
  - name: gold
    notebook: notebooks/gold.ipynb
"""
    config = f"name: acme\nnamespace: company.data\nlayers:{layers}{extra}"
    nbs = files or notebook_files("notebooks/bronze.ipynb", "notebooks/silver.ipynb", "notebooks/gold.ipynb")
    return write_project(tmp_path / "acme", config, nbs)


def flow_checks(flow: dict, layer_names: list[str]) -> None:
    """What the schema cannot check: unique ids, layer order, Pebble references, round trip."""
    ids = [t["id"] for t in iter_tasks(flow["tasks"] + flow.get("errors", []))]
    assert len(ids) == len(set(ids)), f"duplicate task ids: {ids}"
    assert [t["id"] for t in flow["tasks"]][: len(layer_names)] == layer_names
    assert check_references(flow) == []
    assert "workingDirectory" not in json.dumps(flow)
    assert "dependsOn" not in json.dumps(flow["tasks"])
    assert yaml.safe_load(render_flow(flow)) == flow


def test_the_vendored_schemas_are_the_ones_their_readme_records():
    readme = (KESTRA_SCHEMA / "README.md").read_text(encoding="utf-8")
    recorded = dict(re.findall(r"\| `([\w.-]+\.json)` \| `([0-9a-f]{64})` \|", readme))
    assert sorted(recorded) == sorted(p.name for p in KESTRA_SCHEMA.glob("*.json"))
    for name, digest in recorded.items():
        assert hashlib.sha256((KESTRA_SCHEMA / name).read_bytes()).hexdigest() == digest, f"{name} changed"


# -- generated flows -----------------------------------------------------------
def test_demo_flow_passes_schema_and_checks(validator):
    project = load_project(REPO)
    flow = build_flow(project)
    assert schema_problems(validator, flow) is None
    flow_checks(flow, [layer.name for layer in project.layers])
    full = Draft7Validator(json.loads(SCHEMA_1_3.read_text(encoding="utf-8")))
    assert schema_problems(full, flow) is None  # the compat profile is a subset of what Kestra 1.3 accepts
    assert flow["id"] == "shop"
    assert flow["namespace"] == "medallion.demo"
    assert flow["triggers"] == [{"id": "schedule", "type": "io.kestra.plugin.core.trigger.Schedule",
                                 "cron": "0 6 * * *", "timezone": "UTC"}]


def test_committed_demo_kestra_folder_is_up_to_date():
    project = load_project(REPO)
    for path, text in kestra_files(project, REPO / "kestra", version="x").items():
        rel = path.relative_to(REPO)
        assert path.is_file(), f"{rel} is missing: run `medallion-nb kestra` in the repo"
        assert path.read_text(encoding="utf-8") == text, f"{rel} is stale: run `medallion-nb kestra` in the repo"


def test_init_project_flow_passes_schema_and_checks(tmp_path, validator):
    made = init_project("demo2", tmp_path / "demo2")
    files = sorted((made.root / "kestra" / "flows").glob("*.yml"))
    assert [f.name for f in files] == ["medallion.demo2.demo2.yml"]
    flow = yaml.safe_load(files[0].read_text(encoding="utf-8"))
    assert schema_problems(validator, flow) is None
    flow_checks(flow, ["bronze", "silver", "gold"])
    assert "triggers" not in flow  # the template has no schedule
    assert flow == build_flow(load_project(made.root))


def test_scheduled_flow_uses_trigger_date_in_the_schedule_timezone(tmp_path, validator):
    root = project_with(tmp_path, "schedule:\n  cron: '30 1 * * 1-5'\n  timezone: Europe/Paris\n")
    flow = build_flow(load_project(root))
    assert schema_problems(validator, flow) is None
    flow_checks(flow, ["bronze", "silver", "gold"])
    assert flow["triggers"][0]["cron"] == "30 1 * * 1-5"
    assert flow["triggers"][0]["timezone"] == "Europe/Paris"
    expr = run_date_expression(load_project(root))
    assert "trigger.date" in expr
    assert "timeZone='Europe/Paris'" in expr
    # 01:30 in Paris is still the previous day in UTC: the date must be Paris's.
    ctx = Execution("e1", datetime(2026, 3, 2, 0, 30, tzinfo=UTC), flow_inputs(flow),
                    datetime(2026, 3, 2, 0, 30, tzinfo=UTC)).context(flow)
    assert render(expr, ctx) == "2026-03-02"


def test_layer_with_two_notebooks_is_one_task_whose_runner_runs_them_side_by_side(tmp_path, validator):
    layers = """
  - name: bronze
    notebook: notebooks/bronze.ipynb
  - name: silver
    notebooks: [notebooks/silver_orders.ipynb, notebooks/silver-customers.ipynb]
  - name: gold
    notebook: notebooks/gold.ipynb
"""
    files = notebook_files("notebooks/bronze.ipynb", "notebooks/silver_orders.ipynb",
                           "notebooks/silver-customers.ipynb", "notebooks/gold.ipynb")
    flow = build_flow(load_project(project_with(tmp_path, layers=layers, files=files)))
    assert schema_problems(validator, flow) is None
    flow_checks(flow, ["bronze", "silver", "gold"])
    silver = flow["tasks"][1]
    assert silver["outputFiles"] == ["silver_orders.ipynb", "silver-customers.ipynb"]
    assert "runs side by side" in silver["description"]
    for name in silver["outputFiles"]:
        assert f"papermill notebooks/{name} runs/<execution id>/silver/{name} --cwd notebooks" in silver["description"]
        assert any(c.startswith("cp ") and f'/silver/{name}" {name}' in c for c in silver["commands"])


def test_export_task_ends_the_flow_when_asked(tmp_path, validator):
    root = project_with(tmp_path, "kestra:\n  export: true\nexport:\n  dir: bi/snapshots\n")
    flow = build_flow(load_project(root))
    assert schema_problems(validator, flow) is None
    flow_checks(flow, ["bronze", "silver", "gold"])
    last = flow["tasks"][-1]
    assert last["id"] == "export"
    assert last["commands"][0] == 'medallion-nb export --project "{{ vars.project_dir }}" ' \
                                  '--out "{{ vars.project_dir }}/bi/snapshots"'
    assert last["outputFiles"] == ["manifest.json"]


# -- task details ---------------------------------------------------------------
def test_layer_task_properties(tmp_path):
    root = project_with(tmp_path, "kestra:\n  retries: 4\n  retry_interval: PT5M\n")
    flow = build_flow(load_project(root))
    silver = flow["tasks"][1]
    assert silver["timeout"] == "PT10M"
    assert flow["tasks"][0]["timeout"] == "PT1H"  # the layer default
    assert silver["retry"] == {"type": "constant", "maxAttempts": 5, "interval": "PT5M"}
    assert silver["taskRunner"] == {"type": "io.kestra.plugin.core.runner.Process"}
    assert silver["env"]["MEDALLION_KESTRA_OUTPUTS"] == "1"
    assert silver["outputFiles"] == ["silver.ipynb"]
    run = silver["commands"][0]
    assert run.startswith('medallion-nb run --project "{{ vars.project_dir }}" --run-id "{{ execution.id }}" '
                          "--layer silver")
    for part in ("--attach --no-publish", '-p "full_refresh={{ inputs.full_refresh }}"', "2>&1 || status=$?"):
        assert part in run
    assert silver["commands"][1] == ('cp "{{ vars.project_dir }}/runs/{{ execution.id }}/silver/silver.ipynb" '
                                     "silver.ipynb 2>/dev/null || true")
    assert silver["commands"][2].startswith('if [ "${status:-0}" -ne 0 ]; then echo ')
    # The papermill call the runner makes is shown in the task's description.
    assert ("papermill notebooks/silver.ipynb runs/<execution id>/silver/silver.ipynb --cwd notebooks "
            "-p project_dir /project -p run_id <execution id> -p run_date <run_date>") in silver["description"]
    assert [t["id"] for t in flow["tasks"]][-1] == "publish"
    assert flow["tasks"][-1]["commands"] == [
        'medallion-nb publish --project "{{ vars.project_dir }}" --run-id "{{ execution.id }}"']
    assert [i["id"] for i in flow["inputs"]] == ["run_date", "full_refresh"]
    assert {i["id"]: i["type"] for i in flow["inputs"]} == {"run_date": "DATE", "full_refresh": "BOOL"}
    assert flow["errors"][0]["type"] == "io.kestra.plugin.core.log.Log"
    assert "errorLogs()[0]['taskId']" in flow["errors"][0]["message"]
    assert flow["labels"]["project"] == "acme"


def test_no_retries_means_no_retry_block(tmp_path):
    flow = build_flow(load_project(project_with(tmp_path, "kestra:\n  retries: 0\n")))
    assert all("retry" not in t for t in flow["tasks"])


def test_project_parameters_come_from_medallion_yaml_not_the_flow(tmp_path, validator):
    root = project_with(tmp_path, "parameters:\n  full_refresh: true\n  sample: 0.5\n  region: '42'\n")
    flow = build_flow(load_project(root))
    assert schema_problems(validator, flow) is None
    assert flow["inputs"][1]["defaults"] is True
    run = flow["tasks"][0]["commands"][0]
    assert "region" not in run  # the runner reads them, with their types, from medallion.yaml
    assert "sample" not in run


def test_flow_is_deterministic(tmp_path):
    root = project_with(tmp_path)
    assert render_flow(build_flow(load_project(root))) == render_flow(build_flow(load_project(root)))


def test_notebook_outside_the_project_is_refused(tmp_path):
    outside = tmp_path / "elsewhere" / "gold.ipynb"
    outside.parent.mkdir()
    shutil.copy(TEMPLATE_NOTEBOOK, outside)
    root = project_with(tmp_path, layers="\n  - name: gold\n    notebook: ../elsewhere/gold.ipynb\n",
                        files={"notebooks/x.ipynb": "{}"})
    with pytest.raises(FlowError, match=r"layers\.gold\.notebooks: .*gold\.ipynb is outside the project folder"):
        build_flow(load_project(root))


def test_task_id_clash_is_refused(tmp_path):
    for reserved in ("export", "publish"):
        layers = f"\n  - name: {reserved}\n    notebook: notebooks/x.ipynb\n"
        root = project_with(tmp_path / reserved, "kestra:\n  export: true\n", layers=layers,
                            files=notebook_files("notebooks/x.ipynb"))
        with pytest.raises(FlowError, match=rf"share the id.*{reserved}"):
            build_flow(load_project(root))


def test_paths_with_spaces_are_quoted(tmp_path, validator):
    layers = "\n  - name: gold\n    notebook: my notebooks/gold report.ipynb\n"
    root = project_with(tmp_path, layers=layers, files=notebook_files("my notebooks/gold report.ipynb"))
    flow = build_flow(load_project(root))
    assert schema_problems(validator, flow) is None
    cmd = flow["tasks"][0]["commands"]
    assert cmd[1] == ('cp "{{ vars.project_dir }}/runs/{{ execution.id }}/gold/gold report.ipynb" '
                      "'gold report.ipynb' 2>/dev/null || true")
    assert "papermill 'my notebooks/gold report.ipynb' " in flow["tasks"][0]["description"]


# -- the Pebble the flow uses ----------------------------------------------------
def test_run_date_fallbacks():
    flow = build_flow(load_project(REPO))
    expr = run_date_expression(load_project(REPO))
    start = datetime(2026, 5, 7, 23, 59, tzinfo=UTC)
    scheduled = Execution("a", start, flow_inputs(flow), trigger_date=datetime(2026, 1, 15, 6, 0, tzinfo=UTC))
    assert render(expr, scheduled.context(flow)) == "2026-01-15"  # a backfill processes its own day
    manual = Execution("b", start, flow_inputs(flow, {"run_date": date(2026, 2, 1)}))
    assert render(expr, manual.context(flow)) == "2026-02-01"
    plain = Execution("c", start, flow_inputs(flow))
    assert render(expr, plain.context(flow)) == "2026-05-07"


def test_reference_checker_catches_bad_references():
    flow = {"id": "f", "namespace": "n", "inputs": [{"id": "run_date", "type": "DATE"}],
            "tasks": [{"id": "t", "type": "io.kestra.plugin.core.log.Log",
                       "message": "{{ inputs.rundate }} {{ trigger.date }} {{ taskrun.id }} {{ x | nope }}"}]}
    problems = "\n".join(check_references(flow))
    assert "inputs.rundate does not exist" in problems
    assert "trigger is not available" in problems  # no trigger in this flow
    assert "taskrun is not available" in problems
    assert "unknown filter |nope" in problems
    assert references("(a.b ?? c) | date('x', timeZone='UTC')") == [("a", "b"), ("c", None)]
    with pytest.raises(ValueError, match="unsupported"):
        evaluate("inputs.a + 1", {"inputs": {"a": 1}})


# -- compose ---------------------------------------------------------------------
def test_compose_file(tmp_path):
    project = load_project(project_with(tmp_path))
    out = project.root / "kestra"
    compose = yaml.safe_load(yaml.safe_dump(build_compose(project, out)))
    assert set(compose["services"]) == {"postgres", "kestra"}
    kestra = compose["services"]["kestra"]
    assert kestra["command"] == "server standalone --flow-path /app/flows"
    assert kestra["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    mounts = dict(v.split(":")[:2] for v in kestra["volumes"])
    assert mounts["./flows"] == "/app/flows"
    assert mounts[".."] == "/project"
    assert (out / "..").resolve() == project.root
    assert kestra["build"] == {"context": ".", "dockerfile": "Dockerfile"}  # the Dockerfile and wheels/
    vendored = build_compose(project, out, vendored=True)["services"]["kestra"]["build"]
    assert (out / vendored["context"]).resolve() == project.root  # the source to install
    assert (project.root / vendored["dockerfile"]).resolve() == out / "Dockerfile"
    assert set(compose["volumes"]) == {"postgres-data", "kestra-data"}
    config = yaml.safe_load(kestra["environment"]["KESTRA_CONFIGURATION"])
    assert config == kestra_configuration()
    assert config["kestra"]["repository"]["type"] == "postgres"
    assert config["datasources"]["postgres"]["url"] == "jdbc:postgresql://postgres:5432/kestra"
    assert compose["services"]["postgres"]["environment"]["POSTGRES_DB"] == "kestra"
    assert all(p.startswith("127.0.0.1:") for p in kestra["ports"])


def test_dockerfile_installs_what_the_tasks_run(tmp_path):
    project = load_project(project_with(tmp_path, "kestra:\n  image: kestra/kestra:v1.3.25\n"))
    lines = dockerfile_lines(project, version="9.9", vendored=False)
    assert lines[2] == "FROM kestra/kestra:v1.3.25"
    install = "\n".join(lines)
    assert "COPY wheels/ /opt/medallion-wheels/" in install
    assert ("RUN uv pip install --python /opt/medallion/bin/python papermill ipykernel "
            "/opt/medallion-wheels/medallion_nb-9.9-py3-none-any.whl") in install
    assert "medallion_nb==" not in install  # never asks a package index for medallion_nb
    assert "/usr/local/bin/" in install
    vendored = "\n".join(dockerfile_lines(load_project(REPO), version="9.9", vendored=True))
    assert "COPY medallion_nb /opt/medallion-src/medallion_nb" in vendored
    assert "papermill ipykernel /opt/medallion-src" in vendored
    assert "wheels" not in vendored


def test_a_missing_wheel_stops_the_image_build_with_a_message_saying_how_to_build_it(tmp_path):
    project = load_project(project_with(tmp_path))
    check = next(line for line in dockerfile_lines(project, version="9.9", vendored=False)
                 if line.startswith("RUN test -f"))
    script = check.removeprefix("RUN ").replace("/opt/medallion-wheels", str(tmp_path / "wheels"))
    (tmp_path / "wheels").mkdir()
    missing = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=False)
    assert missing.returncode == 1
    assert missing.stderr == ("error: wheels/medallion_nb-9.9-py3-none-any.whl is missing: build it with "
                              "pip wheel --no-deps -w wheels <path to the medallion_nb source>\n")
    (tmp_path / "wheels" / "medallion_nb-9.9-py3-none-any.whl").write_bytes(b"")
    assert subprocess.run(["/bin/sh", "-c", script], check=False).returncode == 0


def test_generated_files_link_to_no_package_page(tmp_path):
    made = init_project("linked", tmp_path / "linked")
    for path in made.files:
        text = (made.root / path).read_text(encoding="utf-8")
        assert "pypi.org" not in text, f"{path} links to a package page"
        assert "medallion_nb==" not in text, f"{path} asks a package index for medallion_nb"


# -- the command ----------------------------------------------------------------------
def test_cli_writes_flow_compose_and_dockerfile(tmp_path, capsys, validator):
    root = project_with(tmp_path, "schedule:\n  cron: '0 5 * * *'\n")
    assert main(["kestra", "--project", str(root)]) == 0
    out = capsys.readouterr().out
    flow_file = root / "kestra" / "flows" / "company.data.acme.yml"
    assert flow_file.is_file()
    assert "docker compose -f" in out
    flow = yaml.safe_load(flow_file.read_text(encoding="utf-8"))
    assert schema_problems(validator, flow) is None
    assert flow_file.read_text(encoding="utf-8").startswith("# Generated by `medallion-nb kestra`")
    assert "before the first build: put medallion_nb's wheel in" in out
    compose = yaml.safe_load((root / "kestra" / "docker-compose.yml").read_text(encoding="utf-8"))
    assert compose["services"]["kestra"]["build"]["context"] == "."
    assert (root / "kestra" / "Dockerfile").read_text(encoding="utf-8").startswith("# Generated")
    readme = (root / "kestra" / "wheels" / "README.md").read_text(encoding="utf-8")
    assert "pip wheel --no-deps -w kestra/wheels <path to the medallion_nb source>" in readme
    assert f"wheels/medallion_nb-{medallion_nb.__version__}-py3-none-any.whl" in readme
    other = tmp_path / "deploy"
    assert main(["kestra", "--project", str(root), "--out", str(other)]) == 0
    compose = yaml.safe_load((other / "docker-compose.yml").read_text(encoding="utf-8"))
    assert compose["services"]["kestra"]["volumes"][-1] == f"{root}:/project"  # outside the project: absolute
    assert f"pip wheel --no-deps -w {other / 'wheels'} <path" in (other / "wheels" / "README.md").read_text()


def test_cli_reports_invalid_project(tmp_path, capsys):
    root = write_project(tmp_path / "bad", "name: Bad Name\nlayers: []\n")
    assert main(["kestra", "--project", str(root)]) == 2
    assert "name" in capsys.readouterr().err


def test_kestra_package_imports_no_papermill_or_widgets():
    code = ("import sys, medallion_nb.kestra, medallion_nb.export, medallion_nb.scaffold; "
            "bad = [m for m in ('papermill', 'ipywidgets') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_image_takes_the_uv_the_lock_pins():
    # A moving tag (latest) would change the image under a user; the lock's uv moves with the lock.
    pinned = re.search(r"(?m)^uv==([0-9.]+) ", (REPO / "requirements" / "dev.txt").read_text())
    assert pinned is not None
    assert f"ghcr.io/astral-sh/uv:{pinned.group(1)}" == UV_IMAGE
    assert f"COPY --from={UV_IMAGE} /uv" in (REPO / "kestra" / "Dockerfile").read_text()
