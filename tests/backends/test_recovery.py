"""Crash recovery that no single row can stop, orphans that are always found, and the
blame rule (a re-run is counted against a job only when the reaper says so)."""

from __future__ import annotations

import time

from foundation_helpers import T0, claim, make_app, process_info, scalar
from kojo.backends.base import Backend, Owner


def _die(owner: Owner) -> None:
    """The owner's process "died": its flock or session is gone, its rows remain. (The
    server ends an abandoned session a moment later: wait for that.)"""
    owner.abandon()
    deadline = time.monotonic() + 10
    while not owner.backend.owner_is_dead(owner.id):
        assert time.monotonic() < deadline, "the abandoned owner stayed alive"
        time.sleep(0.01)


def _sql(backend: Backend, statement: str) -> None:
    with backend.write() as conn:
        conn.execute(statement)


def test_a_row_that_cannot_be_crashed_is_skipped_and_the_rest_recovered(
    database_url: str,
) -> None:
    app = make_app(database_url, good={}, bad={})
    backend = app.backend
    good = app.schedule("good", at=T0)
    bad = app.schedule("bad", at=T0)
    owner = backend.register_owner(process_info())
    assert sorted(claim(backend, owner, 10)) == sorted([good, bad])
    app.use_owner(owner)
    held = app.mutex("held-by-the-dead-2", timeout=0).acquire()
    assert held.owner_id == owner.id
    # A type row edited by hand into something no reaping can compute with.
    _sql(
        backend,
        "UPDATE kojo_job_type SET auto_delete_interval_duration = 'nonsense' "
        "WHERE type_code = 'bad'",
    )
    _die(owner)
    app.use_owner(None)

    reaped = backend.reap_dead_owners()
    assert owner.id in reaped
    assert app.job(good)["assigned_state"] == "crashed"
    assert app.job(bad)["assigned_state"] == "working"  # skipped, logged with its id
    assert backend.process_get(owner.id) is None
    # Its lock was freed all the same, and listing processes still works.
    holders = f"SELECT count(*) FROM kojo_semaphore_slot WHERE kojo_process_id = {owner.id}"
    assert scalar(backend, holders) == 0
    assert all(row["kojo_process_id"] != owner.id for row in app.process_table())

    # Once the row is mended, the sweep of orphaned jobs finds it (its owner row is gone).
    _sql(
        backend,
        "UPDATE kojo_job_type SET auto_delete_interval_duration = 'P1D' WHERE type_code = 'bad'",
    )
    assert backend.reap_dead_owners() == [owner.id]
    assert app.job(bad)["assigned_state"] == "crashed"


def test_working_jobs_whose_owner_row_vanished_are_crashed_by_the_sweep(
    database_url: str,
) -> None:
    app = make_app(database_url, q={})
    backend = app.backend
    job_id = app.schedule("q", at=T0)
    owner = backend.register_owner(process_info())
    assert claim(backend, owner, 1) == [job_id]
    # Whatever removed it (a hand-run DELETE, a bug): the job names an owner that is gone.
    _sql(backend, f"DELETE FROM kojo_process WHERE kojo_process_id = {owner.id}")
    assert backend.reap_dead_owners() == []  # alive: its registration still holds
    assert app.job(job_id)["assigned_state"] == "working"
    _die(owner)
    assert backend.reap_dead_owners() == [owner.id]
    row = app.job(job_id)
    assert (row["assigned_state"], row["times_crashed"]) == ("crashed", 0)
    assert scalar(backend, "SELECT count(*) FROM kojo_job WHERE assigned_state = 'working'") == 0


def test_only_a_blamed_reaping_counts_the_crash(database_url: str) -> None:
    app = make_app(database_url, q={"max_crashes": 1})
    backend = app.backend
    blamed, spared = app.schedule("q", at=T0), app.schedule("q", at=T0)
    first = backend.register_owner(process_info())
    assert claim(backend, first, 1) == [blamed]
    _die(first)
    assert backend.reap_owner(first.id, blame=True)
    row = app.job(blamed)
    assert (row["assigned_state"], row["times_crashed"]) == ("panicked", 1)

    second = backend.register_owner(process_info())
    assert claim(backend, second, 1) == [spared]
    _die(second)
    assert backend.reap_owner(second.id, blame=False)
    row = app.job(spared)
    assert (row["assigned_state"], row["times_crashed"], row["priority"]) == ("crashed", 0, 0)
    assert "not counted against the job" in row["last_error"]


def test_a_dead_job_process_of_a_live_root_is_left_to_that_root(database_url: str) -> None:
    app = make_app(database_url, q={})
    backend = app.backend
    job_id = app.schedule("q", at=T0)
    root = backend.register_owner(process_info("root"))
    child_info = process_info("job")
    # The child's parent is the root's process (same host, pid as its parent pid).
    child_info = type(child_info)(
        child_info.host_name, 999_999, child_info.process_id, "/job[999999]", "job"
    )
    child = backend.register_owner(child_info)
    assert claim(backend, child, 1) == [job_id]
    _die(child)
    assert child.id not in backend.reap_dead_owners()  # the root saw it die: its call
    assert app.job(job_id)["assigned_state"] == "working"
    _die(root)  # no live root any more: the cluster's housekeeping takes over
    assert child.id in backend.reap_dead_owners()
    row = app.job(job_id)
    assert (row["assigned_state"], row["times_crashed"]) == ("crashed", 0)
