"""A private PostgreSQL cluster that a test (or bench/chaos.py) may restart, stop and
start at will, on 127.0.0.1 and a free port, in a folder of its own.

The suite's shared server (scripts/with-postgres) must stay up for the other tests, so the
fault tests bring their own. Server binaries are found as scripts/with-postgres finds
them; as root, the server runs as the `postgres` user (initdb refuses root).

    with Cluster() as cluster:
        url = cluster.create_database()
        cluster.restart()         # pg_ctl restart -m fast
        cluster.stop(); cluster.start()
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

import psycopg

from ports import free_port


def bindir() -> Path:
    found = os.environ.get("KOJO_PG_BINDIR")
    if found:
        return Path(found)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL server binaries not found (set KOJO_PG_BINDIR)")


class Cluster:
    def __init__(self, settings: dict[str, str] | None = None) -> None:
        # Not under pytest's tmp_path: the server's user must be able to reach it.
        self.folder = Path(tempfile.gettempdir()) / f"kojo-pg-{uuid.uuid4().hex[:12]}"
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.bin = bindir()
        self.port = free_port()
        self.settings = settings or {}
        self._as_root = os.geteuid() == 0

    # -- running tools as the server's user -----------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> None:
        self.folder.mkdir(parents=True)
        if self._as_root:
            shutil.chown(self.folder, "postgres")
            os.chmod(self.folder, 0o755)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        )
        lines = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.folder}'",
            "max_connections = 200",
            "fsync = on",
            *(f"{key} = {value}" for key, value in self.settings.items()),
        ]
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n" + "\n".join(lines) + "\n")

    def start(self) -> None:
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def restart(self, mode: str = "fast") -> None:
        self._run(
            "pg_ctl",
            "restart",
            "-D",
            str(self.data),
            "-m",
            mode,
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
        )

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str = "kojo") -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def execute(self, statement: str) -> list[tuple[object, ...]]:
        """Run one statement as the superuser; its rows."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            cursor = conn.execute(statement)
            return list(cursor.fetchall()) if cursor.description else []

    def terminate(self, database: str = "kojo") -> int:
        """pg_terminate_backend every session of `database`; how many."""
        rows = self.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )
        return int(rows[0][0])  # type: ignore[call-overload]

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.execute("SELECT 1")
                return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def __enter__(self) -> Cluster:
        self.init()
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
