"""Concurrency limits worked by real servers, on both backends: jobs of one key never
overlap more than the limit, across two servers' job processes (start and end times
recorded by the workers); a job process killed with kill -9 mid-job gives its place
back at once: its job is re-run, and the other jobs of the key go on."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

from workers_harness import Tree, wait_for

LIMIT = 2  # the "limited" type's concurrency_limit (workers_server.py)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment (an end at t closes before a start at t)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    open_now = most = 0
    for _, change in events:
        open_now += change
        most = max(most, open_now)
    return most


def spans_of(tree: Tree, ids: list[int]) -> list[tuple[float, float]]:
    starts = {(r["id"], r["times_worked"]): r["t"] for r in tree.records("start")}
    ends = {(r["id"], r["times_worked"]): r["t"] for r in tree.records("end")}
    return [(t, ends[key]) for key, t in starts.items() if key[0] in set(ids) and key in ends]


def test_one_key_never_runs_more_than_its_limit_across_two_servers(tree: Tree) -> None:
    for host in ("host-a", "host-b"):
        tree.start(host_name=host, max_processes=2, tag=host)
    keyed = [
        tree.app.schedule("limited", payload={"seconds": 0.2}, concurrency_key="shop:1")
        for _ in range(8)
    ]
    other = [
        tree.app.schedule("limited", payload={"seconds": 0.2}, concurrency_key="shop:2")
        for _ in range(4)
    ]
    wait_for(
        lambda: {tree.state(j) for j in keyed + other} == {"complete_success"},
        30.0,
        lambda: f"every job done: {Counter(tree.state(j) for j in keyed + other)}",
    )
    assert most_at_once(spans_of(tree, keyed)) == LIMIT
    assert most_at_once(spans_of(tree, other)) == LIMIT
    # Four jobs overlapped, never five: each server has two job processes, so both ran
    # these keys at once.
    assert most_at_once(spans_of(tree, keyed + other)) == 2 * LIMIT


def test_a_killed_job_process_gives_its_place_back_at_once(tree: Tree) -> None:
    tree.start(max_processes=3)
    victim = tree.app.schedule("limited", payload={"seconds": 30}, concurrency_key="k")
    (started,) = tree.wait_record("start", victim, 10.0)
    others = [
        tree.app.schedule("limited", payload={"seconds": 0.1}, concurrency_key="k")
        for _ in range(6)
    ]
    tree.wait_record("start", others[0], 10.0)
    killed_at = time.time()
    os.kill(started["pid"], signal.SIGKILL)
    # The killed job is crashed and re-run at once (it kept its place), and the queue goes
    # on beside it: never more than two at a time.
    rerun = tree.wait_record("start", victim, 10.0, count=2)[1]
    assert rerun["t"] - killed_at < 5.0
    assert rerun["times_crashed"] == 1
    wait_for(
        lambda: {tree.state(j) for j in others} == {"complete_success"},
        30.0,
        lambda: f"the others done: {Counter(tree.state(j) for j in others)}",
    )
    spans = [*spans_of(tree, others), (rerun["t"], time.time())]
    assert most_at_once(spans) <= LIMIT
