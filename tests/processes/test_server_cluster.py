"""PostgreSQL and MySQL: two servers (two host names) on one database share the work
exactly once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from workers_harness import Tree, wait_for

JOBS = 5000


@pytest.fixture(params=["postgres", "mysql"])
def cluster_tree(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tree]:
    """A `Tree` on a database that several hosts can share."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    with closing(Tree(url, tmp_path)) as harness:
        yield harness


def test_two_hosts_work_5000_jobs_with_none_lost_and_none_run_twice(cluster_tree: Tree) -> None:
    tree = cluster_tree
    host_a = tree.start(host_name="host-a", max_processes=2, tag="a")
    host_b = tree.start(host_name="host-b", max_processes=2, tag="b")
    ids = tree.app.schedule_many("noop", [None] * JOBS)
    assert len(set(ids)) == JOBS

    def done() -> bool:
        return len(tree.records("end")) >= JOBS

    started = time.monotonic()
    wait_for(done, 60.0, lambda: f"{len(tree.records('end'))} of {JOBS} jobs to end")
    elapsed = time.monotonic() - started

    # Every job completed in the database, once, and none is left working or waiting.
    conn = tree.app.backend.connection()
    query = (
        "SELECT assigned_state, count(*) AS n, max(times_worked) AS worked, "
        "max(times_crashed) AS crashed FROM kojo_job GROUP BY assigned_state"
    )
    summary: list[tuple[object, ...]] = []

    def all_complete() -> bool:
        nonlocal summary
        summary = [tuple(dict(row).values()) for row in conn.execute(query).fetchall()]
        return summary == [("complete_success", JOBS, 1, 0)]

    wait_for(all_complete, 10.0, lambda: f"every job to be complete_success: {summary}")

    # Exactly once, by the workers' own account.
    records = tree.records()
    starts = Counter(r["id"] for r in records if r["event"] == "start")
    ends = Counter(r["id"] for r in records if r["event"] == "end")
    assert set(starts) == set(ends) == set(ids)
    assert set(starts.values()) == set(ends.values()) == {1}
    # Both hosts did a share of the work, each with its own processes.
    by_host = Counter(r["tag"] for r in records if r["event"] == "end")
    assert set(by_host) == {"a", "b"}, by_host
    pids = {tag: {r["pid"] for r in records if r["tag"] == tag} for tag in ("a", "b")}
    assert not pids["a"] & pids["b"]
    assert host_a.exited() is None and host_b.exited() is None
    print(f"{JOBS} jobs on two hosts in {elapsed:.2f} s ({by_host['a']} / {by_host['b']})")
