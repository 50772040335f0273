"""No single row can stop recovery, on both backends: values the columns or dates cannot
hold are refused by the API before anything is written, values at the bounds are stored
and read back, and a job at the lowest priority is still crashed by reaping its dead owner."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import kojo
from foundation_helpers import T0, claim, make_app, owner_of, process_info, update_job
from kojo.jobs import Job
from maintenance_helpers import in_processes

INT4_MIN, INT4_MAX, INT8_MAX = -(2**31), 2**31 - 1, 2**63 - 1


def job_count(app: kojo.App) -> int:
    return len(app.jobs(limit=INT8_MAX))


# -- scheduling refuses what the columns and dates cannot hold --------------------------------


@pytest.mark.parametrize("importance", [INT4_MIN - 1, INT4_MAX + 1, -(2**63), 2**70])
def test_importance_outside_int4_is_refused(database_url: str, importance: int) -> None:
    app = make_app(database_url, q={})
    expected = f"importance must be an integer from -2147483648 to 2147483647, not {importance}"
    with pytest.raises(kojo.InvalidArgument) as raised:
        app.schedule("q", importance=importance)
    assert str(raised.value) == expected
    with pytest.raises(kojo.InvalidArgument):
        app.schedule_many("q", [1, 2], importance=importance)
    assert job_count(app) == 0


@pytest.mark.parametrize(
    "when",
    [
        {"delay": 1e300},
        {"delay": math.inf},
        {"delay": math.nan},
        {"delay": 10**400},
        {"delay": timedelta.max},
        {"at": datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=5)))},
        {"at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))},
    ],
)
def test_dates_past_what_python_holds_are_refused(database_url: str, when: dict[str, Any]) -> None:
    app = make_app(database_url, q={})
    for schedule in (
        lambda: app.schedule("q", **when),
        lambda: app.schedule_many("q", [1], **when),
    ):
        with pytest.raises(kojo.InvalidArgument) as raised:
            schedule()
        message = str(raised.value)
        assert "\n" not in message
        assert message.startswith(("delay must be", "at must be")), message
    assert job_count(app) == 0


def test_values_at_the_bounds_are_stored_and_read_back(database_url: str) -> None:
    app = make_app(database_url, q={})
    last = datetime.max.replace(tzinfo=UTC)
    first = datetime.min.replace(tzinfo=UTC)
    low = app.schedule("q", importance=INT4_MIN, at=first)
    high = app.schedule("q", importance=INT4_MAX, at=last)
    (many,) = app.schedule_many("q", [None], delay=last - datetime.now(UTC) - timedelta(days=1))
    assert (app.job(low)["priority"], app.job(low)["work_at_date_time"]) == (INT4_MIN, first)
    assert (app.job(high)["priority"], app.job(high)["work_at_date_time"]) == (INT4_MAX, last)
    assert app.job(many)["work_at_date_time"].year == 9999


def test_a_type_at_the_bounds_is_stored(database_url: str) -> None:
    app = make_app(
        database_url,
        edge={
            "default_importance": INT4_MIN,
            "max_retries": INT4_MAX,
            "max_crashes": INT4_MAX,
            "schedule_limit_allowance": INT4_MAX,
            "auto_delete_interval_duration": "P1000Y",
            "catch_up_window": "P1000Y",
            "timeout": 365 * 86400,
        },
    )
    row = app.job(app.schedule("edge"))
    assert row["priority"] == INT4_MIN
    stored = app.type_row("edge", max_age=0)
    assert (stored["max_retries"], stored["auto_delete_interval_duration"]) == (INT4_MAX, "P1000Y")


@pytest.mark.parametrize("job_id", [0, -1, INT8_MAX + 1, 10**22, "7", 7.0])
def test_job_ids_outside_bigint_are_refused(database_url: str, job_id: Any) -> None:
    app = make_app(database_url, q={})
    app.schedule("q")
    for action in (app.job, app.hold, app.release, app.cancel):
        with pytest.raises(kojo.InvalidArgument) as raised:
            action(job_id)
        assert str(raised.value) == (
            f"job id must be an integer from 1 to 9223372036854775807, not {job_id!r}"
        )
    with pytest.raises(kojo.InvalidArgument, match="job id"):
        app.mutex("m", 0, job_id=job_id)


def test_the_largest_job_id_is_asked_for(database_url: str) -> None:
    app = make_app(database_url, q={})
    for action in (app.job, app.hold, app.release, app.cancel):
        with pytest.raises(kojo.JobNotFound, match=str(INT8_MAX)):
            action(INT8_MAX)


def test_a_worker_gets_the_same_refusals(database_url: str) -> None:
    app = make_app(database_url, q={})
    job = Job(app, app.job(app.schedule("q", at=T0)), owner_id=None)
    with pytest.raises(kojo.InvalidArgument, match="importance"):
        job.schedule("q", importance=2**31)
    with pytest.raises(kojo.InvalidArgument, match=r"delay .*1e\+300"):
        job.schedule("q", delay=1e300)
    with pytest.raises(kojo.InvalidArgument, match=r"^retry: delay .*inf$"):
        job.retry(delay=math.inf)
    with pytest.raises(kojo.InvalidArgument, match=r"^retry: at must be .*-05:00$"):
        job.retry(at=datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=5))))
    assert job_count(app) == 1
    assert job.request is None  # nothing was applied


# -- crash recovery at the lowest priority ----------------------------------------------------


def _claim_and_die(url: str, job_id: int) -> int:
    """In a child process: register, claim the job, and exit without unregistering."""
    app = kojo.App(database=url)
    owner = app.backend.register_owner(process_info())
    assert claim(app.backend, owner, 1) == [job_id]
    return owner.id


def _crash_by_dying_owner(app: kojo.App, job_id: int) -> None:
    (owner_id,) = in_processes(1, _claim_and_die, app.database_url, job_id)
    assert app.job(job_id)["assigned_state"] == "working"
    deadline = time.monotonic() + 10
    while not app.backend.owner_is_dead(owner_id):
        assert time.monotonic() < deadline, f"owner {owner_id} still alive after its exit"
        time.sleep(0.01)
    # Reaped as a root reaps a job process that died: the crash counts against the job
    # (times_crashed + 1, priority - 1), which is the arithmetic that must not overflow.
    assert app.backend.reap_owner(owner_id)


def test_a_job_at_the_lowest_priority_is_crashed_and_rerun(database_url: str) -> None:
    app = make_app(database_url, q={})
    job_id = app.schedule("q", at=T0, importance=INT4_MIN)

    _crash_by_dying_owner(app, job_id)

    row = app.job(job_id)
    assert (row["assigned_state"], row["next_state_request"]) == ("crashed", "working")
    assert (row["priority"], row["times_crashed"]) == (INT4_MIN, 1)
    with owner_of(app.backend) as owner:  # and it is run again
        assert claim(app.backend, owner, 1) == [job_id]
    assert app.job(job_id)["priority"] == INT4_MIN


def test_a_job_at_the_lowest_priority_panics_at_max_crashes(database_url: str) -> None:
    app = make_app(database_url, q={"max_crashes": 1})
    job_id = app.schedule("q", at=T0, importance=INT4_MIN)

    _crash_by_dying_owner(app, job_id)

    row = app.job(job_id)
    assert (row["assigned_state"], row["priority"], row["times_crashed"]) == (
        "panicked",
        INT4_MIN,
        1,
    )


def test_other_jobs_of_the_dead_owner_are_crashed_too(database_url: str) -> None:
    app = make_app(database_url, q={})
    low = app.schedule("q", at=T0, importance=INT4_MIN)
    _crash_by_dying_owner(app, low)
    normal = app.schedule("q", at=T0, importance=5)
    _crash_by_dying_owner(app, normal)
    assert app.job(normal)["priority"] == 4
    assert app.job(low)["priority"] == INT4_MIN


def test_a_priority_stored_below_int4_is_kept_not_overflowed(sqlite_url: str) -> None:
    # SQLite could hold any int64 before importance was bounded: such a row still crashes.
    app = make_app(sqlite_url, q={})
    job_id = app.schedule("q", at=T0)
    update_job(app.backend, job_id, priority=-(2**63), importance=-(2**63))

    _crash_by_dying_owner(app, job_id)

    row = app.job(job_id)
    assert (row["assigned_state"], row["priority"]) == ("crashed", -(2**63))
