"""Static cron scheduling on both backends, with an injected clock (no sleeping)."""

from __future__ import annotations

import logging
import zoneinfo
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from kojo import App, InvalidArgument, cron
from kojo import cron_scheduler as cs
from kojo.cron_scheduler import disabled_type_log_level, plan, schedule_due
from maintenance_helpers import T0, captured, cron_fires, in_processes, make_app, noop, run_sql

MIN = timedelta(minutes=1)
EVERY_MINUTE = {"cron_expression": "* * * * *"}


def minutes(start: datetime, count: int, step: timedelta = MIN) -> list[datetime]:
    return [start + i * step for i in range(count)]


# -- the window ------------------------------------------------------------------------------


def test_one_job_per_due_minute_in_the_five_minute_window(database_url: str) -> None:
    app = make_app(database_url, tick=EVERY_MINUTE)
    now = T0 + timedelta(seconds=10)

    assert schedule_due(app, now) == 6

    # [floor(now), now + 5 min]: the current minute and the next five.
    assert cron_fires(app, "tick") == minutes(T0, 6)
    for job in app.jobs(type_code="tick"):
        assert job["work_at_date_time"] == job["cron_fire_date_time"]
        assert (job["assigned_state"], job["next_state_request"]) == ("waiting", "working")
        assert job["previous_state"] == "new"
        assert job["created_at_date_time"] == now


def test_passes_extend_the_window_without_duplicates_or_gaps(database_url: str) -> None:
    app = make_app(database_url, tick=EVERY_MINUTE)
    made = sum(schedule_due(app, T0 + timedelta(seconds=s)) for s in range(0, 30 * 60, 7))

    fires = cron_fires(app, "tick")
    assert fires == minutes(T0, 35)  # 12:00 .. 12:34 (the last pass at 12:29:55)
    assert made == len(fires)


