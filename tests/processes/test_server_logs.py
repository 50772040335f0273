"""What `kojo server start` writes: the format asked for (the flag over the environment,
JSON when stdout is not a terminal), text lines naming the job with tracebacks indented
below, and process deaths that name the job they crashed. Both backends."""

from __future__ import annotations

import os
import re
import signal

import pytest
from workers_harness import Tree, wait_for

LINE_START = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (UTC|[+-]\d\d:\d\d)  [A-Z]+ +/server\["
)


@pytest.mark.one_backend("the text log format")
def test_log_format_text_wins_over_the_environment(tree: Tree) -> None:
    server = tree.start(
        max_processes=1, extra_env={"KOJO_LOG_FORMAT": "json"}, args=("--log-format", "text")
    )
    chatty = tree.app.schedule("chatty")
    failing = tree.app.schedule("failing")  # raises; max_retries=2, then panicked
    tree.wait_state(chatty, "complete_success", 10.0)
    tree.wait_state(failing, "panicked", 20.0)
    server.signal(signal.SIGTERM)
    assert server.wait(10.0) == 0

    text = server.log_path.read_text()
    lines = text.splitlines()
    assert "\x1b[" not in text  # a file: no colour
    for line in lines:  # a line of kojo's, or a traceback line indented under one
        assert LINE_START.match(line) or line.startswith("    "), line
    (hello,) = [line for line in lines if "chatty says hello" in line]
    pid = tree.records("start", chatty)[0]["pid"]
    said = f"/job[{pid}]  job {chatty} (chatty)  chatty says hello  greeting=hello n=7"
    assert hello.endswith(said), hello
    panic = next(n for n, line in enumerate(lines) if f"Panicking job with ID[{failing}]" in line)
    assert f"  job {failing} (failing)  " in lines[panic]
    below = lines[panic + 1 :]
    assert below[0] == "    Traceback (most recent call last):"
    assert f"    ValueError: boom from job {failing}" in below
    assert any(line.startswith("      File ") and "in deep" in line for line in below)


def test_a_killed_job_process_is_logged_naming_its_job(tree: Tree) -> None:
    # No KOJO_LOG_FORMAT and stdout a file: JSON lines.
    server = tree.start(max_processes=1, extra_env={"KOJO_LOG_FORMAT": ""})
    job_id = tree.app.schedule("victim")
    (first,) = tree.wait_record("start", job_id, 10.0)
    os.kill(first["pid"], signal.SIGKILL)

    said = (
        f"/job[{first['pid']}] died (signal 9 (SIGKILL)) while working job {job_id} (type victim)"
    )
    line = wait_for(
        lambda: next((ln for ln in server.log_lines() if said in str(ln["message"])), None),
        10.0,
        "the death to be logged",
    )
    assert line["level"] == "error"
    assert re.fullmatch(
        r"Job process /server\[\d+\]/root\[\d+\]/job\[\d+\] died \(signal 9 \(SIGKILL\)\) "
        rf"while working job {job_id} \(type victim\); the job is crashed and will be re-run "
        r"\(crash 1 of max_crashes=5\)\.",
        line["message"],
    ), line["message"]
    assert line["kojo_metadata"]["job"] == {
        "kojo_job_id": job_id,
        "type_code": "victim",
        "assigned_state": "crashed",
    }
    final = tree.wait_state(job_id, "complete_success", 10.0)
    assert f"/job[{first['pid']}] died (signal 9 (SIGKILL)) (crash 1 of" in final["last_error"]
    # No line carries a job's whole row any more.
    assert max(len(str(ln)) for ln in server.log_lines()) < 1000
