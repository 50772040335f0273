"""The root's line for a dead job process names the job it was working, how the
process died, and what happens next (driven with a fake backend, no forks)."""

from __future__ import annotations

import logging
import signal
from types import SimpleNamespace
from typing import Any

import pytest

from fake_clock import FakeClock
from kojo.backends.job_store import CrashedJob, Death
from kojo.processes.lineage import Lineage
from kojo.processes.root import Child, Root
from kojo.settings import Settings

PATH = "/server[8]/root[22]/job[30]"


class ReapingBackend:
    """Reaps a dead child's one registration, crashing the jobs given (or none)."""

    def __init__(self, crashed: list[CrashedJob], ready: bool = True) -> None:
        self.crashed = crashed
        self.ready = ready  # False: the registration is not dead yet (PostgreSQL's moment)
        self.deaths: list[Death | None] = []

    def owners_of_process(self, host_name: str, pid: int) -> list[int]:
        return [7]

    def reap_dead_owner(
        self, owner_id: int, *, blame: bool, death: Death | None
    ) -> list[CrashedJob] | None:
        if not self.ready:
            return None
        self.deaths.append(death)
        return self.crashed

    def process_get(self, owner_id: int) -> Any:
        return {"kojo_process_id": owner_id}

    def is_unavailable(self, exc: BaseException) -> bool:
        return False


def root_with(backend: ReapingBackend) -> Root:
    settings = Settings("host-a", 1, 30.0)
    app: Any = SimpleNamespace(backend=backend)
    return Root(app, Lineage("/server[8]/root[22]", "root"), settings, FakeClock())


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "kojo.root" and r.levelno >= logging.ERROR]


def test_a_killed_job_process_names_the_job_it_was_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = ReapingBackend([CrashedJob(123, "x", "crashed", 1, 5)])
    root = root_with(backend)
    with caplog.at_level(logging.INFO, logger="kojo"):
        root._child_exited(30, Child("job", 0.0), signal.SIGKILL)  # killed by signal 9
    (line,) = errors(caplog)
    assert line.getMessage() == (
        f"Job process {PATH} died (signal 9 (SIGKILL)) while working job 123 (type x); "
        "the job is crashed and will be re-run (crash 1 of max_crashes=5)."
    )
    assert line.job["kojo_job_id"] == 123 and line.job["assigned_state"] == "crashed"  # type: ignore[attr-defined]
    assert backend.deaths == [Death(PATH, "signal 9 (SIGKILL)", timed_out=False)]


def test_a_timeout_says_so_and_a_panic_says_what_to_do(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = ReapingBackend([CrashedJob(124, "slow", "panicked", 5, 5)])
    root = root_with(backend)
    with caplog.at_level(logging.INFO, logger="kojo"):
        root._child_exited(30, Child("job", 0.0), signal.SIGALRM)
    (line,) = errors(caplog)
    assert line.getMessage() == (
        f"Job 124 (type slow) ran past its type's timeout: its job process {PATH} was "
        "killed; the job is panicked: it crashed 5 times (max_crashes=5). Fix the cause, "
        "then: kojo jobs retry 124"
    )
    assert backend.deaths[0] is not None and backend.deaths[0].timed_out


def test_an_idle_death_and_a_late_reaping_are_told_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    idle = root_with(ReapingBackend([]))
    with caplog.at_level(logging.INFO, logger="kojo"):
        idle._child_exited(30, Child("job", 0.0), 1 << 8)  # exit 1
    assert [r.getMessage() for r in errors(caplog)] == [
        f"Job process {PATH} died (exit 1) while idle."
    ]
    caplog.clear()

    backend = ReapingBackend([CrashedJob(125, "x", "crashed", 2, 5)], ready=False)
    late = root_with(backend)
    with caplog.at_level(logging.INFO, logger="kojo"):
        late._child_exited(30, Child("job", 0.0), signal.SIGKILL)
        backend.ready = True
        late._retry_reaps(late.clock.monotonic() + 10)
    assert [r.getMessage() for r in errors(caplog)] == [
        f"Job process {PATH} died (signal 9 (SIGKILL)); its jobs will be crashed as soon as "
        "its registration can be reaped.",
        f"Job process {PATH} died (signal 9 (SIGKILL)) while working job 125 (type x); "
        "the job is crashed and will be re-run (crash 2 of max_crashes=5).",
    ]


def test_a_clean_exit_is_no_death() -> None:
    backend = ReapingBackend([])
    root_with(backend)._child_exited(30, Child("job", 0.0, retiring=True), 0)
    assert backend.deaths == [None]
