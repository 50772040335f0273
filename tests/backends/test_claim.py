"""Claiming: selection order, due times, paused and serial types, batches, and real contention."""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import random
import threading
import time
import traceback
from datetime import timedelta
from typing import Any

import pytest

import kojo
from foundation_helpers import (
    T0,
    claim,
    count_by_state,
    make_app,
    owner_of,
    process_info,
    scalar,
    update_job,
)
from kojo import states
from kojo.backends import open_backend
from kojo.backends.job_store import FINISHED_CHANNEL

FAR = T0 + timedelta(days=3650)


def test_selection_order_is_priority_then_work_at_then_id(database_url: str) -> None:
    app = make_app(database_url, q={})
    ids = {}
    # (importance, minutes after T0); scheduled in an order that is none of the expected ones.
    for name, importance, minutes in [
        ("low_early", 0, 0),
        ("high_late", 5, 30),
        ("mid_late", 2, 20),
        ("high_early", 5, 10),
        ("mid_early", 2, 10),
        ("mid_early_too", 2, 10),
        ("negative", -1, 0),
    ]:
        ids[name] = app.schedule(
            "q", at=T0 + timedelta(minutes=minutes), importance=importance, payload=name
        )
    expected = [
        ids[n]
        for n in [
            "high_early",
            "high_late",
            "mid_early",
            "mid_early_too",  # same priority and work_at: lower id first
            "mid_late",
            "low_early",
            "negative",
        ]
    ]
    backend = app.backend
    with owner_of(backend) as owner:
        one_by_one = [claim(backend, owner, 1)[0] for _ in expected]
        assert claim(backend, owner, 1) == []
    assert one_by_one == expected

    # The same order within one batch.
    for job_id in expected:
        update_job(backend, job_id, assigned_state="waiting", next_state_request="working")
    with owner_of(backend) as owner:
        assert claim(backend, owner, 100) == expected


def test_a_crash_lowers_the_claim_order(database_url: str) -> None:
    app = make_app(database_url, q={"default_importance": 3})
    first = app.schedule("q", at=T0)
    second = app.schedule("q", at=T0)
    backend = app.backend
    with owner_of(backend) as owner:
        assert claim(backend, owner, 1) == [first]
        backend.job_transition(first, states.CRASH, now=T0)
        # first now has priority 2 < 3: the other job goes first, then the crashed one.
        assert claim(backend, owner, 1) == [second]
        assert claim(backend, owner, 1) == [first]
        row = app.job(first)
        assert (row["previous_state"], row["times_worked"], row["priority"]) == ("crashed", 2, 2)
    # Closing the owner with the job still working crashes it once more.
    row = app.job(first)
    assert (row["assigned_state"], row["times_crashed"], row["priority"]) == ("crashed", 2, 1)


def test_future_jobs_are_not_claimed_until_due(database_url: str) -> None:
    app = make_app(database_url, q={})
    later = app.schedule("q", at=T0 + timedelta(minutes=5))
    backend = app.backend
    with owner_of(backend) as owner:
        assert claim(backend, owner, 10, now=T0) == []
        assert claim(backend, owner, 10, now=T0 + timedelta(minutes=4, seconds=59)) == []
        assert claim(backend, owner, 10, now=T0 + timedelta(minutes=5)) == [later]
        assert app.job(later)["assigned_state"] == "working"


def test_claim_marks_the_job_working_for_its_owner(database_url: str) -> None:
    app = make_app(database_url, q={})
    job_id = app.schedule("q", at=T0)
    backend = app.backend
    with owner_of(backend) as owner:
        with backend.write():
            (row,) = backend.job_claim(owner.id, 5, T0)
        assert row["kojo_job_id"] == job_id
        stored = app.job(job_id)
        for key in ("assigned_state", "next_state_request", "previous_state", "times_worked"):
            assert row[key] == stored[key]
        assert stored["assigned_state"] == "working"
        assert stored["next_state_request"] == "none"
        assert stored["previous_state"] == "waiting"
        assert stored["times_worked"] == 1
        assert stored["kojo_process_id"] == owner.id
        assert stored["last_transition_date_time"] == T0


