"""Build the Kestra flow of a project: a pure function from :class:`Project` to a dict.

One task per layer, in layer order, then a ``publish`` task. A layer task runs
``medallion-nb run --layer <layer>`` for the Kestra execution (the same runner,
lock, run record and papermill calls as on the command line) in an
``io.kestra.plugin.scripts.python.Commands`` task on the ``Process`` task runner,
i.e. inside the Kestra container, where the project folder is mounted (see
:mod:`medallion_nb.kestra.compose`). Each task's description shows the papermill
call it makes per notebook; its output files are the executed notebooks, kept
even when the layer fails. The last task publishes the run's table versions.

Parameters each notebook receives:

* ``project_dir``: the mounted project (flow variable ``project_dir``);
* ``run_id``: ``{{ execution.id }}``;
* ``run_date``: the schedule's date (``trigger.date``), so a backfill processes the
  day it stands for; for a manual run the ``run_date`` input, else the start date;
* ``full_refresh``: the ``full_refresh`` input.

Secrets (``${NAME}`` in ``medallion.yaml``) are never parameters: each layer task's
``env`` maps ``NAME`` to ``{{ secret('NAME') }}``, and the notebook's kernel reads
the variable when it needs the value; the publish and export tasks get the secrets
of the lake's ``storage:`` settings (a lake on object storage) only.

Only the Pebble expressions below are emitted; the tests render exactly these.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

from medallion_nb.errors import FlowError
from medallion_nb.project import REQUIRED_PARAMETERS, Layer, Project
from medallion_nb.reporting import KESTRA_ENV
from medallion_nb.runfolder import notebook_files
from medallion_nb.secrets import SecretText

PROJECT_MOUNT = "/project"
COMMANDS_TASK = "io.kestra.plugin.scripts.python.Commands"
PARALLEL_TASK = "io.kestra.plugin.core.flow.Parallel"
LOG_TASK = "io.kestra.plugin.core.log.Log"
PROCESS_RUNNER = "io.kestra.plugin.core.runner.Process"
SCHEDULE_TRIGGER = "io.kestra.plugin.core.trigger.Schedule"
EXPORT_TASK_ID = "export"
PUBLISH_TASK_ID = "publish"
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
    tasks.append(_publish_task(project))
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
    calls = [papermill_call(project, layer, nb) for nb in layer.notebooks]
    together = " side by side" if len(calls) > 1 else ""
    task: dict[str, Any] = {
        "id": layer.name,
        "type": COMMANDS_TASK,
        "description": "\n".join([
            f"Layer {layer.name}: `medallion-nb run --layer {layer.name}` for this execution runs{together}, "
            "under the lake's writer lock:", *(f"  {call}" for call in calls),
            "The executed notebooks are the task's output files (also when the layer fails) and are kept in "
            f"runs/<execution id>/{layer.name}/ with run.json and each kernel's log.",
        ]),
        "taskRunner": {"type": PROCESS_RUNNER},
        "env": _layer_env(project),
        "commands": layer_commands(project, layer),
        "outputFiles": [f"{nb.stem}.ipynb" for nb in layer.notebooks],
        "timeout": layer.timeout,
    }
    retry = _retry(project)
    if retry:
        task["retry"] = retry
    return task


def _layer_env(project: Project) -> dict[str, str]:
    env = {KESTRA_ENV: "1", "PYTHONUNBUFFERED": "1"}
    # Kestra renders each secret into the task's environment only; the value never enters the flow.
    env.update({name: secret_expression(name) for name in sorted(project.secret_references())})
    return env


def _lake_env(project: Project) -> dict[str, str]:
    """The environment of a task that only opens the lake: the secrets of its ``storage:`` settings."""
    env = {"PYTHONUNBUFFERED": "1"}
    env.update({name: secret_expression(name) for name, key in sorted(project.secret_references().items())
                if key.startswith("storage.")})
    return env


def secret_expression(name: str) -> str:
    """Kestra's expression for the secret ``name``: ``{{ secret('NAME') }}``."""
    return "{{ secret(" + _pebble_string(name) + ") }}"


