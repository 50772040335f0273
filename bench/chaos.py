"""Chaos run: real kojo servers under database and process faults; one table row per fault.

    python bench/chaos.py [--quick | --seconds N] [--only NAME[,NAME]] [--jobs N]
                          [--backend sqlite|postgres|mysql] [--processes 2] [--locks 3]
                          [--drain 120] [--seed 1]

Scenarios (`--only` takes these names; `kill-9` and `sigstop` run on every backend, and
`kill-9/sqlite` etc. choose one; `--backend mysql` runs the scenarios of one backend):

- pg-restart     PostgreSQL `pg_ctl restart -m fast` every 20 s (every seconds/3 when
                 shorter), two servers (two host names) on one private cluster;
- pg-stop        one stop of 10 s (at most 60% of the run): pg_ctl stop, wait, start;
- pg-terminate   pg_terminate_backend of every session of the database every 2 s;
- kill-9         SIGKILL of a random kojo process (server, root, maintainer or job, at
                 least 1 s old) every second; a server that dies is started again with
                 the same host name, as a supervisor would (SQLite: one host; PostgreSQL
                 and MySQL: two);
- sigstop        SIGSTOP of a job process working a `chaos_frozen` job (timeout 1 s) until
                 it is dead or 4 s have passed: the root must kill it, the job is crashed
                 and re-run (every backend);
- disk-full      SQLite on a 32 MiB tmpfs (root only), filled with a ballast file three
                 times (10 s each, or half of a third of the run), then freed;
- mysql-kill     KILL of every session of the database every 2 s (MySQL's
                 pg-terminate);
- mysql-restart  a clean MariaDB shutdown (SIGTERM, as `mariadb-admin shutdown`) and a
                 start every 20 s (every seconds/3 when shorter): MySQL's pg-restart;
- mysql-crash    the same with SIGKILL of mariadbd (InnoDB recovers at the start);
- mysql-stop     one clean shutdown of 10 s (at most 60% of the run), then a start.

mysql-kill, kill-9/mysql and sigstop/mysql run on a database of their own in the server
`KOJO_TEST_MYSQL_URL` names (run under scripts/with-mariadb for a throwaway one),
dropped afterwards. mysql-restart, mysql-crash and mysql-stop run on a private MariaDB
(tests/mysql_cluster.py, its data in the temp folder) that the run shuts down, kills
and starts; they need the MariaDB server binaries, not KOJO_TEST_MYSQL_URL.

Every scenario runs the same load: `--jobs` short jobs (`chaos_work`, 2-10 ms; default
5,000 per 60 s of run) made as the run starts but due evenly over it, so that there
is due work at every moment (a fault never meets an idle queue and the time to the first
job after recovery is kojo's, not the harness's); a cron type `* * * * *`; and `--locks`
client processes taking `app.mutex("chaos")` in a loop, recording each hold. The servers
are real `kojo server start` subprocesses (tests/processes/workers_harness.py), PostgreSQL
is a private cluster (tests/pg_cluster.py) that the run restarts, stops and whose
sessions it kills.

After the run, a bounded drain (`--drain` seconds), then a graceful stop (SIGTERM), then
the counts: jobs scheduled, lost (not complete_success, or acknowledged but missing),
run twice (more than one `end` record; in brackets those with `times_worked > 1`, re-run
after their process was found dead), panicked, crashed (`times_crashed > 0`), mutex
overlaps (two processes inside the mutex at once while both leases were released
cleanly; overlaps where one lease raised LeaseLost are documented behaviour and listed
in the details), fencing tokens not increasing (holds sorted by entry time), cron
minutes missed/doubled, unexpected server exits, faults injected, and the seconds from
the database coming back (or the disk freed) to the first job start, the worst over the
faults. The exit code is 1 if any of lost, panicked, overlaps, bad tokens, cron
missed/doubled, unexpected server exits, jobs run by two live processes at once, frozen
processes not killed, lock errors that are not kojo.KojoError, kojo processes left
behind, a corrupt SQLite file or an error of the harness itself is non-zero.
Results are printed and written to bench/results/chaos-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "tests" / "processes", ROOT / "tests", ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import chaos_workers  # noqa: E402  (bench/chaos_workers.py: the job types)
from test_database_faults import _fill, patiently  # noqa: E402  (tests/processes)
from workers_harness import (  # noqa: E402  (tests/processes)
    MANAGED,
    TITLE,
    Server,
    Tree,
    _read_proc,
    become_subreaper,
    kojo_processes,
    reap_orphans,
)

import kojo  # noqa: E402
import mysql_db  # noqa: E402  (tests/mysql_db.py)
from foundation_helpers import count_by_state as _count_by_state  # noqa: E402  (tests/)
from kojo.backends.errors import database_errors  # noqa: E402
from mysql_cluster import MariaDB  # noqa: E402  (tests/mysql_cluster.py)
from pg_cluster import Cluster  # noqa: E402  (tests/pg_cluster.py)

BENCH = ROOT / "bench"
APP_REF = "chaos_workers:app"
LOCK_NAME = "chaos"
WORK = "chaos_work"
FROZEN = "chaos_frozen"
TICK = "chaos_tick"
JOBS_PER_MINUTE = 5000
DUE_STEP = 0.1  # seconds between two due times of the load
MIN_VICTIM_AGE = 1.0  # kill -9 spares younger processes (the root delays crash loops)
FREEZE_HOLD = 4.0  # seconds after its job started a frozen process must be dead by
TMPFS_SIZE = "32M"
FAMILIES = [
    "pg-restart",
    "pg-stop",
    "pg-terminate",
    "kill-9",
    "sigstop",
    "disk-full",
    "mysql-kill",
    "mysql-restart",
    "mysql-crash",
    "mysql-stop",
]
# The MySQL faults of the database server itself run on a private MariaDB
# (tests/mysql_cluster.py); the others on a database of the shared server.
OWN_MARIADB = {"mysql-restart", "mysql-crash", "mysql-stop"}
BACKENDS = ("sqlite", "postgres", "mysql")


# -- the harness: a Tree of chaos_workers, servers kept running as a supervisor would ----


class ChaosTree(Tree):
    """A `Tree` (workers_harness) whose servers and App use `chaos_workers`."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.tmp_path = tmp_path
        self.record_path = tmp_path / "record.jsonl"
        self.freeze_path = tmp_path / "frozen.jsonl"
        self.app = chaos_workers.register(kojo.App(database=url))
        self.servers: list[Server] = []

    def env(self, tag: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = super().env(tag, extra)
        env["KOJO_APP"] = APP_REF
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH), env["PYTHONPATH"]])
        env[chaos_workers.FREEZE_ENV] = str(self.freeze_path)
        return env


