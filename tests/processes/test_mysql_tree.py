"""A server's tree on MySQL (backends/mysql_vouching.py): the server's anchor session
holds the named locks of every process below it, its one poller's wake-ups reach the job
processes through their doorbells, and its death ends the whole tree in the database.

MySQL runs only these of the process tests so far (tests/conftest.py, MYSQL_SUITES).
"""

from __future__ import annotations

import signal
import statistics
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from workers_harness import Tree, kojo_processes, wait_for

from foundation_helpers import scalar

# A vouched job process polls nothing itself (its locks held by the server's session, as
# checked first): without the forwarded wake-ups it would find a job on its next safety
# poll (every second: job_process.POLL), half a second on average; forwarded, in a poll
# of the server's (every 50 ms while busy) and a claim.
FORWARDED_LATENCY = 0.25
# A lock waiter in a job process is rung by the server's poller (every 25 ms while it
# waits) through its bell's socket; its own looks come every 30 s here (workers_server's
# locker).
RUNG_WITHIN = 0.25


@pytest.fixture
def my_tree(mysql_url: str, tmp_path: Path) -> Iterator[Tree]:
    with closing(Tree(mysql_url, tmp_path)) as harness:
        yield harness


def lock_holders(tree: Tree, host_name: str) -> dict[str, int | None]:
    """The session holding each of the host's processes' named locks, by kind and pid."""
    backend = tree.app.backend
    return {
        f"{row['kind']}[{row['process_id']}]": scalar(
            backend,
            "SELECT IS_USED_LOCK(:name)",
            name=backend.names.owner(int(row["kojo_process_id"])),  # type: ignore[attr-defined]
        )
        for row in tree.processes(host_name)
    }


def test_the_servers_session_holds_its_trees_locks_and_forwards_their_wake_ups(
    my_tree: Tree,
) -> None:
    server = my_tree.start(max_processes=2)
    holders = lock_holders(my_tree, server.host_name)
    assert len(holders) == 5, holders  # server, root, maintainer, two job processes
    assert None not in holders.values(), holders
    assert len(set(holders.values())) == 1, holders

    first = my_tree.app.schedule("noop")  # the server's poller polls at its busy pace after it
    my_tree.wait_record("start", first, 10.0)
    latencies = []
    for _ in range(9):
        before = time.time()
        job_id = my_tree.app.schedule("noop")
        latencies.append(my_tree.wait_record("start", job_id, 10.0)[0]["t"] - before)
        time.sleep(0.1)
    assert statistics.median(latencies) < FORWARDED_LATENCY, latencies


def test_kill_9_of_the_server_ends_its_whole_tree_in_the_database_at_once(
    my_tree: Tree,
) -> None:
    server = my_tree.start(max_processes=2)
    ids = [int(row["kojo_process_id"]) for row in my_tree.processes(server.host_name)]
    backend = my_tree.app.backend
    assert not any(backend.owner_is_dead(owner_id) for owner_id in ids)

    killed_at = time.monotonic()
    server.signal(signal.SIGKILL)
    assert server.wait(2.0) == -signal.SIGKILL
    wait_for(
        lambda: all(backend.owner_is_dead(owner_id) for owner_id in ids),
        2.0,
        "the tree's locks to go with the server's session",
    )
    # Its processes see their doorbells hang up: lost, they stop.
    wait_for(lambda: not kojo_processes(), 5.0 - (time.monotonic() - killed_at), kojo_processes)


def test_job_processes_waiting_on_a_mutex_are_rung_through_the_servers_poller(
    my_tree: Tree,
) -> None:
    my_tree.start(max_processes=2)
    app = my_tree.app
    held = app.mutex("tree-lock").acquire()
    jobs = [app.schedule("locker", payload={"mutex": "tree-lock", "seconds": 0.3}) for _ in "ab"]
    wait_for(
        lambda: sum(r["state"] == "waiting" for r in app.locks()) == 2, 10.0, "two waiting jobs"
    )
    released = time.time()
    held.release()  # rings the first job's bell; its release rings the second's
    got = sorted(my_tree.wait_record("got", job_id, 10.0)[0]["t"] for job_id in jobs)
    first_released = min(my_tree.wait_record("release", job_id, 10.0)[0]["t"] for job_id in jobs)
    assert got[0] - released < RUNG_WITHIN, (released, got)
    assert got[1] - first_released < RUNG_WITHIN, (first_released, got)
