"""Tasks of kojo.contrib.django's tests; imported by the tests and by a real server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def fail(message: str) -> None:
    raise ValueError(message)


class TaskProblem(Exception):
    pass


@task
def fail_at_length() -> None:
    """A traceback longer than kojo keeps (its start is cut) and a two-line message."""
    raise TaskProblem("first line\nsecond line") from ValueError("x" * 9000)


@task(takes_context=True)
def attempt(context: Any, x: int) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id, "x": x}


@task
async def add_later(a: int, b: int) -> int:
    return a + b


@task
def report_pid() -> int:
    return os.getpid()


def touch(path: str) -> str:
    """Not a task: a forged payload naming it must not run it."""
    Path(path).write_text("ran")
    return "ran"
