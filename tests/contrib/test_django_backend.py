"""kojo.contrib.django: Django's task API enqueues kojo jobs, kojo's worker runs them.

Tasks are worked inline (kojo.inline.work_inline) on both backends; one test runs a
real `kojo --app kojo.contrib.django:app server start` on SQLite.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

if not (importlib.util.find_spec("django") and importlib.util.find_spec("django.tasks")):
    pytest.importorskip("django_tasks", reason="neither django.tasks nor django_tasks")

import django
from django.test import override_settings

import kojo
from kojo.inline import work_inline

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
_SET_HERE = "DJANGO_SETTINGS_MODULE" not in os.environ
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dj_settings")
django.setup()  # reads the settings now: the variable is not needed afterwards
if _SET_HERE:  # not left to the rest of the session's subprocesses (kojo servers)
    del os.environ["DJANGO_SETTINGS_MODULE"]

import dj_tasks  # noqa: E402  (tasks are checked against the settings' backend)

from kojo.contrib import django as kojo_django  # noqa: E402
from kojo.contrib.django_api import TaskResultDoesNotExist, TaskResultStatus  # noqa: E402


@pytest.fixture
def backend(database_url: str) -> Iterator[kojo_django.KojoBackend]:
    """TASKS on this test's database: tasks enqueue there through KojoBackend."""
    tasks = {
        "default": {
            "BACKEND": "kojo.contrib.django.KojoBackend",
            "OPTIONS": {"database": database_url},
        }
    }
    with override_settings(TASKS=tasks):
        chosen = dj_tasks.add.get_backend()
        assert isinstance(chosen, kojo_django.KojoBackend)
        assert chosen.database == database_url
        chosen.app.install()
        yield chosen


@pytest.fixture
def server_app(database_url: str, backend: kojo_django.KojoBackend) -> kojo.App:
    """What `kojo --app kojo.contrib.django:app` builds, on this test's database."""
    return kojo_django.make_app(database_url)


def other_worker(job: kojo.Job) -> None:
    pass


def work(app: kojo.App, result_id: str) -> dict[str, Any]:
    return work_inline(app, int(result_id), "h")


def test_enqueue_stores_one_kojo_job(backend: kojo_django.KojoBackend) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    result = dj_tasks.add.using(priority=7, run_after=when).enqueue(2, b=3)
    assert result.status == TaskResultStatus.READY
    assert result.args == [2] and result.kwargs == {"b": 3}
    row = backend.app.job(int(result.id))
    assert row["type_code"] == "django.task"
    assert row["payload"] == {
        "path": "dj_tasks.add",
        "args": [2],
        "kwargs": {"b": 3},
        "queue": "default",
    }
    assert row["importance"] == 7
    assert row["work_at_date_time"] == when
    assert row["assigned_state"] == "waiting"
    assert [job["kojo_job_id"] for job in backend.app.jobs()] == [int(result.id)]
    fetched = backend.get_result(result.id)
    assert fetched.status == TaskResultStatus.READY
    assert fetched.task.priority == 7
    assert fetched.enqueued_at == row["created_at_date_time"]


def test_a_worked_task_succeeds_with_its_return_value(
    backend: kojo_django.KojoBackend, server_app: kojo.App
) -> None:
    result = dj_tasks.add.enqueue(2, 40)
    row = work(server_app, result.id)
    assert row["assigned_state"] == "complete_success"
    fetched = dj_tasks.add.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == 42
    assert fetched.finished_at is not None and fetched.attempts == 1
    result.refresh()  # through the task's backend, like any Django caller
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42


def test_a_raising_task_fails_with_its_error(
    backend: kojo_django.KojoBackend, server_app: kojo.App
) -> None:
    result = dj_tasks.fail.enqueue("the disk is full")
    row = work(server_app, result.id)
    assert row["assigned_state"] == "panicked"  # no retries: FAILED at once
    fetched = backend.get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    [error] = fetched.errors
    assert error.exception_class is ValueError
    assert "ValueError: the disk is full" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        fetched.return_value  # noqa: B018


def test_a_long_traceback_still_names_its_exception(
    backend: kojo_django.KojoBackend, server_app: kojo.App
) -> None:
    result = dj_tasks.fail_at_length.enqueue()
    work(server_app, result.id)
    [error] = backend.get_result(result.id).errors
    assert error.exception_class is dj_tasks.TaskProblem
    assert error.traceback.endswith("dj_tasks.TaskProblem: first line\nsecond line")


