"""The maintenance duties: crash detection, cron scheduling, the schedule-limit gate, deletion,
and folding the running totals of finished jobs (backends/tally_store.py).

`run_once` runs them all; the process tree calls it about once a second in one
process of the cluster at a time (the `kojo.maintainer` mutex). That lock only
saves work: every duty is also safe when two processes run it at once, through
the database's unique keys, row locks and compare-and-set transitions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import cron_scheduler, states
from .backends.availability import one_line
from .clock import as_utc, utcnow
from .errors import InvalidTransition, JobNotFound
from .logs import get_logger

if TYPE_CHECKING:
    from .app import App

MESSAGE_RETENTION = timedelta(hours=1)
GATE_BATCH = 1000

log = get_logger("maintenance")


def gate_schedule_limits(
    app: App, now: datetime | None = None, *, limit: int = GATE_BATCH
) -> dict[str, int]:
    """Move due jobs out of waiting/schedule_limit_check (Kōjō §3.5, plus the allowance).

    Per type, oldest `work_at` first, with `active` = the type's jobs working or
    waiting to work: while `active < schedule_limit` a job is promoted to
    waiting/working. Past the limit, the first `schedule_limit_allowance`
    jobs stay pending until there is room; any further one is failed
    (complete_failed_schedule_limit_check). A limit of 0 means no limit.
    Returns counts: promoted, failed, kept.
    """
    now = as_utc(now or utcnow())
    backend = app.backend
    counts = {"promoted": 0, "failed": 0, "kept": 0}
    for row in backend.fetchall("maintenance_pending_types", {"now": now}):
        code = str(row["type_code"])
        try:
            _gate_type(app, code, now, limit, counts)
        except Exception as exc:
            if backend.is_unavailable(exc):
                raise
            log.exception(
                f"Schedule-limit gate failed for job type [{code}]",
                extra={"context": {"type_code": code}},
            )
    return counts


def _gate_type(app: App, code: str, now: datetime, limit: int, counts: dict[str, int]) -> None:
    backend = app.backend
    # One transaction per type, with the type row locked (PostgreSQL; SQLite writes
    # are serial anyway): two gates can never both see room for the same slot.
    with backend.write():
        job_type = backend.fetchone("maintenance_gate_type", {"type_code": code})
        if job_type is None:
            return
        limit_ = int(job_type["schedule_limit"])
        allowance = int(job_type["schedule_limit_allowance"])
        interval = job_type["auto_delete_interval_duration"]
        active_row = backend.fetchone("maintenance_active_jobs", {"type_code": code})
        active = int(active_row["active"]) if active_row else 0
        kept = 0
        pending = backend.fetchall(
            "maintenance_pending_jobs", {"type_code": code, "now": now, "limit": limit}
        )
        for job in pending:
            job["auto_delete_interval_duration"] = interval
            if limit_ == 0 or active < limit_:
                transition = states.WAIT_FOR_WORK
            elif kept < allowance:
                kept += 1
                continue
            else:
                transition = states.COMPLETE_FAILED_SCHEDULE_LIMIT_CHECK
            try:
                backend.job_transition(
                    int(job["kojo_job_id"]), transition, now=now, row=job, actor="maintenance"
                )  # notifies the job processes when it promotes
            except (InvalidTransition, JobNotFound):
                continue  # changed meanwhile (cancelled by an operator): not ours
            if transition is states.WAIT_FOR_WORK:
                active += 1
                counts["promoted"] += 1
            else:
                counts["failed"] += 1
                log.info(
                    f"Job with ID[{job['kojo_job_id']}] failed its schedule limit check",
                    extra={
                        "context": {
                            "kojo_job_id": job["kojo_job_id"],
                            "type_code": code,
                            "schedule_limit": limit_,
                            "schedule_limit_allowance": allowance,
                        }
                    },
                )
        counts["kept"] += kept


def delete_completed(app: App, now: datetime | None = None, *, batch: int = 500) -> int:
    """Delete every completed job whose delete_after_date_time has passed; how many.

    Batches of `batch` rows, each in its own short transaction, until none is
    left (Kōjō's offset paging skipped rows while deleting: quirk Q3, fixed).
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch!r}")
    now = as_utc(now or utcnow())
    if app.backend.fetchone("maintenance_any_expired", {"now": now}) is None:
        return 0
    return _delete_in_batches(app, "maintenance_delete_completed", {"now": now}, batch)


def delete_old_messages(
    app: App, now: datetime | None = None, *, older_than: timedelta = MESSAGE_RETENTION
) -> int:
    """Delete kojo_message rows older than `older_than` (1 hour); how many.

    Cheap when there are none: one primary-key lookup of the oldest message.
    """
    now = as_utc(now or utcnow())
    cutoff = now - older_than
    oldest = app.backend.fetchone("maintenance_oldest_message")
    if oldest is None or as_utc(oldest["created_at_date_time"]) >= cutoff:
        return 0
    with app.backend.write():
        return app.backend.execute("message_delete_before", {"before": cutoff})


def _delete_in_batches(app: App, query: str, params: dict[str, Any], batch: int) -> int:
    backend = app.backend
    total = 0
    while True:
        # Retried when the database picks it as a deadlock's victim (another deleter's
        # batch, or an operator's purge, on the same rows).
        deleted = backend.retrying(lambda: backend.execute(query, {**params, "batch": batch}))
        total += deleted
        if deleted < batch:
            return total


def run_once(
    app: App, now: datetime | None = None, *, disabled_log_level: str | int | None = None
) -> dict[str, Any]:
    """One maintenance pass: every duty, each isolated from the others' failures.

    Returns what each duty did (reaped, scheduled, promoted, failed, kept,
    deleted, messages_deleted, tallies_folded) and `errors`: the duties that raised (logged).
    """
    now = as_utc(now or utcnow())
    backend = app.backend
    report: dict[str, Any] = {"errors": []}
    duties: list[tuple[str, Callable[[], Any]]] = [
        ("reaped", lambda: len(backend.reap_dead_owners(now))),
        (
            "scheduled",
            lambda: cron_scheduler.schedule_due(app, now, disabled_log_level=disabled_log_level),
        ),
        ("gate", lambda: gate_schedule_limits(app, now)),
        ("deleted", lambda: delete_completed(app, now)),
        ("messages_deleted", lambda: delete_old_messages(app, now)),
        ("tallies_folded", lambda: backend.tally_fold(now)),
    ]
    failures: list[BaseException] = []
    for name, duty in duties:
        try:
            result = duty()
        except Exception as exc:
            report["errors"].append(name)
            failures.append(exc)
            if backend.is_unavailable(exc):
                log.debug(f"Maintenance duty [{name}] failed: {one_line(exc)}")
            else:
                log.exception(
                    f"Maintenance duty [{name}] failed", extra={"context": {"duty": name}}
                )
            continue
        if isinstance(result, dict):
            report.update(result)
        else:
            report[name] = result
    if failures:
        report["failures"] = failures
    return report
