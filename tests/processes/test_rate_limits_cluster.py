"""Rate limits worked by real servers, on both backends: a type limited to 3 starts per
2 s never starts 4 in any 2 s across two servers (host names) with two job processes
each, and its backlog does not hold up other types."""

from __future__ import annotations

from collections import Counter

from workers_harness import Tree, wait_for

RATE, PERIOD = 3, 2.0  # the "rated" type's rate_limit, 3/PT2S (workers_server.py)


def crowded(times: list[float], span: float) -> list[list[float]]:
    """Every run of RATE + 1 consecutive times that fits in less than `span` seconds."""
    times = sorted(times)
    return [
        times[i : i + RATE + 1]
        for i in range(len(times) - RATE)
        if times[i + RATE] - times[i] < span
    ]


def test_no_period_holds_more_starts_than_the_limit_across_two_servers(tree: Tree) -> None:
    for host in ("host-a", "host-b"):
        tree.start(host_name=host, max_processes=2, tag=host)
    rated = [tree.app.schedule("rated", importance=5) for _ in range(10)]
    plain = [tree.app.schedule("noop") for _ in range(20)]
    # The plain jobs are not held up behind the rate-limited backlog (which sorts first).
    wait_for(
        lambda: {tree.state(j) for j in plain} == {"complete_success"},
        15.0,
        lambda: f"plain jobs done: {Counter(tree.state(j) for j in plain)}",
    )
    wait_for(
        lambda: {tree.state(j) for j in rated} == {"complete_success"},
        30.0,
        lambda: f"rated jobs done: {Counter(tree.state(j) for j in rated)}",
    )
    starts = tree.records("start")
    rated_starts = [r for r in starts if r["id"] in set(rated)]
    assert len(rated_starts) == len(rated)
    # Exact on the claim times the slots count. A worker runs a few ms after its claim
    # (more for a fresh process's first job), so on the workers' own clock the limit holds
    # up to that delay: four starts span at least the period less the longest delay.
    assert not crowded([r["claimed"] for r in rated_starts], PERIOD)
    delay = max(r["t"] - r["claimed"] for r in rated_starts)
    assert 0 <= delay < 1.0, delay
    assert not crowded([r["t"] for r in rated_starts], PERIOD - delay)
    # Ten starts at three per two seconds take at least six seconds: the limit did bind.
    claimed = sorted(r["claimed"] for r in rated_starts)
    assert claimed[-1] - claimed[0] >= 3 * PERIOD
