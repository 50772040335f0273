"""Process registrations and the reaping of dead owners, on top of the job store: an
owner found dead is forgotten, its working jobs crashed (blamed or not: see
reap_owner) and its lock slots freed, in one transaction that no claim of that
owner can interleave with.
"""

from __future__ import annotations

import functools
from datetime import datetime

from ..clock import utcnow
from ..rows import ProcessRow
from .job_store import CrashedJob, Death, JobStore


class ProcessStore(JobStore):
    """Process registrations and reaping."""

    def reap_owner(self, owner_id: int, now: datetime | None = None, *, blame: bool = True) -> bool:
        """If `owner_id` is dead: forget it, crash its working jobs, free its locks.

        Returns True when the owner was dead and has been reaped. The process row is
        deleted first, in a transaction that excludes this owner's claims
        (`_guard_reap`): a claim checks that row under the same guard, so once it is
        gone no claim of this owner can commit, and the working jobs read next are
        all it will ever have.

        `blame`: count the crash against each job (times_crashed + 1, priority - 1, and
        panicked at max_crashes). Only a death that may be the job's doing is blamed: its
        process died while its root watched (docs/guarantees.md); a re-run caused by an
        outage, a lost registration or the loss of kojo's own processes is not.
        """
        return self.reap_dead_owner(owner_id, now, blame=blame) is not None

    def reap_dead_owner(
        self,
        owner_id: int,
        now: datetime | None = None,
        *,
        blame: bool = True,
        death: Death | None = None,
    ) -> list[CrashedJob] | None:
        """reap_owner, for a root that saw its child die (`death`, written to each job's
        last_error): the jobs it crashed, or None when the owner is not dead."""
        now = now or utcnow()
        crashed = self.retrying(lambda: self._reap(owner_id, now, blame, death))
        if crashed is None:
            return None
        self._owner_forgotten(owner_id)
        return crashed

    def _reap(
        self, owner_id: int, now: datetime, blame: bool, death: Death | None
    ) -> list[CrashedJob] | None:
        if not self._guard_reap(owner_id) or not self.owner_is_dead(owner_id):
            return None
        self.execute("process_delete", {"kojo_process_id": owner_id})
        crashed = []
        for job in self.fetchall("process_working_jobs", {"kojo_process_id": owner_id}):
            crash = functools.partial(self._crash, job, now, blame, owner_id, death)
            done = self.each_row(f"crash of dead owner {owner_id}'s job", job["kojo_job_id"], crash)
            if done is not None:
                crashed.append(done)
        freed_slots = self.execute("process_release_slots", {"kojo_process_id": owner_id})
        self.execute("process_delete_waiters", {"kojo_process_id": owner_id})
        self.notify("jobs")
        if freed_slots:
            self.notify("locks")
        return crashed

    def free_dead_owner_locks(self, owner_id: int) -> bool:
        """If `owner_id` is dead: free its lock slots and drop its waiter rows now (its
        process row and jobs are left to whoever reaps it, who knows how it died)."""

        def free() -> bool:
            if not self.owner_is_dead(owner_id):
                return False
            if self.execute("process_release_slots", {"kojo_process_id": owner_id}):
                self.notify("locks")
            self.execute("process_delete_waiters", {"kojo_process_id": owner_id})
            return True

        return self.retrying(free)

    def reap_dead_owners(self, now: datetime | None = None) -> list[int]:
        """Reap every registered process that has died (but those a live root will reap),
        and every owner that working jobs or lock slots still name without a process
        row; their ids. Nothing reaped here is blamed on its jobs."""
        reaped = [row.kojo_process_id for row in self._reap_dead(now)[1]]
        return reaped + self.reap_orphans(now)

    def reap_orphans(self, now: datetime | None = None) -> list[int]:
        """Reap the dead owners that jobs or slots name but kojo_process no longer lists."""
        orphans = [int(row["kojo_process_id"]) for row in self.fetchall("orphan_owners")]
        return [owner for owner in orphans if self.reap_owner(owner, now, blame=False)]

    def _reap_dead(self, now: datetime | None = None) -> tuple[list[ProcessRow], list[ProcessRow]]:
        """(live, reaped) process rows. Each owner is probed outside any transaction
        first, so a pass over live processes writes nothing (and, on SQLite, takes no
        write lock); only the dead are reaped, re-probed inside the reaping transaction.

        A dead job process or maintainer whose root lives is left to that root: it saw
        how its child died, and only it can tell a crash from a lost registration."""
        rows = [ProcessRow.from_mapping(r) for r in self.fetchall("process_list")]
        dead = {r.kojo_process_id for r in rows if self.owner_is_dead(r.kojo_process_id)}
        live_roots = {
            (r.host_name, r.process_id)
            for r in rows
            if r.kind == "root" and r.kojo_process_id not in dead
        }
        alive: list[ProcessRow] = []
        reaped: list[ProcessRow] = []
        for row in rows:
            owner_id = row.kojo_process_id
            if owner_id not in dead:
                alive.append(row)
            elif row.kind in ("job", "maintainer") and (
                (row.host_name, row.parent_process_id) in live_roots
            ):
                continue
            elif self.reap_owner(owner_id, now, blame=False):
                reaped.append(row)
            else:
                alive.append(row)
        return alive, reaped

    def process_get(self, owner_id: int) -> ProcessRow | None:
        """An owner's process row, None once it was reaped (or never was)."""
        row = self.fetchone("process_get", {"kojo_process_id": owner_id})
        return None if row is None else ProcessRow.from_mapping(row)

    def owners_of_process(self, host_name: str, pid: int) -> list[int]:
        """Every registration (live or not yet reaped) of process `pid` on `host_name`."""
        rows = self.fetchall("process_find", {"host_name": host_name, "process_id": pid})
        return [int(row["kojo_process_id"]) for row in rows]

    def processes(self) -> list[ProcessRow]:
        """Registered processes that are alive (dead ones are reaped on the way)."""
        return self._reap_dead()[0]
