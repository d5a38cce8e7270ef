"""Build the Kestra flow of a project: a pure function from :class:`Project` to a dict.

One task per layer, in layer order. A layer's notebook is run by papermill in an
``io.kestra.plugin.scripts.python.Commands`` task on the ``Process`` task runner,
i.e. inside the Kestra container, where the project folder is mounted (see
:mod:`medallion_nb.kestra.compose`). A layer with several notebooks becomes an
``io.kestra.plugin.core.flow.Parallel`` task with one child per notebook.

Parameters each notebook receives:

* ``project_dir``: the mounted project (flow variable ``project_dir``);
* ``run_id``: ``{{ execution.id }}``;
* ``run_date``: the schedule's date (``trigger.date``), so a backfill processes the
  day it stands for; for a manual run the ``run_date`` input, else the start date;
* ``full_refresh``: the ``full_refresh`` input.

Secrets (``${NAME}`` in ``medallion.yaml``) are never parameters: each task's
``env`` maps ``NAME`` to ``{{ secret('NAME') }}``, and the notebook's kernel reads
the variable when it needs the value.

Only the Pebble expressions below are emitted; the tests render exactly these.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

from medallion_nb.errors import FlowError
from medallion_nb.export import default_export_dir
from medallion_nb.project import REQUIRED_PARAMETERS, Layer, Project
from medallion_nb.reporting import KESTRA_ENV, WRITE_LOG_ENV
from medallion_nb.secrets import SecretText

PROJECT_MOUNT = "/project"
COMMANDS_TASK = "io.kestra.plugin.scripts.python.Commands"
PARALLEL_TASK = "io.kestra.plugin.core.flow.Parallel"
LOG_TASK = "io.kestra.plugin.core.log.Log"
PROCESS_RUNNER = "io.kestra.plugin.core.runner.Process"
SCHEDULE_TRIGGER = "io.kestra.plugin.core.trigger.Schedule"
EXPORT_TASK_ID = "export"
FAILURE_TASK_ID = "log_failure"

PROJECT_DIR = "{{ vars.project_dir }}"
RUN_ID = "{{ execution.id }}"
FULL_REFRESH = "{{ inputs.full_refresh }}"

_TASK_ID = re.compile(r"[^A-Za-z0-9_-]+")
_SHELL_OPERATORS = {"2>&1"}


def run_date_expression(project: Project) -> str:
    """The Pebble expression that gives a task its ``run_date`` (``yyyy-MM-dd``).

    With a schedule, ``trigger.date`` comes first so that scheduled runs and
    backfills process the day they were scheduled for, in the schedule's time zone.
    """
    sources = ["inputs.run_date", "execution.startDate"]
    zone = "UTC"
    if project.schedule is not None:
        sources.insert(0, "trigger.date")
        zone = project.schedule.timezone
    return "{{ (" + " ?? ".join(sources) + ") | date('yyyy-MM-dd', timeZone=" + _pebble_string(zone) + ") }}"


def flow_file_name(project: Project) -> str:
    """``<namespace>.<flow id>.yml``, the name Kestra's local flow sync expects."""
    return f"{project.namespace}.{flow_id(project)}.yml"


def flow_id(project: Project) -> str:
    """The flow id: the project name."""
    return project.name


def build_flow(project: Project, *, project_dir: str = PROJECT_MOUNT) -> dict[str, Any]:
    """The Kestra flow that runs the project's layers in order.

    Args:
        project: the project.
        project_dir: where the project folder is mounted in the Kestra container.

    Raises:
        FlowError: the project cannot be expressed as a flow (e.g. a notebook
            outside the project folder, or two tasks that would share an id).
    """
    if not project.layers:
        raise FlowError(f"{project.config_path}: the project has no layers to put in a flow")
    tasks = [_layer_task(project, layer) for layer in project.layers]
    if project.kestra.export:
        tasks.append(_export_task(project))
    _check_unique_ids(project, tasks)
    flow: dict[str, Any] = {
        "id": flow_id(project),
        "namespace": project.namespace,
        "description": _description(project),
        "labels": {"project": project.name, "generated-by": "medallion-nb"},
        "inputs": [
            {
                "id": "run_date",
                "type": "DATE",
                "required": False,
                "description": "Day to process (files dated after it wait for a later run). "
                               "Empty: the schedule's date, or today for a manual run.",
            },
            {
                "id": "full_refresh",
                "type": "BOOL",
                "defaults": bool(project.parameters.get("full_refresh", False)),
                "description": "Rebuild the tables from all raw files instead of loading incrementally.",
            },
        ],
        "variables": {"project_dir": project_dir},
        # One execution at a time: backfilled days queue and run in order.
        "concurrency": {"limit": 1, "behavior": "QUEUE"},
        "tasks": tasks,
        "errors": [_failure_task(project)],
    }
    if project.schedule is not None:
        flow["triggers"] = [{
            "id": "schedule",
            "type": SCHEDULE_TRIGGER,
            "cron": project.schedule.cron,
            "timezone": project.schedule.timezone,
        }]
    return flow


