"""`kojo jobs why ID`: why a job is not running now, in one line.

The answer is the first of an ordered list of small checks that finds something. A
job's state may settle it (finished, panicked, working, on hold): then that is the
whole answer. A waiting or crashed job goes through every wait check; the first
that applies is the reason, the others that also apply follow ("also: ..."), so that
an operator sees at once what is left once the first is fixed. When none applies the
job is runnable: "nothing stops it".

Each check takes the `Situation` (the job, its type, the time, and lookups made on
first use) and returns a `Reason` or None. Adding a reason is adding one function to
STATE_CHECKS or WAIT_CHECKS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .rows import JobRow, ProcessRow, TypeRow
from .states import Request, State

if TYPE_CHECKING:
    from .backends import Backend

NOTHING_STOPS_IT = "nothing stops it: it should start within a second"


@dataclass(frozen=True)
class Reason:
    """One thing that keeps a job from running: `code` for scripts (stable), `text` for
    people, `detail` the facts behind it (JSON values)."""

    code: str
    text: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"reason": self.code, "message": self.text, "detail": self.detail}


@dataclass(frozen=True)
class Diagnosis:
    """Why job `job_id` is not running: `reason`, then what `also` stops it."""

    job_id: int
    state: str
    next_state_request: str
    reason: Reason
    also: tuple[Reason, ...] = ()

    def line(self) -> str:
        text = f"job {self.job_id}: {self.reason.text}"
        if self.also:
            text += "; also: " + "; ".join(r.text for r in self.also)
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.job_id,
            "state": self.state,
            "next_state_request": self.next_state_request,
            **self.reason.as_json(),
            "also": [r.as_json() for r in self.also],
        }


class Situation:
    """What the checks look at: the job and its type now, and lookups made once, on the
    first check that needs them."""

    def __init__(self, backend: Backend, job: JobRow, job_type: TypeRow, now: datetime) -> None:
        self.backend = backend
        self.job = job
        self.type = job_type
        self.now = now

    @property
    def state(self) -> State:
        return self.job.assigned_state

    @property
    def request(self) -> Request:
        return self.job.next_state_request

    @property
    def due(self) -> bool:
        return self.job.work_at_date_time <= self.now

    @cached_property
    def processes(self) -> list[ProcessRow]:
        """The live kojo processes of the cluster (as `kojo ps` lists them)."""
        return self.backend.processes()

    @cached_property
    def working_by_owner(self) -> dict[int, list[int]]:
        return self.backend.jobs_working_by_owner()

    def process(self, owner_id: int | None) -> ProcessRow | None:
        return None if owner_id is None else self.backend.process_get(owner_id)


Check = Callable[[Situation], Reason | None]


# -- words -------------------------------------------------------------------------------


def at(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def span(delta: timedelta) -> str:
    """A short, rounded length of time: 45s, 12m, 3h 5m, 2d 4h."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def where(process: ProcessRow) -> str:
    return f"host {process.host_name}, {process.path}"


def last_line(error: str | None) -> str | None:
    lines = (error or "").strip().splitlines()
    return lines[-1][:200] if lines else None


