"""A worker the server cannot import is a setup error, never the job's fault (issue 15):
`kojo server start` says so at start, one warning per type; its jobs stay waiting with
nothing counted against them while other types run; each job process says it once per
type, not once per job; and once the module is deployed the jobs run, without a restart.
"""

from __future__ import annotations

from typing import Any

from workers_harness import Tree, wait_for

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
    for job_id in late:
        row = tree.job(job_id)
        assert (row["assigned_state"], row["next_state_request"]) == ("waiting", "working")
        assert [row[c] for c in COUNTERS] == [0, 0, 0, 0], row
    # Once per job process at most, whatever the number of jobs.
    job_pids = {ln["kojo_metadata"]["process"]["process_id"] for ln in errors}
    assert len(errors) == len(job_pids) <= 2, [ln["message"] for ln in errors]

    (tree.tmp_path / "late_worker.py").write_text("from workers_server import noop as work\n")
    for job_id in late:
        row = tree.wait_state(job_id, "complete_success", SETTLE)
        assert [row[c] for c in COUNTERS] == [1, 0, 0, 0], row
    assert not [ln for ln in server.log_lines() if ln["level"] == "critical"]