def _description(project: Project) -> str:
    lines = [project.description or f"medallion pipeline {project.name}", "",
             "Generated by `medallion-nb kestra` from medallion.yaml; regenerate instead of editing.",
             "Layers, in order: " + " -> ".join(layer.name for layer in project.layers) + "."]
    return "\n".join(lines)


def _layer_task(project: Project, layer: Layer) -> dict[str, Any]:
    if not layer.notebooks:
        raise FlowError(f"{project.config_path}: layers.{layer.name}: the layer has no notebook")
    if len(layer.notebooks) == 1:
        return _notebook_task(project, layer, layer.notebooks[0], layer.name)
    children = [_notebook_task(project, layer, nb, f"{layer.name}_{_task_id(nb.stem)}") for nb in layer.notebooks]
    return {
        "id": layer.name,
        "type": PARALLEL_TASK,
        "description": f"Layer {layer.name}: {len(children)} notebooks run side by side.",
        "tasks": children,
    }


def _notebook_task(project: Project, layer: Layer, notebook: Path, task_id: str) -> dict[str, Any]:
    rel = _relative(project, notebook, f"layers.{layer.name}.notebooks")
    output = f"{notebook.stem}.ipynb"
    task: dict[str, Any] = {
        "id": task_id,
        "type": COMMANDS_TASK,
        "description": f"Layer {layer.name}: run {rel} with papermill; the executed notebook is the output file.",
        "taskRunner": {"type": PROCESS_RUNNER},
        "env": _notebook_env(project, layer, notebook),
        "commands": papermill_commands(project, layer, notebook),
        "outputFiles": [output],
        "timeout": layer.timeout,
    }
    retry = _retry(project)
    if retry:
        task["retry"] = retry
    return task


def _notebook_env(project: Project, layer: Layer, notebook: Path) -> dict[str, str]:
    env = {KESTRA_ENV: "1", "PYTHONUNBUFFERED": "1"}
    kept = _runs_folder(project)
    if kept is not None:
        # The same write log `medallion-nb run` keeps next to each executed notebook.
        env[WRITE_LOG_ENV] = _in_project(f"{kept}/{RUN_ID}/{layer.name}/{notebook.stem}.writes.jsonl")
    # Kestra renders each secret into the task's environment only; the value never enters the flow.
    env.update({name: secret_expression(name) for name in sorted(project.secret_references())})
    return env


def secret_expression(name: str) -> str:
    """Kestra's expression for the secret ``name``: ``{{ secret('NAME') }}``."""
    return "{{ secret(" + _pebble_string(name) + ") }}"


def papermill_commands(project: Project, layer: Layer, notebook: Path) -> list[str]:
    """The shell commands of one notebook's task (POSIX sh, run in the task's working directory)."""
    rel = _relative(project, notebook, f"layers.{layer.name}.notebooks")
    output = f"{notebook.stem}.ipynb"
    kept = _runs_folder(project)
    # papermill writes the executed notebook into the project's runs folder, where it
    # stays even when the notebook fails; a copy in the working directory is the
    # task's output file.
    kept_copy = f"{kept}/{RUN_ID}/{layer.name}/{output}" if kept is not None else None
    executed = _in_project(kept_copy) if kept_copy else output
    cwd = str(PurePosixPath(rel).parent)
    # One option group per line, joined with backslash-newline: the same shell command, readable in the UI.
    papermill = [
        ["papermill", _in_project(rel), executed],
        # Notebook output goes to the task log, where Kestra picks up the
        # ::{"outputs": ...}:: lines the library prints for every write.
        ["--cwd", _in_project(cwd), "--log-output", "--no-progress-bar"],
        ["-r", "project_dir", PROJECT_DIR],
        ["-r", "run_id", RUN_ID],
        ["-r", "run_date", run_date_expression(project)],
        ["-y", f"full_refresh: {FULL_REFRESH}"],
    ]
    extra = {k: v for k, v in project.parameters.items()
             if k not in REQUIRED_PARAMETERS and not isinstance(v, SecretText)}
    plain = {k: v for k, v in extra.items() if not _is_pebble(v)}
    if plain:
        papermill.append(["-y", json.dumps(plain, sort_keys=True)])
    for name, value in sorted(extra.items()):
        if _is_pebble(value):  # rendered by Kestra, passed as text
            _check_quotable(value, f"{project.config_path}: parameters.{name}")
            papermill.append(["-r", name, value])
    # Kestra logs every stderr line as an ERROR (and errorLogs() returns them), so the
    # notebook's output and papermill's messages go to stdout; the only stderr line is
    # the one naming the failed layer, which the flow's error handler reports.
    failed = f"layer {layer.name}: {rel} failed; see the log above and the executed notebook {kept_copy or output}"
    papermill[-1] = [*papermill[-1], "2>&1"]
    commands = [" \\\n  ".join(_join(group) for group in papermill)
                + " \\\n  || { echo " + _join([failed]) + " >&2; exit 1; }"]
    if kept_copy:
        commands.insert(0, _join(["mkdir", "-p", _in_project(f"{kept}/{RUN_ID}/{layer.name}")]))
        commands.append(_join(["cp", executed, output]))
    return commands


