"""The claim's lane walk: selection order across types, and a cost that does not grow
with jobs that cannot run now (counted in rows or VM steps the database reads, not in
time, so the test means the same on a busy machine)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from foundation_helpers import T0, claim, make_app, owner_of, update_job
from kojo import states
from kojo.backends import Backend

NOW = T0 + timedelta(days=1)
BLOCKED = 20_000


def test_types_of_one_priority_interleave_by_time_then_id(database_url: str) -> None:
    app = make_app(database_url, a={}, b={}, s={"can_work_in_parallel": False})
    order = [
        ("b", 5, 0),
        ("a", 5, 1),
        ("s", 5, 2),
        ("b", 5, 3),
        ("a", 0, 0),
        ("s", 0, 0),  # a second serial job: waits for the first
    ]
    ids = [
        app.schedule(code, importance=importance, at=T0 + timedelta(minutes=minutes))
        for code, importance, minutes in order
    ]
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, 10, NOW) == ids[:5]


def test_a_serial_type_gives_its_first_job_across_priorities(database_url: str) -> None:
    app = make_app(database_url, s={"can_work_in_parallel": False})
    low = app.schedule("s", importance=1, at=T0)
    high_later = app.schedule("s", importance=9, at=NOW + timedelta(hours=1))
    high = app.schedule("s", importance=9, at=T0 + timedelta(minutes=5))
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, 10, NOW) == [high]
        app.backend.job_transition(high, states.COMPLETE_SUCCESS, owner=owner.id)
        assert claim(app.backend, owner, 10, NOW) == [low]
        app.backend.job_transition(low, states.COMPLETE_SUCCESS, owner=owner.id)
        assert claim(app.backend, owner, 10, NOW + timedelta(hours=2)) == [high_later]


def test_due_count_skips_what_cannot_run(database_url: str) -> None:
    app = make_app(database_url, a={}, s={"can_work_in_parallel": False}, p={})
    app.schedule_many("a", [1, 2, 3], at=T0)
    app.schedule_many("s", [1, 2, 3], at=T0)
    app.schedule_many("p", [1, 2], at=T0)
    app.schedule("a", at=NOW + timedelta(hours=1))
    app.set_type_paused("p", True)
    assert app.backend.job_due_count(NOW, 100) == 3 + 1
    assert app.backend.job_due_count(NOW, 2) == 2


def reads_of(backend: Backend) -> Callable[[Callable[[], Any]], int]:
    """A function that runs an action in one write transaction and returns how much of
    the database it read: SQLite's VM steps, PostgreSQL's heap and index rows read,
    MySQL's rows read by its storage engine."""

    def sqlite_reads(action: Callable[[], Any]) -> int:
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        with backend.write() as conn:
            conn.set_progress_handler(count, 10)
            try:
                action()
            finally:
                conn.set_progress_handler(None, 10)
        return steps

    def postgres_reads(action: Callable[[], Any]) -> int:
        # Rows returned by every index scan of kojo_job and by its sequential scans, in
        # this transaction (the statistics views' idx_tup_read and seq_tup_read).
        stats = (
            "SELECT sum(pg_stat_get_xact_tuples_returned(oid)) AS n FROM ("
            "SELECT indexrelid AS oid FROM pg_index WHERE indrelid = 'kojo_job'::regclass "
            "UNION ALL SELECT 'kojo_job'::regclass::oid) AS relation"
        )
        with backend.write() as conn:
            before = int(conn.execute(stats).fetchone()["n"])
            action()
            return int(conn.execute(stats).fetchone()["n"]) - before

    def mysql_reads(action: Callable[[], Any]) -> int:
        # Rows the storage engine handed this session (its Handler_read_* counters).
        stats = "SHOW SESSION STATUS LIKE 'Handler_read%%'"
        with backend.write() as conn:
            before = sum(int(r["Value"]) for r in conn.execute(stats, {}).fetchall())
            action()
            return sum(int(r["Value"]) for r in conn.execute(stats, {}).fetchall()) - before

    readers = {"sqlite": sqlite_reads, "postgres": postgres_reads, "mysql": mysql_reads}
    return readers[backend.dialect]


@contextmanager
def blocked(app: Any, kind: str) -> Iterator[None]:
    """BLOCKED jobs of `kind` that sort ahead of everything else but cannot run."""
    if kind == "future":
        app.schedule_many("hi", [None] * BLOCKED, importance=10, at=NOW + timedelta(days=1))
    elif kind == "paused":
        app.schedule_many("hi", [None] * BLOCKED, importance=10, at=T0)
        app.set_type_paused("hi", True)
    elif kind == "serial":
        ids = app.schedule_many("serial", [None] * BLOCKED, importance=10, at=T0)
        update_job(app.backend, ids[0], assigned_state="working", next_state_request="none")
    yield


