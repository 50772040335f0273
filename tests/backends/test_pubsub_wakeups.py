"""PostgreSQL pub/sub wake-ups are hints: a role that can only connect (LISTEN and
NOTIFY on kojo's channel) neither reads messages nor makes a subscriber deliver
anything that was not published (docs/security.md)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

import kojo
from kojo.backends.base import NOTIFY_CHANNEL
from kojo.ipc import Subscription

WAIT = 20.0


@pytest.fixture
def app(postgres_url: str) -> kojo.App:
    app = kojo.App(database=postgres_url)
    app.install()
    return app


def take(sub: Subscription, count: int, timeout: float = WAIT) -> list[Any]:
    got: list[Any] = []
    for message in sub.messages(timeout=timeout):
        got.append(message)
        if len(got) == count:
            break
    return got


def forge(url: str, *notes: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for note in notes:
            conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, note))


def test_a_plain_listener_sees_no_message_text(app: kojo.App, postgres_url: str) -> None:
    secret = "s3cr3t-payroll-figure"
    with psycopg.connect(postgres_url, autocommit=True) as spy:
        spy.execute(f"LISTEN {NOTIFY_CHANNEL}")
        message_id = kojo.ipc.publish(app.backend, "payroll", {"note": secret})
        seen = [note.payload for note in spy.notifies(timeout=2.0, stop_after=1)]
    assert seen, "the publish sent no wake-up at all"
    assert all(secret not in payload for payload in seen)
    data = json.loads(json.loads(seen[0])[1])
    assert data == {"id": message_id, "channel": "payroll"}


def test_a_forged_inline_message_is_not_delivered(app: kojo.App, postgres_url: str) -> None:
    with app.subscribe("orders") as sub:
        forged = json.dumps({"id": 2**40, "channel": "orders", "message": "forged"})
        forge(postgres_url, json.dumps(["message", forged]))
        app.publish("orders", "real")
        assert take(sub, 2, timeout=1.0) == ["real"]


def test_a_forged_repeat_or_bad_id_delivers_nothing(app: kojo.App, postgres_url: str) -> None:
    with app.subscribe("orders") as sub:
        app.publish("orders", "first")
        assert take(sub, 1) == ["first"]
        last = kojo.ipc.last_message_id(app.backend, "orders")
        other = kojo.ipc.publish(app.backend, "elsewhere", "not for orders")
        notes = [
            {"id": last, "channel": "orders"},  # delivered already
            {"id": other, "channel": "orders"},  # another channel's message
            {"id": True, "channel": "orders"},
            {"id": 2**70, "channel": "orders"},
            {"id": "1", "channel": "orders"},
        ]
        forge(postgres_url, *(json.dumps(["message", json.dumps(n)]) for n in notes))
        app.publish("orders", "second")
        assert take(sub, 2, timeout=1.0) == ["second"]


def test_messages_arrive_in_commit_order_not_id_order(app: kojo.App, postgres_url: str) -> None:
    other = kojo.App(database=postgres_url)
    with app.subscribe("order") as sub:
        with app.backend.write():
            early_id = kojo.ipc.publish(app.backend, "order", "committed second")
            late_id = kojo.ipc.publish(other.backend, "order", "committed first")
        assert early_id < late_id
        assert take(sub, 2) == ["committed first", "committed second"]
