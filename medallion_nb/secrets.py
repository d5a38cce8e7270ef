"""Secrets in ``medallion.yaml``: ``${NAME}`` references, resolved from the environment when used.

A config value such as ``url: ${ORDERS_DB_URL}`` or
``url: postgresql://app:${ORDERS_DB_PASSWORD}@db:5432/shop`` stays a reference in
the loaded :class:`~medallion_nb.project.Project` (a :class:`SecretText`, whose
``str()`` is the reference, never the value). The value is read from the
environment only at the moment it is needed, inside the process that needs it
(the notebook's kernel), so it never becomes a notebook parameter and never
reaches an executed notebook, ``run.json``, a write log or a generated Kestra
flow. The flow maps each name to Kestra's ``{{ secret('NAME') }}`` in its tasks'
``env`` instead. ``{{ secret('NAME') }}`` written as a whole value in
``medallion.yaml`` means the same as ``${NAME}``.

Values resolved in this process are remembered so that :func:`redact` can take
them out of any message before it is shown (every :class:`MedallionError` is
redacted that way).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from medallion_nb.errors import SecretError

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
REFERENCE = re.compile(r"\$\{(" + NAME + r")\}")
KESTRA_SECRET = re.compile(r"^\s*\{\{\s*secret\(\s*'(" + NAME + r")'\s*\)\s*\}\}\s*$")
# Anything that looks like an attempt at a reference, to report malformed ones.
_LOOSE = re.compile(r"\$\{[^}]*\}?")
# Values shorter than this are not redacted from messages: they would match everywhere.
_MIN_REDACT = 4

_resolved: dict[str, str] = {}  # value -> "${NAME}" it came from
_resolved_lock = threading.Lock()


@dataclass(frozen=True)
class SecretText:
    """A config value with ``${NAME}`` references; shows the references, never the values.

    ``key`` says where it was given (``sources.orders.url``), for messages.
    """

    template: str
    key: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """The environment variables it reads, in order of first use."""
        return tuple(dict.fromkeys(REFERENCE.findall(self.template)))

    @property
    def is_whole(self) -> bool:
        """Whether the value is exactly one reference (``${NAME}``), nothing around it."""
        return REFERENCE.fullmatch(self.template) is not None

    def literal_parts(self) -> str:
        """The text around the references (what is written in the config in plain)."""
        return REFERENCE.sub("", self.template)

    def resolve(self, environ: Mapping[str, str] | None = None) -> str:
        """The value, with every reference replaced by its environment variable.

        Raises:
            SecretError: a variable is not set (the message names it and the config key).
        """
        env = os.environ if environ is None else environ
        missing = [name for name in self.names if not env.get(name)]
        if missing:
            where = f"medallion.yaml: {self.key}: " if self.key else ""
            raise SecretError(
                f"{where}the environment variable{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"{'are' if len(missing) > 1 else 'is'} not set (the value is {self.template})",
                hint="set it where the notebook runs: in the shell before `medallion-nb run`, or as a Kestra "
                     "secret of the same name (see docs/secrets.md)",
            )
        value = REFERENCE.sub(lambda m: env[m.group(1)], self.template)
        _remember({m.group(1): env[m.group(1)] for m in REFERENCE.finditer(self.template)}, value, self.template)
        return value

    def __str__(self) -> str:
        return self.template

    def __repr__(self) -> str:
        return f"<secret {self.template}>"


def parse(value: Any, key: str) -> SecretText | None:
    """``value`` as a :class:`SecretText` if it holds references, else None.

    ``{{ secret('NAME') }}`` (Kestra's syntax), given as the whole value, becomes ``${NAME}``.
    """
    if not isinstance(value, str):
        return None
    kestra = KESTRA_SECRET.match(value)
    if kestra:
        return SecretText("${" + kestra.group(1) + "}", key)
    if REFERENCE.search(value):
        return SecretText(value, key)
    return None


def malformed(value: Any) -> str | None:
    """The first ``${...}`` in a string that is not a valid reference, or None."""
    if not isinstance(value, str):
        return None
    for match in _LOOSE.finditer(value):
        if not REFERENCE.fullmatch(match.group(0)):
            return match.group(0)
    return None


def references(values: Iterable[Any]) -> dict[str, str]:
    """``{variable: config key}`` of every reference among ``values`` (first key that uses it)."""
    out: dict[str, str] = {}
    for value in values:
        if isinstance(value, SecretText):
            for name in value.names:
                out.setdefault(name, value.key)
    return out


def redact(text: str) -> str:
    """``text`` with every secret value resolved in this process replaced by its reference."""
    if not _resolved or not isinstance(text, str):
        return text
    with _resolved_lock:
        known = sorted(_resolved.items(), key=lambda item: -len(item[0]))
    for value, ref in known:
        if value in text:
            text = text.replace(value, ref)
    return text


def _remember(parts: Mapping[str, str], whole: str, template: str) -> None:
    found = {value: "${" + name + "}" for name, value in parts.items()}
    found[whole] = template
    # A connection string from one variable: its password alone is a secret too
    # (a driver's message may quote it apart from the rest of the URL).
    for value in [whole, *parts.values()]:
        password = _url_password(value)
        if password:
            found.setdefault(password, "${...password}")
            found.setdefault(unquote(password), "${...password}")
    with _resolved_lock:
        for value, ref in found.items():
            if len(value) >= _MIN_REDACT:
                _resolved.setdefault(value, ref)


def _url_password(value: str) -> str | None:
    if "://" not in value:
        return None
    try:
        netloc = urlsplit(value).netloc
    except ValueError:
        return None
    userinfo, at, _ = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    return userinfo.split(":", 1)[1] or None


def parameter_secret(project: Any, parameter: str) -> str:
    """The value of the secret parameter ``parameter`` of ``project``, from the environment.

    Raises:
        SecretError: no such secret parameter, or its variable is not set.
    """
    value = project.parameters.get(parameter)
    if not isinstance(value, SecretText):
        declared = sorted(k for k, v in project.parameters.items() if isinstance(v, SecretText))
        known = f"secret parameters: {', '.join(declared)}" if declared else "it declares no secret parameter"
        what = "not a secret" if parameter in project.parameters else "no such parameter"
        raise SecretError(f"{project.config_path}: parameters.{parameter}: {what} ({known})",
                          hint=f"declare it in medallion.yaml as `{parameter}: ${{{parameter.upper()}}}` and set "
                               f"the environment variable {parameter.upper()}")
    return value.resolve()
