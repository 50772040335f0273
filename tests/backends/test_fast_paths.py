"""The state machine's fast paths write what states.plan says.

Inserting, claiming and auto-completing jobs are single SQL statements (for speed) that
write the state machine's columns themselves, and reaping writes them for the crash of a
dead owner's jobs. Each test here reads the job before, takes the columns that
`states.plan` would write for the same transition at the same `now`, runs the fast path,
and compares them with the job after. The last tests break a statement on purpose and
check that the comparison fails: a wrong times_worked or delete_after_date_time is seen.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest

import kojo
from foundation_helpers import T0, make_app, process_info
from kojo import runner, states
from kojo.backends import Backend, Owner
from kojo.durations import parse_duration

INTERVAL = "P400DT3H"  # not the default, so a completion that ignores it is seen
TYPES: dict[str, dict[str, Any]] = {
    "plain": {"auto_delete_interval_duration": INTERVAL, "default_importance": 3},
    "limited": {"schedule_limit": 1, "default_importance": -2},
    "serial": {"can_work_in_parallel": False, "auto_delete_interval_duration": INTERVAL},
    "fragile": {"max_crashes": 2},
}
CLAIM_AT = T0 + timedelta(minutes=5)
# A job that was never inserted: how `new` looks to plan().
UNBORN = {"assigned_state": states.State.NEW.value, "next_state_request": states.Request.NONE.value}


def planned(
    app: kojo.App,
    transition: states.Transition,
    before: Mapping[str, Any],
    now: datetime,
    type_code: str | None = None,
) -> dict[str, Any]:
    """The columns plan() writes for `transition` from `before` at `now`."""
    code = type_code or str(before["type_code"])
    interval = app.type_row(code, max_age=0)["auto_delete_interval_duration"]
    return states.plan(transition, before, now=now, auto_delete_interval=parse_duration(interval))


def assert_as_planned(after: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    wrong = {
        column: {"planned": value, "written": after[column]}
        for column, value in expected.items()
        if after[column] != value
    }
    assert not wrong, f"job {after['kojo_job_id']}: the fast path differs from plan(): {wrong}"


def insert(
    backend: Backend,
    type_code: str,
    now: datetime,
    *,
    work_at: datetime | None = None,
    importance: int | None = None,
    count: int = 2,
) -> list[int]:
    """Insert `count` jobs of `type_code` (one with a payload, the others without)."""
    with backend.write():
        return backend.job_insert_batch(
            type_code,
            ['{"n":1}'] + [None] * (count - 1),
            work_at=work_at or now,
            importance=importance,
            now=now,
        )


def claim_rows(backend: Backend, owner: Owner, now: datetime, **more: Any) -> list[dict[str, Any]]:
    with backend.write():
        return backend.job_claim(owner.id, 100, now, **more)


@contextmanager
def registered(backend: Backend) -> Iterator[Owner]:
    owner = backend.register_owner(process_info())
    try:
        yield owner
    finally:
        owner.close()


def die(owner: Owner) -> None:
    """The owner's process "died": its registration is gone, its rows remain."""
    owner.abandon()
    deadline = time.monotonic() + 10
    while not owner.backend.owner_is_dead(owner.id):
        assert time.monotonic() < deadline, "the abandoned owner stayed alive"
        time.sleep(0.01)


# -- insert: job_insert_batch ------------------------------------------------------------


@pytest.mark.parametrize("type_code", ["plain", "limited"])
@pytest.mark.parametrize("at", [None, T0 + timedelta(hours=2)])
@pytest.mark.parametrize("importance", [None, 7])
def test_insert_leaves_new_as_planned(
    database_url: str, type_code: str, at: datetime | None, importance: int | None
) -> None:
    app = make_app(database_url, **TYPES)
    type_row = app.type_row(type_code)
    transition = states.initial_transition(int(type_row["schedule_limit"]))
    expected = states.plan(
        transition, UNBORN, now=T0, auto_delete_interval=parse_duration(INTERVAL)
    )
    for job_id in insert(app.backend, type_code, T0, work_at=at, importance=importance):
        after = app.job(job_id)
        assert_as_planned(after, expected)
        # What an insert writes beside the transition: a fresh job, due at `at` or now.
        priority = type_row["default_importance"] if importance is None else importance
        assert (after["priority"], after["importance"]) == (priority, priority)
        assert after["work_at_date_time"] == (at or T0)
        assert after["created_at_date_time"] == T0
        assert [after[f"times_{c}"] for c in ("worked", "retried", "held", "crashed")] == [0] * 4
        assert after["completed_at_date_time"] is None
        assert after["delete_after_date_time"] is None


