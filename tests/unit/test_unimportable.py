"""A job process's memory of the types whose workers it cannot import: left out of its
claims for a while, longer each time, logged once; forgotten once the import works."""

from __future__ import annotations

import logging

import pytest

from fake_clock import FakeClock
from kojo.errors import WorkerUnavailable
from kojo.processes.unimportable import RETRY_FIRST, RETRY_MAX, UnimportableTypes

MISSING = "cannot be imported (ModuleNotFoundError: No module named 'gone')"


def test_a_failed_type_is_skipped_with_growing_pauses(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    types = UnimportableTypes(clock)  # type: ignore[arg-type]
    assert types.skipped() == [] and not types.skips("a")
    with caplog.at_level(logging.DEBUG, logger="kojo"):
        types.failed(WorkerUnavailable("a", "gone:work", MISSING))
        assert types.skipped() == ["a"] and types.skips("a") and not types.skips("b")
        clock.advance(RETRY_FIRST)
        assert types.skipped() == []  # time to try again
        types.failed(WorkerUnavailable("a", "gone:work", MISSING))
        clock.advance(RETRY_FIRST * 2 - 0.1)
        assert types.skipped() == ["a"]  # the pause doubled
        for _ in range(20):
            types.failed(WorkerUnavailable("a", "gone:work", MISSING))
        clock.advance(RETRY_MAX)
        assert types.skipped() == []  # but not past RETRY_MAX
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(loud) == 1  # one error for the type, however many failures
    assert "[a]" in loud[0].getMessage() and "gone:work" in loud[0].getMessage()
    assert "ModuleNotFoundError" in loud[0].getMessage()


def test_a_type_that_imports_again_is_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    types = UnimportableTypes(clock)  # type: ignore[arg-type]
    types.failed(WorkerUnavailable("a", "gone:work", MISSING))
    types.failed(WorkerUnavailable("b", "gone:other", MISSING))
    assert types.skipped() == ["a", "b"]
    with caplog.at_level(logging.INFO, logger="kojo"):
        types.worked("a")
        types.worked("c")  # never failed: nothing to say
    assert types.skipped() == ["b"]
    assert [r.getMessage() for r in caplog.records if "can be imported now" in r.getMessage()] == [
        "Job type [a]: its worker can be imported now; working its jobs."
    ]