def papermill_call(project: Project, layer: Layer, notebook: Path) -> str:
    """The papermill command line equivalent to what the runner does for one notebook (for people to read)."""
    rel = _relative(project, notebook, f"layers.{layer.name}.notebooks")
    kept = _runs_folder(project) or "runs"
    output = notebook_files(PurePosixPath(kept, "<execution id>"), layer.name, notebook).output.as_posix()
    words = ["papermill", shlex.quote(rel), output, "--cwd", shlex.quote(str(PurePosixPath(rel).parent)),
             "-p", "project_dir", PROJECT_MOUNT, "-p", "run_id", "<execution id>", "-p", "run_date", "<run_date>",
             "-y", "'full_refresh: <full_refresh input>'"]
    return " ".join(words)


def layer_commands(project: Project, layer: Layer) -> list[str]:
    """The shell commands of one layer's task (POSIX sh, run in the task's working directory)."""
    kept = _runs_folder(project)
    run = [
        ["medallion-nb", "run", "--project", PROJECT_DIR, "--run-id", RUN_ID, "--layer", layer.name],
        # One run per execution, one task per layer: each task adds its layer to the run's record,
        # and the publish task publishes once every layer succeeded.
        ["--attach", "--no-publish"],
        ["-p", "run_date=" + run_date_expression(project)],
        ["-p", "full_refresh=" + FULL_REFRESH],
    ]
    # Other parameters come from medallion.yaml, which the runner reads; only those that are
    # Kestra expressions are rendered here and passed (as text).
    for name, value in sorted(project.parameters.items()):
        if name not in REQUIRED_PARAMETERS and _is_pebble(value) and not isinstance(value, SecretText):
            _check_quotable(value, f"{project.config_path}: parameters.{name}")
            run.append(["-p", f"{name}={value}"])
    # Kestra logs every stderr line as an ERROR (and errorLogs() returns them), so the runner's
    # progress goes to stdout (INFO); the only stderr line is the one naming the failed layer.
    run[-1] = [*run[-1], "2>&1"]
    commands = [" \\\n  ".join(_join(group) for group in run) + " || status=$?"]
    folder = f"{kept}/{RUN_ID}/{layer.name}" if kept is not None else None
    if kept is not None:
        # The executed notebooks are the task's output files, whether the layer succeeded or not.
        for nb in layer.notebooks:
            output = notebook_files(PurePosixPath(kept, RUN_ID), layer.name, nb).output
            commands.append(_join(["cp", _in_project(output.as_posix()), output.name]) + " 2>/dev/null || true")
    failed = (f"layer {layer.name} failed; see the log above and the executed notebooks in "
              f"{folder or 'the runs folder'}")
    commands.append('if [ "${status:-0}" -ne 0 ]; then echo ' + _join([failed]) + ' >&2; exit "$status"; fi')
    return commands


def _publish_task(project: Project) -> dict[str, Any]:
    return {
        "id": PUBLISH_TASK_ID,
        "type": COMMANDS_TASK,
        "description": "Publish the table versions this execution produced as one snapshot: dashboards, "
                       "exports and connect(snapshot='published') see the whole run, never a mix.",
        "taskRunner": {"type": PROCESS_RUNNER},
        "env": _lake_env(project),
        "commands": [_join(["medallion-nb", "publish", "--project", PROJECT_DIR, "--run-id", RUN_ID])],
        "timeout": "PT10M",
    }


def _export_task(project: Project) -> dict[str, Any]:
    out = _relative(project, project.export_folder, "export.dir")
    return {
        "id": EXPORT_TASK_ID,
        "type": COMMANDS_TASK,
        "description": "Write the gold tables as Parquet and CSV snapshots for BI tools; the manifest is the output.",
        "taskRunner": {"type": PROCESS_RUNNER},
        "env": _lake_env(project),
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
        raise FlowError(f"{key}: {value!r} cannot be put in the task's command: a Kestra expression there may "
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
            hint=f"rename a layer; {PUBLISH_TASK_ID!r}, {EXPORT_TASK_ID!r} and {FAILURE_TASK_ID!r} are reserved "
                 "task ids",
        )
