"""The root: keeps this host's pool of job processes, and one maintainer.

How the pool follows the work (instead of Kōjō's addProcess messages): the
target is `--max-processes` (SIGTTIN / SIGTTOU and `kojo ctl scale HOST N`
change it), and the root forks that many job processes at start and on a
scale-up. Idle processes sleep on a wake-up and claim work the moment it is
scheduled, on every host at once. A job process that has been idle for
IDLE_RETIRE seconds (`KOJO_IDLE_RETIRE_SECONDS`, default 300) is retired while
another one is idle too, so a quiet host keeps one; when every job process is
busy and due work is waiting, the root forks more, up to the target. Each job
process tells the root whether it is idle through a board in shared memory.

A job process that dies is replaced; its jobs are marked crashed at once (the
root reaps the dead process's registration). SIGTERM drains: job processes
finish their current job within the shutdown timeout, then the rest are
killed and their jobs left crashed, to be re-run. SIGQUIT stops now.
"""

from __future__ import annotations

import os
import select
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..backends import Owner, ProcessInfo
from ..clock import utcnow
from ..control import parse_command
from ..errors import InvalidArgument
from ..logs import get_logger
from .idle_board import IdleBoard
from .job_process import JobProcess
from .lineage import Lineage, describe_status, fork_child
from .maintainer import Maintainer
from .signal_queue import SignalQueue

if TYPE_CHECKING:
    from ..app import App

log = get_logger("root")
CANCEL_GRACE = 10.0  # seconds a cancelled job's process has to stop before SIGKILL
RESPAWN_BACKOFF_MAX = 10.0
IDLE_RETIRE = 300.0  # seconds a surplus job process may stay idle
DEMAND_CHECK_INTERVAL = 0.1  # at most this often the root counts due work


def idle_retire_seconds() -> float:
    """KOJO_IDLE_RETIRE_SECONDS, else IDLE_RETIRE; a bad value is a clear error."""
    text = os.environ.get("KOJO_IDLE_RETIRE_SECONDS")
    if text is None:
        return IDLE_RETIRE
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InvalidArgument(f"KOJO_IDLE_RETIRE_SECONDS must be a positive number, not {text!r}")
    return value


# PostgreSQL ends a killed client's session, and drops its advisory lock, a moment after
# the process is reaped: a dead child's owner is probed again until then (up to this long).
REAP_PATIENCE = 5.0
REAP_POLL = 0.02


@dataclass
class PoolOptions:
    host_name: str
    max_processes: int
    shutdown_timeout: float = 30.0


@dataclass
class Child:
    kind: str
    started: float
    kill_at: float | None = None  # SIGKILL after this monotonic time
    retiring: bool = False
    slot: int | None = None  # its place on the idle board (job processes)


