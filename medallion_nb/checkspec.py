"""The shape of quality checks and expectations, checked without looking at any data.

One home for what a checks mapping may hold, used by ``lake.check``, by
``lake.write(..., expect=...)`` and by ``medallion.yaml``'s ``expectations:``
section (which is validated when the project loads, before any table exists).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

CHECK_KINDS = ("not_null", "unique", "accepted_values", "range", "row_count", "sql")
# What a failing expectation does, in the order they are evaluated and reported.
ACTIONS = ("fail", "warn", "quarantine")


def shape_problems(checks: Any) -> list[str]:
    """Everything wrong with the shape of a checks mapping (kinds, argument types), at once."""
    if not isinstance(checks, Mapping):
        return [f"checks must be a mapping of check kind to its arguments, got {checks!r}"]
    problems = [f"unknown check {kind!r} (known: {', '.join(CHECK_KINDS)})" for kind in checks
                if kind not in CHECK_KINDS]
    for kind in ("not_null", "unique"):
        items = checks.get(kind, [])
        if isinstance(items, str) or not isinstance(items, Sequence):
            problems.append(f"{kind}: expected a list of column names, got {items!r}")
    for kind in ("accepted_values", "range", "sql"):
        if not isinstance(checks.get(kind, {}), Mapping):
            problems.append(f"{kind}: expected a mapping, got {checks[kind]!r}")
    for col, values in mapping(checks, "accepted_values").items():
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            problems.append(f"accepted_values: {col}: expected a non-empty list of values, got {values!r}")
    for col, bounds in mapping(checks, "range").items():
        problems += _bounds_problems(f"range: {col}", bounds)
    if "row_count" in checks:
        problems += _bounds_problems("row_count", checks["row_count"])
    for label, expr in mapping(checks, "sql").items():
        if not isinstance(expr, str) or not expr.strip():
            problems.append(f"sql: {label}: expected SQL that is true for a good row, got {expr!r}")
    return problems


def columns_named(checks: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(check kind, column)`` for every column a (well-shaped) checks mapping names."""
    named: list[tuple[str, str]] = []
    for kind in ("not_null", "unique"):
        items = checks.get(kind, [])
        for item in ([] if isinstance(items, str) or not isinstance(items, Sequence) else items):
            cols = item if kind == "unique" and isinstance(item, list | tuple) else [item]
            named.extend((kind, col) for col in cols)
    for kind in ("accepted_values", "range"):
        named.extend((kind, col) for col in mapping(checks, kind))
    return named


def expect_problems(expect: Any) -> list[str]:
    """Everything wrong with an ``expect`` mapping (actions, then each action's checks)."""
    if not isinstance(expect, Mapping) or not expect:
        return [f"expected a mapping of actions ({', '.join(ACTIONS)}) to checks, got {expect!r}"]
    problems = [f"unknown action {action!r} (known: {', '.join(ACTIONS)})" for action in expect
                if action not in ACTIONS]
    for action, checks in expect.items():
        if action in ACTIONS:
            problems += [f"{action}: {p}" for p in shape_problems(checks)]
    if isinstance(expect.get("quarantine"), Mapping) and "row_count" in expect["quarantine"]:
        problems.append("quarantine: row_count is about the whole table, not a row; use it under fail or warn")
    return problems


def merge_expect(*parts: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Expectations combined action by action: lists are joined, mappings merged (later parts win)."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for action, checks in (part or {}).items():
            into = merged.setdefault(action, {})
            for kind, value in checks.items():
                if isinstance(value, Mapping):
                    into[kind] = {**into.get(kind, {}), **value}
                elif isinstance(value, list | tuple) and kind in into:
                    into[kind] = [*into[kind], *(v for v in value if v not in into[kind])]
                else:
                    into[kind] = value
    return merged


def mapping(checks: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    """``checks[kind]`` if it is a mapping, else an empty one (its shape problem is reported elsewhere)."""
    value = checks.get(kind, {})
    return value if isinstance(value, Mapping) else {}


def _bounds_problems(where: str, bounds: Any) -> list[str]:
    if not isinstance(bounds, Mapping) or not bounds or set(bounds) - {"min", "max"}:
        return [f"{where}: expected {{min: ..., max: ...}} (either or both), got {bounds!r}"]
    return []
