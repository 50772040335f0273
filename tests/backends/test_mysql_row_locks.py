"""MySQL: statements that lock or update listed rows touch those rows only.

As `WHERE id IN (SELECT id FROM JSON_TABLE(:ids ...))`, MariaDB read a small table's
whole index for a locking read, locking (and waiting for) every row on its way. CI met it
as a deadlock: a schedule(after=[parent]) waited for a job row a job process held while
completing and claiming, which waited for a row the schedule's scan had locked (issue 17).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from foundation_helpers import T0, claim, make_app, owner_of
from kojo.backends.base import Backend

WAIT = 5.0  # seconds a statement gets to finish beside a lock it must not need


@contextmanager
def row_held(backend: Backend, sql: str) -> Iterator[None]:
    """Another session holding a row (as a claim or a completion in flight does)."""
    holder = backend.new_connection()
    holder.execute("BEGIN")
    holder.execute(sql)
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def finishes_beside(action: Callable[[], Any]) -> bool:
    """Whether `action` finishes within WAIT seconds (run in a thread of its own)."""
    done = threading.Event()

    def run() -> None:
        action()
        done.set()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return done.wait(WAIT)


def test_a_child_locks_its_parent_only(mysql_url: str) -> None:
    app = make_app(mysql_url, q={})
    parent, other = app.schedule("q"), app.schedule("q")
    with row_held(app.backend, f"SELECT * FROM kojo_job WHERE kojo_job_id = {other} FOR UPDATE"):
        assert finishes_beside(lambda: app.schedule("q", after=[parent]))
    assert app.job(parent)["has_children"]


def test_locking_a_serial_type_locks_its_row_only(mysql_url: str) -> None:
    """As a serial job's completion does (lock_serial_types)."""
    app = make_app(mysql_url, q={"can_work_in_parallel": False}, r={})
    backend = app.backend

    def lock_q() -> None:
        with backend.write():
            backend.lock_serial_types(["q"])

    with row_held(backend, "SELECT * FROM kojo_job_type WHERE type_code = 'r' FOR UPDATE"):
        assert finishes_beside(lock_q)


def test_completing_jobs_reads_only_them(mysql_url: str) -> None:
    """A batch's completion costs the same beside 10 jobs as beside 2,000 (Handler_read_*:
    the rows the storage engine handed the session). Its UPDATE takes a literal id list:
    EXPLAIN showed the JSON_TABLE form as a dependent subquery over the primary key's
    index (it read 73 rows for 5 jobs where the list reads 28)."""
    app = make_app(mysql_url, q={"auto_delete_interval_duration": "PT1H"})
    backend = app.backend
    done = T0 + timedelta(days=3650)

    def reads_to_complete(owner: Any) -> int:
        ids = claim(backend, owner, 5)
        rows = [{"kojo_job_id": i, "auto_delete_interval_duration": "PT1H"} for i in ids]
        stats = "SHOW SESSION STATUS LIKE 'Handler_read%%'"
        with backend.write() as conn:
            before = sum(int(r["Value"]) for r in conn.execute(stats, {}).fetchall())
            assert backend.job_complete_many(rows, owner.id, done) == 5
            return sum(int(r["Value"]) for r in conn.execute(stats, {}).fetchall()) - before

    with owner_of(backend) as owner:
        app.schedule_many("q", [None] * 10, at=T0)
        reads_to_complete(owner)  # warms caches and statistics
        few = reads_to_complete(owner)
        app.schedule_many("q", [None] * 2000, at=T0 + timedelta(days=1))  # not due
        app.schedule_many("q", [None] * 5, at=T0)
        many = reads_to_complete(owner)
    assert many <= few + 5, (few, many)
