"""kojo.testing: jobs run in the calling process through kojo's real claim, runner and
state machine, on a throwaway SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest

import kojo
import kojo.testing

app = kojo.App(database="sqlite:///unused-by-these-tests.db")
ran: list[str] = []


@app.job_type("t.add")
def add(job: kojo.Job) -> int:
    ran.append(job.type_code)
    return int(job.payload["a"]) + int(job.payload["b"])


@app.job_type("t.fan")
def fan(job: kojo.Job) -> None:
    for i in range(3):
        job.schedule("t.add", payload={"a": i, "b": 10})
    job.schedule("t.add", payload={"a": 0, "b": 0}, delay=3600)  # not due: left waiting


@app.job_type("t.boom", max_retries=2)
def boom(job: kojo.Job) -> None:
    raise ValueError("boom")


@app.job_type("t.hold")
def hold(job: kojo.Job) -> None:
    job.hold()


@app.job_type("t.forever")
def forever(job: kojo.Job) -> None:
    job.schedule("t.forever")


@app.job_type("t.manual", auto_complete_success=False)
def manual(job: kojo.Job) -> None:
    pass


@app.job_type("t.limited", schedule_limit=1)
def limited(job: kojo.Job) -> str:
    return "ok"


def test_temporary_app_is_a_fresh_installed_database() -> None:
    with kojo.testing.temporary_app(app) as test_app:
        assert test_app.database_url != app.database_url
        assert Path(test_app.database_url.removeprefix("sqlite:///")).exists()
        assert set(test_app.job_types) == set(app.job_types)
        assert test_app.jobs() == []
        folder = Path(test_app.database_url.removeprefix("sqlite:///")).parent
    assert not folder.exists()


def test_run_job_returns_the_final_row_with_its_result() -> None:
    with kojo.testing.temporary_app(app) as test_app:
        row = kojo.testing.run_job(test_app, "t.add", {"a": 2, "b": 3})
        assert row["assigned_state"] == "complete_success"
        assert row["result"] == 5
        assert row["times_worked"] == 1
        assert test_app.result(row["kojo_job_id"], timeout=0) == 5


def test_work_all_runs_follow_ups_that_are_due_and_leaves_the_rest() -> None:
    with kojo.testing.temporary_app(app) as test_app:
        parent = test_app.schedule("t.fan")
        done = kojo.testing.work_all(test_app)
        assert [r["type_code"] for r in done] == ["t.fan", "t.add", "t.add", "t.add"]
        assert [r["result"] for r in done[1:]] == [10, 11, 12]
        assert test_app.job(parent)["assigned_state"] == "complete_success"
        waiting = test_app.jobs(state="waiting")
        assert [r["type_code"] for r in waiting] == ["t.add"]  # delay=3600: not due
        assert kojo.testing.work_all(test_app) == []


def test_an_exception_is_retried_later_then_panics_through_the_state_machine() -> None:
    with kojo.testing.temporary_app(app) as test_app:
        row = kojo.testing.run_job(test_app, "t.boom")
        # The retry is scheduled with backoff (not due now): work_all stops there.
        assert row["assigned_state"] == "waiting"
        assert row["times_retried"] == 1
        assert "ValueError: boom" in row["last_error"]


def test_requests_and_missing_requests_are_settled_as_on_a_server() -> None:
    with kojo.testing.temporary_app(app) as test_app:
        assert kojo.testing.run_job(test_app, "t.hold")["assigned_state"] == "hold"
        manual_row = kojo.testing.run_job(test_app, "t.manual")
        assert manual_row["assigned_state"] == "panicked"
        assert "did not request a next state" in manual_row["last_error"]


def test_schedule_limit_types_pass_the_gate() -> None:
    with kojo.testing.temporary_app(app) as test_app:
        row = kojo.testing.run_job(test_app, "t.limited")
        assert (row["assigned_state"], row["result"]) == ("complete_success", "ok")


def test_paused_types_are_not_worked() -> None:
    with kojo.testing.temporary_app(app) as test_app:
        test_app.set_type_paused("t.add", True)
        row = kojo.testing.run_job(test_app, "t.add", {"a": 1, "b": 1})
        assert row["assigned_state"] == "waiting"


def test_a_job_that_always_schedules_another_is_stopped() -> None:
    with kojo.testing.temporary_app(app) as test_app:
        test_app.schedule("t.forever")
        with pytest.raises(RuntimeError, match="5 jobs run"):
            kojo.testing.work_all(test_app, max_jobs=5)
        # The sixth job was claimed and given back, unchanged, to waiting.
        (left,) = test_app.jobs(type_code="t.forever", state="waiting")
        assert (left["times_worked"], left["next_state_request"]) == (0, "working")
        test_app.cancel(left["kojo_job_id"])
        # The registration was closed: the app still schedules and works normally.
        assert kojo.testing.run_job(test_app, "t.add", {"a": 1, "b": 1})["result"] == 2
