"""Fixtures for the process-tree tests: real forks, real signals, nothing left behind.

``tree``      a `Tree` (workers_harness) on the parametrized ``database_url``:
              start servers, schedule jobs, read what the workers recorded.
``pg_tree``   the same on PostgreSQL only.

Every test here runs with the pytest process as a child subreaper, so orphans
of the test re-parent to it. After the test (and after its servers were
stopped), no descendant process may be alive: anything left is recorded,
SIGKILLed, reaped, and fails the test.

CI (scripts/run-tests) runs this directory on three xdist workers with ``--dist
loadgroup``, one per group, each group one test at a time: the tests marked
``mostly_waiting`` (minutes of wall-clock waiting at almost no CPU: the cron cluster)
are the group ``waiting``; the other MySQL tests the group ``mysql``; everything else the
group ``serial``. The minutes of the first two pass beside the others' instead of after them.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from race_harness import StressTree  # noqa: E402
from workers_harness import (  # noqa: E402
    Tree,
    Workers,
    become_subreaper,
    live_descendants,
    reap_orphans,
)

import pg  # noqa: E402

LEFTOVER_GRACE = 3.0  # seconds children of a stopped server get to die
HERE = Path(__file__).resolve().parent


def runs_on_mysql(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    on_mysql = any(value == "mysql" for value in params.values())  # database_url, backend...
    return on_mysql or "mysql_url" in getattr(item, "fixturenames", ())


def lane(item: pytest.Item) -> str:
    if item.get_closest_marker("mostly_waiting"):
        return "waiting"
    return "mysql" if runs_on_mysql(item) else "serial"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            group = lane(item)
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session", autouse=True)
def _subreaper() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the process-tree tests need Linux (/proc, prctl)")
    become_subreaper()


@pytest.fixture(autouse=True)
def no_process_left(_subreaper: None) -> Iterator[None]:
    """Fail the test if any process it started is still alive once it is over."""
    before = {p.pid for p in live_descendants()}
    yield
    deadline = time.monotonic() + LEFTOVER_GRACE
    left = [p for p in live_descendants() if p.pid not in before]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in live_descendants() if p.pid not in before]
    if not left:
        return
    report = "\n".join(f"  pid {p.pid} ppid {p.ppid} [{p.state}] {p.cmdline}" for p in left)
    for proc in left:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while any(p.pid not in before for p in live_descendants()) and time.monotonic() < deadline:
        time.sleep(0.02)
    reap_orphans()
    for proc in left:  # the test failed: reap even what a Popen object would have reaped
        if proc.ppid == os.getpid():
            try:
                os.waitpid(proc.pid, 0)
            except ChildProcessError:
                pass
    pytest.fail(f"processes left behind by the test (now SIGKILLed):\n{report}", pytrace=False)


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """Created and dropped in line, not by tests/pg_spares.py: its helper would be a
    process left behind by the first test, and its work would share the cores with
    tests that keep time."""
    with pg.temporary_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def tree(database_url: str, tmp_path: Path) -> Iterator[Tree]:
    with closing(Tree(database_url, tmp_path)) as harness:
        yield harness


@pytest.fixture
def pg_tree(postgres_url: str, tmp_path: Path) -> Iterator[Tree]:
    with closing(Tree(postgres_url, tmp_path)) as harness:
        yield harness


@pytest.fixture
def stress_tree(database_url: str, tmp_path: Path) -> Iterator[StressTree]:
    """A `Tree` whose servers run the race tests' workers (race_workers)."""
    with closing(StressTree(database_url, tmp_path)) as harness:
        yield harness


@pytest.fixture
def pg_stress_tree(postgres_url: str, tmp_path: Path) -> Iterator[StressTree]:
    with closing(StressTree(postgres_url, tmp_path)) as harness:
        yield harness


@pytest.fixture
def sqlite_stress_tree(sqlite_url: str, tmp_path: Path) -> Iterator[StressTree]:
    with closing(StressTree(sqlite_url, tmp_path)) as harness:
        yield harness


@pytest.fixture
def workers() -> Iterator[Workers]:
    """Processes a test forks itself (each with an App of its own), killed at the end."""
    group = Workers()
    try:
        yield group
    finally:
        group.kill_all()
