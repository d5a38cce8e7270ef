"""What a run is given: its id and the notebooks' parameters."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from medallion_nb.errors import UsageError
from medallion_nb.project import Project, Scalar
from medallion_nb.secrets import SecretText
from medallion_nb.validation import parse_run_date

# Set by the runner; -p cannot override them.
RUNNER_PARAMETERS = {"project_dir": "--project", "run_id": "--run-id"}
_INT = re.compile(r"^[+-]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")


def new_run_id(now: datetime | None = None) -> str:
    """A run id like ``20261121T061500Z-3f9a``: UTC time plus a random suffix."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(2)}"


def parse_value(text: str) -> Scalar:
    """A ``-p`` value: ``true``/``false`` -> bool, integers, decimals, anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INT.match(text.strip()):
        return int(text)
    if _FLOAT.match(text.strip()):
        return float(text)
    return text


def parse_parameter(text: str) -> tuple[str, Scalar]:
    """Split a ``name=value`` command-line parameter and parse its value.

    Raises:
        UsageError: no ``=``, or the name is not a Python identifier.
    """
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        raise UsageError(f"parameter {text!r}: expected name=value (e.g. -p run_date=2026-01-05)")
    if not name.isidentifier():
        raise UsageError(f"parameter {text!r}: {name!r} is not a valid parameter name (a Python identifier)")
    return name, parse_value(value)


def notebook_parameters(project: Project, run_id: str, overrides: Mapping[str, Scalar] | None = None,
                        ) -> dict[str, Scalar]:
    """The parameters every layer notebook gets: runner values, project defaults, then overrides.

    Raises:
        UsageError: an override of a runner-set parameter, or a bad ``run_date``/``full_refresh``.
    """
    overrides = dict(overrides or {})
    for name, option in RUNNER_PARAMETERS.items():
        if name in overrides:
            raise UsageError(f"parameter {name} is set by the runner; use {option} instead of -p {name}=...")
    secret = {k: v for k, v in project.parameters.items() if isinstance(v, SecretText)}
    for name in overrides:
        if name in secret:
            variables = " and ".join(secret[name].names)
            raise UsageError(f"parameter {name} is a secret (medallion.yaml: parameters.{name}: {secret[name]}) and is "
                             f"never passed as a notebook parameter; set the environment variable {variables} instead "
                             f"(the notebook reads it with lake.secret({name!r}))")
    params: dict[str, Scalar] = {"project_dir": str(project.root), "run_id": run_id,
                                 "run_date": "", "full_refresh": False}
    # Secret parameters are resolved inside the kernel when used, never injected.
    params.update({k: v for k, v in project.parameters.items() if k not in secret})
    params.update(overrides)
    params["project_dir"], params["run_id"] = str(project.root), run_id
    try:
        day = parse_run_date(params["run_date"])
    except UsageError as exc:
        raise UsageError(f"parameter {exc.message}") from None
    params["run_date"] = day.isoformat() if day else ""
    if not isinstance(params["full_refresh"], bool):
        raise UsageError(f"parameter full_refresh: expected true or false, got {params['full_refresh']!r}")
    return params