def test_a_cancelled_task_fails_with_kojos_reason(backend: kojo_django.KojoBackend) -> None:
    result = dj_tasks.add.enqueue(1, 2)
    backend.app.cancel(int(result.id))
    fetched = backend.get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    assert fetched.errors[0].exception_class is kojo.JobFailed


def test_a_non_json_argument_is_refused(backend: kojo_django.KojoBackend) -> None:
    with pytest.raises(kojo.InvalidPayload, match=r"argument 1 of task dj_tasks\.add .*<object"):
        dj_tasks.add.enqueue(1, object())
    with pytest.raises(kojo.InvalidPayload, match=r"argument b= of task dj_tasks\.add .*nan"):
        dj_tasks.add.enqueue(1, b=float("nan"))
    assert backend.app.jobs() == []


def test_an_unknown_result_id_does_not_exist(backend: kojo_django.KojoBackend) -> None:
    other_app = kojo.App(backend.database)
    other_app.job_type("other")(other_worker)
    other_id = other_app.schedule("other")  # a kojo job, not a task
    for unknown in ("999999", "abc", "0", str(other_id)):
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(unknown)


@pytest.mark.parametrize("path", ["dj_tasks.touch", "os.system", "dj_tasks.nowhere"])
def test_a_payload_naming_no_task_is_refused_by_the_worker(
    backend: kojo_django.KojoBackend, server_app: kojo.App, tmp_path: Path, path: str
) -> None:
    marker = tmp_path / "ran"
    argument = str(marker) if path != "os.system" else f"touch {marker}"
    job_id = server_app.schedule(
        "django.task", payload={"path": path, "args": [argument], "kwargs": {}}
    )
    row = work_inline(server_app, job_id, "h")
    assert row["assigned_state"] == "panicked"
    assert "is not a task" in row["last_error"] or "cannot import task" in row["last_error"]
    assert not marker.exists()


def test_a_context_task_sees_its_attempt(
    backend: kojo_django.KojoBackend, server_app: kojo.App
) -> None:
    result = dj_tasks.attempt.enqueue(x=4)
    work(server_app, result.id)
    fetched = backend.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == {"attempt": 1, "id": result.id, "x": 4}


def test_an_async_task_is_run_to_completion(
    backend: kojo_django.KojoBackend, server_app: kojo.App
) -> None:
    result = dj_tasks.add_later.enqueue(5, 6)
    work(server_app, result.id)
    assert backend.get_result(result.id).return_value == 11


def test_the_server_app_needs_django_settings(tmp_path: Path) -> None:
    """In a fresh interpreter (this one has Django set up): no settings, one clear line."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(SRC)
    done = subprocess.run(
        [sys.executable, "-m", "kojo", "--app", "kojo.contrib.django:app", "types", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "DJANGO_SETTINGS_MODULE" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_real_server_works_a_django_task(sqlite_url: str, tmp_path: Path) -> None:
    """`DJANGO_SETTINGS_MODULE=... kojo --app kojo.contrib.django:app server start`, its
    database taken from TASKS, works a task enqueued here."""
    tasks = {"default": {"BACKEND": kojo_django.BACKEND_PATH, "OPTIONS": {"database": sqlite_url}}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOJO_")}
    env.update(
        DJANGO_SETTINGS_MODULE="dj_settings",
        KOJO_TEST_DJANGO_DATABASE=sqlite_url,
        PYTHONPATH=os.pathsep.join([str(HERE), str(SRC), env.get("PYTHONPATH", "")]),
    )
    command = [sys.executable, "-m", "kojo", "--app", "kojo.contrib.django:app", "server"]
    command += ["start", "--max-processes", "1", "--host-name", "django-test"]
    with override_settings(TASKS=tasks):
        backend = dj_tasks.add.get_backend()
        assert isinstance(backend, kojo_django.KojoBackend)
        backend.app.install()  # enqueued before the server is up: it must find the tables
        with open(tmp_path / "server.log", "wb") as log:
            server = subprocess.Popen(
                command, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            result = dj_tasks.report_pid.enqueue()
            deadline = time.monotonic() + 30
            while not result.is_finished and time.monotonic() < deadline:
                assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
                time.sleep(0.05)
                result.refresh()
            assert result.status == TaskResultStatus.SUCCESSFUL, (
                tmp_path / "server.log"
            ).read_text()[-3000:]
            pid = result.return_value
            assert isinstance(pid, int) and pid not in (os.getpid(), server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                assert server.wait(15) == 0
            finally:
                if server.poll() is None:
                    server.kill()
                    server.wait(5)
