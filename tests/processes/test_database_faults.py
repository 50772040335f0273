"""The database goes away; kojo stays: restarts, a database down at start, killed sessions,
a full disk. Real servers: a PostgreSQL (tests/pg_cluster.py) or a MariaDB
(tests/mysql_cluster.py) of the test's own that the test restarts, stops and whose
sessions it kills, and a small tmpfs for SQLite.

Each test asserts what a user relies on: the server never exits, every job ends
complete_success, none is panicked or counted as crashed because of the outage, and a
job starts again soon after the database is back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import pytest
from workers_harness import Server, Tree, wait_for

import kojo
import mysql_cluster
import mysql_db
from mysql_cluster import MariaDB
from pg_cluster import Cluster

T = TypeVar("T")
JOBS = 600
# A private server of either kind: create_database(), restart/stop(mode), start().
DatabaseServer = Cluster | MariaDB


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Cluster() as own:
        yield own


@pytest.fixture(params=["postgres", "mysql"])
def own_server(request: pytest.FixtureRequest) -> Iterator[DatabaseServer]:
    """A private PostgreSQL or MariaDB (the "mysql" ones run in the process tests' mysql
    group: tests/processes/conftest.py)."""
    if request.param == "postgres":
        with Cluster() as postgres:
            yield postgres
        return
    try:
        mysql_cluster.binaries()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    with MariaDB() as mariadb:
        yield mariadb


@pytest.fixture
def fault_tree(own_server: DatabaseServer, tmp_path: Path) -> Iterator[Tree]:
    with closing(Tree(own_server.create_database(), tmp_path)) as harness:
        yield harness


def patiently(action: Callable[[], T], timeout: float = 30.0) -> T:
    """The test's own queries ride through the outage too."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except kojo.DatabaseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def all_done(tree: Tree, ids: list[int], timeout: float) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        rows = patiently(lambda: tree.app.jobs(limit=100_000))
        mine = [r for r in rows if r["kojo_job_id"] in set(ids)]
        finished = all(r["assigned_state"] == "complete_success" for r in mine)
        return mine if finished and len(mine) == len(ids) else None

    def left() -> str:
        rows = patiently(lambda: tree.app.jobs(limit=100_000))
        return str(Counter(r["assigned_state"] for r in rows))

    rows: list[dict[str, Any]] = wait_for(done, timeout, left)
    return rows


def first_start_after(tree: Tree, moment: float) -> float:
    """Seconds from `moment` (time.time()) to the first job start recorded after it."""
    starts = [r["t"] for r in tree.records("start") if r["t"] >= moment]
    return min(starts) - moment


def assert_healthy_outcome(tree: Tree, server: Server, rows: list[dict[str, Any]]) -> None:
    assert server.exited() is None, server.stderr()
    assert {r["times_crashed"] for r in rows} == {0}, "an outage was counted against a job"
    assert not [r for r in rows if r["assigned_state"] == "panicked"]
    ends = Counter(r["id"] for r in tree.records("end"))
    assert set(ends) == {r["kojo_job_id"] for r in rows}
    # A job that ran twice was re-run after its process lost its registration: seen as
    # a job worked twice, never two ends of one claim.
    twice = {job_id for job_id, n in ends.items() if n > 1}
    worked = {r["kojo_job_id"]: r["times_worked"] for r in rows}
    assert all(worked[job_id] >= ends[job_id] for job_id in twice)
    assert "Traceback" not in server.stderr()
    # Every process rode through: none failed or died because of the database.
    failures = [m for m in server.messages() if "process failed" in m or " died (" in m]
    assert not failures, failures


def test_a_database_restart_under_load_stops_nothing_and_loses_nothing(
    own_server: DatabaseServer, fault_tree: Tree
) -> None:
    tree = fault_tree
    server = tree.start(max_processes=2)
    ids = tree.app.schedule_many("noop", [{"seconds": 0.01}] * JOBS)
    wait_for(lambda: len(tree.records("end")) >= 100, 30.0, "the first hundred jobs")
    own_server.restart("fast")
    back = time.time()
    rows = all_done(tree, ids, 90.0)
    assert_healthy_outcome(tree, server, rows)
    delay = first_start_after(tree, back)
    assert delay < 5.0, f"the first job after the restart started {delay:.2f} s late"
    messages = server.messages()
    assert any("database is unavailable" in m for m in messages)
    assert any("answers again" in m for m in messages)
    # Every process of the tree is registered again (new owners: the old ones died).
    tree.wait_ready(server)


def test_a_server_started_while_the_database_is_down_waits_for_it(
    own_server: DatabaseServer, fault_tree: Tree
) -> None:
    tree = fault_tree
    tree.app.install()
    ids = tree.app.schedule_many("noop", [{}] * 20)
    tree.app.backend.close()
    own_server.stop("fast")
    server = tree.start(max_processes=2, ready=False)
    wait_for(
        lambda: any("database is unavailable" in m for m in server.messages()),
        15.0,
        "the server to say it waits for the database",
    )
    assert server.exited() is None, server.stderr()
    time.sleep(1.0)  # it keeps waiting
    assert server.exited() is None, server.stderr()
    own_server.start()
    back = time.time()
    rows = all_done(tree, ids, 30.0)
    assert_healthy_outcome(tree, server, rows)
    assert first_start_after(tree, back) < 5.0
    tree.wait_ready(server)


