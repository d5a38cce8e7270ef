"""Query builders for the gold explorer: filters, pages, profiles, chart data.

Everything here works on lazy DuckDB relations and knows nothing about
widgets, so it is tested on its own. Values typed into the explorer become
DuckDB constant expressions (never SQL text); column names go through
:func:`~medallion_nb.lakehouse.quote_ident`. The one place where a person
types SQL, the optional ``WHERE`` expression, is checked by
:func:`medallion_nb.widgets.readonly.check_where` before it gets here.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
from duckdb import ColumnExpression, ConstantExpression, FunctionExpression

from medallion_nb.errors import LakeError
from medallion_nb.sql import literal, quote_ident

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "contains", "starts with", "in", "is null", "is not null")
NO_VALUE_OPERATORS = ("is null", "is not null")
AGGREGATIONS = ("sum", "avg", "min", "max", "count")
ROWS = "(rows)"  # the chart's y "column" that counts rows

_INTEGER = {"tinyint", "smallint", "integer", "bigint", "hugeint",
            "utinyint", "usmallint", "uinteger", "ubigint", "uhugeint"}
_FLOAT = {"float", "double"}
_NUMERIC = _INTEGER | _FLOAT | {"decimal"}
_DATE = {"date"}
_TIMESTAMP = {"timestamp", "timestamp_s", "timestamp_ms", "timestamp_ns", "timestamp with time zone"}
_TEMPORAL = _DATE | _TIMESTAMP
_ORDERED = _NUMERIC | _TEMPORAL | {"varchar", "boolean", "time", "uuid", "interval"}


class FilterError(LakeError):
    """A filter was refused or cannot be applied; the message says which part and why."""


@dataclass(frozen=True)
class Condition:
    """One filter condition picked from controls: ``column op value``."""

    column: str
    op: str
    value: str = ""


@dataclass(frozen=True)
class ColumnProfile:
    """Summary statistics of one column."""

    column: str
    type: str
    count: int
    nulls: int
    distinct: int | None
    minimum: Any
    maximum: Any
    mean: float | None


# -- types ----------------------------------------------------------------
def column_types(rel: duckdb.DuckDBPyRelation) -> dict[str, str]:
    """Column name -> DuckDB type id (``integer``, ``varchar``, ``decimal``, ...)."""
    return {name: str(dtype.id) for name, dtype in zip(rel.columns, rel.types, strict=True)}


def column_type_names(rel: duckdb.DuckDBPyRelation) -> dict[str, str]:
    """Column name -> DuckDB type as DuckDB writes it (``INTEGER``, ``DECIMAL(18,2)``, ``DATE``, ...)."""
    return {name: str(dtype) for name, dtype in zip(rel.columns, rel.types, strict=True)}


def is_numeric(type_id: str) -> bool:
    """Whether a column of this type can be summed and averaged."""
    return type_id in _NUMERIC


def is_temporal(type_id: str) -> bool:
    """Whether a column of this type is a date or timestamp (and can be bucketed by month etc.)."""
    return type_id in _TEMPORAL


def _column(types: Mapping[str, str], name: str, what: str) -> ColumnExpression:
    if name not in types:
        raise FilterError(f"{what}: {name!r} is not a column (columns: {', '.join(types)})")
    return ColumnExpression(name)


# -- filters ----------------------------------------------------------------
_EXPECTED = {"decimal": "a number", "date": "an ISO date (2026-01-31)"}
_EXPECTED.update(dict.fromkeys(_INTEGER, "a whole number"))
_EXPECTED.update(dict.fromkeys(_FLOAT, "a number"))
_EXPECTED.update(dict.fromkeys(_TIMESTAMP, "an ISO timestamp (2026-01-31 12:00:00)"))
_TEXT_LIKE = {"varchar"}


def _typed_value(text: str, type_id: str, column: str) -> Any:
    """Turn the text typed into the value box into a Python value of the column's type."""
    raw = text.strip()
    try:
        if type_id in _INTEGER:
            return int(raw)
        if type_id in _FLOAT:
            return float(raw)
        if type_id == "decimal":
            return decimal.Decimal(raw)
        if type_id in _DATE:
            return dt.date.fromisoformat(raw)
        if type_id in _TIMESTAMP:
            return dt.datetime.fromisoformat(raw)
    except (ValueError, decimal.InvalidOperation) as exc:
        raise FilterError(f"filter on {column}: {text!r} is not {_EXPECTED[type_id]}") from exc
    if type_id == "boolean":
        if raw.lower() in ("true", "t", "yes", "y", "1"):
            return True
        if raw.lower() in ("false", "f", "no", "n", "0"):
            return False
        raise FilterError(f"filter on {column}: {text!r} is not true or false")
    return raw


