"""The limits of kojo's columns and of Python's dates (kojo.bounds): values outside them are
refused where they enter, as bad arguments or bad job type fields, with one line naming
them; priority and date arithmetic saturate instead of overflowing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import kojo
from kojo import bounds, states
from kojo.durations import DurationTooLong, parse_duration
from kojo.job_types import define

INT4_MIN, INT4_MAX, INT8_MAX = -(2**31), 2**31 - 1, 2**63 - 1
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def work(job: Any) -> None:
    """A module-level worker."""


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message, message
    return message


# -- integers: importance, job ids, limits -----------------------------------------------------


def test_the_bounds_are_int4_and_bigint() -> None:
    assert (bounds.INT4_MIN, bounds.INT4_MAX, bounds.INT8_MAX) == (INT4_MIN, INT4_MAX, INT8_MAX)


@pytest.mark.parametrize("value", [INT4_MIN, -1, 0, 1, INT4_MAX])
def test_importance_within_int4_is_accepted(value: int) -> None:
    assert bounds.check_importance(value) == value


@pytest.mark.parametrize(
    "value", [INT4_MIN - 1, INT4_MAX + 1, -(2**63), 2**63 - 1, 2**70, "high", 1.5, True, None]
)
def test_importance_outside_int4_is_refused(value: object) -> None:
    with pytest.raises(kojo.InvalidArgument) as raised:
        bounds.check_importance(value)
    assert one_line(raised.value) == (
        f"importance must be an integer from -2147483648 to 2147483647, not {value!r}"
    )


@pytest.mark.parametrize("value", [1, 2**31, INT8_MAX])
def test_job_ids_within_bigint_are_accepted(value: int) -> None:
    assert bounds.check_job_id(value) == value


@pytest.mark.parametrize("value", [0, -1, INT8_MAX + 1, 10**22, "7", 7.0, False, None])
def test_job_ids_outside_bigint_are_refused(value: object) -> None:
    with pytest.raises(kojo.InvalidArgument) as raised:
        bounds.check_job_id(value)
    assert one_line(raised.value) == (
        f"job id must be an integer from 1 to 9223372036854775807, not {value!r}"
    )


# -- dates: at= and delay= -------------------------------------------------------------------


@pytest.mark.parametrize(
    "delay", [1e300, math.inf, -math.inf, math.nan, -1, -0.5, 10**400, 2**63, timedelta.max]
)
def test_delays_past_the_dates_python_holds_are_refused(delay: object) -> None:
    with pytest.raises(kojo.InvalidArgument) as raised:
        bounds.work_at(NOW, None, delay)
    message = one_line(raised.value)
    assert message.startswith("delay must be a number of seconds from 0 to ")
    assert message.endswith(f"not {delay!r}")


def test_the_longest_delay_ends_on_the_last_date() -> None:
    room = (bounds.DATE_MAX - NOW) // timedelta(seconds=1)  # whole seconds
    assert bounds.work_at(NOW, None, room) <= bounds.DATE_MAX
    assert bounds.work_at(NOW, None, bounds.DATE_MAX - NOW) == bounds.DATE_MAX
    with pytest.raises(kojo.InvalidArgument) as raised:
        bounds.work_at(NOW, None, room + 1)
    assert f"from 0 to {room} " in str(raised.value)
    with pytest.raises(kojo.InvalidArgument):
        bounds.work_at(NOW, None, bounds.DATE_MAX - NOW + timedelta(microseconds=1))


@pytest.mark.parametrize("delay", [0, 0.5, 60, timedelta(days=365 * 1000)])
def test_ordinary_delays(delay: float | timedelta) -> None:
    expected = NOW + (delay if isinstance(delay, timedelta) else timedelta(seconds=delay))
    assert bounds.work_at(NOW, None, delay) == expected


@pytest.mark.parametrize(
    ("at", "text"),
    [
        (
            datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=5))),
            "9999-12-31T23:59:59-05:00",
        ),
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), "0001-01-01T00:00:00+05:00"),
    ],
)
def test_dates_outside_python_once_in_utc_are_refused(at: datetime, text: str) -> None:
    with pytest.raises(kojo.InvalidArgument) as raised:
        bounds.work_at(NOW, at, None)
    assert one_line(raised.value) == (
        "at must be a date-time from 0001-01-01T00:00:00+00:00 to "
        f"9999-12-31T23:59:59.999999+00:00 in UTC, not {text}"
    )


@pytest.mark.parametrize(
    "at",
    [
        datetime.max,
        datetime.min,
        datetime.max.replace(tzinfo=UTC),
        datetime(9999, 12, 31, 4, 59, tzinfo=timezone(-timedelta(hours=5))),
    ],
)
def test_dates_at_the_edges_are_accepted(at: datetime) -> None:
    result = bounds.work_at(NOW, at, None)
    assert result.tzinfo is UTC and result == (at if at.tzinfo else at.replace(tzinfo=UTC))


def test_at_and_delay_together_or_of_the_wrong_kind() -> None:
    with pytest.raises(kojo.InvalidArgument, match="not both"):
        bounds.work_at(NOW, NOW, 5)
    with pytest.raises(kojo.InvalidArgument, match="'2030-01-01'"):
        bounds.work_at(NOW, "2030-01-01", None)
    with pytest.raises(kojo.InvalidArgument, match="'soon'"):
        bounds.work_at(NOW, None, "soon")
    assert bounds.work_at(NOW, None, None) == NOW


# -- seconds: the one validator of delays and timeouts ------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0.0), (2, 2.0), (0.25, 0.25), (timedelta(minutes=1), 60.0), (10**400, math.inf)],
)
def test_seconds_as_a_float(value: object, seconds: float) -> None:
    assert bounds.check_seconds("timeout", value) == seconds


@pytest.mark.parametrize("value", ["5", True, None, [1], NOW])
def test_seconds_of_another_type_are_refused_naming_them(value: object) -> None:
    with pytest.raises(kojo.InvalidArgument) as raised:
        bounds.check_seconds("timeout", value)
    assert one_line(raised.value) == f"timeout must be a number of seconds, got {value!r}"


@pytest.mark.parametrize("value", [math.nan, -1, -0.001, timedelta(seconds=-1), 61, math.inf])
def test_seconds_out_of_range_are_refused_naming_them(value: object) -> None:
    with pytest.raises(kojo.InvalidArgument) as raised:
        bounds.check_seconds("wait", value, 60)
    assert one_line(raised.value) == f"wait must be a number of seconds from 0 to 60, not {value!r}"


# -- saturating arithmetic -------------------------------------------------------------------


def test_lowering_priority_saturates_at_the_int4_minimum() -> None:
    assert bounds.lower_priority(0) == -1
    assert bounds.lower_priority(INT4_MIN + 1) == INT4_MIN
    assert bounds.lower_priority(INT4_MIN) == INT4_MIN
    # A value stored below it (SQLite, before these checks) is kept, never overflowed.
    assert bounds.lower_priority(-(2**63)) == -(2**63)


def _row(priority: int, state: str = "working", request: str = "none") -> dict[str, Any]:
    return {
        "kojo_job_id": 1,
        "assigned_state": state,
        "next_state_request": request,
        "previous_state": "waiting",
        "priority": priority,
        "times_worked": 1,
        "times_crashed": 0,
        "times_panicked": 0,
    }


@pytest.mark.parametrize("transition", [states.CRASH, states.PANIC])
def test_crash_and_panic_at_the_int4_minimum_keep_it(transition: states.Transition) -> None:
    changes = states.plan(
        transition, _row(INT4_MIN), now=NOW, auto_delete_interval=timedelta(days=1)
    )
    assert changes["priority"] == INT4_MIN
    assert changes["assigned_state"] == transition.assigned_state.value
    changes = states.plan(
        transition, _row(INT4_MIN + 1), now=NOW, auto_delete_interval=timedelta(days=1)
    )
    assert changes["priority"] == INT4_MIN


def test_completion_with_an_interval_past_the_dates_saturates() -> None:
    # A type stored before registration refused such intervals must still complete.
    changes = states.plan(
        states.COMPLETE_SUCCESS,
        _row(0),
        now=NOW,
        auto_delete_interval=parse_duration("P9000Y"),
    )
    assert changes["delete_after_date_time"] == bounds.DATE_MAX


# -- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["P99999999999Y", "P" + "9" * 400 + "Y", "PT1000000000000000S"])
def test_durations_longer_than_a_timedelta_are_a_value_error(text: str) -> None:
    with pytest.raises(DurationTooLong) as raised:
        parse_duration(text)
    assert isinstance(raised.value, ValueError)
    assert repr(text) in one_line(raised.value)


# -- job type fields whose use cannot be computed ---------------------------------------------


def refused(field: str, value: object, needle: str) -> None:
    with pytest.raises(kojo.InvalidJobType) as raised:
        define("a_type", work, **{field: value})
    message = one_line(raised.value)
    assert f"{field}={value!r}" in message, message
    assert needle in message, message


@pytest.mark.parametrize("field", ["auto_delete_interval_duration", "catch_up_window"])
@pytest.mark.parametrize(
    "value",
    [
        "P9000Y",
        "P1001Y",
        "P365001D",
        "P99999999999Y",
        "P" + "9" * 400 + "Y",
        timedelta(days=365_001),
        timedelta.max,
    ],
)
def test_durations_past_what_dates_hold_are_refused(field: str, value: object) -> None:
    refused(field, value, "must be at most P1000Y (365000 days)")


@pytest.mark.parametrize("field", ["auto_delete_interval_duration", "catch_up_window"])
@pytest.mark.parametrize("value", ["P1000Y", "P365000D", timedelta(days=365_000), "PT0S"])
def test_durations_up_to_the_bound_are_accepted(field: str, value: object) -> None:
    assert getattr(define("a_type", work, **{field: value}), field)


def test_the_longest_duration_can_be_added_to_now_and_taken_from_it() -> None:
    now = datetime.now(UTC)
    assert now + parse_duration("P1000Y") < bounds.DATE_MAX
    assert now - parse_duration("P1000Y") > bounds.DATE_MIN


@pytest.mark.parametrize(
    "expression", ["0 0 30 2 *", "0 0 31 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"]
)
def test_cron_expressions_that_never_fire_are_refused(expression: str) -> None:
    refused("cron_expression", expression, "never fires")


@pytest.mark.parametrize("expression", ["0 0 29 2 *", "0 0 31 * *", "0 0 L 2 *", "@yearly"])
def test_rare_cron_expressions_are_accepted(expression: str) -> None:
    assert define("a_type", work, cron_expression=expression).cron_expression == expression


@pytest.mark.parametrize("value", [INT4_MIN - 1, INT4_MAX + 1, -(2**63), 2**70])
def test_default_importance_outside_int4_is_refused(value: int) -> None:
    refused("default_importance", value, "must be")


@pytest.mark.parametrize("value", [INT4_MIN, INT4_MAX])
def test_default_importance_at_the_int4_bounds_is_accepted(value: int) -> None:
    assert define("a_type", work, default_importance=value).default_importance == value


@pytest.mark.parametrize(
    "field", ["max_retries", "max_crashes", "schedule_limit", "schedule_limit_allowance"]
)
def test_counts_outside_int4_are_refused(field: str) -> None:
    refused(field, INT4_MAX + 1, "must be <= 2147483647")
    refused(field, 2**63, "must be <= 2147483647")
    assert getattr(define("a_type", work, **{field: INT4_MAX}), field) == INT4_MAX


@pytest.mark.parametrize(
    "value", [31_536_001, 1e10, 1e300, math.inf, math.nan, timedelta(days=366), 10**400]
)
def test_timeouts_past_a_year_are_refused(value: object) -> None:
    refused("timeout", value, "at most 31536000 (365 days)")


@pytest.mark.parametrize("value", [31_536_000, timedelta(days=365), 0.001])
def test_timeouts_up_to_a_year_are_accepted(value: object) -> None:
    assert define("a_type", work, timeout=value).timeout is not None
