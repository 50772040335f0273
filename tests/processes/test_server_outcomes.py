"""Outcomes of jobs worked by a real `kojo server start`: SPEC "Python API", outcomes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from workers_harness import Tree, assert_killed_by_timeout_and_rerun, wait_for

SETTLE = 15.0  # seconds any single outcome may take to appear


def _log_line(tree: Tree, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
    server = tree.servers[0]

    def find() -> dict[str, Any] | None:
        return next((line for line in server.log_lines() if predicate(line)), None)

    found: dict[str, Any] = wait_for(find, timeout, "a matching log line")
    return found


def test_returning_workers_settle_as_requested(tree: Tree) -> None:
    """Auto-complete; an explicit request wins over auto-complete (complete_success,
    complete_failed, hold, retry(delay)); no request without auto-complete panics."""
    tree.start()
    app = tree.app
    ids = {
        "auto": app.schedule("noop"),
        "success": app.schedule("explicit", payload={"do": "complete_success"}),
        "failed": app.schedule("explicit", payload={"do": "complete_failed"}),
        "hold": app.schedule("explicit", payload={"do": "hold"}),
        "retry": app.schedule("explicit", payload={"do": "retry", "delay": 0.5}),
        "manual": app.schedule("manual"),
    }

    auto = tree.wait_state(ids["auto"], "complete_success", SETTLE)
    assert auto["times_worked"] == 1
    assert auto["completed_at_date_time"] is not None
    assert auto["delete_after_date_time"] == auto["completed_at_date_time"] + timedelta(days=1)

    success = tree.wait_state(ids["success"], "complete_success", SETTLE)
    assert (success["times_worked"], success["times_panicked"]) == (1, 0)

    failed = tree.wait_state(ids["failed"], "complete_failed", SETTLE)
    assert (failed["times_worked"], failed["times_panicked"]) == (1, 0)
    assert failed["completed_at_date_time"] is not None

    manual = tree.wait_state(ids["manual"], "panicked", SETTLE)
    assert manual["times_panicked"] == 1
    assert manual["priority"] == -1
    assert "did not request a next state" in manual["last_error"]
    panic_line = _log_line(
        tree, lambda line: "did not request a next state" in str(line["message"])
    )
    assert panic_line["level"] == "critical"
    assert f"ID[{ids['manual']}]" in panic_line["message"]

    # retry(delay=0.5): worked again no sooner than 0.5 s later, then auto-completed.
    retried = tree.wait_state(ids["retry"], "complete_success", SETTLE)
    assert (retried["times_worked"], retried["times_retried"]) == (2, 1)
    first, second = tree.records("start", ids["retry"])
    assert second["times_retried"] == 1
    assert second["t"] - first["t"] >= 0.45

    # hold: parked, never selected again (the retried job above ran after it).
    held = tree.wait_state(ids["hold"], "hold", SETTLE)
    assert (held["times_held"], held["times_worked"], held["next_state_request"]) == (1, 1, "none")
    assert held["completed_at_date_time"] is None

    # Each of the others ran exactly once.
    for name in ("auto", "success", "failed", "hold", "manual"):
        assert len(tree.records("start", ids[name])) == 1, name


def test_exception_is_retried_with_backoff_then_panicked(tree: Tree) -> None:
    """max_retries=2: three attempts with growing delays, then panicked with the traceback."""
    tree.start()
    job_id = tree.app.schedule("failing")

    final = tree.wait_state(job_id, "panicked", 20.0)
    starts = tree.records("start", job_id)
    assert [r["times_retried"] for r in starts] == [0, 1, 2]
    # Backoff with jitter in [0.5, 1.5) x 2**n seconds.
    assert starts[1]["t"] - starts[0]["t"] >= 0.45
    assert starts[2]["t"] - starts[1]["t"] >= 0.95
    assert (final["times_retried"], final["times_panicked"], final["times_worked"]) == (2, 1, 3)
    assert "Traceback" in final["last_error"]
    assert f"ValueError: boom from job {job_id}" in final["last_error"]
    assert "in deep" in final["last_error"]

    lines = tree.servers[0].log_lines()
    retrying = f"Retrying job with ID[{job_id}]"
    retries = [ln for ln in lines if str(ln["message"]).startswith(retrying)]
    assert len(retries) == 2
    (panic,) = [
        ln for ln in lines if str(ln["message"]).startswith(f"Panicking job with ID[{job_id}]")
    ]
    assert panic["message"] == (
        f"Panicking job with ID[{job_id}]: its worker raised ValueError: boom from job {job_id} "
        f"with no retries left (max_retries=2). Fix the cause, then: kojo jobs retry {job_id}"
    )
    assert "(retry 1 of max_retries=2)" in retries[0]["message"]
    assert panic["level"] == "critical"
    exception = panic["context"]["exception"]
    assert exception["class"] == "builtins.ValueError"
    assert exception["message"] == f"boom from job {job_id}"
    assert any("in deep" in frame for frame in exception["trace"])
    assert panic["kojo_metadata"]["job"]["kojo_job_id"] == job_id


def test_timeout_kills_the_job_process_and_the_job_is_rerun(tree: Tree) -> None:
    """timeout=0.5 s: the first attempt overruns, its process is killed, the job is crashed
    and worked again (times_crashed visible to the worker)."""
    server = tree.start()
    final = assert_killed_by_timeout_and_rerun(tree, server, "overtime", 0.45, 5.0)
    assert final["priority"] == -1
    # ... and replaced.
    wait_for(
        lambda: len([r for r in tree.processes() if r["kind"] == "job"]) == 2,
        5.0,
        "a replacement job process",
    )


def test_a_job_that_keeps_killing_its_process_is_panicked_after_max_crashes(tree: Tree) -> None:
    """max_crashes=2: crashed once and re-run, then panicked; never a third run."""
    tree.start()
    job_id = tree.app.schedule("suicidal")

    final = tree.wait_state(job_id, "panicked", SETTLE)
    starts = tree.records("start", job_id)
    assert [r["times_crashed"] for r in starts] == [0, 1]
    assert starts[0]["pid"] != starts[1]["pid"]
    assert (final["times_crashed"], final["times_panicked"], final["times_worked"]) == (2, 1, 2)
    assert "crashed 2 times" in final["last_error"]
    # The pool recovers from both deaths.
    wait_for(
        lambda: len([r for r in tree.processes() if r["kind"] == "job"]) == 2,
        5.0,
        "the pool to be refilled",
    )
    assert len(tree.records("start", job_id)) == 2


def test_cancelling_a_running_job_stops_its_process(tree: Tree) -> None:
    """The root reads the stored stop command (a wake-up only announces it) and retires
    the process working the job; the job stays complete_terminated."""
    server = tree.start()
    job_id = tree.app.schedule("sleeper", payload={"seconds": 60})
    [start] = tree.wait_record("start", job_id, SETTLE)
    assert tree.app.cancel(job_id)["assigned_state"] == "complete_terminated"
    wait_for(
        lambda: not any(p.pid == start["pid"] for p in server.tree()),
        SETTLE,
        "the cancelled job's process to stop",
    )
    _log_line(tree, lambda ln: f"its job with ID[{job_id}] was cancelled" in str(ln["message"]))
    assert tree.app.job(job_id)["assigned_state"] == "complete_terminated"
    assert tree.records("end", job_id) == []
