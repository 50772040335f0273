"""`kojo work JOB_ID --inline`: claim and run one job in this process, for debuggers."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import runner, states
from .backends import ProcessInfo
from .clock import utcnow
from .errors import InvalidTransition, JobNotFound, WorkerUnavailable
from .logs import metadata
from .outcomes import Outcome
from .refusals import refusal

if TYPE_CHECKING:
    from .app import App


def work_inline(app: App, job_id: int, host_name: str) -> dict[str, Any]:
    """Claim job `job_id` (waiting or crashed), run it here, settle it; the final row.

    The job type's timeout is not enforced here: a debugger may pause for long.
    """
    backend = app.backend
    path = f"/inline[{os.getpid()}]"
    metadata.set_process(path, "inline")
    owner = backend.register_owner(
        ProcessInfo(host_name, os.getpid(), os.getppid(), path, "inline")
    )
    app.use_owner(owner)
    try:
        with backend.write():
            row = backend.job_claim_by_id(job_id, owner.id, utcnow())
            if row is None:
                current = backend.job_get(job_id)
                if current is None:
                    raise JobNotFound(f"no job with id {job_id}")
                raise InvalidTransition(
                    refusal("work", current),
                )
        row = runner.with_type(app, row, max_age=0)
        metadata.job = row
        try:
            outcome = runner.run(app, row, owner.id)
        except WorkerUnavailable as exc:
            # A setup error, not the job's: give it back as it was (not panicked).
            try:
                with backend.write():
                    backend.job_transition(job_id, states.UNCLAIM, owner=owner.id, row=row)
            except (InvalidTransition, JobNotFound):
                pass  # cancelled meanwhile: nothing to give back
            raise WorkerUnavailable(exc.type_code, exc.worker_uri, exc.why, job_id=job_id) from exc
        if outcome == Outcome.AUTO_COMPLETE:
            with backend.write():
                backend.job_complete_many([row], owner.id, utcnow())
        metadata.job = None
        result = backend.job_get(job_id)
        return result if result is not None else row
    finally:
        owner.close()
