"""Publish/subscribe (kojo.ipc) on both backends: delivery, order, limits, reconnects."""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import kojo
from kojo import InvalidArgument, InvalidPayload
from kojo.cli import main
from kojo.clock import utcnow
from kojo.ipc import MAX_MESSAGE_BYTES, Subscription

WAIT = 20.0  # generous upper bound for anything that should happen "at once"

PUBLISHER = """
import sys, kojo
url, channel, name, count = sys.argv[1:5]
app = kojo.App(database=url)
for n in range(int(count)):
    app.publish(channel, {"publisher": name, "n": n})
"""


@pytest.fixture
def app(database_url: str) -> kojo.App:
    app = kojo.App(database=database_url)
    app.install()
    return app


def take(sub: Subscription, count: int, timeout: float = WAIT) -> list[Any]:
    """The next `count` messages; fewer if `timeout` passes without one."""
    got: list[Any] = []
    for message in sub.messages(timeout=timeout):
        got.append(message)
        if len(got) == count:
            break
    return got


def check_per_publisher_order(messages: list[Any], publishers: dict[str, int]) -> None:
    """Every publisher's messages, all of them, each exactly once, in the order sent."""
    for name, count in publishers.items():
        assert [m["n"] for m in messages if m["publisher"] == name] == list(range(count)), name
    assert len(messages) == sum(publishers.values())


@pytest.fixture
def listener(database_url: str) -> Iterator[Any]:
    """Start `kojo listen` in another process; returns once it is subscribed."""
    started: list[subprocess.Popen[str]] = []

    def start(channel: str, count: int) -> subprocess.Popen[str]:
        args = ["listen", channel, "--count", str(count), "--timeout", str(WAIT)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "kojo", *args, "--database", database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("listening on"), line + proc.stderr.read()
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# -- delivery and order ---------------------------------------------------------------------


def test_every_subscriber_gets_every_message_of_its_channel_in_order(app: kojo.App) -> None:
    with app.subscribe("reports") as a, app.subscribe("reports") as b, app.subscribe("other") as c:
        for n in range(20):
            app.publish("reports", {"n": n})
            if n % 5 == 0:
                app.publish("other", n)
        assert take(a, 20) == [{"n": n} for n in range(20)]
        assert take(b, 20) == [{"n": n} for n in range(20)]
        assert take(c, 4) == [0, 5, 10, 15]
        assert take(a, 1, timeout=0) == []


def test_subscribers_in_other_processes_get_concurrent_publishers_in_order(
    app: kojo.App, database_url: str, listener: Any
) -> None:
    publishers = {"p1": 40, "p2": 40}
    total = sum(publishers.values())
    remote = [listener("fanout", total), listener("fanout", total)]
    with app.subscribe("fanout") as local:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PUBLISHER, database_url, "fanout", name, str(count)]
            )
            for name, count in publishers.items()
        ]
        for proc in procs:
            assert proc.wait(timeout=60) == 0
        check_per_publisher_order(take(local, total), publishers)
    for proc in remote:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        check_per_publisher_order([json.loads(line) for line in out.splitlines()], publishers)


