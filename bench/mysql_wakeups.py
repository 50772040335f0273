"""MySQL's polled wake-ups: latency from notify() to another owner's wait(), and the CPU
an idle owner costs (its poller), on the database named by KOJO_TEST_MYSQL_URL.

    scripts/with-mariadb python bench/mysql_wakeups.py [--wakeups 200] [--idle-seconds 20]

- latency while busy: owner A notifies (one committed row in kojo_wakeup) at a random
  point of B's poll period; time until B's wait() returns it. The poll period is then
  mysql_wakeups.POLL_INTERVAL, so the mean should be about half of it.
- latency after a quiet spell (--quiet-samples, each after IDLE_AFTER + 1 s without a
  wake-up): B polls every IDLE_POLL_INTERVAL by then.
- idle: one registered owner doing nothing for --idle-seconds; the CPU time of this
  process (the poller thread) and of the database server (its pid from the
  server's pid file, when readable), as a percentage of one core.
- a server tree (`kojo server start --max-processes 2` with bench_app.py, unless
  --tree-seconds 0): enqueue→start latency of `bench.latency` jobs while busy (one every
  20 ms) and after quiet spells, which the job processes learn of through the tree's
  wake-ups; then, idle, the CPU of every process of the tree (utime + stime from
  /proc/PID/stat, read before and after --tree-seconds) as a percentage of one core,
  and of the database server meanwhile. `--tree-backend sqlite` measures the same tree
  on SQLite instead, for comparison.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import harness

import mysql_db
from kojo.backends import ProcessInfo, open_backend
from kojo.backends.mysql_wakeups import IDLE_AFTER, IDLE_POLL_INTERVAL, POLL_INTERVAL


def info(kind: str) -> ProcessInfo:
    return ProcessInfo("bench", os.getpid(), os.getppid(), "/bench", kind)


def server_cpu_seconds(admin: str) -> float | None:
    """The database server's CPU time so far, if it runs on this host and we may read it."""
    conn = mysql_db.connect(admin)
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@pid_file")
        (pid_file,) = cur.fetchone()
    finally:
        conn.close()
    try:
        pid = int(Path(pid_file).read_text().split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` so far (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def server_tree(url: str, admin: str | None, seconds: float, quiet_samples: int) -> None:
    """Latency through a server tree's wake-ups, then its idle CPU (see the docstring)."""
    app = harness.bench_app_client(url)
    start_log = Path(f"/tmp/kojo-bench-starts-{os.getpid()}.log")
    start_log.unlink(missing_ok=True)
    with harness.server(url, 2, {"KOJO_BENCH_START_LOG": str(start_log)}) as pid:
        harness.wait_for(lambda: harness.job_processes(app) == 2, 60, "job processes")
        time.sleep(1.0)
        busy = harness.start_latencies_ms(app, start_log, 100, spacing=0.02)
        report("enqueue→start, tree busy", [ms / 1000 for ms in busy])
        quiet = []
        for _ in range(quiet_samples):
            time.sleep(IDLE_AFTER + 1 + random.uniform(0, IDLE_POLL_INTERVAL))
            quiet += harness.start_latencies_ms(app, start_log, 1)
        report("enqueue→start, tree after a quiet spell", [ms / 1000 for ms in quiet])
        time.sleep(IDLE_AFTER + 5)  # every poller slows down to its idle polls
        pids = harness.descendants(pid)
        db_before = server_cpu_seconds(admin) if admin else None
        before = {p: process_cpu_seconds(p) for p in pids}
        time.sleep(seconds)
        after = {p: process_cpu_seconds(p) for p in pids}
        db_after = server_cpu_seconds(admin) if admin else None
        total = 0.0
        for p in pids:
            share = 100 * (after[p] - before[p]) / seconds
            total += share
            print(f"  {share:5.2f}%  {process_title(p)}")
        print(
            f"idle server tree ({len(pids)} processes) over {seconds:.0f} s: {total:.2f}% of a core"
        )
        if db_before is not None and db_after is not None:
            db = 100 * (db_after - db_before) / seconds
            print(f"database server meanwhile: {db:.2f}% of a core")
    app.backend.close()


def report(what: str, latencies: list[float]) -> None:
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"wake-up latency {what}, {len(ms)} samples: mean {statistics.mean(ms):.1f} ms, "
        f"p50 {ms[len(ms) // 2]:.1f} ms, max {ms[-1]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wakeups", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--quiet-samples", type=int, default=5)
    parser.add_argument("--tree-seconds", type=float, default=60.0)
    parser.add_argument("--tree-backend", choices=["mysql", "sqlite"], default="mysql")
    parser.add_argument("--skip-owners", action="store_true", help="measure the tree only")
    args = parser.parse_args()
    admin = os.environ[mysql_db.ENV_URL]
    if args.tree_backend == "sqlite":
        with harness.database("sqlite", None) as url:
            server_tree(url, None, args.tree_seconds, args.quiet_samples)
        return
    if not args.skip_owners:
        owners(admin, args)
    if args.tree_seconds > 0:
        url = mysql_db.create_database(admin)
        try:
            server_tree(url, admin, args.tree_seconds, args.quiet_samples)
        finally:
            mysql_db.drop_database(admin, url)


def owners(admin: str, args: argparse.Namespace) -> None:
    """Two owners of this process: latency from one's notify() to the other's wait()."""
    url = mysql_db.create_database(admin)
    try:
        backend = open_backend(url)
        backend.install()
        sender = backend.register_owner(info("sender"))
        receiver = backend.register_owner(info("receiver"))
        receiver.wait(0.5)  # the registrations' own wake-ups, if any

        def wake(n: int) -> float:
            started = time.monotonic()
            backend.notify("bench", str(n))
            while not any(note.data == str(n) for note in receiver.wait(5.0)):
                pass
            return time.monotonic() - started

        busy = []
        for n in range(args.wakeups):
            time.sleep(random.uniform(0, POLL_INTERVAL))
            busy.append(wake(n))
        report(f"busy (poll every {POLL_INTERVAL * 1000:.0f} ms)", busy)
        quiet = []
        for n in range(args.quiet_samples):
            time.sleep(IDLE_AFTER + 1 + random.uniform(0, IDLE_POLL_INTERVAL))
            quiet.append(wake(-1 - n))
        report(f"after a quiet spell (poll every {IDLE_POLL_INTERVAL * 1000:.0f} ms)", quiet)
        sender.close()
        time.sleep(IDLE_AFTER + 1)  # the receiver slows down to its idle polls
        server_before = server_cpu_seconds(admin)
        before = time.process_time()
        time.sleep(args.idle_seconds)
        used = time.process_time() - before
        server_after = server_cpu_seconds(admin)
        print(f"idle owner: {100 * used / args.idle_seconds:.2f}% of a core in its process")
        if server_before is not None and server_after is not None:
            server = server_after - server_before
            print(f"database server meanwhile: {100 * server / args.idle_seconds:.2f}% of a core")
        receiver.close()
        backend.close()
    finally:
        mysql_db.drop_database(admin, url)


if __name__ == "__main__":
    main()
