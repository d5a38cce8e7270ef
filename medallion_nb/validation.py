"""Shared checks for ``medallion.yaml``: a YAML loader that catches duplicate keys, validators,
and the parsers of values given in the config or on the command line (durations, dates).

The validators collect problems instead of raising, so a config file with several
mistakes is reported in one go, each problem naming its key path.
"""

from __future__ import annotations

import functools
import re
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from medallion_nb.errors import UsageError

CRON_NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that records keys given twice in one mapping instead of keeping the last."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, object, int]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    self.duplicates.append((line, key, seen[key]))
                else:
                    seen[key] = line
            except TypeError:  # an unhashable key: the constructor below reports it
                continue
        return super().construct_mapping(node, deep=deep)


class Checks:
    """Typed-value checks that record a problem (and return a fallback) instead of raising."""

    def __init__(self, config_file: Path) -> None:
        self.file = config_file
        self.root = config_file.parent
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.file.name}: {key}: {message}")

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            self.problem(key, f"expected a mapping, got {kind(value)}")
            return {}
        for name in value:
            if name not in allowed:
                self.problem(f"{key}.{name}" if key else str(name), f"unknown key (allowed: {', '.join(allowed)})")
        for name in required:
            if name not in value:
                self.problem(f"{key}.{name}" if key else name, "missing (required)")
        return value

    def string(self, value: Any, key: str, pattern: re.Pattern | None = None, expected: str = "") -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.problem(key, f"expected a non-empty string, got {kind(value)}")
            return None
        if pattern is not None and not pattern.match(value):
            self.problem(key, f"{value!r} is not {expected}")
            return None
        return value

    def choice(self, value: Any, key: str, choices: tuple[str, ...]) -> str | None:
        if value not in choices:
            self.problem(key, f"{value!r} is not one of {', '.join(choices)}")
            return None
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, got {kind(value)}")
            return False
        return value

    def names(self, value: Any, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.problem(key, f"expected a column name or a list of column names, got {kind(value)}")
            return ()
        return tuple(value)

    def char(self, raw: Any, key: str, max_len: int = 1) -> str:
        if not isinstance(raw, str) or not 0 < len(raw) <= max_len:
            self.problem(key, f"expected {'one character' if max_len == 1 else 'a short string'}, got {kind(raw)}")
            return ","
        return raw

    def optional_string(self, raw: Any, key: str) -> str | None:
        return None if raw is None else self.string(raw, key)


def cron_problem(cron: str) -> str | None:
    """Why ``cron`` is not a 5-field cron expression (or a nickname such as @daily); None if it is."""
    from croniter import croniter

    text = cron.strip()
    if text.startswith("@"):
        return None if text in CRON_NICKNAMES else f"nicknames are {', '.join(CRON_NICKNAMES)}"
    fields = text.split()
    if len(fields) != 5:
        return f"{len(fields)} field(s); expected 5: minute hour day-of-month month day-of-week, e.g. '0 6 * * *'"
    for i, name in enumerate(("minute", "hour", "day-of-month", "month", "day-of-week")):
        probe = ["*"] * 5
        probe[i] = fields[i]
        if not croniter.is_valid(" ".join(probe)):
            return f"the {name} field {fields[i]!r} is out of range or malformed"
    if not croniter.is_valid(text):
        return "the fields do not combine into a valid schedule"
    return None


# ISO-8601 durations in days, hours, minutes and seconds (what Kestra's task timeouts take): PT30M, P1DT2H.
DURATION = re.compile(r"^P(?!$)(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
DURATION_RULE = "an ISO-8601 duration such as PT30M"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def duration_seconds(text: str) -> float | None:
    """Seconds in an ISO-8601 duration such as ``PT30M`` (``None`` if it is not one)."""
    match = DURATION.match(text) if isinstance(text, str) else None
    if not match:
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def parse_date(value: object, what: str) -> date:
    """A day given as ``YYYY-MM-DD`` (or a ``date``); ``what`` names it in the message.

    Raises:
        UsageError: anything else (``20260105``, ``05/01/2026``, ``2026-02-30``, a number).
    """
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise UsageError(f"{what}: {value!r} is not an ISO date (YYYY-MM-DD)")


def parse_run_date(value: object) -> date | None:
    """The ``run_date`` parameter: a day (``YYYY-MM-DD``), or None when empty ("today").

    Raises:
        UsageError: not an ISO date.
    """
    if value is None or value == "":
        return None
    try:
        return parse_date(value, "run_date")
    except UsageError:
        raise UsageError(f"run_date: {value!r} is not an ISO date (YYYY-MM-DD) or empty") from None


def duckdb_type(value: Any) -> str | None:
    """The canonical spelling of a DuckDB type name, or None if DuckDB does not know it."""
    if not isinstance(value, str) or not value.strip():
        return None
    import duckdb

    try:
        return str(duckdb.sqltype(value.strip()))
    except duckdb.Error:
        return None


def is_sql_keyword(name: str) -> bool:
    """Whether DuckDB reserves ``name`` as a keyword (it would need quoting in every query)."""
    return name in _reserved_keywords()


@functools.cache
def _reserved_keywords() -> frozenset[str]:
    """DuckDB's reserved keywords, asked once per process (opening a connection per name cost ~20 ms each)."""
    import duckdb

    with duckdb.connect() as con:
        return frozenset(row[0] for row in con.execute(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'").fetchall())


def kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
