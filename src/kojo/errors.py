"""The errors kojo raises. Every one is a KojoError, so callers can catch them all."""

from __future__ import annotations

from typing import Any


class KojoError(Exception):
    """Base of every error kojo raises on purpose."""


class InvalidJobType(KojoError):
    """A job type definition has a bad field; the message names the field and the value."""


class WorkerUnavailable(KojoError):
    """A job type's worker cannot be imported in this process: a setup error (the import
    path, a missing deploy), never the job's fault; the job is left to be worked."""

    FIX = "start kojo from your code's folder, put it on PYTHONPATH, or pass --app MODULE:APP"

    def __init__(
        self, type_code: str, worker_uri: str, why: str, *, job_id: int | None = None
    ) -> None:
        message = f"job type {type_code!r} cannot run here: its worker {worker_uri} {why}"
        if job_id is not None:
            message = (
                f"job {job_id} (type {type_code!r}) was not run and is waiting again: its "
                f"worker {worker_uri} {why}; {WorkerUnavailable.FIX}"
            )
        super().__init__(message)
        self.job_id = job_id
        self.type_code = type_code
        self.worker_uri = worker_uri
        self.why = why


class UnknownJobType(KojoError):
    """No job type with that code is registered."""


class JobTypeDisabled(KojoError):
    """The job type exists but is disabled: no new jobs may be made."""


class InvalidTransition(KojoError):
    """A state change is not allowed from the job's current state, or another process won."""


class JobNotFound(KojoError):
    """No job with that id exists (it may have been deleted after completion)."""


class JobFailed(KojoError):
    """`app.result()`: the job ended other than complete_success (its row is `.job`)."""

    def __init__(self, message: str, job: dict[str, Any]) -> None:
        super().__init__(message)
        self.job = job


class RateLimited(KojoError):
    """`kojo work ID`: the job's type has started as many jobs as its rate_limit allows in
    the last period; the message says when the next start is allowed."""


class ResultTimeout(KojoError, TimeoutError):
    """`app.result(timeout=)`: the job had not finished in time (it goes on)."""


class InvalidPayload(KojoError):
    """A payload or message is not JSON-serialisable, or is too large."""


class InvalidArgument(KojoError):
    """A bad value was given to an API call (a lock name, a channel, a delay...)."""


class ServerNotFound(InvalidArgument):
    """No live server has the host name given. An InvalidArgument to the API, but a
    runtime error (exit 1) on the command line: the name may be right once it starts."""


class LockTimeout(KojoError):
    """A mutex or semaphore could not be acquired within the timeout."""


class LeaseLost(KojoError):
    """The backend can no longer vouch for a lease (its holder's anchor was lost)."""


class OwnerLost(KojoError):
    """This process's registration is gone (reaped, or its anchor session ended): the
    cluster treats the process as dead, so it must not claim or run anything more."""


class SlotsMismatch(KojoError):
    """Contenders for one semaphore disagree on its number of slots."""


class DatabaseError(KojoError):
    """The database failed or is unreachable, or the URL is not supported."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached or used now (down, restarting, disk full, locked):
    trying again later may succeed."""


class SchemaMissing(DatabaseError):
    """kojo's tables are not installed in this database: run `kojo db install`."""


class SchemaTooNew(DatabaseError):
    """The database's kojo schema is newer than this kojo knows: upgrade kojo (an older
    kojo must not read or write tables whose meaning it does not know)."""
