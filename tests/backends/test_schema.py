"""Install, upgrade and uninstall of kojo's schema, on both backends."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import psycopg
import pytest

import kojo
import mysql_db
from foundation_helpers import column_names, index_names, make_app, noop, process_info, table_names
from kojo.backends import open_backend
from kojo.backends.mysql_names import LockNames
from kojo.backends.postgres import INSTALL_LOCK_KEY, LOCK_NAMESPACE
from kojo.backends.sqlite import path_from_url
from kojo.clock import utcnow
from kojo.sql import SCHEMA_VERSION, schema

CORE_TABLES = {
    "kojo_schema_version",
    "kojo_job_type",
    "kojo_job",
    "kojo_process",
    "kojo_semaphore",
    "kojo_semaphore_slot",
    "kojo_semaphore_waiter",
    "kojo_message",
}
# Kōjō's column names (reference §2.1, §3.1) that operators' SQL relies on, plus SPEC's.
JOB_TYPE_COLUMNS = {
    "kojo_job_type_id",
    "type_code",
    "name",
    "worker_uri",
    "cron_expression",
    "can_work_in_parallel",
    "default_importance",
    "schedule_limit",
    "schedule_limit_allowance",
    "is_enabled",
    "auto_complete_success",
    "auto_delete_interval_duration",
    "max_retries",
    "max_crashes",
    "timeout",
}
JOB_COLUMNS = {
    "kojo_job_id",
    "type_code",
    "name",
    "priority",
    "importance",
    "work_at_date_time",
    "next_state_request",
    "assigned_state",
    "previous_state",
    "worker_uri",
    "can_work_in_parallel",
    "last_transition_date_time",
    "times_worked",
    "times_retried",
    "times_held",
    "times_crashed",
    "times_panicked",
    "created_at_date_time",
    "completed_at_date_time",
    "delete_after_date_time",
    "payload",
    "unique_key",  # version 3
    "result",
    "progress",
    "progress_note",
    "awaited",
    "has_children",
    "started_at_date_time",  # version 5
}


def kojo_tables(app: kojo.App) -> set[str]:
    return {name for name in table_names(app.backend) if name.startswith("kojo_")}


def test_install_creates_the_tables_columns_and_indexes(database_url: str) -> None:
    app = kojo.App(database=database_url)
    assert kojo_tables(app) == set()
    assert app.install() == SCHEMA_VERSION
    assert kojo_tables(app) >= CORE_TABLES
    assert column_names(app.backend, "kojo_job_type") >= JOB_TYPE_COLUMNS
    assert column_names(app.backend, "kojo_job") >= JOB_COLUMNS
    # The claim path's partial indexes and the serial-type guard.
    indexes = index_names(app.backend)
    assert {"kojo_job_runnable", "kojo_job_serial_working", "kojo_job_unique"} <= indexes
    assert "kojo_job_ready" not in indexes  # version 1's claim index, dropped by version 2
    assert app.backend.schema_version() == SCHEMA_VERSION


def backend_at_version(database_url: str, last: int) -> Any:
    """The database's backend, with the schema installed as versions 1 to `last` left it."""
    backend = kojo.App(database=database_url).backend
    with backend.write():
        backend.execute("schema_version_create")
        for version in range(1, last + 1):
            backend._run_script(schema(backend.dialect, version))
            backend.execute("schema_version_set", {"version": version, "now": utcnow()})
    return backend


def test_install_upgrades_a_version_1_database_keeping_its_jobs(database_url: str) -> None:
    backend = backend_at_version(database_url, 1)
    assert "kojo_job_ready" in index_names(backend)
    # A type and a job as version 1 stored them (today's statements name later columns).
    now = utcnow()
    with backend.write() as conn:
        conn.execute(
            backend._prepare(
                "INSERT INTO kojo_job_type (type_code, name, worker_uri) VALUES ('q', 'q', :worker)"
            ),
            {"worker": f"{noop.__module__}:noop"},
        )
        job_id = int(
            conn.execute(
                backend._prepare(
                    "INSERT INTO kojo_job (type_code, name, priority, importance, "
                    "work_at_date_time, next_state_request, assigned_state, previous_state, "
                    "worker_uri, can_work_in_parallel, last_transition_date_time, "
                    "created_at_date_time, payload) VALUES ('q', 'q', 0, 0, :now, 'working', "
                    "'waiting', 'new', :worker, true, :now, :now, :payload) "
                    "RETURNING kojo_job_id"
                ),
                backend._convert_params(
                    {"now": now, "worker": f"{noop.__module__}:noop", "payload": '{"kept": 1}'}
                ),
            ).fetchone()["kojo_job_id"]
        )
    app = kojo.App(database=database_url)
    app.job_type("q")(noop)
    assert app.install() == SCHEMA_VERSION == 6
    indexes = index_names(app.backend)
    assert "kojo_job_ready" not in indexes and "kojo_job_runnable" in indexes
    assert "kojo_job_unique" in indexes and "result" in column_names(app.backend, "kojo_job")
    assert "rate_limit" in column_names(app.backend, "kojo_job_type")
    assert "kojo_rate_slot_free" in indexes
    assert "kojo_job_tally" in table_names(app.backend)
    owner = app.backend.register_owner(process_info())
    claimed = app.backend.job_claim(owner.id, 10, utcnow())
    assert [(row["kojo_job_id"], row["payload"]) for row in claimed] == [(job_id, {"kept": 1})]