def _typed(type_id: str) -> bool:
    """Whether values of this type are converted from text (else the column is compared as text)."""
    return type_id in _EXPECTED or type_id in _TEXT_LIKE or type_id == "boolean"


def condition_expression(cond: Condition, types: Mapping[str, str]) -> duckdb.Expression:
    """The DuckDB expression of one condition; the value becomes a typed constant.

    Raises:
        FilterError: unknown column or operator, or a value that does not fit the column's type.
    """
    col = _column(types, cond.column, "filter")
    type_id = types[cond.column]
    op = cond.op
    if op not in OPERATORS:
        raise FilterError(f"filter on {cond.column}: operator {op!r} is not one of {', '.join(OPERATORS)}")
    if op == "is null":
        return col.isnull()
    if op == "is not null":
        return col.isnotnull()
    if op in ("contains", "starts with"):
        text = FunctionExpression("lower", col.cast(duckdb.sqltype("VARCHAR")))
        func = "contains" if op == "contains" else "starts_with"
        return FunctionExpression(func, text, ConstantExpression(cond.value.strip().lower()))
    if not _typed(type_id):
        # Lists, structs, blobs, intervals...: compare their text form with the text typed.
        col, type_id = col.cast(duckdb.sqltype("VARCHAR")), "varchar"
    if not cond.value.strip() and type_id not in _TEXT_LIKE:
        raise FilterError(f"filter on {cond.column}: type a value for {op!r}")
    if op == "in":
        items = [part for part in cond.value.split(",") if part.strip()]
        if not items:
            raise FilterError(f"filter on {cond.column}: 'in' needs values separated by commas")
        return col.isin(*(ConstantExpression(_typed_value(item, type_id, cond.column)) for item in items))
    value = ConstantExpression(_typed_value(cond.value, type_id, cond.column))
    return {
        "=": col == value, "!=": col != value, "<": col < value,
        "<=": col <= value, ">": col > value, ">=": col >= value,
    }[op]


def filter_relation(
    rel: duckdb.DuckDBPyRelation,
    conditions: Sequence[Condition] = (),
    where: str = "",
) -> duckdb.DuckDBPyRelation:
    """``rel`` restricted to rows matching every condition and the (checked) ``where`` expression.

    ``where`` must come from :func:`~medallion_nb.widgets.readonly.check_where`.

    Raises:
        FilterError: a condition names an unknown column or has a bad value.
    """
    types = column_types(rel)
    for cond in conditions:
        rel = rel.filter(condition_expression(cond, types))
    if where:
        try:
            rel = rel.filter(where)
        except duckdb.Error as exc:
            raise FilterError(f"filter {where}: {_first_line(exc)}") from exc
    return rel


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def describe_filter(conditions: Sequence[Condition], where: str = "", types: Mapping[str, str] | None = None) -> str:
    """A readable one-line summary of a filter, values shown as typed: ``units > 100 AND country = 'DE'``."""
    parts = [f"{c.column} {c.op}" + ("" if c.op in NO_VALUE_OPERATORS else f" {_shown(c, (types or {}).get(c.column))}")
             for c in conditions]
    if where.strip():
        parts.append(where.strip())
    return " AND ".join(parts)


def _shown(cond: Condition, type_id: str | None) -> str:
    """A condition's value as it is compared: numbers and dates bare, text in quotes."""
    if cond.op in ("contains", "starts with") or type_id is None or not _typed(type_id):
        return repr(cond.value.strip())
    items = [p for p in cond.value.split(",") if p.strip()] if cond.op == "in" else [cond.value]
    try:
        values = [_typed_value(item, type_id, cond.column) for item in items]
    except FilterError:
        return repr(cond.value.strip())
    text = ", ".join(repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool)
                     else v.isoformat(sep=" ") if isinstance(v, dt.datetime) else str(v) for v in values)
    return f"({text})" if cond.op == "in" else text


