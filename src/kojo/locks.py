"""Process-aware mutexes and counting semaphores with fencing tokens.

A semaphore `name` has `slots` slots (a mutex is a semaphore of one slot). Its
state is rows: `kojo_semaphore(name, slots)` and one `kojo_semaphore_slot` per
slot, naming the holder (an *owner*: a process registration that dies with the
process) and keeping the slot's fencing counter, which only grows.

Acquiring is one short write transaction (on PostgreSQL, first a single
statement for the common case): create the rows if missing, check the slot
count, take the lowest free slot with `token = last_token + 1`; when none is
free, reap holders whose owners are dead (their jobs crash, their slots are
freed) and try again, else register a waiter row naming the thread's bell
(backends/bells.py) and sleep on it. Releasing is a compare-and-set on (name,
slot, token, owner) that rings the oldest live waiter's bell. The queries are
in backends/lock_store.py and sql/locks.sql; the user's guide is docs/locks.md.

Re-entrancy is per thread: a thread that takes a lock it already holds gets
its lease back, counted, and the slot is freed at the outermost release.
Other threads of the same process contend like other processes do.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from datetime import datetime
from types import TracebackType
from typing import Any

from . import bounds
from .backends import Backend, Owner
from .backends.availability import Backoff, one_line
from .backends.bells import Bell, Ringer
from .backends.errors import database_errors
from .backends.lock_records import Waiter
from .backends.lock_store import (
    NEAR_HEAD,
    PROBE_INTERVAL,
    SAFETY_INTERVAL,
    SPARE_WAITERS,
    LockStore,
    Queue,
)
from .clock import SYSTEM_CLOCK, Clock
from .errors import InvalidArgument, KojoError, LeaseLost, LockTimeout, SlotsMismatch
from .logs import get_logger
from .process_owner import ProcessOwner

MAX_NAME_LENGTH = 255
MAX_SLOTS = 1024  # each slot is a row kept forever (its fencing counter)
# `kojo locks --json` keys: the tables' column names (waiters have no slot or token).
LISTING_KEYS = (
    "state",
    "name",
    "slot",
    "slots",
    "token",
    "kojo_process_id",
    "host_name",
    "process_id",
    "path",
    "kojo_job_id",
    "acquired_at_date_time",
    "since_date_time",
)


def check_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidArgument(f"lock name must be a string, got {name!r}")
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"lock name must have 1 to {MAX_NAME_LENGTH} characters, got {len(name)}: {name!r}"
        )
    if "\x00" in name:
        raise InvalidArgument(f"lock name must not contain NUL characters: {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"lock name is not valid Unicode text: {name!r}")
    return name


def check_slots(slots: object) -> int:
    if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= MAX_SLOTS:
        raise InvalidArgument(f"slots must be an integer from 1 to {MAX_SLOTS}, got {slots!r}")
    return slots


def check_timeout(timeout: object) -> float | None:
    """Seconds to wait (None or infinity: forever, 0: try once); InvalidArgument naming a
    bad value."""
    if timeout is None:
        return None
    seconds = bounds.check_seconds("timeout", timeout)
    return None if math.isinf(seconds) else seconds


def check_job_id(job_id: object) -> int | None:
    if job_id is not None and (isinstance(job_id, bool) or not isinstance(job_id, int)):
        raise InvalidArgument(f"job_id must be an integer or None, got {job_id!r}")
    return job_id


def describe(name: str, slots: int) -> str:
    return f"mutex {name!r}" if slots == 1 else f"semaphore {name!r} ({slots} slots)"


class Lease:
    """A held slot of a mutex or semaphore.

    `token` strictly increases per (name, slot) with every grant, across
    restarts: give it to whatever the lock protects, which should refuse a
    token lower than the highest it has seen (docs/locks.md).
    """

    def __init__(
        self,
        locks: Locks,
        owner: Owner,
        name: str,
        slots: int,
        slot: int,
        token: int,
        job_id: int | None,
        acquired_at: datetime,
    ) -> None:
        self.name = name
        self.slots = slots
        self.slot = slot
        self.token = token
        self.job_id = job_id
        self.acquired_at = acquired_at
        self.owner_id = owner.id
        self._owner = owner
        self._locks = locks
        self._depth = 1
        self._released = False
        self._registry: dict[str, Lease] | None = None

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Lease {self.name!r} slot={self.slot} token={self.token} {state}>"

    @property
    def released(self) -> bool:
        return self._released

    @property
    def lost(self) -> bool:
        """True when this process can tell that the backend no longer vouches for its owner."""
        return not self._released and self._owner.is_lost()

    def fence(self) -> tuple[str, int, int]:
        """(name, slot, token): what a fenced resource checks."""
        return (self.name, self.slot, self.token)

    def is_held(self) -> bool:
        """Ask the database: is this grant still ours, and our owner alive?"""
        return not self._released and self._locks.is_held(self)

    def release(self) -> None:
        """Give the slot back (at the outermost release of a re-entered lease).

        Idempotent. Raises LeaseLost if the lease had been taken away (its
        owner was found dead) or its owner can no longer be vouched for.
        """
        self._locks.release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        release_quietly_on_error(self, exc)


def release_quietly_on_error(lease: Lease, exc: BaseException | None) -> None:
    """Release; if the block already failed, a LeaseLost becomes a note on that error."""
    if exc is None:
        lease.release()
        return
    try:
        lease.release()
    except KojoError as failed:  # LeaseLost, DatabaseError: secondary to the block's error
        exc.add_note(f"also, releasing {lease!r}: {failed}")


class LockRequest:
    """What `app.mutex()` and `app.semaphore()` return: a context manager yielding a Lease.

    `acquire()` gives the Lease without a `with` block (release it yourself).
    """

    def __init__(
        self,
        locks: Locks,
        name: str,
        slots: int,
        timeout: float | None,
        job_id: int | None,
    ) -> None:
        self._locks = locks
        self.name = check_name(name)
        self.slots = check_slots(slots)
        self.timeout = check_timeout(timeout)
        self.job_id = check_job_id(job_id)
        self._entered = threading.local()

    def acquire(self) -> Lease:
        return self._locks.acquire(self.name, self.slots, self.timeout, self.job_id)

    def __enter__(self) -> Lease:
        lease = self.acquire()
        stack: list[Lease] = self._entered.__dict__.setdefault("stack", [])
        stack.append(lease)
        return lease

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        release_quietly_on_error(self._entered.stack.pop(), exc)


log = get_logger("locks")
RELEASE_ATTEMPTS = 5  # a release retried over about 1.5 s of database unavailability


class _OwnerLost(Exception):
    """The database says this process's owner is dead (e.g. its anchor session dropped)."""