def test_install_upgrades_a_version_4_database_to_keep_timelines(database_url: str) -> None:
    # Version 4's jobs have no started_at and no events: their timelines are read back
    # from their rows; once upgraded, a new transition is recorded (kojo_job_event).
    backend = backend_at_version(database_url, 4)
    assert "kojo_job_event" not in table_names(backend)
    assert "started_at_date_time" not in column_names(backend, "kojo_job")
    now = utcnow()
    with backend.write() as conn:
        conn.execute(
            backend._prepare(
                "INSERT INTO kojo_job_type (type_code, name, worker_uri) VALUES ('q', 'q', :worker)"
            ),
            {"worker": f"{noop.__module__}:noop"},
        )
        old_job = int(
            conn.execute(
                backend._prepare(
                    "INSERT INTO kojo_job (type_code, name, priority, importance, "
                    "work_at_date_time, next_state_request, assigned_state, previous_state, "
                    "worker_uri, can_work_in_parallel, last_transition_date_time, "
                    "created_at_date_time, payload) VALUES ('q', 'q', 0, 0, :now, 'none', "
                    "'complete_failed', 'working', :worker, true, :now, :now, NULL) "
                    "RETURNING kojo_job_id"
                ),
                backend._convert_params({"now": now, "worker": f"{noop.__module__}:noop"}),
            ).fetchone()["kojo_job_id"]
        )
    app = kojo.App(database=database_url)
    app.job_type("q")(noop)
    assert app.install() == SCHEMA_VERSION == 6
    assert "kojo_job_event" in table_names(app.backend)
    assert "kojo_job_event_job" in index_names(app.backend)
    assert [(s["from_state"], s["to_state"]) for s in app.job_timeline(old_job)] == [
        ("new", "waiting"),
        ("working", "complete_failed"),
    ]
    app.retry(old_job)
    steps = app.job_timeline(old_job)
    assert [(s["transition"], s["to_state"], s["recorded"]) for s in steps] == [
        ("created", "waiting", False),
        ("rerun", "waiting", True),
    ]


def test_install_upgrades_a_version_5_database_and_tallies_its_jobs_from_then_on(
    database_url: str,
) -> None:
    backend = backend_at_version(database_url, 5)
    assert "kojo_job_tally" not in table_names(backend)
    app = make_app(database_url, q={})  # installs version 6 over version 5
    assert backend.schema_version() == SCHEMA_VERSION == 6
    job_id = app.schedule("q")
    owner = app.backend.register_owner(process_info())
    with app.backend.write():
        (row,) = app.backend.job_claim(owner.id, 1, utcnow())
        row["auto_delete_interval_duration"] = "P1D"
        app.backend.job_complete_many([row], owner.id, utcnow())
    assert app.job(job_id)["assigned_state"] == "complete_success"
    (total,) = app.backend.fetchall("dashboard_tally_totals")
    assert (total["type_code"], total["outcome"], total["finished"]) == ("q", "complete_success", 1)


def test_install_twice_is_a_no_op(database_url: str) -> None:
    app = make_app(database_url, q={"default_importance": 4})
    job_id = app.schedule("q", payload={"keep": True})
    tables = kojo_tables(app)
    assert app.install() == SCHEMA_VERSION
    assert kojo.App(database=database_url).install() == SCHEMA_VERSION
    assert kojo_tables(app) == tables
    assert app.job(job_id)["payload"] == {"keep": True}
    assert app.type_row("q", max_age=0)["default_importance"] == 4
    versions = app.backend.fetchall("schema_version_get")
    assert versions == [{"version": SCHEMA_VERSION}]


def test_install_over_the_current_schema_neither_locks_nor_writes(database_url: str) -> None:
    # Every server start installs: with the schema up to date it is one read, so it
    # does not wait for the install lock or for a writer (here held by someone else).
    make_app(database_url)
    if database_url.startswith("sqlite"):
        holder: Any = sqlite3.connect(path_from_url(database_url), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    elif database_url.startswith("mysql"):
        holder = mysql_db.connect(database_url)
        lock = LockNames(mysql_db.name_of(database_url)).install
        holder.cursor().execute("SELECT GET_LOCK(%s, 10)", (lock,))
    else:
        holder = psycopg.connect(database_url, autocommit=True)
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, INSTALL_LOCK_KEY))
    try:
        app = kojo.App(database=database_url)
        started = time.monotonic()
        assert app.install() == SCHEMA_VERSION
        assert time.monotonic() - started < 1.0
        app.backend.close()
    finally:
        holder.close()


