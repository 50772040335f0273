"""Claims per second: kojo's batched claim path beside a one-job-per-transaction baseline.

    python bench/claim.py [--backend sqlite|postgres|mysql|both|all] [--jobs 20000]
                          [--processes 2] [--batch 50] [--repeat 1] [--postgres URL]
                          [--mysql URL]

For each backend, each method gets a fresh database holding `--jobs` ready
no-op jobs of one parallel type in kojo's own tables, and `--processes` forked
processes that drain it; the clock runs from releasing them all at once to the
last one finishing. Both methods claim and complete every job durably, each
job in the transaction that claimed it:

- kojo: `backend.job_claim(owner, batch, now)` inside `backend.write()`, then
  `backend.job_complete_many(rows, owner, now)` in the same transaction
  (the path the process tree uses for auto-completed jobs);
- baseline: raw SQL, one job per transaction over the same table and indexes.
  PostgreSQL: BEGIN; SELECT … ORDER BY … LIMIT 1 FOR UPDATE SKIP LOCKED;
  UPDATE (claim); UPDATE (complete); COMMIT. MySQL / MariaDB: the same at READ
  COMMITTED (kojo's isolation level there). SQLite: BEGIN IMMEDIATE;
  UPDATE … RETURNING (claim); UPDATE (complete); COMMIT.

`both` is SQLite and PostgreSQL; `all` adds MySQL (`--mysql URL` or
KOJO_TEST_MYSQL_URL, e.g. through scripts/with-mariadb).

Every run checks that each job was claimed exactly once. Results are printed
and written to bench/results/claim-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sqlite3
import statistics
import sys
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from harness import ROOT, database

import kojo
import mysql_db
from foundation_helpers import count_by_state
from kojo.backends import ProcessInfo, open_backend
from kojo.backends.sqlite import path_from_url

TYPE_CODE = "bench_noop"
READY = "next_state_request = 'working' AND assigned_state IN ('waiting', 'crashed')"
ORDER = "ORDER BY priority DESC, work_at_date_time, kojo_job_id"

PG_PICK = f"SELECT kojo_job_id FROM kojo_job WHERE {READY} AND work_at_date_time <= %(now)s "
PG_PICK += f"{ORDER} LIMIT 1 FOR UPDATE SKIP LOCKED"
PG_CLAIM = (
    "UPDATE kojo_job SET assigned_state = 'working', next_state_request = 'none', "
    "previous_state = assigned_state, times_worked = times_worked + 1, "
    "last_transition_date_time = %(now)s, kojo_process_id = %(owner)s "
    "WHERE kojo_job_id = %(id)s"
)
PG_COMPLETE = (
    "UPDATE kojo_job SET assigned_state = 'complete_success', previous_state = 'working', "
    "last_transition_date_time = %(now)s, completed_at_date_time = %(now)s, "
    "delete_after_date_time = %(delete_after)s WHERE kojo_job_id = %(id)s"
)
# MySQL assigns left to right: previous_state first, while assigned_state is the old one.
MY_CLAIM = (
    "UPDATE kojo_job SET previous_state = assigned_state, assigned_state = 'working', "
    "next_state_request = 'none', times_worked = times_worked + 1, "
    "last_transition_date_time = %(now)s, kojo_process_id = %(owner)s "
    "WHERE kojo_job_id = %(id)s"
)
SQLITE_CLAIM = (
    "UPDATE kojo_job SET assigned_state = 'working', next_state_request = 'none', "
    "previous_state = assigned_state, times_worked = times_worked + 1, "
    "last_transition_date_time = :now, kojo_process_id = :owner "
    f"WHERE kojo_job_id = (SELECT kojo_job_id FROM kojo_job WHERE {READY} "
    f"AND work_at_date_time <= :now {ORDER} LIMIT 1) RETURNING kojo_job_id"
)
SQLITE_COMPLETE = (
    "UPDATE kojo_job SET assigned_state = 'complete_success', previous_state = 'working', "
    "last_transition_date_time = :now, completed_at_date_time = :now, "
    "delete_after_date_time = :delete_after WHERE kojo_job_id = :id"
)
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # kojo's SQLite time text


def noop(job: Any) -> None:
    """The worker of the benchmark's type (never run: claims are completed directly)."""


# -- the two ways of draining the queue ----------------------------------------------------


def drain_kojo(url: str, batch: int, ready: Any, go: Any) -> int:
    backend = open_backend(url)
    info = ProcessInfo("bench", os.getpid(), os.getppid(), f"/bench[{os.getpid()}]", "bench")
    owner = backend.register_owner(info)
    type_row = backend.type_get(TYPE_CODE)
    assert type_row is not None
    interval = type_row["auto_delete_interval_duration"]
    ready.wait()
    go.wait()
    done = 0
    while True:
        now = datetime.now(UTC)
        with backend.write():
            rows = backend.job_claim(owner.id, batch, now)
            if not rows:
                break
            for row in rows:
                row["auto_delete_interval_duration"] = interval
            completed = backend.job_complete_many(rows, owner.id, now)
        assert completed == len(rows), (completed, len(rows))
        done += completed
    owner.close()
    backend.close()
    return done