def ids(values: list[int], most: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


# -- checks a job's state settles ----------------------------------------------------------


def finished(s: Situation) -> Reason | None:
    if s.state not in (
        State.COMPLETE_SUCCESS,
        State.COMPLETE_FAILED,
        State.COMPLETE_FAILED_SCHEDULE_LIMIT_CHECK,
        State.COMPLETE_TERMINATED,
    ):
        return None
    error = last_line(s.job.last_error)
    text = f"finished: {s.state.value} at {at(s.job.completed_at_date_time)}"
    if error and s.state is not State.COMPLETE_SUCCESS:
        text += f" ({error})"
    if s.state in (State.COMPLETE_FAILED, State.COMPLETE_TERMINATED):
        text += f"; `kojo jobs retry {s.job.kojo_job_id}` runs it again"
    detail = {"completed_at": s.job.completed_at_date_time, "last_error": error}
    return Reason("finished", text, detail)


def panicked(s: Situation) -> Reason | None:
    if s.state is not State.PANICKED:
        return None
    error = last_line(s.job.last_error)
    text = f"panicked at {at(s.job.last_transition_date_time)}"
    if error:
        text += f" ({error})"
    text += f"; `kojo jobs retry {s.job.kojo_job_id}` runs it again"
    return Reason(
        "panicked",
        text,
        {"since": s.job.last_transition_date_time, "last_error": error},
    )


def lock_wait(s: Situation) -> Reason | None:
    """A working job blocked in job.mutex()/job.semaphore()."""
    if s.state is not State.WORKING:
        return None
    rows = s.backend.job_lock_waits(s.job.kojo_job_id)
    if not rows:
        return None
    name = str(rows[0]["name"])
    holders = [r for r in rows if r["name"] == name and r["slot"] is not None]
    text = f"working, but waiting for lock {name!r} since {at(rows[0]['since_date_time'])}"
    if holders:
        first = holders[0]
        by = f" by job {first['holder_job_id']}" if first["holder_job_id"] is not None else ""
        text += f", held{by} on host {first['host_name']}, {first['path']}"
        if len(holders) > 1:
            text += f" (and {len(holders) - 1} more holder(s))"
    else:
        text += " (a slot is free: it should get it within a second)"
    detail = {
        "lock": name,
        "since": rows[0]["since_date_time"],
        "holders": [
            {
                "slot": h["slot"],
                "kojo_job_id": h["holder_job_id"],
                "host_name": h["host_name"],
                "process_id": h["process_id"],
                "path": h["path"],
            }
            for h in holders
        ],
    }
    return Reason("lock_wait", text, detail)


def working(s: Situation) -> Reason | None:
    if s.state is not State.WORKING:
        return None
    since = s.job.last_transition_date_time
    process = s.process(s.job.kojo_process_id)
    if process is None:
        return Reason(
            "working",
            f"working since {at(since)}, but its process (owner {s.job.kojo_process_id}) is "
            "gone: it will be found crashed and re-run within seconds",
            {"since": since, "kojo_process_id": s.job.kojo_process_id},
        )
    text = f"working on {where(process)} (pid {process.process_id}) since {at(since)}"
    if s.job.progress is not None:
        text += f", {s.job.progress:.0%} done"
        if s.job.progress_note:
            text += f" ({s.job.progress_note})"
    detail = {
        "since": since,
        "host_name": process.host_name,
        "process_id": process.process_id,
        "path": process.path,
        "progress": s.job.progress,
    }
    return Reason("working", text, detail)


def on_hold(s: Situation) -> Reason | None:
    if s.state is not State.HOLD:
        return None
    return Reason(
        "on_hold",
        f"on hold since {at(s.job.last_transition_date_time)}; "
        f"`kojo jobs release {s.job.kojo_job_id}` lets it run",
        {"since": s.job.last_transition_date_time},
    )


# -- checks of a waiting (or crashed) job: every one that applies is reported ------------------


def waiting_for_time(s: Situation) -> Reason | None:
    if s.due:
        return None
    moment = s.job.work_at_date_time
    what = "its cron minute" if s.job.cron_fire_date_time == moment else "its time"
    return Reason(
        "waiting_for_time",
        f"waiting for {what}: {at(moment)} (in {span(moment - s.now)})",
        {"work_at": moment},
    )


def dependency_pending(s: Situation) -> Reason | None:
    if s.request is not Request.AFTER:
        return None
    parents = s.backend.job_parent_states(s.job.kojo_job_id)
    named = [f"{p['parent_id']} ({p['assigned_state'] or 'deleted'})" for p in parents[:5]]
    if len(parents) > 5:
        named.append(f"{len(parents) - 5} more")
    text = "waiting for job(s) " + (", ".join(named) or "it was scheduled after")
    text += " to complete successfully"
    detail = {
        "parents": [
            {"kojo_job_id": p["parent_id"], "assigned_state": p["assigned_state"]} for p in parents
        ]
    }
    return Reason("dependency_pending", text, detail)


def schedule_limit_check(s: Situation) -> Reason | None:
    if s.request is not Request.SCHEDULE_LIMIT_CHECK:
        return None
    limit, allowance = s.type.schedule_limit, s.type.schedule_limit_allowance
    active = s.backend.job_schedule_limit_active(s.type.type_code)
    detail = {"schedule_limit": limit, "active": active, "allowance": allowance}
    if limit and active >= limit:
        text = (
            f"schedule limit of type {s.type.type_code} full: {active} of {limit} job(s) "
            f"working or waiting to work; kept pending (schedule_limit_allowance {allowance})"
        )
        return Reason("schedule_limit_full", text, detail)
    text = "waiting for the schedule-limit check (a server's maintainer runs it every second)"
    return Reason("schedule_limit_check", text, detail)


def concurrency_limit_full(s: Situation) -> Reason | None:
    if s.request is not Request.LIMIT:
        return None
    key = s.job.concurrency_key
    limit = s.type.concurrency_limit
    admitted = s.backend.job_limit_admitted(s.type.type_code, key)
    detail = {"concurrency_key": key, "concurrency_limit": limit, "admitted": admitted}
    keyed = f" with key {key!r}" if key else ""
    if limit and len(admitted) >= limit:
        text = (
            f"concurrency limit full: {len(admitted)} of {limit} job(s) of type "
            f"{s.type.type_code}{keyed} running or about to (job(s) {ids(admitted)})"
        )
    else:
        text = f"waiting for a place under the concurrency limit{keyed} (one is free)"
    return Reason("concurrency_limit", text, detail)


def type_paused(s: Situation) -> Reason | None:
    if not s.type.is_paused:
        return None
    code = s.type.type_code
    return Reason("type_paused", f"job type {code} is paused (`kojo ctl resume {code}`)", {})


def serial_type_busy(s: Situation) -> Reason | None:
    if s.job.can_work_in_parallel:
        return None
    others = [
        r
        for r in s.backend.job_working_of_type(s.type.type_code)
        if r["kojo_job_id"] != s.job.kojo_job_id
    ]
    if not others:
        return None
    other = others[0]
    text = f"job type {s.type.type_code} runs one job at a time and job {other['kojo_job_id']}"
    text += " is working" + (
        f" (host {other['host_name']}, {other['path']})" if other["path"] else ""
    )
    return Reason("serial_type_busy", text, {"working": other["kojo_job_id"]})


def rate_limited(s: Situation) -> Reason | None:
    """Its type started as many jobs as its rate_limit allows in the last period; the next
    start waits for the earliest slot (docs/rate-limits.md)."""
    free_at = s.type.rate_free_date_time
    if not s.type.rate_limit_count or free_at <= s.now:
        return None
    text = (
        f"rate limit of job type {s.type.type_code} reached ({s.type.rate_limit}): "
        f"next start at {at(free_at)} (in {span(free_at - s.now)})"
    )
    return Reason(
        "rate_limit", text, {"rate_limit": s.type.rate_limit, "next_start": free_at.isoformat()}
    )


def no_live_server(s: Situation) -> Reason | None:
    if any(p.kind == "server" for p in s.processes):
        return None
    return Reason(
        "no_live_server",
        "no live server: no `kojo server start` runs on this database",
        {},
    )


def no_free_job_process(s: Situation) -> Reason | None:
    """Runnable now, servers up, but no job process to take it."""
    if not s.due or s.request is not Request.WORKING:
        return None
    if not any(p.kind == "server" for p in s.processes):
        return None  # no_live_server says it
    job_processes = [p for p in s.processes if p.kind == "job"]
    if not job_processes:
        return Reason(
            "no_job_process",
            "the live servers run no job process (`--max-processes 0`, or scaled to 0)",
            {"job_processes": 0},
        )
    busy = {p.kojo_process_id: s.working_by_owner.get(p.kojo_process_id) for p in job_processes}
    if not all(busy.values()):
        return None
    working = sorted(j for jobs in busy.values() for j in jobs or [])
    return Reason(
        "job_processes_busy",
        f"all {len(job_processes)} job process(es) are busy (working job(s) {ids(working)})",
        {"job_processes": len(job_processes), "working": working},
    )


def crashed(s: Situation) -> Reason | None:
    if s.state is not State.CRASHED:
        return None
    error = last_line(s.job.last_error)
    text = (
        f"crashed {s.job.times_crashed} time(s), last at "
        f"{at(s.job.last_transition_date_time)}"
        + (f" ({error})" if error else "")
        + f"; awaiting re-run (max_crashes {s.type.max_crashes})"
    )
    detail = {"times_crashed": s.job.times_crashed, "last_error": error}
    return Reason("crashed", text, detail)


# The order is the order of the answer: a state that settles it, then what a waiting job
# waits for, its own conditions first, the cluster's after.
STATE_CHECKS: tuple[Check, ...] = (finished, panicked, lock_wait, working, on_hold)
WAIT_CHECKS: tuple[Check, ...] = (
    waiting_for_time,
    dependency_pending,
    schedule_limit_check,
    concurrency_limit_full,
    type_paused,
    serial_type_busy,
    rate_limited,
    no_live_server,
    no_free_job_process,
    crashed,
)


def runnable(s: Situation) -> Reason:
    """Nothing stops it (a disabled type only stops new jobs, not this one)."""
    text = NOTHING_STOPS_IT
    if not s.type.is_enabled:
        text += f" (job type {s.type.type_code} is disabled: that stops only new jobs)"
    return Reason("runnable", text, {"type_enabled": s.type.is_enabled})


def diagnose(s: Situation) -> Diagnosis:
    """Why the job of `s` is not running now."""
    base = (s.job.kojo_job_id, s.state.value, s.request.value)
    for check in STATE_CHECKS:
        reason = check(s)
        if reason is not None:
            return Diagnosis(*base, reason)
    found = [r for r in (check(s) for check in WAIT_CHECKS) if r is not None]
    if not found:
        return Diagnosis(*base, runnable(s))
    if found[0].code == "crashed":  # crashed, and nothing else in the way
        only = found[0]
        found[0] = Reason(
            only.code, only.text + ": it should be re-run within a second", only.detail
        )
    return Diagnosis(*base, found[0], tuple(found[1:]))
