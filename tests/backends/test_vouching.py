"""One session per host (backends/vouching.py): the server's anchor holds the liveness
keys of the processes it vouches for, forwards their wake-ups, and frees a key when the
process's parent reports it reaped, when its doorbell hangs up, or with its session.
On PostgreSQL and MySQL (SQLite vouches for no one)."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import psycopg
import pytest

import kojo
from foundation_helpers import claim, make_app, process_info, scalar
from kojo.backends.base import Backend, Notification, Owner
from kojo.backends.postgres import LOCK_NAMESPACE
from kojo.backends.vouching import Voucher
from kojo.errors import DatabaseUnavailable

T = TypeVar("T")


def served(voucher: Voucher, request: Callable[[], T]) -> T:
    """`request()` in a thread while this thread serves the voucher, as the server does."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = request()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    while thread.is_alive():
        ready, _, _ = select.select(voucher.filenos(), [], [], 0.05)
        voucher.serve(ready)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def key_holder(backend: Backend, owner_id: int) -> int | None:
    """The id of the session holding `owner_id`'s liveness key, if any."""
    if backend.dialect == "mysql":
        name = backend.names.owner(owner_id)  # type: ignore[attr-defined]
        return scalar(backend, "SELECT IS_USED_LOCK(:name)", name=name)  # type: ignore[no-any-return]
    return scalar(  # type: ignore[no-any-return]
        backend,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid = :namespace AND objid = :owner_id AND objsubid = 2 "
        # Advisory keys are per database: the same owner id holds one in every test's.
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        namespace=LOCK_NAMESPACE,
        owner_id=owner_id,
    )


def session_id(anchor: Owner) -> int:
    """The id of the anchor's database session."""
    conn: Any = anchor.anchor  # type: ignore[attr-defined]
    if hasattr(conn, "raw"):  # MySQL
        return int(conn.raw.thread_id())
    return int(conn.info.backend_pid)


def end_session(backend: Backend, anchor: Owner) -> None:
    """End the anchor's session from another one, as an administrator would."""
    if backend.dialect == "mysql":
        backend.connection().execute(f"KILL {session_id(anchor)}")
    else:
        scalar(backend, "SELECT pg_terminate_backend(:pid)", pid=session_id(anchor))


@pytest.fixture(params=["postgres", "mysql"])
def app(request: pytest.FixtureRequest) -> kojo.App:
    return make_app(request.getfixturevalue(f"{request.param}_url"), work={})


@pytest.fixture
def host(app: kojo.App) -> Iterator[tuple[Backend, Owner, Voucher]]:
    backend = app.backend
    anchor = backend.register_owner(process_info("server"))
    voucher = backend.vouch_for_descendants(anchor)
    assert voucher is not None
    try:
        yield backend, anchor, voucher
    finally:
        voucher.drop_all()
        anchor.close()
        backend.close()


def test_a_vouched_process_is_alive_by_the_anchors_session_and_claims(
    app: kojo.App, host: tuple[Backend, Owner, Voucher]
) -> None:
    backend, anchor, voucher = host
    owner = served(voucher, lambda: voucher.line.register(process_info("job")))
    assert key_holder(backend, owner.id) == session_id(anchor)
    assert not backend.owner_is_dead(owner.id)
    assert not owner.is_lost()
    job_id = app.schedule("work")
    assert claim(backend, owner, 1) == [job_id]


