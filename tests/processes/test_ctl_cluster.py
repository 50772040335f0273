"""`kojo ctl` against two real servers (host names alpha and beta) sharing one database."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from workers_harness import Server, Tree, wait_for

SETTLE = 15.0  # seconds a command may take to show its effect


def ctl(tree: Tree, *args: str) -> str:
    done = tree.kojo("ctl", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ping(tree: Tree) -> dict[str, dict[str, Any]]:
    return {s["host_name"]: s for s in json.loads(ctl(tree, "ping", "--json"))}


def job_processes(tree: Tree, host: str) -> int:
    return Counter(p["kind"] for p in tree.processes(host))["job"]


def two_servers(tree: Tree) -> tuple[Server, Server]:
    return tree.start(host_name="alpha", max_processes=2), tree.start(
        host_name="beta", max_processes=1
    )


def test_ping_lists_both_servers_their_processes_and_running_jobs(tree: Tree) -> None:
    alpha, beta = two_servers(tree)
    job_id = tree.app.schedule("sleeper", payload={"seconds": 30})
    [start] = tree.wait_record("start", job_id, SETTLE)

    servers = ping(tree)

    assert {h: s["process_id"] for h, s in servers.items()} == {
        "alpha": alpha.pid,
        "beta": beta.pid,
    }
    assert len(servers["alpha"]["job_processes"]) == 2
    assert len(servers["beta"]["job_processes"]) == 1
    [(host, running_id, pid)] = [
        (host, job["kojo_job_id"], job["process_id"])
        for host, server in servers.items()
        for job in server["running_jobs"]
    ]
    assert (running_id, pid) == (job_id, start["pid"])
    assert pid in {p["process_id"] for p in servers[host]["job_processes"]}


def test_scale_changes_the_job_processes_of_one_host(tree: Tree) -> None:
    two_servers(tree)
    ctl(tree, "scale", "alpha", "3")
    wait_for(lambda: job_processes(tree, "alpha") == 3, SETTLE, "alpha to run 3 job processes")
    ctl(tree, "scale", "alpha", "1")
    wait_for(lambda: job_processes(tree, "alpha") == 1, SETTLE, "alpha to run 1 job process")
    assert job_processes(tree, "beta") == 1
    assert len(ping(tree)["alpha"]["job_processes"]) == 1


def test_a_forged_wake_up_commands_nothing(tree: Tree) -> None:
    # Wake-ups (NOTIFY kojo, a doorbell datagram) reach servers without the database
    # rights that scheduling needs: one carrying a command, in the old control format or
    # as a forged message of the command channel, is only a reason to read the table.
    alpha, beta = two_servers(tree)
    scale = {"command": "scale", "host": "alpha", "processes": 3}
    drain = {"command": "drain", "host": "alpha"}
    backend = tree.app.backend
    for command in (scale, drain):
        backend.notify("control", json.dumps(command))
        forged = {"id": 10**9, "channel": "kojo.control", "message": command}
        backend.notify("message", json.dumps(forged))
    ctl(tree, "scale", "beta", "2")  # a real command, stored after the forgeries were sent
    wait_for(lambda: job_processes(tree, "beta") == 2, SETTLE, "beta to run 2 job processes")
    time.sleep(1.0)  # the forgeries arrived first; give alpha as long again to misbehave
    assert alpha.exited() is None and beta.exited() is None
    assert job_processes(tree, "alpha") == 2
    assert "Drain requested through kojo ctl." not in alpha.messages()


def test_drain_stops_one_server_gracefully(tree: Tree) -> None:
    alpha, beta = two_servers(tree)
    ctl(tree, "drain", "alpha")
    assert alpha.wait(SETTLE) == 0
    assert "Drain requested through kojo ctl." in alpha.messages()
    assert beta.exited() is None
    assert set(ping(tree)) == {"beta"}
    done = tree.kojo("ctl", "drain", "alpha")
    assert done.returncode == 1
    assert "no live kojo server has host name 'alpha'" in done.stderr


def test_pause_stops_claims_of_a_type_cluster_wide_until_resume(tree: Tree) -> None:
    tree.app.install()
    tree.app.register_job_types()
    ctl(tree, "pause", "noop")  # persisted: holds for servers that start later
    two_servers(tree)
    paused = [tree.app.schedule("noop") for _ in range(3)]
    # Scheduled after the paused jobs, so claimed after them were they not paused.
    others = [tree.app.schedule("chatty") for _ in range(4)]
    for job_id in others:
        tree.wait_state(job_id, "complete_success", SETTLE)
    assert [tree.state(job_id) for job_id in paused] == ["waiting"] * 3
    assert tree.records("start", paused[0]) == []

    ctl(tree, "resume", "noop")
    for job_id in paused:
        tree.wait_state(job_id, "complete_success", SETTLE)
