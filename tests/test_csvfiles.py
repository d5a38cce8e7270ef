"""Line numbers of rejected rows: one pass over a file gives what a search per row gives."""

from __future__ import annotations

import random

import pytest

from medallion_nb.ingest.csvfiles import line_at, lines_at


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
