"""Registering job types, dynamic scheduling and operator actions, on both backends."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import kojo
from foundation_helpers import T0, claim, make_app, noop, owner_of, scalar, update_job
from kojo import states
from kojo.clock import utcnow
from kojo.control import Command, CommandFeed
from kojo.job_types import define

EVERY_FIELD: dict[str, Any] = {
    "name": "Send the digest",
    "cron_expression": "*/5 * * * *",
    "can_work_in_parallel": False,
    "default_importance": 10,
    "schedule_limit": 1,
    "schedule_limit_allowance": 2,
    "is_enabled": False,
    "auto_complete_success": False,
    "auto_delete_interval_duration": "PT60S",
    "max_retries": 3,
    "max_crashes": 7,
    "timeout": 12.5,
}


def job_count(app: kojo.App) -> int:
    return int(scalar(app.backend, "SELECT count(*) FROM kojo_job"))


# -- job types ---------------------------------------------------------------------------


def test_register_persists_every_field(database_url: str) -> None:
    app = make_app(database_url, send_digest=EVERY_FIELD)
    row = app.type_row("send_digest", max_age=0)
    for key, value in EVERY_FIELD.items():
        assert row[key] == value, key
    assert row["type_code"] == "send_digest"
    assert row["worker_uri"] == f"{noop.__module__}:noop"


def test_register_defaults(database_url: str) -> None:
    app = make_app(database_url, plain={})
    row = app.type_row("plain", max_age=0)
    assert row["name"] == "plain"
    assert row["cron_expression"] is None
    assert row["can_work_in_parallel"] is True
    assert row["default_importance"] == 0
    assert row["schedule_limit"] == row["schedule_limit_allowance"] == 0
    assert row["is_enabled"] is True
    assert row["auto_complete_success"] is True
    assert row["auto_delete_interval_duration"] == "P1D"
    assert row["max_retries"] == 0
    assert row["max_crashes"] == 5
    assert row["timeout"] is None


def test_register_again_updates(database_url: str) -> None:
    app = make_app(database_url, t={"default_importance": 1, "cron_expression": "@hourly"})
    backend = app.backend
    changed = {k: v for k, v in EVERY_FIELD.items() if k != "is_enabled"}
    backend.type_register(define("t", noop, **changed))
    row = app.type_row("t", max_age=0)
    for key, value in changed.items():
        assert row[key] == value, key
    backend.type_register(define("t", noop))  # and back to the defaults
    row = app.type_row("t", max_age=0)
    assert row["cron_expression"] is None
    assert row["timeout"] is None
    assert row["name"] == "t"
    assert len(backend.type_list()) == 1


def test_register_again_keeps_an_operators_disable(database_url: str) -> None:
    # Re-registering at every deploy must not undo `kojo types disable`.
    app = make_app(database_url, t={})
    app.set_type_enabled("t", False)
    app.backend.type_register(define("t", noop, default_importance=2))
    row = app.type_row("t", max_age=0)
    assert (row["is_enabled"], row["default_importance"]) == (False, 2)
    app.set_type_enabled("t", True)
    assert app.type_row("t", max_age=0)["is_enabled"] is True


def writes_of(app: kojo.App) -> list[int]:
    """Counts the write transactions `app`'s backend opens from now on (one item each)."""
    opened: list[int] = []
    write = app.backend.write

    def counted() -> Any:
        if not app.backend.in_transaction():  # a nested write joins the outer one
            opened.append(1)
        return write()

    app.backend.write = counted  # type: ignore[method-assign]
    return opened


def test_registering_unchanged_types_again_writes_nothing(database_url: str) -> None:
    # Every server start registers the app's types: when none changed that is one read,
    # no write transaction (nor, on PostgreSQL, a commit waiting for the disk).
    types: dict[str, dict[str, Any]] = {
        "every": EVERY_FIELD,
        "plain": {},
        "rated": {"rate_limit": "5/PT1S", "concurrency_limit": 2},
    }
    first = make_app(database_url, **types)
    first.set_type_enabled("plain", False)  # the operator's: not a change of definition
    stored = {r["type_code"]: r for r in first.backend.type_list()}

    def restarted(**changes: Any) -> kojo.App:
        app = kojo.App(database=database_url)
        for code, fields in types.items():
            app.job_type(code, **{**fields, **changes.get(code, {})})(noop)
        return app

    again = restarted()
    writes = writes_of(again)
    assert again.register_job_types() == ["every", "plain", "rated"]
    assert writes == []
    assert {r["type_code"]: r for r in again.backend.type_list()} == stored
    assert again.register_job_types(["rated"]) == ["rated"]  # one type: read alone
    assert writes == []

    changed = restarted(rated={"max_retries": 4})
    writes = writes_of(changed)
    changed.register_job_types()
    assert len(writes) == 1
    rows = {r["type_code"]: r for r in changed.backend.type_list()}
    assert rows["rated"]["max_retries"] == 4
    assert rows["rated"]["updated_at_date_time"] > stored["rated"]["updated_at_date_time"]
    assert rows["every"] == stored["every"] and rows["plain"] == stored["plain"]
    assert rows["plain"]["is_enabled"] is False


