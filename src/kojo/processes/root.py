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
These rules are pool_policy.decide; the root gathers what it sees, executes
the actions, and reads time only through its clock.

A job process that dies is replaced; its jobs are marked crashed at once (the
root reaps the dead process's registration, and only it: it knows how the child
died, so only it can tell a crash of the job, counted against it, from a lost
registration, which is not). SIGTERM drains: job processes finish their current
job within the shutdown timeout, then the rest are killed and their jobs left
crashed, to be re-run. SIGQUIT stops now.

The database may go away at any time: the root then keeps its children (which
wait for the database themselves), retries what it has to write with backoff,
and registers again when its own registration was lost.
"""

from __future__ import annotations

import dataclasses
import os
import select
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..backends import Owner
from ..backends.availability import Backoff
from ..backends.job_store import CrashedJob, Death
from ..backends.vouching import VouchLine
from ..clock import SYSTEM_CLOCK, Clock
from ..control import Command, CommandFeed
from ..logs import get_logger
from ..settings import MAX_PROCESSES, Settings
from . import patience, pool_policy
from .idle_board import IdleBoard
from .job_process import JobProcess
from .lifetime import close_owner, process_info
from .lineage import Lineage, describe_status, fork_child
from .maintainer import Maintainer
from .pool_policy import Drained, Kill, Retire, Spawn, StopNow
from .signal_queue import SignalQueue

if TYPE_CHECKING:
    from ..app import App

log = get_logger("root")
CANCEL_GRACE = 10.0  # seconds a cancelled job's process has to stop before SIGKILL
DEMAND_CHECK_INTERVAL = 0.1  # at most this often the root counts due work


# PostgreSQL ends a killed client's session, and drops its advisory lock, a moment after
# the process is reaped: a dead child's owner is probed again until then, every REAP_POLL
# at first, then less often. When stopping, the root waits up to REAP_PATIENCE for that.
REAP_PATIENCE = 5.0
REAP_POLL = 0.02
REAP_POLL_MAX = 1.0


@dataclass
class Child:
    kind: str
    started: float
    kill_at: float | None = None  # SIGKILL after this monotonic time
    retiring: bool = False
    slot: int | None = None  # its place on the idle board (job processes)
    timed_out: bool = False  # killed by the root for outliving its job's timeout


@dataclass
class DeadChild:
    """A child that exited and whose registrations are still to be reaped."""

    blame: bool  # count the crash against its jobs (not when it lost its registration)
    kind: str = "job"
    death: Death | None = None  # how it died, when that was not its own doing or ours
    owners: list[int] | None = None  # its registrations, once looked up
    crashed: list[CrashedJob] = field(default_factory=list)  # the jobs its reaping crashed
    told: bool = False  # its death was logged before its jobs could be crashed
    late: bool = False  # looked up only after the database came back
    next_try: float = 0.0
    delay: float = REAP_POLL


@dataclass
class Root:
    app: App
    lineage: Lineage
    settings: Settings
    clock: Clock = SYSTEM_CLOCK
    children: dict[int, Child] = field(default_factory=dict)
    target: int = 0
    fill: bool = True  # fork up to the target without waiting for demand
    next_demand_check: float = 0.0
    board: IdleBoard = field(init=False)
    draining: bool = False
    drain_deadline: float = 0.0
    respawn_delay: float = 0.0
    next_respawn: float = 0.0
    owner: Owner | None = None
    unreaped: dict[int, DeadChild] = field(default_factory=dict)  # by pid
    backoff: Backoff = field(default_factory=lambda: Backoff("Root", log))
    next_register: float = 0.0
    maintainer_from: float = 0.0  # no maintainer before this (pool_policy.MAINTAINER_DELAY)
    reap_previous_at: float | None = None  # when to reap dead registrations (None: done)
    commands: CommandFeed = field(init=False)
    # The server's line: it vouches for the root and its children (vouching.py); None
    # where each process registers itself.
    line: VouchLine | None = None

    def __post_init__(self) -> None:
        self.board = IdleBoard(self.clock)
        self.commands = CommandFeed(self.app.backend)

    def run(self) -> int:
        self.target = self.settings.max_processes
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
        self.maintainer_from = self.clock.monotonic() + pool_policy.MAINTAINER_DELAY
        log.debug("Root started.", extra={"context": {"max_processes": self.target}})
        try:
            return self._loop(signals)
        finally:
            if self.owner is not None:
                close_owner(self.app.backend, self.owner)

    def _register(self, now: float) -> None:
        """Register (again, after the registration was lost), unless the database is
        still unavailable; a previous root's dead children are reaped right after."""
        if now < self.next_register:
            return
        backend = self.app.backend
        info = process_info(self.settings, self.lineage, "root")
        try:
            if self.owner is not None:
                lost, self.owner = self.owner, None
                try:
                    lost.close()
                except Exception:
                    pass  # the database may still be away: it is dead to the cluster anyway
            if self.line is None:
                self.owner = backend.register_owner(info)
            else:
                self.owner = self.line.register(info)
            self.app.use_owner(self.owner)
        except Exception as exc:
            if not backend.is_unavailable(exc):
                raise
            self.next_register = now + self.backoff.failed(exc)
            return
        self.backoff.succeeded()
        # A previous root's jobs are crashed at once, not in a while: right after this
        # turn's forks, so that the first job process does not wait for it.
        self.reap_previous_at = now

    def _reap_previous(self, now: float) -> None:
        """Reap the dead registrations (a previous root's) once registered; retried with
        backoff while the database is away."""
        if self.reap_previous_at is None or now < self.reap_previous_at:
            return
        backend = self.app.backend
        try:
            backend.reap_dead_owners()
        except Exception as exc:
            if not backend.is_unavailable(exc):
                raise
            self.reap_previous_at = now + self.backoff.failed(exc)
            return
        self.reap_previous_at = None

    # -- main loop -------------------------------------------------------------------

    def _loop(self, signals: SignalQueue) -> int:
        # The job processes first: the first job then waits neither for the root's own
        # registration nor for its first look at the commands (round trips, and on
        # PostgreSQL a connection of its own). Children may be forked before the root is
        # registered anyway (the database may be away); they register themselves.
        self.turn(self.clock.monotonic())
        while True:
            for signum in signals.pop_all():
                if signum == signal.SIGQUIT:
                    return self._stop_now()
                if signum == signal.SIGCHLD:
                    continue  # reaped below
                if signum == signal.SIGTTIN:
                    self._add_one()
                elif signum == signal.SIGTTOU:
                    self._scale(max(0, self.target - 1))
                elif signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
                    if self.draining:
                        return self._stop_now()
                    self._drain()
            self._reap_children()
            now = self.clock.monotonic()
            if self.owner is None or self.owner.is_lost():
                if self.owner is not None and not self.backoff.failing:
                    log.warning("Root: lost its database registration; registering again.")
                self._register(now)
            self._retry_reaps(now)
            for command in self.commands.look(now):
                self._obey(command)
            code = self.turn(now)
            if code is not None:
                return code
            self._reap_previous(now)
            owner = self.owner
            owner_fd = None if owner is None or owner.is_lost() else owner.fileno()
            watched = [signals.fileno()] + ([] if owner_fd is None else [owner_fd])
            ready, _, _ = select.select(watched, [], [], self._timeout(now))
            if owner is not None and owner_fd in ready:
                self._read_notes(owner)

    def _read_notes(self, owner: Owner) -> None:
        try:
            notes = owner.wait(0)
        except Exception as exc:
            if owner.is_lost() or self.app.backend.is_unavailable(exc):
                return  # the loop registers again
            raise
        for note in notes:
            self.commands.hint(note)

    def _timeout(self, now: float) -> float:
        deadlines = [c.kill_at for c in self.children.values() if c.kill_at is not None]
        pool = self.pool()
        deadlines += [due for due, _ in pool_policy.job_deadlines(pool)]
        maintainer_due = pool_policy.maintainer_due(pool, now)
        if maintainer_due is not None:
            deadlines.append(maintainer_due)
        if self.draining:
            deadlines.append(self.drain_deadline)
        if self.next_respawn > now:
            deadlines.append(self.next_respawn)
        if self.unreaped:
            deadlines.append(min(dead.next_try for dead in self.unreaped.values()))
        if self.reap_previous_at is not None:
            deadlines.append(self.reap_previous_at)
        if self.owner is None or self.owner.is_lost():
            deadlines.append(self.next_register)
        soonest = min(deadlines, default=now + 1.0)
        return max(0.01, min(1.0, soonest - now))

    # -- the pool ---------------------------------------------------------------------

    def pool(self) -> pool_policy.Pool:
        """What the pool policy decides from: the children, as the idle board shows them."""
        views = []
        for pid, child in self.children.items():
            slot = child.slot
            views.append(
                pool_policy.ChildView(
                    pid,
                    child.kind,
                    retiring=child.retiring,
                    kill_at=child.kill_at,
                    idle_since=None if slot is None else self.board.idle_since(slot),
                    job_deadline=None if slot is None else self.board.deadline(slot),
                    timed_out=child.timed_out,
                )
            )
        return pool_policy.Pool(
            tuple(views),
            target=self.target,
            idle_retire=self.settings.idle_retire_seconds,
            shutdown_timeout=self.settings.shutdown_timeout,
            fill=self.fill,
            free_slots=self.board.free(),
            next_respawn=self.next_respawn,
            draining=self.draining,
            drain_deadline=self.drain_deadline,
            maintainer_from=self.maintainer_from,
        )

    def turn(self, now: float) -> int | None:
        """Decide (pool_policy) and act; the root's exit code once it is done."""
        pool = self.pool()
        limit = pool_policy.due_count_wanted(pool, now, self.next_demand_check)
        decision = pool_policy.decide(pool, self._count_due(limit, now) if limit else 0, now)
        self.fill = decision.fill
        for action in decision.actions:
            if isinstance(action, Kill):
                self._kill(action)
            elif isinstance(action, Spawn):
                self._spawn(action.kind)
            elif isinstance(action, Retire):
                if action.idle_for is not None:
                    log.debug(
                        f"Retiring process[{action.pid}][job]: idle for {action.idle_for:g} s."
                    )
                self._retire(action.pid, action.grace)
            elif isinstance(action, Drained):
                self._finish_reaps()
                log.info("Root drained.")
                return 0
            elif isinstance(action, StopNow):
                log.warning("Shutdown timeout reached: killing the remaining job processes.")
                return self._stop_now()
        return None

    def _count_due(self, limit: int, now: float) -> int:
        """Due jobs, up to `limit` (0 while the database is away: the next try backs off)."""
        self.next_demand_check = now + DEMAND_CHECK_INTERVAL
        backend = self.app.backend
        try:
            return backend.job_due_count(self.clock.now(), limit)
        except Exception as exc:
            if not backend.is_unavailable(exc):
                raise
            self.next_demand_check = now + self.backoff.failed(exc)
            return 0

    def _kill(self, kill: Kill) -> None:
        child = self.children[kill.pid]
        if kill.reason == "timeout":
            log.error(
                f"Job process {self._path_of(kill.pid, 'job')} outlived its job's timeout "
                "without ending (frozen, or SIGALRM blocked): killing it; its job is crashed."
            )
            child.timed_out = True
        else:
            log.warning(
                f"{child.kind.capitalize()} process {self._path_of(kill.pid, child.kind)} did "
                "not stop in time: killing it."
            )
            child.kill_at = None
        self._signal(kill.pid, signal.SIGKILL)

    def _add_one(self) -> None:
        """SIGTTIN: one job process more, up to the bound."""
        if self.target >= MAX_PROCESSES:
            log.warning(
                "Ignoring SIGTTIN: already at the most job processes a host "
                f"may run ({MAX_PROCESSES})."
            )
            return
        self._scale(self.target + 1)

    def _scale(self, target: int) -> None:
        log.info(f"Scaling job processes to {target}.")
        self.fill = self.fill or target > self.target
        self.target = target

    def _spawn(self, kind: str) -> None:
        owner = self.owner

        def drop_inherited() -> None:
            if owner is not None:
                owner.abandon()
            self.app.backend.after_fork()

        slot = self.board.take() if kind == "job" else None

        def run(lineage: Lineage) -> int:
            if slot is not None:
                return JobProcess(
                    self.app, lineage, self.settings, self.board, slot, line=self.line
                ).run()
            return Maintainer(self.app, lineage, self.settings, self.line).run()

        pid = fork_child(self.lineage, kind, run, drop_inherited)
        self.children[pid] = Child(kind, self.clock.monotonic(), slot=slot)
        log.debug(f"Forked process[{pid}][{kind}].")

    def _retire(self, pid: int, grace: float) -> None:
        child = self.children.get(pid)
        if child is None or child.retiring:
            return
        child.retiring = True
        child.kill_at = self.clock.monotonic() + grace
        self._signal(pid, signal.SIGTERM)

    def _signal(self, pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

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
        code = os.waitstatus_to_exitcode(status)
        clean = code == 0
        lost = code == patience.EXIT_REGISTRATION_LOST
        text = describe_status(status)
        if child.kind == "job" and not (child.retiring or self.draining):
            self.fill = True  # a lost job process is replaced at once
        if clean or child.retiring or self.draining:
            log.debug(f"Child with process ID [{pid}] exited with status [{text}].")
        elif lost:
            log.warning(
                f"{child.kind.capitalize()} process {self._path_of(pid, child.kind)} lost its "
                "database registration; replacing it (its jobs are re-run, not counted as "
                "crashed)."
            )
        death = None
        if not (clean or lost or child.retiring or self.draining):
            timed_out = child.timed_out or (
                os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM
            )
            death = Death(self._path_of(pid, child.kind), text, timed_out)
            now = self.clock.monotonic()
            self.respawn_delay = pool_policy.respawn_delay(self.respawn_delay, now - child.started)
            self.next_respawn = now + self.respawn_delay
        self._report_death(pid)
        dead = self.unreaped[pid] = DeadChild(not lost, child.kind, death)
        self._retry_reaps(self.clock.monotonic(), only=pid)
        if death is not None and pid in self.unreaped:  # the database is slow or away
            log.error(
                f"{child.kind.capitalize()} process {death.path} died ({text}); its jobs "
                "will be crashed as soon as its registration can be reaped."
            )
            dead.told = True

    def _path_of(self, pid: int, kind: str) -> str:
        return self.lineage.child(kind, pid).path

    def _tell_death(self, dead: DeadChild) -> None:
        """Log a child's death once its jobs are crashed: one line per job, naming it, how
        its process died and what happens next."""
        death, kind = dead.death, dead.kind
        if death is None:
            return
        for job in dead.crashed:
            log.error(death_line(kind, death, job), extra={"job": dataclasses.asdict(job)})
        if not dead.crashed and not dead.told:
            idle = " while idle" if kind == "job" else ""
            log.error(f"{kind.capitalize()} process {death.path} died ({death.how}){idle}.")

    def _report_death(self, pid: int) -> None:
        """Tell the server that vouched for the child that it is gone, so that its
        registrations are dead (and reaped below) at once; if the server cannot answer,
        it sees the child's doorbell hang up, and the reaping waits for that."""
        if self.line is None or self.owner is None or self.owner.is_lost():
            return  # the server dropped every key of the tree already
        try:
            self.line.release(pid)
        except Exception as exc:
            if not self.app.backend.is_unavailable(exc):
                raise

    def _retry_reaps(self, now: float, only: int | None = None) -> None:
        """Crash the jobs of dead children (their registrations may outlive them a moment
        on PostgreSQL, and the database may be away): until done, with growing pauses."""
        backend = self.app.backend
        for pid, dead in list(self.unreaped.items()):
            if (only is not None and pid != only) or now < dead.next_try:
                continue
            try:
                if dead.owners is None:
                    owners = backend.owners_of_process(self.settings.host_name, pid)
                    if dead.late:  # its pid may be a newer child's by now: only the dead
                        owners = [o for o in owners if backend.owner_is_dead(o)]
                    dead.owners = owners
                dead.owners = [
                    owner_id
                    for owner_id in dead.owners
                    if not self._reap_owner(dead, owner_id) and self._still_registered(owner_id)
                ]
            except Exception as exc:
                if not backend.is_unavailable(exc):
                    raise
                dead.late = dead.late or dead.owners is None
                dead.next_try = now + self.backoff.failed(exc)
                continue
            if not dead.owners:
                del self.unreaped[pid]
                self._tell_death(dead)
                continue
            dead.next_try = now + dead.delay
            dead.delay = min(REAP_POLL_MAX, dead.delay * 2)

    def _reap_owner(self, dead: DeadChild, owner_id: int) -> bool:
        crashed = self.app.backend.reap_dead_owner(owner_id, blame=dead.blame, death=dead.death)
        if crashed is None:
            return False
        dead.crashed += crashed
        return True

    def _still_registered(self, owner_id: int) -> bool:
        row = self.app.backend.process_get(owner_id)
        return row is not None

    def _finish_reaps(self) -> None:
        """When stopping: reap what can be within REAP_PATIENCE; the rest is the
        maintainer's (the cluster's housekeeping reaps every dead registration)."""
        give_up_at = self.clock.monotonic() + REAP_PATIENCE
        while self.unreaped and self.clock.monotonic() < give_up_at:
            for dead in self.unreaped.values():
                dead.next_try = min(dead.next_try, self.clock.monotonic())
                dead.delay = REAP_POLL
            self._retry_reaps(self.clock.monotonic())
            if self.unreaped:
                time.sleep(REAP_POLL)

    # -- stopping ---------------------------------------------------------------------

    def _drain(self) -> None:
        log.info(
            "Draining: no new jobs; running jobs have "
            f"{self.settings.shutdown_timeout:g} s to finish."
        )
        self.draining = True
        self.drain_deadline = self.clock.monotonic() + self.settings.shutdown_timeout
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

    def _obey(self, command: Command) -> None:
        """A command read from kojo's tables (control.py): never one from a wake-up."""
        if command.command == "cancel" and command.job_id is not None:
            self._cancel(command.job_id, command.process_id)
        elif command.command == "scale" and command.is_for(self.settings.host_name):
            assert command.processes is not None
            self._scale(command.processes)

    def _cancel(self, job_id: int, process_id: int | None) -> None:
        """Stop the job process of a cancelled job if it is one of ours. The process is
        looked up by the id the stop names: the job's row may already be deleted."""
        backend = self.app.backend
        where: tuple[str, int] | None = None
        try:
            if process_id is None:  # a stop stored by an older kojo
                row = backend.job_owner_process(job_id)
                if row is not None:
                    where = (str(row["host_name"]), int(row["process_id"]))
            else:
                process = backend.process_get(process_id)
                if process is not None:
                    where = (process.host_name, process.process_id)
        except Exception as exc:
            if not backend.is_unavailable(exc):
                raise
            log.warning(f"Could not look up the process of cancelled job with ID[{job_id}].")
            return
        if where is None or where[0] != self.settings.host_name:
            return
        pid = where[1]
        if pid in self.children:
            log.info(f"Stopping process[{pid}]: its job with ID[{job_id}] was cancelled.")
            self._retire(pid, grace=CANCEL_GRACE)


def death_line(kind: str, death: Death, job: CrashedJob) -> str:
    """`Job process /server[8]/root[22]/job[30] died (signal 9 (SIGKILL)) while working job
    123 (type x); the job is crashed and will be re-run (crash 1 of max_crashes=5).`"""
    working = f"job {job.kojo_job_id} (type {job.type_code})"
    if death.timed_out:
        what = f"Job {job.kojo_job_id} (type {job.type_code}) ran past its type's timeout: its "
        what += f"{kind} process {death.path} was killed"
    else:
        what = (
            f"{kind.capitalize()} process {death.path} died ({death.how}) while working {working}"
        )
    if job.assigned_state == "panicked":
        return (
            f"{what}; the job is panicked: it crashed {job.times_crashed} "
            f"time{'' if job.times_crashed == 1 else 's'} "
            f"(max_crashes={job.max_crashes}). Fix the cause, then: kojo jobs retry "
            f"{job.kojo_job_id}"
        )
    return (
        f"{what}; the job is crashed and will be re-run (crash {job.times_crashed} of "
        f"max_crashes={job.max_crashes})."
    )
