"""kojo.outcomes.Outcome: the same text as the strings it replaced, for logs and comparisons."""

from __future__ import annotations

from kojo import states
from kojo.outcomes import Outcome


def test_outcomes_are_the_texts_they_replaced() -> None:
    assert {o.value for o in Outcome} == {
        "retry",
        "hold",
        "complete_success",
        "complete_failed",
        "panic",
        "auto_complete",
        "lost",
    }
    assert Outcome.LOST == "lost" and f"{Outcome.RETRY}" == "retry"


def test_every_request_a_worker_can_make_has_its_outcome() -> None:
    for transition in (states.RETRY, states.HOLD, states.COMPLETE_SUCCESS, states.COMPLETE_FAILED):
        assert Outcome.of(transition) == transition.name
