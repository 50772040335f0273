"""Shared pieces of the benchmarks: throwaway databases, a server to run and its bench app,
enqueue→start latency, PSS, percentiles."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import mysql_db  # noqa: E402  (tests/mysql_db.py: the same on MySQL / MariaDB)
import pg  # noqa: E402  (tests/pg.py: create and drop throwaway databases)

if TYPE_CHECKING:
    import kojo


@contextlib.contextmanager
def database(backend: str, admin_url: str | None) -> Iterator[str]:
    """A fresh, empty database URL for `backend` ("sqlite", "postgres" or "mysql")."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="kojo-bench-") as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    if backend == "mysql":
        if not admin_url:
            raise SystemExit("mysql: give --mysql URL or set KOJO_TEST_MYSQL_URL")
        url = mysql_db.create_database(admin_url)
        try:
            yield url
        finally:
            mysql_db.drop_database(admin_url, url)
        return
    if not admin_url:
        raise SystemExit("postgres: give --postgres URL or set KOJO_TEST_POSTGRES_URL")
    url = pg.create_database(admin_url)
    try:
        yield url
    finally:
        pg.drop_database(admin_url, url)


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.01
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def server(url: str, processes: int, env: dict[str, str] | None = None) -> Iterator[int]:
    """`kojo server start` with the bench app (or `env`'s KOJO_APP); yields the server pid;
    drains it at the end."""
    full_env = dict(os.environ)
    full_env.update(
        {
            "KOJO_DATABASE_URL": url,
            "KOJO_APP": "bench_app:app",
            "KOJO_LOG_LEVEL": "warning",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), full_env.get("PYTHONPATH", "")]),
        }
    )
    full_env.update(env or {})  # a caller's KOJO_APP wins over the bench app
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kojo",
            "server",
            "start",
            "--max-processes",
            str(processes),
            "--shutdown-timeout",
            "5",
            "--host-name",
            f"bench-{os.getpid()}",
        ],
        env=full_env,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_app_client(url: str) -> kojo.App:
    """A client App on `url` with the job types of bench_app.py, installed and registered."""
    import bench_app

    app = bench_app.app.__class__(database=url)
    for job_type in bench_app.app.job_types.values():
        app.add_job_type(job_type)
    app.install()
    app.register_job_types()
    return app


def job_processes(app: kojo.App) -> int:
    """Job processes registered in the database (a started server's tree is up when all are)."""
    return sum(1 for row in app.backend.processes() if row.kind == "job")


def completed_jobs(app: kojo.App, code: str) -> int:
    """Jobs of type `code` ended complete_success."""
    from foundation_helpers import count_by_state

    return sum(
        int(row["jobs"])
        for row in count_by_state(app.backend)
        if row["type_code"] == code and row["assigned_state"] == "complete_success"
    )


def unfinished_left(app: kojo.App, code: str) -> bool:
    """Whether a job of type `code` is still waiting, working or crashed: a seek in
    kojo_job_type_state. Counting the completed jobs instead (a GROUP BY over every job)
    took 10-30 ms of the database per poll: the drain being measured shared its server
    with the harness's counting. Late in a drain the seek is not cheap either (PostgreSQL:
    up to 2.4 ms, stepping over the index entries of the rows claimed since the last
    vacuum), so wait_drained asks every 100 ms."""
    marker = "?" if app.backend.dialect == "sqlite" else "%s"
    row = (
        app.backend.connection()
        .execute(
            "SELECT 1 AS one FROM kojo_job WHERE type_code = "
            f"{marker} AND assigned_state IN ('waiting', 'working', 'crashed') LIMIT 1",
            (code,),
        )
        .fetchone()
    )
    return row is not None


def wait_drained(app: kojo.App, code: str, completed: int, timeout: float) -> None:
    """Wait until no job of type `code` is left to run, then check that `completed` of
    them ended complete_success (counted once)."""
    # Drains are timed by the database's completion times, not by when this loop sees the end.
    wait_for(lambda: not unfinished_left(app, code), timeout, f"the drain of {code}", 0.1)
    done = completed_jobs(app, code)
    if done != completed:
        raise AssertionError(f"{done} jobs of {code} completed, not {completed}")


def last_completed_at(app: kojo.App, code: str) -> datetime:
    """The latest completion of a job of type `code` (there must be one)."""
    from foundation_helpers import last_completion

    completed = last_completion(app.backend, code)
    assert completed is not None
    return completed


def start_latencies_ms(
    app: kojo.App,
    start_log: Path,
    samples: int,
    *,
    spacing: float = 0.02,
    budget: float | None = None,
    timeout: float = 10,
) -> list[float]:
    """Enqueue→start on an idle server, one `bench.latency` job at a time: from before
    app.schedule() to the time.time() its worker wrote first. With a `budget`, sampling
    stops after that many seconds, or after a job that did not start within `timeout`
    (counted as an infinite latency); without one, such a job raises TimeoutError."""
    latencies: list[float] = []
    deadline = None if budget is None else time.monotonic() + budget
    for _ in range(samples):
        if deadline is not None and time.monotonic() > deadline:
            break
        before = time.time()
        job_id = app.schedule("bench.latency")
        try:
            wait_for(lambda: start_log.exists() and start_log.stat().st_size > 0, timeout, "start")
        except TimeoutError:
            if deadline is None:
                raise
            latencies.append(math.inf)
            break
        line = start_log.read_text().split()
        start_log.unlink()
        assert int(line[0]) == job_id
        latencies.append((float(line[1]) - before) * 1000)
        time.sleep(spacing)
    return latencies


def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size of these processes, summed (shared pages counted once)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def timed_workers(target: Callable[[str], None], url: str, processes: int) -> float:
    """Seconds for `processes` forked processes, each running target(url), to all end (a
    raw baseline's loop); a worker's non-zero exit is an error, not a fast run."""
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=target, args=(url,)) for _ in range(processes)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"a baseline worker exited with {worker.exitcode}")
    return time.perf_counter() - started


def mysql_settings(url: str) -> dict[str, object]:
    """The MySQL/MariaDB server's version and commit durability, recorded beside a result."""
    conn = mysql_db.connect(url)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT VERSION(), @@innodb_flush_log_at_trx_commit")
        version, flush = cursor.fetchone()
    finally:
        conn.close()
    return {"server_version": version, "innodb_flush_log_at_trx_commit": flush}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }
