"""The operator commands through a real `python -m kojo` on both backends: `--version`,
`stats`, `jobs why` (every reason, one by one), `jobs list` paging, `jobs retry`,
`jobs purge`.

The situation a command looks at is set up in this process through the Python API;
live kojo processes (a server, a job process) are registrations this test process
holds, so that they are alive for the command as a real server's would be.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import kojo
from cli_runner import Kojo, one_line_error, run
from kojo import states
from kojo.backends import Owner, ProcessInfo
from kojo.clock import utcnow
from kojo.cron_scheduler import schedule_due
from kojo.maintenance import gate_schedule_limits

HOST = "op-host"
SERVER_PATH = "/server[101]"
JOB_PATH = "/server[101]/root[102]/job[103]"


def noop(job: kojo.Job) -> None:
    pass


class Cluster:
    """A database with job types, the live processes of a fake host, and the CLI."""

    def __init__(self, url: str, cwd: Path) -> None:
        self.url = url
        self.cwd = cwd
        self.cli = Kojo(url, cwd)
        self.app = kojo.App(database=url)
        self.app.install()
        self.owners: list[Owner] = []

    def type(self, code: str, **options: Any) -> None:
        self.app.job_type(code, **options)(noop)
        self.app.register_job_types([code])

    def process(self, kind: str, path: str) -> Owner:
        info = ProcessInfo(HOST, os.getpid(), os.getppid(), path, kind)
        owner = self.app.backend.register_owner(info)
        self.owners.append(owner)
        return owner

    def server(self) -> None:
        self.process("server", SERVER_PATH)

    def claim(self, job_id: int, owner: Owner) -> None:
        backend = self.app.backend
        with backend.write():
            assert backend.job_claim_by_id(job_id, owner.id, utcnow()) is not None

    def kojo(self, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
        return self.cli(*args, input=input)

    def ok(self, *args: str, input: str = "") -> str:
        return self.cli.ok(*args, input=input)

    def why(self, job_id: int) -> tuple[str, dict[str, Any]]:
        """`jobs why` in both forms: the line, and the JSON object."""
        line = self.ok("jobs", "why", str(job_id))
        assert len(line.splitlines()) == 1, line
        return line.strip(), json.loads(self.ok("jobs", "why", str(job_id), "--json"))

    def close(self) -> None:
        for owner in self.owners:
            owner.close(blame=False)
        self.app.backend.close()


@pytest.fixture
def cluster(database_url: str, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(database_url, tmp_path)
    made.type("plain")
    try:
        yield made
    finally:
        made.close()


# -- kojo --version -------------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    done = run("sqlite:///unused.db", tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"kojo \d+\.\d+\.\d+\S*\n", done.stdout), done.stdout


# -- kojo jobs why: every reason, one by one ---------------------------------------------------


def test_why_no_live_server(cluster: Cluster) -> None:
    job = cluster.app.schedule("plain")
    line, answer = cluster.why(job)
    assert line == f"job {job}: no live server: no `kojo server start` runs on this database"
    assert answer["reason"] == "no_live_server" and answer["also"] == []
    assert (answer["id"], answer["state"]) == (job, "waiting")


def test_why_nothing_stops_it(cluster: Cluster) -> None:
    cluster.server()
    cluster.process("job", JOB_PATH)
    job = cluster.app.schedule("plain")
    line, answer = cluster.why(job)
    assert line == f"job {job}: nothing stops it: it should start within a second"
    assert answer["reason"] == "runnable"


def test_why_a_disabled_types_job_still_runs(cluster: Cluster) -> None:
    cluster.server()
    cluster.process("job", JOB_PATH)
    job = cluster.app.schedule("plain")
    cluster.ok("types", "disable", "plain")
    line, answer = cluster.why(job)
    assert "nothing stops it" in line and "job type plain is disabled" in line
    assert answer["reason"] == "runnable" and answer["detail"] == {"type_enabled": False}


def test_why_waiting_for_its_time(cluster: Cluster) -> None:
    job = cluster.app.schedule("plain", delay=7200)
    line, answer = cluster.why(job)
    assert re.match(rf"job {job}: waiting for its time: \S+ \S+ UTC \(in 1h 59m\)", line), line
    assert answer["reason"] == "waiting_for_time"
    assert [r["reason"] for r in answer["also"]] == ["no_live_server"]  # what comes next


def test_why_type_paused(cluster: Cluster) -> None:
    cluster.server()
    cluster.process("job", JOB_PATH)
    job = cluster.app.schedule("plain")
    cluster.ok("ctl", "pause", "plain")
    line, answer = cluster.why(job)
    assert line == f"job {job}: job type plain is paused (`kojo ctl resume plain`)"
    assert answer["reason"] == "type_paused"


def test_why_serial_type_busy(cluster: Cluster) -> None:
    cluster.type("serial", can_work_in_parallel=False)
    cluster.server()
    worker = cluster.process("job", JOB_PATH)
    cluster.process("job", JOB_PATH.replace("103", "104"))  # idle: another could start it
    first, second = cluster.app.schedule("serial"), cluster.app.schedule("serial")
    cluster.claim(first, worker)
    line, answer = cluster.why(second)
    assert line == (
        f"job {second}: job type serial runs one job at a time and job {first} is working "
        f"(host {HOST}, {JOB_PATH})"
    )
    assert answer["reason"] == "serial_type_busy" and answer["detail"] == {"working": first}


def test_why_rate_limit_reached(cluster: Cluster) -> None:
    cluster.type("rated", rate_limit="1/PT1H")
    cluster.server()
    worker = cluster.process("job", JOB_PATH)
    cluster.process("job", JOB_PATH.replace("103", "104"))  # idle: another could start it
    first, second = cluster.app.schedule("rated"), cluster.app.schedule("rated")
    cluster.claim(first, worker)  # the only start the hour allows
    line, answer = cluster.why(second)
    assert re.fullmatch(
        rf"job {second}: rate limit of job type rated reached \(1/PT1H\): next start at "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in (59m|1h)\)",
        line,
    ), line
    assert answer["reason"] == "rate_limit" and answer["detail"]["rate_limit"] == "1/PT1H"


def test_why_concurrency_limit_full(cluster: Cluster) -> None:
    cluster.type("keyed", concurrency_limit=1)
    cluster.server()
    first = cluster.app.schedule("keyed", concurrency_key="tenant-7")
    second = cluster.app.schedule("keyed", concurrency_key="tenant-7")
    line, answer = cluster.why(second)
    assert line == (
        f"job {second}: concurrency limit full: 1 of 1 job(s) of type keyed with key "
        f"'tenant-7' running or about to (job(s) {first})"
    )
    assert answer["reason"] == "concurrency_limit"
    assert answer["detail"]["admitted"] == [first]


def test_why_schedule_limit_check(cluster: Cluster) -> None:
    cluster.type("gated", schedule_limit=1, schedule_limit_allowance=1)
    cluster.server()
    first = cluster.app.schedule("gated")
    line, answer = cluster.why(first)
    assert "waiting for the schedule-limit check" in line
    assert answer["reason"] == "schedule_limit_check"
    second = cluster.app.schedule("gated")
    gate_schedule_limits(cluster.app)  # the first goes through, the second is kept
    line, answer = cluster.why(second)
    assert line == (
        f"job {second}: schedule limit of type gated full: 1 of 1 job(s) working or waiting "
        "to work; kept pending (schedule_limit_allowance 1)"
    )
    assert answer["reason"] == "schedule_limit_full"


def test_why_dependency_pending(cluster: Cluster) -> None:
    cluster.server()
    parent = cluster.app.schedule("plain", delay=3600)
    other = cluster.app.schedule("plain")
    child = cluster.app.schedule("plain", after=[parent, other])
    line, answer = cluster.why(child)
    assert line == (
        f"job {child}: waiting for job(s) {parent} (waiting), {other} (waiting) "
        "to complete successfully"
    )
    assert answer["reason"] == "dependency_pending"
    assert [p["kojo_job_id"] for p in answer["detail"]["parents"]] == [parent, other]


def test_why_on_hold(cluster: Cluster) -> None:
    job = cluster.app.schedule("plain")
    cluster.ok("jobs", "hold", str(job))
    line, answer = cluster.why(job)
    assert re.fullmatch(
        rf"job {job}: on hold since .* UTC; `kojo jobs release {job}` lets it run", line
    )
    assert answer["reason"] == "on_hold"


def test_why_working_says_where(cluster: Cluster) -> None:
    cluster.server()
    worker = cluster.process("job", JOB_PATH)
    job = cluster.app.schedule("plain")
    cluster.claim(job, worker)
    line, answer = cluster.why(job)
    assert line.startswith(f"job {job}: working on host {HOST}, {JOB_PATH} (pid {os.getpid()})")
    assert answer["reason"] == "working"
    assert (answer["detail"]["host_name"], answer["detail"]["path"]) == (HOST, JOB_PATH)


def test_why_lock_wait(cluster: Cluster) -> None:
    cluster.server()
    worker = cluster.process("job", JOB_PATH)
    job = cluster.app.schedule("plain")
    cluster.claim(job, worker)
    other = kojo.App(database=cluster.url)  # another owner: its wait is the job's
    started = threading.Event()

    def wait_for_lock() -> None:
        started.set()
        try:
            with other.mutex("partner-api", timeout=60, job_id=job):
                pass
        except kojo.KojoError:
            pass

    with cluster.app.mutex("partner-api"):
        waiter = threading.Thread(target=wait_for_lock, daemon=True)
        waiter.start()
        started.wait()
        deadline = time.monotonic() + 30
        while not any(r["state"] == "waiting" for r in cluster.app.locks()):
            assert time.monotonic() < deadline, "the waiter never queued"
            time.sleep(0.05)
        line, answer = cluster.why(job)
    waiter.join(30)
    other.backend.close()
    assert line.startswith(f"job {job}: working, but waiting for lock 'partner-api' since ")
    assert ", held on host " in line
    assert answer["reason"] == "lock_wait" and answer["detail"]["lock"] == "partner-api"


def test_why_no_job_process(cluster: Cluster) -> None:
    cluster.server()  # with --max-processes 0: no job process
    job = cluster.app.schedule("plain")
    line, answer = cluster.why(job)
    assert "the live servers run no job process" in line
    assert answer["reason"] == "no_job_process"


def test_why_job_processes_busy(cluster: Cluster) -> None:
    cluster.server()
    worker = cluster.process("job", JOB_PATH)
    busy, job = cluster.app.schedule("plain"), cluster.app.schedule("plain")
    cluster.claim(busy, worker)
    line, answer = cluster.why(job)
    assert line == f"job {job}: all 1 job process(es) are busy (working job(s) {busy})"
    assert answer["reason"] == "job_processes_busy"


def test_why_crashed_awaiting_rerun(cluster: Cluster) -> None:
    dying = cluster.process("job", JOB_PATH)
    job = cluster.app.schedule("plain")
    cluster.claim(job, dying)
    cluster.owners.remove(dying)
    dying.close(blame=True)  # its process "died": the job crashed
    line, answer = cluster.why(job)
    assert answer["reason"] == "no_live_server"
    assert [r["reason"] for r in answer["also"]] == ["crashed"]
    cluster.server()
    cluster.process("job", JOB_PATH)
    line, answer = cluster.why(job)
    assert re.fullmatch(
        rf"job {job}: crashed 1 time\(s\), last at .* UTC; awaiting re-run \(max_crashes 5\): "
        "it should be re-run within a second",
        line,
    ), line
    assert answer["reason"] == "crashed" and answer["state"] == "crashed"


def test_why_panicked(cluster: Cluster) -> None:
    worker = cluster.process("job", JOB_PATH)
    job = cluster.app.schedule("plain")
    cluster.claim(job, worker)
    cluster.app.backend.job_transition(job, states.PANIC, owner=worker.id)
    line, answer = cluster.why(job)
    assert re.fullmatch(
        rf"job {job}: panicked at .* UTC; `kojo jobs retry {job}` runs it again", line
    )
    assert answer["reason"] == "panicked"


def test_why_finished_says_how(cluster: Cluster) -> None:
    worker = cluster.process("job", JOB_PATH)
    done, failed = cluster.app.schedule("plain"), cluster.app.schedule("plain")
    for job, transition in ((done, states.COMPLETE_SUCCESS), (failed, states.COMPLETE_FAILED)):
        cluster.claim(job, worker)
        cluster.app.backend.job_transition(job, transition, owner=worker.id)
    line, answer = cluster.why(done)
    assert re.fullmatch(rf"job {done}: finished: complete_success at .* UTC", line), line
    assert answer["reason"] == "finished" and answer["state"] == "complete_success"
    line, _ = cluster.why(failed)
    assert "finished: complete_failed at " in line and f"`kojo jobs retry {failed}`" in line


def test_why_of_a_missing_job_and_a_bad_id(cluster: Cluster) -> None:
    assert "no job with id 999" in one_line_error(cluster.kojo("jobs", "why", "999"), 1)
    assert "'x'" in one_line_error(cluster.kojo("jobs", "why", "x"), 2)
    assert "0" in one_line_error(cluster.kojo("jobs", "why", "0"), 2)


# -- kojo stats ------------------------------------------------------------------------------


def test_stats(cluster: Cluster) -> None:
    long_code = "a_job_type_with_a_rather_long_code_" + "x" * 60
    cluster.type(long_code)
    worker = cluster.process("job", JOB_PATH)
    ids = cluster.app.schedule_many("plain", [None] * 9)
    cluster.app.schedule(long_code)
    endings = [
        states.COMPLETE_SUCCESS,
        states.COMPLETE_FAILED,
        states.COMPLETE_FAILED_SCHEDULE_LIMIT_CHECK,
        states.COMPLETE_TERMINATED,
        states.PANIC,
        states.CRASH,
        None,  # working
    ]
    for job, ending in zip(ids, endings, strict=False):
        cluster.claim(job, worker)
        if ending is not None:
            cluster.app.backend.job_transition(job, ending, owner=worker.id)
    cluster.app.hold(ids[7])
    counts = json.loads(cluster.ok("stats", "--json"))
    assert all(set(c) == {"type_code", "assigned_state", "count"} for c in counts)
    by_pair = {(c["type_code"], c["assigned_state"]): c["count"] for c in counts}
    assert by_pair == {
        ("plain", "complete_success"): 1,
        ("plain", "complete_failed"): 1,
        ("plain", "complete_failed_schedule_limit_check"): 1,
        ("plain", "complete_terminated"): 1,
        ("plain", "panicked"): 1,
        ("plain", "crashed"): 1,
        ("plain", "working"): 1,
        ("plain", "hold"): 1,
        ("plain", "waiting"): 1,
        (long_code, "waiting"): 1,
    }
    table = cluster.ok("stats").splitlines()
    assert all(len(line) <= 100 for line in table), table
    assert table[0].split() == [
        "type",
        "waiting",
        "working",
        "hold",
        "crashed",
        "panicked",
        "success",
        "failed",
        "refused",
        "terminated",
        "total",
    ]
    shortened, *cells = table[1].split()
    assert shortened.endswith("~") and long_code.startswith(shortened[:-1])
    assert cells == ["1", "-", "-", "-", "-", "-", "-", "-", "-", "1"]
    assert table[2].split() == ["plain", *["1"] * 9, "9"]
    assert table[3].split() == ["(all)", "2", *["1"] * 8, "10"]


def test_stats_of_an_empty_database(cluster: Cluster) -> None:
    assert json.loads(cluster.ok("stats", "--json")) == []
    assert cluster.ok("stats").splitlines() == ["type   total", "plain  0"]


# -- kojo jobs list ------------------------------------------------------------------------------


def test_jobs_list_newest_first_in_pages(cluster: Cluster) -> None:
    ids = cluster.app.schedule_many("plain", [{"n": n} for n in range(60)])
    page = json.loads(cluster.ok("jobs", "list", "--json"))
    assert [j["kojo_job_id"] for j in page] == ids[::-1][:50]  # --limit defaults to 50
    assert set(page[0]) == set(cluster.app.job(ids[0]))  # every column, as before
    table = cluster.ok("jobs", "list", "--limit", "5").splitlines()
    assert table[0].split() == [
        "id",
        "type",
        "state",
        "priority",
        "run_at",
        "(UTC)",
        "worked",
        "retried",
        "crashed",
    ]
    assert [int(line.split()[0]) for line in table[1:6]] == ids[::-1][:5]
    assert table[6] == f"more: --before {ids[-5]}"
    assert all(len(line) <= 100 for line in table)
    back = json.loads(cluster.ok("jobs", "list", "--before", str(ids[-5]), "--json"))
    assert [j["kojo_job_id"] for j in back] == ids[::-1][5:55]
    last = json.loads(cluster.ok("jobs", "list", "--before", str(ids[5]), "--json"))
    assert [j["kojo_job_id"] for j in last] == ids[4::-1]
    line = one_line_error(cluster.kojo("jobs", "list", "--before", "0"), 2)
    assert "'--before'" in line and line.endswith("not 0")


def test_jobs_list_speaks_an_operators_words(cluster: Cluster) -> None:
    parent = cluster.app.schedule("plain")
    child = cluster.app.schedule("plain", after=[parent])
    table = cluster.ok("jobs", "list")
    assert "next_state_request" not in table
    rows = {int(line.split()[0]): line for line in table.splitlines()[1:]}
    assert "waiting: parents" in rows[child]
    assert rows[parent].split()[2] == "waiting"


def test_jobs_list_hides_cron_jobs_made_ahead(cluster: Cluster) -> None:
    # One cron job, made (by the look-ahead) for a minute three minutes from now.
    minute = (utcnow() + timedelta(minutes=3)).minute
    cluster.type("tick", cron_expression=f"{minute} * * * *")
    made = schedule_due(cluster.app)
    assert made == 1
    job = cluster.app.schedule("plain")
    table = cluster.ok("jobs", "list").splitlines()
    future = 1
    assert table[-1] == "1 future cron job(s) not shown; --all shows them"
    assert [int(line.split()[0]) for line in table[1:-1]] == [job]
    listed = json.loads(cluster.ok("jobs", "list", "--json", "--type", "tick"))
    assert len(listed) == made - future
    everything = json.loads(cluster.ok("jobs", "list", "--json", "--all"))
    assert len(everything) == made + 1


# -- kojo jobs retry ------------------------------------------------------------------------------


def test_jobs_retry_of_each_state_it_allows(cluster: Cluster) -> None:
    worker = cluster.process("job", JOB_PATH)
    endings = (states.PANIC, states.CRASH, states.COMPLETE_FAILED, states.COMPLETE_TERMINATED)
    for ending in endings:
        job = cluster.app.schedule("plain")
        cluster.claim(job, worker)
        cluster.app.backend.job_transition(job, ending, owner=worker.id)
        ended = cluster.app.job(job)["assigned_state"]
        assert cluster.ok("jobs", "retry", str(job)) == f"job {job}: waiting (was {ended})\n"
        row = cluster.app.job(job)
        assert (row["assigned_state"], row["next_state_request"]) == ("waiting", "working")
        assert row["completed_at_date_time"] is None and row["delete_after_date_time"] is None


def test_jobs_retry_json_and_refusals(cluster: Cluster) -> None:
    job = cluster.app.schedule("plain")
    cluster.ok("jobs", "cancel", str(job))
    row = json.loads(cluster.ok("jobs", "retry", str(job), "--json"))
    assert (row["kojo_job_id"], row["assigned_state"]) == (job, "waiting")
    line = one_line_error(cluster.kojo("jobs", "retry", str(job)), 1)
    assert line == (
        f"error: job {job} is waiting: only a panicked, crashed, complete_failed or "
        "complete_terminated job can be retried"
    )
    assert "no job with id 424242" in one_line_error(cluster.kojo("jobs", "retry", "424242"), 1)
    assert "'-3'" in one_line_error(cluster.kojo("jobs", "retry", "-3"), 2)


# -- kojo jobs purge ------------------------------------------------------------------------------


def finish(cluster: Cluster, job: int, transition: states.Transition) -> None:
    if transition is states.COMPLETE_TERMINATED:
        cluster.app.cancel(job)
        return
    owner = cluster.owners[0] if cluster.owners else cluster.process("job", JOB_PATH)
    cluster.claim(job, owner)
    cluster.app.backend.job_transition(job, transition, owner=owner.id)


def test_jobs_purge_deletes_finished_jobs_only(cluster: Cluster) -> None:
    cluster.type("other")
    kept = cluster.app.schedule("plain")  # waiting: never purged
    ok, failed, cancelled = (cluster.app.schedule("plain") for _ in range(3))
    other = cluster.app.schedule("other")
    finish(cluster, ok, states.COMPLETE_SUCCESS)
    finish(cluster, failed, states.COMPLETE_FAILED)
    finish(cluster, cancelled, states.COMPLETE_TERMINATED)
    finish(cluster, other, states.COMPLETE_SUCCESS)

    assert cluster.ok("jobs", "purge", "--state", "complete_failed", "--yes") == (
        "deleted 1 finished job(s)\n"
    )
    assert cluster.ok("jobs", "purge", "--type", "other", "--yes") == "deleted 1 finished job(s)\n"
    assert cluster.ok("jobs", "purge", "--older-than", "P1D", "--yes") == (
        "deleted 0 finished job(s)\n"
    )
    assert cluster.ok("jobs", "purge", "--yes") == "deleted 2 finished job(s)\n"
    assert [j["kojo_job_id"] for j in cluster.app.jobs()] == [kept]
    assert cluster.ok("jobs", "purge") == "no finished jobs match: nothing to delete\n"


def test_jobs_purge_asks_first(cluster: Cluster) -> None:
    job = cluster.app.schedule("plain")
    cluster.app.cancel(job)
    line = one_line_error(cluster.kojo("jobs", "purge"), 1)  # no answer: nothing deleted
    assert line == "error: nothing was deleted (1 job(s) match; --yes skips the question)"
    assert cluster.app.job(job)["assigned_state"] == "complete_terminated"
    assert one_line_error(cluster.kojo("jobs", "purge", input="n\n"), 1)
    done = cluster.kojo("jobs", "purge", input="y\n")
    assert done.returncode == 0, done.stderr
    assert "Delete 1 finished job(s)? [y/N]" in done.stdout
    assert done.stdout.endswith("deleted 1 finished job(s)\n")
    assert cluster.app.jobs() == []


def test_jobs_purge_keeps_dependency_rows_consistent(cluster: Cluster) -> None:
    parent = cluster.app.schedule("plain")
    children = [cluster.app.schedule("plain", after=[parent]) for _ in range(2)]
    cluster.app.cancel(parent)  # its children end complete_terminated with it
    assert {cluster.app.job(c)["assigned_state"] for c in children} == {"complete_terminated"}
    assert cluster.ok("jobs", "purge", "--yes") == "deleted 3 finished job(s)\n"
    assert cluster.app.jobs() == []
    # A job scheduled after a purged one is refused, not left waiting for ever.
    done = cluster.kojo("jobs", "schedule", "plain", "--after", str(parent))
    assert f"no job with id {parent}" in one_line_error(done, 1)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--state", "waiting"), "'waiting'"),
        (("--state", "bogus"), "'bogus'"),
        (("--older-than", "7 days"), "'7 days'"),
        (("--type", "nope"), "'nope'"),
    ],
)
def test_jobs_purge_bad_values(cluster: Cluster, args: tuple[str, ...], named: str) -> None:
    job = cluster.app.schedule("plain")
    cluster.app.cancel(job)
    assert named in one_line_error(cluster.kojo("jobs", "purge", "--yes", *args), 2)
    assert cluster.app.job(job)["assigned_state"] == "complete_terminated"
