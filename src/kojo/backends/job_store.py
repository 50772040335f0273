"""Job types and jobs: insert, claim, transitions and completion, in one dialect-free
store on top of the driver. The rules are states.py's; each change is a
compare-and-set on the job's state (and claim), so no two processes can both
make one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import states
from ..bounds import add_saturating
from ..clock import as_utc, utcnow
from ..durations import parse_duration
from ..errors import InvalidTransition, JobNotFound, OwnerLost
from ..job_types import JobType
from .driver import TRANSIENT_SQLSTATES, Row
from .events import EventWriter
from .later_rows import LaterRows
from .start_limits import StartLimits
from .tally_store import TallyStore, minute_of, outcome_of

UNIQUE_VIOLATION = "23505"  # SQLSTATE
COMPLETE_SUCCESS = states.State.COMPLETE_SUCCESS.value
# A job entering one of these leaves the admitted jobs of its concurrency limit.
LEAVING_STATES = states.FINISHED_STATES | {states.State.HOLD.value}
# A job released (or re-run) from these re-enters its concurrency limit's queue (it held
# no place), and waits again for its parents that have not finished.
OUTSIDE_LIMITS = LEAVING_STATES
# Where app.result() waiters hear that a job they wait for finished (its id).
FINISHED_CHANNEL = "kojo.finished"

# Each failed attempt means another claimer committed a serial job meanwhile.
CLAIM_ATTEMPTS = 20
# The only column names a transition may write (plan() output is checked against it).
WRITABLE_JOB_COLUMNS = frozenset(
    {
        "assigned_state",
        "next_state_request",
        "previous_state",
        "last_transition_date_time",
        "times_worked",
        "times_retried",
        "times_held",
        "times_crashed",
        "times_panicked",
        "priority",
        "completed_at_date_time",
        "delete_after_date_time",
        "work_at_date_time",
        "kojo_process_id",
        "last_error",
        "result",
        "started_at_date_time",
    }
)
LOST = "owner {} is no longer registered: its process was reaped or its database session ended"


# What a job's end sets off (_job_finished), read back from the row that ended.
FINISH_FLAGS = ("awaited", "has_children", "limited", "type_code", "concurrency_key")
NO_SKIP = "[]"  # the :skip of the claim's lanes when every type may be claimed


def skip_param(codes: Collection[str]) -> str:
    """Type codes as the lanes' :skip takes them: a JSON array (both dialects)."""
    return json.dumps(sorted(codes)) if codes else NO_SKIP


@dataclass(frozen=True)
class Parents:
    """The jobs a new job is to wait for, by id, with their states."""

    by_id: dict[int, str]

    @property
    def pending(self) -> list[int]:
        return sorted(p for p, s in self.by_id.items() if not states.is_finished(s))

    @property
    def failed(self) -> list[tuple[int, str]]:
        return sorted(
            (p, s) for p, s in self.by_id.items() if states.is_finished(s) and s != COMPLETE_SUCCESS
        )

    @property
    def waits(self) -> bool:
        """Whether the new job is not to run yet: it waits, or is to end at once."""
        return bool(self.pending or self.failed)


