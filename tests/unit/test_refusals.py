"""Refused operator actions in the operator's words: what the job is, what the action
needs, and the next step where there is one (never the state machine's own names)."""

from __future__ import annotations

import pytest

from kojo.refusals import refusal


@pytest.mark.parametrize(
    ("action", "state", "asked", "expected"),
    [
        (
            "release",
            "complete_terminated",
            "none",
            "job 12 is complete_terminated; only a held, panicked or crashed job can be "
            "released; to run it again: kojo jobs retry 12",
        ),
        (
            "release",
            "complete_success",
            "none",
            "job 12 is complete_success; only a held, panicked or crashed job can be released",
        ),
        (
            "release",
            "waiting",
            "working",
            "job 12 is waiting; only a held, panicked or crashed job can be released",
        ),
        (
            "release",
            "new",
            "none",
            "job 12 is new; only a held, panicked or crashed job can be released (it is being "
            "scheduled: try again in a moment)",
        ),
        ("hold", "hold", "none", "job 12 is already on hold; kojo jobs release 12 lets it run"),
        (
            "hold",
            "panicked",
            "none",
            "job 12 is panicked; only a waiting or working job can be held",
        ),
        (
            "cancel",
            "complete_failed",
            "none",
            "job 12 is complete_failed: it has finished, there is nothing to cancel",
        ),
        (
            "work",
            "complete_failed",
            "none",
            "job 12 is complete_failed; only a waiting or crashed job can be worked; to run it "
            "again: kojo jobs retry 12",
        ),
        (
            "work",
            "waiting",
            "after",
            "job 12 is waiting, but not to be worked yet; kojo jobs why 12 says why",
        ),
        (
            "retry",
            "working",
            "none",
            "job 12 is working; only a panicked, crashed, complete_failed or "
            "complete_terminated job can be retried",
        ),
    ],
)
def test_a_refusal_is_one_sentence_an_operator_can_act_on(
    action: str, state: str, asked: str, expected: str
) -> None:
    job = {"kojo_job_id": 12, "assigned_state": state, "next_state_request": asked}
    said = refusal(action, job)
    assert said == expected
    assert "\n" not in said and "/" not in said.replace("jobs", "")