# A value other than a fresh job's for each column that plain jobs leave at its default
# (SQLite's claim returns those as one flag, and reads a row that has any again).
UNCOMMON: dict[str, Any] = {
    "completed_at_date_time": T0,
    "delete_after_date_time": T0,
    "cron_fire_date_time": T0,
    "last_error": "boom",
    "unique_key": "key",
    "progress": 1 / 3,
    "progress_note": "a third",
    "started_at_date_time": T0,
    "awaited": True,
    "has_children": True,
    "limited": True,
    "concurrency_key": "tenant",
}


def test_a_claimed_row_is_the_stored_row_every_column_in_order(database_url: str) -> None:
    app = make_app(database_url, q={})
    backend = app.backend
    plain = app.schedule_many("q", [{"n": 1}, None], at=T0)
    uncommon = {column: app.schedule("q", at=T0) for column in [*UNCOMMON, "result"]}
    for column, value in UNCOMMON.items():
        update_job(backend, uncommon[column], **{column: value})
    cast = "CAST(:result AS jsonb)" if backend.dialect == "postgres" else ":result"
    with backend.write() as conn:
        sql = f"UPDATE kojo_job SET result = {cast} WHERE kojo_job_id = :kojo_job_id"
        params = {"result": '{"a": [1, 2]}', "kojo_job_id": uncommon["result"]}
        conn.execute(backend._prepare(sql), backend._convert_params(params))
    with owner_of(backend) as owner:
        with backend.write():
            rows = backend.job_claim(owner.id, 50, T0 + timedelta(minutes=1))
        assert [row["kojo_job_id"] for row in rows] == [*plain, *uncommon.values()]
        for row in rows:
            stored = backend.job_get(int(row["kojo_job_id"]))
            assert stored is not None
            assert list(row.items()) == list(stored.items())
    by_id = {row["kojo_job_id"]: row for row in rows}
    assert by_id[plain[0]]["payload"] == {"n": 1}
    assert by_id[uncommon["progress"]]["progress"] == 1 / 3
    assert by_id[uncommon["result"]]["result"] == {"a": [1, 2]}
    assert by_id[uncommon["limited"]]["limited"] is True


def test_jobs_get_reads_whole_rows_by_id(database_url: str) -> None:
    app = make_app(database_url, q={})
    backend = app.backend
    first, _, third = app.schedule_many("q", [1, 2, 3], at=T0)
    rows = backend.fetchall("jobs_get", {"ids": backend._id_list([third, first])})
    assert sorted(row["kojo_job_id"] for row in rows) == [first, third]
    assert all(row == backend.job_get(int(row["kojo_job_id"])) for row in rows)


def test_batch_claims(database_url: str) -> None:
    app = make_app(database_url, q={})
    ids = app.schedule_many("q", list(range(25)), at=T0)
    backend = app.backend
    with owner_of(backend) as owner:
        first = claim(backend, owner, 10)
        second = claim(backend, owner, 10)
        third = claim(backend, owner, 10)
        assert claim(backend, owner, 10) == []
    assert (len(first), len(second), len(third)) == (10, 10, 5)
    assert first + second + third == ids


def test_only_runnable_states_are_claimed(database_url: str) -> None:
    app = make_app(database_url, q={}, gated={"schedule_limit": 1})
    gated = app.schedule("gated", at=T0)  # waiting/schedule_limit_check
    held = app.schedule("q", at=T0)
    app.hold(held)
    panicked = app.schedule("q", at=T0)
    app.backend.job_transition(panicked, states.PANIC)
    cancelled = app.schedule("q", at=T0)
    app.cancel(cancelled)
    crashed = app.schedule("q", at=T0)
    update_job(app.backend, crashed, assigned_state="crashed", next_state_request="working")
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, 10) == [crashed]
    assert app.job(gated)["assigned_state"] == "waiting"


def test_paused_types_are_not_claimed(database_url: str) -> None:
    app = make_app(database_url, paused={}, other={})
    paused_job = app.schedule("paused", at=T0)
    other_job = app.schedule("other", at=T0)
    app.set_type_paused("paused", True)
    backend = app.backend
    with owner_of(backend) as owner:
        assert claim(backend, owner, 10) == [other_job]
        app.set_type_paused("paused", False)
        assert claim(backend, owner, 10) == [paused_job]


def test_disabled_types_existing_jobs_are_still_claimed(database_url: str) -> None:
    app = make_app(database_url, q={})
    job_id = app.schedule("q", at=T0)
    app.set_type_enabled("q", False)
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, 10) == [job_id]


