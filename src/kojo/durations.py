"""ISO-8601 durations (`P1D`, `PT60S`, `P1Y2M3DT4H5M6.5S`, `P2W`) as timedeltas.

Years and months have no fixed length; like most job systems we take a year as
365 days and a month as 30 days, and say so in the README.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache

_PATTERN = re.compile(
    r"^P(?!$)"
    r"(?:(?P<years>\d+(?:[.,]\d+)?)Y)?"
    r"(?:(?P<months>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<weeks>\d+(?:[.,]\d+)?)W)?"
    r"(?:(?P<days>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?=\d)"
    r"(?:(?P<hours>\d+(?:[.,]\d+)?)H)?"
    r"(?:(?P<minutes>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?"
    r")?$"
)

_SECONDS = {
    "years": 365 * 86400,
    "months": 30 * 86400,
    "weeks": 7 * 86400,
    "days": 86400,
    "hours": 3600,
    "minutes": 60,
    "seconds": 1,
}


class DurationTooLong(ValueError):
    """A well-formed ISO-8601 duration longer than a timedelta can hold."""


@lru_cache(maxsize=1024)
def parse_duration(text: str) -> timedelta:
    """Parse an ISO-8601 duration; ValueError names the text when it is not one, or when
    it is longer than a timedelta can hold."""
    match = _PATTERN.match(text.strip().upper()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an ISO-8601 duration: {text!r}")
    total = 0.0
    for unit, value in match.groupdict().items():
        if value is not None:
            total += float(value.replace(",", ".")) * _SECONDS[unit]
    try:
        return timedelta(seconds=total)
    except OverflowError:  # past timedelta's 999,999,999 days (or an infinite float)
        raise DurationTooLong(f"ISO-8601 duration too long to compute with: {text!r}") from None


def format_duration(value: timedelta) -> str:
    """The canonical ISO-8601 text of a non-negative timedelta (`P1DT2H`, `PT0S`)."""
    total = value.total_seconds()
    if total < 0:
        raise ValueError(f"negative duration: {value}")
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "P"
    if days:
        text += f"{int(days)}D"
    time = ""
    if hours:
        time += f"{int(hours)}H"
    if minutes:
        time += f"{int(minutes)}M"
    if seconds or (not days and not time):
        time += f"{seconds:g}S"
    return text + ("T" + time if time else "")
