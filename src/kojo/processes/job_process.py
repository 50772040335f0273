"""A job process: claims jobs in batches and works them one after another.

Throughput comes from batching: one transaction completes the jobs finished
since the last claim and claims the next batch. The batch grows while jobs
are quick and falls back to one job as soon as a job is slow. A keeper
thread gives back the claimed-but-not-started jobs (and flushes pending
completions) once the current job has run for PREFETCH_HOLD seconds, so a
slow job never holds others hostage.

Isolation: a job process works many jobs in a row (no fork per job); a job
that kills its process (os._exit, a segfault, its `timeout`) takes only that
process down: its job is marked crashed, the root forks a replacement.
"""

from __future__ import annotations

import functools
import math
import os
import select
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import runner, states
from ..backends import Owner
from ..backends.availability import Backoff, one_line
from ..backends.vouching import VouchLine
from ..clock import SYSTEM_CLOCK, Clock
from ..errors import (
    DatabaseUnavailable,
    InvalidTransition,
    JobNotFound,
    KojoError,
    OwnerLost,
    WorkerUnavailable,
)
from ..logs import get_logger, metadata
from ..outcomes import Outcome
from ..settings import Settings
from . import patience
from .idle_board import IdleBoard
from .lifetime import Lifetime
from .lineage import Lineage
from .signal_queue import SignalQueue
from .unimportable import UnimportableTypes

if TYPE_CHECKING:
    from ..app import App
    from ..backends import Backend

PREFETCH_HOLD = 0.1  # seconds a claimed job may wait behind a running one
QUICK_JOB = 0.01  # a batch of jobs each quicker than this may grow the next batch
POLL = 1.0  # safety poll when no notification comes
MAX_BATCH = 100
WATCH_INTERVAL = 0.05  # seconds between looks at the anchor while a job runs
VOUCH_INTERVAL = 1.0  # seconds between asking the database whether it still vouches for us
log = get_logger("job")


@dataclass
class _Due:
    """The keeper thread's next step: wait, or write and check what it took."""

    wait: float | None = None
    prefetched: list[dict[str, Any]] = field(default_factory=list)
    completed: list[dict[str, Any]] = field(default_factory=list)
    vouch: bool = False


