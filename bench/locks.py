"""Mutex speed, hand-off latency and the cost of idle waiters, beside the raw primitive.

    python bench/locks.py [--backend sqlite|postgres|mysql|both|all] [--cycles 2000]
                          [--handoffs 400] [--processes 4] [--idle-waiters 100]
                          [--idle-seconds 10] [--idle-settle 1]
                          [--hold-ms 2] [--gap-ms 5]
                          [--postgres URL] [--mysql URL]

Each backend runs on a fresh database, kojo and its baseline in the same run:

- uncontended: acquire+release of one mutex in a loop, in this process.
  kojo: `with app.mutex(name): pass`. Baseline, PostgreSQL: `SELECT
  pg_advisory_lock(k)` / `pg_advisory_unlock(k)` on one connection; MySQL:
  `SELECT GET_LOCK(name, -1)` / `RELEASE_LOCK(name)` on one connection; SQLite:
  `flock(LOCK_EX)` / `flock(LOCK_UN)` on a file (what kojo's liveness rests on).
- hand-off: `--processes` forked processes take one mutex in turn; each holds
  it `--hold-ms` (2) ±50%, then sleeps `--gap-ms` (5) ±50%, so the
  others are blocked waiting when it lets go (with so short a gap, one coming back
  from its pause often takes it first: `--processes 2 --hold-ms 400 --gap-ms 160`
  measures only waiters woken by the release, if that takes under 60 ms). Hand-off
  latency = the next holder's "got it" time minus the previous holder's time just
  before it called release (CLOCK_MONOTONIC is system-wide). The baseline is the
  same loop over a blocking `pg_advisory_lock` / `GET_LOCK` / `flock`, which the
  kernel or server hands over directly.
- idle waiters: this process holds a mutex while `--idle-waiters` forked
  processes block on it; the CPU they use (user + system, from /proc) over
  `--idle-seconds` (from `--idle-settle` seconds after the last one waits: on MySQL
  a process's poller keeps its busy rate for its first 5 s, so 6 measures the steady
  state), plus on PostgreSQL that of their server backends, on MySQL
  that of the whole server process (its other clients included: an upper bound,
  when the server runs on this machine and its pid file is readable), as a
  percentage of one core. Then the mutex is released and every waiter must get
  it in turn and exit.

Results are printed and written to bench/results/locks-<time>.json.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from harness import ROOT, database, mysql_settings, summary, wait_for

import kojo
import mysql_db

RAW_KEY = (0x6B6F6A6F + 7, 1)  # an advisory key of its own, apart from kojo's owners
TICKS = os.sysconf("SC_CLK_TCK")


def fork(body: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            body()
        except BaseException as exc:  # the child reports and leaves, whatever happened
            print(f"bench child {os.getpid()}: {exc!r}", file=sys.stderr)
            code = 1
        os._exit(code)
    return pid


def join(pids: list[int]) -> None:
    failed = [pid for pid in pids if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0]
    if failed:
        raise SystemExit(f"bench children failed: {failed}")


# -- uncontended ----------------------------------------------------------------------------


def uncontended_kojo(url: str, cycles: int) -> float:
    app = kojo.App(database=url)
    for _ in range(50):  # connect, register the owner, create the rows
        with app.mutex("uncontended"):
            pass
    started = time.perf_counter()
    for _ in range(cycles):
        with app.mutex("uncontended"):
            pass
    elapsed = time.perf_counter() - started
    app.owner().close()
    return cycles / elapsed


def uncontended_raw(url: str, lock_file: Path, cycles: int) -> float:
    with raw_lock(url, lock_file) as (lock, unlock):
        for _ in range(50):
            lock()
            unlock()
        started = time.perf_counter()
        for _ in range(cycles):
            lock()
            unlock()
        return cycles / (time.perf_counter() - started)


@contextmanager
def raw_lock(url: str, lock_file: Path) -> Iterator[tuple[Callable[[], None], Callable[[], None]]]:
    """(lock, unlock) of the raw primitive: a blocking advisory lock or flock."""
    if url.startswith("sqlite"):
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            yield (lambda: fcntl.flock(fd, fcntl.LOCK_EX), lambda: fcntl.flock(fd, fcntl.LOCK_UN))
        finally:
            os.close(fd)
        return
    if url.startswith("mysql"):
        my = mysql_db.connect(url)
        name = f"kojo-bench-raw.{mysql_db.name_of(url)}"[:64]  # named locks are server-wide
        cursor = my.cursor()
        try:
            yield (
                lambda: cursor.execute("SELECT GET_LOCK(%s, -1)", (name,)),
                lambda: cursor.execute("SELECT RELEASE_LOCK(%s)", (name,)),
            )
        finally:
            my.close()
        return
    with psycopg.connect(url, autocommit=True) as conn:
        yield (
            lambda: conn.execute("SELECT pg_advisory_lock(%s, %s)", RAW_KEY).fetchone(),
            lambda: conn.execute("SELECT pg_advisory_unlock(%s, %s)", RAW_KEY).fetchone(),
        )


# -- hand-off ------------------------------------------------------------------------------


def handoff_worker(
    url: str, log: Path, turns: int, method: str, lock_file: Path, hold: float, gap: float
) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    pid = os.getpid()

    def note(kind: str) -> None:
        os.write(fd, f"{kind} {pid} {time.monotonic_ns()}\n".encode())

    if method == "kojo":
        app = kojo.App(database=url)
        for _ in range(turns):
            with app.mutex("handoff"):
                note("got")
                time.sleep(hold * random.uniform(0.5, 1.5))
                note("release")
            time.sleep(gap * random.uniform(0.5, 1.5))
        app.owner().close()
        return
    with raw_lock(url, lock_file) as (lock, unlock):
        for _ in range(turns):
            lock()
            note("got")
            time.sleep(hold * random.uniform(0.5, 1.5))
            note("release")
            unlock()
            time.sleep(gap * random.uniform(0.5, 1.5))


def handoffs(url: str, method: str, args: argparse.Namespace, folder: Path) -> list[float]:
    """Milliseconds from a holder starting to release to the next holder having it."""
    log = folder / f"handoff-{method}.log"
    log.write_text("")
    turns = max(1, args.handoffs // args.processes)
    hold, gap = args.hold_ms / 1000, args.gap_ms / 1000
    lock_file = folder / "raw.lock"
    pids = [
        fork(lambda: handoff_worker(url, log, turns, method, lock_file, hold, gap))
        for _ in range(args.processes)
    ]
    join(pids)
    delays = []
    last: tuple[int, int] | None = None  # (pid, ns) of the last "release"
    for line in log.read_text().splitlines():
        kind, pid, ns = line.split()
        if kind == "release":
            last = (int(pid), int(ns))
        elif last is not None and last[0] != int(pid):
            delays.append((int(ns) - last[1]) / 1e6)
            last = None
    return delays


# -- idle waiters ----------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return total / TICKS


def server_backends(url: str) -> list[int]:
    """Pids of the PostgreSQL backends serving `url`'s database (same machine only); on
    MySQL, the server's own pid (one process, a thread per connection), if readable."""
    if url.startswith("sqlite"):
        return []
    if url.startswith("mysql"):
        my = mysql_db.connect(url)
        try:
            cursor = my.cursor()
            cursor.execute("SELECT @@pid_file")
            (pid_file,) = cursor.fetchone()
        finally:
            my.close()
        try:
            return [int(Path(pid_file).read_text().strip())]
        except (OSError, ValueError):
            return []
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


