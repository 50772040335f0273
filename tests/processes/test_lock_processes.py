"""Mutexes and semaphores across real processes (reference locks-and-reliability §6.3).

Workers are forked children with an App of their own. Each appends `enter` and
`exit` lines (pid, slot, token, CLOCK_MONOTONIC ns) to one O_APPEND file while
it holds a lease, so the file's order is the order things happened in.

KOJO_LOCK_KILL_SECONDS sets how long the kill -9 scenario runs (default 10).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from workers_harness import Workers

import kojo

KILL_SECONDS = float(os.environ.get("KOJO_LOCK_KILL_SECONDS", "10"))
FREED_WITHIN = 1.0  # seconds from kill -9 of a holder to its slot being granted again
WAIT = 120.0


@dataclass(frozen=True)
class Entry:
    kind: str  # "enter" | "exit" | "killed" (the end of whatever it held)
    pid: int
    slot: int
    token: int
    ns: int


@pytest.fixture
def app(database_url: str) -> kojo.App:
    app = kojo.App(database=database_url)
    app.install()
    return app


def log_line(fd: int, kind: str, lease: kojo.locks.Lease) -> None:
    os.write(
        fd, f"{kind} {os.getpid()} {lease.slot} {lease.token} {time.monotonic_ns()}\n".encode()
    )


def read_log(path: Path) -> list[Entry]:
    entries = []
    for line in path.read_text().splitlines():
        kind, pid, slot, token, ns = line.split()
        entries.append(Entry(kind, int(pid), int(slot), int(token), int(ns)))
    return entries


def check_exclusion(entries: list[Entry], slots: int) -> set[int]:
    """Occupancy never above `slots`, one holder per slot, tokens rising per slot."""
    inside: dict[int, int] = {}  # slot -> pid
    last_token: dict[int, int] = {}
    for entry in entries:
        if entry.kind == "enter":
            assert entry.slot not in inside, f"slot {entry.slot} entered twice: {entry}"
            inside[entry.slot] = entry.pid
            assert len(inside) <= slots, f"{len(inside)} holders at once: {entry}"
            assert entry.token > last_token.get(entry.slot, 0), f"token not increasing: {entry}"
            last_token[entry.slot] = entry.token
        elif entry.kind == "killed":
            inside = {slot: pid for slot, pid in inside.items() if pid != entry.pid}
        elif inside.get(entry.slot) == entry.pid:
            del inside[entry.slot]
    return set(last_token)


def with_kills(entries: list[Entry], kills: list[tuple[int, int, int, int]]) -> list[Entry]:
    """The log with a `killed` line for each victim at the moment it was killed."""
    merged = list(entries)
    for killed_at, pid, slot, token in sorted(kills, reverse=True):
        at = next((i for i, e in enumerate(merged) if e.ns > killed_at), len(merged))
        merged.insert(at, Entry("killed", pid, slot, token, killed_at))
    return merged


def contend(url: str, log: Path, name: str, slots: int, grants: int, hold: float) -> None:
    app = kojo.App(database=url)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    for _ in range(grants):
        with app.semaphore(name, slots, timeout=WAIT) as lease:
            log_line(fd, "enter", lease)
            if hold:
                time.sleep(random.uniform(0, hold))
            log_line(fd, "exit", lease)


def test_sixteen_processes_share_one_mutex(
    app: kojo.App, database_url: str, workers: Workers, tmp_path: Path
) -> None:
    log = tmp_path / "mutex.log"
    log.touch()
    for _ in range(16):
        workers.start(lambda: contend(database_url, log, "one", 1, 125, 0.0))
    workers.join(WAIT)
    entries = read_log(log)
    check_exclusion(entries, 1)
    tokens = [e.token for e in entries if e.kind == "enter"]
    assert tokens == list(range(1, 2001))
    assert app.locks() == []


def test_twenty_processes_share_a_three_slot_semaphore(
    app: kojo.App, database_url: str, workers: Workers, tmp_path: Path
) -> None:
    log = tmp_path / "semaphore.log"
    log.touch()
    for _ in range(20):
        workers.start(lambda: contend(database_url, log, "three", 3, 30, 0.004))
    workers.join(WAIT)
    entries = read_log(log)
    assert check_exclusion(entries, 3) == {0, 1, 2}
    assert sum(e.kind == "enter" for e in entries) == 600
    assert app.locks() == []


def hold_forever(url: str, log: Path, name: str, slots: int) -> None:
    app = kojo.App(database=url)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    while True:
        with app.semaphore(name, slots) as lease:
            log_line(fd, "enter", lease)
            time.sleep(random.uniform(0.2, 1.2))
            log_line(fd, "exit", lease)


@pytest.mark.slow
def test_kill_9_of_holders_frees_their_slots_within_a_second(
    app: kojo.App, database_url: str, workers: Workers, tmp_path: Path
) -> None:
    log = tmp_path / "kills.log"
    log.touch()
    slots = 2

    def start() -> None:
        workers.start(lambda: hold_forever(database_url, log, "victims", slots))

    for _ in range(8):
        start()
    kills: list[tuple[int, int, int, int]] = []  # (ns, pid, slot, token)
    deadline = time.monotonic() + KILL_SECONDS
    while time.monotonic() < deadline:
        time.sleep(1.0)
        # A plain read: reaping here would free the slot for the waiters.
        holders = [
            r
            for r in app.backend.fetchall("lock_list_holders")
            if r["name"] == "victims" and r["process_id"] in workers.pids
        ]
        if not holders:
            continue
        victim = random.choice(holders)
        kills.append((time.monotonic_ns(), victim["process_id"], victim["slot"], victim["token"]))
        workers.kill(victim["process_id"])
        start()  # keep the waiters coming
    time.sleep(FREED_WITHIN + 0.5)  # let the last kill's slot be taken again
    ended = time.monotonic_ns()
    workers.kill_all()  # (not recorded as kills: what follows is not checked)

    entries = with_kills([e for e in read_log(log) if e.ns < ended], kills)
    check_exclusion(entries, slots)
    assert len(kills) >= KILL_SECONDS // 2
    delays = []
    for killed_at, _pid, slot, token in kills:
        regrant = next(
            (e for e in entries if e.kind == "enter" and e.slot == slot and e.token > token), None
        )
        assert regrant is not None, f"slot {slot} never granted again after a kill"
        delays.append((regrant.ns - killed_at) / 1e9)
    print(f"kill -9 to re-grant, s: max {max(delays):.3f}, all {sorted(delays)}")
    assert max(delays) < FREED_WITHIN, f"delays from kill to re-grant: {delays}"
    # Every slot and waiter of the dead is freed: the listing reaps them all.
    assert app.locks() == []


def hold_and_wait(url: str, log: Path) -> None:
    """Take the mutex, say so, and keep it until killed."""
    app = kojo.App(database=url)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    with app.mutex("lone") as lease:
        log_line(fd, "enter", lease)
        while True:
            time.sleep(60)


def test_a_waiter_notices_a_killed_mutex_holder_within_a_second(
    app: kojo.App, database_url: str, workers: Workers, tmp_path: Path
) -> None:
    """No other activity wakes the waiters here: only their own watch on the holder."""
    log = tmp_path / "lone.log"
    log.touch()
    deadline = time.monotonic() + WAIT

    def entries() -> list[Entry]:
        assert time.monotonic() < deadline, "timed out"
        return read_log(log)

    workers.start(lambda: hold_and_wait(database_url, log))
    while not entries():
        time.sleep(0.01)
    for _ in range(3):
        workers.start(lambda: hold_and_wait(database_url, log))
    while len(app.backend.fetchall("lock_list_waiters")) < 3:
        assert time.monotonic() < deadline, "waiters did not queue"
        time.sleep(0.01)
    for round_ in range(1, 4):
        holder = entries()[-1]
        killed_at = time.monotonic_ns()
        workers.kill(holder.pid)
        while len(entries()) == round_:
            time.sleep(0.005)
        regrant = entries()[round_]
        assert regrant.token == holder.token + 1
        assert (regrant.ns - killed_at) / 1e9 < FREED_WITHIN


def parent_with_child(url: str, log: Path) -> None:
    """Take the mutex, fork a child that wants it too, and keep it until killed."""
    app = kojo.App(database=url)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    with app.mutex("inherited") as lease:
        log_line(fd, "enter", lease)
        if os.fork() == 0:  # the child: same App object, its own owner
            code = 1
            try:
                with pytest.raises(kojo.LockTimeout):
                    app.mutex("inherited", timeout=0).acquire()
                os.write(fd, f"child {os.getpid()} 0 0 {time.monotonic_ns()}\n".encode())
                with app.mutex("inherited", timeout=WAIT) as mine:
                    assert mine.owner_id != lease.owner_id
                    log_line(fd, "enter", mine)
                code = 0
            finally:
                os._exit(code)
        while True:
            time.sleep(60)


def test_a_forked_child_does_not_keep_its_parents_locks_alive(
    app: kojo.App, database_url: str, workers: Workers, tmp_path: Path
) -> None:
    """The child inherits the parent's flock / anchor socket; it must let go of them."""
    log = tmp_path / "fork.log"
    log.touch()
    parent = workers.start(lambda: parent_with_child(database_url, log))
    deadline = time.monotonic() + WAIT
    while not any(e.kind == "child" for e in read_log(log)):
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.01)
    workers.kill(parent)
    while len([e for e in read_log(log) if e.kind == "enter"]) < 2:
        assert time.monotonic() < deadline, "the child never got the lock of its dead parent"
        time.sleep(0.01)
    first, second = (e for e in read_log(log) if e.kind == "enter")
    assert second.token == first.token + 1
    child = next(e.pid for e in read_log(log) if e.kind == "child")
    _, status = os.waitpid(child, 0)  # re-parented to us, the subreaper, when its parent died
    assert os.waitstatus_to_exitcode(status) == 0
