"""The client side of cluster control (kojo.control, `kojo ctl`) on both backends.

Membership comes from registered processes, so these tests register owners
standing for servers and job processes of two hosts, and listen for the
control notifications a real server would act on.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest

import kojo
from kojo import InvalidArgument, UnknownJobType
from kojo.backends import Backend, Owner, ProcessInfo
from kojo.cli import main
from kojo.control import CHANNEL, Command, CommandFeed, parse_command

WAIT = 20.0
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)  # "now" for claims: every job is due


def noop(job: kojo.Job) -> None:
    """Never run here."""


@pytest.fixture
def app(database_url: str) -> kojo.App:
    app = kojo.App(database=database_url)
    app.install()
    app.job_type("report")(noop)
    app.job_type("mail")(noop)
    app.register_job_types()
    return app


@pytest.fixture
def owners(app: kojo.App) -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def register(stack: ExitStack, backend: Backend, host: str, kind: str) -> Owner:
    owner = backend.register_owner(
        ProcessInfo(host, os.getpid(), os.getppid(), f"/test/{host}/{kind}", kind)
    )
    stack.callback(owner.close)
    return owner


def hinted(feed: CommandFeed, owner: Owner) -> None:
    """Hand the wake-ups reaching `owner` to `feed` until one makes it look."""
    deadline = time.monotonic() + WAIT
    while not feed.pending:
        assert time.monotonic() < deadline, "no wake-up announced a command"
        for note in owner.wait(deadline - time.monotonic()):
            feed.hint(note)


def claim(backend: Backend, owner: Owner) -> list[int]:
    with backend.write():
        rows = backend.job_claim(owner.id, 10, FAR_FUTURE)
    return [int(r["kojo_job_id"]) for r in rows]


# -- ping -----------------------------------------------------------------------------------


def test_ping_lists_live_servers_with_their_job_processes_and_running_jobs(
    app: kojo.App, owners: ExitStack
) -> None:
    backend = app.backend
    alpha = register(owners, backend, "alpha", "server")
    register(owners, backend, "alpha", "root")
    alpha_jobs = [register(owners, backend, "alpha", "job") for _ in range(2)]
    beta = register(owners, backend, "beta", "server")
    beta_job = register(owners, backend, "beta", "job")
    gone = backend.register_owner(ProcessInfo("gamma", 1, 1, "/gamma", "server"))
    gone.close()
    job_id = app.schedule("report")
    assert claim(backend, alpha_jobs[1]) == [job_id]

    servers = {s["host_name"]: s for s in app.control.ping()}

    assert set(servers) == {"alpha", "beta"}
    assert servers["alpha"]["kojo_process_id"] == alpha.id
    assert servers["alpha"]["process_id"] == os.getpid()
    assert sorted(p["kojo_process_id"] for p in servers["alpha"]["job_processes"]) == sorted(
        o.id for o in alpha_jobs
    )
    [running] = servers["alpha"]["running_jobs"]
    assert (running["kojo_job_id"], running["type_code"]) == (job_id, "report")
    assert running["kojo_process_id"] == alpha_jobs[1].id
    assert servers["beta"]["kojo_process_id"] == beta.id
    assert [p["kojo_process_id"] for p in servers["beta"]["job_processes"]] == [beta_job.id]
    assert servers["beta"]["running_jobs"] == []


def test_ping_forgets_a_server_the_moment_it_dies(app: kojo.App, owners: ExitStack) -> None:
    server = app.backend.register_owner(ProcessInfo("alpha", 1, 1, "/alpha", "server"))
    assert [s["host_name"] for s in app.control.ping()] == ["alpha"]
    server.close()
    assert app.control.ping() == []


# -- pause / resume -------------------------------------------------------------------------


def test_pause_stops_claims_of_a_type_until_resume(app: kojo.App, owners: ExitStack) -> None:
    worker = register(owners, app.backend, "alpha", "job")
    report = app.schedule("report")
    mail = app.schedule("mail")
    app.control.pause("report")
    assert app.backend.type_get("report")["is_paused"] is True  # type: ignore[index]
    assert claim(app.backend, worker) == [mail]
    listener = register(owners, app.backend, "alpha", "root")
    app.control.resume("report")
    assert any(n.topic == "jobs" for n in listener.wait(WAIT))  # idle processes wake up
    assert claim(app.backend, worker) == [report]


def test_pause_of_an_unknown_type_is_refused(app: kojo.App) -> None:
    with pytest.raises(UnknownJobType, match="nope"):
        app.control.pause("nope")
    with pytest.raises(UnknownJobType, match="nope"):
        app.control.resume("nope")


# -- scale / drain ----------------------------------------------------------------------------


def test_scale_and_drain_are_stored_commands_announced_by_a_wake_up(
    app: kojo.App, owners: ExitStack
) -> None:
    register(owners, app.backend, "alpha", "server")
    register(owners, app.backend, "beta", "server")
    listener = register(owners, app.backend, "alpha", "root")
    feed = CommandFeed(app.backend)
    assert feed.look(0.0) == []  # only what is stored from now on

    app.control.scale("alpha", 3)
    hinted(feed, listener)
    assert feed.look(0.0) == [Command("scale", host="alpha", processes=3)]

    app.control.drain("beta")
    hinted(feed, listener)
    [command] = feed.look(0.0)
    assert command == Command("drain", host="beta")
    assert command.is_for("beta") and not command.is_for("alpha")
    assert feed.look(0.0) == []  # each is read once


def test_a_forged_wake_up_is_only_a_reason_to_look(app: kojo.App, owners: ExitStack) -> None:
    listener = register(owners, app.backend, "alpha", "root")
    feed = CommandFeed(app.backend)
    feed.look(0.0)
    scale = {"command": "scale", "host": "alpha", "processes": 3}
    app.backend.notify("control", json.dumps(scale))  # the old format: not even a hint
    forged = {"id": 10**9, "channel": CHANNEL, "message": scale}
    app.backend.notify("message", json.dumps(forged))
    hinted(feed, listener)
    assert feed.look(0.0) == []  # nothing stored: nothing to obey
    app.publish(CHANNEL, {"command": "explode"})  # stored, but not a command
    app.publish(CHANNEL, {"cancel": True})
    hinted(feed, listener)
    assert feed.look(0.0) == []


def test_commands_for_a_host_without_a_live_server_are_refused(
    app: kojo.App, owners: ExitStack
) -> None:
    register(owners, app.backend, "alpha", "server")
    register(owners, app.backend, "ghost", "job")  # a job process is not a server
    feed = CommandFeed(app.backend)
    feed.look(0.0)
    with pytest.raises(InvalidArgument, match=r"'ghost' \(live servers: 'alpha'\)"):
        app.control.scale("ghost", 2)
    with pytest.raises(InvalidArgument, match="'nowhere'"):
        app.control.drain("nowhere")
    app.control.drain("alpha")
    assert feed.look(10.0) == [Command("drain", host="alpha")]  # nothing stored before it


@pytest.mark.parametrize("processes", [-1, 1025, 2.0, True, "3", None])
def test_scale_refuses_a_bad_number_of_processes(
    app: kojo.App, owners: ExitStack, processes: object
) -> None:
    register(owners, app.backend, "alpha", "server")
    with pytest.raises(InvalidArgument, match="number of processes"):
        app.control.scale("alpha", processes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"cancel": 12}', Command("cancel", job_id=12)),
        ('{"cancel": 12, "process": 5}', Command("cancel", job_id=12, process_id=5)),
        ('{"cancel": 12, "process": "5"}', Command("cancel", job_id=12)),
        ('{"command": "scale", "host": "h", "processes": 0}', Command("scale", "h", 0)),
        ('{"command": "drain", "host": "h"}', Command("drain", "h")),
        ('{"command": "scale", "host": "h", "processes": -1}', None),
        ('{"command": "scale", "host": "h", "processes": true}', None),
        ('{"command": "scale", "host": "h"}', None),
        ('{"command": "drain"}', None),
        ('{"command": "explode", "host": "h"}', None),
        ('{"cancel": "12"}', None),
        ('["drain"]', None),
        ('{"command": "scale", "host": "h", "processes": 1000000}', None),
        ('{"command": "scale", "host": 3, "processes": 1}', None),
        ("commandProcess.addProcess('job')", None),
    ],
)
def test_parse_command(data: str, expected: Command | None) -> None:
    # A stored command is a JSON value; text (what a wake-up carries) is never one.
    assert parse_command(data) is None
    try:
        value = json.loads(data)
    except ValueError:
        return
    assert parse_command(value) == expected


# -- kojo ctl -----------------------------------------------------------------------------


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_kojo_ctl_commands(
    app: kojo.App, owners: ExitStack, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--database", database_url]
    server = register(owners, app.backend, "alpha", "server")
    job = register(owners, app.backend, "alpha", "job")
    job_id = app.schedule("report")
    assert claim(app.backend, job) == [job_id]

    code, out, _ = run_cli(["ctl", "ping", "--json", *db], capsys)
    assert code == 0
    [row] = json.loads(out)
    assert (row["host_name"], row["kojo_process_id"]) == ("alpha", server.id)
    assert [j["kojo_job_id"] for j in row["running_jobs"]] == [job_id]
    code, out, _ = run_cli(["ctl", "ping", *db], capsys)
    assert code == 0
    header, line = out.splitlines()
    assert header.split()[:4] == ["host_name", "process_id", "job_processes", "running_jobs"]
    assert line.split()[:4] == ["alpha", str(os.getpid()), "1", str(job_id)]

    assert run_cli(["ctl", "pause", "mail", *db], capsys)[:2] == (0, "job type mail paused\n")
    assert app.backend.type_get("mail")["is_paused"] is True  # type: ignore[index]
    assert run_cli(["ctl", "resume", "mail", *db], capsys)[0] == 0
    assert app.backend.type_get("mail")["is_paused"] is False  # type: ignore[index]

    feed = CommandFeed(app.backend)
    feed.look(0.0)
    assert run_cli(["ctl", "scale", "alpha", "4", *db], capsys)[0] == 0
    hinted(feed, job)
    assert feed.look(0.0) == [Command("scale", host="alpha", processes=4)]
    assert run_cli(["ctl", "drain", "alpha", *db], capsys)[0] == 0
    hinted(feed, job)
    assert feed.look(0.0) == [Command("drain", host="alpha")]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["ctl", "scale", "nowhere", "2"], 1, "no live kojo server has host name 'nowhere'"),
        (["ctl", "drain", "nowhere"], 1, "'nowhere'"),
        (["ctl", "scale", "alpha", "many"], 2, "many"),
        (["ctl", "scale", "alpha", "5000"], 2, "5000"),
        (["ctl", "pause", "nope"], 1, "unknown job type: 'nope'"),
    ],
)
def test_kojo_ctl_errors_are_one_line(
    app: kojo.App,
    owners: ExitStack,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    needle: str,
) -> None:
    register(owners, app.backend, "alpha", "server")
    exit_code, out, err = run_cli([*args, "--database", database_url], capsys)
    assert (exit_code, out) == (code, "")
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_kojo_ctl_ping_with_no_server(
    app: kojo.App, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["ctl", "ping", "--json", "--database", database_url], capsys) == (
        0,
        "[]\n",
        "",
    )
