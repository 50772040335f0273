"""The pool follows the work: surplus idle job processes retire, due work grows it back."""

from __future__ import annotations

import pytest
from workers_harness import Tree, wait_for


def test_the_pool_shrinks_when_idle_and_grows_back_with_due_work(tree: Tree) -> None:
    server = tree.start(max_processes=3, extra_env={"KOJO_IDLE_RETIRE_SECONDS": "0.5"})

    def job_pids() -> list[int]:
        return sorted(
            r["process_id"]
            for r in tree.ps()
            if r["kind"] == "job" and r["host_name"] == server.host_name
        )

    # Idle: the surplus processes retire, one stays to take the next job at once.
    wait_for(lambda: len(job_pids()) == 1, 15.0, lambda: f"one job process, have {job_pids()}")

    # Three slow jobs due at once: every job process is busy, so the root forks more.
    ids = [tree.app.schedule("sleeper", payload={"seconds": 2}) for _ in range(3)]
    starts = [tree.wait_record("start", job_id, 10.0)[0] for job_id in ids]
    assert len(job_pids()) == 3
    first_end = min(tree.wait_record("end", job_id, 10.0)[0]["t"] for job_id in ids)
    assert max(s["t"] for s in starts) < first_end, "the three jobs did not run side by side"

    # Idle again: back to one.
    wait_for(lambda: len(job_pids()) == 1, 15.0, lambda: f"one job process, have {job_pids()}")
    assert server.exited() is None


@pytest.mark.one_backend("an option refused before the database is opened")
def test_a_bad_idle_retire_setting_is_refused_at_start(tree: Tree) -> None:
    server = tree.start(extra_env={"KOJO_IDLE_RETIRE_SECONDS": "soon"}, ready=False)
    assert server.wait(15.0) == 2  # a bad value
    assert server.stderr().strip().splitlines() == [
        "error: KOJO_IDLE_RETIRE_SECONDS must be a positive number, not 'soon'"
    ]
