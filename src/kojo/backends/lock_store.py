"""The rows behind mutexes and semaphores, through the named queries of sql/locks.sql.

Methods marked "in a transaction" must run inside `backend.write()`. Where the
dialects differ (PostgreSQL probes liveness inside its queries, grants and
releases in one statement, and orders a release after a waiter's registration
with a row lock) the driver's lock_* methods and query texts hold the difference;
this module is the same for every database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import SlotsMismatch
from .base import Backend
from .lock_records import Released, Waiter

# Waiters a release looks at beyond those it wakes, in case some have gone.
SPARE_WAITERS = 2
EVERY_WAITER = 100000
# How often a waiter near the head of the queue (fewer than slots + NEAR_HEAD waiters
# ahead of it) re-checks a lock it was not woken for: frees of dead holders and lost
# wake-ups are noticed within this (plus jitter). Waiters further back only check every
# SAFETY_INTERVAL: a release or a grant wakes them in turn, so 100 blocked waiters cost
# about what 2 do.
PROBE_INTERVAL = 0.5
SAFETY_INTERVAL = 10.0
NEAR_HEAD = 1


@dataclass
class Queue:
    """What a contender saw: holders' pids, waiters ahead of it, free slots, dead holders."""

    pids: list[int] = field(default_factory=list)
    ahead: int = 0
    free: bool = False
    dead: list[int] = field(default_factory=list)


