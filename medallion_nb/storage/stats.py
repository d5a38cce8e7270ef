"""Delta file statistics from the statistics DuckDB returns when it writes a Parquet file.

``COPY ... (RETURN_STATS)`` reports, per written file, the row count and for every
Parquet column its min, max and null count as text. A Delta ``add`` action carries the
same facts as JSON (``numRecords``, ``minValues``, ``maxValues``, ``nullCount``), which
readers use to skip files. A wrong min or max makes a reader skip a file it needed, so
a value goes in only when its meaning is certain; otherwise the column's bound is left
out, which the protocol allows (the reader then reads the file):

- integers, booleans, dates: as they are;
- decimals: when a JSON number represents them exactly;
- floats: only when the file holds no NaN and the bounds are finite;
- text: only exact bounds, the minimum cut to 32 characters (a prefix is still a lower
  bound), the maximum only when it is at most 32 characters;
- timestamps: at millisecond precision as Delta writers use, the minimum rounded down
  and the maximum rounded up, so the bounds still hold;
- lists, maps and binary: no bounds; lists and maps no null count (as delta-rs writes).

Partition columns are not in the files and get no statistics (their values are in the
action's ``partitionValues``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

STRING_PREFIX = 32
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MS = timedelta(milliseconds=1)


def parse_column_path(key: str) -> tuple[str, ...]:
    """``'"st"."a"'`` -> ``("st", "a")`` (DuckDB's quoted, dot-joined Parquet column path)."""
    return tuple(part.replace('""', '"') for part in _QUOTED.findall(key))


def file_stats(rows: int, columns: Mapping[str, Mapping[str, str]] | None, schema: pa.Schema,
               partition_by: tuple[str, ...] = ()) -> str:
    """The Delta ``stats`` JSON of one data file.

    Args:
        rows: the file's row count.
        columns: DuckDB's ``column_statistics`` of the file (column path -> facts as text).
        schema: the table's Arrow schema (its types decide how each value is read).
        partition_by: partition columns, which the file does not contain.
    """
    by_path = {parse_column_path(k): v for k, v in (columns or {}).items()}
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, Any] = {}
    for field in schema:
        if field.name in partition_by:
            continue
        _collect(field, (field.name,), by_path, mins, maxs, nulls)
    stats: dict[str, Any] = {"numRecords": int(rows)}
    if mins:
        stats["minValues"] = mins
    if maxs:
        stats["maxValues"] = maxs
    if nulls:
        stats["nullCount"] = nulls
    return json.dumps(stats, separators=(",", ":"), allow_nan=False)


def _collect(field: pa.Field, path: tuple[str, ...], by_path: Mapping[tuple[str, ...], Mapping[str, str]],
             mins: dict[str, Any], maxs: dict[str, Any], nulls: dict[str, Any]) -> None:
    kind = field.type
    if pa.types.is_struct(kind):
        sub_min: dict[str, Any] = {}
        sub_max: dict[str, Any] = {}
        sub_null: dict[str, Any] = {}
        for child in kind:
            _collect(child, (*path, child.name), by_path, sub_min, sub_max, sub_null)
        for target, sub in ((mins, sub_min), (maxs, sub_max), (nulls, sub_null)):
            if sub:
                target[field.name] = sub
        return
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind) \
            or pa.types.is_fixed_size_list(kind):
        return
    facts = by_path.get(path)
    if facts is None:
        return
    if "null_count" in facts:
        nulls[field.name] = int(facts["null_count"])
    low = _bound(kind, facts, "min")
    high = _bound(kind, facts, "max")
    if low is not None:
        mins[field.name] = low
    if high is not None:
        maxs[field.name] = high


def _bound(kind: pa.DataType, facts: Mapping[str, str], which: str) -> Any:
    text = facts.get(which)
    if text is None or facts.get(f"{which}_is_exact", "true") != "true":
        return None
    try:
        return _convert(kind, text, which, facts)
    except (ValueError, InvalidOperation, OverflowError):
        return None


def _convert(kind: pa.DataType, text: str, which: str, facts: Mapping[str, str]) -> Any:
    if pa.types.is_boolean(kind):
        return {"1": True, "true": True, "0": False, "false": False}.get(text.lower())
    if pa.types.is_integer(kind):
        return int(text)
    if pa.types.is_floating(kind):
        if facts.get("has_nan", "false") != "false" or facts.get("nan_count", "0") != "0":
            return None
        value = float(text)
        return value if math.isfinite(value) else None
    if pa.types.is_decimal(kind):
        exact = Decimal(text)
        number = float(exact)
        # Only when the JSON number reads back as exactly this decimal.
        return number if math.isfinite(number) and Decimal(repr(number)) == exact else None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        if which == "min":
            return text[:STRING_PREFIX]
        return text if len(text) <= STRING_PREFIX else None
    if pa.types.is_date32(kind) or pa.types.is_date64(kind):
        return text if _DATE.match(text) else None
    if pa.types.is_timestamp(kind):
        return _timestamp(text, which, kind.tz is not None)
    return None


def _timestamp(text: str, which: str, utc: bool) -> str | None:
    value = datetime.fromisoformat(text)
    if utc:
        if value.tzinfo is None:
            return None
        value = value.astimezone(UTC).replace(tzinfo=None)
    elif value.tzinfo is not None:
        return None
    floor = value.replace(microsecond=value.microsecond // 1000 * 1000)
    bound = floor if which == "min" or floor == value else floor + _MS
    if utc:
        return bound.strftime("%Y-%m-%dT%H:%M:%S.") + f"{bound.microsecond // 1000:03d}Z"
    return bound.strftime("%Y-%m-%d %H:%M:%S.") + f"{bound.microsecond // 1000:03d}"
