"""Time in kojo: always timezone-aware UTC. Tests inject their own `now`."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp (a trailing Z allowed) into aware UTC."""
    return as_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
