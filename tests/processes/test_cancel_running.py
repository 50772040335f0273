"""`kojo jobs cancel` of a running job stops the process working it, on every backend,
whatever the type's auto_delete_interval_duration (issue 15: with PT0S the maintainer
could delete the job's row before the root looked up its process there)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from workers_harness import Tree, wait_for

import kojo
from kojo import maintenance
from kojo.clock import utcnow

SETTLE = 15.0
PROMPT = 3.0  # seconds from the cancel to the worker seeing stop_requested


def _process_gone(tree: Tree, pid: int) -> None:
    server = tree.servers[0]
    wait_for(
        lambda: not any(p.pid == pid for p in server.tree()),
        PROMPT + 2.0,
        f"process {pid} of the cancelled job to stop",
    )
    wait_for(
        lambda: any(
            "was cancelled" in str(line["message"]) and f"process[{pid}]" in str(line["message"])
            for line in server.log_lines()
        ),
        5.0,
        "the stop to be logged",
    )


def test_cancel_from_the_command_line_stops_the_job_promptly(tree: Tree) -> None:
    tree.start()
    job_id = tree.app.schedule("sleeper", payload={"seconds": 60, "obey_stop": True})
    [start] = tree.wait_record("start", job_id, SETTLE)
    cancelled_at = time.time()
    done = tree.kojo("jobs", "cancel", str(job_id))
    assert done.returncode == 0, done.stderr
    [stop] = tree.wait_record("stop_requested", job_id, PROMPT + 2.0)
    assert stop["pid"] == start["pid"]
    assert stop["t"] - cancelled_at < PROMPT
    _process_gone(tree, start["pid"])
    final = tree.job(job_id)
    assert (final["assigned_state"], final["times_crashed"]) == ("complete_terminated", 0)


def test_cancel_finds_the_process_once_the_row_is_deleted(tree: Tree) -> None:
    """auto_delete_interval_duration=PT0S, and the maintainer deletes the row in the very
    transaction that cancels it: the stop names the process, so the root still finds it."""
    tree.start()
    job_id = tree.app.schedule("fleeting-sleeper", payload={"seconds": 60, "obey_stop": True})
    [start] = tree.wait_record("start", job_id, SETTLE)
    cancelled_at = time.time()
    with tree.app.backend.write():
        row = tree.app.cancel(job_id)
        deleted = maintenance.delete_completed(tree.app, utcnow() + timedelta(seconds=1))
    assert (row["assigned_state"], deleted) == ("complete_terminated", 1)
    [stop] = tree.wait_record("stop_requested", job_id, PROMPT + 2.0)
    assert stop["pid"] == start["pid"]
    assert stop["t"] - cancelled_at < PROMPT
    _process_gone(tree, start["pid"])
    with pytest.raises(kojo.errors.JobNotFound):
        tree.job(job_id)
    # The pool is whole again and works the next job.
    other = tree.app.schedule("noop")
    tree.wait_state(other, "complete_success", SETTLE)


def test_cancel_stops_jobs_on_every_host(tree: Tree) -> None:
    """Two servers (hosts) with one job process each, each working a job of a PT0S type:
    each root stops its own process, and only it."""
    alpha = tree.start(host_name="alpha", max_processes=1)
    beta = tree.start(host_name="beta", max_processes=1)
    payload = {"seconds": 60, "obey_stop": True}
    jobs = [tree.app.schedule("fleeting-sleeper", payload=payload) for _ in range(2)]
    starts = [tree.wait_record("start", job_id, SETTLE)[0] for job_id in jobs]
    pids = {start["pid"] for start in starts}
    assert pids == {p.pid for p in alpha.tree() + beta.tree() if p.pid in pids}
    assert len(pids) == 2  # one job on each host: each has a single job process
    for job_id in jobs:
        done = tree.kojo("jobs", "cancel", str(job_id))
        assert done.returncode == 0, done.stderr
    for job_id, start in zip(jobs, starts, strict=True):
        [stop] = tree.wait_record("stop_requested", job_id, PROMPT + 2.0)
        assert stop["pid"] == start["pid"]
    wait_for(
        lambda: not any(p.pid in pids for p in alpha.tree() + beta.tree()),
        PROMPT + 2.0,
        "both cancelled jobs' processes to stop",
    )
