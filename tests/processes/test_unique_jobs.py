"""Unique keys across real processes: 1,000 racing schedule(unique_key=) calls from four
forked processes create one job, on both backends (a read-then-insert would make
several)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from workers_harness import Workers

import kojo
from foundation_helpers import make_app

PROCESSES = 4
CALLS = 250


def test_a_thousand_racing_calls_from_four_processes_create_one_job(
    database_url: str, tmp_path: Path, workers: Workers
) -> None:
    app = make_app(database_url, report={})
    app.backend.close()  # the children open their own
    start_at = time.time() + 1.0  # every child starts at once, all connected

    def race(n: int) -> None:
        child = kojo.App(database=database_url)
        child.schedule("report", unique_key="other")  # connected and warm before the start
        time.sleep(max(0.0, start_at - time.time()))
        outcomes = [child.schedule_unique("report", "nightly") for _ in range(CALLS)]
        (tmp_path / f"ids-{n}.json").write_text(json.dumps(outcomes))

    for n in range(PROCESSES):
        workers.start(lambda n=n: race(n))
    workers.join(60.0)

    outcomes = [
        tuple(pair)
        for n in range(PROCESSES)
        for pair in json.loads((tmp_path / f"ids-{n}.json").read_text())
    ]
    assert len(outcomes) == PROCESSES * CALLS
    ids = {job_id for job_id, _ in outcomes}
    assert len(ids) == 1, f"{len(ids)} jobs made for one key"
    assert sum(created for _, created in outcomes) == 1
    jobs = [r for r in app.jobs() if r["unique_key"] == "nightly"]
    assert [r["kojo_job_id"] for r in jobs] == list(ids)