def idle_waiter(url: str) -> None:
    app = kojo.App(database=url)
    with app.mutex("idle"):
        pass
    app.owner().close()


def idle_waiters(url: str, waiters: int, seconds: float, settle: float) -> dict[str, Any]:
    app = kojo.App(database=url)
    held = app.mutex("idle").acquire()
    pids = [fork(lambda: idle_waiter(url)) for _ in range(waiters)]
    try:

        def all_waiting() -> bool:
            return sum(r["state"] == "waiting" for r in app.locks()) == waiters

        wait_for(all_waiting, 120, f"{waiters} waiters")
        time.sleep(settle)  # let start-up settle
        backends = server_backends(url)
        clients_before, server_before = cpu_seconds(pids), cpu_seconds(backends)
        started = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        clients = (cpu_seconds(pids) - clients_before) / elapsed * 100
        server = (cpu_seconds(backends) - server_before) / elapsed * 100
        drain_started = time.monotonic()
        held.release()
        join(pids)
        drained = time.monotonic() - drain_started
    except BaseException:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        raise
    app.owner().close()
    return {
        "waiters": waiters,
        "seconds": seconds,
        "settle_seconds": settle,
        "clients_cpu_percent_of_one_core": clients,
        "server_cpu_percent_of_one_core": server,
        "drain_seconds": drained,
    }


