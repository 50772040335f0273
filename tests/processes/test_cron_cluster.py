"""Cron in real time: three servers (three host names) on one PostgreSQL (or MySQL) database
for about three minutes.

One job per due minute, no gap, no duplicate, each run once, even though one
server stops halfway (if it held the maintainer mutex, another server takes
over). The disabled type is reported about once per minute by the whole
cluster, not once per server or per second.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from workers_harness import Tree, wait_for

from kojo.clock import utcnow
from kojo.cron import floor_minute

pytestmark = [
    pytest.mark.slow,
    pytest.mark.mostly_waiting("three idle servers for three minutes: cron's minutes are real"),
]

MIN = timedelta(minutes=1)
LATE = 5.0  # seconds: far above the idle p99 (bench/cron.py), far below a missed minute


class CronTree(Tree):
    def env(self, tag: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = super().env(tag, extra)
        env["KOJO_APP"] = "cron_workers:app"
        return env


@pytest.fixture(params=["postgres", "mysql"])
def cron_tree(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CronTree]:
    harness = CronTree(request.getfixturevalue(f"{request.param}_url"), tmp_path)
    try:
        yield harness
    finally:
        harness.close()


def job_of_minute(tree: Tree, minute: datetime) -> int | None:
    for job in tree.app.jobs(type_code="tick", limit=100_000):
        if job["cron_fire_date_time"] == minute:
            return int(job["kojo_job_id"])
    return None


def wait_started(tree: Tree, minute: datetime) -> None:
    timeout = (minute - utcnow()).total_seconds() + 30

    def started() -> bool:
        job_id = job_of_minute(tree, minute)
        return job_id is not None and bool(tree.records("start", job_id))

    wait_for(started, timeout, f"the job of {minute:%H:%M} to start")


def test_three_servers_run_each_due_minute_once(cron_tree: CronTree) -> None:
    tree = cron_tree
    booted = floor_minute(utcnow())
    servers = [tree.start(host_name=name, max_processes=2) for name in ("alpha", "beta", "gamma")]
    first = floor_minute(utcnow())
    last = first + 3 * MIN

    wait_started(tree, first + MIN)
    servers[0].signal(signal.SIGTERM)
    assert servers[0].wait(30) == 0
    wait_started(tree, last)

    jobs = tree.app.jobs(type_code="tick", limit=100_000)
    fires = Counter(j["cron_fire_date_time"] for j in jobs)
    assert [f for f, n in fires.items() if n > 1] == []  # no duplicate
    made = sorted(f for f in fires if f <= last)
    # From the minute the cluster came up (the current minute counts) to the end: no gap.
    assert booted <= made[0] <= first
    assert made == [made[0] + i * MIN for i in range(len(made))]
    assert max(fires) <= floor_minute(utcnow() + 5 * MIN)  # made ahead, never further

    by_id = {int(j["kojo_job_id"]): j["cron_fire_date_time"] for j in jobs}
    starts = Counter(r["id"] for r in tree.records("start"))
    ran = {by_id[i]: n for i, n in starts.items()}
    assert ran == dict.fromkeys(made, 1)  # each ran exactly once
    for record in tree.records("start"):
        fire = by_id[record["id"]]
        if fire > first:  # the current minute's job is made, and runs, at startup
            lateness = record["t"] - fire.timestamp()
            assert 0 <= lateness < LATE, (fire, lateness)

    assert tree.app.jobs(type_code="off") == []
    skips = [
        line
        for server in servers
        for line in server.log_lines()
        if line["message"] == "Scheduler skipping disabled job type [off]"
    ]
    assert all(line["context"] == {"disabled_job_type": "off"} for line in skips)
    assert all(line["level"] == "warning" for line in skips)
    # About one per minute for the cluster (not per server, nor per pass); one more if alpha
    # held the maintainer mutex when it stopped.
    assert 3 <= len(skips) <= len(made) + 1, [line["time"] for line in skips]