def test_registrations_commit_without_waiting_for_the_disk(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crash that loses a registration also ends the session holding its key (the
    # process registers again), and the next claim's synchronous commit flushes it first:
    # the server's and every vouched process's registration spare a disk flush at start.
    app = make_app(postgres_url, work={})  # PostgreSQL's synchronous_commit
    settings: list[str] = []
    execute = psycopg.Connection.execute

    def spied(conn: psycopg.Connection[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        cursor = execute(conn, query, *args, **kwargs)
        if "pg_advisory_lock(" in str(query):  # the key: what its transaction commits as
            row = execute(conn, "SELECT current_setting('synchronous_commit') AS s").fetchone()
            settings.append(row["s"] if isinstance(row, dict) else row[0])
        return cursor

    backend = app.backend
    default = scalar(backend, "SELECT current_setting('synchronous_commit')")
    monkeypatch.setattr(psycopg.Connection, "execute", spied)
    anchor = backend.register_owner(process_info("server"))
    voucher = backend.vouch_for_descendants(anchor)
    assert voucher is not None
    try:
        served(voucher, lambda: voucher.line.register(process_info("job")))
        assert settings == ["off", "off"]
        # Only those transactions: the session's own setting is untouched.
        row = anchor.anchor.execute("SHOW synchronous_commit").fetchone()  # type: ignore[attr-defined]
        assert row["synchronous_commit"] == default
    finally:
        voucher.drop_all()
        anchor.close()


def test_wake_ups_reach_the_vouched_through_their_doorbell(
    host: tuple[Backend, Owner, Voucher],
) -> None:
    _, _, voucher = host
    owner = served(voucher, lambda: voucher.line.register(process_info("job")))
    voucher.forward([Notification("jobs"), Notification("control", "x")])
    assert owner.wait(1.0) == [Notification("jobs"), Notification("control", "x")]
    assert owner.wait(0.0) == []


def test_a_reported_death_frees_the_key_at_once_and_the_owner_is_reaped(
    host: tuple[Backend, Owner, Voucher],
) -> None:
    backend, _, voucher = host
    child = process_info("job")
    owner = served(voucher, lambda: voucher.line.register(child))
    served(voucher, lambda: voucher.line.release(child.process_id))
    assert backend.owner_is_dead(owner.id)
    assert backend.reap_owner(owner.id)


def test_a_hung_up_doorbell_frees_the_key(host: tuple[Backend, Owner, Voucher]) -> None:
    backend, _, voucher = host
    owner = served(voucher, lambda: voucher.line.register(process_info("job")))
    os.close(owner.fileno())  # what the kernel does to a process that died
    ready, _, _ = select.select(voucher.filenos(), [], [], 1.0)
    voucher.serve(ready)
    assert backend.owner_is_dead(owner.id)


def test_the_end_of_the_anchors_session_ends_every_vouched_process(
    host: tuple[Backend, Owner, Voucher],
) -> None:
    backend, anchor, voucher = host
    owners = [served(voucher, lambda: voucher.line.register(process_info("job"))) for _ in "ab"]
    end_session(backend, anchor)
    # The session ends a moment after pg_terminate_backend returns.
    deadline = time.monotonic() + 10
    while not all(backend.owner_is_dead(owner.id) for owner in owners):
        assert time.monotonic() < deadline, "the vouched processes outlived the anchor"
        time.sleep(0.01)
    voucher.drop_all()  # the server does this when it sees its anchor lost
    assert all(owner.is_lost() for owner in owners)
    with pytest.raises(DatabaseUnavailable):
        served(voucher, lambda: voucher.line.register(process_info("job")))


def test_a_closed_vouched_owner_is_freed_and_reaped_by_itself(
    host: tuple[Backend, Owner, Voucher],
) -> None:
    backend, _, voucher = host
    owner = served(voucher, lambda: voucher.line.register(process_info("job")))
    served(voucher, owner.close)
    assert backend.process_get(owner.id) is None


def test_a_dead_roots_tree_is_forgotten_with_it(host: tuple[Backend, Owner, Voucher]) -> None:
    backend, _, voucher = host
    root_info = process_info("root")
    root = served(voucher, lambda: voucher.line.register(root_info))
    child_info = replace(process_info("job"), process_id=-7, parent_process_id=root_info.process_id)
    child = served(voucher, lambda: voucher.line.register(child_info))
    other = served(
        voucher, lambda: voucher.line.register(replace(child_info, parent_process_id=-8))
    )
    voucher.forget_tree(root_info.process_id)
    assert backend.owner_is_dead(root.id)
    assert backend.owner_is_dead(child.id)
    assert not backend.owner_is_dead(other.id)
