"""Async workers in a real `kojo server start` (forked job processes), on both backends."""

from __future__ import annotations

import signal
import time
from collections import defaultdict

from test_server_outcomes import assert_killed_by_timeout_and_rerun
from workers_harness import Tree

SETTLE = 15.0  # seconds any single outcome may take to appear


def test_a_server_awaits_async_workers_on_one_loop_per_process(tree: Tree) -> None:
    """Async jobs run to their end (or request), a raising one is retried then panicked
    with its traceback, and each job process reuses its one loop."""
    tree.start()
    app = tree.app
    done = [app.schedule("awaiting") for _ in range(6)]
    failed = app.schedule("awaiting", payload={"do": "complete_failed"})
    raising = app.schedule("awaiting", payload={"do": "raise"})

    for job_id in done:
        assert tree.wait_state(job_id, "complete_success", SETTLE)["times_worked"] == 1
        assert len(tree.records("end", job_id)) == 1
    assert tree.wait_state(failed, "complete_failed", SETTLE)["times_panicked"] == 0

    final = tree.wait_state(raising, "panicked", SETTLE)
    assert (final["times_retried"], final["times_worked"]) == (1, 2)
    assert f"ValueError: async boom from job {raising}" in final["last_error"]
    assert "in awaiting" in final["last_error"]
    assert tree.records("end", raising) == []

    loops: dict[int, set[int]] = defaultdict(set)
    for line in tree.records("start"):
        loops[line["pid"]].add(line["loop"])
    assert all(len(ids) == 1 for ids in loops.values()), loops


def test_timeout_ends_an_async_job_awaiting_forever_and_it_is_rerun(tree: Tree) -> None:
    """timeout=1 s on an async worker awaiting asyncio.sleep: its process is killed, the job
    crashed and worked again, as for a sync worker (test_server_outcomes)."""
    server = tree.start()
    assert_killed_by_timeout_and_rerun(tree, server, "async-overtime", 0.95, 6.0)


def test_a_draining_server_tells_an_awaiting_job_to_stop(tree: Tree) -> None:
    """SIGTERM while an async job awaits: job.stop_requested turns True inside the
    coroutine, which returns; the job completes and the server exits 0."""
    server = tree.start(shutdown_timeout=10)
    job_id = tree.app.schedule("async-sleeper", payload={"seconds": 20})
    tree.wait_record("start", job_id, SETTLE)
    signalled = time.monotonic()
    server.signal(signal.SIGTERM)
    tree.wait_record("stop_requested", job_id, 3.0)
    assert server.wait(10) == 0
    assert time.monotonic() - signalled < 5.0
    assert tree.job(job_id)["assigned_state"] == "complete_success"