class Supervisor:
    """One server per host name, started again whenever it exits (as systemd would)."""

    def __init__(self, tree: ChaosTree, hosts: list[str], processes: int) -> None:
        self.tree = tree
        self.processes = processes
        self.slots: dict[str, Server] = {}
        self.killed: set[int] = set()  # servers the run killed on purpose
        self.unexpected: list[str] = []
        self.restarts = 0
        self.next_reap = 0.0
        for host in hosts:
            self.slots[host] = tree.start(host_name=host, max_processes=processes)

    def check(self) -> None:
        for host, server in self.slots.items():
            code = server.exited()
            if code is None:
                continue
            MANAGED.discard(server.pid)
            if server.pid not in self.killed:
                tail = server.stderr().strip().splitlines()[-1:] or [""]
                self.unexpected.append(f"{host} pid {server.pid} exit {code}: {tail[0][:200]}")
            self.slots[host] = self.tree.start(
                host_name=host, max_processes=self.processes, ready=False
            )
            self.restarts += 1
        now = time.monotonic()
        if now >= self.next_reap:  # orphans of killed servers re-parent to us
            reap_orphans()
            self.next_reap = now + 1.0

    def stop(self, timeout: float = 30.0) -> None:
        """Drain every server (SIGTERM); a non-zero exit or a hang is unexpected."""
        for host, server in self.slots.items():
            # A server started again a moment ago may still be importing, before its
            # signal handlers exist: SIGTERM would kill it (exit -15), not drain it.
            deadline = time.monotonic() + timeout
            while server.exited() is None and "Server started" not in server.log_path.read_text():
                if time.monotonic() > deadline:
                    self.unexpected.append(f"{host} pid {server.pid} never started")
                    break
                time.sleep(0.05)
        for server in self.slots.values():
            if server.exited() is None:
                server.signal(signal.SIGTERM)
        for host, server in self.slots.items():
            try:
                code = server.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.unexpected.append(f"{host} pid {server.pid} did not drain in {timeout:g} s")
                server.stop()
                continue
            if code != 0 and server.pid not in self.killed:
                self.unexpected.append(f"{host} pid {server.pid} exit {code} at the final drain")
            MANAGED.discard(server.pid)


# -- lock clients ---------------------------------------------------------------------------


def lock_client(url: str, path: str, until: float) -> None:
    """Until `until` (epoch): take app.mutex("chaos"), hold it 2-20 ms, release; one JSON
    line per hold (token, enter, exit, pid, outcome) or failed attempt."""
    app = kojo.App(database=url)
    rng = random.Random(os.getpid())
    pid = os.getpid()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(**line: Any) -> None:
        os.write(fd, (json.dumps({"pid": pid, **line}) + "\n").encode())

    while time.time() < until:
        try:
            lease = app.mutex(LOCK_NAME, timeout=5).acquire()
        except kojo.LockTimeout:
            write(event="timeout")
            continue
        except Exception as exc:  # kojo's errors, or anything that leaks through
            kind = "error" if isinstance(exc, kojo.KojoError) else "leak"
            write(event=kind, error=type(exc).__name__, message=str(exc)[:300])
            time.sleep(0.05)
            continue
        enter = time.time()
        time.sleep(rng.uniform(0.002, 0.02))
        leave = time.time()
        outcome = "ok"
        try:
            lease.release()
        except kojo.LeaseLost:
            outcome = "lost"
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {str(exc)[:200]}"
        write(event="hold", token=lease.token, enter=enter, exit=leave, outcome=outcome)
        time.sleep(rng.uniform(0, 0.01))


