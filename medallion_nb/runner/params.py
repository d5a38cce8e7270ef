"""What a run is given: its id, the notebooks' parameters, and the layers' timeouts."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import UTC, date, datetime

from medallion_nb.errors import UsageError
from medallion_nb.project import Project, Scalar
from medallion_nb.secrets import SecretText

# Set by the runner; -p cannot override them.
RUNNER_PARAMETERS = {"project_dir": "--project", "run_id": "--run-id"}
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_INT = re.compile(r"^[+-]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def new_run_id(now: datetime | None = None) -> str:
    """A run id like ``20261121T061500Z-3f9a``: UTC time plus a random suffix."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(2)}"


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a safe folder name.

    Raises:
        UsageError: it is empty, too long, or has characters other than letters, digits, ``.``, ``_``, ``-``.
    """
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise UsageError(f"run id {run_id!r} is not a safe folder name: use up to 128 letters, digits, "
                         "'.', '_' or '-', starting with a letter or digit")
    return run_id


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
    run_date = params["run_date"]
    if run_date is None:
        params["run_date"] = ""
    elif run_date != "":
        try:
            date.fromisoformat(str(run_date))
        except ValueError:
            raise UsageError(f"parameter run_date: {run_date!r} is not an ISO date (YYYY-MM-DD) or empty") from None
        if not isinstance(run_date, str):
            raise UsageError(f"parameter run_date: {run_date!r} is not an ISO date (YYYY-MM-DD) or empty")
    if not isinstance(params["full_refresh"], bool):
        raise UsageError(f"parameter full_refresh: expected true or false, got {params['full_refresh']!r}")
    return params


def duration_seconds(text: str) -> float | None:
    """Seconds in an ISO-8601 duration such as ``PT30M`` (``None`` if it is not one)."""
    match = _DURATION.match(text)
    if not match:
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