class LockStore:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        # Of the owners' advisory locks, for queries that probe liveness themselves.
        self.namespace = backend.probe_namespace

    def _params(self, **params: Any) -> dict[str, Any]:
        params["namespace"] = self.namespace
        return params

    # -- acquiring ------------------------------------------------------------------------

    def take_fast(
        self,
        me: int,
        name: str,
        slots: int,
        job_id: int | None,
        now: datetime,
        waiter_id: int | None,
    ) -> tuple[int, int] | None:
        """Outside a transaction: (slot, token) in one round trip where the driver can, or
        None (then take the full path). The waiter row `waiter_id` (if any) is deleted
        with the grant.
        """
        row = self.backend.lock_take_fast(
            self._params(
                name=name,
                slots=slots,
                owner=me,
                job_id=job_id,
                now=now,
                waiter_id=waiter_id,
                near=slots + NEAR_HEAD - 1,
            ),
        )
        if row is None or row["slot"] is None:
            return None
        return (int(row["slot"]), int(row["token"]))

    def ensure(self, me: int, name: str, slots: int) -> bool:
        """In a transaction: the semaphore exists with `slots` slots (or SlotsMismatch).

        Locks it against other acquirers until commit. Returns False if `me` is
        found dead (the database no longer vouches for this process).
        """
        params = self._params(name=name, owner=me)
        row = self.backend.fetchone("lock_semaphore_get", params)
        if row is None:
            self.backend.execute("lock_semaphore_create", {"name": name, "slots": slots})
            row = self.backend.fetchone("lock_semaphore_get", params)
            assert row is not None
            if int(row["slots"]) == slots:
                self.backend.execute("lock_slots_create", {"name": name, "slots": slots})
        if int(row["slots"]) != slots:
            # Also when another process created it first, with another count.
            self._resize(me, name, int(row["slots"]), slots)
        if "me_dead" in row:
            return not row["me_dead"]
        return not self.backend.owner_is_dead(me)

    def _resize(self, me: int, name: str, current: int, slots: int) -> None:
        # Contenders must agree; but an idle semaphore (no live holder, no waiter)
        # takes the new count, so that changing it in code needs no manual cleanup.
        backend = self.backend
        contenders = {
            r["kojo_process_id"] for r in backend.fetchall("lock_name_holders", {"name": name})
        }
        contenders |= {w.owner_id for w in self.waiters(name, EVERY_WAITER)}
        for contender in sorted(contenders):
            if contender == me or not backend.free_dead_owner_locks(int(contender)):
                raise SlotsMismatch(
                    f"semaphore {name!r} has {current} slots, but {slots} were asked for "
                    "(all users of one name must agree on its slots)"
                )
        backend.execute("lock_semaphore_resize", {"name": name, "slots": slots})
        backend.execute("lock_slots_create", {"name": name, "slots": slots})

    def take(
        self,
        me: int,
        name: str,
        slots: int,
        job_id: int | None,
        now: datetime,
        waiter_id: int | None,
    ) -> tuple[int, int] | None:
        """In a transaction: (slot, token) of the lowest free slot, or None.

        When a slot is taken, the waiter row `waiter_id` (if any) is deleted.
        """
        row = self.backend.lock_take(
            self._params(
                name=name, slots=slots, owner=me, job_id=job_id, now=now, waiter_id=waiter_id
            )
        )
        if row is None:
            return None
        return (int(row["slot"]), int(row["token"]))

    def look(self, me: int, name: str, slots: int, waiter_id: int | None) -> Queue:
        """The slots' holders: free slots, dead holders, their pids, and waiters ahead."""
        rows = self.backend.fetchall(
            "lock_slots", self._params(name=name, slots=slots, waiter_id=waiter_id, me=me)
        )
        holders = {int(r["kojo_process_id"]) for r in rows if r["kojo_process_id"] is not None}
        if rows and "dead" in rows[0]:  # probed by the query itself
            dead = {int(r["kojo_process_id"]) for r in rows if r["dead"]}
        else:
            dead = {h for h in holders - {me} if self.backend.owner_is_dead(h)}
        return Queue(
            pids=[int(r["process_id"]) for r in rows if r["process_id"]],
            ahead=int(rows[0]["ahead"]) if rows else 0,
            free=len(rows) < slots or any(r["kojo_process_id"] is None for r in rows),
            dead=sorted(dead),
        )

    def add_waiter(self, me: int, name: str, job_id: int | None, bell: str, now: datetime) -> int:
        """In a transaction: a waiter row; its id (the commit may skip the WAL flush)."""
        row = self.backend.fetchone(
            "lock_waiter_add",
            {"name": name, "owner": me, "job_id": job_id, "bell": bell, "now": now},
        )
        assert row is not None
        return int(row["kojo_semaphore_waiter_id"])

    def remove_waiter(self, name: str, waiter_id: int) -> None:
        """In a transaction, ordered after any release of `name` in flight."""
        self.backend.fetchone("lock_semaphore_lock", {"name": name})
        self.backend.execute("lock_waiter_remove", {"waiter_id": waiter_id})

    def newly_near(self, name: str, slots: int) -> str | None:
        """In a transaction, after a waiter left: the bell of the one now near the head."""
        row = self.backend.fetchone(
            "lock_waiter_at", {"name": name, "offset": slots + NEAR_HEAD - 1}
        )
        return str(row["bell"]) if row else None

    def free_slots(self, name: str) -> int:
        row = self.backend.fetchone("lock_free_slots", {"name": name})
        return int(row["free"]) if row else 0

    def commit_async(self) -> None:
        """In a transaction that handed out no token: its commit need not wait for the disk."""
        self.backend.commit_without_flush()

    # -- waking -----------------------------------------------------------------------------

    def waiters(self, name: str, limit: int) -> list[Waiter]:
        """In a transaction: the oldest waiters of `name` (with their liveness where the
        query can probe it: not on SQLite)."""
        rows = self.backend.fetchall("lock_waiters_next", self._params(name=name, limit=limit))
        return [
            Waiter(
                int(r["kojo_process_id"]),
                str(r["bell"]),
                None if r.get("dead") is None else bool(r["dead"]),
            )
            for r in rows
        ]

    def live_bells(self, me: int, waiters: list[Waiter], count: int) -> list[str]:
        """In a transaction: the bells of the first `count` waiters still alive.

        Waiters known to be dead are reaped. Where liveness is unknown (SQLite),
        every bell is returned: the ringer skips those that no longer answer.
        """
        if any(w.dead is None for w in waiters):
            return [w.bell for w in waiters]
        chosen: list[str] = []
        for waiter in waiters:
            if len(chosen) == count:
                break
            if (
                waiter.dead
                and waiter.owner_id != me
                and self.backend.free_dead_owner_locks(waiter.owner_id)
            ):
                continue
            chosen.append(waiter.bell)
        return chosen

    # -- releasing --------------------------------------------------------------------------

    def release(self, me: int, name: str, slot: int, token: int) -> Released:
        """Free the slot if `me` still holds it with `token`.

        In a transaction, unless runs_own_release(). Where the driver rings the first
        live waiter in the releasing statement itself (PostgreSQL), `rung` says so;
        else the caller rings (after commit) among the `heads` looked at.
        """
        return self.backend.lock_release(
            self._params(name=name, slot=slot, token=token, owner=me, limit=1 + SPARE_WAITERS)
        )

    def runs_own_release(self) -> bool:
        """True when release() is to be called outside a transaction (it opens its own)."""
        return self.backend.releases_in_one_round_trip and not self.backend.in_transaction()

    def is_held(self, me: int, name: str, slot: int, token: int) -> bool:
        row = self.backend.fetchone(
            "lock_is_held", {"name": name, "slot": slot, "token": token, "owner": me}
        )
        return row is not None and not self.backend.owner_is_dead(me)

    # -- listing ----------------------------------------------------------------------------

    def holders_and_waiters(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return (
            self.backend.fetchall("lock_list_holders"),
            self.backend.fetchall("lock_list_waiters"),
        )
