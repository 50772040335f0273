"""A job crashed by the death of its process says how it died (last_error), and the
reaping root learns which jobs it crashed, to name them in its log line."""

from __future__ import annotations

import time

from foundation_helpers import T0, claim, make_app, process_info
from kojo.backends.base import Backend, Owner
from kojo.backends.job_store import CrashedJob, Death


def _dead_owner_of(backend: Backend, job_id: int) -> Owner:
    """A process that claimed `job_id` and then died (its registration gone)."""
    owner = backend.register_owner(process_info("job"))
    assert claim(backend, owner, 1) == [job_id]
    owner.abandon()
    deadline = time.monotonic() + 10
    while not backend.owner_is_dead(owner.id):
        assert time.monotonic() < deadline, "the abandoned owner stayed alive"
        time.sleep(0.01)
    return owner


def test_a_death_is_written_to_the_crashed_jobs_last_error(database_url: str) -> None:
    app = make_app(database_url, q={"max_crashes": 3})
    backend = app.backend
    job_id = app.schedule("q", at=T0)
    owner = _dead_owner_of(backend, job_id)
    death = Death("/server[8]/root[22]/job[30]", "signal 9 (SIGKILL)")
    assert backend.reap_dead_owner(owner.id, death=death) == [
        CrashedJob(job_id, "q", "crashed", 1, 3)
    ]
    assert app.job(job_id)["last_error"] == (
        "its process /server[8]/root[22]/job[30] died (signal 9 (SIGKILL)) "
        "(crash 1 of max_crashes=3); it will be re-run"
    )
    assert backend.reap_dead_owner(owner.id, death=death) == []  # nothing left to crash


def test_a_job_killed_by_its_timeout_says_so_when_it_panics(database_url: str) -> None:
    app = make_app(database_url, slow={"timeout": 1.5, "max_crashes": 1})
    backend = app.backend
    job_id = app.schedule("slow", at=T0)
    owner = _dead_owner_of(backend, job_id)
    death = Death("/server[8]/root[22]/job[31]", "signal 14 (SIGALRM)", timed_out=True)
    (crashed,) = backend.reap_dead_owner(owner.id, death=death) or []
    assert crashed == CrashedJob(job_id, "slow", "panicked", 1, 1)
    assert app.job(job_id)["last_error"] == (
        "crashed 1 time (max_crashes=1); the last time, it ran past its job type's timeout "
        "(1.5 s); its process /server[8]/root[22]/job[31] was killed"
    )


def test_without_a_death_the_reaping_says_what_it_always_said(database_url: str) -> None:
    app = make_app(database_url, q={"max_crashes": 1})
    backend = app.backend
    job_id = app.schedule("q", at=T0)
    owner = _dead_owner_of(backend, job_id)
    assert backend.reap_owner(owner.id)
    assert app.job(job_id)["last_error"] == "crashed 1 time (max_crashes=1)"