def drain_baseline_postgres(url: str, ready: Any, go: Any) -> int:
    conn = psycopg.connect(url, autocommit=True, options="-c TimeZone=UTC")
    owner = os.getpid()
    ready.wait()
    go.wait()
    done = 0
    while True:
        now = datetime.now(UTC)
        with conn.transaction():
            row = conn.execute(PG_PICK, {"now": now}).fetchone()
            if row is None:
                break
            params = {"id": row[0], "now": now, "owner": owner, "delete_after": now}
            conn.execute(PG_CLAIM, params)
            conn.execute(PG_COMPLETE, params)
        done += 1
    conn.close()
    return done


def drain_baseline_mysql(url: str, ready: Any, go: Any) -> int:
    conn = mysql_db.connect(url)
    cur = conn.cursor()
    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    owner = os.getpid()
    ready.wait()
    go.wait()
    done = 0
    while True:
        now = datetime.now(UTC).replace(tzinfo=None)
        cur.execute("START TRANSACTION")
        cur.execute(PG_PICK, {"now": now})
        row = cur.fetchone()
        if row is not None:
            params = {"id": row[0], "now": now, "owner": owner, "delete_after": now}
            cur.execute(MY_CLAIM, params)
            cur.execute(PG_COMPLETE, params)
        cur.execute("COMMIT")
        if row is None:
            break
        done += 1
    conn.close()
    return done


