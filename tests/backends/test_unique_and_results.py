"""Unique jobs, results and progress (issue 14), on both backends, through the API.

The races of unique keys across processes are in tests/processes/test_unique_jobs.py."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import kojo
from foundation_helpers import make_app, noop, scalar, update_job
from kojo.inline import work_inline


def returns_a_dict(job: kojo.Job) -> dict[str, Any]:
    return {"doubled": job.payload["n"] * 2, "text": "ok"}


async def returns_after_awaiting(job: kojo.Job) -> list[int]:
    import asyncio

    await asyncio.sleep(0.01)
    return [job.payload["n"], job.payload["n"] + 1]


def returns_a_set(job: kojo.Job) -> object:
    return {1, 2}


def completes_with_a_result(job: kojo.Job) -> str:
    job.complete_success(result=[1, "two"])
    return "ignored: the request stands"


def fails(job: kojo.Job) -> None:
    raise ValueError("the upstream said no")


def reports_progress(job: kojo.Job) -> None:
    job.progress(0.25, note="a quarter")
    job.progress(0.5)


def bad_progress(job: kojo.Job) -> None:
    job.progress(job.payload)


TYPES: dict[str, dict[str, Any]] = {
    "doubler": {"worker": returns_a_dict},
    "setter": {"worker": returns_a_set},
    "async_doubler": {"worker": returns_after_awaiting},
    "explicit": {"worker": completes_with_a_result},
    "failer": {"worker": fails, "max_retries": 0},
    "progresser": {"worker": reports_progress},
    "bad_progresser": {"worker": bad_progress, "max_retries": 0},
    "quiet": {},
}


@pytest.fixture
def app(database_url: str) -> kojo.App:
    built = kojo.App(database=database_url)
    built.install()
    for code, spec in TYPES.items():
        fields = {k: v for k, v in spec.items() if k != "worker"}
        built.job_type(code, **fields)(spec.get("worker", noop))
    built.register_job_types()
    return built


# -- unique keys -----------------------------------------------------------------------------


def test_a_unique_key_returns_the_unfinished_job_instead_of_a_new_one(app: kojo.App) -> None:
    first, created = app.schedule_unique("quiet", "report:2026-11", payload={"v": 1})
    assert created
    again, created_again = app.schedule_unique("quiet", "report:2026-11", payload={"v": 2})
    assert (again, created_again) == (first, False)
    assert app.schedule("quiet", payload={"v": 3}, unique_key="report:2026-11") == first
    assert app.job(first)["payload"] == {"v": 1}  # nothing was changed either
    assert app.job(first)["unique_key"] == "report:2026-11"
    # Another key, or another type, is another job; no key at all is never unique.
    assert app.schedule("quiet", unique_key="report:2026-12") != first
    assert app.schedule("doubler", payload={"n": 1}, unique_key="report:2026-11") != first
    assert app.schedule("quiet") != app.schedule("quiet")


@pytest.mark.parametrize("state", ["working", "hold", "crashed", "panicked"])
def test_a_job_in_any_unfinished_state_keeps_its_key(app: kojo.App, state: str) -> None:
    job_id = app.schedule("quiet", unique_key="k")
    update_job(app.backend, job_id, assigned_state=state)
    assert app.schedule_unique("quiet", "k") == (job_id, False)


@pytest.mark.parametrize("state", ["complete_success", "complete_failed", "complete_terminated"])
def test_a_finished_job_frees_its_key(app: kojo.App, state: str) -> None:
    job_id = app.schedule("quiet", unique_key="k")
    update_job(app.backend, job_id, assigned_state=state, next_state_request="none")
    new_id, created = app.schedule_unique("quiet", "k")
    assert created and new_id != job_id


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", 7, None, b"bytes"])
def test_a_bad_unique_key_is_refused_naming_it(app: kojo.App, key: Any) -> None:
    with pytest.raises(kojo.InvalidArgument, match="unique key"):
        app.schedule_unique("quiet", key)
    assert app.jobs() == []


def test_a_unique_key_of_an_unknown_or_disabled_type_is_refused(database_url: str) -> None:
    app = make_app(database_url, off={"is_enabled": False})
    with pytest.raises(kojo.UnknownJobType):
        app.schedule("nope", unique_key="k")
    with pytest.raises(kojo.JobTypeDisabled):
        app.schedule("off", unique_key="k")


def test_threads_racing_on_one_key_create_one_job(app: kojo.App) -> None:
    ids: list[int] = []
    errors: list[BaseException] = []

    def schedule() -> None:
        try:
            for _ in range(20):
                ids.append(app.schedule("quiet", unique_key="only-one"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=schedule) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 1 and len(ids) == 80
    assert len(app.jobs()) == 1


# -- results -------------------------------------------------------------------------------


def test_a_returned_value_is_the_jobs_result(app: kojo.App) -> None:
    job_id = app.schedule("doubler", payload={"n": 21})
    assert work_inline(app, job_id, "h")["result"] == {"doubled": 42, "text": "ok"}
    assert app.result(job_id) == {"doubled": 42, "text": "ok"}
    assert app.result(job_id, timeout=0) == {"doubled": 42, "text": "ok"}


def test_an_async_workers_return_value_is_its_result(app: kojo.App) -> None:
    job_id = app.schedule("async_doubler", payload={"n": 4})
    work_inline(app, job_id, "h")
    assert app.result(job_id) == [4, 5]


def test_a_result_given_to_complete_success_is_stored(app: kojo.App) -> None:
    job_id = app.schedule("explicit")
    work_inline(app, job_id, "h")
    assert app.result(job_id) == [1, "two"]


def test_no_return_value_is_a_null_result(app: kojo.App) -> None:
    job_id = app.schedule("progresser")
    work_inline(app, job_id, "h")
    assert app.result(job_id) is None


def test_a_value_that_is_not_json_panics_the_job_saying_so(app: kojo.App) -> None:
    job_id = app.schedule("setter")
    row = work_inline(app, job_id, "h")
    assert row["assigned_state"] == "panicked"
    assert "cannot store" in row["last_error"] and "not JSON-serialisable" in row["last_error"]
    with pytest.raises(kojo.JobFailed, match="panicked"):
        app.result(job_id)


def test_result_of_a_failed_job_raises_job_failed_with_its_error(app: kojo.App) -> None:
    job_id = app.schedule("failer")
    work_inline(app, job_id, "h")
    with pytest.raises(kojo.JobFailed, match="the upstream said no") as caught:
        app.result(job_id)
    assert caught.value.job["assigned_state"] == "panicked"


def test_result_of_a_cancelled_job_raises_job_failed(app: kojo.App) -> None:
    job_id = app.schedule("quiet")
    app.cancel(job_id)
    with pytest.raises(kojo.JobFailed, match="complete_terminated"):
        app.result(job_id, timeout=5)


def test_result_waits_for_the_job_and_wakes_when_it_finishes(app: kojo.App) -> None:
    # Three rounds, each seen within 0.3 s: a waiter that only polled (SQLite's
    # subscribers look every second without a wake-up) would pass all three about one
    # time in forty.
    for n in range(3):
        job_id = app.schedule("doubler", payload={"n": n})
        got: list[Any] = []
        waiter = threading.Thread(
            target=lambda j=job_id, into=got: into.append(app.result(j, timeout=20))
        )
        waiter.start()
        time.sleep(0.4)  # the waiter is listening, and the job not yet worked
        assert waiter.is_alive() and app.job(job_id)["awaited"]
        work_inline(app, job_id, "h")
        finished = time.monotonic()
        waiter.join(20)
        woke_after = time.monotonic() - finished
        assert got == [{"doubled": n * 2, "text": "ok"}]
        assert woke_after < 0.3, f"the waiter took {woke_after:.2f} s to see the result"


def test_result_times_out_naming_the_state(app: kojo.App) -> None:
    job_id = app.schedule("quiet")
    started = time.monotonic()
    with pytest.raises(kojo.ResultTimeout, match="waiting"):
        app.result(job_id, timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 5
    assert isinstance(kojo.ResultTimeout("x"), TimeoutError)


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf"), "soon"])
def test_a_bad_result_timeout_is_refused(app: kojo.App, timeout: Any) -> None:
    job_id = app.schedule("quiet")
    with pytest.raises(kojo.InvalidArgument, match="timeout"):
        app.result(job_id, timeout=timeout)


def test_result_of_a_missing_job_is_job_not_found(app: kojo.App) -> None:
    with pytest.raises(kojo.JobNotFound):
        app.result(987654, timeout=1)


def test_jobs_nobody_awaits_publish_nothing(app: kojo.App) -> None:
    ids = [app.schedule("doubler", payload={"n": n}) for n in range(3)]
    for job_id in ids:
        work_inline(app, job_id, "h")
    assert scalar(app.backend, "SELECT count(*) FROM kojo_message") == 0


# -- progress ------------------------------------------------------------------------------


def test_progress_is_recorded_with_its_note(app: kojo.App) -> None:
    job_id = app.schedule("progresser")
    row = work_inline(app, job_id, "h")
    assert row["progress"] == 0.5
    assert row["progress_note"] is None  # the last call gave none
    assert row["assigned_state"] == "complete_success"


@pytest.mark.parametrize("value", [-0.1, 1.5, "half", None, True, float("nan")])
def test_bad_progress_is_refused_naming_it(app: kojo.App, value: Any) -> None:
    job_id = app.schedule("bad_progresser", payload=value if value == value else None)
    if value != value:  # NaN is no JSON payload: call the method directly
        job = kojo.Job(app, app.job(job_id), None)
        with pytest.raises(kojo.InvalidArgument, match="progress"):
            job.progress(value)
        return
    row = work_inline(app, job_id, "h")
    assert row["assigned_state"] == "panicked"
    assert "progress must be a number from 0 to 1" in row["last_error"]