def test_schedule_goes_through_the_same_insert(database_url: str) -> None:
    app = make_app(database_url, **TYPES)
    job_id = app.schedule("limited", at=T0, importance=1)
    after = app.job(job_id)
    now = after["created_at_date_time"]  # schedule() takes its own now
    assert_as_planned(after, planned(app, states.SCHEDULE_LIMIT_CHECK, UNBORN, now, "limited"))


# -- claim: job_claim and job_claim_by_id --------------------------------------------------


def test_claim_from_waiting_and_from_crashed_is_work_as_planned(database_url: str) -> None:
    app = make_app(database_url, **TYPES)
    backend = app.backend
    ids = insert(backend, "plain", T0) + insert(backend, "serial", T0, count=1)
    with registered(backend) as owner:
        before = {job_id: app.job(job_id) for job_id in ids}
        claimed = claim_rows(backend, owner, CLAIM_AT)
        assert sorted(int(r["kojo_job_id"]) for r in claimed) == sorted(ids)
        for row in claimed:
            after = app.job(int(row["kojo_job_id"]))
            assert dict(row) == after  # the claim returns the row as written
            assert_as_planned(
                after, planned(app, states.WORK, before[after["kojo_job_id"]], CLAIM_AT)
            )
            assert after["kojo_process_id"] == owner.id

        # Crashed (the slow path, itself plan()'s), then claimed again from crashed.
        for job_id in ids:
            backend.job_transition(job_id, states.CRASH, now=CLAIM_AT, owner=owner.id)
        before = {job_id: app.job(job_id) for job_id in ids}
        later = CLAIM_AT + timedelta(seconds=1)
        claimed = claim_rows(backend, owner, later)
        assert sorted(int(r["kojo_job_id"]) for r in claimed) == sorted(ids)
        for job_id in ids:
            after = app.job(job_id)
            assert before[job_id]["assigned_state"] == "crashed"
            assert_as_planned(after, planned(app, states.WORK, before[job_id], later))
            assert after["times_worked"] == 2


def test_claim_by_id_is_work_as_planned(database_url: str) -> None:
    app = make_app(database_url, **TYPES)
    backend = app.backend
    (job_id, _) = insert(backend, "plain", T0)
    before = app.job(job_id)
    with registered(backend) as owner, backend.write():
        row = backend.job_claim_by_id(job_id, owner.id, CLAIM_AT)
        assert row is not None
        after = app.job(job_id)
    assert_as_planned(after, planned(app, states.WORK, before, CLAIM_AT))


# -- auto-complete: job_complete_many, and job_claim(completed=) ------------------------


def test_auto_completion_is_complete_success_as_planned(database_url: str) -> None:
    app = make_app(database_url, **TYPES)
    backend = app.backend
    ids = insert(backend, "plain", T0) + insert(backend, "serial", T0, count=1)
    done = CLAIM_AT + timedelta(seconds=30)
    with registered(backend) as owner:
        claimed = [runner.with_type(app, row) for row in claim_rows(backend, owner, CLAIM_AT)]
        before = {row["kojo_job_id"]: app.job(row["kojo_job_id"]) for row in claimed}
        with backend.write():
            assert backend.job_complete_many(claimed, owner.id, done) == len(ids)
        for job_id in ids:
            after = app.job(job_id)
            assert_as_planned(after, planned(app, states.COMPLETE_SUCCESS, before[job_id], done))