def test_killed_sessions_are_ridden_through(cluster: Cluster, tmp_path: Path) -> None:
    with closing(Tree(cluster.create_database(), tmp_path)) as tree:
        ride_through_killed_sessions(tree, cluster.terminate)


def test_killed_mysql_sessions_are_ridden_through(mysql_url: str, tmp_path: Path) -> None:
    """KILL of every session of the test's database (anchors, whose named locks go with
    them, and query connections) on the shared server: MySQL's pg_terminate_backend."""
    admin, name = mysql_db.admin_url_from_env(), mysql_db.name_of(mysql_url)
    assert admin
    with closing(Tree(mysql_url, tmp_path)) as tree:
        ride_through_killed_sessions(tree, lambda: mysql_db.kill_sessions(admin, name))


def ride_through_killed_sessions(tree: Tree, kill_all: Callable[[], int]) -> None:
    server = tree.start(max_processes=2)
    ids = tree.app.schedule_many("noop", [{"seconds": 0.005}] * JOBS)
    kills = 0
    deadline = time.monotonic() + 60
    while len({r["id"] for r in tree.records("end")}) < JOBS // 2:
        assert server.exited() is None, f"the server exited: {server.stderr()}"
        assert time.monotonic() < deadline, "the jobs stopped progressing"
        kills += kill_all()  # every kojo session, the test's own included
        time.sleep(1.0)
    rows = all_done(tree, ids, 60.0)
    assert kills > 0
    assert_healthy_outcome(tree, server, rows)
    tree.wait_ready(server)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs (root only, as in CI); skipped where mounting is not allowed."""
    folder = tmp_path / "disk"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24M", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> Path:
    """Fill the disk up (a ballast file, however much room is left); its path."""
    ballast = folder / "ballast"
    try:
        with open(ballast, "ab") as out:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
    except OSError:
        pass  # full (even the file's creation may fail when the disk already is)
    return ballast


def test_a_full_disk_under_sqlite_pauses_work_and_loses_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    tree = Tree(f"sqlite:///{small_disk}/kojo.db", tmp_path)
    try:
        server = tree.start(max_processes=2)
        ids = tree.app.schedule_many("noop", [{"seconds": 0.002}] * 2000)
        wait_for(lambda: len(tree.records("end")) >= 50, 30.0, "the first jobs")
        ballast = _fill(small_disk)
        # A client registering while the disk is full fails in one line, and works once
        # there is room again (its failed registration leaves nothing locked behind).
        client = kojo.App(database=tree.url)
        with pytest.raises(kojo.DatabaseUnavailable):
            client.mutex("while-full", timeout=0).acquire()
        wait_for(
            lambda: any("database is unavailable" in m for m in server.messages()),
            30.0,
            "a process to meet the full disk",
        )
        time.sleep(2.0)  # the disk stays full for a while
        assert server.exited() is None, server.stderr()
        ballast.unlink(missing_ok=True)
        freed = time.time()
        client.mutex("while-full", timeout=0).acquire().release()
        client.backend.close()
        rows = all_done(tree, ids, 120.0)
        assert_healthy_outcome(tree, server, rows)
        assert first_start_after(tree, freed) < 5.0
        check = subprocess.run(
            [
                "python3",
                "-c",
                f"import sqlite3; print(sqlite3.connect('{small_disk}/kojo.db')"
                ".execute('PRAGMA integrity_check').fetchone()[0])",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert check.stdout.strip() == "ok"
    finally:
        tree.close()


def test_locks_ride_through_a_database_restart(own_server: DatabaseServer) -> None:
    url = own_server.create_database()
    holder_app, waiter_app = kojo.App(database=url), kojo.App(database=url)
    holder_app.install()
    held = holder_app.mutex("m", timeout=0).acquire()
    outcome: dict[str, Any] = {}

    def wait_for_it() -> None:
        try:
            outcome["lease"] = waiter_app.mutex("m", timeout=60).acquire()
        except BaseException as exc:
            outcome["error"] = exc

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    time.sleep(0.5)  # it is waiting
    assert not outcome
    own_server.restart("fast")
    # The holder's registration died with its session: its lease is lost, and the waiter
    # gets the mutex once the database is back, with a greater fencing token.
    waiter.join(30)
    assert not waiter.is_alive()
    assert "error" not in outcome, outcome.get("error")
    lease = outcome["lease"]
    assert lease.token > held.token
    with pytest.raises(kojo.LeaseLost):
        held.release()
    lease.release()
    again = patiently(lambda: holder_app.mutex("m", timeout=5).acquire())
    assert again.token > lease.token
    again.release()
    for app in (holder_app, waiter_app):
        app.backend.close()


def test_kojo_listen_rides_through_a_database_restart(
    own_server: DatabaseServer, tmp_path: Path
) -> None:
    url = own_server.create_database()
    app = kojo.App(database=url)
    app.install()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOJO_")}
    env["KOJO_DATABASE_URL"] = url
    listener = subprocess.Popen(
        [sys.executable, "-m", "kojo", "listen", "news", "--count", "3", "--timeout", "60"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stderr is not None and "listening" in listener.stderr.readline()
        app.publish("news", {"n": 1})
        own_server.restart("fast")
        patiently(lambda: app.publish("news", {"n": 2}))
        app.publish("news", {"n": 3})
        out, err = listener.communicate(timeout=30)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    assert listener.returncode == 0, err
    assert [json.loads(line)["n"] for line in out.splitlines()] == [1, 2, 3]
    assert "Traceback" not in err
    app.backend.close()
