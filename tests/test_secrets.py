"""Secrets: ``${NAME}`` in medallion.yaml, resolved from the environment inside the kernel, never written anywhere."""

from __future__ import annotations

import pytest
from conftest import THREE_LAYERS, write_project
from notebook_factory import CONNECT, notebook_text

from medallion_nb import connect
from medallion_nb.cli import main
from medallion_nb.errors import FlowError, ProjectError, SecretError, UsageError
from medallion_nb.kestra.flow import build_flow, layer_commands
from medallion_nb.project import load_project
from medallion_nb.runner.params import notebook_parameters
from medallion_nb.secrets import SecretText, parse, redact

NOTEBOOKS = {f"notebooks/{layer}.ipynb": notebook_text(CONNECT) for layer in ("bronze", "silver", "gold")}


def project_with(tmp_path, extra: str):
    return write_project(tmp_path / "p", f"name: p\nlayers:{THREE_LAYERS}{extra}", NOTEBOOKS)


def test_a_reference_shows_itself_and_resolves_from_the_environment():
    text = SecretText("postgresql://app:${DB_PASSWORD}@db:5432/${DB_NAME}", "sources.orders.url")
    assert text.names == ("DB_PASSWORD", "DB_NAME")
    assert str(text) == repr(text)[len("<secret "):-1] == "postgresql://app:${DB_PASSWORD}@db:5432/${DB_NAME}"
    assert text.resolve({"DB_PASSWORD": "s3cr3t-pw", "DB_NAME": "shop"}) == "postgresql://app:s3cr3t-pw@db:5432/shop"
    with pytest.raises(SecretError, match=r"sources\.orders\.url: the environment variable DB_NAME is not set"):
        text.resolve({"DB_PASSWORD": "x"})


def test_kestra_secret_syntax_means_the_same_reference():
    assert parse("{{ secret('API_TOKEN') }}", "parameters.token") == SecretText("${API_TOKEN}", "parameters.token")
    assert parse("plain", "k") is None
    assert parse(3, "k") is None


def test_resolved_values_never_reach_an_error_message():
    url = SecretText("${REDACT_URL}", "sources.db.url").resolve(
        {"REDACT_URL": "postgresql://app:pa%24%24word-42@h:5432/db"})
    err = SecretError(f"cannot connect to {url}: password pa$$word-42 rejected")
    assert "pa$$word-42" not in str(err)
    assert "pa%24%24word-42" not in str(err)
    assert "${REDACT_URL}" in str(err)
    assert redact("nothing secret here") == "nothing secret here"


def test_secret_parameters_are_never_notebook_parameters(tmp_path):
    project = load_project(project_with(tmp_path, "\nparameters:\n  api_token: ${API_TOKEN}\n  region: eu\n"))
    assert project.secret_references() == {"API_TOKEN": "parameters.api_token"}
    params = notebook_parameters(project, "r1")
    assert "api_token" not in params
    assert params["region"] == "eu"
    with pytest.raises(UsageError, match=r"parameter api_token is a secret .*set the environment variable API_TOKEN"):
        notebook_parameters(project, "r1", {"api_token": "typed-on-the-command-line"})


def test_cli_refuses_a_secret_as_p_with_a_hint(tmp_path, capsys):
    root = project_with(tmp_path, "\nparameters:\n  api_token: ${API_TOKEN}\n")
    assert main(["run", "--project", str(root), "-p", "api_token=hunter2-from-cli"]) == 2
    err = capsys.readouterr().err
    assert "api_token is a secret" in err
    assert "API_TOKEN" in err
    assert "hunter2-from-cli" not in err
    assert not (root / "runs").exists()


@pytest.mark.parametrize(("extra", "message"), [
    ("\nparameters:\n  run_date: ${RUN_DATE}\n", r"parameters\.run_date: is set by the runner"),
    ("\nparameters:\n  token: Bearer ${TOKEN}\n", r"parameters\.token: .*one reference as the whole value"),
    ("\nparameters:\n  token: ${not valid}\n", r"parameters\.token: '\$\{not valid\}' is not a secret reference"),
    ("\ndescription: costs ${PRICE}\n", r"description: secret references .* only in parameters"),
])
def test_misplaced_or_malformed_references_are_config_errors(tmp_path, extra, message):
    with pytest.raises(ProjectError, match=message):
        load_project(project_with(tmp_path, extra))


def test_lake_secret_reads_the_environment_when_called(tmp_path, monkeypatch):
    root = project_with(tmp_path, "\nparameters:\n  api_token: ${API_TOKEN}\n  region: eu\n")
    monkeypatch.delenv("API_TOKEN", raising=False)
    with connect(root) as lake:
        with pytest.raises(SecretError, match="API_TOKEN is not set"):
            lake.secret("api_token")
        monkeypatch.setenv("API_TOKEN", "tok-123456")
        assert lake.secret("api_token") == "tok-123456"
        with pytest.raises(SecretError, match=r"parameters\.region: not a secret \(secret parameters: api_token\)"):
            lake.secret("region")
        with pytest.raises(SecretError, match=r"parameters\.nope: no such parameter"):
            lake.secret("nope")


def test_the_flow_maps_secrets_to_kestra_secrets_in_the_task_env(tmp_path):
    project = load_project(project_with(
        tmp_path, "\nparameters:\n  api_token: \"{{ secret('API_TOKEN') }}\"\n  other: ${OTHER_KEY}\n"
                  "  label: \"{{ execution.id }}\"\n  region: eu\n"))
    flow = build_flow(project)
    layers = [task for task in flow["tasks"] if task["id"] in {layer.name for layer in project.layers}]
    assert layers
    for task in layers:
        assert task["env"]["API_TOKEN"] == "{{ secret('API_TOKEN') }}"
        assert task["env"]["OTHER_KEY"] == "{{ secret('OTHER_KEY') }}"
        command = "\n".join(task["commands"])
        assert "API_TOKEN" not in command
        assert "OTHER_KEY" not in command
        assert "api_token" not in command
        assert "region" not in command  # the runner reads plain parameters from medallion.yaml
        assert '-p "label={{ execution.id }}"' in command  # a Kestra expression is rendered by Kestra