def _export_task(project: Project) -> dict[str, Any]:
    out = _relative(project, default_export_dir(project), "export.dir")
    return {
        "id": EXPORT_TASK_ID,
        "type": COMMANDS_TASK,
        "description": "Write the gold tables as Parquet and CSV snapshots for BI tools; the manifest is the output.",
        "taskRunner": {"type": PROCESS_RUNNER},
        "env": {"PYTHONUNBUFFERED": "1"},
        "commands": [
            _join(["medallion-nb", "export", "--project", PROJECT_DIR, "--out", _in_project(out)]),
            _join(["cp", _in_project(f"{out}/manifest.json"), "manifest.json"]),
        ],
        "outputFiles": ["manifest.json"],
        "timeout": "PT30M",
    }


def _failure_task(project: Project) -> dict[str, Any]:
    layers = ", ".join(layer.name for layer in project.layers)
    return {
        "id": FAILURE_TASK_ID,
        "type": LOG_TASK,
        "level": "ERROR",
        "message": "\n".join([
            "Pipeline {{ flow.namespace }}.{{ flow.id }} failed (execution {{ execution.id }}).",
            "Failed task: {{ errorLogs()[0]['taskId'] ?? 'unknown' }} "
            f"(task ids are layer names; layers run in the order {layers}).",
            "Error: {{ errorLogs()[0]['message'] ?? 'see the execution logs' }}",
            "The executed notebooks of this execution are kept under runs/{{ execution.id }}/ in the project.",
        ]),
    }


def _retry(project: Project) -> dict[str, Any] | None:
    if project.kestra.retries <= 0:
        return None
    # maxAttempts counts every attempt, the first one included.
    return {"type": "constant", "maxAttempts": project.kestra.retries + 1, "interval": project.kestra.retry_interval}


def _relative(project: Project, path: Path, key: str) -> str:
    try:
        return path.resolve().relative_to(project.root.resolve()).as_posix()
    except ValueError:
        raise FlowError(
            f"{project.config_path}: {key}: {path} is outside the project folder {project.root}",
            hint="Kestra sees only the mounted project folder; move the file into the project",
        ) from None


def _runs_folder(project: Project) -> str | None:
    """The runs folder relative to the project, or None if it lies outside the mounted project."""
    try:
        return project.runs.resolve().relative_to(project.root.resolve()).as_posix()
    except ValueError:
        return None


def _in_project(rel: str) -> str:
    return PROJECT_DIR if rel in ("", ".") else f"{PROJECT_DIR}/{rel}"


def _is_pebble(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _check_quotable(value: str, key: str) -> None:
    if any(ch in value for ch in '"$`\\'):
        raise FlowError(f"{key}: {value!r} cannot be put in the papermill command: a Kestra expression there may "
                        "not contain \", $, ` or \\",
                        hint="for a secret write ${NAME} (or {{ secret('NAME') }}) as the whole value: it is passed "
                             "in the task's environment instead")


def _join(words: list[str]) -> str:
    """Quote shell words, keeping Pebble expressions inside double quotes so Kestra renders them."""
    out = []
    for word in words:
        if word in _SHELL_OPERATORS:
            out.append(word)
        elif "{{" in word or "{%" in word:
            if any(ch in word for ch in '"$`\\'):
                raise FlowError(f"cannot quote {word!r} for the shell")
            out.append(f'"{word}"')
        else:
            out.append(shlex.quote(word))
    return " ".join(out)


def _task_id(text: str) -> str:
    return _TASK_ID.sub("_", text).strip("_") or "notebook"


def _pebble_string(text: str) -> str:
    if "'" in text or "\\" in text:
        raise FlowError(f"cannot put {text!r} in a Pebble string")
    return f"'{text}'"


def _check_unique_ids(project: Project, tasks: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}

    def walk(items: list[dict[str, Any]]) -> None:
        for task in items:
            seen[task["id"]] = seen.get(task["id"], 0) + 1
            walk(task.get("tasks", []))

    walk([*tasks, {"id": FAILURE_TASK_ID}])
    dupes = sorted(k for k, n in seen.items() if n > 1)
    if dupes:
        raise FlowError(
            f"{project.config_path}: two Kestra tasks would share the id(s) {', '.join(dupes)}",
            hint=f"rename a layer or notebook; {EXPORT_TASK_ID!r} and {FAILURE_TASK_ID!r} are reserved task ids",
        )
