"""Cron expressions, evaluated in UTC at minute granularity (croniter does the parsing).

croniter (with dateutil) is imported on first use: a server whose app has no cron
type never pays for it before its first job (tests/unit/test_startup_imports.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .clock import as_utc

if TYPE_CHECKING:
    from croniter import croniter

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def iterator(expression: str, start: datetime) -> croniter:
    """croniter over a normalized expression, from `start`."""
    from croniter import croniter

    return croniter(expression, start)


def normalize(expression: str) -> str:
    """The 5-field form of an expression; ValueError (naming it) if it is not valid cron."""
    if not isinstance(expression, str):
        raise ValueError(f"not a cron expression: {expression!r}")
    text = " ".join(expression.split())
    text = MACROS.get(text.lower(), text)
    from croniter import croniter

    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise ValueError(f"not a 5-field cron expression or @macro: {expression!r}")
    return text


def floor_minute(moment: datetime) -> datetime:
    return as_utc(moment).replace(second=0, microsecond=0)


def next_fire(expression: str, after: datetime) -> datetime:
    """The first due minute strictly after `after`."""
    it = iterator(normalize(expression), as_utc(after))
    result: datetime = it.get_next(datetime)
    return as_utc(result)


def next_fire_of_stored(expression: str | None, now: datetime) -> datetime | None:
    """The next due minute of a stored expression (`kojo types list`, the dashboard); None
    when it has none or, stored by hand or by an older kojo, it cannot be computed: one bad
    row must not hide the rest."""
    if not expression:
        return None
    try:
        return next_fire(expression, now)
    except (ValueError, OverflowError):
        return None


def fire_times(expression: str, start: datetime, end: datetime) -> Iterator[datetime]:
    """Due minutes in [start, end], both rounded down to the minute."""
    minute = floor_minute(start)
    last = floor_minute(end)
    it = iterator(normalize(expression), minute - timedelta(seconds=1))
    while True:
        fire = as_utc(it.get_next(datetime))
        if fire > last:
            return
        yield fire
