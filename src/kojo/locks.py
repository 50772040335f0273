"""Process-aware mutexes and counting semaphores with fencing tokens.

A semaphore `name` has `slots` slots (a mutex is a semaphore of one slot). Its
state is rows: `kojo_semaphore(name, slots)` and one `kojo_semaphore_slot` per
slot, naming the holder (an *owner*: a process registration that dies with the
process) and keeping the slot's fencing counter, which only grows.

Acquiring is one short write transaction: create the rows if missing, check
the slot count, take the lowest free slot with `token = last_token + 1`; when
none is free, reap holders whose owners are dead (their jobs crash, their
slots are freed) and try again, else register a waiter row with a bell of its
own (lock_waiting.py) and sleep on it. Releasing is a compare-and-set on
(name, slot, token, owner) that rings the oldest waiter's bell.

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
from typing import TYPE_CHECKING, Any

from .backends import Backend, Owner
from .clock import utcnow
from .errors import InvalidArgument, LeaseLost, LockTimeout, SlotsMismatch
from .lock_waiting import PROBE_INTERVAL, Bell, Ringer, ringer_for
from .process_owner import ProcessOwner, owner_keeper

if TYPE_CHECKING:
    from .app import App

MAX_NAME_LENGTH = 255
MAX_SLOTS = 10000
# Waiters a release looks at beyond those it wakes, in case some have gone.
SPARE_WAITERS = 2
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
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidArgument(f"timeout must be a number of seconds or None, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise InvalidArgument(f"timeout must not be negative, got {timeout!r}")
    return None if math.isinf(timeout) else float(timeout)


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
    except LeaseLost as lost:
        exc.add_note(f"also: {lost}")


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


class _OwnerLost(Exception):
    """The database says this process's owner is dead (e.g. its anchor session dropped)."""


class _Wait:
    """One blocked acquire: its waiter row and bell."""

    def __init__(self) -> None:
        self.waiter_id: int | None = None
        self.bell: Bell | None = None


