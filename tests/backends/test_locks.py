"""Mutexes and semaphores (kojo.locks) on both backends: the API's semantics.

"Another process" is played by another App on the same database: each App has
its own owner (a registration that dies with it), exactly as another process
would. Real forks and kill -9 are in tests/processes/test_lock_processes.py.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

import kojo
from fake_clock import FakeClock
from kojo import InvalidArgument, LeaseLost, LockTimeout, SlotsMismatch
from kojo.cli import cli
from kojo.locks import Locks

WAIT = 20.0  # generous bound for what should happen at once


@pytest.fixture
def app(database_url: str) -> Iterator[kojo.App]:
    app = kojo.App(database=database_url)
    app.install()
    yield app
    app.owner().close()


@pytest.fixture
def other(database_url: str, app: kojo.App) -> Iterator[kojo.App]:
    """Another contender, with an owner of its own (as another process has)."""
    other = kojo.App(database=database_url)
    yield other
    other.owner().close()


def in_thread(target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def waiting(app: kojo.App, name: str) -> bool:
    return any(r["state"] == "waiting" and r["name"] == name for r in app.locks())


def wait_until(condition: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- the lease ---------------------------------------------------------------------------


def test_mutex_yields_a_lease_with_name_slot_and_token(app: kojo.App) -> None:
    with app.mutex("nightly-import") as lease:
        assert (lease.name, lease.slot, lease.token) == ("nightly-import", 0, 1)
        assert lease.fence() == ("nightly-import", 0, 1)
        assert lease.is_held()
        assert not lease.lost
    assert lease.released
    assert not lease.is_held()


def test_tokens_strictly_increase_per_slot_across_apps(
    app: kojo.App, other: kojo.App, database_url: str
) -> None:
    tokens = []
    for contender in (app, other, app, other):
        with contender.mutex("m") as lease:
            tokens.append(lease.token)
    # A new "process" on the same database continues the sequence.
    later = kojo.App(database=database_url)
    with later.mutex("m") as lease:
        tokens.append(lease.token)
    later.owner().close()
    assert tokens == [1, 2, 3, 4, 5]


def test_tokens_survive_reinstall_without_uninstall(app: kojo.App) -> None:
    with app.mutex("m") as first:
        pass
    app.install()  # idempotent: keeps the slot rows and their counters
    with app.mutex("m") as second:
        assert second.token > first.token


def test_a_lock_request_can_be_used_again(app: kojo.App) -> None:
    request = app.mutex("again")
    with request as first:
        pass
    with request as second:
        assert second.token == first.token + 1


def test_acquire_and_release_without_with(app: kojo.App, other: kojo.App) -> None:
    lease = app.mutex("manual").acquire()
    with pytest.raises(LockTimeout):
        other.mutex("manual", timeout=0).acquire()
    lease.release()
    lease.release()  # idempotent
    with other.mutex("manual", timeout=0):
        pass


def test_names_are_data(app: kojo.App) -> None:
    for name in ("'; DROP TABLE kojo_job; --", "x" * 255, "ユーザー:7", " ", "%(name)s :name"):
        with app.mutex(name) as lease:
            assert lease.name == name
        assert app.mutex(name, timeout=0).acquire().token == 2
    assert app.jobs() == []  # kojo_job is still there


def test_job_id_is_recorded_for_the_holder(app: kojo.App) -> None:
    with app.mutex("for-a-job", job_id=42):
        (row,) = [r for r in app.locks() if r["name"] == "for-a-job"]
        assert row["kojo_job_id"] == 42
        assert row["state"] == "held"


# -- exclusion, try-lock, timeout ----------------------------------------------------------


def test_try_lock_fails_while_another_holds_it(app: kojo.App, other: kojo.App) -> None:
    with app.mutex("busy"), pytest.raises(LockTimeout, match="busy"):
        other.mutex("busy", timeout=0).acquire()
    with other.mutex("busy", timeout=0) as lease:
        assert lease.token == 2
    assert not waiting(app, "busy")


def test_timeout_expires_and_leaves_no_waiter(app: kojo.App, other: kojo.App) -> None:
    with app.mutex("slow"):
        started = time.monotonic()
        with pytest.raises(LockTimeout, match="slow"):
            other.mutex("slow", timeout=0.3).acquire()
        assert time.monotonic() - started >= 0.3
        assert not waiting(app, "slow")


def test_a_waiters_deadline_and_lease_times_are_the_engines_clock(
    app: kojo.App, other: kojo.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 600 s wait, over in milliseconds: the engine reads time from its clock only, and
    # each sleep on the bell here moves the fake clock by what was asked.
    clock = FakeClock()
    engine = Locks(other.backend, other.owners, clock=clock)
    bell_type = type(engine._thread_bell(other.owners.get()))
    waited: list[float] = []

    def sleep_on_the_bell(bell: Any, timeout: float) -> bool:
        waited.append(timeout)
        clock.advance(timeout)
        return False

    monkeypatch.setattr(bell_type, "wait", sleep_on_the_bell)
    with app.mutex("clocked"):
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            engine.request("clocked", 1, 600.0, None).acquire()
        assert time.monotonic() - started < WAIT
    assert sum(waited) == pytest.approx(600.0)
    assert len(waited) > 1  # looked again between sleeps, as a waiter near the head does
    with engine.request("clocked", 1, 0, None) as lease:
        assert lease.acquired_at == clock.now()
    assert not waiting(app, "clocked")


def test_a_blocked_waiter_gets_the_lock_when_it_is_released(app: kojo.App, other: kojo.App) -> None:
    got: list[int] = []
    holding = app.mutex("handoff").acquire()

    def wait_for_it() -> None:
        with other.mutex("handoff", timeout=WAIT) as lease:
            got.append(lease.token)

    thread = in_thread(wait_for_it)
    wait_until(lambda: waiting(app, "handoff"))
    assert got == []
    holding.release()
    thread.join(WAIT)
    assert got == [2]


def test_threads_of_one_process_exclude_each_other(app: kojo.App) -> None:
    """Re-entrancy is per thread: other threads of the same process contend."""
    inside = 0
    most = 0
    count = threading.Lock()
    tokens: list[int] = []

    def worker() -> None:
        nonlocal inside, most
        for _ in range(20):
            with app.mutex("threads", timeout=WAIT) as lease:
                with count:
                    inside += 1
                    most = max(most, inside)
                    tokens.append(lease.token)
                time.sleep(0.001)
                with count:
                    inside -= 1

    threads = [in_thread(worker) for _ in range(6)]
    for thread in threads:
        thread.join(WAIT * 3)
    assert not any(t.is_alive() for t in threads)
    assert most == 1
    assert tokens == list(range(1, 121))


def test_many_waiting_threads_all_get_their_turn(app: kojo.App, other: kojo.App) -> None:
    """Each wait has its own bell: one thread's wait never swallows another's wake-up."""
    holding = other.mutex("queue").acquire()
    done: list[int] = []

    def wait_once() -> None:
        with app.mutex("queue", timeout=WAIT) as lease:
            done.append(lease.token)

    threads = [in_thread(wait_once) for _ in range(5)]
    wait_until(lambda: sum(r["state"] == "waiting" for r in app.locks()) == 5)
    holding.release()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(done) == [2, 3, 4, 5, 6]


# -- semaphores --------------------------------------------------------------------------


def test_semaphore_hands_out_distinct_slots_up_to_its_size(
    app: kojo.App, other: kojo.App, database_url: str
) -> None:
    third = kojo.App(database=database_url)
    try:
        leases = [
            contender.semaphore("partner-api", 3).acquire() for contender in (app, other, third)
        ]
        assert sorted(lease.slot for lease in leases) == [0, 1, 2]
        assert all(lease.token == 1 for lease in leases)
        fourth = kojo.App(database=database_url)
        with pytest.raises(LockTimeout, match="3 slots"):
            fourth.semaphore("partner-api", 3, timeout=0).acquire()
        leases[1].release()
        with fourth.semaphore("partner-api", 3, timeout=0) as lease:
            assert (lease.slot, lease.token) == (leases[1].slot, 2)
        fourth.owner().close()
        for lease in (leases[0], leases[2]):
            lease.release()
    finally:
        third.owner().close()


def test_slots_mismatch_while_in_use(app: kojo.App, other: kojo.App) -> None:
    with app.semaphore("pool", 3):
        with pytest.raises(SlotsMismatch, match="3 slots, but 4"):
            other.semaphore("pool", 4, timeout=0).acquire()
        with pytest.raises(SlotsMismatch):
            other.mutex("pool", timeout=0).acquire()


def test_slots_mismatch_with_a_waiter(app: kojo.App, other: kojo.App, database_url: str) -> None:
    holder = kojo.App(database=database_url)
    held = holder.mutex("waited").acquire()
    thread = in_thread(lambda: app.mutex("waited", timeout=WAIT).acquire().release())
    wait_until(lambda: waiting(app, "waited"))
    held.release()
    holder.owner().close()
    thread.join(WAIT)
    # Nobody holds or waits now: the count may change (a deploy changed it in code).
    with other.semaphore("waited", 2) as lease:
        assert lease.token >= 1


def test_an_idle_semaphore_takes_a_new_slot_count_and_keeps_its_tokens(
    app: kojo.App,
) -> None:
    with app.semaphore("resized", 2) as lease:
        assert lease.token == 1
    with app.semaphore("resized", 4) as lease:
        assert (lease.slot, lease.token) == (0, 2)
    with app.semaphore("resized", 1) as lease:
        assert (lease.slot, lease.token) == (0, 3)


# -- re-entrancy -------------------------------------------------------------------------


def test_reentrant_in_the_same_thread(app: kojo.App, other: kojo.App) -> None:
    with app.mutex("nested") as outer:
        with app.mutex("nested") as inner:
            assert inner is outer
        assert outer.is_held()  # the inner exit did not free it
        with pytest.raises(LockTimeout):
            other.mutex("nested", timeout=0).acquire()
    assert not outer.is_held()
    with other.mutex("nested", timeout=0) as lease:
        assert lease.token == 2


def test_reentry_with_another_slot_count_is_refused(app: kojo.App) -> None:
    with app.semaphore("sized", 2), pytest.raises(SlotsMismatch, match="held by this thread"):
        app.semaphore("sized", 3).acquire()


# -- lost leases -------------------------------------------------------------------------


def test_release_after_the_owner_was_reaped_raises_lease_lost(
    app: kojo.App, other: kojo.App
) -> None:
    lease = app.mutex("reaped").acquire()
    app.owner().close()  # as if the process had died: its slots are freed
    with other.mutex("reaped", timeout=0) as taken:
        assert taken.token == 2
        with pytest.raises(LeaseLost, match="reaped"):
            lease.release()
    lease.release()  # a second release is a no-op
    with app.mutex("reaped", timeout=0) as again:  # a new owner is registered
        assert again.token == 3
        assert again.owner_id != lease.owner_id


def test_lease_lost_inside_a_with_block(app: kojo.App) -> None:
    with pytest.raises(LeaseLost), app.mutex("block"):
        app.owner().close()


def test_lease_lost_is_a_note_when_the_block_failed(app: kojo.App) -> None:
    with pytest.raises(ZeroDivisionError) as failure, app.mutex("failing"):
        app.owner().close()
        _ = 1 / 0
    assert any("lost" in note for note in failure.value.__notes__)


def test_postgres_anchor_dropped_means_lease_lost(postgres_url: str) -> None:
    app = kojo.App(database=postgres_url)
    app.install()
    lease = app.mutex("anchored").acquire()
    anchor_pid = app.owner().anchor.info.backend_pid  # type: ignore[attr-defined]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (anchor_pid,))
        gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
        wait_until(lambda: admin.execute(gone, (anchor_pid,)).fetchone() == (0,))
    with pytest.raises(LeaseLost, match="no longer vouches"):
        lease.release()
    # The next lock use notices the dead registration and makes a new one.
    with app.mutex("anchored", timeout=0) as lease2:
        assert lease2.owner_id != lease.owner_id
    app.owner().close()


def test_a_dead_holder_is_reaped_by_the_next_contender(app: kojo.App, other: kojo.App) -> None:
    lease = other.mutex("crashy").acquire()
    other.owner().abandon()  # its process "died": flock/session gone, rows left behind
    with app.mutex("crashy", timeout=0) as taken:
        assert taken.token == lease.token + 1
    assert all(r.kojo_process_id != lease.owner_id for r in app.backend.processes())


def test_a_waiter_gets_the_slot_of_a_holder_that_died(app: kojo.App, other: kojo.App) -> None:
    other.mutex("dies").acquire()
    got: list[int] = []
    thread = in_thread(lambda: got.append(app.mutex("dies", timeout=WAIT).acquire().token))
    wait_until(lambda: waiting(app, "dies"))
    other.owner().abandon()
    thread.join(WAIT)
    assert got == [2]


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "x" * 256, None, 7, b"bytes", "nul\x00byte", "\ud800"])
def test_bad_names_are_refused_with_the_value(app: kojo.App, name: Any) -> None:
    with pytest.raises(InvalidArgument, match="lock name"):
        app.mutex(name)


@pytest.mark.parametrize("slots", [0, -1, 1025, True, 1.5, "3", None])
def test_bad_slot_counts_are_refused(app: kojo.App, slots: Any) -> None:
    with pytest.raises(InvalidArgument, match=f"slots .*{slots!r}"):
        app.semaphore("s", slots)


@pytest.mark.parametrize("timeout", [-1, "5", math.nan, True])
def test_bad_timeouts_are_refused(app: kojo.App, timeout: Any) -> None:
    with pytest.raises(InvalidArgument, match="timeout"):
        app.mutex("t", timeout=timeout)


def test_no_lock_inside_a_transaction(app: kojo.App) -> None:
    with app.backend.write(), pytest.raises(InvalidArgument, match="inside a transaction"):
        app.mutex("tx").acquire()


# -- listing -----------------------------------------------------------------------------


def test_kojo_locks_lists_holders_and_waiters(
    app: kojo.App, other: kojo.App, database_url: str
) -> None:
    holding = app.semaphore("listed", 2).acquire()
    other_lease = other.semaphore("listed", 2).acquire()
    third = kojo.App(database=database_url)
    thread = in_thread(lambda: third.semaphore("listed", 2, timeout=WAIT).acquire().release())
    wait_until(lambda: waiting(app, "listed"))

    result = CliRunner().invoke(cli, ["--database", database_url, "locks", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    held = [r for r in rows if r["state"] == "held"]
    assert [(r["name"], r["slot"], r["token"]) for r in held] == [
        ("listed", 0, 1),
        ("listed", 1, 1),
    ]
    assert {r["kojo_process_id"] for r in held} == {holding.owner_id, other_lease.owner_id}
    assert all(r["process_id"] and r["host_name"] and r["acquired_at_date_time"] for r in held)
    (waiter,) = [r for r in rows if r["state"] == "waiting"]
    assert waiter["name"] == "listed" and waiter["since_date_time"] and waiter["token"] is None

    text = CliRunner().invoke(cli, ["--database", database_url, "locks"])
    assert text.exit_code == 0 and "listed" in text.output and "waiting" in text.output

    holding.release()
    thread.join(WAIT)
    other_lease.release()
    third.owner().close()
    assert app.locks() == []
