"""Parsers of values given in medallion.yaml or on the command line: durations and dates, one of each."""

from __future__ import annotations

from datetime import date

import pytest

from medallion_nb.errors import UsageError
from medallion_nb.validation import DURATION, duration_seconds, parse_date, parse_run_date


@pytest.mark.parametrize(("text", "seconds"), [
    ("PT30M", 1800), ("P1DT2H3M4S", 93784), ("PT1H", 3600), ("P2D", 172800), ("PT0S", 0),
    ("soon", None), ("P", None), ("PT", None), ("1h", None), ("PT1.5H", None), ("P1W", None),
])
def test_durations_are_iso_8601_days_to_seconds(text, seconds):
    assert duration_seconds(text) == seconds
    # What medallion.yaml accepts as a timeout is exactly what the runner can turn into seconds.
    assert bool(DURATION.match(text)) == (seconds is not None)


@pytest.mark.parametrize("text", ["20260105", "05/01/2026", "2026-02-30", "2026-1-5", "yesterday"])
def test_a_date_is_yyyy_mm_dd_only(text):
    with pytest.raises(UsageError, match=rf"--start: '{text}' is not an ISO date \(YYYY-MM-DD\)"):
        parse_date(text, "--start")


def test_run_date_may_be_empty_and_is_strict_otherwise():
    assert parse_run_date("") is None
    assert parse_run_date(None) is None
    assert parse_run_date("2026-01-05") == date(2026, 1, 5)
    assert parse_run_date(date(2026, 1, 5)) == date(2026, 1, 5)
    with pytest.raises(UsageError, match=r"run_date: 20260105 is not an ISO date \(YYYY-MM-DD\) or empty"):
        parse_run_date(20260105)