def test_at_most_one_working_job_per_serial_type(database_url: str) -> None:
    app = make_app(database_url, serial={"can_work_in_parallel": False}, parallel={})
    serial = app.schedule_many("serial", [1, 2, 3], at=T0)
    parallel = app.schedule_many("parallel", [1, 2], at=T0)
    backend = app.backend
    with owner_of(backend) as owner, owner_of(backend) as other:
        first = claim(backend, owner, 10)
        assert sorted(first) == sorted([serial[0], *parallel])
        # Another process sees the serial type busy.
        assert claim(backend, other, 10) == []
        backend.job_transition(serial[0], states.COMPLETE_SUCCESS, owner=owner.id)
        assert claim(backend, other, 10) == [serial[1]]
        # A crash frees the type too; the crashed job is runnable again but waits its turn.
        backend.job_transition(serial[1], states.CRASH, owner=other.id)
        assert claim(backend, owner, 10) == [serial[2]]
        assert claim(backend, other, 10) == []
        backend.job_transition(serial[2], states.COMPLETE_SUCCESS, owner=owner.id)
        assert claim(backend, other, 10) == [serial[1]]


def test_the_database_refuses_a_second_working_serial_job(database_url: str) -> None:
    app = make_app(database_url, serial={"can_work_in_parallel": False})
    first, second = app.schedule_many("serial", [1, 2], at=T0)
    update_job(app.backend, first, assigned_state="working", next_state_request="none")
    with pytest.raises(Exception, match=r"(?i)unique|duplicate entry"):
        update_job(app.backend, second, assigned_state="working", next_state_request="none")


def test_complete_many_completes_only_the_owners_claims(database_url: str) -> None:
    app = make_app(database_url, q={"auto_delete_interval_duration": "PT1H"})
    ids = app.schedule_many("q", [1, 2, 3], at=T0)
    backend = app.backend
    interval = {"auto_delete_interval_duration": "PT1H"}
    with owner_of(backend) as owner, owner_of(backend) as other:
        mine = claim(backend, owner, 2)
        theirs = claim(backend, other, 1)
        done = T0 + timedelta(seconds=1)
        with backend.write():
            rows = [{"kojo_job_id": i, **interval} for i in mine + theirs]
            assert backend.job_complete_many(rows, owner.id, done) == 2
        assert app.job(theirs[0])["assigned_state"] == "working"
    for job_id in mine:
        row = app.job(job_id)
        assert (row["assigned_state"], row["previous_state"]) == ("complete_success", "working")
        assert row["completed_at_date_time"] == done
        assert row["delete_after_date_time"] == done + timedelta(hours=1)
    assert ids == sorted(mine + theirs)


def test_complete_many_sets_off_what_the_flagged_jobs_of_a_batch_hold(database_url: str) -> None:
    # A batch mixing plain jobs, an awaited one, a parent and another owner's claim: every
    # plain and flagged job completes once (SQLite completes them in two statements), and
    # only the flagged ones set something off.
    app = make_app(database_url, q={"auto_delete_interval_duration": "PT1H"})
    plain, awaited, parent, foreign = app.schedule_many("q", [1, 2, 3, 4], at=T0)
    child = app.schedule("q", payload=5, at=T0, after=[parent])
    backend = app.backend
    with (
        owner_of(backend) as owner,
        owner_of(backend) as other,
        app.subscribe(FINISHED_CHANNEL) as finished,
    ):
        mine = claim(backend, owner, 3)
        assert sorted(mine) == [plain, awaited, parent]
        assert claim(backend, other, 1) == [foreign]
        assert backend.job_await(awaited) is not None
        rows = [
            {"kojo_job_id": i, "auto_delete_interval_duration": "PT1H"}
            for i in (plain, awaited, parent, foreign)
        ]
        with backend.write():
            assert backend.job_complete_many(rows, owner.id, T0 + timedelta(seconds=1)) == 3
        assert next(finished.messages(timeout=5)) == {"id": awaited}
        assert list(finished.messages(timeout=0.2)) == []  # none for the plain or the parent
        assert app.job(foreign)["assigned_state"] == "working"
    for job_id in (plain, awaited, parent):
        assert app.job(job_id)["assigned_state"] == "complete_success"
    assert app.job(child)["next_state_request"] == "working"  # released by its parent's end


