"""The dashboard's snapshot of the job counts (kojo/dashboard/snapshot.py), over a count
function that says how often it ran: no database, no web."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from kojo.clock import utcnow
from kojo.dashboard.snapshot import Counted, CountSnapshot
from kojo.errors import KojoError

Row = dict[str, object]


class Counter:
    """A count function: the n-th call returns one row counting n; `fail` raises once."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.lock = threading.Lock()

    def __call__(self) -> list[Row]:
        with self.lock:
            if self.fail:
                self.fail = False
                raise KojoError("database away")
            self.calls += 1
            return [{"type_code": "t", "assigned_state": "waiting", "count": self.calls}]


def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for what a background thread does; fail naming it after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def count_of(counted: Counted) -> object:
    return counted.rows[0]["count"]


def test_the_first_read_counts_and_later_reads_serve_that_count() -> None:
    counter = Counter()
    snapshot = CountSnapshot(counter, interval=3600)  # no refresh within the test
    first = snapshot.read()
    assert count_of(first) == 1 and counter.calls == 1
    assert snapshot.read() is first and counter.calls == 1
    snapshot.close()


def test_the_refresher_counts_again_while_read_then_stops_when_nobody_reads() -> None:
    counter = Counter()
    snapshot = CountSnapshot(counter, interval=0.01, linger=0.2)
    snapshot.read()
    assert snapshot.refreshing
    until(lambda: count_of(snapshot.read()) > 1, "a refreshed count")
    until(lambda: not snapshot.refreshing, "the refresher to stop, nobody reading")
    stopped_at = counter.calls
    time.sleep(0.1)  # ten intervals: an idle snapshot does not count
    assert counter.calls == stopped_at
    assert count_of(snapshot.read()) == stopped_at  # the last count, and counting again
    assert snapshot.refreshing
    until(lambda: counter.calls > stopped_at, "a count after reading again")
    snapshot.close()
    until(lambda: not snapshot.refreshing, "the refresher to stop once closed")


def test_a_failed_count_keeps_the_last_one_and_the_refresher_goes_on() -> None:
    counter = Counter()
    snapshot = CountSnapshot(counter, interval=0.01, linger=60)
    snapshot.read()
    counter.fail = True
    until(lambda: not counter.fail and counter.calls > 1, "a count after the failure")
    assert snapshot.refreshing and count_of(snapshot.read()) >= 1
    snapshot.close()


def test_forget_makes_the_next_read_count() -> None:
    counter = Counter()
    snapshot = CountSnapshot(counter, interval=3600)
    snapshot.read()
    snapshot.forget()
    assert count_of(snapshot.read()) == 2 and counter.calls == 2
    snapshot.close()


def test_a_count_that_began_earlier_but_ended_last_does_not_replace_a_newer_one() -> None:
    begun: list[int] = []

    def count() -> list[Row]:
        begun.append(len(begun) + 1)
        mine = begun[-1]
        if mine == 1:
            snapshot.refresh()  # a second count begins and ends while this one runs
        return [{"count": mine}]

    snapshot = CountSnapshot(count, interval=3600)
    assert count_of(snapshot.refresh()) == 2
    assert count_of(snapshot.read()) == 2 and begun == [1, 2]
    snapshot.close()


def test_a_count_begun_before_forget_is_not_kept() -> None:
    begun: list[int] = []

    def count() -> list[Row]:
        begun.append(len(begun) + 1)
        if len(begun) == 2:
            snapshot.forget()  # an action changes the jobs while this count runs
        return [{"count": len(begun)}]

    snapshot = CountSnapshot(count, interval=3600)
    snapshot.read()
    snapshot.refresh()  # the count that began before the action: not kept
    assert count_of(snapshot.read()) == 3 and len(begun) == 3
    snapshot.close()


def test_the_age_is_whole_seconds_since_the_count_never_negative() -> None:
    now = utcnow()
    assert Counted([], now - timedelta(seconds=3.7)).age_seconds(now) == 3
    assert Counted([], now + timedelta(seconds=2)).age_seconds(now) == 0


def test_a_bad_interval_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"interval must be > 0.*got 0"):
        CountSnapshot(Counter(), interval=0)