def test_concurrent_publisher_threads_keep_their_own_order(app: kojo.App) -> None:
    publishers = {f"t{i}": 30 for i in range(3)}

    def publish(name: str, count: int) -> None:
        for n in range(count):
            app.publish("threads", {"publisher": name, "n": n})

    with app.subscribe("threads") as a, app.subscribe("threads") as b:
        threads = [threading.Thread(target=publish, args=item) for item in publishers.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        check_per_publisher_order(take(a, 90), publishers)
        check_per_publisher_order(take(b, 90), publishers)


def test_a_subscriber_gets_only_what_is_published_after_it_subscribed(app: kojo.App) -> None:
    app.publish("late", "before")
    with app.subscribe("late") as sub:
        app.publish("late", "after")
        assert take(sub, 2, timeout=0.5) == ["after"]


def test_small_and_large_messages_keep_their_order(app: kojo.App) -> None:
    # On PostgreSQL small messages travel inside NOTIFY and large ones are read
    # from the table: the order must not depend on the path.
    sizes = [10, 20_000, 30, MAX_MESSAGE_BYTES - 2, 7_950, 5]
    messages = ["x" * size for size in sizes]
    with app.subscribe("sizes") as sub:
        for message in messages:
            app.publish("sizes", message)
        assert [len(m) for m in take(sub, len(sizes))] == sizes


def test_messages_arrive_exactly_as_sent(app: kojo.App) -> None:
    values: list[Any] = [
        None,
        True,
        0,
        -(2**62),
        1.5,
        "",
        "é \u0000 \U0001f600",
        [1, [2, {"x": None}]],
        {"b": 1, "a": 2},
    ]
    with app.subscribe("exact") as sub:
        for value in values:
            app.publish("exact", value)
        got = take(sub, len(values))
    assert got == values
    assert list(got[-1]) == ["b", "a"]  # key order kept


def test_publish_in_a_transaction_is_sent_at_commit_and_dropped_on_rollback(
    app: kojo.App,
) -> None:
    with app.subscribe("tx") as sub:
        with pytest.raises(RuntimeError), app.backend.write():
            app.publish("tx", "rolled back")
            raise RuntimeError("abort")
        with app.backend.write():
            app.publish("tx", "committed")
        assert take(sub, 2, timeout=0.5) == ["committed"]


# -- iteration and closing ----------------------------------------------------------------


def test_timeout_ends_iteration(app: kojo.App) -> None:
    with app.subscribe("quiet") as sub:
        assert list(sub.messages(timeout=0.2)) == []
        assert list(sub.messages(timeout=0)) == []
        app.publish("quiet", 1)
        assert list(sub.messages(timeout=0.2)) == [1]


def test_close_from_another_thread_ends_a_waiting_iteration(app: kojo.App) -> None:
    sub = app.subscribe("closing")
    done = threading.Event()

    def consume() -> None:
        list(sub.messages(timeout=None))
        done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    sub.close()
    assert done.wait(WAIT)
    thread.join()
    assert sub.closed
    assert list(sub.messages(timeout=None)) == []  # closed: nothing, at once


def test_a_subscriber_is_a_registered_process_until_closed(app: kojo.App) -> None:
    with app.subscribe("registered"):
        rows = [p for p in app.backend.processes() if p.kind == "subscriber"]
        assert [r.info for r in rows] == [{"channel": "registered"}]
    assert [p for p in app.backend.processes() if p.kind == "subscriber"] == []


def test_a_lost_wake_up_costs_latency_not_the_message(sqlite_url: str) -> None:
    # A row committed without its doorbell datagram (as when a doorbell queue is full)
    # is found by the subscriber's safety poll.
    app = kojo.App(database=sqlite_url)
    app.install()
    with app.subscribe("quiet bell") as sub:
        row = {"channel": "quiet bell", "payload": '"unrung"', "kojo_process_id": None}
        with app.backend.write():
            # SQLite's message_publish statement only inserts: the driver rings after it.
            app.backend.execute("message_publish", {**row, "now": utcnow()})
        assert take(sub, 1) == ["unrung"]


def test_a_forked_child_cannot_use_its_parents_subscription(app: kojo.App) -> None:
    with app.subscribe("family") as sub:
        pid = os.fork()
        if pid == 0:  # the child: refuses, and must leave the parent's registration alone
            try:
                sub.messages(timeout=0).__next__()
            except kojo.KojoError as exc:
                os._exit(0 if "subscribe again after fork" in str(exc) else 1)
            except BaseException:
                os._exit(2)
            os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        app.publish("family", "still here")
        assert take(sub, 1) == ["still here"]


# -- refused input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message", [object(), {1.5, 2}, float("nan"), float("inf"), {"k": b"bytes"}]
)
def test_non_json_messages_are_refused(app: kojo.App, message: Any) -> None:
    with app.subscribe("bad") as sub:
        with pytest.raises(InvalidPayload, match="not JSON-serialisable"):
            app.publish("bad", message)
        app.publish("bad", "fine")
        assert take(sub, 2, timeout=0.5) == ["fine"]