# -- pages ----------------------------------------------------------------
def page_relation(
    rel: duckdb.DuckDBPyRelation,
    *,
    order_by: str | None = None,
    descending: bool = False,
    limit: int | None = 20,
    offset: int = 0,
) -> duckdb.DuckDBPyRelation:
    """One page of ``rel`` (``LIMIT``/``OFFSET``), optionally sorted by a column (nulls last).

    ``limit=None`` keeps every row (used for downloads).

    Raises:
        FilterError: ``order_by`` is not a column.
    """
    if order_by:
        col = _column(column_types(rel), order_by, "sort")
        rel = rel.sort((col.desc() if descending else col.asc()).nulls_last())
    if limit is not None:
        rel = rel.limit(int(limit), offset=max(int(offset), 0))
    return rel


def count_rows(rel: duckdb.DuckDBPyRelation) -> int:
    """Number of rows of ``rel`` (one aggregate query)."""
    return int(rel.aggregate("count(*)").fetchall()[0][0])


# -- profile ----------------------------------------------------------------
def profile_columns(rel: duckdb.DuckDBPyRelation, *, distinct: bool = True,
                    files: Sequence[str] = (), con: duckdb.DuckDBPyConnection | None = None) -> list[ColumnProfile]:
    """Count, nulls, distinct values, min, max and mean of every column.

    One pass over the rows computes everything that needs the rows: counts, nulls,
    min and max, the means of the numeric columns and the distinct values, so each
    column is read and decoded once. Distinct values are counted exactly;
    ``distinct=False`` leaves them out
    (``None``): on millions of rows hashing every value of every column is most of the
    profile's time (:func:`top_values` gives the exact count of one column).

    ``files`` (read on ``con``) says that ``rel`` is exactly the rows of these Parquet
    files, a table without a filter: counts, nulls, min and max are then asked of each
    file on its own, which DuckDB answers from the file's statistics without reading
    the data (over several files at once it scans text columns), and combined; the
    pass over the rows then reads only what statistics cannot give.
    """
    types = column_types(rel)
    ordered = [name for name, type_id in types.items() if type_id in _ORDERED]
    numeric = [name for name, type_id in types.items() if is_numeric(type_id)]
    found = _file_statistics(con, files, types, ordered) if files and con is not None else None
    scanned = ([] if found else [_stats_sql(types, ordered)]) \
        + [f"avg({quote_ident(n)})::DOUBLE" for n in numeric] \
        + ([f"count(DISTINCT {quote_ident(n)})" for n in ordered] if distinct else [])
    row = list(rel.aggregate(", ".join(scanned)).fetchall()[0]) if scanned else []
    if found is None:
        size = 1 + len(types) + 2 * len(ordered)
        found, row = _unpack(row[:size], types, ordered), row[size:]
    total, counts, extremes = found
    means = dict(zip(numeric, row[:len(numeric)], strict=True))
    distincts = dict(zip(ordered, row[len(numeric):], strict=True)) if distinct else {}
    return [
        ColumnProfile(
            column=name, type=type_id, count=int(counts[name]), nulls=total - int(counts[name]),
            distinct=int(distincts[name]) if name in distincts else None,
            minimum=extremes.get(name, (None, None))[0], maximum=extremes.get(name, (None, None))[1],
            mean=means.get(name),
        )
        for name, type_id in types.items()
    ]


Stats = tuple[int, dict[str, int], dict[str, tuple[Any, Any]]]


def _stats_sql(types: Mapping[str, str], ordered: Sequence[str]) -> str:
    stats = ["count(*)"] + [f"count({quote_ident(n)})" for n in types]
    return ", ".join(stats + [f"{fn}({quote_ident(n)})" for n in ordered for fn in ("min", "max")])


def _unpack(row: Sequence[Any], types: Mapping[str, str], ordered: Sequence[str]) -> Stats:
    total, counts = int(row[0]), dict(zip(types, (int(c) for c in row[1:1 + len(types)]), strict=True))
    bounds = iter(row[1 + len(types):])
    return total, counts, {n: (next(bounds), next(bounds)) for n in ordered}


def _statistics(rel: duckdb.DuckDBPyRelation, types: Mapping[str, str], ordered: Sequence[str]) -> Stats:
    return _unpack(rel.aggregate(_stats_sql(types, ordered)).fetchall()[0], types, ordered)


