"""PostgreSQL's runtime errors reach the `kojo` command as one line with exit 1, and never
show the password: a wrong password, a database that does not exist, a server that is
down, a role without rights on a table. Against a private cluster that asks for
passwords (the shared test server trusts everyone)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import kojo
from cli_runner import run
from pg_cluster import Cluster

PASSWORD = "hunter2-xyzzy"
WRONG = "not-the-password-42"
COMMANDS = [("types", "list"), ("jobs", "list"), ("jobs", "schedule", "q"), ("ps",)]

# One xdist worker runs them all, so that the module's private cluster starts once.
pytestmark = pytest.mark.xdist_group("private_postgres_cluster")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster() as cluster:
        hba = cluster.data / "pg_hba.conf"
        hba.write_text("host all bob 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        cluster.restart()
        cluster.execute(f"CREATE ROLE bob LOGIN PASSWORD '{PASSWORD}'")
        url = cluster.create_database()
        app = kojo.App(database=url)
        app.install()
        app.backend.close()
        with psycopg.connect(url, autocommit=True) as conn:
            # bob may read the schema version and job types, not the jobs.
            conn.execute("GRANT SELECT ON kojo_schema_version, kojo_job_type TO bob")
        yield cluster


def bob(cluster: Cluster, password: str = PASSWORD, database: str = "kojo") -> str:
    return f"postgresql://bob:{password}@127.0.0.1:{cluster.port}/{database}"


def check_one_line(result: subprocess.CompletedProcess[str], expected: str, *secrets: str) -> None:
    lines = result.stderr.splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    for secret in secrets:
        assert secret not in result.stderr + result.stdout


@pytest.mark.parametrize("args", COMMANDS)
def test_a_wrong_password_is_one_line(cluster: Cluster, tmp_path: Path, args: tuple[str]) -> None:
    result = run(bob(cluster, WRONG), tmp_path, *args)
    check_one_line(result, 'password authentication failed for user "bob"', WRONG)


@pytest.mark.parametrize("args", COMMANDS)
def test_a_missing_database_is_one_line(cluster: Cluster, tmp_path: Path, args: tuple[str]) -> None:
    result = run(bob(cluster, database="no_such_db"), tmp_path, *args)
    check_one_line(result, 'database "no_such_db" does not exist', PASSWORD)


@pytest.mark.parametrize("args", COMMANDS)
def test_a_server_that_is_down_is_one_line(tmp_path: Path, args: tuple[str]) -> None:
    down = f"postgresql://bob:{PASSWORD}@127.0.0.1:1/kojo"  # nothing listens on port 1
    result = run(down, tmp_path, *args)
    check_one_line(result, "Connection refused", PASSWORD)


@pytest.mark.parametrize(
    ("args", "table"),
    [
        (("jobs", "list"), "kojo_job"),
        (("jobs", "schedule", "q"), "kojo_job"),
        (("ps",), "kojo_process"),
        (("publish", "c", "1"), "kojo_message"),
        (("ctl", "pause", "q"), "kojo_job_type"),
    ],
)
def test_a_table_without_rights_is_one_line(
    cluster: Cluster, tmp_path: Path, args: tuple[str], table: str
) -> None:
    result = run(bob(cluster), tmp_path, *args)
    check_one_line(result, f"permission denied for table {table}", PASSWORD)
