"""Django's task API on kojo: `KojoBackend` enqueues, a kojo server works (docs/django.md).

Settings: TASKS = {"default": {"BACKEND": "kojo.contrib.django.KojoBackend",
"OPTIONS": {"database": "sqlite:///..."}}}. Each enqueued task is one kojo job of the
type `django.task` whose payload names the task ({"path", "args", "kwargs", "queue"});
the server runs them with `DJANGO_SETTINGS_MODULE=mysite.settings kojo --app
kojo.contrib.django:app server start`.
"""

from __future__ import annotations

import os
import re
import threading
from datetime import datetime
from typing import Any, cast

import django
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from django.utils.module_loading import import_string

from kojo import json_text, states
from kojo import settings as kojo_settings
from kojo.app import App
from kojo.contrib.django_api import (
    BaseTaskBackend,
    InvalidTaskError,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
)
from kojo.errors import InvalidArgument, JobFailed, JobNotFound
from kojo.job_types import define
from kojo.jobs import Job

TYPE_CODE = "django.task"
BACKEND_PATH = "kojo.contrib.django.KojoBackend"
# No retries: a task that raises is FAILED, as with Django's other backends. A job process
# that dies mid-task is still re-run (kojo's crash recovery, max_crashes).
MAX_RETRIES = 0

# By name: Django 6 and the backport agree on the names, not on typing TextChoices.
STATUS_OF_STATE = {
    states.State.NEW: "READY",
    states.State.WAITING: "READY",
    states.State.CRASHED: "READY",  # re-run by kojo
    states.State.HOLD: "READY",  # until an operator releases it
    states.State.WORKING: "RUNNING",
    states.State.COMPLETE_SUCCESS: "SUCCESSFUL",
    states.State.PANICKED: "FAILED",
    states.State.COMPLETE_FAILED: "FAILED",
    states.State.COMPLETE_FAILED_SCHEDULE_LIMIT_CHECK: "FAILED",
    states.State.COMPLETE_TERMINATED: "FAILED",
}
# The line of a Python traceback naming the exception: "module.Class: message".
EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")


def add_job_type(app: App) -> App:
    """Define the `django.task` job type on `app`; the app."""
    app.add_job_type(define(TYPE_CODE, run_task, max_retries=MAX_RETRIES))
    return app


# -- the worker side --------------------------------------------------------------------


def load_task(path: object) -> Task[Any, Any]:
    """The task at `path` (its module_path); InvalidTaskError unless it names a function
    decorated as a task, so a forged payload cannot run any other callable."""
    if not isinstance(path, str) or not path:
        raise InvalidTaskError(f"task path must be a dotted name, got {path!r:.200}")
    module = path.rpartition(".")[0]
    # KOJO_WORKER_MODULES limits task modules as it limits worker modules.
    allowed = kojo_settings.allowed_worker_modules()
    if allowed is not None and not kojo_settings.worker_module_allowed(module, allowed):
        raise InvalidTaskError(f"task {path!r} is outside KOJO_WORKER_MODULES")
    try:
        target = import_string(path)
    except ImportError as exc:
        raise InvalidTaskError(f"cannot import task {path!r}: {exc}") from None
    if not isinstance(target, Task) or target.module_path != path:
        raise InvalidTaskError(f"{path!r} is not a task (a function decorated with @task)")
    return target


def run_task(job: Job) -> Any:
    """The worker of `django.task` jobs: run the named task; its return value is the
    job's result. It raises (and the job is panicked, its task FAILED) on a bad payload."""
    payload = job.payload
    if not isinstance(payload, dict):
        raise InvalidTaskError(f"payload must be an object, got {payload!r:.200}")
    task = load_task(payload.get("path"))
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InvalidTaskError("payload args must be a list and kwargs an object")
    # Like a request: a connection the database dropped between tasks is not reused.
    close_old_connections()
    try:
        if task.takes_context:
            context = TaskContext(task_result=task_result(task, job.row, job.id))
            return task.call(context, *args, **kwargs)
        return task.call(*args, **kwargs)
    finally:
        close_old_connections()


# -- the enqueuing side -----------------------------------------------------------------


