"""Looking at CSV files before DuckDB reads them: header, data lines, and whether they are text at all.

All of this is byte-level and cheap (a newline count runs at memory speed), so
every file is accounted for without a second parse: DuckDB's rows plus its
rejects must add up to the data lines counted here.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from medallion_nb.names import IDENT
from medallion_nb.sources import Source

LINEAGE_COLUMNS = ("_ingested_at", "_source_file", "_run_id")
_CHUNK = 1 << 25  # bytes counted at once
_HEAD = 1 << 16
_LF, _CR = 10, 13
_NOT_NAME = re.compile(r"[^a-z0-9_]+")


@dataclass(frozen=True)
class CsvFile:
    """One file of a source as found on disk, before it is read."""

    path: str  # as recorded in the state and in _source_file
    absolute: str
    size: int
    header: tuple[str, ...] = ()  # column names after rename / normalize_names
    lines: int = 0  # data lines: non-blank lines after the header
    problem: str | None = None  # why the whole file cannot be read
    text: bool = True  # False: binary bytes, never a header-only file


def inspect(path: str, absolute: str, size: int, source: Source) -> CsvFile:
    """Header, data lines and whole-file problems of one CSV file."""
    if size == 0:
        return CsvFile(path, absolute, size)
    with open_bytes(absolute) as fh:
        head = fh.read(_HEAD)
    lines = count_lines(absolute, source.encoding) - (1 if source.header else 0)
    if source.encoding != "utf-16" and b"\x00" in head:
        return CsvFile(path, absolute, size, lines=max(lines, 0), problem="not a text file (it contains NUL bytes)",
                       text=False)
    if not source.header:
        return CsvFile(path, absolute, size, tuple(name for name, _ in source.schema), max(lines, 0))
    first = _first_line(head, source.encoding)
    if isinstance(first, UnicodeDecodeError):
        return CsvFile(path, absolute, size, lines=max(lines, 0),
                       problem=f"its first line is not {source.encoding} text ({first.reason} at byte {first.start}); "
                               "check the source's encoding")
    names, problem = header_names(first, source)
    return CsvFile(path, absolute, size, names, max(lines, 0), problem)


def header_names(line: str, source: Source) -> tuple[tuple[str, ...], str | None]:
    """The column names a header line gives, after ``rename`` and ``normalize_names``; or a problem."""
    escape = None if source.escape == source.quote else source.escape
    try:
        fields = next(csv.reader([line], delimiter=source.delimiter[0], quotechar=source.quote,
                                 escapechar=escape, doublequote=escape is None), [])
    except csv.Error as exc:
        return (), f"its header line cannot be parsed ({exc})"
    names = []
    for raw in fields:
        name = raw.strip()
        name = source.rename.get(raw, source.rename.get(name, name))
        if source.normalize_names and name not in source.rename.values():
            name = normalize(name)
        names.append(name)
    where = f"sources.{source.name}"
    for i, name in enumerate(names):
        if not name:
            return (), f"column {i + 1} of its header has no name; add rename or normalize_names to {where}"
        if not IDENT.match(name):
            return (), (f"its header column {name!r} is not a plain name (letters, digits and _); "
                        f"add rename: {{{name!r}: a_name}} or normalize_names: true to {where}")
        if name in LINEAGE_COLUMNS:
            return (), f"its header has column {name!r}, which bronze adds for lineage; rename it in {where}"
    seen: dict[str, str] = {}
    for name in names:
        if name.lower() in seen:
            return (), (f"its header names column {name!r} twice (column names ignore case); "
                        f"rename one of them in {where}")
        seen[name.lower()] = name
    return tuple(names), None


def normalize(name: str) -> str:
    """``Order ID`` -> ``order_id``: lower case, runs of other characters become ``_``."""
    text = _NOT_NAME.sub("_", name.strip().lower()).strip("_")
    return f"_{text}" if text[:1].isdigit() else text


def _first_line(head: bytes, encoding: str) -> str | UnicodeDecodeError:
    if encoding == "utf-16":
        text = head[: len(head) // 2 * 2].decode("utf-16", errors="replace")
        return text.split("\n", 1)[0].rstrip("\r")
    raw = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        return raw.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        return exc


def count_lines(absolute: str, encoding: str = "utf-8") -> int:
    """Non-blank lines in a file (a last line without a newline counts), at memory speed."""
    if encoding == "utf-16":
        text = read_bytes(absolute).decode("utf-16", errors="replace")
        return sum(1 for line in text.splitlines() if line)
    counter = _LineCounter()
    with open_bytes(absolute) as fh:
        while chunk := fh.read(_CHUNK):
            counter.add(chunk)
    return counter.total()


def count_lines_in(data: bytes) -> int:
    """:func:`count_lines` for bytes in memory."""
    counter = _LineCounter()
    view = memoryview(data)
    for i in range(0, len(data), _CHUNK):
        counter.add(view[i:i + _CHUNK])
    return counter.total()


class _LineCounter:
    """Counts non-blank lines chunk by chunk, with numpy (vectorised byte comparisons).

    A blank line is a newline right after a newline, or after a newline and a CR; the
    newlines of a chunk are few next to its bytes, so blank lines are found from the
    gaps between consecutive newline positions. A file with no LF at all has old Mac
    line ends (CR only) and is counted by its CRs.
    """

    def __init__(self) -> None:
        self.newlines = self.blank = self.crs = 0
        self.offset = 0  # bytes seen before the current chunk
        self.previous: int | None = None  # position of the last newline seen
        self.tail = -1  # the last byte seen
        self.last = b""

    def add(self, chunk: bytes | memoryview) -> None:
        import numpy as np  # not imported with the package: only ingest counts lines

        size = len(chunk)
        if not size:
            return
        data = np.frombuffer(chunk, dtype=np.uint8)
        found = np.flatnonzero(data == _LF)
        if len(found):
            self.newlines += len(found)
            gaps = np.diff(found)
            blank = int(np.count_nonzero(gaps == 1))
            two = found[1:][gaps == 2]
            if len(two):
                blank += int(np.count_nonzero(data[two - 1] == _CR))
            if self.previous is not None:
                gap = self.offset + int(found[0]) - self.previous
                if gap == 1 or (gap == 2 and (data[0] if found[0] == 1 else self.tail) == _CR):
                    blank += 1
            self.blank += blank
            self.previous = self.offset + int(found[-1])
        elif not self.newlines:
            self.crs += int(np.count_nonzero(data == _CR))
        self.tail = int(data[-1])
        self.offset += size
        self.last = bytes(chunk[-1:])

    def total(self) -> int:
        if not self.newlines and self.crs:  # old Mac line ends: CR only
            return self.crs + (self.last != b"\r")
        return self.newlines - self.blank + (1 if self.last and self.last != b"\n" else 0)


def line_at(data: bytes, position: int) -> int:
    """The physical line number (1-based) at a DuckDB ``line_byte_position`` in ``data``."""
    # DuckDB's position is one past the line start for LF files and at the '\n' of a CRLF.
    p = max(position - 1, 0)
    if data[p:p + 1] == b"\n":
        p += 1
    return data.count(b"\n", 0, p) + 1


def lines_at(data: bytes, positions: Iterable[int]) -> dict[int, int]:
    """:func:`line_at` for many positions in one pass over ``data`` (a file's rejects, in order)."""
    out, line, done = {}, 1, 0
    for position in sorted(set(positions)):
        p = max(position - 1, 0)
        if data[p:p + 1] == b"\n":
            p += 1
        line += data.count(b"\n", done, p)
        out[position], done = line, p
    return out


def line_bounds(data: bytes, start: int) -> tuple[int, int]:
    """The start of the line holding byte ``start`` and the start of the next line."""
    begin = data.rfind(b"\n", 0, start) + 1
    end = data.find(b"\n", start)
    return begin, (len(data) if end < 0 else end + 1)


def raw_text(data: bytes, encoding: str = "utf-8", limit: int = 10_000) -> str:
    """Bytes as text for a rejects row: undecodable bytes escaped, never lost."""
    codec = "utf-16" if encoding == "utf-16" else ("latin-1" if encoding == "latin-1" else "utf-8")
    text = data.rstrip(b"\r\n").decode(codec, errors="backslashreplace").replace("\x00", "\\x00")
    return text if len(text) <= limit else text[:limit] + " ..."


def physical_lines(absolute: str, first_line: int) -> list[tuple[int, bytes]]:
    """``(line number, bytes)`` of every non-blank line from ``first_line`` on (for whole-file rejects)."""
    data = read_bytes(absolute)
    out = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if number >= first_line and line.strip(b"\r"):
            out.append((number, line))
    return out


def open_bytes(absolute: str) -> BinaryIO:
    """A file's bytes, decompressed when it is gzipped (``.gz``), as DuckDB reads it."""
    return gzip.open(absolute, "rb") if absolute.endswith(".gz") else open(absolute, "rb")


def read_bytes(absolute: str) -> bytes:
    """All of a file's (decompressed) bytes."""
    with open_bytes(absolute) as fh:
        return fh.read()
