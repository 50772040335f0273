"""The state machine against Kōjō's transition table (reference §3.3), pair by pair.

The expected tables below are written out by hand from the reference and from
the deviations documented in kojo.states' docstring; they are deliberately not
derived from the module under test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kojo import InvalidTransition
from kojo import states as st

STATES = (
    "new",
    "waiting",
    "working",
    "hold",
    "crashed",
    "panicked",
    "complete_success",
    "complete_failed",
    "complete_failed_schedule_limit_check",
    "complete_terminated",
)
REQUESTS = ("none", "working", "schedule_limit_check", "after", "limit")
ALL_PAIRS = frozenset((s, r) for s in STATES for r in REQUESTS)
TERMINAL = (
    "complete_success",
    "complete_failed",
    "complete_failed_schedule_limit_check",
    "complete_terminated",
)


def from_states(*assigned: str) -> frozenset[tuple[str, str]]:
    """Kōjō checks only the current assigned_state: every request is allowed with it."""
    return frozenset((s, r) for s in assigned for r in REQUESTS)


# requestWaitForWork / requestRetry: working, panicked, hold, crashed, new; or waiting only
# when the job is waiting for the schedule-limit check.
WAIT_FROM = from_states("working", "panicked", "hold", "crashed", "new") | {
    ("waiting", "schedule_limit_check")
}

# name -> (target assigned_state, target next_state_request, allowed current pairs)
EXPECTED: dict[str, tuple[str, str, frozenset[tuple[str, str]]]] = {
    "wait_for_work": ("waiting", "working", WAIT_FROM),
    "retry": ("waiting", "working", WAIT_FROM),
    "schedule_limit_check": ("waiting", "schedule_limit_check", from_states("new")),
    # Kōjō allows requestWork from waiting and crashed with any request; its Selector only
    # ever picks next_state_request='working'. kojo puts that condition in the state machine,
    # so a job waiting for the schedule-limit check can never be worked.
    "work": ("working", "none", frozenset({("waiting", "working"), ("crashed", "working")})),
    "hold": ("hold", "none", from_states("waiting", "working")),
    # Deviation: cancel (complete_terminated) also from crashed, hold and panicked.
    "complete_terminated": (
        "complete_terminated",
        "none",
        from_states("waiting", "working", "crashed", "hold", "panicked"),
    ),
    "complete_failed_schedule_limit_check": (
        "complete_failed_schedule_limit_check",
        "none",
        from_states("waiting", "working"),
    ),
    "complete_success": ("complete_success", "none", from_states("working")),
    "complete_failed": ("complete_failed", "none", from_states("working")),
    "crash": ("crashed", "working", from_states("working")),
    # Deviation: Kōjō panics from any state; kojo refuses it from the terminal states.
    "panic": (
        "panicked",
        "none",
        from_states("new", "waiting", "working", "hold", "crashed", "panicked"),
    ),
    # Extension: a job claimed but never started goes back to waiting.
    "unclaim": ("waiting", "working", from_states("working")),
    # Extension (`kojo jobs retry`): an operator runs again a job that ended badly.
    "rerun": (
        "waiting",
        "working",
        from_states("panicked", "crashed", "complete_failed", "complete_terminated"),
    ),
}

COUNTERS = ("times_worked", "times_retried", "times_held", "times_crashed", "times_panicked")
EXPECTED_COUNTER = {
    "retry": "times_retried",
    "work": "times_worked",
    "hold": "times_held",
    "crash": "times_crashed",
    "panic": "times_panicked",
}
COMPLETING = {
    "complete_success",
    "complete_failed",
    "complete_failed_schedule_limit_check",
    "complete_terminated",
}
LOWERS_PRIORITY = {"crash", "panic"}

NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
INTERVAL = timedelta(hours=3)


def job(assigned: str = "working", request: str = "none", **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "kojo_job_id": 42,
        "assigned_state": assigned,
        "next_state_request": request,
        "previous_state": "waiting",
        "priority": 7,
        "importance": 7,
        "work_at_date_time": NOW - timedelta(minutes=5),
        "times_worked": 3,
        "times_retried": 2,
        "times_held": 1,
        "times_crashed": 4,
        "times_panicked": 5,
    }
    row.update(overrides)
    return row


def plan(name: str, row: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return st.plan(st.TRANSITIONS[name], row, now=NOW, auto_delete_interval=INTERVAL, **kwargs)


def test_the_table_has_exactly_kojos_requests_plus_unclaim_and_rerun() -> None:
    # requestNew is always invalid in Kōjō (dead code), so it is not a transition here.
    assert set(st.TRANSITIONS) == set(EXPECTED)


def test_states_and_requests_are_kojos() -> None:
    assert {s.value for s in st.STATES} == set(STATES)
    assert {r.value for r in st.REQUESTS} == set(REQUESTS)
    assert {s.value for s in st.TERMINAL_STATES} == set(TERMINAL)


MATRIX = [
    pytest.param(name, assigned, request, id=f"{name}:{assigned}/{request}")
    for name in sorted(EXPECTED)
    for assigned in STATES
    for request in REQUESTS
]


@pytest.mark.parametrize(("name", "assigned", "next_request"), MATRIX)
def test_transition_matrix(name: str, assigned: str, next_request: str) -> None:
    request = next_request
    target_assigned, target_request, allowed = EXPECTED[name]
    transition = st.TRANSITIONS[name]
    row = job(assigned, request)
    if (assigned, request) in allowed:
        assert transition.allows(assigned, request)
        changes = plan(name, row)
        assert changes["assigned_state"] == target_assigned
        assert changes["next_state_request"] == target_request
        assert changes["last_transition_date_time"] == NOW
    else:
        assert not transition.allows(assigned, request)
        with pytest.raises(InvalidTransition) as raised:
            plan(name, row)
        message = str(raised.value)
        assert "42" in message and name in message and f"{assigned}/{request}" in message


def test_waiting_for_work_is_not_rewaited() -> None:
    # The special case: waiting is a valid origin only while awaiting the limit check.
    assert st.WAIT_FOR_WORK.allows("waiting", "schedule_limit_check")
    assert not st.WAIT_FOR_WORK.allows("waiting", "working")
    assert not st.WAIT_FOR_WORK.allows("waiting", "none")


def test_unknown_state_names_are_refused() -> None:
    with pytest.raises(ValueError, match="bogus"):
        st.WORK.allows("bogus", "working")
    with pytest.raises(ValueError, match="later"):
        plan("work", job("waiting", "later"))


# -- side effects ------------------------------------------------------------------------

VALID_EXAMPLES = [
    pytest.param(name, assigned, request, id=f"{name}:{assigned}/{request}")
    for name, (_, _, allowed) in sorted(EXPECTED.items())
    for assigned, request in sorted(allowed)
]


@pytest.mark.parametrize(("name", "assigned", "next_request"), VALID_EXAMPLES)
def test_counters_priority_and_completion_times(
    name: str, assigned: str, next_request: str
) -> None:
    request = next_request
    row = job(assigned, request)
    before = dict(row)
    changes = plan(name, row)
    assert row == before, "plan() must not mutate the row it is given"

    for counter in COUNTERS:
        if EXPECTED_COUNTER.get(name) == counter:
            assert changes[counter] == row[counter] + 1, counter
        elif name == "unclaim" and counter == "times_worked":
            assert changes[counter] == row[counter] - 1
        else:
            assert changes.get(counter, row[counter]) == row[counter], counter

    if name in LOWERS_PRIORITY:
        assert changes["priority"] == 6
    else:
        assert "priority" not in changes
    assert "importance" not in changes

    if name in COMPLETING:
        assert changes["completed_at_date_time"] == NOW
        assert changes["delete_after_date_time"] == NOW + INTERVAL
        # Q1 fixed: the transition time is the completion time, not completion + interval.
        assert changes["last_transition_date_time"] == NOW
    elif name == "rerun":  # no longer finished, nor due for deletion
        assert changes["completed_at_date_time"] is None
        assert changes["delete_after_date_time"] is None
    else:
        assert "completed_at_date_time" not in changes
        assert "delete_after_date_time" not in changes

    if name == "unclaim":
        assert changes["previous_state"] == row["previous_state"]
    else:
        assert changes["previous_state"] == assigned

    if name in ("retry", "rerun"):
        assert changes["work_at_date_time"] == NOW
    else:
        assert "work_at_date_time" not in changes


def test_retry_sets_work_at_to_the_requested_time() -> None:
    later = NOW + timedelta(minutes=10)
    changes = plan("retry", job("working"), work_at=later)
    assert changes["work_at_date_time"] == later
    assert changes["times_retried"] == 3
    assert (changes["assigned_state"], changes["next_state_request"]) == ("waiting", "working")


def test_wait_for_work_ignores_work_at() -> None:
    changes = plan("wait_for_work", job("hold"), work_at=NOW + timedelta(days=1))
    assert "work_at_date_time" not in changes


@pytest.mark.parametrize("name", ["crash", "panic"])
def test_priority_goes_below_zero(name: str) -> None:
    # Q2 fixed: priority is signed, so a crash or panic at priority 0 gives -1 (no underflow).
    assert plan(name, job("working", priority=0))["priority"] == -1
    assert plan(name, job("working", priority=-3))["priority"] == -4


def test_crash_makes_the_job_runnable_again() -> None:
    changes = plan("crash", job("working"))
    assert (changes["assigned_state"], changes["next_state_request"]) == ("crashed", "working")
    assert changes["times_crashed"] == 5
    assert changes["previous_state"] == "working"


def test_work_counts_from_crashed_too() -> None:
    changes = plan("work", job("crashed", "working"))
    assert changes["times_worked"] == 4
    assert changes["previous_state"] == "crashed"


def test_unclaim_gives_back_the_claim_without_counting_it() -> None:
    row = job("working", previous_state="crashed", times_worked=1)
    changes = plan("unclaim", row)
    assert (changes["assigned_state"], changes["next_state_request"]) == ("waiting", "working")
    assert changes["times_worked"] == 0
    assert changes["previous_state"] == "crashed"


def test_unclaim_never_makes_times_worked_negative() -> None:
    assert plan("unclaim", job("working", times_worked=0))["times_worked"] == 0


def test_completion_uses_the_given_interval() -> None:
    changes = st.plan(
        st.COMPLETE_SUCCESS, job("working"), now=NOW, auto_delete_interval=timedelta(0)
    )
    assert changes["delete_after_date_time"] == NOW == changes["completed_at_date_time"]


def test_plan_writes_only_job_columns() -> None:
    for name, (_, _, allowed) in EXPECTED.items():
        assigned, request = sorted(allowed)[0]
        changes = plan(name, job(assigned, request), work_at=NOW)
        assert set(changes) <= {
            "assigned_state",
            "next_state_request",
            "previous_state",
            "last_transition_date_time",
            "priority",
            "completed_at_date_time",
            "delete_after_date_time",
            "work_at_date_time",
            *COUNTERS,
        }, name


@pytest.mark.parametrize(("limit", "expected"), [(0, "wait_for_work"), (1, "schedule_limit_check")])
def test_initial_transition(limit: int, expected: str) -> None:
    transition = st.initial_transition(limit)
    assert transition.name == expected
    changes = st.plan(transition, job("new"), now=NOW, auto_delete_interval=INTERVAL)
    assert changes["previous_state"] == "new"
    target = "schedule_limit_check" if limit else "working"
    assert (changes["assigned_state"], changes["next_state_request"]) == ("waiting", target)


def test_state_enums_compare_with_column_text() -> None:
    assert st.State.WORKING == "working"
    assert st.Request.SCHEDULE_LIMIT_CHECK == "schedule_limit_check"
    assert st.PANIC.allows(st.State.HOLD, st.Request.NONE)
