"""An operator's action that the job's state refuses, said in the operator's words.

The state machine refuses with its own names ("cannot wait_for_work from
complete_terminated/none"); a person who typed `kojo jobs release 12` needs to
hear what job 12 is, what the action needs, and what to do instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

from .backends.errors import database_errors
from .errors import InvalidTransition, JobNotFound

F = TypeVar("F", bound=Callable[..., Any])

# action: (past participle, the jobs it applies to)
ACTIONS = {
    "hold": ("held", "a waiting or working job"),
    "release": ("released", "a held, panicked or crashed job"),
    "cancel": ("cancelled", "an unfinished job"),
    "work": ("worked", "a waiting or crashed job"),
    "retry": ("retried", "a panicked, crashed, complete_failed or complete_terminated job"),
}
RERUNNABLE = {"panicked", "crashed", "complete_failed", "complete_terminated"}


def refusal(action: str, job: Mapping[str, Any]) -> str:
    """One sentence: what the job is, what `action` needs, and the next step if any."""
    job_id, state = job["kojo_job_id"], job["assigned_state"]
    done, applies_to = ACTIONS[action]
    if action == "cancel" and str(state).startswith("complete_"):
        return f"job {job_id} is {state}: it has finished, there is nothing to cancel"
    text = f"job {job_id} is {state}; only {applies_to} can be {done}"
    if action in ("release", "cancel") and state == "new":
        text += " (it is being scheduled: try again in a moment)"
    elif action in ("release", "work") and state in RERUNNABLE:
        text += f"; to run it again: kojo jobs retry {job_id}"
    elif action == "work" and state == "waiting":
        text = f"job {job_id} is waiting, but not to be worked yet; kojo jobs why {job_id} says why"
    elif action == "hold" and state == "hold":
        text = f"job {job_id} is already on hold; kojo jobs release {job_id} lets it run"
    return text


def operator_action(action: str) -> Callable[[F], F]:
    """Decorate App.`action`(job_id): a refusal becomes InvalidTransition(refusal(...))."""

    def decorate(method: F) -> F:
        @wraps(method)
        def wrapper(app: Any, job_id: int, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(app, job_id, *args, **kwargs)
            except InvalidTransition:
                with database_errors():
                    job = app.backend.job_get(job_id)
                if job is None:
                    raise JobNotFound(f"no job with id {job_id}") from None
                raise InvalidTransition(refusal(action, job)) from None

        return wrapper  # type: ignore[return-value]

    return decorate