def _file_statistics(con: duckdb.DuckDBPyConnection, files: Sequence[str], types: Mapping[str, str],
                     ordered: Sequence[str]) -> Stats | None:
    """Counts, min and max file by file, combined; None when a file lacks a column (scan them together then)."""
    sql = _stats_sql(types, ordered)
    total, counts, extremes = 0, dict.fromkeys(types, 0), {n: (None, None) for n in ordered}
    for path in files:
        try:
            row = con.sql(f"SELECT {sql} FROM read_parquet({literal(path)})").fetchall()[0]
        except duckdb.BinderException:
            return None
        rows, file_counts, file_extremes = _unpack(row, types, ordered)
        total += rows
        for name, n in file_counts.items():
            counts[name] += n
        for name, (low, high) in file_extremes.items():
            was_low, was_high = extremes[name]
            extremes[name] = (low if was_low is None or (low is not None and low < was_low) else was_low,
                              high if was_high is None or (high is not None and high > was_high) else was_high)
    return total, counts, extremes


@dataclass(frozen=True)
class TopValues:
    """The most frequent values of a column, and how many distinct values it has in all (exact)."""

    column: str
    values: list[tuple[Any, int]]  # (value, rows), most rows first; None is a value too
    distinct: int  # distinct non-null values


def top_values(rel: duckdb.DuckDBPyRelation, column: str, n: int = 10) -> TopValues:
    """The ``n`` most frequent values of a column with their row counts, and its exact number of distinct values.

    One ``GROUP BY``: the groups it forms are the distinct values, so counting them
    costs nothing more than the top values themselves.

    Raises:
        FilterError: ``column`` is not a column.
    """
    _column(column_types(rel), column, "top values")
    col = quote_ident(column)
    grouped = rel.aggregate(f"{col} AS value, count(*) AS rows", col)
    # The groups are formed once, then counted and ranked (a window count over them costs more).
    rows = grouped.query("__top_groups", f"""
        WITH g AS MATERIALIZED (SELECT * FROM __top_groups)
        SELECT value, rows, (SELECT count(value) FROM g) FROM g
        ORDER BY rows DESC, value ASC NULLS LAST LIMIT {int(n)}""").fetchall()
    return TopValues(column=column, values=[(value, int(count)) for value, count, _ in rows],
                     distinct=int(rows[0][2]) if rows else 0)


def repeating_text_column(rel: duckdb.DuckDBPyRelation, *, rows: int = 10_000,
                          max_values: int | None = None) -> str | None:
    """The first text column whose values repeat (a category, a country, a status), or None.

    Judged on the first ``rows`` rows, which DuckDB reads without scanning the rest: a
    column with at most ``max_values`` distinct values there (default: ``MAX_CATEGORIES``,
    as many as a chart shows). Identifiers and free text, whose top values are ties of
    one or two rows each, are passed over.
    """
    text = [name for name, type_id in column_types(rel).items() if type_id == "varchar"]
    if not text:
        return None
    limit = max_values or MAX_CATEGORIES
    counts = rel.limit(int(rows)).aggregate(", ".join(f"count(DISTINCT {quote_ident(c)})" for c in text))
    return next((c for c, k in zip(text, counts.fetchall()[0], strict=True) if k <= limit), None)


# -- chart ----------------------------------------------------------------
TIME_BUCKETS = ("hour", "day", "week", "month", "quarter", "year")
_STEP = {"hour": "INTERVAL 1 HOUR", "day": "INTERVAL 1 DAY", "week": "INTERVAL 7 DAY",
         "month": "INTERVAL 1 MONTH", "quarter": "INTERVAL 3 MONTH", "year": "INTERVAL 1 YEAR"}
_APPROX_SECONDS = {"hour": 3600, "day": 86_400, "week": 7 * 86_400, "month": 30.44 * 86_400,
                   "quarter": 91.3 * 86_400, "year": 365.25 * 86_400}
AUTO_TIME_BINS = 120  # auto binning picks the finest bucket that gives at most this many bins
MAX_TIME_BINS = 1000  # a bucket picked by hand shows at most this many bins
MAX_CATEGORIES = 50
MAX_NUMBER_POINTS = 500