class LockLoad:
    """`count` lock_client subprocesses (this script with --lock-client)."""

    def __init__(self, url: str, path: Path, count: int, until: float) -> None:
        self.path = path
        self.until = until
        env = {k: v for k, v in os.environ.items() if not k.startswith("KOJO_")}
        args = [sys.executable, __file__, "--lock-client", url, str(path), repr(until)]
        self.err_path = path.with_suffix(".err")
        with open(self.err_path, "ab") as err:
            self.procs = [
                subprocess.Popen(
                    args,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,
                )
                for _ in range(count)
            ]

    def stop(self) -> list[int]:
        """Wait for the clients (they stop at `until`); their exit codes."""
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(max(1.0, self.until + 15 - time.time())))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes

    def analyse(self) -> dict[str, Any]:
        try:
            lines = [json.loads(t) for t in self.path.read_text().splitlines() if t]
        except FileNotFoundError:
            lines = []
        try:
            err = self.err_path.read_text()
        except FileNotFoundError:
            err = ""
        holds = sorted((x for x in lines if x["event"] == "hold"), key=lambda x: x["enter"])
        overlaps, lost_overlaps = 0, 0
        examples: list[dict[str, Any]] = []
        open_holds: list[dict[str, Any]] = []
        for hold in holds:
            open_holds = [h for h in open_holds if h["exit"] > hold["enter"]]
            others = [h for h in open_holds if h["pid"] != hold["pid"]]
            if others:
                if hold["outcome"] == "ok" and all(h["outcome"] == "ok" for h in others):
                    overlaps += 1
                    if len(examples) < 3:
                        examples.append({"hold": hold, "while": others})
                else:
                    lost_overlaps += 1
            open_holds.append(hold)
        tokens = [h["token"] for h in holds]
        bad = [(holds[i - 1], holds[i]) for i in range(1, len(holds)) if tokens[i] <= tokens[i - 1]]
        errors = Counter(
            f"{x['event']}: {x.get('error', '')}"
            for x in lines
            if x["event"] in ("error", "leak", "timeout")
        )
        return {
            "holds": len(holds),
            "overlaps": overlaps,
            "overlaps_with_lost_lease": lost_overlaps,
            "overlap_examples": examples,
            "bad_tokens": len(bad),
            "bad_token_examples": bad[:3],
            "duplicate_tokens": len(tokens) - len(set(tokens)),
            "lost_leases": sum(h["outcome"] == "lost" for h in holds),
            "release_errors": sum(h["outcome"] not in ("ok", "lost") for h in holds),
            "failed_attempts": dict(errors),
            "leaks": sum(x["event"] == "leak" for x in lines),
            "stderr_tracebacks": err.count("Traceback"),
            "stderr_top": Counter(_shape(line) for line in err.splitlines()).most_common(4),
        }


# -- one run --------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    backend: str
    tree: ChaosTree
    supervisor: Supervisor
    cluster: Cluster | None
    database: str
    seconds: float
    rng: random.Random
    mariadb: MariaDB | None = None
    started: float = 0.0  # epoch
    faults: int = 0
    fault_log: list[str] = field(default_factory=list)
    recoveries: list[float] = field(default_factory=list)  # epoch: database back
    notes: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def end(self) -> float:
        return self.started + self.seconds

    def at(self, offset: float) -> float:
        return self.started + offset

    def wait_until(self, moment: float) -> None:
        """Sleep until `moment` (epoch), keeping the servers running meanwhile."""
        while (left := moment - time.time()) > 0:
            self.supervisor.check()
            time.sleep(min(0.05, left))

    def fault(self, what: str) -> None:
        self.faults += 1
        self.fault_log.append(f"+{time.time() - self.started:.1f}s {what}")

    def back(self) -> None:
        self.recoveries.append(time.time())


@contextlib.contextmanager
def small_disk(folder: Path) -> Iterator[Path]:
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"disk-full: cannot mount a tmpfs (root needed): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def schedule_load(app: kojo.App, jobs: int, seconds: float, rng: random.Random) -> list[int]:
    """`jobs` chaos_work jobs of 2-10 ms, due evenly over the `seconds` from now."""
    steps = max(1, int(seconds / DUE_STEP))
    ids: list[int] = []
    with app.backend.write():
        for step in range(steps):
            n = jobs * (step + 1) // steps - jobs * step // steps
            payloads = [{"seconds": round(rng.uniform(0.002, 0.01), 4)} for _ in range(n)]
            if payloads:
                ids += app.schedule_many(WORK, payloads, delay=step * DUE_STEP)
    return ids


def count_by_state(app: kojo.App) -> list[dict[str, Any]]:
    with database_errors():
        return _count_by_state(app.backend)


def drain(run: Run, ids: set[int], timeout: float) -> float | None:
    """Wait until every job made for the run is complete_success; the seconds it took
    (None: the time ran out)."""
    app = run.tree.app
    start = time.monotonic()
    while True:
        counts = patiently(lambda: count_by_state(app))
        pending = sum(
            int(r["jobs"])
            for r in counts
            if r["type_code"] != TICK and r["assigned_state"] != "complete_success"
        )
        ticks = patiently(lambda: app.jobs(type_code=TICK, limit=1000))
        pending += sum(
            1
            for r in ticks
            if r["cron_fire_date_time"].timestamp() <= run.end
            and r["assigned_state"] != "complete_success"
        )
        if pending == 0:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        run.wait_until(time.time() + 0.5)