def test_several_types_in_one_run(database_url: str) -> None:
    app = make_app(database_url, a={}, b={"cron_expression": "@daily"}, c={"schedule_limit": 2})
    assert [r["type_code"] for r in app.backend.type_list()] == ["a", "b", "c"]


def test_enable_disable_pause_unknown_type(database_url: str) -> None:
    app = make_app(database_url)
    with pytest.raises(kojo.UnknownJobType, match="'ghost'"):
        app.set_type_enabled("ghost", False)
    with pytest.raises(kojo.UnknownJobType, match="'ghost'"):
        app.set_type_paused("ghost", True)


# -- dynamic scheduling ----------------------------------------------------------------


def test_schedule_makes_a_waiting_job(database_url: str) -> None:
    app = make_app(database_url, q={"default_importance": 6, "name": "Queue"})
    before = utcnow()
    job_id = app.schedule("q", payload={"user": 7, "tags": ["a", "b"]})
    after = utcnow()
    row = app.job(job_id)
    assert (row["assigned_state"], row["next_state_request"]) == ("waiting", "working")
    assert row["previous_state"] == "new"
    for counter in ("times_worked", "times_retried", "times_held", "times_crashed"):
        assert row[counter] == 0, counter
    assert row["times_panicked"] == 0
    assert row["priority"] == row["importance"] == 6
    assert row["type_code"] == "q"
    assert row["name"] == "Queue"
    assert row["worker_uri"] == f"{noop.__module__}:noop"
    assert row["can_work_in_parallel"] is True
    assert before <= row["work_at_date_time"] <= after
    assert before <= row["created_at_date_time"] <= after
    assert row["last_transition_date_time"] == row["created_at_date_time"]
    assert row["completed_at_date_time"] is None
    assert row["delete_after_date_time"] is None
    assert row["payload"] == {"user": 7, "tags": ["a", "b"]}
    assert row["work_at_date_time"].tzinfo is not None


def test_schedule_copies_the_serial_flag(database_url: str) -> None:
    app = make_app(database_url, s={"can_work_in_parallel": False})
    assert app.job(app.schedule("s"))["can_work_in_parallel"] is False


def test_explicit_importance_overrides_the_default(database_url: str) -> None:
    app = make_app(database_url, q={"default_importance": 6})
    for importance in (12, 0, -2):
        row = app.job(app.schedule("q", importance=importance))
        assert row["priority"] == row["importance"] == importance


@pytest.mark.parametrize("importance", ["high", 1.5, True])
def test_bad_importance_is_refused(database_url: str, importance: Any) -> None:
    app = make_app(database_url, q={})
    with pytest.raises(kojo.InvalidArgument, match=repr(importance)):
        app.schedule("q", importance=importance)
    assert job_count(app) == 0


def test_schedule_limit_types_wait_for_the_check(database_url: str) -> None:
    app = make_app(database_url, limited={"schedule_limit": 1})
    row = app.job(app.schedule("limited"))
    assert (row["assigned_state"], row["next_state_request"]) == ("waiting", "schedule_limit_check")
    assert row["previous_state"] == "new"


@pytest.mark.parametrize("payload", [None, 0, "text", [1, 2], {"a": {"b": None}}, True, 1.5])
def test_payloads_round_trip(database_url: str, payload: Any) -> None:
    app = make_app(database_url, q={})
    assert app.job(app.schedule("q", payload=payload))["payload"] == payload