def test_a_kestra_expression_that_cannot_be_quoted_names_its_key(tmp_path):
    project = load_project(project_with(tmp_path, "\nparameters:\n  label: '{{ \"x\" }}'\n"))
    layer = project.layers[0]
    with pytest.raises(FlowError, match=r"parameters\.label: .* cannot be put in the task's command"):
        layer_commands(project, layer)


# -- nothing a run leaves behind contains a secret -------------------------------------------------------------
TOKEN = "tok-" + "9f3b27c1d8e04a6b"  # built here so that this file itself is no match for a grep of artefacts
USE_SECRET = ('import hashlib\ntoken = lake.secret("api_token")\n'
              'lake.write("bronze.proof", f"select \'{hashlib.sha256(token.encode()).hexdigest()}\' as digest")')


def files_containing(folder, value: str) -> list[str]:
    """Every file under ``folder`` whose bytes contain ``value``."""
    needle = value.encode()
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes())


def secret_project(root):
    sources = "sources:\n  shop_orders:\n    format: postgres\n    url: ${PG_URL}\n    table: leak.orders\n" \
              "    mode: merge\n    keys: [id]\n"
    return write_project(root, f"name: leaky\nlayers:{THREE_LAYERS}\nparameters:\n  api_token: ${{API_TOKEN}}\n"
                               f"{sources}", {
        "notebooks/bronze.ipynb": notebook_text(CONNECT, "lake.ingest()", USE_SECRET),
        "notebooks/silver.ipynb": notebook_text(CONNECT, 'lake.write("silver.proof", "select * from bronze.proof")'),
        "notebooks/gold.ipynb": notebook_text(CONNECT, 'lake.write("gold.proof", "select * from silver.proof")'),
    })


def expected_digest() -> str:
    import hashlib

    return hashlib.sha256(TOKEN.encode()).hexdigest()


@pytest.mark.notebook
def test_no_artefact_of_a_cli_run_or_a_kestra_execution_holds_the_secret(tmp_path, monkeypatch, postgres_server):
    import os
    import subprocess
    import sys
    from datetime import UTC, datetime

    import yaml
    from kestra_sim import Execution, check_references, flow_inputs, run_flow

    postgres_server.execute("create schema if not exists leak", "drop table if exists leak.orders",
                            "create table leak.orders (id int primary key, item text)",
                            "insert into leak.orders values (1, 'tea'), (2, 'cake')")
    password = postgres_server.password
    venv_bin = os.path.dirname(sys.executable)
    env = {**os.environ, "API_TOKEN": TOKEN, "PG_URL": postgres_server.url,
           "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
    root = secret_project(tmp_path / "cli")
    proc = subprocess.run([sys.executable, "-m", "medallion_nb", "run", "--project", str(root), "--run-id", "r1"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with connect(root) as lake:  # the kernel did get the values
        assert lake.sql("select digest from gold.proof").fetchall() == [(expected_digest(),)]
        assert lake.count("bronze.shop_orders") == 2
    assert (root / "runs" / "r1" / "run.json").is_file()
    for secret in (TOKEN, password):
        assert secret not in proc.stdout + proc.stderr
        assert files_containing(root, secret) == []

    # The generated flow names the secret, Kestra resolves it into the task's env, and nothing keeps it.
    flow_root = secret_project(tmp_path / "flow")
    assert main(["kestra", "--project", str(flow_root)]) == 0
    [flow_file] = (flow_root / "kestra" / "flows").glob("*.yml")
    flow = yaml.safe_load(flow_file.read_text(encoding="utf-8"))
    assert check_references(flow) == []
    layers = [t for t in flow["tasks"] if t["id"] != "publish"]
    assert all(t["env"]["API_TOKEN"] == "{{ secret('API_TOKEN') }}" for t in layers)
    assert all(t["env"]["PG_URL"] == "{{ secret('PG_URL') }}" for t in layers)
    for name in ("API_TOKEN", "PG_URL"):  # only Kestra's secret store has them
        monkeypatch.delenv(name, raising=False)
    execution = Execution("exec-secret", datetime.now(UTC), flow_inputs(flow),
                          secrets={"API_TOKEN": TOKEN, "PG_URL": postgres_server.url})
    run_flow(flow, execution, tmp_path / "work", variables={"project_dir": str(flow_root)}, path_prefix=venv_bin)
    assert execution.failed is None, execution.error_logs
    with connect(flow_root) as lake:
        assert lake.sql("select digest from gold.proof").fetchall() == [(expected_digest(),)]
    for secret in (TOKEN, password):
        assert all(secret not in run.stdout + run.stderr for run in execution.runs.values())
        assert files_containing(flow_root, secret) == []
        assert files_containing(tmp_path / "work", secret) == []


def test_the_compose_file_reads_kestra_secrets_from_an_env_file_only_when_needed(tmp_path):
    from medallion_nb.kestra import build_compose

    with_secret = load_project(project_with(tmp_path, "\nparameters:\n  api_token: ${API_TOKEN}\n"))
    kestra = build_compose(with_secret, with_secret.root / "kestra")["services"]["kestra"]
    assert kestra["env_file"] == [{"path": ".env_encoded", "required": False}]
    plain = load_project(project_with(tmp_path / "plain", ""))
    assert "env_file" not in build_compose(plain, plain.root / "kestra")["services"]["kestra"]
