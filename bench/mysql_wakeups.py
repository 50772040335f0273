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
    args = parser.parse_args()
    admin = os.environ[mysql_db.ENV_URL]
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
