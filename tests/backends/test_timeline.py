"""A job's timeline (kojo_job_event and the steps read back from its row), on both
backends: what `kojo jobs show` and the dashboard's job page show."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

import kojo
from foundation_helpers import T0, claim, make_app, owner_of, process_info, scalar, update_job
from kojo.backends.base import Owner
from kojo.clock import utcnow
from kojo.maintenance import delete_completed
from kojo.testing import work_all


def steps(app: kojo.App, job_id: int) -> list[tuple[str, str | None, str, str]]:
    """(transition, from, to, actor) of each step."""
    return [
        (s["transition"], s["from_state"], s["to_state"], s["actor"])
        for s in app.job_timeline(job_id)
    ]


def events(app: kojo.App, job_id: int) -> int:
    """How many kojo_job_event rows the job has."""
    return int(
        scalar(app.backend, "SELECT count(*) FROM kojo_job_event WHERE kojo_job_id = :j", j=job_id)
    )


def ok(job: Any) -> int:
    return 1


def flaky(job: Any) -> None:
    raise ValueError(f"boom {job.times_worked}")


def fragile(job: Any) -> None:
    """Fails its first run only."""
    if job.times_worked == 1:
        raise RuntimeError("disk full")


def working_app(url: str, code: str, worker: Any, **fields: Any) -> kojo.App:
    """An installed App with type `code` whose `worker` work_all() runs here."""
    app = kojo.App(database=url)
    app.install()
    app.job_type(code, **fields)(worker)
    app.register_job_types()
    return app


def test_a_job_that_succeeds_has_three_steps_and_no_event_row(database_url: str) -> None:
    app = working_app(database_url, "ok", ok)
    job_id = app.schedule("ok")
    work_all(app)
    timeline = app.job_timeline(job_id)
    assert [(s["transition"], s["from_state"], s["to_state"]) for s in timeline] == [
        ("created", "new", "waiting"),
        ("work", "waiting", "working"),
        ("complete_success", "working", "complete_success"),
    ]
    row = app.job(job_id)
    assert [s["at"] for s in timeline] == [
        row["created_at_date_time"],
        row["started_at_date_time"],
        row["completed_at_date_time"],
    ]
    assert timeline[1]["note"] == "attempt 1" and timeline[1]["kojo_process_id"] is not None
    assert not any(s["recorded"] for s in timeline)
    assert events(app, job_id) == 0  # the plain path writes no event


def test_a_job_retried_then_failed_has_each_attempt_and_its_error(database_url: str) -> None:
    app = working_app(database_url, "flaky", flaky, max_retries=1)
    job_id = app.schedule("flaky")
    work_all(app)
    # The retry waits for its backoff: make it due now, then run it.
    update_job(app.backend, job_id, work_at_date_time=utcnow() - timedelta(seconds=1))
    work_all(app)
    assert app.job(job_id)["assigned_state"] == "panicked"  # its retries used up
    timeline = app.job_timeline(job_id)
    assert [(s["transition"], s["from_state"], s["to_state"]) for s in timeline] == [
        ("created", "new", "waiting"),
        ("work", "waiting", "working"),
        ("retry", "working", "waiting"),
        ("work", "waiting", "working"),
        ("panic", "working", "panicked"),
    ]
    assert timeline[2]["note"] == "retry 1 of 1: ValueError: boom 1"
    assert timeline[3]["note"] == "attempt 2"
    assert timeline[4]["note"] == "ValueError: boom 2"
    assert all(s["recorded"] for s in timeline[1:])
    assert [s["at"] for s in timeline] == sorted(s["at"] for s in timeline)


def test_held_and_released_by_an_operator(database_url: str) -> None:
    app = make_app(database_url, q={})
    job_id = app.schedule("q")
    app.hold(job_id)
    app.release(job_id)
    assert steps(app, job_id) == [
        ("created", "new", "waiting", "kojo"),
        ("hold", "waiting", "hold", "operator"),
        ("wait_for_work", "hold", "waiting", "operator"),
    ]
    assert events(app, job_id) == 2


def test_a_held_working_job_shows_the_claim_it_interrupted(database_url: str) -> None:
    app = make_app(database_url, q={})
    job_id = app.schedule("q", at=T0)
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner) == [job_id]
        app.hold(job_id)
        timeline = app.job_timeline(job_id)
        assert [(s["transition"], s["to_state"], s["actor"]) for s in timeline] == [
            ("created", "waiting", "kojo"),
            ("work", "working", "process"),
            ("hold", "hold", "operator"),
        ]
        assert timeline[1]["kojo_process_id"] == owner.id
        assert timeline[1]["path"] == process_info().path  # while the process is registered
        assert timeline[2]["kojo_process_id"] is None  # an operator's, not the process's


def _die(owner: Owner) -> None:
    owner.abandon()
    deadline = time.monotonic() + 10
    while not owner.backend.owner_is_dead(owner.id):
        assert time.monotonic() < deadline, "the abandoned owner stayed alive"
        time.sleep(0.01)


def test_crashed_then_panicked_by_the_death_of_its_processes(database_url: str) -> None:
    app = make_app(database_url, q={"max_crashes": 2})
    backend = app.backend
    job_id = app.schedule("q", at=T0)
    first = backend.register_owner(process_info())
    assert claim(backend, first) == [job_id]
    _die(first)
    assert backend.reap_owner(first.id, blame=True)
    second = backend.register_owner(process_info())
    assert claim(backend, second) == [job_id]
    _die(second)
    assert backend.reap_owner(second.id, blame=True)
    assert app.job(job_id)["assigned_state"] == "panicked"
    timeline = app.job_timeline(job_id)
    assert [(s["transition"], s["from_state"], s["to_state"], s["actor"]) for s in timeline] == [
        ("created", "new", "waiting", "kojo"),
        ("work", "waiting", "working", "process"),
        ("crash", "working", "crashed", "crash"),
        ("work", "crashed", "working", "process"),
        ("panic", "working", "panicked", "crash"),
    ]
    assert [s["kojo_process_id"] for s in timeline[1:]] == [first.id] * 2 + [second.id] * 2
    assert timeline[4]["note"] == "crashed 2 times (max_crashes=2)"


def test_panicked_by_its_worker_then_retried_by_an_operator(database_url: str) -> None:
    app = working_app(database_url, "fragile", fragile, max_retries=0)
    job_id = app.schedule("fragile")
    work_all(app)
    assert app.job(job_id)["assigned_state"] == "panicked"  # no retries allowed
    app.retry(job_id)
    work_all(app)
    assert app.job(job_id)["assigned_state"] == "complete_success"
    timeline = app.job_timeline(job_id)
    assert [(s["transition"], s["to_state"], s["actor"]) for s in timeline] == [
        ("created", "waiting", "kojo"),
        ("work", "working", "process"),
        ("panic", "panicked", "process"),
        ("rerun", "waiting", "operator"),
        ("work", "working", "process"),
        ("complete_success", "complete_success", "process"),
    ]
    assert timeline[2]["note"] == "RuntimeError: disk full"


def test_a_child_terminated_by_its_parents_failure(database_url: str) -> None:
    app = make_app(database_url, q={})
    parent = app.schedule("q")
    child = app.schedule("q", after=[parent])
    app.cancel(parent)
    assert steps(app, child)[-1] == (
        "complete_terminated",
        "waiting",
        "complete_terminated",
        "dependency",
    )
    note = app.job_timeline(child)[-1]["note"]
    assert note == f"terminated: the job it waited for, ID[{parent}], ended complete_terminated"


def test_events_are_deleted_with_their_job_by_purge_and_by_the_maintainer(
    database_url: str,
) -> None:
    app = make_app(database_url, q={"auto_delete_interval_duration": "PT0S"}, p={})
    auto = app.schedule("q")
    purged = app.schedule("p")
    kept = app.schedule("p")
    for job_id in (auto, purged, kept):
        app.hold(job_id)
    app.cancel(auto)
    app.cancel(purged)
    assert events(app, auto) == events(app, purged) == 2
    assert app.purge("complete_terminated", "p") == 1
    assert events(app, purged) == 0
    assert delete_completed(app, utcnow() + timedelta(seconds=1)) == 1
    assert events(app, auto) == 0
    assert events(app, kept) == 1  # the unfinished job keeps its history
    total = scalar(app.backend, "SELECT count(*) FROM kojo_job_event")
    assert int(total) == 1


def test_a_missing_job_has_no_timeline(database_url: str) -> None:
    app = make_app(database_url)
    with pytest.raises(kojo.JobNotFound, match="no job with id 99"):
        app.job_timeline(99)
