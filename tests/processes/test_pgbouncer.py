"""A server whose query connections go through PgBouncer in transaction mode, and whose
anchor goes to the database directly (KOJO_DATABASE_SESSION_URL): it works jobs, a killed
job process's job is crashed and re-run at once, and the host holds one session.

Runs where a `pgbouncer` binary is installed (Debian: the `pgbouncer` package)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from test_connections import connections_by_kind
from workers_harness import Tree, wait_for

import kojo
from ports import free_port


@pytest.fixture
def bouncer_url(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    """`postgres_url` through a PgBouncer of this test's own, in transaction mode."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if binary is None:
        pytest.skip("no pgbouncer installed")
    parts = urlsplit(postgres_url)
    if parts.port is None:
        pytest.skip("PgBouncer is pointed at a TCP database URL here")
    port = free_port()
    user = parts.username or "postgres"
    folder = tmp_path / "pgbouncer"
    folder.mkdir()
    (folder / "users.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={parts.hostname} port={parts.port}\n\n[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\npool_mode = transaction\n"
        "default_pool_size = 20\nmax_client_conn = 200\n"
        "ignore_startup_parameters = options\n"
    )
    for path in (tmp_path, folder, *folder.iterdir()):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # PgBouncer refuses root: nobody
    args = [binary, *(["-u", "nobody"] if os.geteuid() == 0 else []), "pgbouncer.ini"]
    log = open(folder / "pgbouncer.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(args, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    try:

        def listening() -> bool:
            assert process.poll() is None, (folder / "pgbouncer.log").read_text()
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, 10.0, "pgbouncer to listen")
        yield urlunsplit(parts._replace(netloc=f"{parts.netloc.rsplit(':', 1)[0]}:{port}"))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def test_a_server_works_through_pgbouncer_with_one_session_to_the_database(
    postgres_url: str, bouncer_url: str, tmp_path: Path
) -> None:
    with closing(Tree(bouncer_url, tmp_path)) as tree:
        server = tree.start(max_processes=2, extra_env={"KOJO_DATABASE_SESSION_URL": postgres_url})
        direct = connections_by_kind(postgres_url, server)
        assert direct == Counter({"server": 1}), direct  # the anchor, and nothing else

        ids = tree.app.schedule_many("noop", [{} for _ in range(300)])
        wait_for(lambda: len(tree.records("end")) == 300, 30.0, "300 jobs worked")
        assert Counter(r["id"] for r in tree.records("start")) == Counter(ids)

        job_id = tree.app.schedule("victim")
        (first,) = tree.wait_record("start", job_id, 10.0)
        killed_at = time.monotonic()
        os.kill(first["pid"], signal.SIGKILL)
        second = tree.wait_record("start", job_id, 5.0, count=2)[1]
        assert time.monotonic() - killed_at < 5.0
        assert second["times_crashed"] == 1


def test_a_client_through_pgbouncer_that_was_not_told_so_still_works(
    bouncer_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client (a web app scheduling jobs) pointed at PgBouncer without
    KOJO_DATABASE_SESSION_URL: psycopg's prepared statements are lost between
    transactions; kojo stops preparing on that connection and repeats the statement
    (this made one server start in three hang: the test's own reads kept failing)."""
    other = kojo.App(bouncer_url)
    with closing(Tree(bouncer_url, tmp_path)) as tree:
        tree.app.install()
        tree.app.register_job_types()
        ids = []
        for n in range(60):  # three connections through a pool of up to 20 server sessions
            ids.append(tree.app.schedule("noop", payload={"n": n}))
            assert tree.app.job(ids[-1])["assigned_state"] == "waiting"
            assert other.job(ids[-1])["kojo_job_id"] == ids[-1]
            assert len(other.jobs(limit=1000)) == n + 1
    other.backend.close()
    lost = [r for r in caplog.records if "prepared statement was lost" in r.getMessage()]
    assert len(lost) <= 1, lost


def test_a_session_url_to_another_database_is_refused_in_one_line(
    postgres_url: str, bouncer_url: str, tmp_path: Path
) -> None:
    other = urlunsplit(urlsplit(postgres_url)._replace(path="/postgres"))
    with closing(Tree(bouncer_url, tmp_path)) as tree:
        server = tree.start(extra_env={"KOJO_DATABASE_SESSION_URL": other}, ready=False)
        assert server.wait(30.0) != 0
        assert "do not reach the same database" in server.stderr()
