"""The `kojo` command refuses a database whose kojo schema is newer than it knows: every
command, `db install` and `server start` included, in one line with exit 1. Through a real
subprocess, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

import kojo
from cli_runner import run
from kojo.sql import SCHEMA_VERSION

NEWER = SCHEMA_VERSION + 6


@pytest.fixture
def newer_database(database_url: str, tmp_path: Path) -> str:
    """An installed database that a newer kojo has moved to schema version NEWER."""
    installed = run(database_url, tmp_path, "db", "install")
    assert installed.returncode == 0, installed.stderr
    app = kojo.App(database=database_url)
    with app.backend.write():
        app.backend.execute("schema_version_set", {"version": NEWER, "now": "2026-01-01"})
    app.backend.close()
    return database_url


@pytest.mark.parametrize(
    "args",
    [
        ("db", "install"),
        ("db", "uninstall", "--yes"),
        ("types", "list"),
        ("jobs", "list"),
        ("jobs", "schedule", "q"),
        ("jobs", "show", "1"),
        ("ps",),
        ("locks",),
        ("server", "start", "--max-processes", "1"),
    ],
)
def test_every_command_refuses_a_newer_schema(
    newer_database: str, tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = run(newer_database, tmp_path, *args)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: the database's kojo schema is version {NEWER}, newer than this kojo knows "
        f"({SCHEMA_VERSION}): upgrade kojo"
    ], result.stderr
    # Nothing was dropped or moved back: the newer kojo's database is as it was.
    assert kojo.App(database=newer_database).backend.schema_version() == NEWER


def test_commands_on_a_missing_schema_still_say_install(sqlite_url: str, tmp_path: Path) -> None:
    result = run(sqlite_url, tmp_path, "jobs", "list")
    assert result.returncode == 1
    assert "kojo db install" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert run(sqlite_url, tmp_path, "db", "install").returncode == 0