class Locks:
    """The mutexes and semaphores of one App, as used from this process."""

    def __init__(self, app: App, owners: ProcessOwner) -> None:
        self._app = app
        self._owners = owners
        self._local = threading.local()
        self._ringer: Ringer | None = None

    def request(
        self, name: str, slots: int, timeout: float | None, job_id: int | None
    ) -> LockRequest:
        return LockRequest(self, name, slots, timeout, job_id)

    def ringer(self, backend: Backend) -> Ringer:
        if self._ringer is None:
            self._ringer = ringer_for(backend)
        return self._ringer

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
        from .app import database_errors

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
        backend = self._app.backend
        if backend.in_transaction():
            raise InvalidArgument(
                f"cannot take {describe(name, slots)} inside a transaction: "
                "take the lock first, then open the transaction"
            )
        with database_errors():
            lease = self._acquire(backend, name, slots, timeout, job_id)
        lease._registry = held
        held[name] = lease
        return lease

    def _acquire(
        self, backend: Backend, name: str, slots: int, timeout: float | None, job_id: int | None
    ) -> Lease:
        deadline = None if timeout is None else time.monotonic() + timeout
        wait = _Wait() if timeout != 0 else None
        try:
            lease = self._contend(backend, name, slots, timeout, job_id, wait, deadline)
        except BaseException:
            if wait is not None:
                self._end_wait(backend, name, wait, quiet=True)
            raise
        if wait is not None:
            self._end_wait(backend, name, wait, quiet=False)
        return lease

    def _contend(
        self,
        backend: Backend,
        name: str,
        slots: int,
        timeout: float | None,
        job_id: int | None,
        wait: _Wait | None,
        deadline: float | None,
    ) -> Lease:
        while True:
            owner = self._owners.get()
            try:
                outcome = self._attempt(backend, owner, name, slots, job_id, wait)
            except _OwnerLost:
                if wait is not None:
                    wait.waiter_id = None  # that row goes with the dead owner
                if self._owners.replace_lost(owner):
                    continue
                raise LeaseLost(
                    f"cannot take {describe(name, slots)}: the database no longer vouches "
                    f"for this process's registration (owner {owner.id})"
                )
            if isinstance(outcome, Lease):
                return outcome
            if wait is None:
                raise LockTimeout(f"{describe(name, slots)} is taken (timeout=0)")
            if deadline is not None and time.monotonic() >= deadline:
                raise LockTimeout(f"{describe(name, slots)}: not acquired within {timeout} s")
            self._sleep(backend, owner.id, name, slots, wait, outcome, deadline)

    def _attempt(
        self,
        backend: Backend,
        owner: Owner,
        name: str,
        slots: int,
        job_id: int | None,
        wait: _Wait | None,
    ) -> Lease | list[int]:
        """One transaction: a Lease, or the pids of the holders to watch while waiting."""
        me = owner.id
        ringer = self.ringer(backend)
        new_bell: Bell | None = None
        waiter_id = wait.waiter_id if wait is not None else None
        rings: list[str] = []
        wanted = 0
        try:
            with backend.write():
                if backend.owner_is_dead(me):
                    raise _OwnerLost()
                self._ensure(backend, me, name, slots)
                now = utcnow()
                take = {"name": name, "slots": slots, "owner": me, "job_id": job_id, "now": now}
                row = backend.fetchone("lock_slot_take", take)
                reaped = False
                pids: list[int] = []
                if row is None:
                    slot_rows = backend.fetchall("lock_slots", {"name": name, "slots": slots})
                    holders = {r["kojo_process_id"] for r in slot_rows} - {None, me}
                    for holder in sorted(holders):
                        reaped = backend.reap_owner(int(holder), now) or reaped
                    if reaped:
                        row = backend.fetchone("lock_slot_take", take)
                    pids = [int(r["process_id"]) for r in slot_rows if r["process_id"]]
                if row is not None:
                    if waiter_id is not None:
                        backend.execute("lock_waiter_remove", {"waiter_id": waiter_id})
                    if reaped or waiter_id is not None:
                        # Slots may be free beyond ours: wake as many others.
                        rings, wanted = self._wake(backend, me, name, free_slots=True)
                    waiter_id = None
                    result: Lease | list[int] = Lease(
                        self, owner, name, slots, int(row["slot"]), int(row["token"]), job_id, now
                    )
                else:
                    if wait is not None and waiter_id is None:
                        if wait.bell is None:
                            new_bell = wait.bell = ringer.bell(backend)
                        added = backend.fetchone(
                            "lock_waiter_add",
                            {
                                "name": name,
                                "owner": me,
                                "job_id": job_id,
                                "bell": wait.bell.address,
                                "now": now,
                            },
                        )
                        assert added is not None
                        waiter_id = int(added["kojo_semaphore_waiter_id"])
                    result = pids
        except BaseException:
            if new_bell is not None and wait is not None:
                # Its LISTEN was rolled back with the transaction: start afresh next time.
                wait.bell = None
                new_bell.close()
            raise
        if wait is not None:
            wait.waiter_id = waiter_id
        if rings:
            ringer.ring_after_commit(rings, wanted)
        return result

    def _ensure(self, backend: Backend, me: int, name: str, slots: int) -> None:
        """The semaphore and its slot rows exist with `slots` slots, or SlotsMismatch."""
        row = backend.fetchone("lock_semaphore_get", {"name": name})
        if row is None:
            backend.execute("lock_semaphore_create", {"name": name, "slots": slots})
            row = backend.fetchone("lock_semaphore_get", {"name": name})
            assert row is not None
            if int(row["slots"]) == slots:
                backend.execute("lock_slots_create", {"name": name, "slots": slots})
                return
        current = int(row["slots"])
        if current == slots:
            return
        # Contenders must agree; but an idle semaphore (no live holder, no waiter)
        # takes the new count, so that changing it in code needs no manual cleanup.
        contenders = {
            r["kojo_process_id"] for r in backend.fetchall("lock_name_holders", {"name": name})
        }
        contenders |= {
            r["kojo_process_id"]
            for r in backend.fetchall("lock_waiters_next", {"name": name, "limit": 100000})
        }
        for contender in sorted(contenders):
            if contender == me or not backend.reap_owner(int(contender)):
                raise SlotsMismatch(
                    f"semaphore {name!r} has {current} slots, but {slots} were asked for "
                    "(all users of one name must agree on its slots)"
                )
        backend.execute("lock_semaphore_resize", {"name": name, "slots": slots})
        backend.execute("lock_slots_create", {"name": name, "slots": slots})

    def _wake(
        self, backend: Backend, me: int, name: str, free_slots: bool = False, count: int = 1
    ) -> tuple[list[str], int]:
        """Inside a transaction: wake the oldest waiters, one per free slot.

        Returns the bells still to ring after commit and how many must answer.
        """
        if free_slots:
            row = backend.fetchone("lock_free_slots", {"name": name})
            count = int(row["free"]) if row else 0
        if count <= 0:
            return [], 0
        rows = backend.fetchall("lock_waiters_next", {"name": name, "limit": count + SPARE_WAITERS})
        if not rows:
            return [], 0
        ringer = self.ringer(backend)
        if not ringer.rings_in_transaction:
            return [str(r["bell"]) for r in rows], count
        # A NOTIFY cannot tell whether anyone heard it: skip waiters that died.
        chosen: list[str] = []
        for r in rows:
            if len(chosen) == count:
                break
            waiter_owner = int(r["kojo_process_id"])
            if waiter_owner != me and backend.reap_owner(waiter_owner):
                continue
            chosen.append(str(r["bell"]))
        ringer.ring_in_transaction(backend, chosen)
        return [], 0

    def _sleep(
        self,
        backend: Backend,
        me: int,
        name: str,
        slots: int,
        wait: _Wait,
        pids: list[int],
        deadline: float | None,
    ) -> None:
        """Until rung, a watched holder exits, a probe finds a reason to try, or the deadline."""
        bell = wait.bell
        assert bell is not None
        bell.watch(pids)
        next_probe = time.monotonic() + _jitter(PROBE_INTERVAL)
        while True:
            until = next_probe if deadline is None else min(next_probe, deadline)
            if bell.wait(until - time.monotonic()):
                return
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            if now >= next_probe:
                if self._worth_trying(backend, me, name, slots, bell):
                    return
                next_probe = time.monotonic() + _jitter(PROBE_INTERVAL)

    def _worth_trying(self, backend: Backend, me: int, name: str, slots: int, bell: Bell) -> bool:
        """A cheap look (no write transaction): a free slot, or a holder that died?"""
        rows = backend.fetchall("lock_slots", {"name": name, "slots": slots})
        if len(rows) < slots or any(r["kojo_process_id"] is None for r in rows):
            return True
        holders = {int(r["kojo_process_id"]) for r in rows} - {me}
        if any(backend.owner_is_dead(h) for h in sorted(holders)):
            return True
        bell.watch(int(r["process_id"]) for r in rows if r["process_id"])
        return False

    def _end_wait(self, backend: Backend, name: str, wait: _Wait, quiet: bool) -> None:
        """Remove a waiter row left behind (timeout, error) and pass on a wake-up it took."""
        try:
            if wait.waiter_id is not None:
                me = self._owners.get().id
                with backend.write():
                    backend.execute("lock_waiter_remove", {"waiter_id": wait.waiter_id})
                    wait.waiter_id = None
                    rings, wanted = self._wake(backend, me, name, free_slots=True)
                if rings:
                    self.ringer(backend).ring_after_commit(rings, wanted)
        except Exception:
            if not quiet:
                raise
        finally:
            if wait.bell is not None:
                bell, wait.bell = wait.bell, None
                try:
                    bell.close()
                except Exception:
                    if not quiet:
                        raise

    # -- release and checks ---------------------------------------------------------------

    def release(self, lease: Lease) -> None:
        from .app import database_errors

        if lease._released:
            return
        if lease._depth > 1:
            lease._depth -= 1
            return
        lease._released = True
        lease._depth = 0
        if lease._registry is not None and lease._registry.get(lease.name) is lease:
            del lease._registry[lease.name]
        backend = self._app.backend
        key = {
            "name": lease.name,
            "slot": lease.slot,
            "token": lease.token,
            "owner": lease.owner_id,
        }
        with database_errors():
            rings: list[str] = []
            wanted = 0
            with backend.write():
                freed = backend.execute("lock_release", key) == 1
                dead = backend.owner_is_dead(lease.owner_id)
                if freed:
                    rings, wanted = self._wake(backend, lease.owner_id, lease.name)
            if rings:
                self.ringer(backend).ring_after_commit(rings, wanted)
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

    def is_held(self, lease: Lease) -> bool:
        from .app import database_errors

        backend = self._app.backend
        key = {
            "name": lease.name,
            "slot": lease.slot,
            "token": lease.token,
            "owner": lease.owner_id,
        }
        with database_errors(), backend.write():
            return bool(backend.fetchone("lock_is_held", key)) and not backend.owner_is_dead(
                lease.owner_id
            )

    # -- listing --------------------------------------------------------------------------

    def listing(self) -> list[dict[str, Any]]:
        """Held slots then waiters, after reaping holders and waiters that died."""
        from .app import database_errors

        backend = self._app.backend
        with database_errors():
            for _ in range(2):
                holders = backend.fetchall("lock_list_holders")
                waiters = backend.fetchall("lock_list_waiters")
                owners = {int(r["kojo_process_id"]) for r in holders + waiters}
                if not [o for o in sorted(owners) if backend.reap_owner(o)]:
                    break
        rows = [{"state": "held", **h} for h in holders]
        rows += [{"state": "waiting", **w} for w in waiters]
        return [{key: row.get(key) for key in LISTING_KEYS} for row in rows]


def _jitter(seconds: float) -> float:
    """±10%, so that many waiters do not probe in step."""
    return seconds * random.uniform(0.9, 1.1)


_ENGINES_LOCK = threading.Lock()


def locks_of(app: App) -> Locks:
    """The App's lock engine, made on first use."""
    engine = app.__dict__.get("_kojo_locks")
    if engine is None:
        keeper = owner_keeper(app)
        with _ENGINES_LOCK:
            engine = app.__dict__.setdefault("_kojo_locks", Locks(app, keeper))
    locks: Locks = engine
    return locks