class BatchKeeper:
    """Claimed jobs not yet started, and completions not yet written, shared with a thread
    that hands them back to the database when the running job takes too long.

    While a job runs on a registration that can be lost (PostgreSQL's anchor session),
    the thread also reads the anchor every WATCH_INTERVAL (a session ended by the
    server, or by pg_terminate_backend, shows there at once) and asks the database
    every VOUCH_INTERVAL whether the anchor still holds its lock. If not, the process
    kills itself at once: the cluster sees it as dead and will re-run its job, which
    must not also go on running here. Wake-ups the thread reads meanwhile are kept
    for the main loop (`take_woken`).
    """

    def __init__(
        self, backend: Backend, owner: Owner, clock: Clock = SYSTEM_CLOCK, thread: bool = True
    ) -> None:
        """`thread=False`: no keeper thread; tests turn it by hand (`tick`)."""
        self.backend = backend
        self.owner = owner
        self.clock = clock
        self.owner_id = owner.id
        self._watch_anchor = owner.can_be_lost
        self._next_look = 0.0
        self._next_vouch = 0.0
        self._woken = False
        self._lock = threading.Condition()
        self._prefetched: list[dict[str, Any]] = []
        self._completed: list[dict[str, Any]] = []
        self._running_since: float | None = None
        self._closed = False
        self._parked = False  # the watcher waits for a job to start (see started())
        if thread:
            watcher = threading.Thread(target=self._watch, name="kojo-batch-keeper", daemon=True)
            watcher.start()

    def hand(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._prefetched = list(rows)

    def next(self) -> dict[str, Any] | None:
        with self._lock:
            return self._prefetched.pop(0) if self._prefetched else None

    def started(self) -> None:
        with self._lock:
            self._running_since = self.clock.monotonic()
            # Wake the watcher only when it waits for a job to start. While it waits on
            # a timer it looks again when that fires (and sees this job then): a batch of
            # quick jobs then costs one thread switch, not one per job.
            if self._parked:
                self._lock.notify()

    def take_woken(self) -> bool:
        """Whether a wake-up for jobs came while a job ran (read by this thread)."""
        with self._lock:
            woken, self._woken = self._woken, False
            return woken

    def finished(self, completed: Mapping[str, Any] | None) -> None:
        with self._lock:
            self._running_since = None
            if completed is not None:
                self._completed.append(dict(completed))

    def take_completed(self) -> list[dict[str, Any]]:
        with self._lock:
            taken, self._completed = self._completed, []
            return taken

    def give_back_completed(self, completed: list[dict[str, Any]]) -> None:
        """Completions that could not be written: kept for the next try."""
        with self._lock:
            self._completed[:0] = completed

    def flush(self) -> None:
        """Give back prefetched jobs and write pending completions now (this thread)."""
        with self._lock:
            prefetched, self._prefetched = self._prefetched, []
            completed, self._completed = self._completed, []
        self._write_or_keep(prefetched, completed)

    def _write_or_keep(
        self, prefetched: list[dict[str, Any]], completed: list[dict[str, Any]]
    ) -> None:
        """Write; if that fails, keep both lists (still ours: to run, or to write later)."""
        try:
            self._write(prefetched, completed)
        except BaseException:
            with self._lock:
                self._prefetched[:0] = prefetched
                self._completed[:0] = completed
            raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self.flush()

    def _watch(self) -> None:
        while True:
            with self._lock:
                while not self._closed and self._running_since is None:
                    self._parked = True
                    self._lock.wait()
                    self._parked = False
                if self._closed:
                    return
                due = self._take_due(self.clock.monotonic())
                if due.wait is not None:
                    # Nothing to time: as good as waiting for the next job to start.
                    self._parked = due.wait == math.inf
                    self._lock.wait(None if self._parked else due.wait)
                    self._parked = False
                    continue
            self._act(due)

    def tick(self) -> float | None:
        """One turn of the keeper thread's work, in the caller's thread: the seconds until
        the next is due (0.0: something was done now), None while no job runs."""
        with self._lock:
            if self._closed or self._running_since is None:
                return None
            due = self._take_due(self.clock.monotonic())
            if due.wait is not None:
                return due.wait
        self._act(due)
        return 0.0

    def _take_due(self, now: float) -> _Due:
        """What is due at `now` while a job runs (under the lock): the prefetched jobs and
        completions to hand back once it has run PREFETCH_HOLD, a look at the anchor
        (done here), a vouching check; or how long to wait for the first of them."""
        since = self._running_since
        assert since is not None
        pending = bool(self._prefetched or self._completed)
        hand_back_at = since + PREFETCH_HOLD if pending else math.inf
        look_at = max(since, self._next_look) if self._watch_anchor else math.inf
        vouch_at = max(since, self._next_vouch) if self._watch_anchor else math.inf
        soonest = min(hand_back_at, look_at, vouch_at)
        if soonest > now:
            return _Due(wait=soonest - now)
        due = _Due()
        if hand_back_at <= now:
            due.prefetched, self._prefetched = self._prefetched, []
            due.completed, self._completed = self._completed, []
        if look_at <= now:
            self._next_look = now + WATCH_INTERVAL
            # Under the lock: the main loop reads the anchor only once no job
            # runs (finished() waits for this look to end).
            self._look_at_anchor()
        if vouch_at <= now:
            self._next_vouch = now + VOUCH_INTERVAL
            due.vouch = True
        return due

    def _act(self, due: _Due) -> None:
        try:
            self._write_or_keep(due.prefetched, due.completed)
        except Exception as exc:
            if not self.backend.is_unavailable(exc):
                log.exception("Could not hand back prefetched jobs.")
        if due.vouch:
            self._check_vouched()

    def _look_at_anchor(self) -> None:
        try:
            notes = self.owner.wait(0)
        except Exception:
            notes = []
        if any(note.topic == "jobs" for note in notes):
            self._woken = True
        if self.owner.is_lost():
            self._die("its database session ended")

    def _check_vouched(self) -> None:
        try:
            dead = self.backend.owner_is_dead(self.owner_id)
        except Exception as exc:
            if not self.backend.is_unavailable(exc):
                log.exception("Could not check that the database still vouches for this process.")
            return  # an unreachable database cannot reap us either; the anchor look tells
        if dead:
            self._die("its database session was lost")

    def _die(self, why: str) -> None:
        log.warning(
            f"The database no longer vouches for this process ({why}): "
            "stopping now so that its job is not run twice; it will be re-run."
        )
        os._exit(patience.EXIT_REGISTRATION_LOST)

    def _write(self, prefetched: list[dict[str, Any]], completed: list[dict[str, Any]]) -> None:
        if not prefetched and not completed:
            return
        now = self.clock.now()
        backend = self.backend

        def write() -> None:
            if completed:
                backend.job_complete_many(completed, self.owner_id, now)
            for row in prefetched:
                try:
                    backend.job_transition(
                        row["kojo_job_id"], states.UNCLAIM, now=now, owner=self.owner_id, row=row
                    )
                except (InvalidTransition, JobNotFound):
                    pass  # cancelled or held meanwhile: nothing to give back

        backend.retrying(write)


class JobProcess:
    """The main loop of one job process."""

    def __init__(
        self,
        app: App,
        lineage: Lineage,
        settings: Settings,
        board: IdleBoard | None = None,
        slot: int = 0,
        clock: Clock = SYSTEM_CLOCK,
        line: VouchLine | None = None,
    ) -> None:
        self.app = app
        self.line = line
        self.lineage = lineage
        self.settings = settings
        self.clock = clock
        self.board = board
        self.slot = slot
        self.stopping = False
        self.batch = 1
        self.signals: SignalQueue | None = None
        self.unimportable = UnimportableTypes(clock)

    def stop_requested(self) -> bool:
        """True once SIGTERM/SIGUSR1 arrived: signals are only queued by their handler, so
        look at the queue here too (a running job asks while the main loop is not looking)."""
        if not self.stopping and self.signals is not None and self.signals.pending():
            self._handle_signals(self.signals)
        return self.stopping

    def run(self) -> int:
        life = Lifetime(
            self.app,
            self.settings,
            self.lineage,
            f"Job process [{os.getpid()}]",
            log,
            [signal.SIGTERM, signal.SIGUSR1],
            self.line,
        )
        self.signals = life.signals
        return life.run(lambda owner: self._live(owner, life), self.stop_requested)

    def _live(self, owner: Owner, life: Lifetime) -> int:
        backend = self.app.backend
        keeper = BatchKeeper(backend, owner, self.clock)
        try:
            return self._loop(owner, life.signals, keeper, life.backoff)
        finally:
            try:
                keeper.close()
            except Exception as exc:
                if not backend.is_unavailable(exc):
                    raise

    def _handle_signals(self, signals: SignalQueue) -> None:
        for signum in signals.pop_all():
            if signum in (signal.SIGTERM, signal.SIGUSR1):
                self.stopping = True

    def _loop(
        self, owner: Owner, signals: SignalQueue, keeper: BatchKeeper, backoff: Backoff
    ) -> int:
        backend = self.app.backend
        wake = True
        while True:
            self._handle_signals(signals)
            if self.stopping:
                return 0
            if owner.is_lost():
                log.warning("Lost the database session that registers this process: stopping.")
                return patience.EXIT_REGISTRATION_LOST
            rows: list[dict[str, Any]] = []
            completed = keeper.take_completed()
            try:
                if wake or completed:
                    now = self.clock.now()
                    claim = functools.partial(
                        backend.job_claim,
                        owner.id,
                        self.batch,
                        now,
                        completed,
                        skip=self.unimportable.skipped(),
                    )
                    rows = backend.retrying(claim)
                    completed = []
                if not rows:
                    if backend.claim_contended():
                        wake = True  # work was due but held: look again, not after a poll
                        continue
                    if self.board is not None and self.board.idle_since(self.slot) is None:
                        self.board.mark_idle(self.slot)
                    wake = keeper.take_woken() or self._idle(owner, signals)
                    backoff.succeeded()
                    continue
            except OwnerLost as exc:
                log.warning(f"Stopping: {exc}.")
                return patience.EXIT_REGISTRATION_LOST
            except Exception as exc:
                if not backend.is_unavailable(exc):
                    raise
                keeper.give_back_completed(completed)  # written by the next claim
                patience.pause(signals, backoff.failed(exc))
                wake = True
                continue
            backoff.succeeded()
            if self.board is not None:
                self.board.mark_busy(self.slot)
            unsettled = self._work_batch(owner, keeper, rows)
            if unsettled is not None:
                log.warning(
                    f"Stopping: the outcome of job with ID[{unsettled[0]}] could not be "
                    f"written ({unsettled[1]}); it will be re-run."
                )
                return patience.EXIT_REGISTRATION_LOST
            wake = True

    def _idle(self, owner: Owner, signals: SignalQueue) -> bool:
        """Wait for work; True when a claim is worth trying."""
        timeout = POLL
        now = self.clock.now()
        backend = self.app.backend
        skipped = self.unimportable.skipped()
        next_at = backend.job_next_work_at(now, skipped)
        falls_due = False  # the wait ends when a job falls due
        if next_at is not None and (next_at - now).total_seconds() < POLL:
            timeout = max(0.001, (next_at - now).total_seconds())
            falls_due = True
        owner_fd = owner.fileno()
        ready, _, _ = select.select([owner_fd, signals.fileno()], [], [], timeout)
        if not ready:
            # The safety poll (a wake-up may have been lost): a look for a due job costs
            # less than a claim (a third of it on MySQL), and an idle host pays it each
            # second in every job process.
            return falls_due or backend.job_due_count(self.clock.now(), 1, skipped) > 0
        if owner_fd in ready:
            try:
                notes = owner.wait(0)
            except Exception as exc:
                if owner.is_lost():
                    return False  # the loop sees it
                raise DatabaseUnavailable(str(exc)) from exc
            return any(n.topic == "jobs" for n in notes)
        return False

    def _work_batch(
        self, owner: Owner, keeper: BatchKeeper, rows: list[dict[str, Any]]
    ) -> tuple[int, str] | None:
        """Work the claimed rows; (job id, error) of a job whose outcome could not be
        written because the database was unavailable, which stops the batch."""
        try:
            rows = [runner.with_type(self.app, row) for row in rows]
        except Exception as exc:
            if not self.app.backend.is_unavailable(exc):
                raise
            return (int(rows[0]["kojo_job_id"]), one_line(exc))
        keeper.hand(rows[1:])
        current: dict[str, Any] | None = rows[0]
        quick = True
        unsettled: tuple[int, str] | None = None
        while current is not None:
            started = self.clock.monotonic()
            try:
                outcome = self._work(owner, keeper, current)
            except Exception as exc:
                if not self.app.backend.is_unavailable(exc):
                    raise
                keeper.finished(None)
                unsettled = (int(current["kojo_job_id"]), one_line(exc))
                break
            keeper.finished(current if outcome == Outcome.AUTO_COMPLETE else None)
            if self.clock.monotonic() - started > QUICK_JOB:
                quick = False
            if self.stop_requested():
                break
            current = keeper.next()
        self.batch = min(MAX_BATCH, self.batch * 2) if quick and len(rows) == self.batch else 1
        if self.stopping or unsettled is not None:
            try:
                keeper.flush()
            except Exception as exc:
                if not self.app.backend.is_unavailable(exc):
                    raise
        return unsettled

    def _work(self, owner: Owner, keeper: BatchKeeper, row: dict[str, Any]) -> Outcome:
        timeout = row.get("timeout")
        if timeout:
            # The kernel ends this process when the timer fires (SIGALRM's default
            # action): the job is then crashed like any other death. Hand back the
            # rest of the batch first, so only this job pays for it.
            keeper.flush()
            signal.setitimer(signal.ITIMER_REAL, float(timeout))
            if self.board is not None:  # the root kills us if SIGALRM cannot (frozen)
                self.board.set_deadline(self.slot, self.clock.monotonic() + float(timeout))
        metadata.job = row
        keeper.started()
        unimportable = self.unimportable
        try:
            # Claimed in a batch with a job whose worker failed to import: given back.
            if unimportable.failing and unimportable.skips(str(row["type_code"])):
                self._give_back(owner, row)
                return Outcome.LOST
            outcome = runner.run(self.app, row, owner.id, self.stop_requested)
            if unimportable.failing:
                unimportable.worked(str(row["type_code"]))
            return outcome
        except WorkerUnavailable as exc:
            self._give_back(owner, row)
            self.unimportable.failed(exc)
            return Outcome.LOST
        except KojoError as exc:
            if self.app.backend.is_unavailable(exc):
                raise
            log.exception(f"Could not settle job with ID[{row['kojo_job_id']}].")
            return Outcome.LOST
        finally:
            if timeout:
                signal.setitimer(signal.ITIMER_REAL, 0)
                if self.board is not None:
                    self.board.set_deadline(self.slot, None)
            metadata.job = None

    def _give_back(self, owner: Owner, row: dict[str, Any]) -> None:
        """Put a claimed job whose worker cannot be imported back to waiting, untouched
        (times_worked as before the claim; not a retry, not a crash)."""
        backend = self.app.backend
        try:
            backend.retrying(
                lambda: backend.job_transition(
                    row["kojo_job_id"], states.UNCLAIM, owner=owner.id, row=row
                )
            )
        except (InvalidTransition, JobNotFound):
            pass  # cancelled or held meanwhile: nothing to give back