def test_disabled_type_is_refused_and_nothing_is_written(database_url: str) -> None:
    app = make_app(database_url, off={"is_enabled": False}, later_off={})
    with pytest.raises(kojo.JobTypeDisabled, match=r"\[off\]"):
        app.schedule("off")
    app.set_type_enabled("later_off", False)
    with pytest.raises(kojo.JobTypeDisabled, match=r"\[later_off\]"):
        app.schedule_many("later_off", [1, 2, 3])
    assert job_count(app) == 0


def test_unknown_type_is_refused_and_nothing_is_written(database_url: str) -> None:
    app = make_app(database_url, q={})
    with pytest.raises(kojo.UnknownJobType, match="'nope'"):
        app.schedule("nope")
    assert job_count(app) == 0


class NotJson:
    pass


@pytest.mark.parametrize("payload", [NotJson(), {1, 2}, math.nan, {"when": T0}, b"bytes"])
def test_non_json_payload_is_refused_and_nothing_is_written(
    database_url: str, payload: Any
) -> None:
    app = make_app(database_url, q={})
    with pytest.raises(kojo.InvalidPayload) as raised:
        app.schedule("q", payload=payload)
    assert repr(payload) in str(raised.value)
    with pytest.raises(kojo.InvalidPayload):
        app.schedule_many("q", [{"fine": 1}, payload])
    assert job_count(app) == 0


def test_schedule_many_is_one_transaction_in_order(database_url: str) -> None:
    app = make_app(database_url, q={})
    ids = app.schedule_many("q", [{"n": n} for n in range(5)])
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [app.job(i)["payload"] for i in ids] == [{"n": n} for n in range(5)]
    assert app.schedule_many("q", []) == []


def test_schedule_at(database_url: str) -> None:
    app = make_app(database_url, q={})
    aware = datetime(2031, 2, 3, 4, 5, 6, 789000, tzinfo=timezone(timedelta(hours=2)))
    assert app.job(app.schedule("q", at=aware))["work_at_date_time"] == aware
    assert app.job(app.schedule("q", at=aware))["work_at_date_time"].utcoffset() == timedelta(0)
    naive = datetime(2031, 2, 3, 4, 5, 6)  # taken as UTC
    stored = app.job(app.schedule("q", at=naive))["work_at_date_time"]
    assert stored == naive.replace(tzinfo=UTC)


@pytest.mark.parametrize("delay", [90, 90.0, timedelta(seconds=90)])
def test_schedule_delay(database_url: str, delay: Any) -> None:
    app = make_app(database_url, q={})
    before = utcnow()
    work_at = app.job(app.schedule("q", delay=delay))["work_at_date_time"]
    after = utcnow()
    assert before + timedelta(seconds=90) <= work_at <= after + timedelta(seconds=90)


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        ({"delay": -1}, "-1"),
        ({"delay": "soon"}, "'soon'"),
        ({"delay": math.nan}, "nan"),
        ({"at": "2030-01-01"}, "'2030-01-01'"),
        ({"at": T0, "delay": 5}, "not both"),
    ],
)
def test_bad_when_is_refused(database_url: str, options: dict[str, Any], bad: str) -> None:
    app = make_app(database_url, q={})
    with pytest.raises(kojo.InvalidArgument) as raised:
        app.schedule("q", **options)
    assert bad in str(raised.value)
    assert job_count(app) == 0


def test_scheduling_registers_the_apps_own_types_first(database_url: str) -> None:
    app = kojo.App(database=database_url)
    app.install()
    app.job_type("fresh", default_importance=2)(noop)
    row = app.job(app.schedule("fresh"))
    assert row["priority"] == 2
    assert app.type_row("fresh", max_age=0)["default_importance"] == 2


def test_jobs_list_filters(database_url: str) -> None:
    app = make_app(database_url, a={}, b={})
    a1, a2 = app.schedule("a"), app.schedule("a")
    b1 = app.schedule("b")
    app.hold(a2)
    # Newest first (highest id first); `before` pages back.
    assert [r["kojo_job_id"] for r in app.jobs()] == [b1, a2, a1]
    assert [r["kojo_job_id"] for r in app.jobs(type_code="a")] == [a2, a1]
    assert [r["kojo_job_id"] for r in app.jobs(state="hold")] == [a2]
    assert [r["kojo_job_id"] for r in app.jobs(type_code="b", state="hold")] == []
    assert [r["kojo_job_id"] for r in app.jobs(limit=2)] == [b1, a2]
    assert [r["kojo_job_id"] for r in app.jobs(limit=2, before=a2)] == [a1]
    assert [r["kojo_job_id"] for r in app.jobs(type_code="a", before=a1)] == []
    with pytest.raises(kojo.InvalidArgument, match="'sleeping'"):
        app.jobs(state="sleeping")


