"""`kojo jobs why`'s words: lengths of time, and one line out of several reasons.
(Every reason against a real database: tests/acceptance/test_cli_operator.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from kojo.why import Diagnosis, Reason, span


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "0s"),
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (7199, "1h 59m"),
        (86400, "1d"),
        (90000, "1d 1h"),
    ],
)
def test_span(seconds: float, text: str) -> None:
    assert span(timedelta(seconds=seconds)) == text


def test_a_diagnosis_is_one_line_with_the_other_reasons_after_also() -> None:
    first = Reason("type_paused", "job type x is paused")
    then = Reason("no_live_server", "no live server")
    diagnosis = Diagnosis(7, "waiting", "working", first, (then,))
    assert diagnosis.line() == "job 7: job type x is paused; also: no live server"
    assert diagnosis.as_json() == {
        "id": 7,
        "state": "waiting",
        "next_state_request": "working",
        "reason": "type_paused",
        "message": "job type x is paused",
        "detail": {},
        "also": [{"reason": "no_live_server", "message": "no live server", "detail": {}}],
    }
    assert Diagnosis(7, "hold", "none", first).line() == "job 7: job type x is paused"
