"""Static cron scheduling: cron job types make their own jobs, exactly once per due minute.

Every pass looks at the due minutes in [floor(now), now + 5 min] (UTC, Kōjō's
window) and makes one job per minute with `work_at_date_time` and
`cron_fire_date_time` set to that minute. Exactly once across the cluster is
the database's job: a unique index on (type_code, cron_fire_date_time) and
`INSERT ... ON CONFLICT DO NOTHING`. No lock and no leader is needed for
correctness; any number of processes may run `schedule_due` at once.

Each type keeps a horizon in its row (`cron_scheduled_until_date_time`, for the
expression in `cron_scheduled_expression`): every due minute up to it has had
its job made, or was skipped on purpose. The horizon makes an idle pass one
SELECT, keeps a cron job that already ran and was deleted from being made
again, and tells what was missed while no scheduler ran (the `catch_up`
policy). It only moves forward. See docs/cron.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import bounds, cron
from .clock import as_utc, utcnow
from .durations import parse_duration
from .errors import InvalidArgument
from .logs import get_logger
from .settings import DEFAULT_LOG_LEVEL, LOG_LEVEL_ENV, disabled_type_log_level

if TYPE_CHECKING:
    from .app import App
    from .backends import Backend

LOOK_AHEAD = timedelta(minutes=5)
MINUTE = timedelta(minutes=1)
# At most this many missed minutes are made per type and pass (`catch_up="all"`); the most
# recent ones win. A wide window on an every-minute type would otherwise insert without end.
MAX_CATCH_UP = 1000

log = get_logger("cron")


@dataclass
class CronMemory:
    """What one process remembers between passes (the App keeps one); never needed for
    correctness."""

    disabled_logged: dict[str, datetime] = field(default_factory=dict)  # type -> minute logged
    bad_level_reported: bool = False
    bad_rows_reported: dict[str, str] = field(default_factory=dict)  # type -> error logged


class BadCronRow(ValueError):
    """A cron type's stored row cannot be computed with: an expression that is not cron or
    never fires, or a catch-up window that is not a duration (edited by hand in the table,
    or stored before registration checked it). The message names the field and value."""


def ceil_minute(moment: datetime) -> datetime:
    floor = cron.floor_minute(moment)
    return floor if floor == moment else floor + MINUTE


def _fires_back(expression: str, before: datetime, oldest: datetime, limit: int) -> list[datetime]:
    """Up to `limit` due minutes in [oldest, before), the most recent ones, oldest first."""
    it = cron.iterator(expression, before)
    found: list[datetime] = []
    while len(found) < limit:
        fire = as_utc(it.get_prev(datetime))
        if fire < oldest:
            break
        found.append(fire)
    found.reverse()
    return found


def plan(
    expression: str,
    now: datetime,
    horizon: datetime | None,
    horizon_expression: str | None,
    catch_up: str = "none",
    catch_up_window: timedelta = timedelta(hours=1),
) -> tuple[list[datetime], datetime]:
    """The due minutes to make jobs for, oldest first, and the type's new horizon.

    Pure: `horizon` is what the type's row says was already scheduled, for the
    normalized expression `horizon_expression`. A horizon made for another
    expression (or none) counts as nothing scheduled and nothing missed.
    """
    expression = cron.normalize(expression)
    now = as_utc(now)
    start = cron.floor_minute(now)
    end = cron.floor_minute(now + LOOK_AHEAD)
    if horizon is None or horizon_expression != expression:
        return list(cron.fire_times(expression, start, end)), end
    horizon = as_utc(horizon)
    if horizon >= end:
        return [], horizon
    minutes: list[datetime] = []
    if catch_up != "none" and horizon + MINUTE < start:
        # Missed: due after the horizon and before the current minute, within the window.
        # A window reaching past the first date Python holds (stored by hand) reaches to it.
        reach = min(catch_up_window, now - bounds.DATE_MIN)
        oldest = max(horizon + MINUTE, ceil_minute(now - reach))
        limit = 1 if catch_up == "latest" else MAX_CATCH_UP
        minutes += _fires_back(expression, start, oldest, limit)
    minutes += cron.fire_times(expression, max(start, horizon + MINUTE), end)
    return minutes, end


def schedule_due(
    app: App, now: datetime | None = None, *, disabled_log_level: str | int | None = None
) -> int:
    """Make the jobs of every enabled cron type that are due in the window; how many were made.

    Safe to run in any number of processes at once. A type whose row is bad
    (an expression edited by hand into nonsense) is logged and skipped; the
    other types are still scheduled.
    """
    memory = app.cron_memory
    level = _pass_log_level(memory, disabled_log_level)
    now = as_utc(now or utcnow())
    backend = app.backend
    made = 0
    for row in backend.fetchall("cron_types"):
        code = str(row["type_code"])
        try:
            if not row["is_enabled"]:
                _skip_disabled(app, memory, row, now, level)
            elif not _up_to_date(row, now):
                made += _schedule_type(backend, code, now)
            memory.bad_rows_reported.pop(code, None)
        except BadCronRow as exc:
            _report_bad_row(memory, code, exc)
        except Exception as exc:
            if backend.is_unavailable(exc):
                raise  # the whole duty waits for the database, not this type alone
            log.exception(
                f"Scheduler failed for job type [{code}]", extra={"context": {"type_code": code}}
            )
    return made


def _up_to_date(row: Mapping[str, Any], now: datetime) -> bool:
    """True when the row's horizon already covers the window: nothing to write."""
    horizon = row["cron_scheduled_until_date_time"]
    if horizon is None or row["cron_scheduled_expression"] != _expression(row):
        return False
    return bool(as_utc(horizon) >= cron.floor_minute(now + LOOK_AHEAD))


