"""Kōjō's job state machine, as pure data and functions: no I/O.

A job is the pair (assigned_state, next_state_request). A transition is valid
only from the pairs it lists; applying one yields the column values to write.
Backends write them with a compare-and-set on the old pair (and on the claim
owner), so two processes can never both apply a transition.

Differences from Kōjō 5.x (reference §12.4), on purpose:
- last_transition_date_time is the time of the transition (Q1 fixed).
- priority is a signed integer and may go below zero (Q2 fixed); lowering it
  saturates at the int4 minimum, so a job at the bound can still crash.
- `panic` is refused from terminal states, so an explicit request always
  wins over auto-completion instead of panicking the job.
- `complete_terminated` (cancel) is also allowed from crashed, hold and
  panicked, so operators can cancel any job that is not finished.
- `unclaim` gives back a job that a process claimed but never started.
- `rerun` (`kojo jobs retry`) puts a finished job that ended badly back to waiting.
- `work` requires the request `working` (Kōjō checks only the assigned state
  and leaves that condition to its Selector), so a job still waiting for the
  schedule-limit check can never be worked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from . import bounds
from .errors import InvalidTransition


class State(StrEnum):
    NEW = "new"
    WAITING = "waiting"
    WORKING = "working"
    HOLD = "hold"
    CRASHED = "crashed"
    PANICKED = "panicked"
    COMPLETE_SUCCESS = "complete_success"
    COMPLETE_FAILED = "complete_failed"
    COMPLETE_FAILED_SCHEDULE_LIMIT_CHECK = "complete_failed_schedule_limit_check"
    COMPLETE_TERMINATED = "complete_terminated"


class Request(StrEnum):
    NONE = "none"
    WORKING = "working"
    SCHEDULE_LIMIT_CHECK = "schedule_limit_check"
    AFTER = "after"  # waiting for its parents (schedule(after=)) to complete
    LIMIT = "limit"  # waiting for a place under its type's concurrency_limit


TERMINAL_STATES = frozenset(
    {
        State.COMPLETE_SUCCESS,
        State.COMPLETE_FAILED,
        State.COMPLETE_FAILED_SCHEDULE_LIMIT_CHECK,
        State.COMPLETE_TERMINATED,
    }
)
STATES = frozenset(State)
# Where a job stays until a person acts: waiting for its result ends there too.
FINISHED_STATES = frozenset({*(s.value for s in TERMINAL_STATES), State.PANICKED.value})


def is_finished(state: str) -> bool:
    """Whether a job in `state` is done with (complete_*, or panicked)."""
    return state in FINISHED_STATES


REQUESTS = frozenset(Request)

Pair = tuple[State, Request]


def _from(*states: State) -> frozenset[Pair]:
    """Every (state, request) pair whose assigned state is one of `states`."""
    return frozenset((s, r) for s in states for r in Request)


_WAIT_FROM = _from(State.WORKING, State.PANICKED, State.HOLD, State.CRASHED, State.NEW) | {
    (State.WAITING, Request.SCHEDULE_LIMIT_CHECK)
}


@dataclass(frozen=True)
class Transition:
    """One of Kōjō's requests: the target pair and where it may come from."""

    name: str
    assigned_state: State
    next_state_request: Request
    allowed_from: frozenset[Pair]
    counter: str | None = None  # the times_* column this transition increments
    lowers_priority: bool = False
    completes: bool = False

    def allows(self, assigned: State | str, request: Request | str) -> bool:
        return (State(assigned), Request(request)) in self.allowed_from


