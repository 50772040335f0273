"""Which errors mean "the database is unavailable, try again later", on each backend, and
the backoff every kojo loop shares."""

from __future__ import annotations

import errno
import logging
import sqlite3
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors

import kojo
from kojo.backends import open_backend
from kojo.backends.availability import Backoff


def test_sqlite_busy_past_the_timeout_is_unavailable_and_a_constraint_is_not(
    sqlite_url: str, tmp_path: Path
) -> None:
    backend = open_backend(sqlite_url)
    backend.install()
    holder = sqlite3.connect(tmp_path / "kojo.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    impatient = sqlite3.connect(tmp_path / "kojo.db", isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as busy:
        impatient.execute("INSERT INTO kojo_schema_version VALUES (99, 'x')")
    assert backend.is_unavailable(busy.value)
    holder.execute("ROLLBACK")
    impatient.execute("INSERT INTO kojo_schema_version VALUES (99, 'x')")
    with pytest.raises(sqlite3.IntegrityError) as duplicate:
        impatient.execute("INSERT INTO kojo_schema_version VALUES (99, 'x')")
    assert not backend.is_unavailable(duplicate.value)
    for conn in (holder, impatient):
        conn.close()
    backend.close()


def test_a_sqlite_folder_that_went_away_is_unavailable_until_it_is_back(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    backend = open_backend(f"sqlite:///{folder}/kojo.db")
    backend.install()
    backend.close()
    folder.rename(tmp_path / "elsewhere")
    with pytest.raises(kojo.DatabaseUnavailable) as gone:
        backend.schema_version()
    assert backend.is_unavailable(gone.value)
    assert str(folder) in str(gone.value)
    (tmp_path / "elsewhere").rename(folder)
    assert backend.schema_version() >= 1
    backend.close()


def test_postgres_connection_and_server_errors_are_unavailable(postgres_url: str) -> None:
    backend = open_backend(postgres_url)
    for exc in (
        psycopg.OperationalError("consuming input failed: server closed the connection"),
        pg_errors.AdminShutdown("terminating connection due to administrator command"),
        pg_errors.CannotConnectNow("the database system is starting up"),
        pg_errors.DiskFull("could not extend file"),
        pg_errors.DeadlockDetected("deadlock detected"),
        pg_errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        kojo.DatabaseUnavailable("cannot connect"),
        OSError(errno.ENOSPC, "No space left on device"),
    ):
        assert backend.is_unavailable(exc), exc
    for exc in (
        pg_errors.UniqueViolation("duplicate key"),
        pg_errors.UndefinedTable("relation does not exist"),
        pg_errors.SyntaxError("syntax error"),
        kojo.InvalidArgument("bad"),
        ValueError("bad"),
    ):
        assert not backend.is_unavailable(exc), exc
    # A real refused connection, as when the server is down.
    down = open_backend("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(kojo.DatabaseUnavailable) as refused:
        down.schema_version()
    assert down.is_unavailable(refused.value)
    assert "\n" not in str(refused.value)
    backend.close()


def test_backoff_grows_to_its_cap_with_jitter_and_logs_once_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("kojo.test")
    backoff = Backoff("Tester", log, base=0.05, cap=1.0)
    with caplog.at_level(logging.INFO, logger="kojo.test"):
        delays = [backoff.failed(OSError(errno.EIO, "I/O error")) for _ in range(12)]
        backoff.succeeded()
        backoff.succeeded()
    assert 0.025 <= delays[0] <= 0.05
    assert all(0.5 <= d <= 1.0 for d in delays[6:])
    assert max(delays) <= 1.0
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "the database is unavailable (OSError: [Errno 5] I/O error)" in lines[0]
    assert "answers again" in lines[1]
