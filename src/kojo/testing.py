"""Test job code without a server: run due jobs in the calling process.

    import kojo.testing

    with kojo.testing.temporary_app(app) as test_app:      # a throwaway SQLite database
        row = kojo.testing.run_job(test_app, "send_one", payload={"user": 7})
        assert row["assigned_state"] == "complete_success"

`work_all` claims jobs with the claim a job process makes (due time, priority,
paused and serial types, concurrency limits), runs each with the same runner as
`kojo work --inline`, and settles it through the same state machine: retries,
panics, holds, results and follow-up jobs are real rows in the database. What it
does not do: fork, enforce a type's `timeout`, fire cron types, or wait for jobs
that are not due yet (a retry's backoff, `delay=`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import maintenance, runner, states
from .app import App
from .backends import ProcessInfo
from .clock import utcnow
from .logs import metadata
from .outcomes import Outcome
from .settings import host_name

__all__ = ["run_job", "temporary_app", "work_all"]

DEFAULT_MAX_JOBS = 1000


@contextmanager
def temporary_app(app: App) -> Iterator[App]:
    """An App with `app`'s job types on a new SQLite database in a temporary folder,
    installed and with the types registered; the folder is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="kojo-test-") as folder:
        test_app = App(database=f"sqlite:///{Path(folder, 'kojo.db')}")
        for job_type in app.job_types.values():
            test_app.add_job_type(job_type)
        test_app.install()
        if test_app.job_types:
            test_app.register_job_types()
        try:
            yield test_app
        finally:
            test_app.owners.close()


def work_all(app: App, *, max_jobs: int = DEFAULT_MAX_JOBS) -> list[dict[str, Any]]:
    """Run the jobs that are due now, one at a time in this process, until none is due
    (jobs they schedule for now included); each job's row as its run left it, in the
    order they ran. RuntimeError after `max_jobs` runs (a job that keeps scheduling
    another for now would never let it end)."""
    backend = app.backend
    pid = os.getpid()
    path = f"/testing[{pid}]"
    metadata.set_process(path, "inline")
    owner = backend.register_owner(ProcessInfo(host_name(), pid, os.getppid(), path, "inline"))
    app.use_owner(owner)
    done: list[dict[str, Any]] = []
    try:
        while True:
            maintenance.gate_schedule_limits(app)  # jobs of types with a schedule_limit
            claimed = backend.job_claim(owner.id, 1, utcnow())
            if not claimed:
                return done
            row = runner.with_type(app, claimed[0], max_age=0)
            if len(done) >= max_jobs:
                backend.job_transition(
                    row["kojo_job_id"], states.UNCLAIM, owner=owner.id, row=row
                )  # given back, as it was
                raise RuntimeError(
                    f"work_all: {max_jobs} jobs run and more are due (a job that schedules "
                    "another for now, every time?)"
                )
            metadata.job = row
            try:
                outcome = runner.run(app, row, owner.id)
                if outcome == Outcome.AUTO_COMPLETE:
                    with backend.write():
                        backend.job_complete_many([row], owner.id, utcnow())
            finally:
                metadata.job = None
            final = backend.job_get(int(row["kojo_job_id"]))
            done.append(final if final is not None else row)
    finally:
        app.use_owner(None)
        owner.close()


def run_job(
    app: App, type_code: str, payload: Any = None, *, max_jobs: int = DEFAULT_MAX_JOBS
) -> dict[str, Any]:
    """Schedule a job of `type_code` for now, run every due job (`work_all`), and return
    the job's row: `assigned_state`, `result`, `last_error`, the counters."""
    job_id = app.schedule(type_code, payload=payload)
    work_all(app, max_jobs=max_jobs)
    return app.job(job_id)
