"""A clock that moves only when a test says so (kojo.clock.Clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.start = start
        self.seconds = start

    def monotonic(self) -> float:
        return self.seconds

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.seconds - self.start)

    def advance(self, seconds: float) -> None:
        self.seconds += seconds
