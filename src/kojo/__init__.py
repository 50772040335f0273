"""kojo: a distributed task manager for Python (a re-implementation of Neighborhoods Kōjō).

The public API: App, Job, and the errors. Everything else is internal.
"""

from __future__ import annotations

from .app import App
from .errors import (
    DatabaseError,
    DatabaseUnavailable,
    InvalidArgument,
    InvalidJobType,
    InvalidPayload,
    InvalidTransition,
    JobFailed,
    JobNotFound,
    JobTypeDisabled,
    KojoError,
    LeaseLost,
    LockTimeout,
    RateLimited,
    ResultTimeout,
    SchemaMissing,
    SchemaTooNew,
    ServerNotFound,
    SlotsMismatch,
    UnknownJobType,
    WorkerUnavailable,
)
from .job_types import JobType
from .jobs import Job
from .states import Request, State

__all__ = [
    "App",
    "DatabaseError",
    "DatabaseUnavailable",
    "InvalidArgument",
    "InvalidJobType",
    "InvalidPayload",
    "InvalidTransition",
    "Job",
    "JobFailed",
    "JobNotFound",
    "JobType",
    "JobTypeDisabled",
    "KojoError",
    "LeaseLost",
    "LockTimeout",
    "RateLimited",
    "Request",
    "ResultTimeout",
    "SchemaMissing",
    "SchemaTooNew",
    "ServerNotFound",
    "SlotsMismatch",
    "State",
    "UnknownJobType",
    "WorkerUnavailable",
]
