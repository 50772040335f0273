"""Messages a person can act on: what the job is, what the command needs, what to do;
`kojo work --inline` tells by its exit code whether the job succeeded; `server start
--help` describes the log formats."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cli_runner import Kojo, one_line_error

WORKERS = """
def ok(job):
    return {"done": True}


def boom(job):
    raise ValueError("the mail server said no")


def hold(job):
    job.hold()
"""


@pytest.fixture
def kojo(database_url: str, tmp_path: Path) -> Kojo:
    """kojo on either backend, with the types ok, boom (no retries) and hold."""
    cli = Kojo(database_url, tmp_path)
    module = f"msg_workers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(WORKERS)
    (tmp_path / "types.yml").write_text(
        f"- code: ok\n  worker: {module}:ok\n"
        f"- code: boom\n  worker: {module}:boom\n  max_retries: 0\n"
        f"- code: hold\n  worker: {module}:hold\n"
    )
    cli.ok("db", "install")
    cli.ok("types", "register", "--file", "types.yml")
    return cli


def schedule(kojo: Kojo, code: str) -> str:
    return str(kojo.json("jobs", "schedule", code)["id"])


def test_refused_operator_actions_say_what_the_job_is_and_what_to_do(kojo: Kojo) -> None:
    job = schedule(kojo, "ok")
    kojo.ok("jobs", "cancel", job)
    refused = {
        action: one_line_error(kojo("jobs", action, job), 1)
        for action in ("release", "hold", "cancel")
    }
    assert refused == {
        "release": f"error: job {job} is complete_terminated; only a held, panicked or "
        f"crashed job can be released; to run it again: kojo jobs retry {job}",
        "hold": f"error: job {job} is complete_terminated; only a waiting or working job "
        "can be held",
        "cancel": f"error: job {job} is complete_terminated: it has finished, there is "
        "nothing to cancel",
    }
    for line in refused.values():  # none of the state machine's own names
        assert "wait_for_work" not in line and "/none" not in line

    waiting = schedule(kojo, "ok")
    assert one_line_error(kojo("jobs", "release", waiting), 1) == (
        f"error: job {waiting} is waiting; only a held, panicked or crashed job can be released"
    )
    kojo.ok("jobs", "hold", waiting)
    assert one_line_error(kojo("jobs", "hold", waiting), 1) == (
        f"error: job {waiting} is already on hold; kojo jobs release {waiting} lets it run"
    )


def test_work_inline_exits_0_only_when_the_job_succeeds(kojo: Kojo) -> None:
    good = schedule(kojo, "ok")
    done = kojo("work", good, "--inline", "--file", "types.yml")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith(f"job {good}: complete_success")
    again = one_line_error(kojo("work", good, "--inline", "--file", "types.yml"), 1)
    assert again == (
        f"error: job {good} is complete_success; only a waiting or crashed job can be worked"
    )

    bad = schedule(kojo, "boom")
    failed = kojo("work", bad, "--inline", "--file", "types.yml")
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1] == (
        f"job {bad}: panicked (ValueError: the mail server said no); see kojo jobs show {bad}"
    )
    assert kojo.json("jobs", "show", bad)["assigned_state"] == "panicked"

    held = schedule(kojo, "hold")
    parked = kojo("work", held, "--inline", "--file", "types.yml")
    assert parked.returncode == 1
    assert parked.stderr.strip().splitlines()[-1] == f"job {held}: hold; see kojo jobs show {held}"


def test_work_inline_logs_json_unless_at_a_terminal(kojo: Kojo) -> None:
    # Not a terminal (a pipe): JSON; KOJO_LOG_FORMAT=text asks for text anyway.
    job = schedule(kojo, "boom")
    text = kojo("work", job, "--inline", "--file", "types.yml", env={"KOJO_LOG_FORMAT": "text"})
    first, *below = [line for line in text.stdout.splitlines() if line]
    assert f"  job {job} (boom)  Panicking job with ID[{job}]" in first
    assert below[0] == "    Traceback (most recent call last):"
    assert "    ValueError: the mail server said no" in below


def test_server_start_help_describes_the_log_formats(tmp_path: Path) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "kojo", "server", "start", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    flat = " ".join(shown.split())
    assert "--log-format [json|pretty|text]" in flat
    for words in ("text: one line a message", "json: one JSON object a line", "pretty:"):
        assert words in flat
    assert "KOJO_LOG_FORMAT" in flat and "terminal" in flat and "NO_COLOR" in flat


def test_a_log_format_kojo_does_not_know_is_a_bad_argument(tmp_path: Path) -> None:
    result = Kojo(f"sqlite:///{tmp_path}/kojo.db", tmp_path)(
        "server", "start", "--log-format", "xml"
    )
    assert "--log-format" in one_line_error(result, 2)