def test_concurrent_installs_all_succeed(database_url: str) -> None:
    errors: list[BaseException] = []
    versions: list[int] = []
    start = threading.Barrier(4)

    def install() -> None:
        try:
            app = kojo.App(database=database_url)
            start.wait()
            versions.append(app.install())
            app.backend.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=install) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert versions == [SCHEMA_VERSION] * 4
    assert kojo_tables(kojo.App(database=database_url)) >= CORE_TABLES


def test_uninstall_drops_everything(database_url: str) -> None:
    app = make_app(database_url, q={})
    app.schedule("q")
    app.uninstall()
    assert kojo_tables(app) == set()
    assert app.backend.schema_version() == 0
    app.uninstall()  # uninstalling an empty database is not an error
    # And it can be installed again from scratch.
    assert app.install() == SCHEMA_VERSION
    assert kojo.App(database=database_url).jobs() == []


def test_operations_without_the_schema_say_how_to_install(database_url: str) -> None:
    app = kojo.App(database=database_url)
    with pytest.raises(kojo.SchemaMissing, match="kojo db install"):
        app.jobs()
    with pytest.raises(kojo.SchemaMissing, match="kojo db install"):
        app.job(1)


def test_install_next_to_a_users_enum_column(postgres_url: str) -> None:
    # UseCase44: a database with types Doctrine did not know. Ours must not care either.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('happy', 'sad')")
        conn.execute("CREATE TABLE user_table (id serial PRIMARY KEY, feeling mood)")
        conn.execute("INSERT INTO user_table (feeling) VALUES ('happy')")
    app = make_app(postgres_url, q={})
    app.schedule("q")
    app.uninstall()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute("SELECT feeling::text FROM user_table").fetchone()
    assert row == ("happy",)


def test_unsupported_urls_are_refused_by_name() -> None:
    for url in [
        "mysql://localhost",
        "mysql://h:port/db",
        "kojo.db",
        "sqlite:///:memory:",
        "redis://x",
    ]:
        with pytest.raises(kojo.DatabaseError) as raised:
            open_backend(url)
        assert url in str(raised.value)


def a_newer_schema(database_url: str) -> kojo.App:
    """An installed database whose schema a newer kojo has moved to version 7."""
    app = make_app(database_url, q={})
    with app.backend.write():
        app.backend.execute("schema_version_set", {"version": 7, "now": "2026-01-01"})
    return app


def test_install_refuses_a_newer_schema(database_url: str) -> None:
    app = a_newer_schema(database_url)
    for attempt in (app.install, kojo.App(database=database_url).install):
        with pytest.raises(kojo.SchemaTooNew) as raised:
            attempt()
        message = str(raised.value)
        assert "\n" not in message
        assert "version 7" in message and f"({SCHEMA_VERSION})" in message, message
        assert "upgrade kojo" in message
    assert isinstance(raised.value, kojo.DatabaseError)
    # Nothing was written: the newer version is still the one recorded.
    assert app.backend.schema_version() == 7


def test_require_schema_refuses_a_newer_schema_and_a_missing_one(database_url: str) -> None:
    bare = kojo.App(database=database_url)
    with pytest.raises(kojo.SchemaMissing):
        bare.backend.require_schema()
    assert bare.backend.check_schema() == 0  # missing is not "too new"
    app = a_newer_schema(database_url)
    with pytest.raises(kojo.SchemaTooNew, match="version 7, newer than this kojo knows"):
        app.backend.require_schema()
    with pytest.raises(kojo.SchemaTooNew):
        app.backend.check_schema()


def test_library_calls_refuse_a_newer_schema_in_one_line(database_url: str) -> None:
    a_newer_schema(database_url)
    app = kojo.App(database=database_url)  # a program using kojo without the CLI
    app.job_type("q")(noop)
    for call in (lambda: app.schedule("q"), app.jobs, lambda: app.publish("c", 1)):
        with pytest.raises(kojo.SchemaTooNew) as raised:
            call()
        message = str(raised.value)
        assert "\n" not in message
        assert "version 7" in message and f"({SCHEMA_VERSION})" in message, message


def test_the_schema_is_checked_once_per_connection_not_per_call(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(database_url, q={})
    backend = app.backend
    checks: list[int] = []
    original = backend._schema_version_on

    def counted(conn: object) -> int:
        checks.append(1)
        return original(conn)

    monkeypatch.setattr(backend, "_schema_version_on", counted)
    for _ in range(5):
        app.schedule("q")
    assert checks == []  # this thread's connection was checked when it opened
    thread = threading.Thread(target=lambda: [app.schedule("q") for _ in range(5)])
    thread.start()
    thread.join()
    assert checks == [1]  # a new thread's connection: checked once


def test_require_schema_accepts_the_current_schema(database_url: str) -> None:
    app = make_app(database_url, q={})
    app.backend.require_schema()
    assert app.backend.check_schema() == SCHEMA_VERSION
