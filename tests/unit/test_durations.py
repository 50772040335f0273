"""ISO-8601 durations: parsing, canonical formatting, and clear errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from kojo.durations import format_duration, parse_duration

DAY = 86400


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT0S", 0),
        ("PT60S", 60),
        ("PT1M", 60),
        ("PT1H", 3600),
        ("P1D", DAY),
        ("P2W", 14 * DAY),
        ("P1M", 30 * DAY),  # a month is 30 days
        ("P1Y", 365 * DAY),  # a year is 365 days
        ("P1Y2M3DT4H5M6S", 365 * DAY + 60 * DAY + 3 * DAY + 4 * 3600 + 5 * 60 + 6),
        ("PT1.5S", 1.5),
        ("PT0,5S", 0.5),
        ("P0.5D", DAY / 2),
        ("p1dt2h", DAY + 7200),  # case-insensitive
        ("  PT30S ", 30),
        ("P1DT0S", DAY),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    ["", "P", "PT", "P1DT", "1D", "P1H", "PT1D", "-P1D", "P-1D", "P1S", "PT1S1M", "P1D2", "soon"],
)
def test_parse_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_duration(text)
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize("value", [60, 1.5, None, timedelta(seconds=1)])
def test_parse_refuses_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="not an ISO-8601 duration"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "PT0S"),
        (timedelta(seconds=60), "PT1M"),
        (timedelta(seconds=90), "PT1M30S"),
        (timedelta(hours=2), "PT2H"),
        (timedelta(days=1), "P1D"),
        (timedelta(days=1, hours=2), "P1DT2H"),
        (timedelta(days=400, seconds=5), "P400DT5S"),
        (timedelta(seconds=1.5), "PT1.5S"),
    ],
)
def test_format(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_format_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))


@given(hs.integers(min_value=0, max_value=10 * 365 * DAY))
def test_format_then_parse_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value
