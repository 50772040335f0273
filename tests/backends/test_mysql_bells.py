"""MySQL's lock bells (backends/mysql_bells.py): a ring is a wake-up row that the
process's one poller delivers, so a blocked waiter queries nothing while it waits.

Each test makes the waiters' periodic looks rare (PROBE_INTERVAL), so that a prompt
hand-off can only come from the ring."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import kojo
import kojo.locks
from foundation_helpers import process_info
from kojo.backends import mysql_wakeups
from kojo.backends.mysql import MysqlConnection

WAIT = 20.0
PROMPT = 0.2  # well under the idle poll interval, and under a look's 0.5 s


@pytest.fixture(autouse=True)
def rare_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kojo.locks, "PROBE_INTERVAL", 60.0)


@pytest.fixture
def app(mysql_url: str) -> Iterator[kojo.App]:
    app = kojo.App(database=mysql_url)
    app.install()
    yield app
    app.owner().close()


@pytest.fixture
def other(mysql_url: str, app: kojo.App) -> Iterator[kojo.App]:
    other = kojo.App(database=mysql_url)
    yield other
    other.owner().close()


def waiters(app: kojo.App, name: str) -> int:
    return sum(r["state"] == "waiting" and r["name"] == name for r in app.locks())


def wait_until(condition: Any, serve: Any = None) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        if serve is not None:
            serve(0.01)
        else:
            time.sleep(0.01)


class Waiter(threading.Thread):
    """Takes `name` on `app` and notes when it had it."""

    def __init__(self, app: kojo.App, name: str) -> None:
        super().__init__(daemon=True)
        self.app, self.name = app, name
        self.got_at: float | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            with self.app.mutex(self.name, timeout=WAIT):
                self.got_at = time.monotonic()
        except BaseException as exc:
            self.error = exc


def test_a_waiter_is_rung_promptly_after_an_idle_spell(
    app: kojo.App, other: kojo.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An idle poll far apart: a ring left for it would come seconds late.
    monkeypatch.setattr(mysql_wakeups, "IDLE_POLL_INTERVAL", 3.0)
    idle_spell = mysql_wakeups.IDLE_AFTER + 0.7  # no wake-up meanwhile: both pollers idle
    held = app.mutex("idle").acquire()
    time.sleep(idle_spell)
    # A waiter arriving at an idle poller: its poller is woken to the busy rate.
    waiter = Waiter(other, "idle")
    wait_until(lambda: waiters(app, "idle") == 1)
    released_at = time.monotonic()
    held.release()
    waiter.join(WAIT)
    assert waiter.error is None and waiter.got_at is not None
    assert waiter.got_at - released_at < PROMPT
    # A waiter waiting through an idle spell: its poller keeps the busy rate meanwhile.
    held = app.mutex("idle").acquire()
    waiter = Waiter(other, "idle")
    wait_until(lambda: waiters(app, "idle") == 1)
    time.sleep(idle_spell)
    released_at = time.monotonic()
    held.release()
    waiter.join(WAIT)
    assert waiter.error is None and waiter.got_at is not None
    assert waiter.got_at - released_at < PROMPT


def test_waiting_threads_do_not_each_query_the_database(
    app: kojo.App, other: kojo.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 20
    held = app.mutex("quiet").acquire()
    group = [Waiter(other, "quiet") for _ in range(count)]
    wait_until(lambda: waiters(app, "quiet") == count)
    time.sleep(1.0)  # registrations settled
    statements = 0
    execute = MysqlConnection.execute

    def counted(conn: MysqlConnection, sql: str, params: Any = None) -> Any:
        nonlocal statements
        statements += 1
        return execute(conn, sql, params)

    monkeypatch.setattr(MysqlConnection, "execute", counted)
    seconds = 2.0
    time.sleep(seconds)
    monkeypatch.setattr(MysqlConnection, "execute", execute)
    print(f"{statements} statements in {seconds} s with {count} waiters")
    # The waiters' App's poller (a read every URGENT_POLL_INTERVAL), the holder's (every
    # POLL_INTERVAL at most), and the looks of the waiters far back (one every
    # SAFETY_INTERVAL each: 2 a second here, 2 statements each): whatever the count of
    # waiters. Each waiter polling for its own rings made 20 statements a second: 400.
    bound = 1 / mysql_wakeups.URGENT_POLL_INTERVAL + 1 / mysql_wakeups.POLL_INTERVAL + 40
    assert statements / seconds < bound, f"{statements} statements in {seconds} s"
    released_at = time.monotonic()
    held.release()
    for waiter in group:
        waiter.join(WAIT)
        assert waiter.error is None and waiter.got_at is not None
    # Each was rung in turn: a look every 60 s would have taken minutes.
    assert max(w.got_at for w in group if w.got_at) - released_at < WAIT / 2


def test_a_vouched_processs_waiter_is_rung_through_its_server(
    app: kojo.App, mysql_url: str
) -> None:
    backend = app.backend
    anchor = backend.register_owner(process_info("server"))
    voucher = backend.vouch_for_descendants(anchor)
    assert voucher is not None

    def serve(seconds: float) -> None:
        """As the server's loop does: answer the tree's requests (a bell's registration)."""
        ready, _, _ = select.select(voucher.filenos(), [], [], seconds)
        voucher.serve(ready)

    registered: list[Any] = []
    thread = threading.Thread(
        target=lambda: registered.append(voucher.line.register(process_info("job")))
    )
    thread.start()
    wait_until(lambda: not thread.is_alive(), serve)
    child = kojo.App(database=mysql_url)
    child.use_owner(registered[0])
    try:
        for round_ in range(3):  # three waits, a thread (and a bell registered) each
            held = app.mutex("tree").acquire()
            waiter = Waiter(child, "tree")
            wait_until(lambda: waiters(app, "tree") == 1, serve)
            serve(0.1)
            released_at = time.monotonic()
            held.release()
            wait_until(lambda w=waiter: not w.is_alive(), serve)
            assert waiter.error is None
            assert waiter.got_at is not None and waiter.got_at - released_at < PROMPT, round_
    finally:
        child.use_owner(None)
        registered[0].close()
        voucher.drop_all()
        anchor.close()