def test_oversized_messages_are_refused(app: kojo.App) -> None:
    too_big = "x" * (MAX_MESSAGE_BYTES - 1)  # with its quotes, one byte over
    with pytest.raises(InvalidPayload, match=rf"too large: {MAX_MESSAGE_BYTES + 1} bytes"):
        app.publish("big", too_big)
    with pytest.raises(InvalidPayload, match="too large"):
        app.publish("big", "é" * (MAX_MESSAGE_BYTES // 2))  # counted in UTF-8 bytes
    assert app.backend.fetchone("message_last_id", {"channel": "big"}) == {"last_id": None}


@pytest.mark.parametrize(
    "channel", ["", "x" * 256, "a\nb", "tab\there", "nul\x00", 7, None, b"bytes"]
)
def test_bad_channel_names_are_refused(app: kojo.App, channel: Any) -> None:
    with pytest.raises(InvalidArgument, match="channel"):
        app.publish(channel, 1)
    with pytest.raises(InvalidArgument, match="channel"):
        app.subscribe(channel)


def test_odd_but_valid_channel_names_are_data(app: kojo.App) -> None:
    for channel in ["x" * 255, "'; DROP TABLE kojo_job; --", "über kanal", "a b"]:
        with app.subscribe(channel) as sub:
            app.publish(channel, channel)
            assert take(sub, 1) == [channel]


def test_bad_timeouts_are_refused(app: kojo.App) -> None:
    with app.subscribe("t") as sub:
        for timeout in (-1, "5", float("nan"), True):
            with pytest.raises(InvalidArgument, match="timeout"):
                sub.messages(timeout=timeout)  # type: ignore[arg-type]


# -- surviving a lost connection (PostgreSQL) ---------------------------------------------


def test_a_subscriber_survives_pg_terminate_backend(postgres_url: str) -> None:
    app = kojo.App(database=postgres_url)
    app.install()
    publisher_pid = app.backend.connection().info.backend_pid
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("kojo.ipc")
    logger.addHandler(handler)
    received: queue.Queue[Any] = queue.Queue()
    sub = app.subscribe("survivor")

    def consume() -> None:
        for message in sub.messages(timeout=None):
            received.put(message)

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        app.publish("survivor", 1)
        assert received.get(timeout=WAIT) == 1
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid NOT IN (%s, pg_backend_pid())",
                (publisher_pid,),
            ).fetchall()
        assert killed  # the subscriber's own connections
        app.publish("survivor", 2)  # lands during the outage or after: never lost
        assert received.get(timeout=WAIT) == 2
        app.publish("survivor", 3)
        assert received.get(timeout=WAIT) == 3
        assert thread.is_alive()
        assert any("may have been missed" in r.getMessage() for r in records)
    finally:
        sub.close()
        thread.join(WAIT)
        logger.removeHandler(handler)
    assert received.empty()  # nothing delivered twice


def test_a_subscriber_recovers_what_was_published_while_it_was_cut_off(
    postgres_url: str,
) -> None:
    app = kojo.App(database=postgres_url)
    app.install()
    publisher_pid = app.backend.connection().info.backend_pid
    with app.subscribe("gap") as sub:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid NOT IN (%s, pg_backend_pid())",
                (publisher_pid,),
            )
        for n in range(5):
            app.publish("gap", n)
        assert take(sub, 5) == [0, 1, 2, 3, 4]
        app.publish("gap", 5)
        assert take(sub, 2, timeout=0.5) == [5]


# -- command line ---------------------------------------------------------------------------


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_kojo_publish_and_listen(
    app: kojo.App, database_url: str, listener: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = listener("shell", 2)
    code, out, _ = run_cli(["publish", "shell", '{"a": 1}', "--database", database_url], capsys)
    assert code == 0 and out.strip().isdigit()
    code, out, _ = run_cli(
        ["publish", "shell", '"é"', "--json", "--database", database_url], capsys
    )
    assert code == 0 and set(json.loads(out)) == {"id"}
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [{"a": 1}, "é"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["publish", "c", "{not json"], "is not JSON"),
        (["publish", "", "1"], "channel"),
        (["publish", "c", json.dumps("x" * MAX_MESSAGE_BYTES)], "too large"),
        (["listen", "c", "--timeout", "-1"], "timeout"),
    ],
)
def test_kojo_publish_refuses_bad_arguments_with_one_line(
    app: kojo.App,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
) -> None:
    code, out, err = run_cli([*args, "--database", database_url], capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_kojo_listen_ends_after_its_timeout(
    app: kojo.App, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        ["listen", "nothing", "--timeout", "0.1", "--database", database_url], capsys
    )
    assert (code, out) == (0, "")
    assert "listening on 'nothing'" in err