def _date(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def task_errors(row: dict[str, Any]) -> list[TaskError]:
    """A failed job's error: the exception of its traceback (last_error), else kojo's
    JobFailed carrying why the job ended (a cancel, a panic without exception)."""
    text = str(row.get("last_error") or "").rstrip()
    path = f"{JobFailed.__module__}.{JobFailed.__qualname__}"
    lines = text.splitlines()
    # A traceback (kojo keeps its end only, so the "Traceback" line may be cut off).
    if any(line.startswith("  File ") for line in lines):
        # The exception line follows the last indented line (frames, source, carets).
        indented = [i for i, line in enumerate(lines) if line.startswith(" ")]
        match = EXCEPTION_LINE.match(lines[min(indented[-1] + 1, len(lines) - 1)])
        if match:
            name = match.group(1)
            path = name if "." in name else f"builtins.{name}"
    return [TaskError(exception_class_path=path, traceback=text or f"job {row['assigned_state']}")]


def task_result(task: Task[Any, Any], row: dict[str, Any], job_id: int) -> TaskResult[Any]:
    """The TaskResult of the kojo job `row` (see docs/django.md for the mapping)."""
    state = states.State(row["assigned_state"])
    name = STATUS_OF_STATE[state]
    status = cast(TaskResultStatus, getattr(TaskResultStatus, name))
    payload = row.get("payload") or {}
    working = state == states.State.WORKING
    # kojo keeps when the current attempt started, not when past ones did.
    started = _date(row["last_transition_date_time"]) if working else None
    result: TaskResult[Any] = TaskResult(
        task=task,
        id=str(job_id),
        status=status,
        enqueued_at=_date(row["created_at_date_time"]),
        started_at=started,
        finished_at=_date(row.get("completed_at_date_time")),
        last_attempted_at=started,
        args=payload.get("args", []),
        kwargs=payload.get("kwargs", {}),
        backend=task.backend,
        errors=task_errors(row) if name == "FAILED" else [],
        # kojo does not record which process worked each attempt: one entry per attempt,
        # so `attempts` (and TaskContext.attempt) counts them.
        worker_ids=["kojo"] * int(row.get("times_worked") or 0),
    )
    if name == "SUCCESSFUL":
        object.__setattr__(result, "_return_value", row.get("result"))
    return result


class KojoBackend(BaseTaskBackend):
    """A Django task backend that stores each task as a kojo job (docs/django.md)."""

    supports_defer = True
    supports_priority = True
    supports_get_result = True
    supports_async_task = True  # Task.call runs a coroutine to completion

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        database = self.options.get("database")
        if database is not None and not isinstance(database, str):
            raise InvalidArgument(f"TASKS[{alias!r}] OPTIONS database must be a URL string")
        self.database: str | None = database
        self._app: App | None = None
        self._lock = threading.Lock()

    @property
    def app(self) -> App:
        """The kojo App this backend schedules on, made on first use (no connection
        before a task is enqueued)."""
        with self._lock:
            if self._app is None:
                self._app = add_job_type(App(self.database))
            return self._app

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        self.validate_task(task)
        args, kwargs = list(args), dict(kwargs)
        for index, value in enumerate(args):
            json_text.dumps(value, f"argument {index} of task {task.module_path}", shown=200)
        for name, value in kwargs.items():
            json_text.dumps(value, f"argument {name}= of task {task.module_path}", shown=200)
        run_after = task.run_after
        if run_after is not None and timezone.is_naive(run_after):
            run_after = timezone.make_aware(run_after)  # naive is Django's local time
        job_id = self.app.schedule(
            TYPE_CODE,
            payload={
                "path": task.module_path,
                "args": args,
                "kwargs": kwargs,
                "queue": task.queue_name,
            },
            at=run_after,
            importance=task.priority,
        )
        return task_result(task, self.app.job(job_id), job_id)

    def get_result(self, result_id: str) -> TaskResult[Any]:
        missing = TaskResultDoesNotExist(f"no task result with id {result_id!r}")
        try:
            job_id = int(result_id)
            row = self.app.job(job_id)
        except (TypeError, ValueError, InvalidArgument, JobNotFound):
            raise missing from None
        if row["type_code"] != TYPE_CODE:
            raise missing
        payload = row.get("payload") or {}
        task = load_task(payload.get("path"))
        try:
            task = task.using(priority=row["importance"], queue_name=payload.get("queue"))
        except InvalidTaskError:
            pass  # enqueued with what this backend no longer accepts: the task as defined
        return task_result(task, row, job_id)


# -- the server side --------------------------------------------------------------------


def configured_database() -> str | None:
    """The database of the first TASKS backend that is a KojoBackend ("default" first)."""
    configured: dict[str, Any] = getattr(settings, "TASKS", {}) or {}
    aliases = sorted(configured, key=lambda alias: alias != "default")
    for alias in aliases:
        params = configured[alias]
        if params.get("BACKEND") == BACKEND_PATH:
            database = (params.get("OPTIONS") or {}).get("database")
            return str(database) if database is not None else None
    return None


def make_app(database: str | None = None) -> App:
    """A kojo App that works Django tasks: Django set up (DJANGO_SETTINGS_MODULE), the
    `django.task` type defined, on `database`, else the KojoBackend's of TASKS, else
    KOJO_DATABASE_URL or kojo's default."""
    from django.conf import settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise InvalidArgument(
            "kojo.contrib.django needs DJANGO_SETTINGS_MODULE (e.g. mysite.settings)"
        )
    django.setup()
    return add_job_type(App(database or configured_database()))


_server_app: App | None = None
_server_app_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    """`kojo.contrib.django:app` for `kojo --app`: made when first asked for, so that
    importing this module from Django's settings (KojoBackend) does not set Django up."""
    global _server_app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _server_app_lock:
        if _server_app is None:
            _server_app = make_app()
        return _server_app


__all__ = ["KojoBackend", "add_job_type", "load_task", "make_app", "run_task"]
