"""Job types the benchmarks run: no-ops (parallel, serial, one to pause), and one that
records when it started."""

from __future__ import annotations

import os
import time

import kojo

app = kojo.App()
START_LOG = os.environ.get("KOJO_BENCH_START_LOG", "/tmp/kojo-bench-starts.log")


@app.job_type("bench.noop")
def noop(job: kojo.Job) -> None:
    pass


@app.job_type("bench.async_noop")
async def async_noop(job: kojo.Job) -> None:
    pass


# bench/scale.py keeps backlogs of these that cannot run: the type paused, and a serial
# type with one job working...
@app.job_type("bench.paused")
def paused(job: kojo.Job) -> None:
    pass


@app.job_type("bench.serial", can_work_in_parallel=False)
def serial(job: kojo.Job) -> None:
    pass


# bench/features.py drains these with a concurrency key (a limit high enough not to bind:
# what admission costs).
@app.job_type("bench.keyed", concurrency_limit=10_000)
def keyed(job: kojo.Job) -> None:
    pass


# ... and of a type with a concurrency limit whose place is taken.
@app.job_type("bench.limited", concurrency_limit=1)
def limited(job: kojo.Job) -> None:
    pass


# ... and of a rate-limited type whose limit never binds (one job per claim: what the
# slots cost), and one whose every slot is taken for a day (bench/scale.py --kinds rated).
@app.job_type("bench.rated", rate_limit="10000/PT0.001S")
def rated(job: kojo.Job) -> None:
    pass


@app.job_type("bench.rate_blocked", rate_limit="1/P1D")
def rate_blocked(job: kojo.Job) -> None:
    pass


@app.job_type("bench.latency")
def latency(job: kojo.Job) -> None:
    started = time.time()
    fd = os.open(START_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job.id} {started:.6f}\n".encode())
    finally:
        os.close(fd)