def server_logs(servers: list[Server]) -> dict[str, Any]:
    """Log levels of every server's JSON lines; error lines and warnings by kind."""
    levels: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    tracebacks = 0
    for server in servers:
        try:
            text = server.log_path.read_text()
        except FileNotFoundError:
            text = ""
        for raw in text.splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                levels["not-json"] += 1
                continue
            level = str(line.get("level"))
            levels[level] += 1
            message = _shape(" ".join(str(line.get("message", "")).split()))
            if level in ("error", "critical"):
                exception = (line.get("context") or {}).get("exception") or {}
                if exception:
                    message += f" [{exception.get('class')}: {exception.get('message')}"
                    message += f" at {(exception.get('trace') or ['?'])[-3:]}]"
                errors[f"{level}: {message}"] += 1
            elif level == "warning":
                warnings[message] += 1
        tracebacks += server.stderr().count("Traceback")
    return {
        "levels": dict(levels),
        "errors": errors.most_common(8),
        "warnings": warnings.most_common(4),
        "tracebacks": tracebacks,
    }


def _shape(message: str) -> str:
    """A log message with its numbers blanked, to count messages of one kind."""
    out, digits = [], False
    for ch in message[:160]:
        if ch.isdigit():
            if not digits:
                out.append("N")
            digits = True
        else:
            out.append(ch)
            digits = False
    return "".join(out)