@dataclass
class Root:
    app: App
    lineage: Lineage
    options: PoolOptions
    children: dict[int, Child] = field(default_factory=dict)
    target: int = 0
    fill: bool = True  # fork up to the target without waiting for demand
    next_demand_check: float = 0.0
    idle_retire: float = field(default_factory=lambda: idle_retire_seconds())
    board: IdleBoard = field(default_factory=IdleBoard)
    draining: bool = False
    drain_deadline: float = 0.0
    respawn_delay: float = 0.0
    next_respawn: float = 0.0
    owner: Owner | None = None
    unreaped: dict[int, float] = field(default_factory=dict)  # owner id -> give up at

    def run(self) -> int:
        backend = self.app.backend
        self.target = self.options.max_processes
        self.owner = backend.register_owner(
            ProcessInfo(
                self.options.host_name, os.getpid(), os.getppid(), self.lineage.path, "root"
            )
        )
        self.app.use_owner(self.owner)
        signals = SignalQueue(
            [
                signal.SIGTERM,
                signal.SIGQUIT,
                signal.SIGCHLD,
                signal.SIGTTIN,
                signal.SIGTTOU,
                signal.SIGHUP,
                signal.SIGUSR1,
            ]
        )
        log.debug("Root started.", extra={"context": {"max_processes": self.target}})
        backend.reap_dead_owners()  # a previous root's jobs are crashed at once, not in a while
        try:
            return self._loop(signals)
        finally:
            self.owner.close()

    # -- main loop -------------------------------------------------------------------

    def _loop(self, signals: SignalQueue) -> int:
        assert self.owner is not None
        while True:
            for signum in signals.pop_all():
                if signum == signal.SIGQUIT:
                    return self._stop_now()
                if signum == signal.SIGCHLD:
                    continue  # reaped below
                if signum == signal.SIGTTIN:
                    self._scale(self.target + 1)
                elif signum == signal.SIGTTOU:
                    self._scale(max(0, self.target - 1))
                elif signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
                    if self.draining:
                        return self._stop_now()
                    self._drain()
            self._reap_children()
            now = time.monotonic()
            self._retry_reaps(now)
            self._enforce_kill_deadlines(now)
            if self.draining:
                if not self.children:
                    self._finish_reaps()
                    log.info("Root drained.")
                    return 0
                if now >= self.drain_deadline:
                    log.warning("Shutdown timeout reached: killing the remaining job processes.")
                    return self._stop_now()
            else:
                self._converge(now)
            ready, _, _ = select.select(
                [signals.fileno(), self.owner.fileno()], [], [], self._timeout(now)
            )
            if self.owner.fileno() in ready:
                for note in self.owner.wait(0):
                    if note.topic == "control":
                        self._control(note.data)

    def _timeout(self, now: float) -> float:
        deadlines = [c.kill_at for c in self.children.values() if c.kill_at is not None]
        if self.draining:
            deadlines.append(self.drain_deadline)
        if self.next_respawn > now:
            deadlines.append(self.next_respawn)
        if self.unreaped:
            deadlines.append(now + REAP_POLL)
        soonest = min(deadlines, default=now + 1.0)
        return max(0.01, min(1.0, soonest - now))

    # -- the pool ---------------------------------------------------------------------

    def _job_pids(self, *, include_retiring: bool = False) -> list[int]:
        return [
            pid
            for pid, c in self.children.items()
            if c.kind == "job" and (include_retiring or not c.retiring)
        ]

    def _converge(self, now: float) -> None:
        if now < self.next_respawn:
            return
        if not any(c.kind == "maintainer" for c in self.children.values()):
            self._spawn("maintainer")
        jobs = self._job_pids()
        missing = self.target - len(jobs)
        if missing > 0:
            grow = missing if self.fill else max(0 if jobs else 1, self._demand(jobs, missing, now))
            for _ in range(grow):
                self._spawn("job")
            self.fill = self.fill and grow < missing
        for pid in sorted(jobs, reverse=True)[: max(0, len(jobs) - self.target)]:
            self._retire(pid, grace=self.options.shutdown_timeout)
        self._retire_idle(jobs, now)

    def _idle_since(self, pid: int) -> float | None:
        slot = self.children[pid].slot
        return None if slot is None else self.board.idle_since(slot)

    def _demand(self, jobs: list[int], limit: int, now: float) -> int:
        """How many more job processes the due work calls for: none while one is idle."""
        if now < self.next_demand_check or any(self._idle_since(pid) is not None for pid in jobs):
            return 0
        self.next_demand_check = now + DEMAND_CHECK_INTERVAL
        row = self.app.backend.fetchone("job_due_count", {"now": utcnow(), "limit": limit})
        return int(row["due"]) if row else 0

    def _retire_idle(self, jobs: list[int], now: float) -> None:
        """Retire the longest-idle job process once it has idled IDLE_RETIRE seconds,
        as long as another one stays idle."""
        idle = sorted((since, pid) for pid in jobs if (since := self._idle_since(pid)) is not None)
        if len(idle) > 1 and now - idle[0][0] >= self.idle_retire:
            log.debug(f"Retiring process[{idle[0][1]}][job]: idle for {self.idle_retire:g} s.")
            self._retire(idle[0][1], grace=self.options.shutdown_timeout)

    def _scale(self, target: int) -> None:
        log.info(f"Scaling job processes to {target}.")
        self.fill = self.fill or target > self.target
        self.target = target

    def _spawn(self, kind: str) -> None:
        owner = self.owner
        assert owner is not None

        def drop_inherited() -> None:
            owner.abandon()
            self.app.backend.after_fork()

        slot = self.board.take() if kind == "job" else None

        def run(lineage: Lineage) -> int:
            if slot is not None:
                return JobProcess(self.app, lineage, self.options.host_name, self.board, slot).run()
            return Maintainer(self.app, lineage, self.options.host_name).run()

        pid = fork_child(self.lineage, kind, run, drop_inherited)
        self.children[pid] = Child(kind, time.monotonic(), slot=slot)
        log.debug(f"Forked process[{pid}][{kind}].")

    def _retire(self, pid: int, grace: float) -> None:
        child = self.children.get(pid)
        if child is None or child.retiring:
            return
        child.retiring = True
        child.kill_at = time.monotonic() + grace
        self._signal(pid, signal.SIGTERM)

    def _signal(self, pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def _enforce_kill_deadlines(self, now: float) -> None:
        for pid, child in list(self.children.items()):
            if child.kill_at is not None and now >= child.kill_at:
                log.warning(f"Process[{pid}][{child.kind}] did not stop in time: killing it.")
                self._signal(pid, signal.SIGKILL)
                child.kill_at = None

    def _reap_children(self, block: bool = False) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self._child_exited(pid, child, status)

    def _child_exited(self, pid: int, child: Child, status: int) -> None:
        if child.slot is not None:
            self.board.give_back(child.slot)
        clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        text = describe_status(status)
        if child.kind == "job" and not (child.retiring or self.draining):
            self.fill = True  # a lost job process is replaced at once
        if clean or child.retiring or self.draining:
            log.debug(f"Child with process ID [{pid}] exited with status [{text}].")
        else:
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
                text += ": its job exceeded the job type's timeout"
            log.error(f"Process[{pid}][{child.kind}] died ({text}); its jobs are crashed.")
            lived = time.monotonic() - child.started
            self.respawn_delay = (
                min(RESPAWN_BACKOFF_MAX, max(0.1, self.respawn_delay * 2)) if lived < 1.0 else 0.0
            )
            self.next_respawn = time.monotonic() + self.respawn_delay
        owner_id = self.app.backend.owner_of_process(self.options.host_name, pid)
        if owner_id is not None and not self.app.backend.reap_owner(owner_id):
            self.unreaped[owner_id] = time.monotonic() + REAP_PATIENCE

    def _retry_reaps(self, now: float) -> None:
        """Crash the jobs of dead children whose database session outlived them."""
        for owner_id, give_up_at in list(self.unreaped.items()):
            if self.app.backend.reap_owner(owner_id) or now >= give_up_at:
                del self.unreaped[owner_id]

    def _finish_reaps(self) -> None:
        while self.unreaped:
            self._retry_reaps(time.monotonic())
            if self.unreaped:
                time.sleep(REAP_POLL)

    # -- stopping ---------------------------------------------------------------------

    def _drain(self) -> None:
        log.info(
            "Draining: no new jobs; running jobs have "
            f"{self.options.shutdown_timeout:g} s to finish."
        )
        self.draining = True
        self.drain_deadline = time.monotonic() + self.options.shutdown_timeout
        for pid in list(self.children):
            self.children[pid].retiring = True
            self._signal(pid, signal.SIGTERM)

    def _stop_now(self) -> int:
        for pid in list(self.children):
            self._signal(pid, signal.SIGKILL)
        self.draining = True
        self._reap_children(block=True)
        self._finish_reaps()
        return 0

    # -- control commands ----------------------------------------------------------------

    def _control(self, data: str) -> None:
        command = parse_command(data)
        if command is None:
            log.warning(f'Ignoring a control message that is not a command: "{data}".')
        elif command.command == "cancel" and command.job_id is not None:
            self._cancel(command.job_id)
        elif command.command == "scale" and command.is_for(self.options.host_name):
            assert command.processes is not None
            self._scale(command.processes)

    def _cancel(self, job_id: int) -> None:
        row = self.app.backend.fetchone("job_owner_process", {"kojo_job_id": job_id})
        if row is None or row["host_name"] != self.options.host_name:
            return
        pid = int(row["process_id"])
        if pid in self.children:
            log.info(f"Stopping process[{pid}]: its job with ID[{job_id}] was cancelled.")
            self._retire(pid, grace=CANCEL_GRACE)
