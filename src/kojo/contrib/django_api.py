"""The Django task API kojo.contrib.django builds on: Django's own `django.tasks` (Django
6+, Python 3.12+) when it exists, else the `django_tasks` backport (same API, older
names). Type checking uses the backport: Django itself ships no types."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
else:
    try:
        from django.tasks import exceptions
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    except ImportError:
        from django_tasks import exceptions
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus

    # Django 6 renamed InvalidTaskError to InvalidTask.
    InvalidTaskError = getattr(exceptions, "InvalidTask", None) or exceptions.InvalidTaskError
    TaskResultDoesNotExist = exceptions.TaskResultDoesNotExist

__all__ = [
    "BaseTaskBackend",
    "InvalidTaskError",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
]