class JobStore(StartLimits, EventWriter, TallyStore):
    """Job types and jobs."""

    # -- job types ----------------------------------------------------------------------

    def type_register(self, job_type: JobType, now: datetime | None = None) -> None:
        params = job_type.columns()
        params["now"] = now or utcnow()
        with self.write():
            self.execute("type_upsert", params)  # holds the type's row until commit
            self._rate_slots_register(job_type.code, int(params["rate_limit_count"]))

    def type_list(self) -> list[Row]:
        return self.fetchall("type_list")

    def type_get(self, code: str) -> Row | None:
        return self.fetchone("type_get", {"type_code": code})

    def type_set_enabled(self, code: str, enabled: bool) -> bool:
        """Enable or disable a type; False if there is no such type."""
        return self._set_type_flag("type_set_enabled", code, enabled)

    def type_set_paused(self, code: str, paused: bool) -> bool:
        """Pause or resume a type's claims (resuming wakes the job processes); False if there
        is no such type."""
        return self._set_type_flag("type_set_paused", code, paused)

    def _set_type_flag(self, query: str, code: str, value: bool) -> bool:
        with self.write():
            rows = self.fetchall(query, {"type_code": code, "flag": value, "now": utcnow()})
            if rows and query == "type_set_paused" and not value:
                self.notify("jobs")
        return bool(rows)

    # -- jobs ---------------------------------------------------------------------------

    def job_insert_batch(
        self,
        type_code: str,
        payloads: Sequence[str | None],
        *,
        work_at: datetime,
        importance: int | None,
        now: datetime,
        after: Sequence[int] = (),
        concurrency_key: str = "",
    ) -> list[int]:
        """Insert one job per JSON payload text in one statement (inside write()); their ids
        in payload order, or [] if the type is missing or disabled. With `after`, each
        waits for those jobs (docs/dependencies.md); JobNotFound if one is missing."""
        parents = self._lock_parents(after)
        rows = self.fetchall(
            "job_insert_batch",
            {
                "type_code": type_code,
                "payloads": json.dumps(list(payloads)),
                "work_at": as_utc(work_at),
                "importance": importance,
                "now": now,
                "after": parents.waits,
                "concurrency_key": concurrency_key,
            },
        )
        ids = sorted(int(r["kojo_job_id"]) for r in rows)  # ids are handed out in row order
        self._depend(ids, parents, now)
        if rows and rows[0]["limited"] and not parents.waits:
            self._admit(type_code, concurrency_key, now)
        return ids

    def _lock_parents(self, after: Sequence[int]) -> Parents:
        """Inside write(): lock the jobs a new job is to wait for; how they stand."""
        if not after:
            return Parents({})
        rows = self.fetchall("job_parents_lock", {"ids": self._id_list(sorted(set(after)))})
        found = {int(r["kojo_job_id"]): str(r["assigned_state"]) for r in rows}
        missing = sorted(set(after) - set(found))
        if missing:
            raise JobNotFound(f"no job with id {', '.join(map(str, missing))} to wait for")
        return Parents(found)

    def _depend(self, children: list[int], parents: Parents, now: datetime) -> None:
        """Make the new `children` wait for the parents that have not finished, or end them
        at once when a parent already ended other than complete_success."""
        if not children or not parents.waits:
            return
        if parents.pending:
            self.execute(
                "job_dependency_insert",
                {"parents": self._id_list(parents.pending), "children": self._id_list(children)},
            )
        if parents.failed:
            parent, state = parents.failed[0]
            for child in children:
                self._terminate_child(child, parent, state, now)

    def job_insert_unique(
        self,
        type_code: str,
        payload: str | None,
        unique_key: str,
        *,
        work_at: datetime,
        importance: int | None,
        now: datetime,
        after: Sequence[int] = (),
        concurrency_key: str = "",
    ) -> tuple[int, bool] | None:
        """Inside write(): insert one job with `unique_key` unless an unfinished job of the
        type has it: (its id, whether it was created now); None if the type is missing
        or disabled. `after` as for job_insert_batch (for a job created now)."""
        parents = self._lock_parents(after)
        params = {
            "type_code": type_code,
            "payload": payload,
            "unique_key": unique_key,
            "work_at": as_utc(work_at),
            "importance": importance,
            "now": now,
            "after": parents.waits,
            "concurrency_key": concurrency_key,
        }
        # Another session's job with the key may finish between the insert that met it and
        # the read that looks for it: then the insert goes through on the next round.
        for _ in range(3):
            row = self.fetchone("job_insert_unique", params)
            if row is not None:
                self._depend([int(row["kojo_job_id"])], parents, now)
                if row["limited"] and not parents.waits:
                    self._admit(type_code, concurrency_key, now)
                return int(row["kojo_job_id"]), True
            found = self.fetchone("job_find_unique", params)
            if found is not None:
                return int(found["kojo_job_id"]), False
            if self.type_get(type_code) is None:
                return None
        return None

    def job_set_result(self, job_id: int, owner_id: int, result: str) -> None:
        """A worked job's return value (JSON text), written by the process that worked it."""
        with self.write():
            self.execute(
                "job_set_result", {"kojo_job_id": job_id, "owner": owner_id, "result": result}
            )

    def job_set_progress(
        self, job_id: int, owner_id: int, progress: float, note: str | None
    ) -> bool:
        """Record a working job's progress; False if it is no longer this owner's."""
        with self.write():
            changed = self.execute(
                "job_set_progress",
                {"kojo_job_id": job_id, "owner": owner_id, "progress": progress, "note": note},
            )
        return changed > 0

    def job_get(self, job_id: int) -> Row | None:
        return self.fetchone("job_get", {"kojo_job_id": job_id})

    def job_claim_by_id(self, job_id: int, owner_id: int, now: datetime) -> Row | None:
        """Inside write(): claim one waiting or crashed job, whatever its due time or type
        (`kojo work JOB_ID`); None when it is in another state (or missing). Its type's
        rate limit still counts it: RateLimited, claiming nothing, when no slot is free."""
        job = self.fetchone("job_get", {"kojo_job_id": job_id})
        if job is None:
            return None
        code = str(job["type_code"])
        self.lock_serial_types([code])  # the type's row: its rate limit slots, if any
        seconds = self._rate_check(job_id, code, now)
        row = self.fetchone(
            "job_claim_by_id", {"kojo_job_id": job_id, "owner": owner_id, "now": now}
        )
        if row is not None and seconds:
            self._rate_take(code, seconds, 1, now)
        return row

    def job_due_count(self, now: datetime, limit: int, skip: Collection[str] = ()) -> int:
        """Due jobs a job process could claim now (of types not in `skip`), up to `limit`."""
        params = {"now": now, "limit": limit, "skip": skip_param(skip)}
        row = self.fetchone("job_due_count", params)
        return int(row["due"]) if row else 0

    def job_owner_process(self, job_id: int) -> Row | None:
        """The process row (id, host name, pid) of whoever has claimed the job."""
        return self.fetchone("job_owner_process", {"kojo_job_id": job_id})

    def jobs_working_by_owner(self) -> dict[int, list[int]]:
        """The ids of the working jobs of each owner."""
        working: dict[int, list[int]] = {}
        for row in self.fetchall("job_working_owners"):
            working.setdefault(int(row["kojo_process_id"]), []).append(int(row["kojo_job_id"]))
        return working

    def jobs_running(self) -> list[Row]:
        """Every working job with the host, pid and kind of the process that claimed it."""
        return self.fetchall("job_running")

    def job_get_with_type(self, job_id: int) -> Row | None:
        return self.fetchone("job_get_with_type", {"kojo_job_id": job_id})

    def job_next_work_at(self, now: datetime, skip: Collection[str] = ()) -> datetime | None:
        """When the next job that is not yet due becomes due (of a type not in `skip`)."""
        row = self.fetchone("job_next_work_at", {"now": now, "skip": skip_param(skip)})
        value: datetime | None = row["work_at"] if row else None
        return value

    def job_claim(
        self,
        owner_id: int,
        limit: int,
        now: datetime,
        completed: Sequence[Mapping[str, Any]] = (),
        skip: Collection[str] = (),
    ) -> list[Row]:
        """Complete `completed` (auto-completions, as job_complete_many) and claim up to
        `limit` runnable jobs for `owner_id`, in one transaction; the claimed rows in
        selection order. No job of a type in `skip` (those whose workers the process
        cannot import) is claimed.

        A non-parallel type contributes at most one job, and none while one of its jobs
        is working anywhere. Raises OwnerLost, having changed nothing, when `owner_id` was
        reaped or (PostgreSQL) its anchor session is gone: the process must stop, since
        the cluster already treats it as dead.
        """
        with self.write():
            # Where the claim statement checks its owner itself (writes are serial), only
            # an empty claim needs asking why.
            if not self.claim_vouches and not self._vouch(owner_id):
                raise OwnerLost(LOST.format(owner_id))
            if completed:
                self.job_complete_many(completed, owner_id, now)
            params = {"owner": owner_id, "limit": limit, "now": now, "skip": skip_param(skip)}
            claimed = (
                self.claim_rows(params) if not self.claim_races else self._claim_retrying(params)
            )
            if not claimed and self.claim_vouches and not self._vouch(owner_id):
                raise OwnerLost(LOST.format(owner_id))
            more: list[Row] = []  # rate-limited types' further jobs
            rated = self._rate_limited(claimed)
            for row, seconds in rated:
                room = limit - len(claimed) - len(more)
                more += self._rate_start(row, seconds, owner_id, room, now)
            if rated:
                # Idle job processes that looked while this claim held the type saw its old
                # free time: at commit they look again (the next slot, or one free now).
                self.notify("jobs")
        rows = claimed.rows() + more  # converted after COMMIT where that is later (SQLite)
        rows.sort(key=lambda r: (-r["priority"], r["work_at_date_time"], r["kojo_job_id"]))
        return rows

    def claim_contended(self) -> bool:
        """After an empty job_claim on this thread: True when it came back empty only
        because other claims held what it would have taken and it could not look again
        itself (MySQL, a claim that completed jobs): claiming again at once is worth it."""
        return False

    def _claim_retrying(self, params: Mapping[str, Any]) -> LaterRows:
        """The claim statement, retried when it loses a race on a serial type.

        Two concurrent claims can each see a serial type idle and pick different
        jobs of it; the unique index kojo_job_serial_working makes the later one
        fail once the earlier commits. A savepoint keeps the caller's
        transaction usable, and the retry's fresh snapshot sees the type busy.
        """
        with self.write() as conn:
            for attempt in range(CLAIM_ATTEMPTS):
                conn.execute("SAVEPOINT kojo_claim")
                try:
                    rows = self.claim_rows(params)
                except Exception as exc:
                    sqlstate = getattr(exc, "sqlstate", None)
                    if sqlstate in TRANSIENT_SQLSTATES:
                        # A deadlock victim: MySQL rolled the whole transaction back, the
                        # savepoint with it; the caller's retrying() runs it again.
                        raise
                    conn.execute("ROLLBACK TO SAVEPOINT kojo_claim")
                    if sqlstate != UNIQUE_VIOLATION:
                        raise
                    if attempt == CLAIM_ATTEMPTS - 1:
                        raise
                    continue
                conn.execute("RELEASE SAVEPOINT kojo_claim")
                return rows
        raise AssertionError("unreachable")

    def _apply(
        self,
        row: Mapping[str, Any],
        changes: Mapping[str, Any],
        owner: int | None,
        event: tuple[str, str, int | None],
    ) -> bool:
        """Compare-and-set `changes` onto the job if it is still in `row`'s state (and claim);
        `event` (transition name, actor, process id) goes to its timeline if it is a rare one
        (events.py)."""
        bad = set(changes) - WRITABLE_JOB_COLUMNS
        if bad:
            raise ValueError(f"not a writable job column: {sorted(bad)}")
        columns = sorted(changes)
        assignments = ", ".join(f"{c} = :{c}" for c in columns)
        sql = (
            f"UPDATE kojo_job SET {assignments} WHERE kojo_job_id = :kojo_job_id "
            "AND assigned_state = :expect_assigned AND next_state_request = :expect_request"
        )
        if row["assigned_state"] == states.State.WORKING.value and not row.get(
            "can_work_in_parallel", False
        ):
            self.lock_serial_types([row["type_code"]])
        params = dict(changes)
        params["kojo_job_id"] = row["kojo_job_id"]
        params["expect_assigned"] = row["assigned_state"]
        params["expect_request"] = row["next_state_request"]
        if owner is not None:
            sql += " AND kojo_process_id = :expect_owner"
            params["expect_owner"] = owner
        leaving = changes.get("assigned_state") in LEAVING_STATES  # finished, or held
        if not leaving:
            cur = self.connection().execute(self._prepare(sql), self._convert_params(params))
            if int(cur.rowcount) != 1:
                return False
            self.record_event(row, changes, *event)
            self._tally_transition(row, changes)
            return True
        if row.get("limited"):  # the admission lock before the row's, as _admit takes them
            self.lock_limit_key(str(row["type_code"]), str(row["concurrency_key"]))
        returned = self.update_job_returning(sql, params, FINISH_FLAGS)
        if len(returned) != 1:
            return False
        self.record_event(row, changes, *event)
        self._tally_transition(row, changes)
        flags = returned[0]
        now = changes.get("last_transition_date_time") or utcnow()
        if changes["assigned_state"] == states.State.HOLD.value:
            if flags["limited"]:  # held, it gives its place under the limit up
                self._admit(str(flags["type_code"]), str(flags["concurrency_key"]), now)
        elif flags["awaited"] or flags["has_children"] or flags["limited"]:
            self._job_finished(int(row["kojo_job_id"]), str(changes["assigned_state"]), flags, now)
        return True

    def _tally_transition(self, row: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
        """Inside write(), once a transition was applied: add the attempt it ended (if any)
        to the running totals."""
        outcome = outcome_of(row, changes)
        if outcome is not None:
            ran = row["assigned_state"] == states.State.WORKING.value
            now = changes["last_transition_date_time"]
            self.tally(str(row["type_code"]), outcome, [row], now, ran=ran)

    def job_transition(
        self,
        job_id: int,
        transition: states.Transition,
        *,
        now: datetime | None = None,
        owner: int | None = None,
        work_at: datetime | None = None,
        row: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> Row:
        """Apply a transition with compare-and-set; the new row.

        `row` is the job as the caller last saw it (with the type's
        auto_delete_interval_duration); without it the row is read first.
        `owner` restricts the change to a job claimed by that owner. `actor` says who asked,
        on the job's timeline: "operator", "maintenance"...; by default "process" when
        `owner` is given (the job's own process), else "kojo".
        Raises InvalidTransition if the job is not in a state allowing it, or
        if another process changed it first; JobNotFound if it does not exist.
        """
        now = now or utcnow()
        actor = actor or ("kojo" if owner is None else "process")
        return self.retrying(
            lambda: self._transition(job_id, transition, now, owner, work_at, row, extra, actor)
        )

    def _transition(
        self,
        job_id: int,
        transition: states.Transition,
        now: datetime,
        owner: int | None,
        work_at: datetime | None,
        row: Mapping[str, Any] | None,
        extra: Mapping[str, Any] | None,
        actor: str,
    ) -> Row:
        if row is None:
            row = self.job_get_with_type(job_id)
            if row is None:
                raise JobNotFound(f"no job with id {job_id}")
        changes = states.plan(
            transition,
            row,
            now=now,
            auto_delete_interval=parse_duration(row["auto_delete_interval_duration"]),
            work_at=work_at,
        )
        changes.update(extra or {})
        if transition is states.COMPLETE_SUCCESS:  # its claim's time, for its timeline
            changes["started_at_date_time"] = row["last_transition_date_time"]
        requeued = False
        if row["assigned_state"] in OUTSIDE_LIMITS and changes["next_state_request"] == "working":
            if self.fetchone("job_parents_pending", {"child": job_id}) is not None:
                changes["next_state_request"] = states.Request.AFTER.value  # still waits
            elif row.get("limited"):
                changes["next_state_request"] = states.Request.LIMIT.value  # to be admitted
                requeued = True
        process = None if actor == "operator" else owner
        if not self._apply(row, changes, owner, (transition.name, actor, process)):
            current = self.job_get(job_id)
            if current is None:
                raise JobNotFound(f"no job with id {job_id}")
            raise InvalidTransition(
                f"job {job_id}: cannot {transition.name}: it is now "
                f"{current['assigned_state']}/{current['next_state_request']}"
                + (" (claimed by another process)" if owner is not None else "")
            )
        if requeued:
            self._admit(str(row["type_code"]), str(row["concurrency_key"]), now)
        if transition.assigned_state is states.State.WAITING or (
            row["assigned_state"] == states.State.WORKING.value
            and not row.get("can_work_in_parallel", True)
        ):
            self.notify("jobs")  # runnable again, or a serial type is free again
        result = dict(row)
        result.update(changes)
        return result

    def job_complete_many(
        self, jobs: Sequence[Mapping[str, Any]], owner: int, now: datetime
    ) -> int:
        """Auto-complete claimed jobs in one batch (inside write()); how many were completed.

        Each row must carry auto_delete_interval_duration. Jobs no longer
        claimed by `owner` (cancelled meanwhile) are left alone.
        """
        by_interval: dict[str, list[int]] = {}
        for job in jobs:
            by_interval.setdefault(job["auto_delete_interval_duration"], []).append(
                int(job["kojo_job_id"])
            )
        for job in jobs:
            if job.get("result") is not None:  # what its worker returned, as JSON text
                self.job_set_result(int(job["kojo_job_id"]), owner, job["result"])
        serial = {job["type_code"] for job in jobs if not job.get("can_work_in_parallel", True)}
        if serial:
            self.lock_serial_types(sorted(serial))
            self.notify("jobs")  # a serial type is free again
        completed = 0
        done: list[Mapping[str, Any]] = []
        tally = {"minute": minute_of(now), "writer": os.getpid()}
        for interval, ids in by_interval.items():
            params = {
                "ids": self._id_list(ids),
                "owner": owner,
                "now": now,
                "delete_after": add_saturating(now, parse_duration(interval)),
            }
            if self.completion_tallies:
                params.update(tally)
            count, flagged = self._complete_success(params, len(ids))
            completed += count
            if not self.completion_tallies:
                done += self._completed_now(jobs, ids, count, now)
            keys: set[tuple[str, str]] = set()  # one admission per key for the batch
            for job_id in flagged:
                flags = self.fetchone("job_finish_flags", {"kojo_job_id": job_id})
                assert flags is not None
                if flags["limited"]:
                    keys.add((str(flags["type_code"]), str(flags["concurrency_key"])))
                self._job_finished(job_id, COMPLETE_SUCCESS, {**flags, "limited": False}, now)
            for type_code, key in sorted(keys):  # in one order: batches never deadlock
                self._admit(type_code, key, now)
        if not self.completion_tallies:
            self._tally_completed(done, now)
        return completed

    def _tally_completed(self, done: list[Mapping[str, Any]], now: datetime) -> None:
        """Add a batch's completed jobs to the running totals: one statement per type
        (usually one)."""
        try:
            codes = {job["type_code"] for job in done}
        except KeyError:  # a caller gave ids only: read their types (they go untimed)
            done = [{"type_code": self._type_of(int(job["kojo_job_id"]))} for job in done]
            codes = {job["type_code"] for job in done}
        if len(codes) == 1:
            self.tally(str(codes.pop()), COMPLETE_SUCCESS, done, now)
            return
        for code in sorted(codes):
            rows = [job for job in done if job["type_code"] == code]
            self.tally(str(code), COMPLETE_SUCCESS, rows, now)

    def _type_of(self, job_id: int) -> str:
        row = self.job_get(job_id)
        assert row is not None  # completed in this transaction: not deleted yet
        return str(row["type_code"])

    def _completed_now(
        self, jobs: Sequence[Mapping[str, Any]], ids: list[int], count: int, now: datetime
    ) -> list[Mapping[str, Any]]:
        """The rows of `jobs` with these ids that job_complete_success completed (`count`
        of them): all, unless some were cancelled or held meanwhile (then read again)."""
        if len(ids) == len(jobs):  # one group: every job
            rows = list(jobs)
        else:
            wanted = set(ids)
            rows = [job for job in jobs if int(job["kojo_job_id"]) in wanted]
        if count == len(rows):
            return rows
        done = []
        for job in rows:
            current = self.job_get(int(job["kojo_job_id"]))
            if (
                current is not None
                and current["assigned_state"] == COMPLETE_SUCCESS
                and current["completed_at_date_time"] == as_utc(now)
            ):
                done.append(job)
        return done

    def _job_finished(
        self, job_id: int, state: str, flags: Mapping[str, Any], now: datetime
    ) -> None:
        """Inside write(), as job `job_id` ends in `state` (complete_*, panicked): wake who
        waits for its result, and release or end the jobs that wait for it, and theirs."""
        if flags["awaited"]:
            self.publish_finished(job_id, now)
        if flags["limited"]:  # its place under the limit is free
            self._admit(str(flags["type_code"]), str(flags["concurrency_key"]), now)
        if not flags["has_children"]:
            return
        queue: list[tuple[int, str]] | None = getattr(self._local, "settling", None)
        if queue is not None:  # a child ended while settling: its turn comes in the loop
            queue.append((job_id, state))
            return
        self._local.settling = queue = [(job_id, state)]
        try:
            while queue:  # a loop, not recursion: a chain may be thousands of jobs long
                parent, parent_state = queue.pop()
                self._settle_children(parent, parent_state, now)
        finally:
            self._local.settling = None

    def _settle_children(self, parent: int, state: str, now: datetime) -> None:
        children = sorted(  # locked in id order: parents finishing at once never deadlock
            int(r["child_id"]) for r in self.fetchall("job_dependency_delete", {"parent": parent})
        )
        if state != COMPLETE_SUCCESS:
            for child in children:
                self._terminate_child(child, parent, state, now)
            return
        released = 0
        for child in children:
            self.lock_child(child)
            row = self.fetchone("job_child_release", {"child": child, "now": now})
            if row is not None and row["limited"]:
                self._admit(str(row["type_code"]), str(row["concurrency_key"]), now)
            elif row is not None:
                released += 1
        if released:
            self.notify("jobs")

    def _terminate_child(self, child: int, parent: int, state: str, now: datetime) -> None:
        row = self.job_get_with_type(child)
        if row is None or not states.COMPLETE_TERMINATED.allows(
            row["assigned_state"], row["next_state_request"]
        ):
            return  # finished already, or working (released by hand): left as it is
        if row["assigned_state"] == states.State.WORKING.value:
            return
        changes = states.plan(
            states.COMPLETE_TERMINATED,
            row,
            now=now,
            auto_delete_interval=parse_duration(row["auto_delete_interval_duration"]),
        )
        changes["last_error"] = f"terminated: the job it waited for, ID[{parent}], ended {state}"
        self._apply(row, changes, None, (states.COMPLETE_TERMINATED.name, "dependency", None))

    def publish_finished(self, job_id: int, now: datetime) -> None:
        """Inside write(): tell app.result() waiters that job `job_id` finished (only jobs
        someone waits for pay this: see job_await)."""
        self.message_publish(FINISHED_CHANNEL, json.dumps({"id": job_id}), None, now)

    def job_await(self, job_id: int) -> Row | None:
        """Mark the job as waited for (its finish will be published); the job, or None."""
        with self.write():
            self.execute("job_await", {"kojo_job_id": job_id})
            return self.job_get(job_id)

    def _crash(
        self, job: Row, now: datetime, blame: bool, owner_id: int, death: Death | None = None
    ) -> CrashedJob | None:
        changes = self._crash_changes(job, now, blame, death)
        name = states.PANIC.name if changes["assigned_state"] == "panicked" else states.CRASH.name
        if not self._apply(job, changes, owner_id, (name, "crash", owner_id)):
            return None
        return CrashedJob(
            int(job["kojo_job_id"]),
            str(job["type_code"]),
            str(changes["assigned_state"]),
            int(changes["times_crashed"]),
            int(job["max_crashes"]),
        )

    @staticmethod
    def _crash_changes(
        job: Mapping[str, Any], now: datetime, blame: bool, death: Death | None = None
    ) -> dict[str, Any]:
        auto_delete = parse_duration(job["auto_delete_interval_duration"])
        if not blame:
            changes = states.plan(states.CRASH, job, now=now, auto_delete_interval=auto_delete)
            changes["times_crashed"] = job["times_crashed"]
            changes["priority"] = job["priority"]
            changes["last_error"] = (
                "re-run: its process stopped for a reason not counted against the job "
                "(lost database registration, or kojo's own process tree went away)"
            )
            return changes
        crashes_after = int(job["times_crashed"]) + 1
        transition = states.CRASH if crashes_after < int(job["max_crashes"]) else states.PANIC
        changes = states.plan(transition, job, now=now, auto_delete_interval=auto_delete)
        times = "time" if crashes_after == 1 else "times"
        counted = f"crashed {crashes_after} {times} (max_crashes={job['max_crashes']})"
        cause = None if death is None else death.describe(job.get("timeout"))
        if transition is states.PANIC:
            # The process died: that is a crash too, even when it ends the job.
            changes["times_crashed"] = crashes_after
            changes["last_error"] = (
                counted if cause is None else f"{counted}; the last time, {cause}"
            )
        elif cause is not None:
            changes["last_error"] = f"{cause} (crash {crashes_after} of max_crashes="
            changes["last_error"] += f"{job['max_crashes']}); it will be re-run"
        return changes


@dataclass(frozen=True)
class Death:
    """How a job process died, as its root saw it: written to its jobs' last_error."""

    path: str  # the process path, /server[8]/root[22]/job[30]
    how: str  # "signal 9 (SIGKILL)", "exit 70"
    timed_out: bool = False  # killed for outliving its job's timeout

    def describe(self, timeout: float | None = None) -> str:
        if self.timed_out:
            limit = f" ({float(timeout):g} s)" if timeout else ""
            return f"it ran past its job type's timeout{limit}; its process {self.path} was killed"
        return f"its process {self.path} died ({self.how})"


@dataclass(frozen=True)
class CrashedJob:
    """A working job crashed by the death of its process: crashed, or panicked at
    max_crashes."""

    kojo_job_id: int
    type_code: str
    assigned_state: str
    times_crashed: int
    max_crashes: int