def test_claim_and_complete_in_one_transaction(database_url: str) -> None:
    app = make_app(database_url, q={})
    app.schedule_many("q", list(range(7)), at=T0)
    backend = app.backend
    with owner_of(backend) as owner, backend.write():
        rows = backend.job_claim(owner.id, 50, T0)
        for row in rows:
            row["auto_delete_interval_duration"] = "P1D"
        assert backend.job_complete_many(rows, owner.id, T0) == 7
    assert {r["assigned_state"] for r in app.jobs()} == {"complete_success"}


def test_a_rolled_back_claim_leaves_the_job_runnable(database_url: str) -> None:
    app = make_app(database_url, q={})
    job_id = app.schedule("q", at=T0)
    backend = app.backend
    with owner_of(backend) as owner:
        with pytest.raises(RuntimeError), backend.write():
            assert [r["kojo_job_id"] for r in backend.job_claim(owner.id, 1, T0)] == [job_id]
            raise RuntimeError("the claimer failed before commit")
        assert claim(backend, owner, 1) == [job_id]
    assert app.job(job_id)["times_worked"] == 1


# -- four OS processes claiming at once -------------------------------------------------

PROCESSES = 4
PARALLEL_JOBS = 1700
SERIAL_JOBS = 150  # per serial type
SERIAL_TYPES = ("serial_a", "serial_b")
DEADLINE_SECONDS = 180.0


def claimer(url: str, index: int, start: Any, results: Any) -> None:
    """One OS process: claim in batches, keep serial jobs working a moment, then complete."""
    try:
        backend = open_backend(url)  # its own connections, opened after the fork
        rng = random.Random(index)
        claimed: list[tuple[int, str, float, float]] = []
        with owner_of(backend) as owner:
            start.wait()
            deadline = time.monotonic() + DEADLINE_SECONDS
            while time.monotonic() < deadline:
                # As a job process claims: a deadlock victim (MySQL) is claimed again.
                claim = functools.partial(backend.job_claim, owner.id, rng.choice((1, 3, 10)), FAR)
                rows = backend.retrying(claim)
                got = time.monotonic()  # after commit: these jobs are working now
                if not rows:
                    left = scalar(
                        backend,
                        "SELECT count(*) FROM kojo_job WHERE assigned_state <> :done",
                        done="complete_success",
                    )
                    if left == 0:
                        break
                    owner.wait(0.05)  # woken early when a serial type is freed
                    continue
                for row in rows:
                    row["auto_delete_interval_duration"] = "P1D"
                if any(not r["can_work_in_parallel"] for r in rows):
                    time.sleep(0.001)  # widen the window in which others try the serial type
                released = time.monotonic()  # before the completing transaction begins
                with backend.write():
                    completed = backend.job_complete_many(rows, owner.id, FAR)
                assert completed == len(rows), (completed, len(rows))
                claimed += [(r["kojo_job_id"], r["type_code"], got, released) for r in rows]
        backend.close()
        results.put((index, claimed, None))
    except BaseException:
        results.put((index, [], traceback.format_exc()))