def test_job_not_found(database_url: str) -> None:
    app = make_app(database_url)
    with pytest.raises(kojo.JobNotFound, match="12345"):
        app.job(12345)


# -- operator actions ------------------------------------------------------------------------


def test_hold_and_release(database_url: str) -> None:
    app = make_app(database_url, q={})
    job_id = app.schedule("q")
    held = app.hold(job_id)
    assert (held["assigned_state"], held["next_state_request"]) == ("hold", "none")
    row = app.job(job_id)
    assert (row["assigned_state"], row["times_held"], row["previous_state"]) == (
        "hold",
        1,
        "waiting",
    )
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, 10) == []  # never selected while held
    released = app.release(job_id)
    assert (released["assigned_state"], released["next_state_request"]) == ("waiting", "working")
    assert app.job(job_id)["previous_state"] == "hold"


def test_release_a_panicked_job(database_url: str) -> None:
    app = make_app(database_url, q={})
    job_id = app.schedule("q")
    app.backend.job_transition(job_id, states.PANIC)
    row = app.release(job_id)
    assert (row["assigned_state"], row["next_state_request"]) == ("waiting", "working")
    assert app.job(job_id)["times_panicked"] == 1


def test_hold_a_working_job(database_url: str) -> None:
    app = make_app(database_url, q={})
    job_id = app.schedule("q", at=T0)
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, 1) == [job_id]
        assert app.hold(job_id)["assigned_state"] == "hold"
        assert app.job(job_id)["previous_state"] == "working"


@pytest.mark.parametrize(
    ("state", "request_"),
    [
        ("waiting", "working"),
        ("hold", "none"),
        ("panicked", "none"),
        ("crashed", "working"),
        ("waiting", "schedule_limit_check"),
    ],
)
def test_cancel(database_url: str, state: str, request_: str) -> None:
    app = make_app(database_url, q={"auto_delete_interval_duration": "PT1H"})
    job_id = app.schedule("q")
    update_job(app.backend, job_id, assigned_state=state, next_state_request=request_)
    before = utcnow()
    row = app.cancel(job_id)
    stored = app.job(job_id)
    assert stored["assigned_state"] == row["assigned_state"] == "complete_terminated"
    assert stored["next_state_request"] == "none"
    assert stored["previous_state"] == state
    assert before <= stored["completed_at_date_time"] <= utcnow()
    assert stored["delete_after_date_time"] == stored["completed_at_date_time"] + timedelta(hours=1)


def test_cancel_a_working_job_tells_its_process(database_url: str) -> None:
    # The stop is a stored command (read by the process's root), announced by a wake-up.
    app = make_app(database_url, q={})
    job_id = app.schedule("q", at=T0)
    feed = CommandFeed(app.backend)
    assert feed.look(0.0) == []  # from now on
    with owner_of(app.backend) as worker, owner_of(app.backend) as listener:
        assert claim(app.backend, worker, 1) == [job_id]
        listener.wait(0)  # forget wake-ups from the setup
        assert app.cancel(job_id)["assigned_state"] == "complete_terminated"
        for _ in range(20):  # other topics may arrive first; each wait returns when one does
            for note in listener.wait(5):
                feed.hint(note)
            if feed.pending:
                break
        # It names the process: the root finds it even once the job's row is deleted.
        assert feed.look(0.0) == [Command("cancel", job_id=job_id, process_id=worker.id)]


@pytest.mark.parametrize(
    ("action", "state", "request_"),
    [
        ("hold", "hold", "none"),
        ("hold", "panicked", "none"),
        ("hold", "crashed", "working"),
        ("hold", "complete_success", "none"),
        ("release", "waiting", "working"),
        ("release", "complete_failed", "none"),
        ("cancel", "complete_success", "none"),
        ("cancel", "complete_terminated", "none"),
    ],
)
def test_operator_actions_refuse_bad_states(
    database_url: str, action: str, state: str, request_: str
) -> None:
    app = make_app(database_url, q={})
    job_id = app.schedule("q")
    update_job(app.backend, job_id, assigned_state=state, next_state_request=request_)
    with pytest.raises(kojo.InvalidTransition) as raised:
        getattr(app, action)(job_id)
    assert str(job_id) in str(raised.value) and state in str(raised.value)
    row = app.job(job_id)
    assert (row["assigned_state"], row["next_state_request"]) == (state, request_)


