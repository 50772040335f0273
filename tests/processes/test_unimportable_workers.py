"""A worker the server cannot import is a setup error, never the job's fault (issue 15):
`kojo server start` says so at start, one warning per type; its jobs stay waiting with
nothing counted against them while other types run; each job process says it once per
type, not once per job; and once the module is deployed the jobs run, without a restart.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from workers_harness import MANAGED, Server, Tree, wait_for

import kojo

SETTLE = 15.0
WORKER = "late_worker:work"  # a module of the server's folder, deployed during the test
COUNTERS = ("times_worked", "times_retried", "times_crashed", "times_panicked")


def _mentions(line: dict[str, Any], *parts: str) -> bool:
    return all(part in str(line["message"]) for part in parts)


def test_jobs_of_an_unimportable_worker_wait_then_run_once_it_is_deployed(tree: Tree) -> None:
    app = tree.app
    app.install()
    # Stored as `kojo types register --file` would, where the module could be imported.
    app.backend.type_register(kojo.JobType(code="late", worker_uri=WORKER))
    server = tree.start(max_processes=2)
    warning = wait_for(
        lambda: next(
            (
                ln
                for ln in server.log_lines()
                if ln["level"] == "warning" and _mentions(ln, "[late]", WORKER)
            ),
            None,
        ),
        5.0,
        "the start-up warning about type late",
    )
    assert warning["level"] == "warning"
    assert "ModuleNotFoundError" in warning["message"]
    assert warning["context"]["worker"] == WORKER

    late = [app.schedule("late") for _ in range(5)]
    other = app.schedule("noop")
    tree.wait_state(other, "complete_success", SETTLE)  # other types run meanwhile
    errors = wait_for(
        lambda: [
            ln
            for ln in server.log_lines()
            if ln["level"] == "error" and _mentions(ln, "[late]", WORKER)
        ],
        SETTLE,
        "a job process to say it cannot import the worker",
    )

    # The other job process may be between its claim of a late job and giving it back
    # (it tries the import after the claim; on MySQL, whose claims split types, it
    # claims a moment after the first): given back, every job waits, nothing counted.
    def late_rows() -> list[tuple[Any, ...]]:
        return [
            (row["assigned_state"], row["next_state_request"], *(row[c] for c in COUNTERS))
            for row in map(tree.job, late)
        ]

    waiting = [("waiting", "working", 0, 0, 0, 0)] * len(late)
    wait_for(lambda: late_rows() == waiting, SETTLE, late_rows)
    # Once per job process at most, whatever the number of jobs.
    job_pids = {ln["kojo_metadata"]["process"]["process_id"] for ln in errors}
    assert len(errors) == len(job_pids) <= 2, [ln["message"] for ln in errors]

    (tree.tmp_path / "late_worker.py").write_text("from workers_server import noop as work\n")
    for job_id in late:
        row = tree.wait_state(job_id, "complete_success", SETTLE)
        assert [row[c] for c in COUNTERS] == [1, 0, 0, 0], row
    assert not [ln for ln in server.log_lines() if ln["level"] == "critical"]


@pytest.mark.one_backend("the import path of the console script")
def test_the_console_script_finds_workers_in_the_folder_it_is_started_from(tree: Tree) -> None:
    """`kojo server start` without --app, from the code's folder: the installed script,
    unlike `python -m`, does not put that folder on the import path itself (here: -P)."""
    app = tree.app
    app.install()
    (tree.tmp_path / "here_worker.py").write_text("from workers_server import noop as work\n")
    app.backend.type_register(kojo.JobType(code="here", worker_uri="here_worker:work"))
    env = tree.env()
    del env["KOJO_APP"]
    log_path, err_path = tree.tmp_path / "console.log", tree.tmp_path / "console.err"
    args = ["server", "start", "--max-processes", "1", "--host-name", "console"]
    with open(log_path, "wb") as out, open(err_path, "wb") as err:
        popen = subprocess.Popen(
            [sys.executable, "-P", "-m", "kojo", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=tree.tmp_path,
            start_new_session=True,
        )
    MANAGED.add(popen.pid)
    server = Server(popen, "console", 1, log_path, err_path)
    tree.servers.append(server)
    tree.wait_ready(server)
    job_id = app.schedule("here")
    row = tree.wait_state(job_id, ["complete_success", "panicked"], SETTLE)
    assert (row["assigned_state"], row["times_worked"]) == ("complete_success", 1)
    assert not [ln for ln in server.log_lines() if ln["level"] in ("warning", "error")]
