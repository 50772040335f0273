"""A job process's BatchKeeper, turned by hand with a fake clock (no thread, no sleeps)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from fake_clock import FakeClock
from kojo import states
from kojo.processes.job_process import PREFETCH_HOLD, VOUCH_INTERVAL, WATCH_INTERVAL, BatchKeeper


class FakeBackend:
    def __init__(self) -> None:
        self.completed: list[list[dict[str, Any]]] = []
        self.unclaimed: list[int] = []
        self.vouch_checks = 0
        self.dead = False
        self.down = False

    def retrying(self, fn: Any) -> Any:
        if self.down:
            raise ConnectionError("database away")
        return fn()

    def job_complete_many(self, rows: list[dict[str, Any]], owner: int, now: Any) -> None:
        self.completed.append(rows)

    def job_transition(self, job_id: int, transition: Any, **_: Any) -> None:
        assert transition == states.UNCLAIM
        self.unclaimed.append(job_id)

    def owner_is_dead(self, owner_id: int) -> bool:
        self.vouch_checks += 1
        return self.dead

    def is_unavailable(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)


class FakeOwner:
    def __init__(self, can_be_lost: bool = False) -> None:
        self.id = 7
        self.can_be_lost = can_be_lost
        self.notes: list[Any] = []
        self.looks = 0
        self.lost = False

    def wait(self, timeout: float) -> list[Any]:
        self.looks += 1
        notes, self.notes = self.notes, []
        return notes

    def is_lost(self) -> bool:
        return self.lost


def rows(*ids: int) -> list[dict[str, Any]]:
    return [{"kojo_job_id": i} for i in ids]


def keeper(clock: FakeClock, anchor: bool = False) -> tuple[BatchKeeper, FakeBackend, FakeOwner]:
    backend, owner = FakeBackend(), FakeOwner(anchor)
    return BatchKeeper(backend, owner, clock, thread=False), backend, owner  # type: ignore[arg-type]


def test_nothing_to_do_while_no_job_runs() -> None:
    kept, backend, _ = keeper(FakeClock())
    kept.hand(rows(2, 3))
    assert kept.tick() is None
    assert backend.unclaimed == []


def test_a_slow_job_hands_back_the_rest_of_the_batch_after_the_hold() -> None:
    clock = FakeClock()
    kept, backend, _ = keeper(clock)
    kept.hand(rows(1, 2, 3))
    assert kept.next() == {"kojo_job_id": 1}
    kept.started()
    kept.finished({"kojo_job_id": 1})  # completed, to be written with the next claim
    assert kept.next() == {"kojo_job_id": 2}
    kept.started()  # and job 2 is slow
    assert kept.tick() == pytest.approx(PREFETCH_HOLD)
    clock.advance(PREFETCH_HOLD / 2)
    assert kept.tick() == pytest.approx(PREFETCH_HOLD / 2)
    clock.seconds = 1000.0 + PREFETCH_HOLD
    assert kept.tick() == 0.0
    assert backend.unclaimed == [3]
    assert backend.completed == [rows(1)]
    assert kept.next() is None
    assert kept.tick() == math.inf  # nothing pending, no anchor to watch


def test_a_quick_job_keeps_its_batch() -> None:
    clock = FakeClock()
    kept, backend, _ = keeper(clock)
    kept.hand(rows(2, 3))
    assert kept.next() == {"kojo_job_id": 2}
    kept.started()
    clock.advance(PREFETCH_HOLD / 2)
    kept.finished(None)
    clock.advance(PREFETCH_HOLD)
    assert kept.tick() is None
    assert backend.unclaimed == [] and kept.next() == {"kojo_job_id": 3}


def test_what_cannot_be_written_is_kept() -> None:
    clock = FakeClock()
    kept, backend, _ = keeper(clock)
    kept.hand(rows(2))
    kept.finished({"kojo_job_id": 1})
    kept.started()
    backend.down = True
    clock.advance(PREFETCH_HOLD)
    assert kept.tick() == 0.0  # logged as an outage, not raised
    assert kept.take_completed() == rows(1)
    assert kept.next() == {"kojo_job_id": 2}


def test_the_anchor_is_watched_and_the_database_asked_while_a_job_runs() -> None:
    clock = FakeClock()
    kept, backend, owner = keeper(clock, anchor=True)
    kept.started()
    assert kept.tick() == 0.0  # both due at the start
    assert (owner.looks, backend.vouch_checks) == (1, 1)
    assert kept.tick() == pytest.approx(WATCH_INTERVAL)
    clock.advance(WATCH_INTERVAL)
    owner.notes = [SimpleNamespace(topic="jobs", data="")]
    assert kept.tick() == 0.0
    assert (owner.looks, backend.vouch_checks) == (2, 1)
    assert kept.take_woken() and not kept.take_woken()
    clock.advance(VOUCH_INTERVAL)
    kept.tick()
    assert backend.vouch_checks == 2


@pytest.mark.parametrize("how", ["session ended", "not vouched"])
def test_a_process_the_database_no_longer_vouches_for_dies(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    kept, backend, owner = keeper(clock, anchor=True)
    deaths: list[str] = []
    monkeypatch.setattr(kept, "_die", deaths.append)
    if how == "session ended":
        owner.lost = True
    else:
        backend.dead = True
    kept.started()
    kept.tick()
    expected = "its database session ended" if how == "session ended" else "was lost"
    assert len(deaths) >= 1 and expected in deaths[0]