@dataclass(frozen=True)
class ChartData:
    """The points of a chart: one label and one value per group.

    ``axis`` is ``time`` (labels are bin starts, empty bins have value None so gaps show),
    ``category`` (labels are text, largest value first) or ``number`` (ordered by x).
    ``groups`` is how many groups there are in all; ``truncated`` when fewer are in ``labels``.
    """

    labels: list[Any]
    values: list[float | None]
    truncated: bool
    title: str
    axis: str = "category"
    bucket: str = ""
    groups: int = 0

    @property
    def note(self) -> str:
        """What a reader must know about the groups shown ("" when all are shown)."""
        if not self.truncated:
            return ""
        if self.axis == "time":
            return (f"Showing the first {len(self.labels):,} of {self.groups:,} {self.bucket}s; "
                    "pick a coarser bucket or filter a shorter period to see the rest.")
        order = "largest" if self.axis == "category" else "lowest"
        return (f"Showing the {order} {len(self.labels):,} of {self.groups:,} groups; "
                f"the other {self.groups - len(self.labels):,} are left out. Filter to see them.")


def auto_bucket(low: Any, high: Any, *, dates_only: bool = False, max_bins: int = AUTO_TIME_BINS) -> str:
    """The finest bucket (hour, day, week, month, quarter, year) giving at most ``max_bins`` bins over a span."""
    if low is None or high is None:
        return "day"
    if not isinstance(low, dt.datetime):
        low, high = dt.datetime.combine(low, dt.time()), dt.datetime.combine(high, dt.time())
    span = abs((high.replace(tzinfo=None) - low.replace(tzinfo=None)).total_seconds())
    for bucket in TIME_BUCKETS[1 if dates_only else 0:]:
        if span / _APPROX_SECONDS[bucket] + 1 <= max_bins:
            return bucket
    return "year"


def _aggregate_sql(types: Mapping[str, str], y: str, agg: str) -> str:
    if agg not in AGGREGATIONS:
        raise FilterError(f"chart: aggregation {agg!r} is not one of {', '.join(AGGREGATIONS)}")
    if y == ROWS:
        return "count(*)"
    _column(types, y, "chart y")
    if agg != "count" and not is_numeric(types[y]):
        raise FilterError(f"chart: cannot {agg} {y} ({types[y]}); pick a numeric column, or count")
    return f"{agg}({quote_ident(y)})"


def chart_data(
    rel: duckdb.DuckDBPyRelation,
    *,
    x: str,
    y: str = ROWS,
    agg: str = "sum",
    bucket: str = "auto",
    max_points: int | None = None,
) -> ChartData:
    """``agg(y)`` grouped by ``x``, ready to draw, with a title such as ``sum(revenue) by order_date (day)``.

    - a date or timestamp ``x`` is grouped into time bins: ``bucket="auto"`` picks hour, day, week,
      month, quarter or year from the span of the data (at most ``AUTO_TIME_BINS`` bins), never finer
      than the data itself (first-of-month dates are shown by month); every bin
      between the first and the last is returned, an empty one with value None, so gaps show;
    - a text (or other) ``x`` gives one group per value, largest first, at most ``MAX_CATEGORIES``;
    - a numeric ``x`` gives one point per value in order, at most ``MAX_NUMBER_POINTS``.

    Raises:
        FilterError: unknown column, aggregation or bucket, a bucket for a column that is not a date or
            timestamp, or a non-numeric ``y`` with an aggregation other than ``count``.
    """
    types = column_types(rel)
    _column(types, x, "chart x")
    value = _aggregate_sql(types, y, agg)
    what = "rows" if y == ROWS else f"{agg}({y})"
    x_sql = quote_ident(x)
    if bucket and bucket != "auto":
        if bucket not in TIME_BUCKETS:
            raise FilterError(f"chart: bucket {bucket!r} is not one of auto, {', '.join(TIME_BUCKETS)}")
        if not is_temporal(types[x]):
            raise FilterError(f"chart: {x} is {types[x]}, not a date or timestamp; it cannot be grouped by {bucket}")
    if is_temporal(types[x]):
        return _time_chart(rel, x, types[x], value, what, bucket, max_points or MAX_TIME_BINS)
    axis = "number" if is_numeric(types[x]) else "category"
    limit = max_points or (MAX_NUMBER_POINTS if axis == "number" else MAX_CATEGORIES)
    order = "x ASC NULLS LAST" if axis == "number" else "value DESC NULLS LAST, x ASC NULLS LAST"
    grouped = rel.aggregate(f"{x_sql} AS x, {value}::DOUBLE AS value", x_sql)
    rows = grouped.query("__chart_groups", f"SELECT x, value, count(*) OVER () AS groups FROM __chart_groups "
                                           f"ORDER BY {order} LIMIT {int(limit)}").fetchall()
    groups = rows[0][2] if rows else 0
    return ChartData(labels=[r[0] for r in rows], values=[r[1] for r in rows], truncated=groups > len(rows),
                     title=f"{what} by {x}", axis=axis, groups=groups)