def test_an_idle_pass_writes_nothing(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(database_url, tick=EVERY_MINUTE)
    schedule_due(app, T0)
    writes = []
    real_write = app.backend.write

    def counting_write() -> Any:
        writes.append(1)
        return real_write()

    monkeypatch.setattr(app.backend, "write", counting_write)
    assert schedule_due(app, T0 + timedelta(seconds=59)) == 0
    assert writes == []  # the window did not move: one SELECT, no transaction
    assert schedule_due(app, T0 + MIN) == 1
    assert writes == [1]


def test_a_cron_job_deleted_after_running_is_not_made_again(database_url: str) -> None:
    app = make_app(database_url, tick=EVERY_MINUTE)
    schedule_due(app, T0)
    # The 12:00 job ran, completed with PT0S and was deleted, all within the minute.
    deleted = run_sql(
        app.backend, "DELETE FROM kojo_job WHERE cron_fire_date_time = :fire", fire=T0
    )
    assert deleted == 1
    # Another process (no memory of its own) passes in the same minute.
    other = App(database=database_url)
    assert schedule_due(other, T0 + timedelta(seconds=30)) == 0
    assert cron_fires(app, "tick") == minutes(T0 + MIN, 5)


def test_schedule_limited_cron_jobs_wait_for_the_gate(database_url: str) -> None:
    app = make_app(database_url, tick={"cron_expression": "* * * * *", "schedule_limit": 1})
    schedule_due(app, T0)
    pairs = {(j["assigned_state"], j["next_state_request"]) for j in app.jobs(type_code="tick")}
    assert pairs == {("waiting", "schedule_limit_check")}


def test_dynamic_types_and_other_types_are_independent(database_url: str) -> None:
    app = make_app(
        database_url,
        dynamic={},
        hourly={"cron_expression": "@hourly"},
        tick=EVERY_MINUTE,
    )
    schedule_due(app, T0 - timedelta(seconds=30))  # window 11:59 .. 12:04
    assert cron_fires(app, "hourly") == [T0]
    assert cron_fires(app, "tick") == minutes(T0 - MIN, 6)
    assert app.jobs(type_code="dynamic") == []


def test_exactly_once_is_the_unique_index_not_the_horizon(database_url: str) -> None:
    app = make_app(database_url, tick=EVERY_MINUTE)
    backend = app.backend
    params = {"type_code": "tick", "fire": T0, "now": T0}
    with backend.write():
        first = backend.fetchone("cron_job_insert", params)
        second = backend.fetchone("cron_job_insert", params)
    assert first is not None
    assert second is None  # ON CONFLICT DO NOTHING on (type_code, cron_fire_date_time)
    assert cron_fires(app, "tick") == [T0]


# -- dynamic jobs on a due minute --------------------------------------------------------------


def test_a_dynamic_job_on_a_due_minute_does_not_suppress_the_cron_job(database_url: str) -> None:
    app = make_app(database_url, tick=EVERY_MINUTE)
    dynamic_id = app.schedule("tick", at=T0 + 2 * MIN, payload={"by": "hand"})

    schedule_due(app, T0)

    jobs = app.jobs(type_code="tick")
    at_due_minute = {j["kojo_job_id"]: j for j in jobs if j["work_at_date_time"] == T0 + 2 * MIN}
    assert len(at_due_minute) == 2  # Kōjō would have made only the dynamic one
    assert at_due_minute[dynamic_id]["cron_fire_date_time"] is None
    assert cron_fires(app, "tick") == minutes(T0, 6)


# -- expressions ---------------------------------------------------------------------------------


def _day_of_fires(expression: str, day: datetime) -> list[datetime]:
    """Chain plan() over a day in 5-minute passes, as a scheduler would."""
    horizon: datetime | None = None
    made: list[datetime] = []
    for step in range(0, 24 * 12):
        now = day + step * 5 * MIN
        new, horizon = plan(expression, now, horizon, cron.normalize(expression))
        made += new
    return [m for m in made if m < day + timedelta(days=1)]


def _at(day: datetime, *hhmm: str) -> list[datetime]:
    return [day.replace(hour=int(t[:2]), minute=int(t[3:])) for t in hhmm]


FRIDAY = T0.replace(hour=0)
SATURDAY = FRIDAY + timedelta(days=1)
OFFICE = ("09:00", "09:20", "09:40", "10:00", "10:20", "10:40")
LISTED = ("00:05", "00:35", "06:05", "06:35", "12:05", "12:35", "18:05", "18:35")


@pytest.mark.parametrize(
    ("expression", "day", "expected"),
    [
        ("@hourly", FRIDAY, _at(FRIDAY, *(f"{h:02d}:00" for h in range(24)))),
        ("@daily", FRIDAY, _at(FRIDAY, "00:00")),
        ("@midnight", FRIDAY, _at(FRIDAY, "00:00")),
        ("@weekly", FRIDAY, []),  # Sundays only
        ("@monthly", FRIDAY, _at(FRIDAY, "00:00")),  # 2030-03-01
        ("@yearly", FRIDAY, []),
        ("*/20 9-10 * * mon-fri", FRIDAY, _at(FRIDAY, *OFFICE)),
        ("*/20 9-10 * * mon-fri", SATURDAY, []),
        ("5,35 */6 * * *", FRIDAY, _at(FRIDAY, *LISTED)),
        ("10-12 3 * * *", FRIDAY, _at(FRIDAY, "03:10", "03:11", "03:12")),
        ("0 12 1 jan,mar *", FRIDAY, _at(FRIDAY, "12:00")),
        ("0 12 1 feb *", FRIDAY, []),
        ("30 23 * * sat,sun", SATURDAY, _at(SATURDAY, "23:30")),
        ("0 0-23/8 * * fri", FRIDAY, _at(FRIDAY, "00:00", "08:00", "16:00")),
    ],
)  # fmt: skip
def test_expressions_fire_on_their_minutes(
    expression: str, day: datetime, expected: list[datetime]
) -> None:
    assert _day_of_fires(expression, day) == expected


def test_expressions_through_the_database(database_url: str) -> None:
    app = make_app(
        database_url,
        hourly={"cron_expression": "@hourly"},
        office={"cron_expression": "*/20 9-10 * * mon-fri"},
        listed={"cron_expression": "5,35 */6 * * *"},
    )
    for step in range(0, 13 * 12):  # 00:00 .. 12:55 in 5-minute passes
        schedule_due(app, FRIDAY + step * 5 * MIN)
    end = FRIDAY + timedelta(hours=13)
    assert [f for f in cron_fires(app, "hourly") if f < end] == _at(
        FRIDAY, *(f"{h:02d}:00" for h in range(13))
    )
    assert cron_fires(app, "office") == _at(FRIDAY, *OFFICE)
    assert cron_fires(app, "listed") == _at(FRIDAY, *LISTED[:6])


def test_plan_is_utc_whatever_the_timezone_of_now() -> None:
    tokyo = T0.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
    made, horizon = plan("0 12 * * *", tokyo, None, None)
    assert made == [T0]
    assert made[0].tzinfo is not None and made[0].utcoffset() == timedelta(0)
    assert horizon == T0 + 5 * MIN


# -- disabled types ------------------------------------------------------------------------------


def test_a_disabled_type_gets_no_jobs_and_one_log_line_per_pass(database_url: str) -> None:
    app = make_app(database_url, off={"cron_expression": "* * * * *", "is_enabled": False})
    with captured("cron") as records:
        for second in (0, 20, 40):  # three calls, one scheduling pass (one new minute)
            assert schedule_due(app, T0 + timedelta(seconds=second)) == 0
        schedule_due(app, T0 + MIN)  # the next pass
    assert app.jobs(type_code="off") == []
    skips = [r for r in records if r.getMessage() == "Scheduler skipping disabled job type [off]"]
    assert len(skips) == 2
    assert all(r.levelno == logging.WARNING for r in skips)
    assert all(r.context == {"disabled_job_type": "off"} for r in skips)  # type: ignore[attr-defined]


def test_the_disabled_log_level_is_configurable(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(database_url, off={"cron_expression": "* * * * *", "is_enabled": False})
    with captured("cron") as records:
        schedule_due(app, T0, disabled_log_level="info")
        monkeypatch.setenv("KOJO_DISABLED_TYPE_LOG_LEVEL", "error")
        schedule_due(app, T0 + MIN)
        monkeypatch.setenv("KOJO_DISABLED_TYPE_LOG_LEVEL", "debug")
        schedule_due(app, T0 + 2 * MIN, disabled_log_level=logging.CRITICAL)  # explicit wins
    assert [r.levelno for r in records] == [logging.INFO, logging.ERROR, logging.CRITICAL]


@pytest.mark.parametrize("bad", ["loud", "", 7, True])
def test_an_invalid_disabled_log_level_is_a_clear_error(bad: Any) -> None:
    with pytest.raises(InvalidArgument, match="must be one of debug, info") as caught:
        disabled_type_log_level(bad)
    assert repr(bad) in str(caught.value)


def test_an_invalid_env_log_level_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOJO_DISABLED_TYPE_LOG_LEVEL", "verbose")
    with pytest.raises(InvalidArgument, match=r"KOJO_DISABLED_TYPE_LOG_LEVEL .*'verbose'"):
        disabled_type_log_level()
    monkeypatch.delenv("KOJO_DISABLED_TYPE_LOG_LEVEL")
    assert disabled_type_log_level() == logging.WARNING
    assert disabled_type_log_level(" Info ") == logging.INFO


def test_a_bad_env_log_level_does_not_stop_cron(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(
        database_url,
        tick=EVERY_MINUTE,
        off={"cron_expression": "* * * * *", "is_enabled": False},
    )
    monkeypatch.setenv("KOJO_DISABLED_TYPE_LOG_LEVEL", "loud")
    with captured("cron") as records:
        assert schedule_due(app, T0) == 6
        assert schedule_due(app, T0 + MIN) == 1
    errors = [r for r in records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # reported once per process, not every pass
    assert "KOJO_DISABLED_TYPE_LOG_LEVEL" in errors[0].getMessage()
    assert "'loud'" in errors[0].getMessage()
    skips = [r for r in records if r.getMessage().startswith("Scheduler skipping")]
    assert [r.levelno for r in skips] == [logging.WARNING, logging.WARNING]


def test_disabling_stops_new_jobs_and_enabling_resumes_without_back_fill(
    database_url: str,
) -> None:
    app = make_app(database_url, tick={"cron_expression": "* * * * *", "catch_up": "all"})
    schedule_due(app, T0)  # 12:00 .. 12:05
    app.set_type_enabled("tick", False)
    for step in range(1, 20):
        schedule_due(app, T0 + step * MIN)
    app.set_type_enabled("tick", True)
    schedule_due(app, T0 + 20 * MIN + timedelta(seconds=5))
    # Jobs already made before disabling remain (and still run); minutes due while the
    # type was disabled were skipped, not missed: even catch_up="all" leaves them.
    assert cron_fires(app, "tick") == minutes(T0, 6) + minutes(T0 + 20 * MIN, 6)


# -- catch-up after downtime ---------------------------------------------------------------------


def _downtime(database_url: str, policy: str, window: str, down: timedelta) -> list[datetime]:
    app = make_app(
        database_url,
        tick={"cron_expression": "* * * * *", "catch_up": policy, "catch_up_window": window},
    )
    schedule_due(app, T0)  # made 12:00 .. 12:05, then every server stops
    schedule_due(app, T0 + down + timedelta(seconds=30))
    return cron_fires(app, "tick")


def test_catch_up_none_never_back_fills(database_url: str) -> None:
    fires = _downtime(database_url, "none", "PT1H", timedelta(hours=2))
    back = T0 + timedelta(hours=2)
    assert fires == minutes(T0, 6) + minutes(back, 6)


def test_catch_up_latest_makes_the_most_recent_missed_minute(database_url: str) -> None:
    fires = _downtime(database_url, "latest", "PT1H", timedelta(hours=2))
    back = T0 + timedelta(hours=2)
    assert fires == [*minutes(T0, 6), back - MIN, *minutes(back, 6)]


def test_catch_up_all_makes_every_missed_minute_within_the_window(database_url: str) -> None:
    fires = _downtime(database_url, "all", "PT1H", timedelta(hours=2))
    back = T0 + timedelta(hours=2)
    # Back at 14:00:30: the window reaches to 13:00:30, so 13:01 .. 13:59 are made.
    assert fires == minutes(T0, 6) + minutes(back - 59 * MIN, 59) + minutes(back, 6)


def test_catch_up_all_after_a_short_downtime_fills_every_gap(database_url: str) -> None:
    fires = _downtime(database_url, "all", "PT1H", timedelta(minutes=20))
    assert fires == minutes(T0, 26)  # 12:00 .. 12:25: no gap at all


def test_catch_up_latest_outside_the_window_makes_nothing(database_url: str) -> None:
    app = make_app(
        database_url,
        daily={"cron_expression": "0 3 * * *", "catch_up": "latest", "catch_up_window": "PT1H"},
    )
    schedule_due(app, T0)
    schedule_due(app, T0 + timedelta(days=1))  # 03:00 was missed, but 9 hours ago
    assert cron_fires(app, "daily") == []


def test_missed_jobs_are_due_at_once(database_url: str) -> None:
    app = make_app(
        database_url,
        hourly={"cron_expression": "@hourly", "catch_up": "latest", "catch_up_window": "PT2H"},
    )
    schedule_due(app, T0 - timedelta(minutes=4))  # 11:56: made the 12:00 job
    back = T0 + timedelta(hours=3, minutes=30)  # 15:30
    assert schedule_due(app, back) == 1
    assert cron_fires(app, "hourly") == [T0, T0 + timedelta(hours=3)]
    job = max(app.jobs(type_code="hourly"), key=lambda j: j["kojo_job_id"])
    assert job["work_at_date_time"] == T0 + timedelta(hours=3) < back
    assert (job["assigned_state"], job["next_state_request"]) == ("waiting", "working")


def test_catch_up_all_is_capped_to_the_most_recent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cs, "MAX_CATCH_UP", 10)
    made, _ = plan("* * * * *", T0, T0 - timedelta(hours=1), "* * * * *", "all", timedelta(days=1))
    assert made[:10] == minutes(T0 - 10 * MIN, 10)
    assert made[10:] == minutes(T0, 6)


def test_a_new_or_changed_expression_is_not_owed_anything(database_url: str) -> None:
    app = make_app(database_url, tick={"cron_expression": "*/10 * * * *", "catch_up": "all"})
    schedule_due(app, T0)  # 12:00 (horizon 12:05)
    app.job_type("tick", cron_expression="* * * * *", catch_up="all")(noop)
    app.register_job_types()
    schedule_due(app, T0 + timedelta(hours=1))
    # The new expression owes nothing from before; its window is made in full.
    assert cron_fires(app, "tick") == [T0, *minutes(T0 + timedelta(hours=1), 6)]


# -- concurrency ---------------------------------------------------------------------------------


def _schedule_all(url: str, nows: list[datetime]) -> int:
    app = App(database=url)
    return sum(schedule_due(app, now) for now in nows)


@pytest.mark.parametrize("trust_horizon", [True, False], ids=["horizon", "index-only"])
def test_four_processes_make_each_minute_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch, trust_horizon: bool
) -> None:
    app = make_app(database_url, tick=EVERY_MINUTE, fives={"cron_expression": "*/5 * * * *"})
    if not trust_horizon:
        # Every process re-inserts every window minute: only the unique index stands between
        # them and duplicates.
        real_plan = cs.plan
        monkeypatch.setattr(cs, "plan", lambda e, n, h, x, *a: real_plan(e, n, None, None))
        monkeypatch.setattr(cs, "_up_to_date", lambda row, now: False)
    nows = [T0 + timedelta(seconds=s) for s in range(0, 20 * 60, 13)]
    outcomes = in_processes(4, _schedule_all, database_url, nows)

    tick = cron_fires(app, "tick")
    assert not [f for f, n in Counter(tick).items() if n > 1]
    assert tick == minutes(T0, 25)  # through the last pass's window (12:19:56 + 5 min)
    assert cron_fires(app, "fives") == minutes(T0, 5, 5 * MIN)
    assert sum(outcomes) == len(tick) + 5  # every job made was counted by exactly one process


def test_horizon_is_stored_per_type(database_url: str) -> None:
    app = make_app(database_url, tick=EVERY_MINUTE)
    schedule_due(app, T0 + timedelta(seconds=10))
    row = app.backend.type_get("tick")
    assert row is not None
    assert row["cron_scheduled_until_date_time"] == T0 + 5 * MIN
    assert row["cron_scheduled_expression"] == "* * * * *"


# -- rows edited by hand ---------------------------------------------------------------------


def _edit(app: App, code: str, column: str, value: str) -> None:
    """An operator's UPDATE of one stored field, past registration's checks."""
    sql = f"UPDATE kojo_job_type SET {column} = :value WHERE type_code = :code"  # fixed names
    assert run_sql(app.backend, sql, value=value, code=code) == 1


@pytest.mark.parametrize(
    ("column", "value", "needle"),
    [
        ("cron_expression", "0 0 31 2 *", "cron_expression='0 0 31 2 *' never fires"),
        ("cron_expression", "0 0 30 2 *", "cron_expression='0 0 30 2 *' never fires"),
        ("cron_expression", "nonsense", "cron_expression='nonsense' is not 5-field cron"),
        ("catch_up_window", "one hour", "catch_up_window='one hour' is not a duration"),
        ("catch_up_window", "P99999999999Y", "catch_up_window='P99999999999Y' is not a duration"),
    ],
)
def test_a_row_edited_into_nonsense_skips_that_type_in_one_line(
    database_url: str, column: str, value: str, needle: str
) -> None:
    app = make_app(database_url, bad=EVERY_MINUTE, tick=EVERY_MINUTE)
    _edit(app, "bad", column, value)
    with captured("cron") as records:
        made = [schedule_due(app, T0 + i * MIN) for i in range(3)]  # three passes
    # The other type is scheduled as ever; the bad one makes nothing and fails no pass.
    assert made == [6, 1, 1]
    assert cron_fires(app, "tick") == minutes(T0, 8)
    assert cron_fires(app, "bad") == []
    # One line for the bad row, no traceback, however many passes see it.
    errors = [r for r in records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    (error,) = errors
    message = error.getMessage()
    assert message.startswith("Scheduler skipping job type [bad]: its stored "), message
    assert needle in message and "\n" not in message, message
    assert error.exc_info is None
    assert error.context == {"type_code": "bad"}  # type: ignore[attr-defined]


def test_a_disabled_type_edited_into_nonsense_is_one_line_too(database_url: str) -> None:
    app = make_app(database_url, off={"cron_expression": "* * * * *", "is_enabled": False})
    _edit(app, "off", "cron_expression", "every minute")
    with captured("cron") as records:
        for i in range(3):
            assert schedule_due(app, T0 + i * MIN) == 0
    bad = [r for r in records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in bad] == [
        "Scheduler skipping job type [off]: its stored cron_expression='every minute' is not "
        "5-field cron or an @macro"
    ]
    assert all(r.exc_info is None for r in records)


def test_a_fixed_row_is_scheduled_again_and_a_new_fault_is_reported_again(
    database_url: str,
) -> None:
    app = make_app(database_url, bad=EVERY_MINUTE)
    _edit(app, "bad", "cron_expression", "0 0 31 2 *")
    with captured("cron") as records:
        assert schedule_due(app, T0) == 0
        _edit(app, "bad", "cron_expression", "* * * * *")  # fixed by hand
        assert schedule_due(app, T0 + MIN) == 6
        _edit(app, "bad", "cron_expression", "0 0 31 2 *")  # and broken again
        assert schedule_due(app, T0 + 2 * MIN) == 0
    errors = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(errors) == 2 and all("'0 0 31 2 *' never fires" in e for e in errors), errors


def test_a_catch_up_window_longer_than_the_dates_catches_up_to_the_cap(database_url: str) -> None:
    # Registration refuses windows past P1000Y; one stored by hand must still schedule.
    app = make_app(database_url, tick={**EVERY_MINUTE, "catch_up": "all"})
    schedule_due(app, T0)
    _edit(app, "tick", "catch_up_window", "P9000Y")
    with captured("cron") as records:
        made = schedule_due(app, T0 + timedelta(hours=2))
    assert made == 114 + 6  # every missed minute after the horizon (12:06 .. 13:59), then six
    assert [r for r in records if r.levelno >= logging.WARNING] == []


def test_plan_with_a_window_past_the_first_date_saturates() -> None:
    fires, _ = plan("0 12 * * *", T0 + timedelta(days=3), T0, "0 12 * * *", "all", timedelta.max)
    assert fires == [T0 + timedelta(days=d) for d in (1, 2, 3)]  # missed, missed, now
