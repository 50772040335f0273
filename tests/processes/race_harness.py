"""The process-tree harness (tests/processes/workers_harness.py) for the stress tests:
a `Tree` whose servers and test-side App use `race_workers`, plain SQL on the
test's database, and the few questions the race tests ask of it."""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import race_workers
from workers_harness import TITLE, Proc, Server, Tree, _read_proc

import kojo

HERE = Path(__file__).resolve().parent
APP_REF = "race_workers:app"
# The first key of kojo's two-key advisory locks ('kojo'); an anchor holds (this, its id).
LOCK_NAMESPACE = 0x6B6F6A6F


class StressTree(Tree):
    """A `Tree` whose servers run `race_workers:app`."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.tmp_path = tmp_path
        self.record_path = tmp_path / "record.jsonl"
        self.app = race_workers.register(kojo.App(database=url))
        self.servers: list[Server] = []
        self.sql = Sql(url)

    def env(self, tag: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = super().env(tag, extra)
        env["KOJO_APP"] = APP_REF
        return env

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.sql.close()

    # -- the process table -------------------------------------------------------------

    def job_processes(self) -> list[Proc]:
        """Live job processes of every server of this tree (from /proc titles)."""
        found = []
        for server in self.servers:
            for proc in server.tree():
                match = TITLE.match(proc.cmdline)
                if match and match["kind"] == "job":
                    found.append(proc)
        return found

    # -- the database ------------------------------------------------------------------

    def states(self) -> Counter[str]:
        return Counter(
            {str(state): int(n) for state, n in self.sql.rows(STATE_COUNTS)}  # type: ignore[misc]
        )

    def orphaned_working(self) -> list[tuple[Any, ...]]:
        """`working` jobs whose owner has no kojo_process row or whose process is gone.

        Every kojo process of a test runs on this machine, so "gone" is /proc's answer.
        """
        rows = self.sql.rows(
            "SELECT j.kojo_job_id, j.type_code, j.kojo_process_id, p.process_id "
            "FROM kojo_job j LEFT JOIN kojo_process p ON p.kojo_process_id = j.kojo_process_id "
            "WHERE j.assigned_state = 'working' ORDER BY j.kojo_job_id"
        )
        orphans = []
        for job_id, type_code, owner, pid in rows:
            proc = None if pid is None else _read_proc(int(pid))
            if proc is None or not proc.alive:
                orphans.append((job_id, type_code, owner, pid))
        return orphans


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_age(pid: int) -> float | None:
    """Seconds since `pid` started (None if it is gone), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return None
    started = int(stat[stat.rindex(")") + 2 :].split()[19]) / CLOCK_TICKS
    return uptime - started


def pid_dead(pid: int) -> bool:
    """Whether `pid` has exited (a zombie counts as dead)."""
    proc = _read_proc(pid)
    return proc is None or not proc.alive


STATE_COUNTS = "SELECT assigned_state, count(*) FROM kojo_job GROUP BY assigned_state"


class Sql:
    """Plain SQL on the test's database, on a connection of its own (autocommit)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith("postgres")
        self._conn: Any = None

    def _connection(self) -> Any:
        if self._conn is None:
            if self.postgres:
                self._conn = psycopg.connect(self.url, autocommit=True)
            else:
                path = urlsplit(self.url).path[1:]  # sqlite:////abs -> /abs
                self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        return self._conn

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """`query` with `?` placeholders on either backend."""
        if self.postgres:
            query = query.replace("?", "%s")
        with closing(self._connection().execute(query, params)) as cur:
            return [tuple(r) for r in cur.fetchall()]

    def scalar(self, query: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(query, params)
        return rows[0][0] if rows else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@contextmanager
def admin_connection(url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        yield conn
