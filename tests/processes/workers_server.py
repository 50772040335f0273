"""Workers for the process-tree tests (`KOJO_APP=workers_server:app`).

Every worker appends one JSON line per event to the file named by
KOJO_TEST_RECORD (O_APPEND, one write() per line, so lines from concurrent
processes never interleave): which job, which process, which attempt. The
tests read that file to assert what ran, where, and how many times.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import kojo

RECORD_ENV = "KOJO_TEST_RECORD"
TAG_ENV = "KOJO_TEST_TAG"
LONG = 30.0  # seconds: "forever" for a test, yet bounded if something goes wrong


def record(job: kojo.Job, event: str, **extra: Any) -> None:
    path = os.environ.get(RECORD_ENV)
    if not path:
        return
    line = {
        "event": event,
        "id": job.id,
        "type": job.type_code,
        "pid": os.getpid(),
        "t": time.time(),
        "tag": os.environ.get(TAG_ENV),
        "times_worked": job.times_worked,
        "times_retried": job.times_retried,
        "times_crashed": job.times_crashed,
        **extra,
    }
    data = (json.dumps(line) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _payload(job: kojo.Job) -> dict[str, Any]:
    payload = job.payload
    return payload if isinstance(payload, dict) else {}


def noop(job: kojo.Job) -> None:
    """Records its run; sleeps `payload.seconds` (default 0) in between start and end."""
    record(job, "start")
    seconds = float(_payload(job).get("seconds", 0))
    if seconds:
        time.sleep(seconds)
    record(job, "end")


def rated(job: kojo.Job) -> None:
    """Records its run with its claim time (what a rate limit counts), then sleeps
    `payload.seconds` (default 0)."""
    record(job, "start", claimed=job.last_transition_date_time.timestamp())
    seconds = float(_payload(job).get("seconds", 0))
    if seconds:
        time.sleep(seconds)


def sleeper(job: kojo.Job) -> None:
    """Sleeps `payload.seconds`, ignoring stop_requested but recording when it turns True
    (with `payload.obey_stop`, returning then)."""
    record(job, "start")
    deadline = time.monotonic() + float(_payload(job).get("seconds", LONG))
    seen_stop = False
    while time.monotonic() < deadline:
        if not seen_stop and job.stop_requested:
            seen_stop = True
            record(job, "stop_requested")
            if _payload(job).get("obey_stop"):
                break
        time.sleep(0.01)
    record(job, "end")


def explicit(job: kojo.Job) -> None:
    """Applies the request named by `payload.do`; auto-complete is on, the request must win."""
    record(job, "start")
    payload = _payload(job)
    action = payload["do"]
    if action == "complete_success":
        job.complete_success()
    elif action == "complete_failed":
        job.complete_failed()
    elif action == "hold":
        job.hold()
    elif action == "retry":
        if job.times_retried == 0:
            job.retry(delay=float(payload["delay"]))
    else:
        raise ValueError(f"unknown action {action!r}")
    record(job, "end")


def manual(job: kojo.Job) -> None:
    """auto_complete_success=False and no request: the job must panic."""
    record(job, "start")


def failing(job: kojo.Job) -> None:
    """Always raises, from a nested call so the traceback has depth."""
    record(job, "start")

    def deep() -> None:
        raise ValueError(f"boom from job {job.id}")

    deep()


def overtime(job: kojo.Job) -> None:
    """Overruns its type's timeout on the first attempt; quick once it has crashed."""
    record(job, "start")
    if job.times_crashed == 0:
        time.sleep(LONG)
    record(job, "end")


def suicidal(job: kojo.Job) -> None:
    """Kills its own process every time: crashes until max_crashes, then panicked."""
    record(job, "start")
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(LONG)


def victim(job: kojo.Job) -> None:
    """Runs 'forever' until its process is killed; returns at once on the re-run (whether
    or not the crash was counted against it)."""
    record(job, "start")
    if job.times_worked == 1:
        time.sleep(LONG)
    record(job, "end")


def stopper(job: kojo.Job) -> None:
    """Sends SIGTERM to `payload.pid` (the server), then works 10 ms more."""
    record(job, "start")
    os.kill(int(_payload(job)["pid"]), signal.SIGTERM)
    record(job, "signalled")
    time.sleep(0.01)
    record(job, "end")


def locker(job: kojo.Job) -> None:
    """Takes mutex `payload.mutex`, records "got", holds it `payload.seconds`, records
    "release". Its process looks at a lock it waits for only every LONG seconds: a
    hand-off within that came from a ring."""
    import kojo.locks

    kojo.locks.PROBE_INTERVAL = LONG
    payload = _payload(job)
    with job.mutex(str(payload["mutex"]), timeout=LONG):
        record(job, "got")
        time.sleep(float(payload.get("seconds", 0)))
        record(job, "release")


def chatty(job: kojo.Job) -> None:
    """Logs through job.logger."""
    record(job, "start")
    job.logger.info("chatty says hello", extra={"greeting": "hello", "n": 7})
    record(job, "end")


async def awaiting(job: kojo.Job) -> None:
    """Async: awaits `payload.seconds` (default 10 ms); records the id of its event loop;
    `payload.do` may be "raise" (after the await) or "complete_failed"."""
    record(job, "start", loop=id(asyncio.get_running_loop()))
    await asyncio.sleep(float(_payload(job).get("seconds", 0.01)))
    action = _payload(job).get("do")
    if action == "raise":
        raise ValueError(f"async boom from job {job.id}")
    if action == "complete_failed":
        job.complete_failed()
    record(job, "end")


async def async_overtime(job: kojo.Job) -> None:
    """Async: awaits 'forever' on the first attempt (past its type's timeout); quick once
    it has crashed."""
    record(job, "start")
    if job.times_crashed == 0:
        await asyncio.sleep(LONG)
    record(job, "end")


async def async_sleeper(job: kojo.Job) -> None:
    """Async: awaits in 10 ms steps until stop_requested, then records it and returns."""
    record(job, "start")
    deadline = time.monotonic() + float(_payload(job).get("seconds", LONG))
    while time.monotonic() < deadline:
        if job.stop_requested:
            record(job, "stop_requested")
            break
        await asyncio.sleep(0.01)
    record(job, "end")


def register(app: kojo.App) -> kojo.App:
    """The test job types, on `app`."""
    app.job_type("noop")(noop)
    app.job_type("sleeper")(sleeper)
    app.job_type("explicit")(explicit)
    app.job_type("manual", auto_complete_success=False)(manual)
    app.job_type("failing", max_retries=2)(failing)
    app.job_type("overtime", timeout=0.5)(overtime)
    app.job_type("suicidal", max_crashes=2)(suicidal)
    app.job_type("victim")(victim)
    app.job_type("stopper")(stopper)
    app.job_type("chatty")(chatty)
    app.job_type("locker")(locker)
    app.job_type("limited", concurrency_limit=2)(noop)
    app.job_type("rated", rate_limit="3/PT2S")(rated)
    app.job_type("awaiting", max_retries=1)(awaiting)
    app.job_type("async-overtime", timeout=1)(async_overtime)
    app.job_type("async-sleeper")(async_sleeper)
    # Deleted the moment it ends: a cancel must not need the row to find the process.
    app.job_type("fleeting-sleeper", auto_delete_interval_duration="PT0S")(sleeper)
    return app


app = register(kojo.App())
