"""Helpers for the backend and claim tests (tests/ is on sys.path: `import foundation_helpers`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import kojo
from kojo.backends import Backend, Owner, ProcessInfo

# A fixed instant far from "now", so tests that inject `now` never depend on the clock.
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def noop(job: Any) -> None:
    """The worker of every test type (never run here)."""


def make_app(url: str, **types: Mapping[str, Any]) -> kojo.App:
    """An installed App with job types {code: fields}, registered in the database."""
    app = kojo.App(database=url)
    app.install()
    for code, fields in types.items():
        app.job_type(code, **fields)(noop)
    if types:
        app.register_job_types()
    return app


def process_info(kind: str = "test") -> ProcessInfo:
    return ProcessInfo(
        host_name="test-host",
        process_id=os.getpid(),
        parent_process_id=os.getppid(),
        path=f"/test[{os.getpid()}]",
        kind=kind,
    )


@contextmanager
def owner_of(backend: Backend) -> Iterator[Owner]:
    owner = backend.register_owner(process_info())
    try:
        yield owner
    finally:
        owner.close()


def claim(backend: Backend, owner: Owner, limit: int = 1, now: datetime | None = None) -> list[int]:
    """Claim up to `limit` jobs in one transaction; their ids in the order returned."""
    with backend.write():
        rows = backend.job_claim(owner.id, limit, now or T0 + timedelta(days=3650))
    return [int(r["kojo_job_id"]) for r in rows]


def update_job(backend: Backend, job_id: int, **columns: Any) -> None:
    """Set job columns directly, as an operator's SQL would (column names come from tests)."""
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    sql = f"UPDATE kojo_job SET {assignments} WHERE kojo_job_id = :kojo_job_id"
    with backend.write() as conn:
        conn.execute(
            backend._prepare(sql), backend._convert_params({**columns, "kojo_job_id": job_id})
        )


def scalar(backend: Backend, sql: str, **params: Any) -> Any:
    """The first column of the first row of a read-only query written by a test."""
    cur = backend.connection().execute(backend._prepare(sql), backend._convert_params(params))
    row = cur.fetchone()
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def table_names(backend: Backend) -> set[str]:
    if backend.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    elif backend.dialect == "mysql":
        sql = (
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = DATABASE()"
        )
    else:
        sql = "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()"
    cur = backend.connection().execute(sql)
    return {row["name"] for row in cur.fetchall()}


def column_names(backend: Backend, table: str) -> set[str]:
    if backend.dialect == "sqlite":
        cur = backend.connection().execute(f"PRAGMA table_info({table})")  # fixed test names
    elif backend.dialect == "mysql":
        cur = backend.connection().execute(
            "SELECT column_name AS name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s",
            (table,),
        )
    else:
        cur = backend.connection().execute(
            "SELECT column_name AS name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
    return {row["name"] for row in cur.fetchall()}


def index_names(backend: Backend) -> set[str]:
    if backend.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
    elif backend.dialect == "mysql":
        sql = (
            "SELECT DISTINCT index_name AS name FROM information_schema.statistics "
            "WHERE table_schema = DATABASE()"
        )
    else:
        sql = "SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema()"
    cur = backend.connection().execute(sql)
    return {row["name"] for row in cur.fetchall()}


# Reads that only tests and benchmarks need: kept out of the package's named queries.
COUNT_BY_STATE = (
    "SELECT type_code, assigned_state, next_state_request, count(*) AS jobs FROM kojo_job "
    "GROUP BY type_code, assigned_state, next_state_request"
)


def count_by_state(backend: Backend) -> list[dict[str, Any]]:
    """Jobs per (type_code, assigned_state, next_state_request), as rows with `jobs`."""
    return [dict(row) for row in backend.connection().execute(COUNT_BY_STATE).fetchall()]


def last_completion(backend: Backend, type_code: str) -> datetime | None:
    """The latest completed_at_date_time of a type's jobs (the name aliased, so that
    SQLite's rows convert it to a datetime)."""
    marker = "?" if backend.dialect == "sqlite" else "%s"
    cursor = backend.connection().execute(
        "SELECT max(completed_at_date_time) AS completed_at_date_time FROM kojo_job "
        f"WHERE type_code = {marker}",
        (type_code,),
    )
    row = cursor.fetchone()
    value: datetime | None = row["completed_at_date_time"] if row else None
    if value is not None and value.tzinfo is None:  # MySQL's DATETIME: UTC, naive
        value = value.replace(tzinfo=UTC)
    return value