@pytest.mark.parametrize("action", ["hold", "release", "cancel"])
def test_operator_actions_on_a_missing_job(database_url: str, action: str) -> None:
    app = make_app(database_url)
    with pytest.raises(kojo.JobNotFound, match="999999"):
        getattr(app, action)(999999)


def test_a_stale_transition_loses_cleanly(database_url: str) -> None:
    # Compare-and-set: a transition planned from an old view of the job is refused.
    app = make_app(database_url, q={})
    job_id = app.schedule("q")
    stale = app.backend.job_get_with_type(job_id)
    assert stale is not None
    app.hold(job_id)
    with pytest.raises(kojo.InvalidTransition, match="it is now hold/none"):
        app.backend.job_transition(job_id, states.HOLD, row=stale)
    assert app.job(job_id)["times_held"] == 1


def test_a_transition_restricted_to_another_owner_is_refused(database_url: str) -> None:
    app = make_app(database_url, q={})
    job_id = app.schedule("q", at=T0)
    with owner_of(app.backend) as owner, owner_of(app.backend) as intruder:
        assert claim(app.backend, owner, 1) == [job_id]
        with pytest.raises(kojo.InvalidTransition, match="claimed by another process"):
            app.backend.job_transition(job_id, states.COMPLETE_SUCCESS, owner=intruder.id)
        done = app.backend.job_transition(job_id, states.COMPLETE_SUCCESS, owner=owner.id)
        assert done["assigned_state"] == "complete_success"


def test_a_payload_over_the_cap_is_refused_in_one_line_and_nothing_is_stored(
    database_url: str,
) -> None:
    app = make_app(database_url, q={})
    big = "x" * (1024 * 1024)  # its JSON is two bytes longer than 1 MiB
    with pytest.raises(kojo.InvalidPayload, match="payload is too large: 1048578 bytes") as refused:
        app.schedule_many("q", [1, big])
    assert "\n" not in str(refused.value)
    assert app.jobs() == []  # the whole batch is refused before anything is written
    small = kojo.App(database=database_url, max_payload_bytes=10)
    small.job_type("q")(noop)
    assert small.schedule("q", payload="12345678") > 0  # 10 bytes with its quotes
    with pytest.raises(kojo.InvalidPayload, match="limit is 10"):
        small.schedule("q", payload="123456789")
    with pytest.raises(kojo.InvalidArgument, match="max_payload_bytes"):
        kojo.App(database=database_url, max_payload_bytes=0)


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        ({"state": []}, "unknown state []"),
        ({"state": "sleeping"}, "unknown state 'sleeping'"),
        ({"type_code": ["q"]}, "type code must be a string or None, got ['q']"),
    ],
)
def test_jobs_refuses_a_bad_filter_in_one_line(
    database_url: str, arguments: dict[str, Any], needle: str
) -> None:
    # Found by tests/acceptance/test_fuzzed_arguments.py: a list as state was a TypeError.
    app = make_app(database_url, q={})
    with pytest.raises(kojo.InvalidArgument) as refused:
        app.jobs(**arguments)
    assert needle in str(refused.value)


class _Deadlock(Exception):
    sqlstate = "40P01"  # what each dialect's deadlock error carries (driver.retrying)


def test_a_schedule_chosen_as_a_deadlock_victim_is_run_again(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database may abort a schedule as a deadlock victim (MySQL: a child scheduled
    `after` a parent that is finishing): the call owns its transaction, so it runs again
    and creates its jobs once."""
    app = make_app(database_url, q={})
    real = app.backend.job_insert_batch
    calls = []

    def once_a_victim(*args: Any, **kwargs: Any) -> list[int]:
        calls.append(1)
        if len(calls) == 1:
            real(*args, **kwargs)  # written, then rolled back with the transaction
            raise _Deadlock("deadlock detected")
        return real(*args, **kwargs)

    monkeypatch.setattr(app.backend, "job_insert_batch", once_a_victim)
    job_id = app.schedule("q")
    assert len(calls) == 2
    assert [int(j["kojo_job_id"]) for j in app.jobs(type_code="q")] == [job_id]
