"""Backlogs of jobs that cannot run, loaded fast, for bench/scale.py.

Each kind starts from one template job made through kojo's own paths (schedule, pause,
claim, complete), so that every column holds what kojo itself writes, on today's schema
or a later one. The rest of the backlog is copied from the template in one set-based
INSERT … SELECT (generate_series on PostgreSQL, a recursive CTE on SQLite), every column
but the id copied. PostgreSQL's table is then vacuumed and analyzed, as autovacuum would
soon do after a load this size.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import harness  # noqa: F401  (first: it puts tests/ on sys.path)
import psycopg

import kojo
from foundation_helpers import column_names

KINDS = ("future", "paused", "serial", "finished", "after", "limited", "rated")
IMPORTANCE = 10  # the backlogs sort ahead of the runnable jobs (importance 0)
RUNNABLE_TYPE = "bench.noop"
PAUSED_TYPE = "bench.paused"
SERIAL_TYPE = "bench.serial"
LIMITED_TYPE = "bench.limited"  # concurrency_limit=1
RATED_TYPE = "bench.rate_blocked"  # rate_limit=1/P1D


def load(app: kojo.App, url: str, kind: str, size: int) -> float:
    """Add `size` jobs of `kind` that cannot run to the database; the seconds it took."""
    started = time.perf_counter()
    if size > 0:
        template = _template(app, kind)
        _copy(app, template, size - 1)
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE kojo_job")
            # The load's WAL (a gigabyte for a million jobs) is past max_wal_size: the
            # checkpoint it asks for would write its pages during the drain measured next
            # (or the next case's). A server that has held its backlog a while has had it.
            conn.execute("CHECKPOINT")
    else:
        # The same on SQLite: the load's one transaction left its pages (about 280 MB for
        # a million jobs) in the write-ahead log, to be copied into the database by the
        # first commits of the run measured next.
        app.backend.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - started


def blocked_states(app: kojo.App) -> dict[str, int]:
    """Jobs at the backlog's importance, by assigned_state (to check that none ran)."""
    conn = app.backend.connection()
    cursor = conn.execute(
        "SELECT assigned_state, count(*) AS jobs FROM kojo_job "
        f"WHERE importance = {IMPORTANCE} GROUP BY assigned_state"
    )
    return {row["assigned_state"]: int(row["jobs"]) for row in cursor.fetchall()}


def expected_states(kind: str, size: int) -> dict[str, int]:
    """What blocked_states() must say after a run that worked none of the backlog."""
    if size == 0:
        return {}
    if kind == "finished":
        return {"complete_success": size}
    if kind in ("serial", "limited", "rated"):  # the backlog, and the job that blocks it
        return {"waiting": size, "working": 1}
    return {"waiting": size}


def _template(app: kojo.App, kind: str) -> int:
    """One job of `kind` made through kojo's own paths; its id."""
    now = datetime.now(UTC)
    if kind == "future":
        return app.schedule(RUNNABLE_TYPE, at=now + timedelta(days=1), importance=IMPORTANCE)
    if kind == "paused":
        app.set_type_paused(PAUSED_TYPE, True)
        return app.schedule(PAUSED_TYPE, importance=IMPORTANCE)
    if kind == "after":
        # Waiting for a parent that is not due for a day (the parent is at importance 0).
        parent = app.schedule(RUNNABLE_TYPE, at=now + timedelta(days=1))
        return app.schedule(RUNNABLE_TYPE, importance=IMPORTANCE, after=[parent])
    owner = app.owner()  # this process's registration: alive as long as the bench runs
    backend = app.backend
    if kind in ("serial", "limited", "rated"):
        # One job of the type working for a live owner blocks the type's backlog (serial),
        # takes the only place under its concurrency limit (limited), or the only start
        # its rate limit allows in a day (rated).
        code = {"serial": SERIAL_TYPE, "limited": LIMITED_TYPE, "rated": RATED_TYPE}[kind]
        working = app.schedule(code, importance=IMPORTANCE)
        with backend.write():
            if backend.job_claim_by_id(working, owner.id, now) is None:
                raise RuntimeError(f"could not claim {kind} job {working}")
        return app.schedule(code, importance=IMPORTANCE)
    if kind == "finished":
        # Completed as the process tree completes a no-op: kept until its delete-after.
        job_id = app.schedule(RUNNABLE_TYPE, importance=IMPORTANCE)
        interval = app.type_row(RUNNABLE_TYPE)["auto_delete_interval_duration"]
        with backend.write():
            row = backend.job_claim_by_id(job_id, owner.id, now)
            if row is None:
                raise RuntimeError(f"could not claim job {job_id}")
            row["auto_delete_interval_duration"] = interval
            backend.job_complete_many([row], owner.id, now)
        return job_id
    raise ValueError(f"unknown backlog kind {kind!r}; known: {', '.join(KINDS)}")


def _copy(app: kojo.App, template: int, copies: int) -> None:
    """`copies` more rows like job `template`, in one statement."""
    if copies <= 0:
        return
    backend = app.backend
    columns = ", ".join(sorted(column_names(backend, "kojo_job") - {"kojo_job_id"}))
    if backend.dialect == "postgres":
        numbers = "generate_series(1, CAST(:copies AS integer)) AS n(i)"
        head = ""
    else:
        numbers = "n"
        head = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :copies) "
    sql = (
        f"{head}INSERT INTO kojo_job ({columns}) SELECT {columns} FROM kojo_job, {numbers} "
        "WHERE kojo_job_id = :template"
    )
    with backend.write() as conn:
        conn.execute(backend._prepare(sql), {"copies": copies, "template": template})
