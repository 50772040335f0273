"""Workers for the race stress tests (`KOJO_APP=race_workers:app`).

Every run appends `start` and `end` lines to the record file of the process-tree
harness (workers_server.record), with the owner that claimed the job and when
(the claim's `last_transition_date_time`), so a test can tell which claims a
dead owner made.

`work` also proves that no job runs in two live processes at once: while it
runs, it holds a POSIX record lock on byte `job id` of `<record file>.running`
(fcntl locks belong to the process and the kernel drops them when it dies; a
forked child does not inherit them). If that byte is already locked, another
live process is running the same job: the run records `concurrent`.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import time
from typing import Any

import workers_server
from workers_server import record

import kojo

SERIAL_TYPES_ENV = "KOJO_STRESS_SERIAL_TYPES"  # how many serial_NNN types an app defines
STORM_MAX_CRASHES = 100  # a job crashed by many kills must still be re-run, not panicked
FORK_CHILD_SECONDS = 25.0
LONG = 30.0

_running_fd: int | None = None


def _running_lock_fd() -> int | None:
    global _running_fd
    path = os.environ.get(workers_server.RECORD_ENV)
    if not path:
        return None
    if _running_fd is None:  # one descriptor per process: closing any would drop its locks
        _running_fd = os.open(path + ".running", os.O_RDWR | os.O_CREAT, 0o644)
    return _running_fd


def _payload(job: kojo.Job) -> dict[str, Any]:
    payload = job.payload
    return payload if isinstance(payload, dict) else {}


def _claim(job: kojo.Job) -> dict[str, Any]:
    claimed = job.row.get("last_transition_date_time")
    return {
        "owner": job.row.get("kojo_process_id"),
        "claimed": claimed.isoformat() if hasattr(claimed, "isoformat") else str(claimed),
    }


def work(job: kojo.Job) -> None:
    """Records start and end, sleeps `payload.seconds` (default 0) in between."""
    fd = _running_lock_fd()
    if fd is not None:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, job.id)
        except OSError:
            record(job, "concurrent", **_claim(job))
    record(job, "start", **_claim(job))
    seconds = float(_payload(job).get("seconds", 0))
    if seconds:
        time.sleep(seconds)
    record(job, "end", **_claim(job))
    if fd is not None:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, job.id)


def _sleep_in_child(seconds: float) -> None:
    time.sleep(seconds)


def forker(job: kojo.Job) -> None:
    """First attempt with `payload.fork`: take the mutex `payload.mutex`, start a
    multiprocessing (fork) child that sleeps 25 s, then sleep until the type's
    timeout kills this process. Any other run: quick."""
    payload = _payload(job)
    record(job, "start", **_claim(job))
    if payload.get("fork") and job.times_crashed == 0:
        with job.mutex(str(payload["mutex"]), timeout=10) as lease:
            record(job, "locked", token=lease.token)
            child = multiprocessing.get_context("fork").Process(
                target=_sleep_in_child, args=(FORK_CHILD_SECONDS,), daemon=True
            )
            child.start()
            record(job, "forked", child=child.pid)
            time.sleep(LONG)  # the type's timeout (2 s) ends this process first
    record(job, "end", **_claim(job))


def add_serial_types(app: kojo.App, count: int) -> list[str]:
    """Serial types serial_000 ... (can_work_in_parallel=False), worked by `work`."""
    codes = [f"serial_{n:03d}" for n in range(count)]
    for code in codes:
        app.job_type(code, can_work_in_parallel=False, max_crashes=STORM_MAX_CRASHES)(work)
    return codes


def register(app: kojo.App) -> kojo.App:
    """The harness's job types plus the stress types, on `app`.

    A server registers all its app's types at start, each in a transaction of its
    own (slow with a commit delay): only KOJO_STRESS_SERIAL_TYPES (default 10)
    serial types here; a test that needs more adds them (its servers need not know
    them: a job process imports a type's worker by reference).
    """
    workers_server.register(app)
    app.job_type("quick", max_crashes=STORM_MAX_CRASHES)(work)
    add_serial_types(app, int(os.environ.get(SERIAL_TYPES_ENV, "10")))
    app.job_type("forker", can_work_in_parallel=False, timeout=2)(forker)
    return app


app = register(kojo.App())