# -- driver --------------------------------------------------------------------------------


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kojo-bench-locks-") as tmp:
        folder = Path(tmp)
        with database(backend, args.admin_urls[backend]) as url:
            kojo.App(database=url).install()
            raw = uncontended_raw(url, folder / "raw.lock", args.cycles)
            ours = uncontended_kojo(url, args.cycles)
            entry["uncontended_per_second"] = {"kojo": ours, "baseline": raw, "ratio": raw / ours}
            print(
                f"{backend}: uncontended acquire+release/s: kojo {ours:,.0f}, "
                f"baseline {raw:,.0f} ({raw / ours:.1f}x)"
            )
            for method in ("baseline", "kojo"):
                delays = handoffs(url, method, args, folder)
                entry[f"handoff_ms_{method}"] = {"count": len(delays), **summary(delays)}
            ours_h, raw_h = entry["handoff_ms_kojo"], entry["handoff_ms_baseline"]
            print(
                f"{backend}: hand-off ms p50/p99: kojo {ours_h['p50']:.2f}/{ours_h['p99']:.2f}, "
                f"baseline {raw_h['p50']:.2f}/{raw_h['p99']:.2f} "
                f"({ours_h['p99'] / raw_h['p99']:.1f}x at p99; {ours_h['count']} hand-offs)"
            )
            if args.idle_waiters:
                idle = idle_waiters(url, args.idle_waiters, args.idle_seconds, args.idle_settle)
                entry["idle_waiters"] = idle
                print(
                    f"{backend}: {idle['waiters']} idle waiters over {idle['seconds']:.0f} s: "
                    f"clients {idle['clients_cpu_percent_of_one_core']:.2f}% of a core, "
                    f"server {idle['server_cpu_percent_of_one_core']:.2f}%; all served in "
                    f"{idle['drain_seconds']:.2f} s after the release"
                )
            if backend == "postgres":
                with psycopg.connect(url) as conn:
                    entry["settings"] = {
                        name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                        for name in ("fsync", "synchronous_commit", "server_version")
                    }
            if backend == "mysql":
                entry["settings"] = mysql_settings(url)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend", choices=["sqlite", "postgres", "mysql", "both", "all"], default="both"
    )
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--handoffs", type=int, default=400)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--idle-waiters", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--idle-settle", type=float, default=1.0)
    parser.add_argument("--hold-ms", type=float, default=2.0)
    parser.add_argument("--gap-ms", type=float, default=5.0)
    parser.add_argument("--postgres", default=os.environ.get("KOJO_TEST_POSTGRES_URL"))
    parser.add_argument("--mysql", default=os.environ.get("KOJO_TEST_MYSQL_URL"))
    args = parser.parse_args()
    args.admin_urls = {"sqlite": None, "postgres": args.postgres, "mysql": args.mysql}
    groups = {"both": ["sqlite", "postgres"], "all": ["sqlite", "postgres", "mysql"]}
    backends = groups.get(args.backend, [args.backend])
    for server in ("postgres", "mysql"):
        if server in backends and not args.admin_urls[server]:
            if args.backend not in groups:
                parser.error(f"{server} needs --{server} URL or KOJO_TEST_{server.upper()}_URL")
            backends.remove(server)
            print(f"{server}: skipped (no --{server} and no KOJO_TEST_{server.upper()}_URL)")
    results: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "args": {k: v for k, v in vars(args).items() if k != "admin_urls"}
        | {"postgres": bool(args.postgres), "mysql": bool(args.mysql)},
        "backends": {},
    }
    for backend in backends:
        results["backends"][backend] = run_backend(backend, args)
    out = ROOT / "bench" / "results" / f"locks-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
