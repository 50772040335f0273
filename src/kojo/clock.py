"""Time in kojo: always timezone-aware UTC. Tests inject their own `now`.

Loops that measure intervals (the root's pool, a job process's batch keeper, the
idle board) read time through a `Clock`, so unit tests drive them with a fake one
instead of sleeping.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


def utcnow() -> datetime:
    return datetime.now(UTC)


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, intervals)."""
        ...

    def now(self) -> datetime:
        """The wall-clock time, aware UTC (what is written to the database)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return utcnow()


SYSTEM_CLOCK: Clock = SystemClock()


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp (a trailing Z allowed) into aware UTC."""
    return as_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