def drain_baseline_sqlite(url: str, ready: Any, go: Any) -> int:
    # The same connection settings as kojo's SQLite backend.
    conn = sqlite3.connect(path_from_url(url), isolation_level=None, timeout=60.0)
    conn.execute("PRAGMA busy_timeout = 60000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    owner = os.getpid()
    ready.wait()
    go.wait()
    done = 0
    while True:
        now = datetime.now(UTC).replace(tzinfo=None).strftime(SQLITE_TIME)
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(SQLITE_CLAIM, {"now": now, "owner": owner}).fetchone()
            if row is not None:
                params = {"id": row[0], "now": now, "delete_after": now}
                conn.execute(SQLITE_COMPLETE, params)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if row is None:
            break
        done += 1
    conn.close()
    return done


def child(method: str, url: str, batch: int, ready: Any, go: Any, results: Any) -> None:
    try:
        if method == "kojo":
            count = drain_kojo(url, batch, ready, go)
        elif url.startswith("sqlite"):
            count = drain_baseline_sqlite(url, ready, go)
        elif url.startswith("mysql"):
            count = drain_baseline_mysql(url, ready, go)
        else:
            count = drain_baseline_postgres(url, ready, go)
        results.put((count, None))
    except BaseException:
        results.put((0, traceback.format_exc()))


# -- one measured run --------------------------------------------------------------------


def prepare(url: str, jobs: int) -> None:
    app = kojo.App(database=url)
    app.install()
    app.job_type(TYPE_CODE, auto_delete_interval_duration="P1D")(noop)
    app.register_job_types()
    app.schedule_many(TYPE_CODE, [None] * jobs, at=datetime.now(UTC) - timedelta(seconds=1))
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE kojo_job")
    app.backend.close()


def verify(url: str, jobs: int) -> None:
    """Every job completed, and claimed exactly once."""
    backend = open_backend(url)
    rows = count_by_state(backend)
    counts = {(r["assigned_state"], r["next_state_request"]): int(r["jobs"]) for r in rows}
    worked = backend.connection().execute(
        "SELECT min(times_worked) AS low, max(times_worked) AS high FROM kojo_job"
    )
    low_high = worked.fetchone()
    backend.close()
    if counts != {("complete_success", "none"): jobs}:
        raise SystemExit(f"{url}: not every job was completed: {counts}")
    if (low_high["low"], low_high["high"]) != (1, 1):
        raise SystemExit(f"{url}: a job was claimed more than once or never: {low_high}")


def run(method: str, backend: str, admin_url: str | None, args: argparse.Namespace) -> float:
    """Seconds to drain `args.jobs` jobs with `args.processes` processes."""
    with database(backend, admin_url) as url:
        prepare(url, args.jobs)
        context = multiprocessing.get_context("fork")
        ready = context.Barrier(args.processes + 1)
        go = context.Event()
        results = context.Queue()
        processes = [
            context.Process(target=child, args=(method, url, args.batch, ready, go, results))
            for _ in range(args.processes)
        ]
        for process in processes:
            process.start()
        ready.wait(timeout=60)  # every child is connected and waiting
        started = time.perf_counter()
        go.set()
        outcomes = [results.get(timeout=3600) for _ in processes]
        elapsed = time.perf_counter() - started
        for process in processes:
            process.join(timeout=60)
        errors = [error for _, error in outcomes if error]
        if errors:
            raise SystemExit(f"{method} on {backend} failed:\n{errors[0]}")
        claimed = sum(count for count, _ in outcomes)
        if claimed != args.jobs:
            raise SystemExit(f"{method} on {backend}: {claimed} claims for {args.jobs} jobs")
        verify(url, args.jobs)
        return elapsed


def versions(backend: str, admin_url: str | None) -> str:
    """The database and the settings that decide what a commit costs."""
    if backend == "sqlite":
        return f"SQLite {sqlite3.sqlite_version} (journal_mode=WAL, synchronous=NORMAL)"
    assert admin_url is not None
    if backend == "mysql":
        conn = mysql_db.connect(admin_url)
        try:
            cur = conn.cursor()
            cur.execute("SELECT VERSION(), @@innodb_flush_log_at_trx_commit, @@log_bin")
            version, flush, log_bin = cur.fetchone()
        finally:
            conn.close()
        return f"MySQL {version} (innodb_flush_log_at_trx_commit={flush}, log_bin={log_bin})"
    with psycopg.connect(admin_url) as conn:
        settings = [
            f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
            for name in ("fsync", "synchronous_commit", "wal_sync_method")
        ]
        version = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {version[0] if version else '?'} ({', '.join(settings)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend", choices=("sqlite", "postgres", "mysql", "both", "all"), default="both"
    )
    parser.add_argument("--jobs", type=positive, default=20_000)
    parser.add_argument("--processes", type=positive, default=2)
    parser.add_argument("--batch", type=positive, default=50, help="kojo's claim batch size")
    parser.add_argument("--repeat", type=positive, default=1, help="runs per method; best kept")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("KOJO_TEST_POSTGRES_URL"),
        help="admin URL of a PostgreSQL server (default: KOJO_TEST_POSTGRES_URL)",
    )
    parser.add_argument(
        "--mysql",
        default=os.environ.get("KOJO_TEST_MYSQL_URL"),
        help="admin URL of a MySQL / MariaDB server (default: KOJO_TEST_MYSQL_URL)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    groups = {"both": ["sqlite", "postgres"], "all": ["sqlite", "postgres", "mysql"]}
    backends = groups.get(args.backend, [args.backend])
    admin_urls = {"sqlite": None, "postgres": args.postgres, "mysql": args.mysql}
    for server, env in (("postgres", "KOJO_TEST_POSTGRES_URL"), ("mysql", "KOJO_TEST_MYSQL_URL")):
        if server in backends and not admin_urls[server]:
            if args.backend in groups:
                print(f"{server} skipped: give --{server} URL or set {env}")
                backends.remove(server)
            else:
                parser.error(f"{server} needs --{server} URL or {env}")

    results: list[dict[str, Any]] = []
    print(f"{args.jobs} jobs, {args.processes} processes, kojo batch {args.batch}")
    for backend in backends:
        print(f"{backend}: {versions(backend, admin_urls[backend])}")
    for backend in backends:
        # Alternate the methods so that a busy machine slows both alike.
        times: dict[str, list[float]] = {"baseline": [], "kojo": []}
        for _ in range(args.repeat):
            for method in times:
                times[method].append(run(method, backend, admin_urls[backend], args))
        rates: dict[str, float] = {}
        print(f"{'backend':<10} {'method':<10} {'seconds':>8} {'jobs/s':>9}")
        for method, seconds in times.items():
            best = min(seconds)
            rates[method] = args.jobs / best
            print(f"{backend:<10} {method:<10} {best:>8.2f} {rates[method]:>9.0f}")
            results.append(
                {
                    "backend": backend,
                    "database": versions(backend, admin_urls[backend]),
                    "method": method,
                    "seconds": seconds,
                    "best_seconds": best,
                    "median_seconds": statistics.median(seconds),
                    "jobs_per_second": rates[method],
                }
            )
        ratio = rates["kojo"] / rates["baseline"]
        median_ratio = statistics.median(times["baseline"]) / statistics.median(times["kojo"])
        print(f"{backend:<10} {'ratio':<10} {'':>8} {ratio:>8.1f}x", end="")
        print(f"  (of medians: {median_ratio:.1f}x)" if args.repeat > 1 else "")
        results.append(
            {
                "backend": backend,
                "method": "ratio",
                "kojo_over_baseline": ratio,
                "kojo_over_baseline_medians": median_ratio,
            }
        )

    args.output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = args.output / f"claim-{stamp}.json"
    meta = {
        "jobs": args.jobs,
        "processes": args.processes,
        "batch": args.batch,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "time": stamp,
    }
    path.write_text(json.dumps({"parameters": meta, "results": results}, indent=2) + "\n")
    print(f"written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


if __name__ == "__main__":
    main()
