"""The root's loop pieces and the idle board, driven by a fake clock: no forks, no sleeps.

A Root whose `_spawn` and `_signal` only record (the way gunicorn's arbiter tests stub
spawn_worker and kill_worker); the real forks are proven by tests/processes.
"""

from __future__ import annotations

import signal
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from fake_clock import FakeClock
from kojo.processes import root as root_module
from kojo.processes.idle_board import SLOTS, IdleBoard
from kojo.processes.lineage import Lineage
from kojo.processes.pool_policy import TIMEOUT_GRACE
from kojo.processes.root import Child, Root
from kojo.settings import MAX_PROCESSES, Settings

SHUTDOWN = 30.0
RETIRE = 300.0


class FakeBackend:
    def __init__(self, due: int = 0) -> None:
        self.due = due
        self.queries: list[tuple[str, dict[str, Any]]] = []

    def job_due_count(self, now: datetime, limit: int) -> int:
        self.queries.append(("job_due_count", {"now": now, "limit": limit}))
        return min(self.due, limit)

    def owners_of_process(self, host_name: str, pid: int) -> list[int]:
        return []

    def is_unavailable(self, exc: BaseException) -> bool:
        return False


class RecordingRoot(Root):
    """Forks and signals nothing: records them."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.signalled: list[tuple[int, int]] = []
        self.next_pid = 100

    def _spawn(self, kind: str) -> None:
        self.next_pid += 1
        slot = self.board.take() if kind == "job" else None
        self.children[self.next_pid] = Child(kind, self.clock.monotonic(), slot=slot)

    def _signal(self, pid: int, signum: int) -> None:
        self.signalled.append((pid, signum))


def make_root(clock: FakeClock, max_processes: int = 3, due: int = 0) -> RecordingRoot:
    settings = Settings("host-a", max_processes, SHUTDOWN, idle_retire_seconds=RETIRE)
    app: Any = SimpleNamespace(backend=FakeBackend(due))
    root = RecordingRoot(app, Lineage("/server[1]/root[2]", "root"), settings, clock)
    root.target = max_processes
    return root


def jobs(root: Root) -> list[int]:
    return sorted(pid for pid, c in root.children.items() if c.kind == "job" and not c.retiring)


def test_the_idle_board_stamps_with_the_clock() -> None:
    clock = FakeClock()
    board = IdleBoard(clock)
    assert board.free() == SLOTS == MAX_PROCESSES
    slot = board.take()
    assert board.idle_since(slot) == clock.monotonic()
    assert board.free() == SLOTS - 1
    board.mark_busy(slot)
    assert board.idle_since(slot) is None
    clock.advance(7)
    board.mark_idle(slot)
    assert board.idle_since(slot) == clock.monotonic()
    board.set_deadline(slot, clock.monotonic() + 5)
    assert board.deadline(slot) == clock.monotonic() + 5
    board.set_deadline(slot, None)
    assert board.deadline(slot) is None
    board.give_back(slot)
    assert board.free() == SLOTS


class RegistrationStopsTheTest(Exception):
    pass


class NoSignals:
    def pop_all(self) -> list[int]:
        return []


def test_the_root_forks_its_job_processes_before_it_registers() -> None:
    # The first job waits neither for the root's registration nor for its first look at
    # the commands (each a round trip; on PostgreSQL, a connection of the root's own).
    clock = FakeClock()
    root = make_root(clock, max_processes=2)
    root._reap_children = lambda block=False: None  # type: ignore[method-assign]
    forked_when_registering: list[list[int]] = []

    def register_owner(info: Any) -> None:
        forked_when_registering.append(jobs(root))
        raise RegistrationStopsTheTest

    root.app.backend.register_owner = register_owner
    with pytest.raises(RegistrationStopsTheTest):
        root._loop(NoSignals())  # type: ignore[arg-type]
    assert forked_when_registering == [[101, 102]]


def test_the_pool_fills_then_retires_surplus_idlers_after_idle_retire() -> None:
    clock = FakeClock()
    root = make_root(clock)
    assert root.turn(clock.monotonic()) is None
    assert len(jobs(root)) == 3 and not root.fill
    clock.advance(RETIRE - 1)
    root.turn(clock.monotonic())
    assert root.signalled == []
    clock.advance(1)
    assert jobs(root) == [101, 102, 103]  # 104: the maintainer, forked after them
    root.turn(clock.monotonic())  # all idle as long: the lowest pid goes, one per turn
    assert root.signalled == [(101, signal.SIGTERM)]
    assert root.children[101].kill_at == clock.monotonic() + SHUTDOWN
    # It does not stop: killed once the grace is over (the next idler retires meanwhile).
    clock.advance(SHUTDOWN)
    root.turn(clock.monotonic())
    assert root.signalled[1:] == [(101, signal.SIGKILL), (102, signal.SIGTERM)]
    assert root.children[101].kill_at is None
    root.turn(clock.monotonic())
    assert jobs(root) == [103]  # the last idle one stays


def test_busy_processes_and_due_work_grow_the_pool() -> None:
    clock = FakeClock()
    root = make_root(clock, max_processes=4)
    root.fill = False
    backend = root.app.backend
    root.turn(clock.monotonic())
    assert len(jobs(root)) == 1  # no due work: the one a quiet host keeps
    clock.advance(0.5)
    root.turn(clock.monotonic())
    assert len(backend.queries) == 1  # none counted while it idles
    pid = jobs(root)[0]
    slot = root.children[pid].slot
    assert slot is not None
    root.board.mark_busy(slot)
    backend.due = 2
    root.turn(clock.monotonic())
    assert len(jobs(root)) == 3  # two more for the two due jobs
    assert backend.queries[-1] == ("job_due_count", {"now": clock.now(), "limit": 3})


def test_a_frozen_job_process_is_killed_after_its_jobs_timeout_and_grace() -> None:
    clock = FakeClock()
    root = make_root(clock, max_processes=1)
    root.turn(clock.monotonic())
    pid = jobs(root)[0]
    slot = root.children[pid].slot
    assert slot is not None
    root.board.mark_busy(slot)
    root.board.set_deadline(slot, clock.monotonic() + 5)  # what the job process writes
    clock.advance(5 + TIMEOUT_GRACE - 0.01)
    root.turn(clock.monotonic())
    assert root.signalled == []
    assert root._timeout(clock.monotonic()) == pytest.approx(0.01)
    clock.advance(0.01)
    root.turn(clock.monotonic())
    root.turn(clock.monotonic())
    assert root.signalled == [(pid, signal.SIGKILL)]  # once
    assert root.children[pid].timed_out


def test_children_dying_young_back_off_the_respawn() -> None:
    clock = FakeClock()
    root = make_root(clock, max_processes=1)
    root.turn(clock.monotonic())
    pid = jobs(root)[0]
    died = 1 << 8  # wait status of exit 1
    root._child_exited(pid, root.children.pop(pid), died)
    assert root.respawn_delay == 0.1 and root.fill
    root.turn(clock.monotonic())
    assert jobs(root) == []  # not yet
    clock.advance(0.1)
    root.turn(clock.monotonic())
    assert len(jobs(root)) == 1
    clock.advance(0.5)
    pid = jobs(root)[0]
    root._child_exited(pid, root.children.pop(pid), died)
    assert root.respawn_delay == 0.2
    clock.advance(5.0)
    root.turn(clock.monotonic())
    pid = jobs(root)[0]
    clock.advance(1.0)  # this one lived long enough: no pause after it
    root._child_exited(pid, root.children.pop(pid), died)
    assert root.respawn_delay == 0.0


def test_draining_ends_when_the_children_are_gone_or_the_deadline_passes() -> None:
    clock = FakeClock()
    root = make_root(clock, max_processes=2)
    root.turn(clock.monotonic())
    root._drain()
    assert {signum for _, signum in root.signalled} == {signal.SIGTERM}
    assert root.turn(clock.monotonic()) is None
    root.children.clear()
    assert root.turn(clock.monotonic()) == 0


def test_sigttin_stops_at_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(root_module.log, "warning", warnings.append)
    root = make_root(FakeClock(), max_processes=MAX_PROCESSES)
    root._add_one()
    assert root.target == MAX_PROCESSES
    assert warnings == [
        "Ignoring SIGTTIN: already at the most job processes a host may run (1024)."
    ]
    root.target = 5
    root._add_one()
    assert root.target == 6


def test_no_fork_beyond_the_idle_boards_slots() -> None:
    clock = FakeClock()
    root = make_root(clock, max_processes=MAX_PROCESSES)
    root.turn(clock.monotonic())
    assert len(jobs(root)) == MAX_PROCESSES and root.board.free() == 0
    root._retire(jobs(root)[0], SHUTDOWN)  # still alive, still on its slot
    root.fill = True
    root.turn(clock.monotonic())
    assert len(jobs(root)) == MAX_PROCESSES - 1  # no IndexError: waits for the slot