def test_four_processes_claim_each_job_exactly_once(database_url: str) -> None:
    app = make_app(
        database_url,
        parallel={},
        serial_a={"can_work_in_parallel": False},
        serial_b={"can_work_in_parallel": False},
    )
    rng = random.Random(7)
    for code, count in [("parallel", PARALLEL_JOBS)] + [(c, SERIAL_JOBS) for c in SERIAL_TYPES]:
        for importance in range(3):
            share = count // 3 + (1 if importance < count % 3 else 0)
            app.schedule_many(code, [None] * share, at=T0, importance=importance)
    ids = [r["kojo_job_id"] for r in app.jobs(limit=10_000)]
    rng.shuffle(ids)
    total = PARALLEL_JOBS + SERIAL_JOBS * len(SERIAL_TYPES)
    assert len(ids) == total
    app.backend.close()

    context = multiprocessing.get_context("fork")
    start = context.Event()
    results = context.Queue()
    children = [
        context.Process(target=claimer, args=(database_url, i, start, results))
        for i in range(PROCESSES)
    ]
    for child in children:
        child.start()

    # Watch the table from this process while they run: never two working serial jobs.
    monitor_backend = open_backend(database_url)
    most_working: dict[str, int] = dict.fromkeys(SERIAL_TYPES, 0)
    stop = threading.Event()

    def monitor() -> None:
        while not stop.is_set():
            rows = count_by_state(monitor_backend)
            for row in rows:
                if row["type_code"] in most_working and row["assigned_state"] == "working":
                    code = row["type_code"]
                    most_working[code] = max(most_working[code], int(row["jobs"]))
            stop.wait(0.002)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    start.set()
    try:
        outcomes = [results.get(timeout=DEADLINE_SECONDS + 30) for _ in children]
    finally:
        stop.set()
        watcher.join()
        for child in children:
            child.join(timeout=30)
        monitor_backend.close()
    errors = [error for _, _, error in outcomes if error]
    assert not errors, errors[0]
    assert [child.exitcode for child in children] == [0] * PROCESSES

    claims = [c for _, claimed, _ in outcomes for c in claimed]
    claimed_ids = [job_id for job_id, _, _, _ in claims]
    assert len(claimed_ids) == len(set(claimed_ids)), "a job was claimed twice"
    assert sorted(claimed_ids) == sorted(ids)
    # Contention really happened (one starved process is the scheduler's business, not a bug).
    assert sum(1 for _, claimed, _ in outcomes if claimed) >= 2, "only one process claimed"

    # Exclusivity as the claimers saw it: the spans in which each serial job was certainly
    # working (from its claim's commit to the start of its completion) never overlap.
    for code in SERIAL_TYPES:
        spans = sorted((got, released) for _, c, got, released in claims if c == code)
        assert len(spans) == SERIAL_JOBS
        for (_, end), (begin, _) in itertools.pairwise(spans):
            assert end <= begin, f"two {code} jobs were working at once"
    assert max(most_working.values()) <= 1, most_working

    app2 = kojo.App(database=database_url)
    rows = app2.jobs(limit=10_000)
    assert {r["assigned_state"] for r in rows} == {"complete_success"}
    assert {r["times_worked"] for r in rows} == {1}


def test_a_claim_skips_a_serial_type_another_claim_holds_without_waiting(
    postgres_url: str,
) -> None:
    # B's claim runs while A's claim of the first serial job is uncommitted: it must neither
    # wait (a waiting claim can be part of a deadlock) nor take the second serial job.
    app = make_app(postgres_url, serial={"can_work_in_parallel": False}, other={})
    first, second = app.schedule_many("serial", [1, 2], at=T0)
    a, b = open_backend(postgres_url), open_backend(postgres_url)
    with owner_of(a) as owner_a, owner_of(b) as owner_b:
        with a.write():
            assert [r["kojo_job_id"] for r in a.job_claim(owner_a.id, 1, T0)] == [first]
            with b.write():
                # Work done earlier in the same transaction is kept.
                b.job_insert_batch("other", [None], work_at=T0, importance=None, now=T0)
                b.connection().execute("SET LOCAL lock_timeout = '2s'")
                rows = b.job_claim(owner_b.id, 10, T0)
            claimed = [(r["type_code"], r["kojo_job_id"]) for r in rows]
            assert len(claimed) == 1 and claimed[0][0] == "other"
        assert app.job(second)["assigned_state"] == "waiting"
        with b.write():
            assert b.job_claim(owner_b.id, 10, T0) == []  # the type is busy now
    for backend in (a, b):
        backend.close()


def test_closing_an_owner_crashes_its_claims_at_once(database_url: str) -> None:
    # PostgreSQL ends a closed session asynchronously; close() must not leave the claim
    # working until some later reap (it did, about one time in three).
    app = make_app(database_url, q={})
    backend = app.backend
    for round_ in range(20):
        job_id = app.schedule("q", at=T0)
        owner = backend.register_owner(process_info())
        assert claim(backend, owner, 1) == [job_id]
        owner.close()
        row = app.job(job_id)
        assert (row["assigned_state"], row["times_crashed"]) == ("crashed", 1), round_
        assert backend.process_get(owner.id) is None
        app.cancel(job_id)


def hold_type_row(backend: Any, type_code: str) -> Any:
    """Another session holding a type's row, as a claim in flight does (MySQL)."""
    holder = backend.new_connection()
    holder.execute("BEGIN")
    holder.execute(
        f"SELECT type_code FROM kojo_job_type WHERE type_code = '{type_code}' FOR UPDATE"
    )
    return holder