def _schedule_type(backend: Backend, code: str, now: datetime) -> int:
    with backend.write():
        row = backend.fetchone("cron_type_lock", {"type_code": code})
        if row is None or not row["is_enabled"] or not row["cron_expression"]:
            return 0
        expression = _expression(row)
        try:
            window = parse_duration(row["catch_up_window"])
        except ValueError:
            value = row["catch_up_window"]
            raise BadCronRow(f"catch_up_window={value!r} is not a duration such as PT1H") from None
        try:
            minutes, horizon = plan(
                expression,
                now,
                row["cron_scheduled_until_date_time"],
                row["cron_scheduled_expression"],
                row["catch_up"],
                window,
            )
        except (ValueError, OverflowError):  # croniter's CroniterBadDateError is a ValueError
            value = row["cron_expression"]
            raise BadCronRow(f"cron_expression={value!r} never fires (no such date)") from None
        made = 0
        for minute in minutes:
            params = {"type_code": code, "fire": minute, "now": now}
            if backend.fetchone("cron_job_insert", params) is not None:
                made += 1
        backend.execute(
            "cron_set_horizon", {"type_code": code, "until": horizon, "expression": expression}
        )
        if made:
            backend.notify("jobs")  # job processes re-plan their sleep to the new work_at
    if made:
        log.debug(
            f"Scheduled {made} cron jobs of type [{code}]",
            extra={"context": {"type_code": code, "jobs": made}},
        )
    return made


def _expression(row: Mapping[str, Any]) -> str:
    """The row's normalized cron expression; BadCronRow when it is not cron."""
    try:
        return cron.normalize(row["cron_expression"])
    except ValueError:
        value = row["cron_expression"]
        raise BadCronRow(f"cron_expression={value!r} is not 5-field cron or an @macro") from None


def _report_bad_row(memory: CronMemory, code: str, exc: BadCronRow) -> None:
    """One line, no traceback, once per process for each bad value of a type's row: the
    type is skipped until its row is fixed (`kojo types register`); the others go on."""
    message = str(exc)
    if memory.bad_rows_reported.get(code) == message:
        return
    memory.bad_rows_reported[code] = message
    log.error(
        f"Scheduler skipping job type [{code}]: its stored {message}",
        extra={"context": {"type_code": code}},
    )


def _pass_log_level(memory: CronMemory, value: str | int | None) -> int:
    """The disabled-type log level for a pass. A bad environment value must not stop cron:
    report it once and use warning (the server refuses it at startup)."""
    if value is not None:
        return disabled_type_log_level(value)
    try:
        return disabled_type_log_level()
    except InvalidArgument as exc:
        if not memory.bad_level_reported:
            memory.bad_level_reported = True
            log.error(f"{exc}; using warning", extra={"context": {"variable": LOG_LEVEL_ENV}})
        return DEFAULT_LOG_LEVEL


def _skip_disabled(
    app: App, memory: CronMemory, row: Mapping[str, Any], now: datetime, level: int
) -> None:
    """Log the skip once per minute (per process) and move the horizon past this minute."""
    code = str(row["type_code"])
    minute = cron.floor_minute(now)
    logged = memory.disabled_logged
    if logged.get(code) != minute:
        logged[code] = minute
        log.log(
            level,
            f"Scheduler skipping disabled job type [{code}]",
            extra={"context": {"disabled_job_type": code}},
        )
    horizon = row["cron_scheduled_until_date_time"]
    if horizon is None or as_utc(horizon) < minute:
        expression = _expression(row)
        with app.backend.write():
            app.backend.execute(
                "cron_skip_disabled", {"type_code": code, "until": minute, "expression": expression}
            )
