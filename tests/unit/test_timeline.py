"""timeline.py's reading back of the steps that have no kojo_job_event row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kojo.timeline import lines, timeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(**columns: Any) -> dict[str, Any]:
    row = {
        "created_at_date_time": T0,
        "assigned_state": "waiting",
        "previous_state": "new",
        "last_transition_date_time": T0,
        "started_at_date_time": None,
        "kojo_process_id": None,
        "times_worked": 0,
    }
    return {**row, **columns}


def shape(steps: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return [(s["transition"], s["from_state"], s["to_state"]) for s in steps]


def test_a_new_job_has_one_step() -> None:
    assert shape(timeline(job(), [])) == [("created", "new", "waiting")]


def test_a_claim_given_back_untouched_leaves_no_step() -> None:
    # UNCLAIM keeps previous_state and sets last_transition: the job waits as before.
    row = job(last_transition_date_time=T0 + timedelta(seconds=5))
    assert shape(timeline(row, [])) == [("created", "new", "waiting")]


def test_a_working_job_was_claimed_at_its_last_transition() -> None:
    claimed = T0 + timedelta(seconds=3)
    row = job(
        assigned_state="working",
        previous_state="waiting",
        last_transition_date_time=claimed,
        kojo_process_id=7,
        times_worked=1,
    )
    steps = timeline(row, [])
    assert shape(steps) == [("created", "new", "waiting"), ("work", "waiting", "working")]
    assert (steps[1]["at"], steps[1]["kojo_process_id"], steps[1]["note"]) == (
        claimed,
        7,
        "attempt 1",
    )


def test_a_success_from_before_schema_5_has_no_claim_time() -> None:
    row = job(assigned_state="complete_success", previous_state="working", kojo_process_id=7)
    assert shape(timeline(row, [])) == [
        ("created", "new", "waiting"),
        ("complete_success", "working", "complete_success"),
    ]
    assert "by process 7" in lines(timeline(row, []))[1]
