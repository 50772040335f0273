"""Async workers: the coroutine is awaited on the process's loop and settled like a sync
worker (kojo.runner, kojo.async_runner). Jobs are run through `kojo work --inline`'s path
(inline.work_inline -> runner.run), on both backends."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Generator
from typing import Any

import kojo
from foundation_helpers import make_app, owner_of
from kojo import async_runner, runner
from kojo.clock import utcnow
from kojo.inline import work_inline
from kojo.outcomes import Outcome

seen: dict[str, Any] = {}


async def completes(job: kojo.Job) -> None:
    await asyncio.sleep(0.01)
    seen["loop"] = asyncio.get_running_loop()
    seen["stop_requested"] = job.stop_requested
    job.logger.info("async worker ran")
    job.complete_success()


async def raises_at_once(job: kojo.Job) -> None:
    raise ValueError("boom from an async worker")


async def fails(job: kojo.Job) -> None:
    await asyncio.sleep(0)
    job.complete_failed()


async def holds(job: kojo.Job) -> None:
    await asyncio.sleep(0)
    job.hold()


async def requests_then_raises(job: kojo.Job) -> None:
    job.complete_failed()
    await asyncio.sleep(0)
    raise RuntimeError("after the request")


async def auto_completes(job: kojo.Job) -> str:
    await asyncio.sleep(0.01)
    seen["auto_ran"] = job.id
    return "done"


async def in_a_transaction(job: kojo.Job) -> None:
    with job.transaction():
        job.schedule("auto", payload={"from": job.id})
        job.complete_success()
        await asyncio.sleep(0)


async def rolls_back(job: kojo.Job) -> None:
    try:
        with job.transaction():
            job.schedule("auto")
            job.complete_success()
            raise KeyError("roll back")
    except KeyError:
        pass
    job.hold()


async def _succeed(job: kojo.Job) -> None:
    await asyncio.sleep(0)
    job.complete_success()


def returns_a_coroutine(job: kojo.Job) -> Coroutine[Any, Any, None]:
    return _succeed(job)


class Later:
    """An awaitable that is not a coroutine: completes the job when awaited."""

    def __init__(self, job: kojo.Job) -> None:
        self.job = job

    def __await__(self) -> Generator[Any, None, None]:
        yield from asyncio.sleep(0).__await__()
        self.job.complete_success()


def returns_an_awaitable(job: kojo.Job) -> Later:
    return Later(job)


async def leaves_a_task(job: kojo.Job) -> None:
    seen["task"] = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
    job.complete_success()


TYPES: dict[str, Any] = {
    "completes": completes,
    "raises": raises_at_once,
    "fails": fails,
    "holds": holds,
    "requests-then-raises": requests_then_raises,
    "auto": auto_completes,
    "tx": in_a_transaction,
    "rollback": rolls_back,
    "sync-coroutine": returns_a_coroutine,
    "sync-awaitable": returns_an_awaitable,
    "leaves-task": leaves_a_task,
}


def async_app(url: str) -> kojo.App:
    app = make_app(url)
    for code, worker in TYPES.items():
        options = {"max_retries": 1} if code == "raises" else {}
        app.job_type(code, auto_complete_success=code == "auto", **options)(worker)
    app.register_job_types()
    return app


def work(app: kojo.App, type_code: str) -> dict[str, Any]:
    return work_inline(app, app.schedule(type_code), "test-host")


def test_an_async_worker_runs_to_its_request(database_url: str) -> None:
    app = async_app(database_url)
    seen.clear()
    row = work(app, "completes")
    assert (row["assigned_state"], row["last_error"]) == ("complete_success", None)
    assert seen["stop_requested"] is False


def test_an_async_worker_that_raises_at_once_is_retried_then_panicked(
    database_url: str,
) -> None:
    app = async_app(database_url)
    job_id = app.schedule("raises")
    first = work_inline(app, job_id, "test-host")
    assert (first["assigned_state"], first["times_retried"]) == ("waiting", 1)
    second = work_inline(app, job_id, "test-host")
    assert second["assigned_state"] == "panicked"
    error = second["last_error"]
    assert "Traceback" in error
    assert "in raises_at_once" in error
    assert "ValueError: boom from an async worker" in error


def test_an_async_worker_may_fail_or_hold(database_url: str) -> None:
    app = async_app(database_url)
    assert work(app, "fails")["assigned_state"] == "complete_failed"
    assert work(app, "holds")["assigned_state"] == "hold"


def test_a_request_made_before_raising_stands(database_url: str) -> None:
    app = async_app(database_url)
    row = work(app, "requests-then-raises")
    assert row["assigned_state"] == "complete_failed"


def test_an_async_worker_without_a_request_auto_completes(database_url: str) -> None:
    app = async_app(database_url)
    seen.clear()
    row = work(app, "auto")
    assert row["assigned_state"] == "complete_success"
    assert seen["auto_ran"] == row["kojo_job_id"]  # after its await, before completing


def test_an_async_worker_commits_its_transaction(database_url: str) -> None:
    app = async_app(database_url)
    row = work(app, "tx")
    assert row["assigned_state"] == "complete_success"
    scheduled = [job for job in app.jobs() if job["type_code"] == "auto"]
    assert [job["payload"] for job in scheduled] == [{"from": row["kojo_job_id"]}]


def test_an_async_workers_rolled_back_transaction_takes_its_request_along(
    database_url: str,
) -> None:
    app = async_app(database_url)
    assert work(app, "rollback")["assigned_state"] == "hold"
    assert [job for job in app.jobs() if job["type_code"] == "auto"] == []


def test_a_sync_worker_returning_a_coroutine_or_awaitable_is_awaited(database_url: str) -> None:
    app = async_app(database_url)
    assert work(app, "sync-coroutine")["assigned_state"] == "complete_success"
    assert work(app, "sync-awaitable")["assigned_state"] == "complete_success"


def test_the_runner_gives_stop_requested_to_an_async_worker(sqlite_url: str) -> None:
    app = async_app(sqlite_url)
    job_id = app.schedule("completes")
    seen.clear()
    with owner_of(app.backend) as owner:
        with app.backend.write():
            row = app.backend.job_claim_by_id(job_id, owner.id, utcnow())
        assert row is not None
        outcome = runner.run(app, runner.with_type(app, row), owner.id, lambda: True)
    assert outcome == Outcome.COMPLETE_SUCCESS
    assert seen["stop_requested"] is True


def test_tasks_a_job_leaves_behind_are_cancelled_when_it_ends(sqlite_url: str) -> None:
    app = async_app(sqlite_url)
    assert work(app, "leaves-task")["assigned_state"] == "complete_success"
    assert seen["task"].cancelled()


def test_one_loop_serves_every_job_of_a_process_and_a_fork_makes_its_own(
    sqlite_url: str,
) -> None:
    app = async_app(sqlite_url)
    seen.clear()
    work(app, "completes")
    first = seen.pop("loop")
    work(app, "completes")
    assert seen["loop"] is first
    assert async_runner.loop() is first
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one answer byte, then out without pytest's teardown
        try:
            app.after_fork()
            work(app, "completes")
            fresh = seen["loop"] is not first and not seen["loop"].is_closed()
            again = async_runner.loop() is seen["loop"]
            os.write(write, b"1" if fresh and again else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"1"
    assert async_runner.loop() is first and not first.is_closed()
