"""MySQL's polled wake-ups (backends/mysql_wakeups.py): a wake-up committed after one
with a higher id still arrives (its id was a gap the poller waited for), and a poll with
no gap to wait for reads only the rows it has not seen, lock rings included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from foundation_helpers import process_info
from kojo.backends import open_backend
from kojo.backends.base import Backend
from kojo.backends.mysql_bells import RING_TOPIC
from kojo.backends.mysql_wakeups import MysqlOwner

WAIT = 5.0


@pytest.fixture
def backend(mysql_url: str) -> Iterator[Backend]:
    backend = open_backend(mysql_url)
    backend.install()
    try:
        yield backend
    finally:
        backend.close()


def received(owner: Any, wanted: set[str]) -> set[str]:
    """The data of the wake-ups `owner` gets, until all of `wanted` came or WAIT passed."""
    got: set[str] = set()
    for _ in range(50):
        got |= {note.data for note in owner.wait(WAIT / 50)}
        if wanted <= got:
            break
    return got


def rows_polled(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, the number of rows each poll of `backend`'s pollers reads."""
    read: list[int] = []
    fetch = backend.fetchall_on

    def counted(conn: Any, name: str, params: Any) -> Any:
        rows = fetch(conn, name, params)
        if name == "wakeup_since":
            read.append(len(rows))
        return rows

    monkeypatch.setattr(backend, "fetchall_on", counted)
    return read


def test_a_wake_up_committed_after_a_higher_id_still_arrives(backend: Backend) -> None:
    owner = backend.register_owner(process_info("waiter"))
    other = open_backend(backend.url)
    try:
        with other.write():
            other.notify("test", "late")  # its id is taken now, its row seen at commit
            backend.notify("test", "early")  # a higher id, committed first
            assert received(owner, {"early"}) == {"early"}
        assert received(owner, {"late"}) == {"late"}
    finally:
        other.close()
        owner.close()


def test_without_a_gap_a_poll_reads_only_new_rows(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = backend.register_owner(process_info("waiter"))
    assert isinstance(owner, MysqlOwner)
    try:
        for n in range(20):
            backend.notify("test", str(n))
        assert received(owner, {str(n) for n in range(20)}) == {str(n) for n in range(20)}
        read = rows_polled(backend, monkeypatch)
        backend.notify("test", "next")
        assert received(owner, {"next"}) == {"next"}
        assert sum(read) == 1, read  # the new row only, not the twenty before it
        assert owner.wait(0.2) == []
    finally:
        owner.close()


def test_rings_for_other_processes_are_read_once_and_hide_nothing_after_them(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy lock rings other processes' waiters all the time. Their rows must move the
    # poller's mark on like any other: left below it, each poll read them all again, and
    # past a thousand (a poll's LIMIT) no wake-up or ring after them arrived at all.
    owner = backend.register_owner(process_info("waiter"))
    assert isinstance(owner, MysqlOwner)
    try:
        for start in range(0, 1100, 100):
            with backend.write():
                for n in range(start, start + 100):
                    backend.execute("wakeup_add", {"topic": RING_TOPIC, "data": f"bell{n}"})
        backend.notify("test", "after the rings")
        assert received(owner, {"after the rings"}) == {"after the rings"}
        read = rows_polled(backend, monkeypatch)
        backend.notify("test", "next")
        assert received(owner, {"next"}) == {"next"}
        assert sum(read) == 1, read  # the new row only, not the rings before it
    finally:
        owner.close()
