"""Counting a file's data lines, and line numbers of rejected rows (one pass gives what a search per row gives)."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medallion_nb.ingest import csvfiles
from medallion_nb.ingest.csvfiles import count_lines, count_lines_in, line_at, lines_at


def non_blank_lines(data: bytes) -> int:
    """The lines ingest accounts for, by splitting: a blank line (empty, or a lone CR) after a
    newline is skipped, a last line without a newline counts; no LF at all means CR line ends."""
    if b"\n" not in data and b"\r" in data:
        return data.count(b"\r") + (not data.endswith(b"\r"))
    pieces = data.split(b"\n")
    last = len(pieces) - 1
    return sum(1 for i, piece in enumerate(pieces)
               if (piece if i == last else (i == 0 or piece not in (b"", b"\r"))))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\r", b"a", b'"', b"\r\n", b"\n\n"]), max_size=40),
       st.integers(min_value=1, max_value=7))
def test_line_count_matches_splitting_whatever_the_chunk_boundaries(parts: list[bytes], chunk: int):
    data = b"".join(parts)
    saved = csvfiles._CHUNK
    csvfiles._CHUNK = chunk  # chunk boundaries fall between a newline and what follows it
    try:
        assert count_lines_in(data) == non_blank_lines(data)
    finally:
        csvfiles._CHUNK = saved


def test_line_count_of_files_counts_physical_lines(tmp_path: Path):
    # A quoted field spanning lines is one record but two lines: ingest reconciles the
    # difference from the loaded values, so the count here is of physical lines.
    data = b'id,note\r\n1,"two\nlines"\r\n\r\n2,x\n\n3,"a\r\nb"'
    (tmp_path / "a.csv").write_bytes(data)
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(data))
    assert count_lines(str(tmp_path / "a.csv")) == count_lines(str(tmp_path / "a.csv.gz")) == 6
    (tmp_path / "mac.csv").write_bytes(b"id\r1\r2\r")
    assert count_lines(str(tmp_path / "mac.csv")) == 3
    (tmp_path / "empty.csv").write_bytes(b"")
    assert count_lines(str(tmp_path / "empty.csv")) == 0


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
@pytest.mark.parametrize("seed", range(5))
def test_lines_of_many_positions_equal_each_position_alone(newline: bytes, seed: int):
    rng = random.Random(seed)
    lines = [b"x" * rng.randrange(0, 12) for _ in range(300)]  # blank lines included
    data = newline.join(lines) + newline
    positions = [*rng.sample(range(len(data) + 1), 60), 0, 1, len(data)]
    assert lines_at(data, positions) == {p: line_at(data, p) for p in positions}


def test_positions_at_line_starts_name_their_lines():
    data = b"a,b\n1,2\n3,4\n"
    # DuckDB reports one past the start of a line (LF files): line 2 starts at byte 4.
    assert lines_at(data, [5, 9, 1]) == {1: 1, 5: 2, 9: 3}
