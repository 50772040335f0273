"""What kojo's columns and Python's dates can hold, in one place.

A value outside these bounds is refused where it enters kojo (an API call, a
CLI argument, a job type field), never stored: a stored value that cannot be
computed with later would fail in the middle of crash recovery or of every
completion. The bounds, the same on both backends:

- importance, priority, default_importance, max_retries, max_crashes,
  schedule_limit, schedule_limit_allowance: PostgreSQL `integer` (int4),
  -2147483648 to 2147483647 (SQLite could hold more; both refuse alike).
- job ids: PostgreSQL `bigint` identities, 1 to 9223372036854775807.
- dates (`at`, `now + delay`): what Python's datetime holds, 0001-01-01 to
  9999-12-31 in UTC.
- job type durations (auto_delete_interval_duration, catch_up_window): at
  most P1000Y (365,000 days), so that adding them to (or taking them from)
  any date of the coming millennia stays within those dates.
- job type timeout: more than 0 and at most 31,536,000 seconds (365 days), a
  value the kernel's interval timer takes.

Priority arithmetic saturates at the int4 minimum instead of overflowing
(`lower_priority`).
"""

from __future__ import annotations

import math
import operator
from datetime import UTC, datetime, timedelta

from .errors import InvalidArgument

INT4_MIN = -(2**31)
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1

DATE_MIN = datetime.min.replace(tzinfo=UTC)
DATE_MAX = datetime.max.replace(tzinfo=UTC)

MAX_DURATION = timedelta(days=365 * 1000)
MAX_DURATION_TEXT = "P1000Y"
MAX_TIMEOUT_SECONDS = 365 * 86400


def _integer(value: object) -> int | None:
    """`value` as an int when it is one (numpy-style integers included, bool not)."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def check_integer(name: str, value: object, minimum: int, maximum: int) -> int:
    """`value` as an int in [minimum, maximum]; InvalidArgument naming it otherwise."""
    number = _integer(value)
    if number is None or not minimum <= number <= maximum:
        raise InvalidArgument(
            f"{name} must be an integer from {minimum} to {maximum}, not {value!r}"
        )
    return number


def check_importance(value: object) -> int:
    return check_integer("importance", value, INT4_MIN, INT4_MAX)


def check_job_id(value: object) -> int:
    return check_integer("job id", value, 1, INT8_MAX)


def check_limit(value: object) -> int:
    return check_integer("limit", value, 1, INT8_MAX)


def format_date(value: datetime) -> str:
    return value.isoformat()


def check_at(at: object) -> datetime:
    """`at` as aware UTC; InvalidArgument when it is not a datetime or falls outside
    0001-01-01..9999-12-31 once converted to UTC."""
    if not isinstance(at, datetime):
        raise InvalidArgument(f"at must be a datetime, got {at!r}")
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidArgument(
            f"at must be a date-time from {format_date(DATE_MIN)} to {format_date(DATE_MAX)} "
            f"in UTC, not {format_date(at)}"
        ) from None


def _seconds(value: object) -> float | None:
    """A number of seconds (an int or a float, not a bool; or a timedelta) as a float;
    None when `value` is none of these. An int too large for a float is infinite."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    return None


def check_seconds(
    name: str, value: object, maximum: float = math.inf, *, maximum_text: str | None = None
) -> float:
    """`value` (seconds as an int or a float, or a timedelta) as a float from 0 to
    `maximum` (math.inf admits infinity, "wait forever"); InvalidArgument naming `name`
    and the value when it is of another type (a bool, a string), NaN, negative, or
    above `maximum` (`maximum_text` says it in the message, else the number does)."""
    seconds = _seconds(value)
    if seconds is None:
        raise InvalidArgument(f"{name} must be a number of seconds, got {value!r}")
    if not 0 <= seconds <= maximum:  # also refuses NaN, which compares false with all
        limit = maximum_text or f"{maximum:g}"
        raise InvalidArgument(
            f"{name} must be a number of seconds from 0 to {limit}, not {value!r}"
        )
    return seconds


def check_delay(now: datetime, delay: object) -> datetime:
    """`now + delay`; InvalidArgument naming the delay when it is negative, not a number,
    or ends after the last date Python can hold (9999-12-31)."""
    room = (DATE_MAX - now) // timedelta(seconds=1)
    until = f"{room} (until {format_date(DATE_MAX)})"
    seconds = check_seconds("delay", delay, (DATE_MAX - now).total_seconds(), maximum_text=until)
    try:
        return now + (delay if isinstance(delay, timedelta) else timedelta(seconds=seconds))
    except OverflowError:  # within a float's rounding of the last date, but past it
        raise InvalidArgument(
            f"delay must be a number of seconds from 0 to {until}, not {delay!r}"
        ) from None


def work_at(now: datetime, at: object, delay: object) -> datetime:
    """When a job scheduled or retried at `now` with `at=` or `delay=` should run."""
    if at is not None and delay is not None:
        raise InvalidArgument("give at= or delay=, not both")
    if at is not None:
        return check_at(at)
    if delay is None:
        return now
    return check_delay(now, delay)


def lower_priority(priority: int) -> int:
    """priority - 1, saturating at the int4 minimum (a value already below it is kept)."""
    return priority - 1 if priority > INT4_MIN else priority


def add_saturating(moment: datetime, delta: timedelta) -> datetime:
    """moment + delta, or the last (first) date Python holds when that overflows."""
    try:
        return moment + delta
    except OverflowError:
        return DATE_MAX if delta > timedelta(0) else DATE_MIN