class _Wait:
    """One blocked acquire: its waiter row and bell."""

    def __init__(self) -> None:
        self.waiter_id: int | None = None
        self.bell: Bell | None = None


class Locks:
    """The mutexes and semaphores of one App, as used from this process."""

    def __init__(self, backend: Backend, owners: ProcessOwner, clock: Clock = SYSTEM_CLOCK) -> None:
        self._backend = backend
        self.clock = clock  # deadlines and acquisition times (a fake one in unit tests)
        self._owners = owners
        self._local = threading.local()
        self._store: LockStore | None = None
        self._ringer: Ringer | None = None

    def request(
        self, name: str, slots: int, timeout: float | None, job_id: int | None
    ) -> LockRequest:
        return LockRequest(self, name, slots, timeout, job_id)

    @property
    def store(self) -> LockStore:
        if self._store is None:
            self._store = LockStore(self._backend)
        return self._store

    @property
    def ringer(self) -> Ringer:
        if self._ringer is None:
            self._ringer = self._backend.ringer()
        return self._ringer

    def _thread_bell(self, owner: Owner) -> Bell:
        """This thread's bell, kept from one wait to the next (while `owner` lasts)."""
        pid, bell = getattr(self._local, "bell", (0, None))
        backend = self._backend
        if bell is None or pid != os.getpid() or not bell.usable(backend, owner):
            bell = self.ringer.bell(backend, owner)
            self._local.bell = (os.getpid(), bell)
        kept: Bell = bell
        return kept

    def _held(self) -> dict[str, Lease]:
        """This thread's leases by name (empty in a forked child: those were the parent's)."""
        pid, held = getattr(self._local, "held", (0, {}))
        if pid != os.getpid():
            held = {}
            self._local.held = (os.getpid(), held)
        leases: dict[str, Lease] = held
        return leases

    # -- acquire --------------------------------------------------------------------------

    def acquire(self, name: str, slots: int, timeout: float | None, job_id: int | None) -> Lease:

        held = self._held()
        lease = held.get(name)
        if lease is not None and not lease.released:
            if lease.slots != slots:
                raise SlotsMismatch(
                    f"{describe(name, lease.slots)} is held by this thread; "
                    f"cannot re-enter it with {slots} slots"
                )
            lease._depth += 1
            return lease
        if self._backend.in_transaction():
            raise InvalidArgument(
                f"cannot take {describe(name, slots)} inside a transaction: "
                "take the lock first, then open the transaction"
            )
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        wait = _Wait() if timeout != 0 else None
        with database_errors():
            try:
                lease = self._contend(name, slots, timeout, job_id, wait, deadline)
            except BaseException:
                if wait is not None:
                    self._end_wait(name, slots, wait, quiet=True)
                raise
            if wait is not None:
                self._end_wait(name, slots, wait, quiet=False)
        lease._registry = held
        held[name] = lease
        return lease

    def _contend(
        self,
        name: str,
        slots: int,
        timeout: float | None,
        job_id: int | None,
        wait: _Wait | None,
        deadline: float | None,
    ) -> Lease:
        backoff: Backoff | None = None
        while True:
            owner: Owner | None = None
            try:
                owner = self._owners.get()
                outcome = self._attempt(owner, name, slots, job_id, wait)
                if not isinstance(outcome, Lease) and wait is not None:
                    if deadline is not None and self.clock.monotonic() >= deadline:
                        raise LockTimeout(
                            f"{describe(name, slots)}: not acquired within {timeout} s"
                        )
                    self._sleep(owner.id, name, slots, wait, outcome, deadline)
                    continue
            except _OwnerLost:
                assert owner is not None
                if wait is not None:
                    wait.waiter_id = None  # that row goes with the dead owner
                if self._owners.replace_lost(owner):
                    continue
                raise LeaseLost(
                    f"cannot take {describe(name, slots)}: the database no longer vouches "
                    f"for this process's registration (owner {owner.id})"
                ) from None
            except Exception as exc:
                # A waiter rides through an outage until its deadline (a try-lock does not).
                if wait is None or not self._backend.is_unavailable(exc):
                    raise
                backoff = backoff or Backoff(f"Waiting for {describe(name, slots)}", log)
                pause = backoff.failed(exc)
                if deadline is not None and self.clock.monotonic() + pause >= deadline:
                    raise LockTimeout(
                        f"{describe(name, slots)}: not acquired within {timeout} s "
                        f"(the database was unavailable: {one_line(exc)})"
                    ) from exc
                if owner is None or owner.is_lost():
                    wait.waiter_id = None  # that row goes with the dead owner
                time.sleep(pause)
                continue
            if isinstance(outcome, Lease):
                if backoff is not None:
                    backoff.succeeded()
                return outcome
            raise LockTimeout(f"{describe(name, slots)} is taken (timeout=0)")

    def _attempt(
        self, owner: Owner, name: str, slots: int, job_id: int | None, wait: _Wait | None
    ) -> Lease | Queue:
        """Try once: a Lease, or where this contender stands (registered as a waiter)."""
        me, store = owner.id, self.store
        waiter_id = wait.waiter_id if wait is not None else None
        now = self.clock.now()
        # A woken waiter of a semaphore takes the full path, which also wakes
        # others for any further free slots.
        if waiter_id is None or slots == 1:
            taken = store.take_fast(me, name, slots, job_id, now, waiter_id)
            if taken is not None:
                if wait is not None:
                    wait.waiter_id = None
                return Lease(self, owner, name, slots, *taken, job_id, now)
        registering: Bell | None = None
        # Before the transaction: a new bell may ask the server to register it (MySQL).
        bell = self._thread_bell(owner) if wait is not None and waiter_id is None else None
        rings: list[str] = []
        nudges: list[str] = []
        wanted = 0
        try:
            with store.backend.write():
                if not store.ensure(me, name, slots):
                    raise _OwnerLost()
                taken = store.take(me, name, slots, job_id, now, waiter_id)
                reaped = False
                queue = Queue()
                if taken is None:
                    queue = store.look(me, name, slots, waiter_id)
                    for holder in queue.dead:
                        reaped = store.backend.free_dead_owner_locks(holder) or reaped
                    if reaped:
                        taken = store.take(me, name, slots, job_id, now, waiter_id)
                if taken is not None:
                    if waiter_id is not None:
                        nudges = self._nudge(name, slots)
                    if slots > 1 and (reaped or waiter_id is not None):
                        # More slots may be free than ours: wake as many others.
                        wanted = store.free_slots(name)
                        if wanted:
                            waiters = store.waiters(name, wanted + SPARE_WAITERS)
                            rings = self._ring(me, waiters, wanted)
                    waiter_id = None
                    result: Lease | Queue = Lease(self, owner, name, slots, *taken, job_id, now)
                else:
                    if wait is not None and bell is not None and waiter_id is None:
                        registering = wait.bell = bell
                        registering.prepare()
                        waiter_id = store.add_waiter(me, name, job_id, registering.address, now)
                    else:
                        store.commit_async()  # (add_waiter did it too)
                    result = queue
        except BaseException:
            if registering is not None:
                registering.rolled_back()
            raise
        if registering is not None:
            registering.committed()
        if wait is not None:
            wait.waiter_id = waiter_id
        self.ringer.ring_after_commit(rings, wanted)
        self.ringer.ring_after_commit(nudges, len(nudges))
        return result

    def _nudge(self, name: str, slots: int) -> list[str]:
        """In a transaction where a waiter left: wake the one now near the head, which
        watches the holders closely from then on; the bells to ring after commit."""
        bell = self.store.newly_near(name, slots)
        if bell is None:
            return []
        if self.ringer.rings_in_transaction:
            self.ringer.ring_in_transaction(self.store.backend, [bell])
            return []
        return [bell]

    def _ring(self, me: int, waiters: list[Waiter], count: int) -> list[str]:
        """In a transaction: wake `count` of these waiters; the bells to ring after commit."""
        bells = self.store.live_bells(me, waiters, count)
        if self.ringer.rings_in_transaction:
            self.ringer.ring_in_transaction(self.store.backend, bells)
            return []
        return bells

    def _sleep(
        self, me: int, name: str, slots: int, wait: _Wait, queue: Queue, deadline: float | None
    ) -> None:
        """Until rung, a watched holder exits, a look finds a reason to try, or the deadline."""
        bell = wait.bell
        assert bell is not None
        while True:
            bell.watch(queue.pids)
            near = queue.ahead < slots + NEAR_HEAD
            bell.expect(near)
            interval = PROBE_INTERVAL if near else SAFETY_INTERVAL
            look_at = self.clock.monotonic() + _jitter(interval)
            until = look_at if deadline is None else min(look_at, deadline)
            if bell.wait(until - self.clock.monotonic()):
                return
            if deadline is not None and self.clock.monotonic() >= deadline:
                return
            queue = self.store.look(me, name, slots, wait.waiter_id)
            if queue.free or queue.dead:
                return

    def _end_wait(self, name: str, slots: int, wait: _Wait, quiet: bool) -> None:
        """Remove a waiter row left behind (timeout, error) and pass on a wake-up it took."""
        store = self.store
        try:
            if wait.waiter_id is not None:
                me = self._owners.get().id
                rings: list[str] = []
                with store.backend.write():
                    store.remove_waiter(name, wait.waiter_id)
                    wait.waiter_id = None
                    nudges = self._nudge(name, slots)
                    free = store.free_slots(name)
                    if free:
                        rings = self._ring(me, store.waiters(name, free + SPARE_WAITERS), free)
                    store.commit_async()
                self.ringer.ring_after_commit(rings, free)
                self.ringer.ring_after_commit(nudges, len(nudges))
        except Exception:
            if not quiet:
                raise
        finally:
            if wait.bell is not None:
                wait.bell.done()
                wait.bell = None

    # -- release and checks ---------------------------------------------------------------

    def release(self, lease: Lease) -> None:

        if lease._released:
            return
        if lease._depth > 1:
            lease._depth -= 1
            return
        lease._released = True
        lease._depth = 0
        if lease._registry is not None and lease._registry.get(lease.name) is lease:
            del lease._registry[lease.name]
        what = f"{describe(lease.name, lease.slots)} slot {lease.slot} token {lease.token}"
        backend = self.store.backend
        with database_errors():
            for attempt in range(RELEASE_ATTEMPTS):
                try:
                    freed, dead = self._release_once(lease)
                    break
                except Exception as exc:
                    if not backend.is_unavailable(exc):
                        raise
                    if lease._owner.is_lost():
                        raise LeaseLost(
                            f"lease on {what} was lost: its holder's registration (owner "
                            f"{lease.owner_id}) ended while the database was unavailable"
                        ) from None
                    if attempt == RELEASE_ATTEMPTS - 1:
                        raise
                    time.sleep(0.05 * 2**attempt)
        what = f"{describe(lease.name, lease.slots)} slot {lease.slot} token {lease.token}"
        if not freed:
            raise LeaseLost(
                f"lease on {what} was lost: its holder (owner {lease.owner_id}) was found dead "
                "and reaped, so the slot may have been given to another"
            )
        if dead:
            raise LeaseLost(
                f"lease on {what} was lost: the database no longer vouches for its holder "
                f"(owner {lease.owner_id}), so another may have taken it meanwhile"
            )

    def _release_once(self, lease: Lease) -> tuple[bool, bool]:
        """(freed, holder found dead): the release statement, and the rings it calls for."""
        store = self.store
        rings: list[str] = []
        if store.runs_own_release():
            released = store.release(lease.owner_id, lease.name, lease.slot, lease.token)
            if released.freed and released.heads and not released.rung:
                # Those looked at had died: try the next.
                with store.backend.write():
                    waiters = store.waiters(lease.name, 1 + SPARE_WAITERS)
                    rings = self._ring(lease.owner_id, waiters, 1)
        else:
            with store.backend.write():
                released = store.release(lease.owner_id, lease.name, lease.slot, lease.token)
                if released.freed and released.heads and not released.rung:
                    rings = self._ring(lease.owner_id, released.heads, 1)
        self.ringer.ring_after_commit(rings, 1)
        return released.freed, released.dead

    def is_held(self, lease: Lease) -> bool:

        store = self.store
        with database_errors(), store.backend.write():
            return store.is_held(lease.owner_id, lease.name, lease.slot, lease.token)

    # -- listing --------------------------------------------------------------------------

    def listing(self) -> list[dict[str, Any]]:
        """Held slots then waiters, after reaping holders and waiters that died."""

        store = self.store
        with database_errors():
            for _ in range(2):
                holders, waiters = store.holders_and_waiters()
                owners = {int(r["kojo_process_id"]) for r in holders + waiters}
                if not [o for o in sorted(owners) if store.backend.free_dead_owner_locks(o)]:
                    break
        rows = [{"state": "held", **h} for h in holders]
        rows += [{"state": "waiting", **w} for w in waiters]
        return [{key: row.get(key) for key in LISTING_KEYS} for row in rows]


def _jitter(seconds: float) -> float:
    """±10%, so that many waiters do not probe in step."""
    return seconds * random.uniform(0.9, 1.1)
