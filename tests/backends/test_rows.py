"""Typed rows (kojo.rows) from both stores, and the typed Job a worker reads."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

import kojo
from foundation_helpers import T0, make_app, owner_of
from kojo import runner, states
from kojo.jobs import Job
from kojo.rows import JobRow, ProcessRow, TypeRow


def test_rows_from_either_store_give_the_same_dicts_back(database_url: str) -> None:
    app = make_app(database_url, q={"timeout": 5, "cron_expression": "*/5 * * * *"})
    backend = app.backend
    waiting = app.schedule("q", payload={"x": [1, None]}, at=T0)
    working = app.schedule("q", at=T0)
    with owner_of(backend) as owner:
        backend.job_claim(owner.id, 1, T0 + timedelta(minutes=1))  # claims `waiting`
        backend.job_transition(waiting, states.COMPLETE_FAILED, now=T0, owner=owner.id)
        for job_id in (waiting, working):
            row = app.job(job_id)
            assert JobRow.from_mapping(row).as_dict() == row
        (stored,) = app.process_table()
        (process,) = backend.processes()  # built by the store
        assert {**process.as_dict(), "jobs": stored["jobs"]} == stored
        assert ProcessRow.from_mapping(stored) == process
    type_row = app.type_row("q", max_age=0)
    assert TypeRow.from_mapping(type_row).as_dict() == type_row
    listed = app.jobs()
    assert [JobRow.from_mapping(row).as_dict() for row in listed] == listed


def _claimed_job(app: kojo.App, owner_id: int) -> Job:
    (row,) = app.backend.job_claim(owner_id, 1, T0 + timedelta(minutes=1))
    return Job(app, runner.with_type(app, row), owner_id)


def test_every_column_a_worker_could_read_is_still_an_attribute(database_url: str) -> None:
    app = make_app(database_url, q={"max_retries": 2, "timeout": 9})
    app.schedule("q", payload=[1], at=T0, importance=4)
    with owner_of(app.backend) as owner:
        job = _claimed_job(app, owner.id)
        # `job.progress(...)` records progress (SPEC); the column reads as progress_fraction.
        renamed = {"progress": "progress_fraction"}
        for column, value in job.row.items():
            assert getattr(job, renamed.get(column, column)) == value, column
        assert (job.id, job.type_code, job.payload, job.times_worked) == (1, "q", [1], 1)
        assert (job.max_retries, job.timeout, job.priority) == (2, 9.0, 4)
        job.complete_success()
        assert job.assigned_state == "complete_success" and job.previous_state == "working"
        assert job.completed_at_date_time is not None and job.request == "complete_success"


def test_a_job_read_without_its_type_has_no_type_settings(database_url: str) -> None:
    app = make_app(database_url, q={})
    job = Job(app, app.job(app.schedule("q", at=T0)), owner_id=None)
    assert job.times_retried == 0
    with pytest.raises(AttributeError):
        job.max_retries  # noqa: B018
    assert not hasattr(job, "not_a_column")


@pytest.mark.parametrize(
    ("delay", "message"),
    [
        (math.nan, r"^retry: delay must be a number of seconds from 0 to \d+ .*, not nan$"),
        (-1, r"^retry: delay must be a number of seconds from 0 to \d+ .*, not -1$"),
        ("5", r"^retry: delay must be a number of seconds, got '5'$"),
        (True, r"^retry: delay must be a number of seconds, got True$"),
    ],
)
def test_retry_and_schedule_refuse_bad_seconds_as_invalid_argument(
    database_url: str, delay: Any, message: str
) -> None:
    app = make_app(database_url, q={})
    app.schedule("q", at=T0)
    with owner_of(app.backend) as owner:
        job = _claimed_job(app, owner.id)
        with pytest.raises(kojo.InvalidArgument, match=message):
            job.retry(delay=delay)
        with pytest.raises(kojo.InvalidArgument, match=message.replace("^retry: ", "^")):
            job.schedule("q", delay=delay)
        assert job.request is None
        job.retry(delay=timedelta(seconds=5))
        assert job.work_at_date_time > job.last_transition_date_time
