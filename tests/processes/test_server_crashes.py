"""Crash recovery by liveness: kill -9 of a job process, of the root, of the server;
and a live, slow job is never taken for a crashed one."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

from workers_harness import Tree, kojo_processes, wait_for


def test_kill_9_of_a_job_process_crashes_its_job_which_is_rerun(tree: Tree) -> None:
    tree.start(max_processes=2)
    job_id = tree.app.schedule("victim")
    (first,) = tree.wait_record("start", job_id, 10.0)
    pid = first["pid"]

    # `kojo ps` shows the process working the job.
    (row,) = [r for r in tree.ps() if r["process_id"] == pid]
    assert (row["kind"], row["jobs"]) == ("job", [job_id])
    assert tree.state(job_id) == "working"

    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    second = tree.wait_record("start", job_id, 5.0, count=2)[1]
    assert time.monotonic() - killed_at < 5.0
    assert second["times_crashed"] == 1  # the worker sees it was crashed
    assert second["pid"] != pid

    final = tree.wait_state(job_id, "complete_success", 5.0)
    assert (final["times_crashed"], final["times_worked"], final["priority"]) == (1, 2, -1)
    assert len(tree.records("start", job_id)) == 2
    # Its timeline: the claim of the killed process, the crash its root saw, the re-run.
    steps = tree.app.job_timeline(job_id)
    assert [(s["transition"], s["to_state"], s["actor"]) for s in steps] == [
        ("created", "waiting", "kojo"),
        ("work", "working", "process"),
        ("crash", "crashed", "crash"),
        ("work", "working", "process"),
        ("complete_success", "complete_success", "process"),
    ]
    assert steps[1]["kojo_process_id"] == steps[2]["kojo_process_id"]  # the killed one
    assert steps[3]["kojo_process_id"] != steps[1]["kojo_process_id"]
    assert "SIGKILL" in steps[2]["note"], steps[2]
    # The dead process is replaced, and no longer listed.
    wait_for(
        lambda: (
            sorted(r["process_id"] != pid for r in tree.processes() if r["kind"] == "job")
            == [True, True]
        ),
        5.0,
        "a replacement job process",
    )


def test_kill_9_of_the_root_forks_a_new_root_and_reruns_only_the_running_jobs(tree: Tree) -> None:
    server = tree.start(max_processes=2)
    (old_root,) = [r["process_id"] for r in tree.processes() if r["kind"] == "root"]
    old_children = {r["process_id"] for r in tree.processes() if r["kind"] in ("job", "maintainer")}
    assert len(old_children) == 3
    victim = tree.app.schedule("victim")
    tree.wait_record("start", victim, 10.0)
    quick = tree.app.schedule_many("noop", [{"seconds": 0.05}] * 40)
    wait_for(lambda: len(tree.records("end")) >= 5, 10.0, "some quick jobs to finish")

    os.kill(old_root, signal.SIGKILL)
    # The root's children die with it (PR_SET_PDEATHSIG) ...
    wait_for(lambda: not old_children & {p.pid for p in server.tree()}, 2.0, "the old tree to die")
    # ... and what they had claimed is what "was running": only those may run again.
    # (Before any new root or maintainer reaps them: the server waits a second.)
    running = {int(r["kojo_job_id"]) for r in tree.app.jobs(state="working")}
    assert victim in running

    def new_root() -> int | None:
        roots = [r["process_id"] for r in tree.processes() if r["kind"] == "root"]
        return roots[0] if roots and roots[0] != old_root else None

    root = wait_for(new_root, 10.0, "a new root")
    assert server.exited() is None
    assert root in {p.pid for p in server.tree()}
    # The root's death, not the jobs', stopped them: re-run, not counted as crashes.
    final = tree.wait_state(victim, "complete_success", 10.0)
    assert (final["times_crashed"], final["times_worked"], final["priority"]) == (0, 2, 0)
    for job_id in quick:
        row = tree.wait_state(job_id, "complete_success", 15.0)
        assert (row["times_crashed"], row["times_worked"]) == (
            (0, 2) if job_id in running else (0, 1)
        )

    records = tree.records()
    starts = Counter(r["id"] for r in records if r["event"] == "start")
    ends = Counter(r["id"] for r in records if r["event"] == "end")
    assert set(starts) == set(ends) == {victim, *quick}
    assert ends[victim] == 1 and starts[victim] == 2
    assert {job_id for job_id, n in starts.items() if n > 1} <= running
    assert set(starts.values()) <= {1, 2}
    assert {job_id for job_id, n in ends.items() if n > 1} <= running


def test_kill_9_of_the_server_leaves_no_kojo_process(tree: Tree) -> None:
    server = tree.start(max_processes=2)
    job_id = tree.app.schedule("victim")
    tree.wait_record("start", job_id, 10.0)
    assert len(server.tree()) == 4  # root, maintainer, two job processes

    killed_at = time.monotonic()
    server.signal(signal.SIGKILL)
    assert server.wait(2.0) == -signal.SIGKILL
    wait_for(lambda: not kojo_processes(), 2.0 - (time.monotonic() - killed_at), kojo_processes)

    # A new server for the host recovers the job the dead tree was working (without blame:
    # its whole tree was killed, not its process alone).
    tree.start(max_processes=2)
    tree.wait_record("start", job_id, 5.0, count=2)
    final = tree.wait_state(job_id, "complete_success", 5.0)
    assert (final["times_crashed"], final["times_worked"]) == (0, 2)
    assert "not counted against the job" in (final["last_error"] or "")


def test_a_live_job_running_longer_than_crash_detection_is_never_crashed(tree: Tree) -> None:
    tree.start(max_processes=2)
    assert any(r["kind"] == "maintainer" for r in tree.processes())
    job_id = tree.app.schedule("sleeper", payload={"seconds": 6})
    tree.wait_record("start", job_id, 10.0)
    # Another process dies meanwhile: the crash detection runs, and must spare the live job.
    other = next(r["process_id"] for r in tree.processes() if r["kind"] == "job" and not r["jobs"])
    os.kill(other, signal.SIGKILL)
    checks = 0
    deadline = time.monotonic() + 10.0
    while not tree.records("end", job_id):
        assert time.monotonic() < deadline, "the sleeper did not end"
        row = tree.job(job_id)
        assert (row["assigned_state"], row["times_crashed"]) == ("working", 0), row
        checks += 1
        time.sleep(0.02)
    assert checks > 100
    final = tree.wait_state(job_id, "complete_success", 5.0)
    assert (final["times_crashed"], final["times_worked"]) == (0, 1)
    assert len(tree.records("start", job_id)) == 1


def test_a_frozen_job_process_is_still_ended_by_its_jobs_timeout(tree: Tree) -> None:
    # A stopped process does not act on its SIGALRM until continued: the root, which knows
    # the job's deadline (the idle board), kills it once the deadline is well past.
    tree.start(max_processes=1)
    job_id = tree.app.schedule("overtime")  # timeout 0.5 s; quick once it has crashed
    (first,) = tree.wait_record("start", job_id, 10.0)
    os.kill(first["pid"], signal.SIGSTOP)
    frozen_at = time.monotonic()
    second = tree.wait_record("start", job_id, 10.0, count=2)[1]
    assert time.monotonic() - frozen_at < 0.5 + 1.0 + 2.0
    assert second["pid"] != first["pid"]
    final = tree.wait_state(job_id, "complete_success", 5.0)
    assert final["times_crashed"] == 1  # a timeout is the job's doing
    assert not [p for p in kojo_processes() if p.pid == first["pid"]]
