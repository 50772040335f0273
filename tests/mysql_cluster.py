"""A private MariaDB server that a test (or bench/chaos.py) may restart, stop and start at
will, on 127.0.0.1 and a free port, in a folder of its own: tests/pg_cluster.py's
Cluster for MySQL.

The suite's shared server (scripts/with-mariadb) must stay up for the other tests, so the
fault tests bring their own. Binaries are found and the data directory is made as
scripts/with-mariadb does (mariadb-install-db); as root, the server runs as the `mysql`
user (mariadbd refuses root).

    with MariaDB() as server:
        url = server.create_database()
        server.restart()                    # SIGTERM, wait for the shutdown, start
        server.stop("immediate"); server.start()   # SIGKILL: a crash, InnoDB recovers

Stop modes are pg_ctl's words: "fast" is a clean shutdown (SIGTERM, what
`mariadb-admin shutdown` does: sessions are killed, InnoDB flushes and the process
exits), "immediate" is SIGKILL of mariadbd (InnoDB recovers from its redo log at the
next start).

The server skips the grant tables: any user name connects without a password, with
every privilege (the faults under test are the server's, not its access control), and
there is no user to create before the first connection.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import mysql_db
from ports import free_port

STOP_MODES = ("fast", "immediate")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
BIND_TRIES = 5  # the port taken meanwhile by someone else: start again on it


def find_binary(*names: str) -> str | None:
    """As scripts/with-mariadb's find_bin: on PATH, else in /usr/sbin."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        if os.access(f"/usr/sbin/{name}", os.X_OK):
            return f"/usr/sbin/{name}"
    return None


def binaries() -> tuple[str, str]:
    """(the server, mariadb-install-db), or a RuntimeError saying what to install."""
    server = find_binary("mariadbd", "mysqld")
    install = find_binary("mariadb-install-db", "mysql_install_db")
    if not server or not install:
        raise RuntimeError("MariaDB server binaries not found: install mariadb-server")
    return server, install


class MariaDB:
    def __init__(self, settings: dict[str, str] | None = None) -> None:
        # Not under pytest's tmp_path: the server's user must be able to reach it.
        self.folder = Path(tempfile.gettempdir()) / f"kojo-mariadb-{uuid.uuid4().hex[:12]}"
        self.data = self.folder / "data"
        self.log = self.folder / "mariadb.log"
        self.socket = self.folder / "mariadbd.sock"
        self.server_bin, self.install_bin = binaries()
        self.port = free_port()
        self.settings = settings or {}
        self.process: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0

    # -- the server's process -------------------------------------------------------------

    def _user(self) -> dict[str, Any]:
        """Popen's arguments that run a command as the server's user."""
        if not self._as_root:
            return {}
        return {"user": "mysql", "group": "mysql", "extra_groups": []}

    def _options(self) -> list[str]:
        # As scripts/with-mariadb, for a fast start: a small buffer pool and redo log, one
        # shared tablespace, no doublewrite buffer, no binary log, no name resolution.
        options = {
            "datadir": str(self.data),
            "socket": str(self.socket),
            "pid-file": str(self.folder / "mariadbd.pid"),
            "port": str(self.port),
            "bind-address": "127.0.0.1",
            "log-error": str(self.log),
            "max-connections": "500",
            "innodb-buffer-pool-size": "32M",
            "innodb-log-file-size": "16M",
            "innodb-file-per-table": "0",
            "innodb-doublewrite": "0",
            "character-set-server": "utf8mb4",
            "collation-server": "utf8mb4_bin",
            "transaction-isolation": "READ-COMMITTED",
            **self.settings,
        }
        flags = ["--skip-grant-tables", "--skip-log-bin", "--skip-name-resolve"]
        return ["--no-defaults", *(f"--{key}={value}" for key, value in options.items()), *flags]

    def init(self) -> None:
        self.folder.mkdir(parents=True)
        if self._as_root:
            shutil.chown(self.folder, "mysql", "mysql")
            os.chmod(self.folder, 0o755)
        user = "mysql" if self._as_root else None
        subprocess.run(
            [
                self.install_bin,
                "--no-defaults",
                f"--datadir={self.data}",
                *([f"--user={user}"] if user else []),
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--innodb-log-file-size=16M",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            **self._user(),
        )

    def start(self) -> None:
        """Start mariadbd and wait until it answers (a few tenths of a second)."""
        if self.running():
            raise RuntimeError(f"MariaDB on port {self.port} is running already")
        for _ in range(BIND_TRIES):
            self.log.unlink(missing_ok=True)
            # A session of its own: a Ctrl-C aimed at the tests must not stop it.
            self.process = subprocess.Popen(
                [self.server_bin, *self._options()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                **self._user(),
            )
            if self._wait_ready(self.process):
                return
            if "already in use" not in self.server_log():
                break
            time.sleep(0.5)
        raise RuntimeError(f"MariaDB did not start on port {self.port}: {self.server_log()}")

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                self.execute("SELECT 1")
                return True
            except Exception:
                time.sleep(0.02)
        process.kill()
        process.wait()
        return False

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, mode: str = "fast") -> None:
        """Shut the server down ("fast": SIGTERM, a clean shutdown; "immediate": SIGKILL,
        a crash) and wait until its process has exited."""
        if mode not in STOP_MODES:
            raise ValueError(f"unknown stop mode {mode!r}: choose from {', '.join(STOP_MODES)}")
        process = self.process
        if process is None or not self.running():
            raise RuntimeError(f"MariaDB on port {self.port} is not running")
        process.send_signal(signal.SIGTERM if mode == "fast" else signal.SIGKILL)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(
                f"MariaDB on port {self.port} did not shut down in {STOP_TIMEOUT:g} s"
            ) from None

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    # -- SQL --------------------------------------------------------------------------------

    @property
    def admin_url(self) -> str:
        return f"mysql://kojo@127.0.0.1:{self.port}/mysql"

    def create_database(self, name: str = "kojo") -> str:
        self.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        return mysql_db.with_database(self.admin_url, name)

    def execute(self, statement: str) -> list[tuple[Any, ...]]:
        """Run one statement; its rows."""
        conn = mysql_db.connect(self.admin_url)
        try:
            cursor = conn.cursor()
            cursor.execute(statement)
            return list(cursor.fetchall())
        finally:
            conn.close()

    def kill_sessions(self, database: str = "kojo") -> int:
        """KILL every session of `database`; how many."""
        return mysql_db.kill_sessions(self.admin_url, database)

    def __enter__(self) -> MariaDB:
        self.init()
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.running():
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