def _time_chart(rel: duckdb.DuckDBPyRelation, x: str, type_id: str, value: str, what: str, bucket: str,
                max_bins: int) -> ChartData:
    x_sql = f"CAST({quote_ident(x)} AS TIMESTAMP)"
    # Whether every value already sits on a bucket boundary (monthly data is shown by month, not by day).
    aligned = ", ".join(f"bool_and({x_sql} = date_trunc('{b}', {x_sql}))" for b in TIME_BUCKETS)
    low, high, *on_boundary = rel.aggregate(f"min({x_sql}), max({x_sql}), {aligned}").fetchall()[0]
    if not bucket or bucket == "auto":
        bucket = auto_bucket(low, high, dates_only=type_id == "date", max_bins=min(max_bins, AUTO_TIME_BINS))
        native = [b for b, ok in zip(TIME_BUCKETS, on_boundary, strict=True) if ok]
        if native and TIME_BUCKETS.index(native[-1]) > TIME_BUCKETS.index(bucket):
            bucket = native[-1]
    title = f"{what} by {x} ({bucket})"
    if low is None:
        return ChartData(labels=[], values=[], truncated=False, title=title, axis="time", bucket=bucket)
    binned = f"date_trunc('{bucket}', {x_sql})"
    grouped = rel.filter(f"{x_sql} IS NOT NULL").aggregate(f"{binned} AS x, {value}::DOUBLE AS value", binned)
    # Every bin from the first to the last, so that a bin without rows shows as a gap, not as a neighbour.
    rows = grouped.query("__chart_bins", f"""
        WITH bins AS (
            SELECT unnest(generate_series(min(x), max(x), {_STEP[bucket]})) AS x FROM __chart_bins)
        SELECT bins.x, g.value, count(*) OVER () AS groups
        FROM bins LEFT JOIN __chart_bins g ON g.x = bins.x
        ORDER BY bins.x LIMIT {int(max_bins)}""").fetchall()
    groups = rows[0][2] if rows else 0
    return ChartData(labels=[r[0] for r in rows], values=[r[1] for r in rows], truncated=groups > len(rows),
                     title=title, axis="time", bucket=bucket, groups=groups)


# -- versions ---------------------------------------------------------------
@dataclass(frozen=True)
class VersionDiff:
    """How an earlier version of a (filtered) table differs from the current one."""

    rows_now: int
    rows_then: int
    added: list[str]
    removed: list[str]
    retyped: list[str]
    only_now: int | None  # distinct rows only in the current version (None when the columns differ)
    only_then: int | None

    def summary(self, version: int) -> str:
        """One line for people, e.g. ``rows: 150 in version 0, 200 now · 50 distinct rows only now, ...``."""
        facts = [f"rows: {self.rows_then:,} in version {version}, {self.rows_now:,} now"]
        if self.only_now is not None:
            facts.append(f"{self.only_now:,} distinct rows only now, {self.only_then:,} only in version {version}")
        for label, cols in (("added", self.added), ("removed", self.removed), ("with a new type", self.retyped)):
            if cols:
                facts.append(f"columns {label}: {', '.join(cols)}")
        return " · ".join(facts)


def compare_relations(now: duckdb.DuckDBPyRelation, then: duckdb.DuckDBPyRelation) -> VersionDiff:
    """Row counts and column changes between two versions; when the columns match, the rows in only one."""
    now_types, then_types = column_types(now), column_types(then)
    added = [c for c in now_types if c not in then_types]
    removed = [c for c in then_types if c not in now_types]
    retyped = [c for c in now_types if c in then_types and then_types[c] != now_types[c]]
    same = not (added or removed or retyped) and list(now_types) == list(then_types)
    return VersionDiff(
        rows_now=count_rows(now), rows_then=count_rows(then), added=added, removed=removed, retyped=retyped,
        only_now=count_rows(now.except_(then)) if same else None,
        only_then=count_rows(then.except_(now)) if same else None,
    )
