"""What Kestra does with our generated flow, done here: render its Pebble, check its references, run its tasks.

Not a Pebble engine: it understands exactly the expressions ``medallion_nb.kestra.flow``
emits (paths, ``??``, parentheses, string literals, ``errorLogs()[0]['key']``,
``secret('NAME')`` and the ``date`` filter) and fails loudly on anything else, so a new kind of expression in
the generator must be taught here first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)
TAG = re.compile(r"\{%(.*?)%\}", re.S)
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_PATH = re.compile(r"^([A-Za-z_]\w*)((?:\.\w+|\[\s*(?:\d+|'[^']*')\s*\])*)$")
_SEGMENT = re.compile(r"\.(\w+)|\[\s*(\d+)\s*\]|\[\s*'([^']*)'\s*\]")
_CALL = re.compile(r"^([A-Za-z_]\w*)\(\s*('[^']*')?\s*\)((?:\.\w+|\[\s*(?:\d+|'[^']*')\s*\])*)$")
_JAVA_DATE = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
KEYWORDS = {"and", "or", "not", "is", "null", "true", "false", "defined", "empty"}
FILTERS = {"date"}
FUNCTIONS = {"errorLogs", "secret"}


class Undefined(Exception):
    """A variable or attribute that does not exist (Pebble's AttributeNotFoundException)."""


# -- rendering -----------------------------------------------------------------
def render(text: str, context: Mapping[str, Any]) -> str:
    """``text`` with every ``{{ ... }}`` evaluated in ``context``."""
    if TAG.search(text):
        raise ValueError(f"Pebble tags are not supported here: {text!r}")
    return EXPRESSION.sub(lambda m: to_text(evaluate(m.group(1), context)), text)


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    return value


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def evaluate(expr: str, context: Mapping[str, Any]) -> Any:
    parts = _split_top(expr.strip(), "|")
    value = _coalesce(parts[0], context)
    for spec in parts[1:]:
        value = _filter(spec.strip(), value)
    return value


def _coalesce(expr: str, context: Mapping[str, Any]) -> Any:
    operands = _split_top(expr, "??")
    for i, operand in enumerate(operands):
        last = i == len(operands) - 1
        try:
            value = _operand(operand.strip(), context)
        except Undefined:
            if last:
                raise
            continue
        if value is None and not last:
            continue
        return value
    raise AssertionError("unreachable")


def _operand(text: str, context: Mapping[str, Any]) -> Any:
    if text.startswith("(") and _closing(text, 0) == len(text) - 1:
        return evaluate(text[1:-1], context)
    if _STRING.fullmatch(text):
        return text[1:-1]
    call = _CALL.match(text)
    if call:
        if call.group(1) not in context:
            raise Undefined(call.group(1))
        args = [call.group(2)[1:-1]] if call.group(2) else []
        return _walk(context[call.group(1)](*args), call.group(3))
    path = _PATH.match(text)
    if not path:
        raise ValueError(f"unsupported Pebble expression: {text!r}")
    if path.group(1) not in context:
        raise Undefined(path.group(1))
    return _walk(context[path.group(1)], path.group(2))


def _walk(value: Any, segments: str) -> Any:
    for attr, index, key in _SEGMENT.findall(segments):
        name: Any = attr or key or int(index)
        try:
            value = value[name]
        except (KeyError, IndexError, TypeError):
            raise Undefined(str(name)) from None
    return value


def _filter(spec: str, value: Any) -> Any:
    match = re.fullmatch(r"(\w+)\((.*)\)", spec, re.S)
    if not match or match.group(1) not in FILTERS:
        raise ValueError(f"unsupported Pebble filter: {spec!r}")
    args, kwargs = [], {}
    for arg in _split_top(match.group(2), ","):
        name, eq, literal = arg.strip().partition("=")
        if eq and not name.startswith("'"):
            kwargs[name.strip()] = literal.strip()[1:-1]
        else:
            args.append(arg.strip()[1:-1])
    return _date(value, args[0] if args else "yyyy-MM-dd'T'HH:mm:ss", kwargs.get("timeZone", "UTC"))


def _date(value: Any, pattern: str, zone: str) -> str:
    tz = ZoneInfo(zone)
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        moment = value.astimezone(tz) if value.tzinfo else value.replace(tzinfo=tz)
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=tz)  # Kestra: start of day in the zone
    else:
        raise ValueError(f"date filter on {value!r}")
    fmt = pattern
    for java, py in _JAVA_DATE.items():
        fmt = fmt.replace(java, py)
    if re.search(r"[A-Za-z]", re.sub(r"%[YmdHMS]|'[^']*'", "", fmt)):
        raise ValueError(f"date pattern {pattern!r} not supported here")
    return moment.strftime(fmt.replace("'", ""))


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses, brackets and quotes (``|`` never splits ``??``)."""
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(text):
        ch = text[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _closing(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return -1


# -- references ----------------------------------------------------------------
def expressions(node: Any) -> Iterator[str]:
    """Every ``{{ ... }}`` body in a flow (strings at any depth); ``{% %}`` tags are reported too."""
    if isinstance(node, str):
        yield from (m.group(1) for m in EXPRESSION.finditer(node))
        yield from (m.group(1) for m in TAG.finditer(node))
    elif isinstance(node, dict):
        for value in node.values():
            yield from expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from expressions(value)


def references(expr: str) -> list[tuple[str, str | None]]:
    """``(root, attribute)`` of every variable an expression reads; functions as ``(name + '()', None)``."""
    text = _STRING.sub("''", expr)
    found = []
    for match in re.finditer(r"(?<![\w.])([A-Za-z_]\w*)", text):
        name, end = match.group(1), match.end()
        before = text[:match.start()].rstrip()
        after = text[end:].lstrip()
        if name in KEYWORDS or (after.startswith("=") and not after.startswith("==")):
            continue
        if before.endswith("|"):
            if name not in FILTERS:
                found.append((f"|{name}", None))
            continue
        if after.startswith("("):
            found.append((f"{name}()", None))
            continue
        attr = re.match(r"\s*\.\s*(\w+)|\s*\[\s*'(\w+)'\s*\]", text[end:])
        found.append((name, (attr.group(1) or attr.group(2)) if attr else None))
    return found


def check_references(flow: Mapping[str, Any]) -> list[str]:
    """Problems with the variables the flow's expressions read: each must exist when the task runs."""
    inputs = {i["id"] for i in flow.get("inputs", [])}
    variables = set(flow.get("variables", {}))
    task_ids = {t["id"] for t in iter_tasks(flow.get("tasks", []))}
    allowed: dict[str, set[str]] = {
        "inputs": inputs,
        "vars": variables,
        "execution": {"id", "startDate", "namespace", "flowId"},
        "flow": {"id", "namespace"},
        "outputs": task_ids,
    }
    if flow.get("triggers"):
        allowed["trigger"] = {"date"}
    problems = []
    for expr in expressions(flow):
        for root, attr in references(expr):
            if root.endswith("()"):
                if root[:-2] not in FUNCTIONS:
                    problems.append(f"unknown function {root} in {{{{{expr}}}}}")
            elif root.startswith("|"):
                problems.append(f"unknown filter {root} in {{{{{expr}}}}}")
            elif root not in allowed:
                problems.append(f"{root} is not available in this flow: {{{{{expr}}}}}")
            elif attr not in allowed[root]:
                problems.append(f"{root}.{attr} does not exist (known: {sorted(allowed[root])}): {{{{{expr}}}}}")
    return problems