def test_a_mysql_claim_that_met_a_type_held_by_another_claim_looks_again(
    mysql_url: str,
) -> None:
    """MySQL's claim takes its types' rows with SKIP LOCKED, and a rate-limited (or a
    serial) lane gives jobs only to the claim holding its type's row: one that finds the
    only such type with due work held by another claim comes back empty though a job is
    due. Inside the job process's own transaction (as here, in write()), having completed
    nothing, it looks again a few times rather than idle until its next poll
    (CONTENDED_TRIES): a pool's second job process once got none of 4 jobs."""
    app = make_app(mysql_url, q={"rate_limit": "100/PT1S"})
    job_id = app.schedule("q")
    owner = app.backend.register_owner(process_info())
    holder = hold_type_row(app.backend, "q")
    release = threading.Timer(0.03, holder.execute, ["COMMIT"])  # during the second look
    release.start()
    try:
        assert claim(app.backend, owner, 1) == [job_id]
        assert not app.backend.claim_contended()
    finally:
        release.join()
        holder.close()


def test_a_mysql_claim_takes_parallel_jobs_of_a_type_another_claim_holds(mysql_url: str) -> None:
    """A parallel lane of a type without a rate limit needs no lock of its type's row: its
    jobs are taken row by row with SKIP LOCKED, so claims of one type at the same moment
    take different jobs instead of waiting for each other."""
    app = make_app(mysql_url, q={})
    first, second = app.schedule("q"), app.schedule("q")
    holder = hold_type_row(app.backend, "q")
    try:
        holder.execute(f"SELECT kojo_job_id FROM kojo_job WHERE kojo_job_id = {first} FOR UPDATE")
        with owner_of(app.backend) as owner:
            assert claim(app.backend, owner, 2) == [second]  # the first is locked by the holder
    finally:
        holder.execute("COMMIT")
        holder.close()


def test_a_mysql_claim_that_completed_jobs_and_met_a_held_type_says_so_at_once(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim that completed jobs does not pause holding their rows (a schedule(after=)
    of a child may wait on them): it comes back empty at once and claim_contended() tells
    the job process to claim again after the commit."""
    app = make_app(mysql_url, q={"auto_delete_interval_duration": "PT1H", "rate_limit": "100/PT1S"})
    backend = app.backend
    first, second = app.schedule("q"), app.schedule("q")
    with owner_of(backend) as owner:
        assert claim(backend, owner, 1) == [first]
        done = [{"kojo_job_id": first, "auto_delete_interval_duration": "PT1H"}]
        holder = hold_type_row(backend, "q")
        try:
            from kojo.backends import mysql as mysql_backend  # needs PyMySQL

            pauses: list[float] = []
            monkeypatch.setattr(mysql_backend.time, "sleep", pauses.append)
            with backend.write():
                assert backend.job_claim(owner.id, 1, FAR, done) == []
            monkeypatch.undo()
            assert pauses == []
            assert backend.claim_contended()
            assert app.job(first)["assigned_state"] == "complete_success"
        finally:
            holder.execute("COMMIT")
            holder.close()
        assert claim(backend, owner, 1) == [second]
        assert not backend.claim_contended()


class _DeadlockVictim(Exception):
    sqlstate = "40P01"  # as the backends report a deadlock (MySQL's 1213 mapped so)


def test_a_claim_chosen_as_a_deadlock_victim_is_run_again_whole(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """InnoDB rolls a deadlock victim's whole transaction back, savepoints too: the claim
    must hand the deadlock to retrying() as it is, not fail on its own savepoint (CI saw
    "SAVEPOINT kojo_claim does not exist" in the four-process test on MariaDB)."""
    app = make_app(database_url, q={})
    backend = app.backend
    if not backend.claim_races:
        pytest.skip("claims here are serial: no savepoint")
    job = app.schedule("q")
    real = backend.claim_rows
    calls = []

    def first_a_deadlock(params: Any) -> Any:
        calls.append(params)
        if len(calls) == 1:
            backend.connection().execute("ROLLBACK")  # what InnoDB does to a victim
            raise _DeadlockVictim("deadlock detected")
        return real(params)

    monkeypatch.setattr(backend, "claim_rows", first_a_deadlock)
    with owner_of(backend) as owner:
        rows = backend.retrying(functools.partial(backend.job_claim, owner.id, 10, FAR))
    assert [row["kojo_job_id"] for row in rows] == [job]
    assert len(calls) == 2