def reruns_while_alive(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Jobs started more than once, and those whose second start came while the process of
    the first one was still alive (it recorded something later): a re-run before a proven
    death, unless that process had stopped claiming."""
    last_seen: dict[int, float] = {}
    starts: dict[int, list[dict[str, Any]]] = {}
    for line in records:
        last_seen[line["pid"]] = max(last_seen.get(line["pid"], 0.0), line["t"])
        if line["event"] == "start":
            starts.setdefault(line["id"], []).append(line)
    alive, examples = 0, []
    rerun = {job_id: lines for job_id, lines in starts.items() if len(lines) > 1}
    for job_id, lines in rerun.items():
        lines.sort(key=lambda line: line["t"])
        first, second = lines[0], lines[1]
        if last_seen[first["pid"]] > second["t"]:
            alive += 1
            if len(examples) < 3:
                later = last_seen[first["pid"]] - second["t"]
                examples.append(
                    {"id": job_id, "first_pid": first["pid"], "alive_for_s": round(later, 3)}
                )
    return {"reruns": len(rerun), "alive": alive, "examples": examples}


def analyse(run: Run, acked: set[int], drained: float | None) -> dict[str, Any]:
    app = run.tree.app
    rows = patiently(lambda: app.jobs(limit=1_000_000))
    considered = [
        r
        for r in rows
        if r["type_code"] in (WORK, FROZEN)
        or (r["type_code"] == TICK and r["cron_fire_date_time"].timestamp() <= run.end)
    ]
    by_id = {int(r["kojo_job_id"]): r for r in considered}
    missing = sorted(acked - set(by_id))
    not_done = [r for r in considered if r["assigned_state"] != "complete_success"]
    records = run.tree.records()
    ends = Counter(r["id"] for r in records if r["event"] == "end")
    starts = sorted(r["t"] for r in records if r["event"] == "start")
    twice = [job_id for job_id, n in ends.items() if n > 1]
    proven = [j for j in twice if j in by_id and int(by_id[j]["times_worked"]) > 1]
    concurrent = [r for r in records if r["event"] == "concurrent"]
    rerun_alive = reruns_while_alive(records)
    panicked = [r for r in considered if r["assigned_state"] == "panicked"]
    crashed = [r for r in considered if int(r["times_crashed"]) > 0]

    # cron: every minute boundary the run went through has exactly one job
    ticks = [r for r in rows if r["type_code"] == TICK]
    fires = Counter(r["cron_fire_date_time"].timestamp() for r in ticks)
    first = math.floor(run.started / 60) * 60 + 60
    boundaries = [m for m in range(int(first), int(run.end) + 1, 60)]
    missed = [m for m in boundaries if fires.get(float(m), 0) == 0]
    doubled = [m for m, n in fires.items() if n > 1]

    delays = []
    for moment in run.recoveries:
        after = [t for t in starts if t >= moment]
        delays.append(after[0] - moment if after else math.inf)

    return {
        "scheduled": len(considered),
        "lost": len(not_done) + len(missing),
        "lost_examples": [
            {k: r[k] for k in ("kojo_job_id", "type_code", "assigned_state", "times_crashed")}
            for r in not_done[:5]
        ],
        "acked_missing": missing[:10],
        "states": dict(Counter(r["assigned_state"] for r in considered)),
        "twice": len(twice),
        "twice_proven": len(proven),
        "twice_examples": [
            {
                "id": j,
                "ends": ends[j],
                "times_worked": by_id[j]["times_worked"] if j in by_id else None,
                "times_crashed": by_id[j]["times_crashed"] if j in by_id else None,
            }
            for j in twice[:5]
        ],
        "concurrent": len(concurrent),
        "reruns": rerun_alive["reruns"],
        "rerun_while_first_alive": rerun_alive["alive"],
        "rerun_while_first_alive_examples": rerun_alive["examples"],
        "panicked": len(panicked),
        "panicked_examples": [
            {k: r[k] for k in ("kojo_job_id", "type_code", "times_crashed", "last_error")}
            for r in panicked[:3]
        ],
        "crashed": len(crashed),
        "crashed_by_type": dict(Counter(r["type_code"] for r in crashed)),
        "cron_minutes": len(boundaries),
        "cron_missed": len(missed),
        "cron_doubled": len(doubled),
        "recovery_delays": [round(d, 3) for d in delays],
        "first_job_after_recovery": max(delays) if delays else None,
        "drain_seconds": None if drained is None else round(drained, 2),
    }


def execute(
    name: str,
    backend: str,
    hosts: int,
    body: Callable[[Run], None],
    args: argparse.Namespace,
    cluster: Cluster | None,
    number: int,
    mariadb: MariaDB | None = None,
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="kojo-chaos-"))
    rng = random.Random(args.seed * 1000 + number)
    jobs = args.jobs if args.jobs is not None else round(JOBS_PER_MINUTE * args.seconds / 60)
    with contextlib.ExitStack() as stack:
        if args.keep:
            print(f"    files in {tmp}", flush=True)
        else:
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        database = f"chaos_{number}"
        if backend == "postgres":
            assert cluster is not None
            url = cluster.create_database(database)
        elif backend == "mysql" and mariadb is not None:
            url = mariadb.create_database(database)
        elif backend == "mysql":
            url = mysql_database(stack)
        elif name == "disk-full":
            disk = stack.enter_context(small_disk(tmp / "disk"))
            url = f"sqlite:///{disk}/kojo.db"
        else:
            url = f"sqlite:///{tmp}/kojo.db"
        tree = ChaosTree(url, tmp)
        stack.callback(tree.close)
        tree.app.install()
        tree.app.register_job_types()
        names = ["chaos-a", "chaos-b"][:hosts]
        supervisor = Supervisor(tree, names, args.processes)
        run = Run(name, backend, tree, supervisor, cluster, database, args.seconds, rng, mariadb)
        run.started = time.time()
        acked = set(schedule_load(tree.app, jobs, args.seconds, rng))
        locks = LockLoad(url, tmp / "locks.jsonl", args.locks, run.end) if args.locks else None
        try:
            body(run)
            run.wait_until(run.end)
        finally:
            if backend == "postgres" and cluster is not None:
                ensure_up(cluster)
            if mariadb is not None and not mariadb.running():
                mariadb.start()
        acked |= set(run.notes.pop("acked", []))
        drained = drain(run, acked, args.drain)
        lock_codes = locks.stop() if locks else []
        supervisor.stop()
        time.sleep(0.5)
        left = kojo_processes()
        for proc in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        result = analyse(run, acked, drained)
        result.update(
            {
                "scenario": name,
                "backend": backend,
                "seconds": args.seconds,
                "jobs_requested": jobs,
                "faults": run.faults,
                "fault_log": run.fault_log,
                "server_exits": len(supervisor.unexpected),
                "server_exit_details": supervisor.unexpected,
                "server_restarts": supervisor.restarts,
                "left_behind": [p.cmdline for p in left],
                "logs": server_logs(tree.servers),
                "notes": run.notes,
                "failures": list(run.failures),
            }
        )
        if locks:
            result["locks"] = locks.analyse()
            result["locks"]["client_exit_codes"] = lock_codes
        if backend == "sqlite":
            result["integrity"] = integrity(url)
    reap_orphans()
    return result


def mysql_database(stack: contextlib.ExitStack) -> str:
    """A database of the run's own on the server KOJO_TEST_MYSQL_URL names, dropped at
    the end (after the tree is closed: callbacks run last in, first out)."""
    admin = mysql_db.admin_url_from_env()
    if not admin:
        raise RuntimeError(mysql_db.MISSING_URL_MESSAGE)
    url = mysql_db.create_database(admin)
    stack.callback(mysql_db.drop_database, admin, url)
    return url


def ensure_up(cluster: Cluster) -> None:
    """Start the cluster if a fault left it stopped (an error in the middle of pg-stop)."""
    try:
        cluster.execute("SELECT 1")
    except psycopg.Error:
        cluster.start()


def integrity(url: str) -> str:
    path = url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


# -- the faults -----------------------------------------------------------------------------


def restarts(run: Run, server: Cluster | MariaDB, mode: str, what: str) -> None:
    """`server.restart(mode)` every 20 s (every seconds/3 when shorter)."""
    interval = min(20.0, run.seconds / 3)
    moment = run.at(interval)
    while moment < run.end:
        run.wait_until(moment)
        run.fault(what)
        server.restart(mode)
        run.back()
        moment += interval


def outage(run: Run, server: Cluster | MariaDB, what: str) -> None:
    """One stop of 10 s (at most 60% of the run), then a start."""
    seconds = min(10.0, run.seconds * 0.6)
    run.wait_until(run.at(min(run.seconds * 0.25, run.seconds - seconds - 1)))
    run.fault(f"{what} for {seconds:g} s")
    server.stop("fast")
    run.wait_until(time.time() + seconds)
    server.start()
    run.back()


def pg_restart(run: Run) -> None:
    assert run.cluster is not None
    restarts(run, run.cluster, "fast", "pg_ctl restart -m fast")


def pg_stop(run: Run) -> None:
    assert run.cluster is not None
    outage(run, run.cluster, "pg_ctl stop -m fast")


def mysql_restart(run: Run) -> None:
    assert run.mariadb is not None
    restarts(run, run.mariadb, "fast", "MariaDB shutdown (SIGTERM) and start")


def mysql_crash(run: Run) -> None:
    assert run.mariadb is not None
    restarts(run, run.mariadb, "immediate", "SIGKILL of mariadbd and start")


def mysql_stop(run: Run) -> None:
    assert run.mariadb is not None
    outage(run, run.mariadb, "MariaDB shutdown (SIGTERM)")


def pg_terminate(run: Run) -> None:
    assert run.cluster is not None
    sessions = 0
    moment = run.at(2.0)
    while moment < run.end:
        run.wait_until(moment)
        sessions += run.cluster.terminate(run.database)
        run.fault("pg_terminate_backend")
        run.back()
        moment += 2.0
    run.notes["sessions_terminated"] = sessions
    run.fault_log = run.fault_log[:3] + (["..."] if len(run.fault_log) > 3 else [])


def mysql_kill(run: Run) -> None:
    """KILL every session in the run's database every 2 s (the harness's own too)."""
    name = mysql_db.name_of(run.tree.url)
    sessions = 0
    moment = run.at(2.0)
    while moment < run.end:
        run.wait_until(moment)
        sessions += mysql_db.kill_sessions(run.tree.url, name)
        run.fault("KILL of every session")
        run.back()
        moment += 2.0
    run.notes["sessions_killed"] = sessions
    run.fault_log = run.fault_log[:3] + (["..."] if len(run.fault_log) > 3 else [])


def process_age(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return None
    ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


def kill_9(run: Run) -> None:
    kinds: Counter[str] = Counter()
    moment = run.at(1.0)
    while moment < run.end:
        run.wait_until(moment)
        moment += 1.0
        victims: list[tuple[str, int, Server]] = []
        for server in run.supervisor.slots.values():
            if server.exited() is not None:
                continue
            if (process_age(server.pid) or 0) >= MIN_VICTIM_AGE:
                victims.append(("server", server.pid, server))
            for proc in server.tree():
                match = TITLE.match(proc.cmdline)
                if not match or (process_age(proc.pid) or 0) < MIN_VICTIM_AGE:
                    continue
                kind = match["kind"] or ("root" if match["root"] else "server")
                victims.append((kind, proc.pid, server))
        if not victims:
            continue
        kind, pid, server = run.rng.choice(victims)
        if kind == "server":
            run.supervisor.killed.add(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        kinds[kind] += 1
        run.fault(f"kill -9 {kind}")
    run.notes["kills"] = dict(kinds)
    run.fault_log = []


def sigstop(run: Run) -> None:
    app = run.tree.app
    path = run.tree.freeze_path
    offset = 0
    frozen_ids: list[int] = []
    lived: list[float] = []
    missed = 0
    not_killed = 0
    run.wait_until(run.at(1.0))
    while time.time() < run.end - FREEZE_HOLD - 1:
        job_id = patiently(lambda: app.schedule(FROZEN))
        frozen_ids.append(job_id)
        found: dict[str, Any] | None = None
        deadline = time.time() + 15
        while found is None and time.time() < deadline:
            with contextlib.suppress(FileNotFoundError), open(path) as file:
                file.seek(offset)
                for raw in file.read().splitlines():
                    line = json.loads(raw)
                    if line["id"] == job_id:
                        found = line
                offset = file.tell()
            if found is None:
                run.wait_until(time.time() + 0.01)
        if found is None:
            run.failures.append(f"frozen job {job_id} did not start within 15 s")
            continue
        pid, started = int(found["pid"]), float(found["t"])
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            missed += 1
            continue
        if time.time() - started >= chaos_workers.FREEZE_WINDOW:
            missed += 1  # it may have ended its job before the stop: not a fault
            os.kill(pid, signal.SIGCONT)
            continue
        run.fault("SIGSTOP job process")
        while time.time() < started + FREEZE_HOLD:
            proc = _read_proc(pid)
            if proc is None or not proc.alive:
                lived.append(time.time() - started)
                break
            run.wait_until(time.time() + 0.01)
        else:
            not_killed += 1
            run.failures.append(f"frozen job process {pid} (job {job_id}) alive after 4 s")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        run.wait_until(time.time() + 0.5)
    run.notes["acked"] = frozen_ids
    run.notes["frozen_jobs"] = len(frozen_ids)
    run.notes["freeze_missed"] = missed
    run.notes["not_killed"] = not_killed
    if lived:
        run.notes["frozen_lived_s"] = {
            "min": round(min(lived), 2),
            "max": round(max(lived), 2),
            "timeout": chaos_workers.FROZEN_TIMEOUT,
        }
    run.fault_log = []


def disk_full(run: Run) -> None:
    folder = Path(run.tree.url.removeprefix("sqlite:///")).parent
    period = run.seconds / 3
    full_for = min(10.0, period / 2)
    for n in range(3):
        run.wait_until(run.at(n * period + period / 4))
        ballast = _fill(folder)
        run.fault(f"disk full for {full_for:g} s")
        run.wait_until(time.time() + full_for)
        ballast.unlink(missing_ok=True)
        run.back()


SCENARIOS: list[tuple[str, str, str, int, Callable[[Run], None]]] = [
    # (row name, family, backend, host names, fault)
    ("pg-restart", "pg-restart", "postgres", 2, pg_restart),
    ("pg-stop", "pg-stop", "postgres", 2, pg_stop),
    ("pg-terminate", "pg-terminate", "postgres", 2, pg_terminate),
    ("kill-9/sqlite", "kill-9", "sqlite", 1, kill_9),
    ("kill-9/postgres", "kill-9", "postgres", 2, kill_9),
    ("kill-9/mysql", "kill-9", "mysql", 2, kill_9),
    ("sigstop/sqlite", "sigstop", "sqlite", 1, sigstop),
    ("sigstop/postgres", "sigstop", "postgres", 2, sigstop),
    ("sigstop/mysql", "sigstop", "mysql", 2, sigstop),
    ("disk-full", "disk-full", "sqlite", 1, disk_full),
    ("mysql-kill", "mysql-kill", "mysql", 2, mysql_kill),
    ("mysql-restart", "mysql-restart", "mysql", 2, mysql_restart),
    ("mysql-crash", "mysql-crash", "mysql", 2, mysql_crash),
    ("mysql-stop", "mysql-stop", "mysql", 2, mysql_stop),
]


# -- the table ------------------------------------------------------------------------------

COLUMNS = [
    ("scenario", 16),
    ("jobs", 6),
    ("lost", 5),
    ("twice(dead)", 11),
    ("panic", 5),
    ("crashed", 7),
    ("overlap", 7),
    ("badtok", 6),
    ("cron m/d", 9),
    ("srv exit", 8),
    ("faults", 6),
    ("recovery s", 10),
]


def row_cells(result: dict[str, Any]) -> list[str]:
    locks = result.get("locks")
    recovery = result["first_job_after_recovery"]
    return [
        result["scenario"],
        str(result["scheduled"]),
        str(result["lost"]),
        f"{result['twice']}({result['twice_proven']})",
        str(result["panicked"]),
        str(result["crashed"]),
        str(locks["overlaps"]) if locks else "n/a",
        str(locks["bad_tokens"]) if locks else "n/a",
        f"{result['cron_missed']}/{result['cron_doubled']} of {result['cron_minutes']}",
        str(result["server_exits"]),
        str(result["faults"]),
        "-" if recovery is None else f"{recovery:.2f}",
    ]


def print_table(results: list[dict[str, Any]]) -> None:
    print()
    print(
        "  ".join(
            name.rjust(width) if i else name.ljust(width) for i, (name, width) in enumerate(COLUMNS)
        )
    )
    for result in results:
        if "error" in result:
            print(f"{result['scenario'].ljust(COLUMNS[0][1])}  ERROR: {result['error']}")
            continue
        cells = row_cells(result)
        print(
            "  ".join(
                cell.rjust(width) if i else cell.ljust(width)
                for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))
            )
        )


def details(result: dict[str, Any]) -> str:
    parts = [f"{result['scenario']}: states {result['states']}"]
    if result["drain_seconds"] is None:
        parts.append("drain TIMED OUT")
    else:
        parts.append(f"drained {result['drain_seconds']} s after the run")
    if result["fault_log"]:
        parts.append("faults " + ", ".join(result["fault_log"]))
    if result["notes"]:
        parts.append(f"notes {result['notes']}")
    if result["recovery_delays"]:
        parts.append(f"first job after each recovery (s) {result['recovery_delays']}")
    if result["crashed"]:
        parts.append(f"crashed by type {result['crashed_by_type']}")
    if result["twice"]:
        parts.append(f"run twice e.g. {result['twice_examples'][:3]}")
    if result["concurrent"]:
        parts.append(f"RUN BY TWO LIVE PROCESSES AT ONCE: {result['concurrent']}")
    if result["reruns"]:
        parts.append(
            f"{result['reruns']} jobs started more than once; "
            f"{result['rerun_while_first_alive']} of them re-started while the process of the "
            f"first start still recorded work later"
            + (
                f", e.g. {result['rerun_while_first_alive_examples']}"
                if result["rerun_while_first_alive"]
                else ""
            )
        )
    if result["lost"]:
        parts.append(f"LOST e.g. {result['lost_examples']} missing {result['acked_missing']}")
    if result["panicked"]:
        parts.append(f"panicked e.g. {result['panicked_examples']}")
    if result["server_exit_details"]:
        parts.append(f"server exits {result['server_exit_details']}")
    parts.append(f"server restarts {result['server_restarts']}")
    locks = result.get("locks")
    if locks:
        parts.append(
            f"locks {locks['holds']} holds, {locks['lost_leases']} LeaseLost, "
            f"{locks['overlaps_with_lost_lease']} overlaps with a lost lease, "
            f"{locks['duplicate_tokens']} duplicate tokens, failed attempts "
            f"{locks['failed_attempts']}, client exits {locks['client_exit_codes']}, "
            f"client tracebacks {locks['stderr_tracebacks']}, stderr {locks['stderr_top']}"
        )
        if locks["overlap_examples"]:
            parts.append(f"overlap e.g. {locks['overlap_examples'][:1]}")
        if locks["bad_token_examples"]:
            parts.append(f"bad tokens e.g. {locks['bad_token_examples'][:1]}")
    logs = result["logs"]
    parts.append(f"log levels {logs['levels']}, tracebacks {logs['tracebacks']}")
    for message, n in logs["errors"]:
        parts.append(f"{n}x {message}")
    if logs["warnings"]:
        parts.append("warnings " + "; ".join(f"{n}x {m}" for m, n in logs["warnings"]))
    if result["left_behind"]:
        parts.append(f"LEFT BEHIND {result['left_behind']}")
    if "integrity" in result:
        parts.append(f"sqlite integrity_check {result['integrity']}")
    if result["failures"]:
        parts.append(f"FAILURES {result['failures']}")
    return "\n    ".join(parts)


def failed(result: dict[str, Any]) -> list[str]:
    if "error" in result:
        return [f"error {result['error']}"]
    locks = result.get("locks") or {}
    checks = {
        "lost": result["lost"],
        "panicked": result["panicked"],
        "overlaps": locks.get("overlaps", 0),
        "bad tokens": locks.get("bad_tokens", 0) + locks.get("duplicate_tokens", 0),
        "cron missed/doubled": result["cron_missed"] + result["cron_doubled"],
        "server exits": result["server_exits"],
        "concurrent runs": result["concurrent"],
        "lock errors that are not KojoError": locks.get("leaks", 0),
        "left behind": len(result["left_behind"]),
        "other": len(result["failures"]),
        "corrupt": int(result.get("integrity", "ok") != "ok"),
    }
    return [f"{name} {value}" for name, value in checks.items() if value]


# -- main -----------------------------------------------------------------------------------


def selected(
    only: str | None, backend: str | None = None
) -> list[tuple[str, str, str, int, Callable[[Run], None]]]:
    scenarios = [s for s in SCENARIOS if backend is None or s[2] == backend]
    if not only:
        return scenarios
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    known = {s[0] for s in SCENARIOS} | {s[1] for s in SCENARIOS}
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"unknown scenario(s) {sorted(unknown)}: choose from {sorted(known)}")
    return [s for s in scenarios if s[0] in wanted or s[1] in wanted]


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--lock-client":
        lock_client(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="per scenario (60)")
    parser.add_argument("--quick", action="store_true", help="15 s per scenario")
    parser.add_argument("--only", help=f"comma-separated, of {', '.join(FAMILIES)}")
    parser.add_argument("--jobs", type=int, help="per scenario (5,000 per 60 s)")
    parser.add_argument("--backend", choices=BACKENDS, help="only this backend's scenarios")
    parser.add_argument("--processes", type=int, default=2, help="job processes per server")
    parser.add_argument("--locks", type=int, default=3, help="mutex client processes")
    parser.add_argument("--drain", type=float, default=120.0, help="seconds to wait at the end")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the logs and records")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 15.0
    if args.seconds < 6:
        parser.error("--seconds must be at least 6")
    scenarios = selected(args.only, args.backend)
    if not scenarios:
        parser.error(f"no scenario of {args.only!r} runs on {args.backend}")
    shared_mysql = any(s[2] == "mysql" and s[1] not in OWN_MARIADB for s in scenarios)
    if shared_mysql and not mysql_db.admin_url_from_env():
        parser.error(mysql_db.MISSING_URL_MESSAGE)
    become_subreaper()
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        cluster: Cluster | None = None
        if any(s[2] == "postgres" for s in scenarios):
            cluster = stack.enter_context(Cluster())
        mariadb: MariaDB | None = None
        if any(s[1] in OWN_MARIADB for s in scenarios):
            mariadb = stack.enter_context(MariaDB())
        for number, (name, family, backend, hosts, body) in enumerate(scenarios):
            print(f"{name}: {args.seconds:g} s ...", flush=True)
            own = mariadb if family in OWN_MARIADB else None
            try:
                result = execute(name, backend, hosts, body, args, cluster, number, own)
            except Exception as exc:  # the harness failed: report it, go on with the next
                traceback.print_exc()
                results.append({"scenario": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            results.append(result)
            print("    " + details(result), flush=True)
    print_table(results)
    bad = {r["scenario"]: failed(r) for r in results if failed(r)}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"chaos-{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
    if bad:
        print(f"\nFAILED: {bad}")
        return 1
    print("\nall invariants held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
