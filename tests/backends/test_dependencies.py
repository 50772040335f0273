"""Dependencies (schedule(after=[ids]), issue 14 item 3), on both backends.

A child waits (waiting/after, outside the claim's index) until every parent is
complete_success; the parent's finish releases it in the same transaction. A parent that
ends any other way ends its children complete_terminated, and theirs, down the chain."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import kojo
from foundation_helpers import T0, claim, noop, owner_of
from kojo.inline import work_inline


def fails(job: kojo.Job) -> None:
    raise RuntimeError("no")


@pytest.fixture
def app(database_url: str) -> kojo.App:
    built = kojo.App(database=database_url)
    built.install()
    built.job_type("step")(noop)
    built.job_type("failing", max_retries=0)(fails)
    built.register_job_types()
    return built


def state(app: kojo.App, job_id: int) -> tuple[str, str]:
    row = app.job(job_id)
    return row["assigned_state"], row["next_state_request"]


def claimable(app: kojo.App) -> list[int]:
    """The ids a job process could claim now (far in the future: every due time passed),
    given back afterwards."""
    with owner_of(app.backend) as owner:
        ids = claim(app.backend, owner, limit=100)
        for job_id in ids:
            app.backend.job_transition(job_id, kojo.states.UNCLAIM, owner=owner.id)
    return ids


def test_a_child_waits_for_every_parent_then_runs(app: kojo.App) -> None:
    a, b = app.schedule("step"), app.schedule("step")
    child = app.schedule("step", after=[a, b])
    assert state(app, child) == ("waiting", "after")
    assert sorted(claimable(app)) == [a, b]  # not the child
    work_inline(app, a, "h")
    assert state(app, child) == ("waiting", "after")  # b still runs
    work_inline(app, b, "h")
    assert state(app, child) == ("waiting", "working")
    assert work_inline(app, child, "h")["assigned_state"] == "complete_success"


def test_a_failed_parent_terminates_the_chain_below_it(app: kojo.App) -> None:
    parent = app.schedule("failing")
    child = app.schedule("step", after=[parent])
    grandchild = app.schedule("step", after=[child])
    other = app.schedule("step")
    unrelated = app.schedule("step", after=[other])
    work_inline(app, parent, "h")
    assert state(app, parent)[0] == "panicked"
    for job_id, cause in ((child, parent), (grandchild, child)):
        row = app.job(job_id)
        assert row["assigned_state"] == "complete_terminated"
        assert f"ID[{cause}]" in row["last_error"], row["last_error"]
    assert state(app, unrelated) == ("waiting", "after")


def test_a_cancelled_parent_terminates_its_children(app: kojo.App) -> None:
    parent = app.schedule("step")
    children = app.schedule_many("step", [None] * 3, after=[parent])
    app.cancel(parent)
    for child in children:
        row = app.job(child)
        assert row["assigned_state"] == "complete_terminated"
        assert "ended complete_terminated" in row["last_error"]


def test_a_long_chain_ends_without_recursing(app: kojo.App) -> None:
    first = app.schedule("step")
    ids = [first]
    for _ in range(1500):  # deeper than Python's recursion limit
        ids.append(app.schedule("step", after=[ids[-1]]))
    app.cancel(first)
    states = {app.job(job_id)["assigned_state"] for job_id in ids}
    assert states == {"complete_terminated"}


def test_parents_that_already_finished(app: kojo.App) -> None:
    done = app.schedule("step")
    work_inline(app, done, "h")
    assert state(app, app.schedule("step", after=[done])) == ("waiting", "working")
    failed = app.schedule("failing")
    work_inline(app, failed, "h")
    ended = app.job(app.schedule("step", after=[done, failed]))
    assert ended["assigned_state"] == "complete_terminated"
    assert f"ID[{failed}]" in ended["last_error"]


def test_a_batch_with_a_callback(app: kojo.App) -> None:
    batch = app.schedule_many("step", [{"n": n} for n in range(5)])
    callback = app.schedule("step", after=batch)
    for job_id in batch[:-1]:
        work_inline(app, job_id, "h")
    assert state(app, callback) == ("waiting", "after")
    work_inline(app, batch[-1], "h")
    assert state(app, callback) == ("waiting", "working")


def test_a_held_child_released_early_still_waits(app: kojo.App) -> None:
    parent = app.schedule("step")
    child = app.schedule("step", after=[parent])
    app.hold(child)
    app.release(child)
    assert state(app, child) == ("waiting", "after")
    app.hold(child)
    work_inline(app, parent, "h")
    assert state(app, child)[0] == "hold"  # held stays held
    app.release(child)
    assert state(app, child) == ("waiting", "working")


def test_a_unique_job_can_wait_too(app: kojo.App) -> None:
    parent = app.schedule("step")
    child, created = app.schedule_unique("step", "k", after=[parent])
    assert created and state(app, child) == ("waiting", "after")
    assert app.schedule_unique("step", "k", after=[parent]) == (child, False)


def test_a_missing_parent_is_refused_and_nothing_is_made(app: kojo.App) -> None:
    parent = app.schedule("step")
    with pytest.raises(kojo.JobNotFound, match="999999"):
        app.schedule("step", after=[parent, 999999])
    assert [r["kojo_job_id"] for r in app.jobs()] == [parent]
    assert not app.job(parent)["has_children"]


@pytest.mark.parametrize("after", ["12", 12, [0], [-1], ["x"], [2**63], [1.5]])
def test_bad_after_values_are_refused_naming_them(app: kojo.App, after: Any) -> None:
    with pytest.raises(kojo.InvalidArgument):
        app.schedule("step", after=after)
    assert app.jobs() == []


def test_a_plain_job_has_no_children_and_finishes_as_before(app: kojo.App) -> None:
    job_id = app.schedule("step", at=T0)
    assert work_inline(app, job_id, "h")["has_children"] is False


def test_two_parents_finishing_at_once_release_their_child(postgres_url: str) -> None:
    """PostgreSQL: each parent's transaction deletes its own edge and looks for the
    others; without a lock on the child, each would still see the other's (uncommitted)
    delete undone, and the child would wait for ever. Here the first transaction stays
    open while the second finishes its parent."""
    app = kojo.App(database=postgres_url)
    app.install()
    app.job_type("step")(noop)
    app.register_job_types()
    a, b = app.schedule("step"), app.schedule("step")
    child = app.schedule("step", after=[a, b])
    backend = app.backend
    with owner_of(backend) as owner:
        assert sorted(claim(backend, owner, limit=2)) == [a, b]
        first_done = threading.Event()
        errors: list[BaseException] = []

        def finish_b() -> None:
            try:
                first_done.wait(10)
                backend.job_transition(b, kojo.states.COMPLETE_SUCCESS, owner=owner.id)
            except BaseException as exc:  # reported below
                errors.append(exc)

        other = threading.Thread(target=finish_b)
        other.start()
        with backend.write():
            backend.job_transition(a, kojo.states.COMPLETE_SUCCESS, owner=owner.id)
            first_done.set()
            time.sleep(0.5)  # b's transaction runs now, up to the child's lock
        other.join(10)
        assert errors == []
    assert state(app, child) == ("waiting", "working")