def test_completions_handed_to_a_claim_are_complete_success_as_planned(
    database_url: str,
) -> None:
    app = make_app(database_url, **TYPES)
    backend = app.backend
    first = insert(backend, "plain", T0)
    with registered(backend) as owner:
        claimed = [runner.with_type(app, row) for row in claim_rows(backend, owner, CLAIM_AT)]
        before = {job_id: app.job(job_id) for job_id in first}
        second = insert(backend, "plain", T0)
        done = CLAIM_AT + timedelta(minutes=1)
        next_batch = claim_rows(backend, owner, done, completed=claimed)
        assert sorted(int(r["kojo_job_id"]) for r in next_batch) == sorted(second)
        for job_id in first:
            after = app.job(job_id)
            assert_as_planned(after, planned(app, states.COMPLETE_SUCCESS, before[job_id], done))


# -- the reap's crash: reap_owner(blame=True/False) ---------------------------------------


def test_a_blamed_reaping_crashes_as_planned_then_panics_at_max_crashes(
    database_url: str,
) -> None:
    app = make_app(database_url, **TYPES)
    backend = app.backend
    (job_id, _) = insert(backend, "fragile", T0)  # max_crashes 2
    now = CLAIM_AT
    for transition in (states.CRASH, states.PANIC):
        owner = backend.register_owner(process_info())
        assert job_id in [r["kojo_job_id"] for r in claim_rows(backend, owner, now)]
        before = app.job(job_id)
        die(owner)
        now += timedelta(minutes=1)
        assert backend.reap_owner(owner.id, now, blame=True)
        expected = planned(app, transition, before, now)
        if transition is states.PANIC:
            # The process died: a crash too, even when it ends the job (reap_owner's rule).
            expected["times_crashed"] = before["times_crashed"] + 1
        after = app.job(job_id)
        assert_as_planned(after, expected)
        now += timedelta(minutes=1)
    assert (after["assigned_state"], after["times_crashed"]) == ("panicked", 2)


def test_an_unblamed_reaping_crashes_as_planned_without_counting(database_url: str) -> None:
    app = make_app(database_url, **TYPES)
    backend = app.backend
    (job_id, _) = insert(backend, "fragile", T0)
    now = CLAIM_AT
    for _ in range(3):  # past max_crashes: never panicked, since nothing is counted
        owner = backend.register_owner(process_info())
        assert job_id in [r["kojo_job_id"] for r in claim_rows(backend, owner, now)]
        before = app.job(job_id)
        die(owner)
        now += timedelta(minutes=1)
        assert backend.reap_owner(owner.id, now, blame=False)
        expected = planned(app, states.CRASH, before, now)
        # Not the job's doing: the crash is not counted against it (reap_owner's rule).
        expected["times_crashed"] = before["times_crashed"]
        expected["priority"] = before["priority"]
        assert_as_planned(app.job(job_id), expected)
        now += timedelta(minutes=1)


# -- the comparison can fail ---------------------------------------------------------------


def _break_query(backend: Backend, name: str, good: str, bad: str) -> None:
    text = backend.query(name)
    assert good in text, f"{name} no longer contains {good!r}: update this test"
    backend._queries[name] = text.replace(good, bad)


def test_a_claim_that_counts_wrong_is_caught(database_url: str) -> None:
    app = make_app(database_url, **TYPES)
    backend = app.backend
    (job_id, _) = insert(backend, "plain", T0)
    before = app.job(job_id)
    _break_query(backend, "job_claim", "times_worked + 1", "times_worked + 2")
    with registered(backend) as owner:
        claim_rows(backend, owner, CLAIM_AT)
    with pytest.raises(AssertionError, match="times_worked"):
        assert_as_planned(app.job(job_id), planned(app, states.WORK, before, CLAIM_AT))


def test_a_completion_that_keeps_rows_too_long_is_caught(database_url: str) -> None:
    app = make_app(database_url, **TYPES)
    backend = app.backend
    (job_id, _) = insert(backend, "plain", T0)
    _break_query(
        backend,
        "job_complete_success",
        "delete_after_date_time = ",
        "delete_after_date_time = last_transition_date_time, work_at_date_time = ",
    )
    with registered(backend) as owner:
        claimed = [runner.with_type(app, row) for row in claim_rows(backend, owner, CLAIM_AT)]
        before = app.job(job_id)
        with backend.write():
            backend.job_complete_many(claimed, owner.id, CLAIM_AT)
    with pytest.raises(AssertionError, match="delete_after_date_time"):
        assert_as_planned(app.job(job_id), planned(app, states.COMPLETE_SUCCESS, before, CLAIM_AT))
