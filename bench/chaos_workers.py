"""Job types for bench/chaos.py (`KOJO_APP=chaos_workers:app`).

The process-tree tests' types (tests/processes/workers_server.py) plus:

- `chaos_work`: the load. Records `start` and `end` (workers_server.record, with pid and
  time) and sleeps `payload.seconds` in between. While it runs it holds a POSIX record
  lock on byte `job id` of `<record file>.running` (the kernel drops it when the process
  dies); if that byte is already locked, another live process is running the same job
  at the same time, and the run records `concurrent` (the idea of tests/stress).
- `chaos_frozen` (timeout 1 s): on its first attempt it appends its pid to the file
  named by $KOJO_CHAOS_FREEZE and sleeps 0.6 s, the window in which bench/chaos.py
  SIGSTOPs the process; a frozen process outlives the timeout and the root must kill
  it. Once crashed it is quick.
- `chaos_tick`: a cron type, `* * * * *`, that records its runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from typing import Any

import workers_server
from workers_server import record

import kojo

FREEZE_ENV = "KOJO_CHAOS_FREEZE"
FROZEN_TIMEOUT = 1.0  # seconds: the `timeout` of chaos_frozen
FREEZE_WINDOW = 0.6  # seconds a first attempt of chaos_frozen waits to be frozen

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


def _exclusive(job: kojo.Job) -> int | None:
    """Lock this job's byte; records `concurrent` if a live process holds it already."""
    fd = _running_lock_fd()
    if fd is not None:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, job.id)
        except OSError:
            record(job, "concurrent")
    return fd


def _release(job: kojo.Job, fd: int | None) -> None:
    if fd is not None:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, job.id)


def work(job: kojo.Job) -> None:
    """Records start and end, sleeps `payload.seconds` (default 0) in between."""
    fd = _exclusive(job)
    record(job, "start")
    seconds = float(_payload(job).get("seconds", 0))
    if seconds:
        time.sleep(seconds)
    record(job, "end")
    _release(job, fd)


def frozen(job: kojo.Job) -> None:
    """First attempt: announce the pid, then give the harness time to SIGSTOP us."""
    fd = _exclusive(job)
    record(job, "start")
    path = os.environ.get(FREEZE_ENV)
    if path and job.times_crashed == 0:
        line = json.dumps({"id": job.id, "pid": os.getpid(), "t": time.time()}) + "\n"
        out = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(out, line.encode())
        finally:
            os.close(out)
        time.sleep(FREEZE_WINDOW)
    record(job, "end")
    _release(job, fd)


def tick(job: kojo.Job) -> None:
    """The cron type: records its run."""
    fd = _exclusive(job)
    record(job, "start")
    record(job, "end")
    _release(job, fd)


def register(app: kojo.App) -> kojo.App:
    """The tests' job types plus the chaos types, on `app`."""
    workers_server.register(app)
    app.job_type("chaos_work")(work)
    app.job_type("chaos_frozen", timeout=FROZEN_TIMEOUT)(frozen)
    app.job_type("chaos_tick", cron_expression="* * * * *")(tick)
    return app


app = register(kojo.App())
