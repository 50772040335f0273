"""Running one claimed job and settling its outcome (Kōjō's Foreman).

- The worker requested a state (retry, hold, complete_*): it stands.
- It returned without a request: complete_success if the type auto-completes
  (returned as Outcome.AUTO_COMPLETE so the caller can batch it), else panicked
  ("did not request a next state").
- It raised: retried with exponential backoff and jitter while max_retries
  allows, else panicked; the traceback goes to the log and to last_error.

A worker that returns an awaitable (an `async def` worker) is awaited to the end
on this process's event loop (async_runner) and then settled the same way.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import json_text, states
from .async_runner import run_coroutine
from .clock import utcnow
from .errors import InvalidPayload, InvalidTransition, JobNotFound
from .jobs import MAX_RESULT_BYTES, Job
from .logs import get_logger
from .outcomes import Outcome
from .retry_policy import backoff_delay, may_retry
from .rows import RunSettings

if TYPE_CHECKING:
    from .app import App

# What running a job needs from its type, beside the job's own columns.
TYPE_COLUMNS = tuple(RunSettings.CONVERT)
log = get_logger("runner")


def with_type(app: App, row: Mapping[str, Any], max_age: float | None = None) -> dict[str, Any]:
    """The claimed job `row` plus the columns of its type that `run` reads."""
    type_row = (
        app.type_row(row["type_code"])
        if max_age is None
        else app.type_row(row["type_code"], max_age=max_age)
    )
    merged = dict(row)
    for column in TYPE_COLUMNS:
        merged[column] = type_row[column]
    return merged


def run(
    app: App,
    row: dict[str, Any],
    owner_id: int | None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Run the claimed job `row` (with its type's columns); how it ended. A worker's
    return value is stored as the job's result: with its own complete_success when it
    auto-completes (set here as `row["result"]`, JSON text, for the completion to write),
    or by `job.complete_success(result=)`. Raises WorkerUnavailable, having changed
    nothing, when the type's worker cannot be imported here."""
    job = Job(app, row, owner_id, stop_requested)
    # A worker that cannot be imported here is a setup error, not the job's fault:
    # WorkerUnavailable propagates with the job untouched, for the caller to give back.
    worker = app.worker_for(job.type_code, job.worker_uri)
    try:
        value = worker(job)
        # `is not None` first: a sync worker (None, mostly) pays no isawaitable check.
        if value is not None and inspect.isawaitable(value):
            value = run_coroutine(value)
    except Exception as exc:
        if job.request is not None:
            log.error(
                f"Worker of job with ID[{job.id}] raised after requesting {job.request}.",
                exc_info=exc,
                extra={"job": job.row},
            )
            return job.request
        return _settle_failure(job, exc, retry_allowed=True)
    if job.request is not None:
        return job.request
    if job.auto_complete_success:
        if value is not None:
            try:
                row["result"] = json_text.dumps(
                    value, "result", max_bytes=MAX_RESULT_BYTES, shown=200
                )
            except InvalidPayload as exc:
                message = f"Job with ID[{job.id}] returned a value kojo cannot store: {exc}"
                return _panic(job, message, exc, message)
        return Outcome.AUTO_COMPLETE
    message = (
        f"Worker related to job with ID[{job.id}] did not request a next state (its type "
        "does not auto-complete: the worker must call job.complete_success() or another "
        f"request). Fix the worker, then: kojo jobs retry {job.id}"
    )
    return _panic(job, message, None)


def _settle_failure(job: Job, exc: BaseException, *, retry_allowed: bool) -> Outcome:
    text = "".join(traceback.format_exception(exc))[-8000:]
    times_retried = job.times_retried
    if retry_allowed and may_retry(times_retried, job.settings.max_retries):
        now = utcnow()
        work_at = now + backoff_delay(times_retried)
        log.warning(
            f"Retrying job with ID[{job.id}] at {work_at.isoformat()}: its worker raised "
            f"{_first_line(exc)} (retry {times_retried + 1} of "
            f"max_retries={job.settings.max_retries}).",
            exc_info=exc,  # JSON: context.exception; text: the traceback
            extra={"job": job.row},
        )
        try:
            job._request(states.RETRY, now=now, work_at=work_at, extra={"last_error": text})
        except (InvalidTransition, JobNotFound) as lost:
            log.warning(f"Could not retry job with ID[{job.id}]: {lost}")
            return Outcome.LOST
        return Outcome.RETRY
    why = f"its worker raised {_first_line(exc)}"
    if retry_allowed:
        why += f" with no retries left (max_retries={job.settings.max_retries})"
    message = (
        f"Panicking job with ID[{job.id}]: {why}. Fix the cause, then: kojo jobs retry {job.id}"
    )
    return _panic(job, message, exc, text)


def _first_line(exc: BaseException) -> str:
    """`ValueError: boom`, on one line and short: the traceback says the rest."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _panic(job: Job, message: str, exc: BaseException | None, text: str | None = None) -> Outcome:
    log.critical(message, exc_info=exc, extra={"job": job.row})
    try:
        job._request(states.PANIC, extra={"last_error": text or message})
    except (InvalidTransition, JobNotFound) as lost:
        log.warning(f"Could not panic job with ID[{job.id}]: {lost}")
        return Outcome.LOST
    return Outcome.PANIC
