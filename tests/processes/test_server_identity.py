"""What a server is and says: process titles, one server per host name, JSON logs with
job metadata, `kojo ps`, and `kojo work ID --inline`."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from workers_harness import TITLE, Tree, wait_for


def test_titles_show_the_tree_and_ps_lists_it(tree: Tree) -> None:
    """On an empty database (the server installs the schema itself): titles read
    `kojo: /server[PID]/root[PID]/job[PID]` with the real pids of the real parents."""
    server = tree.start(max_processes=2)
    procs = {p.pid: p for p in server.tree()}
    titles = {server.pid: f"kojo: /server[{server.pid}]"}
    assert _cmdline(server.pid) == titles[server.pid]

    roots = [p for p in procs.values() if p.ppid == server.pid]
    assert len(roots) == 1
    root = roots[0]
    assert root.cmdline == f"kojo: /server[{server.pid}]/root[{root.pid}]"
    kinds = []
    for proc in procs.values():
        if proc is root:
            continue
        match = TITLE.fullmatch(proc.cmdline)
        assert match, proc
        assert proc.ppid == root.pid
        assert (int(match["server"]), int(match["root"]), int(match["child"])) == (
            server.pid,
            root.pid,
            proc.pid,
        )
        kinds.append(match["kind"])
    assert sorted(kinds) == ["job", "job", "maintainer"]

    # `kojo ps` lists the same processes, with the same paths.
    listed = {r["process_id"]: r for r in tree.ps()}
    assert set(listed) == {server.pid, *procs}
    for pid, row in listed.items():
        assert "kojo: " + row["path"] == _cmdline(pid)
        assert row["host_name"] == "test-host"
        assert row["jobs"] == []


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


def test_a_second_server_for_the_same_host_name_exits_0_and_says_so(tree: Tree) -> None:
    first = tree.start(max_processes=1)
    before = sorted(p.pid for p in first.tree())
    second = tree.start(max_processes=1, ready=False)
    assert second.wait(15.0) == 0
    assert any("already running" in m and "[test-host]" in m for m in second.messages()), (
        second.messages()
    )
    assert not second.tree()
    # The first server is untouched and still works jobs.
    assert first.exited() is None
    assert sorted(p.pid for p in first.tree()) == before
    job_id = tree.app.schedule("noop")
    tree.wait_state(job_id, "complete_success", 10.0)
    # Another host name on the same database is another host: it runs.
    other = tree.start(max_processes=1, host_name="other-host")
    assert other.exited() is None


def test_log_lines_are_json_and_job_logger_lines_carry_the_job(tree: Tree) -> None:
    server = tree.start(max_processes=1)
    job_id = tree.app.schedule("chatty")
    (start,) = tree.wait_record("start", job_id, 10.0)
    tree.wait_state(job_id, "complete_success", 10.0)

    def chatty_line() -> dict[str, Any] | None:
        return next((ln for ln in server.log_lines() if ln["message"] == "chatty says hello"), None)

    line: dict[str, Any] = wait_for(chatty_line, 5.0, "the job.logger line")
    assert line["level"] == "info"
    assert line["context"] == {"greeting": "hello", "n": 7}
    meta = line["kojo_metadata"]
    assert meta["job"]["kojo_job_id"] == job_id
    assert meta["job"]["type_code"] == "chatty"
    assert meta["job"]["assigned_state"] == "working"
    assert meta["process"]["process_id"] == start["pid"]
    assert meta["process"]["path"] == _cmdline(start["pid"]).removeprefix("kojo: ")
    assert meta["process"]["path"].endswith(f"/job[{start['pid']}]")
    assert meta["host"]["host_name"] == "test-host"

    # Every line has Kōjō's shape; kojo's own lines outside a job carry no job.
    server.signal(15)
    assert server.wait(10.0) == 0
    lines = server.log_lines()
    for ln in lines:
        assert {"time", "level", "message", "context", "kojo_metadata"} <= set(ln), ln
        assert {"job", "process", "host"} <= set(ln["kojo_metadata"]), ln
    started = next(ln for ln in lines if str(ln["message"]).startswith("Server started"))
    assert started["kojo_metadata"]["job"] is None
    assert started["kojo_metadata"]["process"]["path"] == f"/server[{server.pid}]"


def test_kojo_work_inline_runs_one_job_in_its_own_process(tree: Tree) -> None:
    tree.app.install()
    job_id = tree.app.schedule("chatty")
    popen = subprocess.Popen(
        [sys.executable, "-m", "kojo", "work", str(job_id), "--inline"],
        env=tree.env(),
        cwd=tree.tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = popen.communicate(timeout=30)
    assert popen.returncode == 0, err
    (start,) = tree.records("start", job_id)
    assert start["pid"] == popen.pid  # no fork: the command's own process ran it
    row = tree.job(job_id)
    assert (row["assigned_state"], row["times_worked"]) == ("complete_success", 1)
    # Its log lines are JSON on stdout too, the job's carrying the job.
    lines = [json.loads(text) for text in out.splitlines()]
    (chatty,) = [ln for ln in lines if ln["message"] == "chatty says hello"]
    assert chatty["kojo_metadata"]["job"]["kojo_job_id"] == job_id

    # A job that is not waiting cannot be worked: one line, exit 1.
    again = tree.kojo("work", str(job_id), "--inline")
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "complete_success" in again.stderr
    assert len(tree.records("start", job_id)) == 1
