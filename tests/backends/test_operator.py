"""The store side of the operator commands, on both backends: `retry` (a compare-and-set
re-run that keeps concurrency limits, dependencies and unique keys true), `purge`
(finished jobs only, with their dependency rows), paging and stats.

The commands themselves are in tests/acceptance/test_cli_operator.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

import kojo
from foundation_helpers import claim, make_app, owner_of, scalar, update_job
from kojo import states
from kojo.backends import operator_store
from kojo.clock import utcnow
from kojo.maintenance import delete_completed


@pytest.fixture
def app(database_url: str) -> kojo.App:
    return make_app(
        database_url,
        plain={},
        other={},
        one_at_a_time={"concurrency_limit": 1},
        uniq={},
    )


def end(app: kojo.App, job_id: int, transition: states.Transition) -> None:
    """Claim the job and end it with `transition`."""
    with owner_of(app.backend) as owner:
        with app.backend.write():
            assert app.backend.job_claim_by_id(job_id, owner.id, utcnow()) is not None
        app.backend.job_transition(job_id, transition, owner=owner.id)


def pair(app: kojo.App, job_id: int) -> tuple[str, str]:
    row = app.job(job_id)
    return row["assigned_state"], row["next_state_request"]


# -- retry -------------------------------------------------------------------------------------


def test_a_retried_job_runs_now_and_is_not_deleted_as_finished(app: kojo.App) -> None:
    job = app.schedule("plain")
    end(app, job, states.COMPLETE_FAILED)
    before = app.job(job)
    row = app.retry(job)
    assert (row["assigned_state"], row["next_state_request"]) == ("waiting", "working")
    after = app.job(job)
    assert after["previous_state"] == "complete_failed"
    assert after["completed_at_date_time"] is None and after["delete_after_date_time"] is None
    assert after["work_at_date_time"] >= before["completed_at_date_time"]
    assert after["times_retried"] == before["times_retried"]  # not an automatic retry
    assert delete_completed(app, utcnow() + timedelta(days=3650)) == 0
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner) == [job]


@pytest.mark.parametrize("state", ["waiting", "working", "hold", "complete_success"])
def test_retry_refuses_other_states_naming_job_and_state(app: kojo.App, state: str) -> None:
    job = app.schedule("plain")
    if state == "working":
        with owner_of(app.backend) as owner:
            claim(app.backend, owner)
            with pytest.raises(kojo.InvalidTransition, match=f"job {job} is working: only"):
                app.retry(job)
        return
    if state == "hold":
        app.hold(job)
    elif state == "complete_success":
        end(app, job, states.COMPLETE_SUCCESS)
    with pytest.raises(kojo.InvalidTransition, match=f"job {job} is {state}: only"):
        app.retry(job)
    assert pair(app, job)[0] == state


def test_a_retried_job_queues_again_under_its_concurrency_limit(app: kojo.App) -> None:
    first, second = (app.schedule("one_at_a_time", concurrency_key="k") for _ in range(2))
    end(app, first, states.COMPLETE_FAILED)  # its place goes to the second
    assert pair(app, second) == ("waiting", "working")
    app.retry(first)
    assert pair(app, first) == ("waiting", "limit")  # not admitted past the limit
    end(app, second, states.COMPLETE_SUCCESS)
    assert pair(app, first) == ("waiting", "working")


def test_a_retried_job_waits_again_for_parents_still_pending(app: kojo.App) -> None:
    failing, pending = app.schedule("plain"), app.schedule("plain")
    child = app.schedule("plain", after=[failing, pending])
    app.cancel(failing)
    assert pair(app, child) == ("complete_terminated", "none")
    app.retry(child)
    assert pair(app, child) == ("waiting", "after")
    end(app, pending, states.COMPLETE_SUCCESS)
    assert pair(app, child) == ("waiting", "working")


def test_retry_refuses_a_unique_key_an_unfinished_job_has_taken(app: kojo.App) -> None:
    old = app.schedule("uniq", unique_key="nightly")
    app.cancel(old)
    new = app.schedule("uniq", unique_key="nightly")
    assert new != old
    with pytest.raises(kojo.InvalidTransition, match=f"job {new} of type uniq has its unique"):
        app.retry(old)
    app.cancel(new)
    app.retry(old)
    assert pair(app, old) == ("waiting", "working")


# -- purge -------------------------------------------------------------------------------------


def test_purge_deletes_finished_jobs_only(app: kojo.App) -> None:
    waiting = app.schedule("plain")
    held = app.schedule("plain")
    app.hold(held)
    panicked = app.schedule("plain")
    end(app, panicked, states.PANIC)
    ok = app.schedule("plain")
    end(app, ok, states.COMPLETE_SUCCESS)
    other = app.schedule("other")
    app.cancel(other)
    assert app.purge(count_only=True) == 2
    assert app.purge(type_code="other") == 1
    assert app.purge(state="complete_success") == 1
    assert app.purge() == 0
    assert sorted(j["kojo_job_id"] for j in app.jobs()) == [waiting, held, panicked]


def test_purge_older_than(app: kojo.App) -> None:
    old, recent = app.schedule("plain"), app.schedule("plain")
    app.cancel(old)
    app.cancel(recent)
    update_job(app.backend, old, completed_at_date_time=utcnow() - timedelta(days=2))
    assert app.purge(older_than="P1D") == 1
    assert app.purge(older_than=timedelta(days=999_999_999)) == 0  # older than dates go
    assert [j["kojo_job_id"] for j in app.jobs()] == [recent]


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"state": "waiting"}, "'waiting'"),
        ({"state": "panicked"}, "'panicked'"),
        ({"type_code": "nope"}, "'nope'"),
        ({"type_code": "Bad Code"}, "'Bad Code'"),
        ({"older_than": "soon"}, "'soon'"),
        ({"older_than": timedelta(seconds=-1)}, "must not be negative"),
        ({"older_than": 7}, "7"),
    ],
)
def test_purge_refuses_bad_values(app: kojo.App, arguments: dict[str, object], named: str) -> None:
    with pytest.raises(kojo.InvalidArgument, match=named):
        app.purge(**arguments)  # type: ignore[arg-type]


def test_purge_takes_the_dependency_rows_of_its_jobs(app: kojo.App) -> None:
    failing, pending = app.schedule("plain"), app.schedule("plain")
    child = app.schedule("plain", after=[failing, pending])
    app.cancel(failing)  # the child ends too; its edge from `pending` is left
    assert scalar(app.backend, "SELECT count(*) FROM kojo_job_dependency") == 1
    assert app.purge() == 2
    assert scalar(app.backend, "SELECT count(*) FROM kojo_job_dependency") == 0
    end(app, pending, states.COMPLETE_SUCCESS)  # finds no child to settle
    with pytest.raises(kojo.JobNotFound):
        app.job(child)


def test_purge_goes_in_batches(app: kojo.App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operator_store, "PURGE_BATCH", 3)
    for job in app.schedule_many("plain", [None] * 7):
        app.cancel(job)
    assert app.purge() == 7
    assert app.jobs() == []


# -- paging and stats ------------------------------------------------------------------------------


def test_job_page_leaves_out_cron_jobs_made_ahead(app: kojo.App) -> None:
    plain = app.schedule("plain")
    ahead = app.schedule("other", delay=600)
    update_job(app.backend, ahead, cron_fire_date_time=app.job(ahead)["work_at_date_time"])
    rows, hidden = app.job_page()
    assert ([r["kojo_job_id"] for r in rows], hidden) == ([plain], 1)
    rows, hidden = app.job_page(future_cron=True)
    assert ([r["kojo_job_id"] for r in rows], hidden) == ([ahead, plain], 0)
    assert app.job_page(type_code="plain") == (rows[1:], 0)
    assert [r["kojo_job_id"] for r in app.jobs()] == [ahead, plain]  # the Python API lists all
    # A cron job retried for later is listed: its minute has passed.
    update_job(app.backend, ahead, cron_fire_date_time=utcnow() - timedelta(minutes=1))
    rows, hidden = app.job_page()
    assert ([r["kojo_job_id"] for r in rows], hidden) == ([ahead, plain], 0)


@pytest.mark.parametrize("few", [100, 1], ids=["through-the-index", "walking-the-ids"])
def test_a_page_of_one_state_is_the_same_whether_it_has_few_jobs_or_many(
    app: kojo.App, monkeypatch: pytest.MonkeyPatch, few: int
) -> None:
    monkeypatch.setattr(operator_store, "FEW_IN_STATE", few)
    waiting = app.schedule_many("plain", [None] * 3)
    held = [app.schedule("other"), app.schedule("plain"), app.schedule("other")]
    for job_id in held:
        app.hold(job_id)
    app.schedule("other")
    queries: list[str] = []
    fetchall = app.backend.fetchall
    monkeypatch.setattr(
        app.backend, "fetchall", lambda name, *a: queries.append(name) or fetchall(name, *a)
    )

    def ids(**page: object) -> list[int]:
        return [r["kojo_job_id"] for r in app.job_page(**page)[0]]  # type: ignore[arg-type]

    assert ids(state="hold") == held[::-1]
    assert ids(state="hold", limit=2) == [held[2], held[1]]
    assert ids(state="hold", before=held[2]) == [held[1], held[0]]
    assert ids(state="hold", type_code="other") == [held[2], held[0]]
    assert ids(state="waiting", type_code="plain") == waiting[::-1]
    expected = "job_page_few" if few == 100 else "job_page"
    assert {q for q in queries if q in ("job_page", "job_page_few")} == {expected}


def test_stats(app: kojo.App) -> None:
    assert app.stats() == []
    app.schedule_many("plain", [None] * 3)
    app.cancel(app.schedule("other"))
    assert app.stats() == [
        {"type_code": "other", "assigned_state": "complete_terminated", "count": 1},
        {"type_code": "plain", "assigned_state": "waiting", "count": 3},
    ]