WAIT_FOR_WORK = Transition("wait_for_work", State.WAITING, Request.WORKING, _WAIT_FROM)
RETRY = Transition("retry", State.WAITING, Request.WORKING, _WAIT_FROM, counter="times_retried")
SCHEDULE_LIMIT_CHECK = Transition(
    "schedule_limit_check", State.WAITING, Request.SCHEDULE_LIMIT_CHECK, _from(State.NEW)
)
WORK = Transition(
    "work",
    State.WORKING,
    Request.NONE,
    frozenset({(State.WAITING, Request.WORKING), (State.CRASHED, Request.WORKING)}),
    counter="times_worked",
)
HOLD = Transition(
    "hold", State.HOLD, Request.NONE, _from(State.WAITING, State.WORKING), "times_held"
)
COMPLETE_SUCCESS = Transition(
    "complete_success", State.COMPLETE_SUCCESS, Request.NONE, _from(State.WORKING), completes=True
)
COMPLETE_FAILED = Transition(
    "complete_failed", State.COMPLETE_FAILED, Request.NONE, _from(State.WORKING), completes=True
)
COMPLETE_FAILED_SCHEDULE_LIMIT_CHECK = Transition(
    "complete_failed_schedule_limit_check",
    State.COMPLETE_FAILED_SCHEDULE_LIMIT_CHECK,
    Request.NONE,
    _from(State.WAITING, State.WORKING),
    completes=True,
)
COMPLETE_TERMINATED = Transition(
    "complete_terminated",
    State.COMPLETE_TERMINATED,
    Request.NONE,
    _from(State.WAITING, State.WORKING, State.CRASHED, State.HOLD, State.PANICKED),
    completes=True,
)
CRASH = Transition(
    "crash",
    State.CRASHED,
    Request.WORKING,
    _from(State.WORKING),
    counter="times_crashed",
    lowers_priority=True,
)
PANIC = Transition(
    "panic",
    State.PANICKED,
    Request.NONE,
    _from(State.NEW, State.WAITING, State.WORKING, State.HOLD, State.CRASHED, State.PANICKED),
    counter="times_panicked",
    lowers_priority=True,
)
UNCLAIM = Transition("unclaim", State.WAITING, Request.WORKING, _from(State.WORKING))
# `kojo jobs retry`: an operator runs again a job that ended badly (or waits to be re-run);
# not counted in times_retried, which counts the type's automatic retries.
RERUN = Transition(
    "rerun",
    State.WAITING,
    Request.WORKING,
    _from(State.PANICKED, State.CRASHED, State.COMPLETE_FAILED, State.COMPLETE_TERMINATED),
)

TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        WAIT_FOR_WORK,
        RETRY,
        SCHEDULE_LIMIT_CHECK,
        WORK,
        HOLD,
        COMPLETE_SUCCESS,
        COMPLETE_FAILED,
        COMPLETE_FAILED_SCHEDULE_LIMIT_CHECK,
        COMPLETE_TERMINATED,
        CRASH,
        PANIC,
        UNCLAIM,
        RERUN,
    )
}


def plan(
    transition: Transition,
    row: Mapping[str, Any],
    *,
    now: datetime,
    auto_delete_interval: timedelta,
    work_at: datetime | None = None,
) -> dict[str, Any]:
    """The columns to write to apply `transition` to the job `row`.

    Raises InvalidTransition when the row's current pair does not allow it.
    """
    assigned = State(row["assigned_state"])
    request = Request(row["next_state_request"])
    if not transition.allows(assigned, request):
        raise InvalidTransition(
            f"job {row.get('kojo_job_id')}: cannot {transition.name} "
            f"from {assigned.value}/{request.value}"
        )
    changes: dict[str, Any] = {
        "assigned_state": transition.assigned_state.value,
        "next_state_request": transition.next_state_request.value,
        "previous_state": assigned.value,
        "last_transition_date_time": now,
    }
    if transition.counter is not None:
        changes[transition.counter] = int(row[transition.counter]) + 1
    if transition is UNCLAIM:
        changes["times_worked"] = max(0, int(row["times_worked"]) - 1)
        changes["previous_state"] = row["previous_state"]
    if transition.lowers_priority:
        changes["priority"] = bounds.lower_priority(int(row["priority"]))
    if transition.completes:
        changes["completed_at_date_time"] = now
        changes["delete_after_date_time"] = bounds.add_saturating(now, auto_delete_interval)
    if transition is RETRY:
        changes["work_at_date_time"] = work_at if work_at is not None else now
    if transition is RERUN:  # runnable now, and no longer due for deletion
        changes["work_at_date_time"] = now
        changes["completed_at_date_time"] = None
        changes["delete_after_date_time"] = None
    return changes


def initial_transition(schedule_limit: int) -> Transition:
    """How a new job leaves `new`: through the schedule-limit gate or straight to waiting."""
    return SCHEDULE_LIMIT_CHECK if schedule_limit > 0 else WAIT_FOR_WORK
