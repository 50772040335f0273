"""kojo.rows: typed rows from whatever a driver returns, and back to the users' dicts."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from kojo.rows import JobRow, ProcessRow, RunSettings, TypeRow
from kojo.states import Request, State

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

# A job row as SQLite's driver gives it without kojo's converters: 0/1 and ISO text.
RAW_JOB: dict[str, Any] = {
    "kojo_job_id": 7,
    "type_code": "q",
    "name": "q",
    "priority": -1,
    "importance": 0,
    "work_at_date_time": "2030-01-01 12:00:00.000000",
    "next_state_request": "none",
    "assigned_state": "working",
    "previous_state": "crashed",
    "worker_uri": "m:f",
    "can_work_in_parallel": 0,
    "last_transition_date_time": "2030-01-01T13:00:00+01:00",
    "times_worked": 2,
    "times_retried": 0,
    "times_held": 0,
    "times_crashed": 1,
    "times_panicked": 0,
    "created_at_date_time": datetime(2030, 1, 1, 12, 0),  # naive: taken as UTC
    "completed_at_date_time": None,
    "delete_after_date_time": None,
    "payload": {"a": [1]},
    "kojo_process_id": 3,
    "cron_fire_date_time": None,
    "last_error": None,
    "unique_key": None,
    "result": None,
    "progress": None,
    "progress_note": None,
    "awaited": False,
    "has_children": False,
    "concurrency_key": "",
    "limited": False,
    "started_at_date_time": None,
    "auto_complete_success": 1,  # a joined type column: ignored by JobRow
}


@pytest.mark.parametrize("row_type", [JobRow, TypeRow, RunSettings, ProcessRow])
def test_each_field_has_its_converter_in_column_order(row_type: Any) -> None:
    assert [f.name for f in dataclasses.fields(row_type)] == list(row_type.CONVERT)


def test_a_job_row_from_driver_values() -> None:
    job = JobRow.from_mapping(RAW_JOB)
    assert job.kojo_job_id == 7 and job.priority == -1 and job.times_crashed == 1
    assert job.can_work_in_parallel is False
    assert (job.assigned_state, job.previous_state) == (State.WORKING, State.CRASHED)
    assert job.next_state_request is Request.NONE
    assert job.work_at_date_time == NOW and job.work_at_date_time.tzinfo is UTC
    assert job.last_transition_date_time == NOW and job.last_transition_date_time.tzinfo is UTC
    assert job.created_at_date_time == NOW and job.created_at_date_time.tzinfo is UTC
    assert job.completed_at_date_time is None and job.payload == {"a": [1]}


def test_as_dict_gives_the_users_dict_back() -> None:
    converted = {**RAW_JOB, "can_work_in_parallel": False}
    for column in ("work_at_date_time", "last_transition_date_time", "created_at_date_time"):
        converted[column] = NOW
    del converted["auto_complete_success"]
    result = JobRow.from_mapping(converted).as_dict()
    assert result == converted and list(result) == list(JobRow.CONVERT)
    assert type(result["assigned_state"]) is str  # plain text, as stored


def test_rows_are_frozen_and_slotted() -> None:
    job = JobRow.from_mapping(RAW_JOB)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.priority = 5  # type: ignore[misc]
    assert not hasattr(job, "__dict__")


def test_a_missing_column_or_a_bad_state_is_named() -> None:
    with pytest.raises(KeyError, match="times_held"):
        JobRow.from_mapping({k: v for k, v in RAW_JOB.items() if k != "times_held"})
    with pytest.raises(ValueError, match="'bogus'"):
        JobRow.from_mapping({**RAW_JOB, "assigned_state": "bogus"})


def test_type_and_process_rows() -> None:
    later = datetime(2030, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    settings = RunSettings.from_mapping(
        {
            "auto_delete_interval_duration": "P1D",
            "auto_complete_success": 0,
            "max_retries": "3",
            "max_crashes": 5,
            "timeout": 2,
        }
    )
    assert settings == RunSettings("P1D", False, 3, 5, 2.0)
    process = ProcessRow.from_mapping(
        {
            "kojo_process_id": 1,
            "host_name": "h",
            "process_id": 10,
            "parent_process_id": 1,
            "path": "/x",
            "kind": "root",
            "started_at_date_time": later,
            "info": {},
            "jobs": [4],  # process_table's addition: not a column
        }
    )
    assert process.started_at_date_time == NOW and process.started_at_date_time.tzinfo is UTC