def iter_tasks(tasks: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for task in tasks:
        yield task
        yield from iter_tasks(task.get("tasks", []))


# -- running -------------------------------------------------------------------
OUTPUT_LINE = re.compile(r"^::(\{.*\})::$")


@dataclass
class TaskRun:
    """One executed Commands task."""

    task_id: str
    workdir: Path
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    output_files: dict[str, Path] = field(default_factory=dict)


@dataclass
class Execution:
    """An execution of the flow, as Kestra would create it."""

    id: str
    start: datetime
    inputs: dict[str, Any]
    trigger_date: datetime | None = None
    runs: dict[str, TaskRun] = field(default_factory=dict)
    failed: str | None = None
    # What Kestra's errorLogs() returns: every ERROR log of the execution, in order. A
    # script task's stderr lines are logged as ERROR, then the task's own failure.
    error_logs: list[dict[str, str]] = field(default_factory=list)
    # Kestra's secrets (secret('NAME')); a name missing here fails the render, as in Kestra.
    secrets: dict[str, str] = field(default_factory=dict)

    def context(self, flow: Mapping[str, Any], variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        ctx: dict[str, Any] = {
            "execution": {"id": self.id, "startDate": self.start, "namespace": flow["namespace"],
                          "flowId": flow["id"]},
            "flow": {"id": flow["id"], "namespace": flow["namespace"]},
            "inputs": self.inputs,
            "vars": {**flow.get("variables", {}), **(variables or {})},
            "outputs": {tid: run.outputs for tid, run in self.runs.items()},
            "errorLogs": lambda: list(self.error_logs),
            "secret": self._secret,
        }
        if self.trigger_date is not None:
            ctx["trigger"] = {"date": self.trigger_date}
        return ctx


    def _secret(self, name: str) -> str:
        if name not in self.secrets:
            raise Undefined(f"secret {name!r} is not defined in the namespace")
        return self.secrets[name]


def flow_inputs(flow: Mapping[str, Any], given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Input values as Kestra resolves them: the given value, else the default, else null."""
    given = dict(given or {})
    values = {}
    for spec in flow.get("inputs", []):
        values[spec["id"]] = given.pop(spec["id"], spec.get("defaults"))
    if given:
        raise ValueError(f"unknown inputs {sorted(given)}")
    return values


def run_flow(flow: Mapping[str, Any], execution: Execution, workroot: Path, *,
             variables: Mapping[str, Any] | None = None, path_prefix: str | None = None,
             timeout: float = 900) -> Execution:
    """Run the flow's tasks in order, each in a fresh working directory; stop at the first failure.

    ``errors`` tasks run after a failure, as in Kestra (Log tasks are rendered).
    """
    for task in flow["tasks"]:
        ok = _run_task(task, flow, execution, workroot, variables, path_prefix, timeout)
        if not ok:
            execution.failed = execution.failed or task["id"]
            for handler in flow.get("errors", []):
                if handler["type"] == "io.kestra.plugin.core.log.Log":
                    render(handler["message"], execution.context(flow, variables))
            break
    return execution


def _run_task(task: Mapping[str, Any], flow: Mapping[str, Any], execution: Execution, workroot: Path,
              variables: Mapping[str, Any] | None, path_prefix: str | None, timeout: float) -> bool:
    kind = task["type"]
    if kind == "io.kestra.plugin.core.flow.Parallel":
        with ThreadPoolExecutor(max_workers=len(task["tasks"])) as pool:
            results = list(pool.map(
                lambda child: _run_task(child, flow, execution, workroot, variables, path_prefix, timeout),
                task["tasks"]))
        return all(results)
    if kind == "io.kestra.plugin.core.log.Log":
        render(task["message"], execution.context(flow, variables))
        return True
    if kind != "io.kestra.plugin.scripts.python.Commands":
        raise ValueError(f"task type {kind} is not simulated")
    assert task["taskRunner"]["type"] == "io.kestra.plugin.core.runner.Process"
    context = execution.context(flow, variables)
    workdir = workroot / f"{execution.id}-{task['id']}"
    workdir.mkdir(parents=True)
    env = {**os.environ, **render_value(task.get("env", {}), context)}
    if path_prefix:
        env["PATH"] = path_prefix + os.pathsep + env.get("PATH", "")
    # Kestra joins the commands into one script, stopping at the first failure (failFast).
    script = "set -e\n" + "\n".join(render_value(task.get("beforeCommands", []) + task["commands"], context))
    proc = subprocess.run(["/bin/sh", "-c", script], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    run = TaskRun(task["id"], workdir, proc.returncode, proc.stdout, proc.stderr)
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        match = OUTPUT_LINE.match(line.strip())
        if match:
            payload = json.loads(match.group(1))
            run.outputs.update(payload.get("outputs", {}))
            run.metrics.extend(payload.get("metrics", []))
    for name in render_value(task.get("outputFiles", []), context):
        path = workdir / name
        if path.is_file():
            run.output_files[name] = path
    execution.runs[task["id"]] = run
    execution.error_logs += [{"taskId": task["id"], "message": line} for line in proc.stderr.splitlines()
                             if line.strip() and not OUTPUT_LINE.match(line.strip())]
    if proc.returncode != 0:
        execution.error_logs.append({"taskId": task["id"],
                                     "message": f"Command failed with exit code {proc.returncode}"})
        execution.failed = task["id"]
        sys.stderr.write(f"task {task['id']} failed ({proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr}\n")
        return False
    missing = set(render_value(task.get("outputFiles", []), context)) - set(run.output_files)
    if missing:
        raise AssertionError(f"task {task['id']}: output files {sorted(missing)} were not produced")
    return True

