"""kojo's rows as typed, immutable values: a job, a job type, a process.

The stores hand rows over as dicts of column values; `from_mapping(row)` turns
one into its typed row (ints as int, flags as bool, times as aware UTC
datetimes, states as State/Request), whatever the driver returned (SQLite's
0/1 and ISO text as well as PostgreSQL's native types), so a store can return
these types with one call. Columns the type does not know (a joined type's
columns, a computed `jobs`) are ignored; a missing one is a KeyError naming it.

`as_dict()` gives the row back as the dict users get from `app.job()` and
`app.jobs()` (states as plain text), column for column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, Self, TypeVar

from .clock import as_utc, parse_iso
from .states import Request, State

T = TypeVar("T")
Convert = Callable[[Any], Any]


def to_datetime(value: Any) -> datetime:
    """An aware UTC datetime from a datetime (naive taken as UTC) or ISO text."""
    if isinstance(value, datetime):
        return value if value.tzinfo is UTC else as_utc(value)  # the drivers' usual: as is
    return parse_iso(str(value))


def to_bool(value: Any) -> bool:
    return bool(value)


def to_int(value: Any) -> int:
    return int(value)


def to_float(value: Any) -> float:
    return float(value)


def to_str(value: Any) -> str:
    return str(value)


def same(value: Any) -> Any:
    """Passed through: a JSON value the store already decoded."""
    return value


def optional(convert: Callable[[Any], T]) -> Callable[[Any], T | None]:
    """`convert`, with NULL kept as None."""

    def converted(value: Any) -> T | None:
        return None if value is None else convert(value)

    return converted


class _Row:
    """from_mapping and as_dict for the dataclasses below, driven by their CONVERT table
    (column name to converter, one entry per field, in the table's column order)."""

    __slots__ = ()
    CONVERT: ClassVar[Mapping[str, Convert]]

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> Self:
        return cls(**{name: convert(row[name]) for name, convert in cls.CONVERT.items()})

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name in self.CONVERT:  # the columns, in the table's order
            value = getattr(self, name)
            result[name] = value.value if isinstance(value, Enum) else value
        return result


@dataclass(frozen=True, slots=True)
class JobRow(_Row):
    """A row of kojo_job."""

    kojo_job_id: int
    type_code: str
    name: str
    priority: int
    importance: int
    work_at_date_time: datetime
    next_state_request: Request
    assigned_state: State
    previous_state: State
    worker_uri: str
    can_work_in_parallel: bool
    last_transition_date_time: datetime
    times_worked: int
    times_retried: int
    times_held: int
    times_crashed: int
    times_panicked: int
    created_at_date_time: datetime
    completed_at_date_time: datetime | None
    delete_after_date_time: datetime | None
    payload: Any
    kojo_process_id: int | None
    cron_fire_date_time: datetime | None
    last_error: str | None
    unique_key: str | None
    result: Any
    progress: float | None
    progress_note: str | None
    awaited: bool
    has_children: bool
    concurrency_key: str
    limited: bool
    started_at_date_time: datetime | None = None  # schema 5: set as it succeeds

    CONVERT: ClassVar[Mapping[str, Convert]] = {
        "kojo_job_id": to_int,
        "type_code": to_str,
        "name": to_str,
        "priority": to_int,
        "importance": to_int,
        "work_at_date_time": to_datetime,
        "next_state_request": Request,
        "assigned_state": State,
        "previous_state": State,
        "worker_uri": to_str,
        "can_work_in_parallel": to_bool,
        "last_transition_date_time": to_datetime,
        "times_worked": to_int,
        "times_retried": to_int,
        "times_held": to_int,
        "times_crashed": to_int,
        "times_panicked": to_int,
        "created_at_date_time": to_datetime,
        "completed_at_date_time": optional(to_datetime),
        "delete_after_date_time": optional(to_datetime),
        "payload": same,
        "kojo_process_id": optional(to_int),
        "cron_fire_date_time": optional(to_datetime),
        "last_error": optional(to_str),
        "unique_key": optional(to_str),
        "result": same,
        "progress": optional(to_float),
        "progress_note": optional(to_str),
        "awaited": to_bool,
        "has_children": to_bool,
        "concurrency_key": to_str,
        "limited": to_bool,
        "started_at_date_time": optional(to_datetime),
    }


@dataclass(frozen=True, slots=True)
class TypeRow(_Row):
    """A row of kojo_job_type."""

    kojo_job_type_id: int
    type_code: str
    name: str
    worker_uri: str
    cron_expression: str | None
    can_work_in_parallel: bool
    default_importance: int
    schedule_limit: int
    schedule_limit_allowance: int
    is_enabled: bool
    auto_complete_success: bool
    auto_delete_interval_duration: str
    max_retries: int
    max_crashes: int
    timeout: float | None
    catch_up: str
    catch_up_window: str
    cron_scheduled_until_date_time: datetime | None
    cron_scheduled_expression: str | None
    is_paused: bool
    created_at_date_time: datetime
    updated_at_date_time: datetime
    concurrency_limit: int
    rate_limit: str
    rate_limit_count: int
    rate_limit_seconds: float
    rate_free_date_time: datetime

    CONVERT: ClassVar[Mapping[str, Convert]] = {
        "kojo_job_type_id": to_int,
        "type_code": to_str,
        "name": to_str,
        "worker_uri": to_str,
        "cron_expression": optional(to_str),
        "can_work_in_parallel": to_bool,
        "default_importance": to_int,
        "schedule_limit": to_int,
        "schedule_limit_allowance": to_int,
        "is_enabled": to_bool,
        "auto_complete_success": to_bool,
        "auto_delete_interval_duration": to_str,
        "max_retries": to_int,
        "max_crashes": to_int,
        "timeout": optional(to_float),
        "catch_up": to_str,
        "catch_up_window": to_str,
        "cron_scheduled_until_date_time": optional(to_datetime),
        "cron_scheduled_expression": optional(to_str),
        "is_paused": to_bool,
        "created_at_date_time": to_datetime,
        "updated_at_date_time": to_datetime,
        "concurrency_limit": to_int,
        "rate_limit": to_str,
        "rate_limit_count": to_int,
        "rate_limit_seconds": to_float,
        "rate_free_date_time": to_datetime,
    }


@dataclass(frozen=True, slots=True)
class RunSettings(_Row):
    """What running a job needs from its type (runner.with_type adds these columns to the
    claimed job's row)."""

    auto_delete_interval_duration: str
    auto_complete_success: bool
    max_retries: int
    max_crashes: int
    timeout: float | None

    CONVERT: ClassVar[Mapping[str, Convert]] = {
        name: TypeRow.CONVERT[name]
        for name in (
            "auto_delete_interval_duration",
            "auto_complete_success",
            "max_retries",
            "max_crashes",
            "timeout",
        )
    }


@dataclass(frozen=True, slots=True)
class ProcessRow(_Row):
    """A row of kojo_process: a registered process (an owner)."""

    kojo_process_id: int
    host_name: str
    process_id: int
    parent_process_id: int
    path: str
    kind: str
    started_at_date_time: datetime
    info: Any  # the JSON object the process registered with

    CONVERT: ClassVar[Mapping[str, Convert]] = {
        "kojo_process_id": to_int,
        "host_name": to_str,
        "process_id": to_int,
        "parent_process_id": to_int,
        "path": to_str,
        "kind": to_str,
        "started_at_date_time": to_datetime,
        "info": same,
    }
