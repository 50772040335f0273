"""The running totals of finished jobs (kojo_job_tally): what the processes that finish
jobs add, in the same transaction, and the maintainer's fold, on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import kojo
from foundation_helpers import T0, make_app, process_info, scalar
from kojo import maintenance, states
from kojo.backends.tally_store import minute_of

SRC = Path(__file__).resolve().parents[2] / "src"
ONE_DAY = "P1D"


def totals(app: kojo.App) -> dict[tuple[str, str], dict[str, Any]]:
    """(type, outcome) -> the summed row, as /metrics reads it."""
    rows = app.backend.fetchall("dashboard_tally_totals")
    return {
        (r["type_code"], r["outcome"]): {
            k: float(v) if k.endswith("_sum") else int(v)
            for k, v in r.items()
            if k not in ("type_code", "outcome")
        }
        for r in rows
    }


def claim_all(
    app: kojo.App, owner_id: int, now: datetime, limit: int = 100
) -> list[dict[str, Any]]:
    with app.backend.write():
        rows = app.backend.job_claim(owner_id, limit, now)
    for row in rows:
        row["auto_delete_interval_duration"] = ONE_DAY
    return rows


def complete(app: kojo.App, rows: list[dict[str, Any]], owner_id: int, now: datetime) -> int:
    with app.backend.write():
        return app.backend.job_complete_many(rows, owner_id, now)


def test_a_batch_adds_counts_sums_and_buckets_in_one_row_per_type(database_url: str) -> None:
    app = make_app(database_url, a={}, b={})
    for code, n in (("a", 3), ("b", 1)):
        app.schedule_many(code, [None] * n, at=T0)
    owner = app.backend.register_owner(process_info())
    rows = claim_all(app, owner.id, T0 + timedelta(seconds=2))  # waited 2 s
    assert complete(app, rows, owner.id, T0 + timedelta(seconds=2.3)) == 4  # ran 0.3 s
    found = totals(app)
    assert set(found) == {("a", "complete_success"), ("b", "complete_success")}
    a = found["a", "complete_success"]
    assert (a["finished"], a["timed"]) == (3, 3)
    assert a["duration_sum"] == pytest.approx(0.9) and a["wait_sum"] == pytest.approx(6.0)
    # Each value lands in its own bucket only: (0.25, 0.5] and (1, 2.5].
    assert {k: v for k, v in a.items() if k.startswith("duration_") and v} == {
        "duration_sum": pytest.approx(0.9),
        "duration_500ms": 3,
    }
    assert {k: v for k, v in a.items() if k.startswith("wait_") and v} == {
        "wait_sum": pytest.approx(6.0),
        "wait_2_5s": 3,
    }
    assert found["b", "complete_success"]["finished"] == 1
    # One row per type for the whole batch, in this process's name and minute.
    assert scalar(app.backend, "SELECT count(*) FROM kojo_job_tally") == 2
    writers = scalar(app.backend, "SELECT max(writer) FROM kojo_job_tally")
    assert writers == os.getpid()
    minute = scalar(app.backend, "SELECT min(minute) FROM kojo_job_tally")
    assert minute == minute_of(T0 + timedelta(seconds=2.3))
    owner.close()


def test_a_value_on_a_bound_is_in_that_bound_s_bucket_and_one_past_the_last_in_none(
    database_url: str,
) -> None:
    """Buckets are (previous bound, bound], as Prometheus' `le`, on every dialect (PostgreSQL
    adds in SQL, the others in Python): one microsecond past a bound is the next bucket."""
    app = make_app(database_url, a={})
    owner = app.backend.register_owner(process_info())
    tick = timedelta(microseconds=1)
    waits_and_runs = [
        (timedelta(0), timedelta(0)),  # 5ms
        (timedelta(milliseconds=5), timedelta(milliseconds=5)),  # 5ms
        (timedelta(milliseconds=5) + tick, timedelta(milliseconds=5) + tick),  # 10ms
        (timedelta(seconds=1), timedelta(seconds=2.5)),  # 1s and 2_5s
        (timedelta(seconds=3600), timedelta(seconds=3600)),  # 1h
        (timedelta(seconds=3600) + tick, timedelta(seconds=3600) + tick),  # none
    ]
    at = T0
    for wait, run in waits_and_runs:
        app.schedule_many("a", [None], at=at)
        rows = claim_all(app, owner.id, at + wait)
        assert complete(app, rows, owner.id, at + wait + run) == 1
        at += timedelta(hours=3)  # the next job is not due before its turn
    found = totals(app)["a", "complete_success"]
    assert (found["finished"], found["timed"]) == (6, 6)
    expected = {"5ms": 2, "10ms": 1, "1h": 1}
    for kind, extra in (("duration", "2_5s"), ("wait", "1s")):
        buckets = {k: v for k, v in found.items() if k.startswith(kind + "_") and v}
        buckets.pop(kind + "_sum")
        assert buckets == {f"{kind}_{s}": n for s, n in {**expected, extra: 1}.items()}, kind
    owner.close()


def test_a_job_cancelled_during_the_batch_is_not_counted_as_a_success(database_url: str) -> None:
    app = make_app(database_url, a={})
    app.schedule_many("a", [None] * 3, at=T0)
    owner = app.backend.register_owner(process_info())
    rows = claim_all(app, owner.id, T0 + timedelta(seconds=1))
    app.cancel(int(rows[0]["kojo_job_id"]))  # an operator, while the batch ran
    assert complete(app, rows, owner.id, T0 + timedelta(seconds=2)) == 2
    found = totals(app)
    assert found["a", "complete_success"]["finished"] == 2
    assert found["a", "complete_terminated"]["finished"] == 1
    assert found["a", "complete_terminated"]["timed"] == 1  # it was working: it ran
    owner.close()


def test_failures_retries_panics_crashes_and_cancels_are_tallied_by_outcome(
    database_url: str,
) -> None:
    app = make_app(database_url, a={"max_crashes": 5})
    failed, retried, panicked, crashed = app.schedule_many("a", [None] * 4, at=T0)
    owner = app.backend.register_owner(process_info())
    assert len(claim_all(app, owner.id, T0 + timedelta(seconds=1))) == 4
    waiting = app.schedule("a", at=T0 + timedelta(days=1))
    backend, ended = app.backend, T0 + timedelta(seconds=3)
    backend.job_transition(failed, states.COMPLETE_FAILED, now=ended, owner=owner.id)
    backend.job_transition(
        retried, states.RETRY, now=ended, owner=owner.id, work_at=T0 + timedelta(seconds=10)
    )
    backend.job_transition(panicked, states.PANIC, now=ended, owner=owner.id)
    app.cancel(waiting)  # never ran: finished, but not timed
    owner.close()  # its process gone: its working job crashed, counted against it
    assert app.job(crashed)["assigned_state"] == "crashed"
    found = totals(app)
    for outcome in ("complete_failed", "retried", "panicked"):
        row = found["a", outcome]
        assert (row["finished"], row["timed"]) == (1, 1), outcome
        assert row["duration_sum"] == pytest.approx(2.0) and row["duration_2_5s"] == 1
        assert row["wait_sum"] == pytest.approx(1.0) and row["wait_1s"] == 1
    assert (found["a", "crashed"]["finished"], found["a", "crashed"]["timed"]) == (1, 1)
    terminated = found["a", "complete_terminated"]
    assert (terminated["finished"], terminated["timed"], terminated["wait_sum"]) == (1, 0, 0)
    # The retried and crashed jobs run again: the retried one waited from its new work_at.
    again = app.backend.register_owner(process_info())
    rows = claim_all(app, again.id, T0 + timedelta(seconds=10.5))
    assert sorted(int(r["kojo_job_id"]) for r in rows) == [retried, crashed]
    complete(app, rows, again.id, T0 + timedelta(seconds=11))
    success = totals(app)["a", "complete_success"]
    assert (success["finished"], success["wait_sum"]) == (2, pytest.approx(0.5 + 10.5))
    again.close()


DRAIN = textwrap.dedent(
    """
    import sys
    from datetime import timedelta
    import kojo
    from kojo.backends.driver import ProcessInfo
    from kojo.clock import utcnow

    app = kojo.App(database=sys.argv[1])
    owner = app.backend.register_owner(ProcessInfo("test-host", 0, 0, "/drain", "test"))
    sys.stdin.readline()  # both start together
    done = 0
    while True:
        with app.backend.write():
            rows = app.backend.job_claim(owner.id, 5, utcnow())
        if not rows:
            break
        for row in rows:
            row["auto_delete_interval_duration"] = "P1D"
        with app.backend.write():
            done += app.backend.job_complete_many(rows, owner.id, utcnow())
    print(done)
    """
)


def test_two_processes_finishing_at_once_lose_no_increment(database_url: str) -> None:
    app = make_app(database_url, a={})
    app.schedule_many("a", [None] * 300)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    drains = [
        subprocess.Popen(
            [sys.executable, "-c", DRAIN, database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    for drain in drains:
        assert drain.stdin is not None
        drain.stdin.write("go\n")
        drain.stdin.flush()
    done = [int(drain.communicate(timeout=120)[0]) for drain in drains]
    assert sum(done) == 300
    assert totals(app)["a", "complete_success"]["finished"] == 300
    assert totals(app)["a", "complete_success"]["timed"] == 300
    writers = {
        int(r["writer"])
        for r in app.backend.connection().execute("SELECT writer FROM kojo_job_tally").fetchall()
    }
    assert writers == {drain.pid for drain, n in zip(drains, done, strict=True) if n}


def finish_at(app: kojo.App, code: str, n: int, now: datetime) -> None:
    """`n` jobs of `code` that waited 1 s and ran 1 s, ending at `now`."""
    app.schedule_many(code, [None] * n, at=now - timedelta(seconds=2))
    owner = app.backend.register_owner(process_info())
    rows = claim_all(app, owner.id, now - timedelta(seconds=1))
    assert complete(app, rows, owner.id, now) == n
    owner.close()


def test_the_fold_keeps_every_total_and_the_last_hour_by_minute(database_url: str) -> None:
    app = make_app(database_url, a={}, b={})
    now = T0 + timedelta(days=1)
    for ago, code, n in ((180, "a", 2), (120, "a", 3), (121, "b", 1), (10, "a", 4)):
        finish_at(app, code, n, now - timedelta(minutes=ago))
    before = totals(app)
    assert scalar(app.backend, "SELECT count(*) FROM kojo_job_tally") == 4
    report = maintenance.run_once(app, now)
    assert report["tallies_folded"] == 2  # a's and b's folded rows
    assert totals(app) == before
    rows = app.backend.connection().execute(
        "SELECT minute, type_code, writer FROM kojo_job_tally ORDER BY minute, type_code"
    )
    assert [(r["minute"], r["type_code"], r["writer"]) for r in rows.fetchall()] == [
        (0, "a", 0),
        (0, "b", 0),
        (minute_of(now - timedelta(minutes=10)), "a", os.getpid()),
    ]
    assert app.backend.tally_fold(now) == 0  # nothing old left: one read, no write
    # Later finishes fold into the same rows, and the totals still only grow.
    finish_at(app, "a", 5, now - timedelta(minutes=100))
    assert app.backend.tally_fold(now) == 1
    after = totals(app)["a", "complete_success"]
    assert after["finished"] == before["a", "complete_success"]["finished"] + 5 == 14
    assert after["duration_sum"] == pytest.approx(14.0) and after["duration_1s"] == 14


def test_deleting_finished_jobs_never_lowers_the_totals(database_url: str) -> None:
    app = make_app(database_url, a={"auto_delete_interval_duration": "PT0S"})
    finish_at(app, "a", 3, T0)
    before = totals(app)
    assert maintenance.delete_completed(app, T0 + timedelta(days=1)) == 3
    assert app.stats() == []
    assert totals(app) == before and before["a", "complete_success"]["finished"] == 3
