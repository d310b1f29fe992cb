"""Durations read and print like Go's: ``30s``, ``10m``, ``1h30m``, ``500ms``."""

from __future__ import annotations

import pytest

from policy.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("10m", 600.0), ("1h30m", 5400.0), ("500ms", 0.5), (45, 45.0)],
)
def test_durations_read_like_go_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "5 m", "-1s", "0s", True, None])
def test_bad_durations_are_refused_saying_what_was_expected(text: object) -> None:
    with pytest.raises(ValueError, match=r"^expected a (positive )?duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30, "30s"), (90, "90s"), (600, "10m"), (5400, "90m"), (7200, "2h"), (0.5, "500ms")],
)
def test_durations_print_in_the_largest_whole_unit_and_read_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
