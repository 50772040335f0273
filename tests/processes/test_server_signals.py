"""Signals to the server: drain, stop now, and one job process more or fewer."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
from workers_harness import Server, Tree, kojo_processes, wait_for

SAME_AS_SIGTERM = "another signal to the same stop, which sigterm-twice checks on every backend"


def test_drain_finishes_the_short_job_and_kills_the_long_one_after_the_timeout(
    tree: Tree,
) -> None:
    """SIGTERM with a 10 ms and a 10 s job running and --shutdown-timeout 2: the short job
    completes, the long one sees stop_requested, is killed at the deadline and left crashed;
    nothing new is claimed; the server exits 0 within the timeout + 2 s."""
    server = tree.start(max_processes=2, shutdown_timeout=2)
    long_id = tree.app.schedule("sleeper", payload={"seconds": 10})
    tree.wait_record("start", long_id, 10.0)
    # The short job signals the server itself, so SIGTERM lands while it runs.
    short_id = tree.app.schedule("stopper", payload={"pid": server.pid})
    (signalled,) = tree.wait_record("signalled", short_id, 10.0)

    tree.wait_record("end", short_id, 5.0)
    assert tree.wait_state(short_id, "complete_success", 5.0)["times_crashed"] == 0
    # Draining: running jobs are told to stop, and nothing new is claimed.
    tree.wait_record("stop_requested", long_id, 2.0)
    late_id = tree.app.schedule("noop")

    code = server.wait(2 + 2.5)
    exited = time.time()
    assert code == 0
    assert exited - signalled["t"] < 2 + 2.0
    assert not server.tree()

    long_job = tree.job(long_id)
    assert (long_job["assigned_state"], long_job["times_crashed"]) == ("crashed", 1)
    assert long_job["next_state_request"] == "working"  # to be re-run by the next server
    assert not tree.records("end", long_id)
    assert tree.state(late_id) == "waiting" and not tree.records(job_id=late_id)
    messages = server.messages()
    assert any("Shutdown timeout reached" in m for m in messages)
    assert messages[-1] == "Server stopped."


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (signal.SIGTERM, signal.SIGTERM),
        pytest.param(signal.SIGINT, signal.SIGINT, marks=pytest.mark.one_backend(SAME_AS_SIGTERM)),
        pytest.param(None, signal.SIGQUIT, marks=pytest.mark.one_backend(SAME_AS_SIGTERM)),
    ],
    ids=["sigterm-twice", "sigint-twice", "sigquit"],
)
def test_a_second_drain_signal_or_sigquit_stops_now(
    tree: Tree, first: signal.Signals | None, second: signal.Signals
) -> None:
    server = tree.start(max_processes=2, shutdown_timeout=30)
    job_id = tree.app.schedule("sleeper", payload={"seconds": 10})
    tree.wait_record("start", job_id, 10.0)
    if first is not None:
        server.signal(first)
        tree.wait_record("stop_requested", job_id, 2.0)  # draining, with 30 s to go
        assert server.exited() is None
    sent = time.monotonic()
    server.signal(second)
    assert server.wait(2.0) == 0
    assert time.monotonic() - sent < 2.0
    assert not server.tree()
    row = tree.job(job_id)
    assert (row["assigned_state"], row["times_crashed"]) == ("crashed", 1)
    assert not tree.records("end", job_id)
    assert "Stopping now." in server.messages()


def test_sigttin_and_sigttou_add_and_remove_a_job_process(tree: Tree) -> None:
    server = tree.start(max_processes=1)

    def job_pids() -> list[int]:
        return sorted(
            r["process_id"]
            for r in tree.ps()
            if r["kind"] == "job" and r["host_name"] == server.host_name
        )

    def wait_count(n: int) -> list[int]:
        pids: list[int] = wait_for(
            lambda: (pids := job_pids()) and len(pids) == n and pids, 10.0, job_pids
        )
        return pids

    (first,) = job_pids()
    # One signal at a time: two identical signals sent back to back may arrive as one.
    server.signal(signal.SIGTTIN)
    two_first = wait_count(2)
    server.signal(signal.SIGTTIN)
    three = wait_count(3)
    assert first in two_first and set(two_first) < set(three)

    server.signal(signal.SIGTTOU)
    two = wait_count(2)
    assert set(two) < set(three)

    # The processes themselves, not only their registrations: two job processes are alive.
    def live_jobs() -> list[int]:
        return sorted(p.pid for p in server.tree() if "/job[" in p.cmdline)

    assert wait_for(lambda: live_jobs() == two, 5.0, live_jobs)
    # And the pool of two works jobs in parallel.
    ids = tree.app.schedule_many("noop", [{"seconds": 0.3}] * 4)
    for job_id in ids:
        tree.wait_state(job_id, "complete_success", 10.0)
    workers = Counter(r["pid"] for r in tree.records("start"))
    assert set(workers) == set(two)


@pytest.mark.one_backend(
    "which signal drains and which kills (the drain's crash of a running job: above)"
)
@pytest.mark.parametrize(
    "how",
    ["SIGHUP", "SIGUSR1", "SIGINT-to-group", "SIGABRT"],
)
def test_every_stop_signal_stops_the_whole_tree(tree: Tree, how: str) -> None:
    """SIGHUP and SIGUSR1 (logrotate) drain like SIGTERM; Ctrl-C (SIGINT to the whole
    process group) drains too, the children ignoring it; SIGABRT kills the server, and
    its children die with it."""
    server = tree.start(max_processes=1, shutdown_timeout=1)
    job_id = tree.app.schedule("sleeper", payload={"seconds": 10})
    tree.wait_record("start", job_id, 10.0)
    sent = time.monotonic()
    if how == "SIGINT-to-group":
        os.killpg(server.pid, signal.SIGINT)
    else:
        server.signal(signal.Signals[how])
    if how == "SIGABRT":
        assert server.wait(2.0) == -signal.SIGABRT
        wait_for(lambda: not kojo_processes(), 2.0, kojo_processes)
        return
    tree.wait_record("stop_requested", job_id, 2.0)
    assert server.wait(1 + 2.5) == 0
    assert time.monotonic() - sent < 1 + 2.5
    assert not kojo_processes()
    row = tree.job(job_id)
    assert (row["assigned_state"], row["times_crashed"]) == ("crashed", 1), _warnings(server)


def _warnings(server: Server) -> list[str]:
    """The server's log lines at warning level and above, for failure messages."""
    return [
        f"{ln['level']}: {ln['message']} {ln['context']}"
        for ln in server.log_lines()
        if ln["level"] not in ("debug", "info")
    ]