@pytest.mark.parametrize("kind", ["future", "paused", "serial"])
def test_claim_reads_no_more_with_blocked_jobs_ahead(database_url: str, kind: str) -> None:
    app = make_app(database_url, q={}, hi={}, serial={"can_work_in_parallel": False})
    backend = app.backend
    reads = reads_of(backend)
    with owner_of(backend) as owner:

        def claim_ten() -> None:
            assert len(backend.job_claim(owner.id, 10, NOW)) == 10
            assert backend.job_due_count(NOW, 100) >= 10

        app.schedule_many("q", [None] * 40, at=T0)
        claim_ten()  # warms caches and statistics alike for both measurements
        empty = reads(claim_ten)
        with blocked(app, kind):
            if backend.dialect == "postgres":
                with backend.write() as conn:
                    conn.execute("ANALYZE kojo_job")
            with_blocked = reads(claim_ten)
    # The old claim read every blocked job (BLOCKED rows at least); the walk reads the
    # same handful of index entries whatever sits ahead.
    assert with_blocked <= empty * 1.5 + 20, (kind, empty, with_blocked)


def test_claim_reads_no_more_with_a_long_due_backlog_of_its_type(database_url: str) -> None:
    # A claim of 10 takes the first 10 of its lane in order: it reads no more when 20,000
    # due jobs of the same type wait behind them than when 30 do.
    app = make_app(database_url, q={}, serial={"can_work_in_parallel": False})
    backend = app.backend
    reads = reads_of(backend)
    with owner_of(backend) as owner:

        def claim_ten() -> None:
            assert len(backend.job_claim(owner.id, 10, NOW)) == 10

        app.schedule_many("q", [None] * 40, at=T0)
        app.schedule_many("serial", [None] * 3, at=T0)
        claim_ten()  # warms caches and statistics alike for both measurements
        short = reads(claim_ten)
        app.schedule_many("q", [None] * BLOCKED, at=T0 + timedelta(minutes=1))
        app.schedule_many("serial", [None] * 2_000, at=T0 + timedelta(minutes=1))
        if backend.dialect == "postgres":
            with backend.write() as conn:
                conn.execute("ANALYZE kojo_job")
        long = reads(claim_ten)
    assert long <= short * 1.5 + 20, (short, long)


@pytest.mark.parametrize("table", ["new", "analysed"])
def test_the_claim_plan_kept_from_a_small_table_reads_no_more_once_it_has_grown(
    database_url: str, table: str
) -> None:
    # PostgreSQL keeps one plan of the claim per session (CLAIM_PLAN_SETTINGS), made from
    # the statistics of its moment: here a new table never analysed, as when a server
    # starts on a new database, or one analysed while it held a few jobs. Made with hash
    # joins, such a plan read kojo_job whole to join the rows claimed once the table had
    # grown; made with sequential scans, it read it whole for each lane's priorities.
    app = make_app(database_url, q={}, hi={})
    backend = app.backend
    if backend.dialect != "postgres":
        pytest.skip("a PostgreSQL plan cache")
    reads = reads_of(backend)
    if table == "analysed":
        app.schedule_many("hi", [None] * 5, at=NOW + timedelta(days=2))
        with backend.write() as conn:
            conn.execute("ANALYZE kojo_job")
    with owner_of(backend) as owner:
        for _ in range(8):  # psycopg prepares at the 5th run; the plan is made then
            assert backend.job_claim(owner.id, 10, NOW) == []

        def claim_ten() -> None:
            assert len(backend.job_claim(owner.id, 10, NOW)) == 10

        app.schedule_many("q", [None] * 40, at=T0)
        claim_ten()  # as the other tests here: both measurements step over 10 claimed
        small = reads(claim_ten)
        app.schedule_many("q", [None] * BLOCKED, at=T0 + timedelta(minutes=1))
        app.schedule_many("hi", [None] * BLOCKED, importance=10, at=NOW + timedelta(days=1))
        grown = reads(claim_ten)
        kept = backend.connection().execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%%UPDATE kojo_job SET assigned_state = ''working''%%'"
        )
        plans = [(row["generic_plans"], row["custom_plans"]) for row in kept.fetchall()]
    assert plans and all(generic > 0 and custom == 0 for generic, custom in plans), plans
    assert grown <= small * 1.5 + 20, (small, grown)
