"""The `kojo` command through a real subprocess: db, types and jobs, bad inputs included."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest

from cli_runner import Kojo, one_line_error

WORKERS = """
def work(job):
    pass
"""


@pytest.fixture
def workers(tmp_path: Path) -> str:
    """An importable module (in the subprocess's working directory) with a worker."""
    name = f"cli_workers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(WORKERS)
    return name


@pytest.fixture
def kojo_sqlite(sqlite_url: str, tmp_path: Path) -> Kojo:
    cli = Kojo(sqlite_url, tmp_path)
    cli.ok("db", "install")
    return cli


def types_file(tmp_path: Path, workers: str) -> Path:
    path = tmp_path / "types.yml"
    path.write_text(
        textwrap.dedent(
            f"""
            - code: send_digest
              worker: {workers}:work
              cron_expression: "*/5 * * * *"
              can_work_in_parallel: false
              schedule_limit: 1
            - code: send_one
              worker: {workers}:work
              default_importance: 3
            """
        )
    )
    return path


def test_install_schedule_list_show(database_url: str, tmp_path: Path, workers: str) -> None:
    kojo = Kojo(database_url, tmp_path)
    assert "installed" in kojo.ok("db", "install")
    assert "installed" in kojo.ok("db", "install")  # twice is a no-op
    kojo.ok("types", "register", "--file", str(types_file(tmp_path, workers)))

    listed = kojo.json("types", "list")
    assert [t["type_code"] for t in listed] == ["send_digest", "send_one"]
    digest = listed[0]
    assert digest["cron_expression"] == "*/5 * * * *"
    assert digest["can_work_in_parallel"] is False
    assert digest["schedule_limit"] == 1
    assert digest["worker_uri"] == f"{workers}:work"

    scheduled = kojo.json("jobs", "schedule", "send_one", "--payload", '{"user": 7}')
    assert set(scheduled) == {"id"} and isinstance(scheduled["id"], int)
    plain = kojo.ok("jobs", "schedule", "send_one", "--importance", "9", "--delay", "60")
    second_id = int(plain.strip())

    jobs = kojo.json("jobs", "list")
    assert [j["kojo_job_id"] for j in jobs] == [second_id, scheduled["id"]]  # newest first
    jobs.reverse()
    first = jobs[0]
    for column in (
        "kojo_job_id",
        "type_code",
        "priority",
        "importance",
        "work_at_date_time",
        "assigned_state",
        "next_state_request",
        "previous_state",
        "times_worked",
        "times_retried",
        "times_held",
        "times_crashed",
        "times_panicked",
        "created_at_date_time",
        "completed_at_date_time",
        "delete_after_date_time",
        "payload",
    ):
        assert column in first, column
    assert first["payload"] == {"user": 7}
    assert (first["assigned_state"], first["next_state_request"]) == ("waiting", "working")
    assert first["priority"] == 3
    assert jobs[1]["priority"] == 9

    shown = kojo.json("jobs", "show", str(second_id))
    assert shown["kojo_job_id"] == second_id
    assert shown["importance"] == 9
    assert shown["payload"] is None
    assert set(shown) == {*jobs[1], "timeline"}
    assert [step["transition"] for step in shown["timeline"]] == ["created"]


def test_uninstall(database_url: str, tmp_path: Path) -> None:
    kojo = Kojo(database_url, tmp_path)
    kojo.ok("db", "install")
    refusal = one_line_error(kojo("db", "uninstall", input="yes\n"), 1)
    assert "not uninstalled" in refusal
    assert kojo.json("jobs", "list") == []  # the tables are still there
    kojo.ok("db", "uninstall", input="delete\n")
    gone = one_line_error(kojo("jobs", "list"), 1)
    assert "kojo db install" in gone
    kojo.ok("db", "install")
    kojo.ok("db", "uninstall", "--yes")
    one_line_error(kojo("jobs", "list"), 1)


def test_register_from_an_app(kojo_sqlite: Kojo, tmp_path: Path, workers: str) -> None:
    (tmp_path / "myapp.py").write_text(
        textwrap.dedent(
            f"""
            import kojo
            from {workers} import work

            app = kojo.App()
            app.job_type("from_app", max_retries=2, default_importance=4)(work)
            """
        )
    )
    assert "from_app" in kojo_sqlite.ok("types", "register", "--app", "myapp:app")
    (row,) = kojo_sqlite.json("types", "list")
    assert (row["type_code"], row["max_retries"], row["default_importance"]) == (
        "from_app",
        2,
        4,
    )
    # --app after the sub-command, and through KOJO_APP
    kojo_sqlite.ok("types", "register", "--app", "myapp:app")
    result = kojo_sqlite("types", "register", env={"KOJO_APP": "myapp:app"})
    assert result.returncode == 0, result.stderr


def test_enable_disable(kojo_sqlite: Kojo, tmp_path: Path, workers: str) -> None:
    kojo_sqlite.ok("types", "register", "--file", str(types_file(tmp_path, workers)))
    kojo_sqlite.ok("types", "disable", "send_one")
    assert not {t["type_code"]: t for t in kojo_sqlite.json("types", "list")}["send_one"][
        "is_enabled"
    ]
    refused = one_line_error(kojo_sqlite("jobs", "schedule", "send_one"), 1)
    assert "send_one" in refused and "not enabled" in refused
    kojo_sqlite.ok("types", "enable", "send_one")
    kojo_sqlite.ok("jobs", "schedule", "send_one")
    assert "ghost" in one_line_error(kojo_sqlite("types", "enable", "ghost"), 1)


def test_hold_release_cancel(kojo_sqlite: Kojo, tmp_path: Path, workers: str) -> None:
    kojo_sqlite.ok("types", "register", "--file", str(types_file(tmp_path, workers)))
    job_id = str(kojo_sqlite.json("jobs", "schedule", "send_one")["id"])

    assert "hold/none" in kojo_sqlite.ok("jobs", "hold", job_id)
    assert kojo_sqlite.json("jobs", "show", job_id)["times_held"] == 1
    assert [j["kojo_job_id"] for j in kojo_sqlite.json("jobs", "list", "--state", "hold")] == [
        int(job_id)
    ]
    again = one_line_error(kojo_sqlite("jobs", "hold", job_id), 1)
    assert job_id in again

    released = kojo_sqlite.json("jobs", "release", job_id)
    assert (released["assigned_state"], released["next_state_request"]) == ("waiting", "working")
    assert "complete_terminated" in kojo_sqlite.ok("jobs", "cancel", job_id)
    shown = kojo_sqlite.json("jobs", "show", job_id)
    assert shown["assigned_state"] == "complete_terminated"
    assert shown["completed_at_date_time"] is not None
    one_line_error(kojo_sqlite("jobs", "cancel", job_id), 1)
    one_line_error(kojo_sqlite("jobs", "release", job_id), 1)

    for action in ("hold", "release", "cancel", "show"):
        missing = one_line_error(kojo_sqlite("jobs", action, "424242"), 1)
        assert "424242" in missing

    steps = shown["timeline"]
    assert [(s["transition"], s["to_state"], s["actor"]) for s in steps] == [
        ("created", "waiting", "kojo"),
        ("hold", "hold", "operator"),
        ("wait_for_work", "waiting", "operator"),
        ("complete_terminated", "complete_terminated", "operator"),
    ]
    text = kojo_sqlite.ok("jobs", "show", job_id)
    assert "timeline:" in text and "hold -> waiting" in text and "by operator" in text


def test_list_search_finds_text_in_payloads_page_by_page(
    kojo_sqlite: Kojo, tmp_path: Path, workers: str
) -> None:
    kojo_sqlite.ok("types", "register", "--file", str(types_file(tmp_path, workers)))
    ids = [
        kojo_sqlite.json("jobs", "schedule", "send_one", "--payload", json.dumps({"to": to}))["id"]
        for to in ("ann@example.com", "bob@example.org", "cat@example.com")
    ]
    found = kojo_sqlite.json("jobs", "list", "--search", "example.com")
    assert [j["kojo_job_id"] for j in found] == [ids[2], ids[0]]
    first = kojo_sqlite.ok("jobs", "list", "--search", "example.com", "--limit", "1")
    assert f"more: --before {ids[2]}" in first
    rest = kojo_sqlite.json("jobs", "list", "--search", "example", "--before", str(ids[2]))
    assert [j["kojo_job_id"] for j in rest] == [ids[1], ids[0]]
    assert kojo_sqlite.json("jobs", "list", "--search", "nobody") == []
    empty = one_line_error(kojo_sqlite("jobs", "list", "--search", ""), 2)
    assert "search text is empty" in empty
    long = one_line_error(kojo_sqlite("jobs", "list", "--search", "z" * 201), 2)
    assert "201 characters long: at most 200" in long


def test_list_filters(kojo_sqlite: Kojo, tmp_path: Path, workers: str) -> None:
    kojo_sqlite.ok("types", "register", "--file", str(types_file(tmp_path, workers)))
    one = kojo_sqlite.json("jobs", "schedule", "send_one")["id"]
    digest = kojo_sqlite.json("jobs", "schedule", "send_digest")["id"]
    by_type = kojo_sqlite.json("jobs", "list", "--type", "send_digest")
    assert [j["kojo_job_id"] for j in by_type] == [digest]
    assert by_type[0]["next_state_request"] == "schedule_limit_check"
    waiting = kojo_sqlite.json("jobs", "list", "--state", "waiting")
    assert sorted(j["kojo_job_id"] for j in waiting) == sorted([one, digest])
    table = kojo_sqlite.ok("jobs", "list")
    assert table.splitlines()[0].split()[:3] == ["id", "type", "state"]
    assert "send_digest" in table and "waiting: limit check" in table


# -- bad inputs ---------------------------------------------------------------------------


def test_bad_json_payload(kojo_sqlite: Kojo, tmp_path: Path, workers: str) -> None:
    kojo_sqlite.ok("types", "register", "--file", str(types_file(tmp_path, workers)))
    line = one_line_error(kojo_sqlite("jobs", "schedule", "send_one", "--payload", "{bad"), 2)
    assert "--payload" in line and "{bad" in line
    assert kojo_sqlite.json("jobs", "list") == []


def test_unknown_type(kojo_sqlite: Kojo) -> None:
    line = one_line_error(kojo_sqlite("jobs", "schedule", "no_such_type"), 1)
    assert "no_such_type" in line


@pytest.mark.parametrize("url", ["mysql://localhost", "kojo.db", "sqlite:///:memory:"])
def test_unsupported_database_url(tmp_path: Path, url: str) -> None:
    line = one_line_error(Kojo(url, tmp_path)("jobs", "list"), 1)
    assert url in line


def test_bad_state(kojo_sqlite: Kojo) -> None:
    line = one_line_error(kojo_sqlite("jobs", "list", "--state", "sleeping"), 2)
    assert "sleeping" in line and "--state" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("jobs", "schedule", "x", "--at", "tomorrow"), "tomorrow"),
        (("jobs", "schedule", "x", "--delay", "-5"), "--delay"),
        (("jobs", "schedule", "x", "--importance", "high"), "high"),
        (("jobs", "show", "abc"), "abc"),
        (("jobs", "frobnicate"), "frobnicate"),
        (("types", "register", "--app", "nowhere"), "nowhere"),
    ],
)
def test_bad_arguments(kojo_sqlite: Kojo, args: tuple[str, ...], needle: str) -> None:
    assert needle in one_line_error(kojo_sqlite(*args), 2)


def test_bad_yaml_file(kojo_sqlite: Kojo, tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("- code: a\n  worker: kojo_nowhere:work\n")
    line = one_line_error(kojo_sqlite("types", "register", "--file", str(path)), 2)
    assert "worker" in line and "kojo_nowhere:work" in line
    path.write_text("- code: a\n  worker: os:getcwd\n  max_crashes: -1\n")
    line = one_line_error(kojo_sqlite("types", "register", "--file", str(path)), 2)
    assert "max_crashes=-1" in line
    assert kojo_sqlite.json("types", "list") == []


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"- code: a\n  worker: [1,\n", "expected the node content"),
        (b"\xff\xfe- code: a\n", "not UTF-8 text"),
        (b"[" * 100_000, "nested too deeply"),
        (b"- {code: a, worker: 'os:getcwd'}\n- {code: a, worker: 'os:getcwd'}\n", "twice"),
        (b"- {code: a, worker: 'os:getcwd', timeout: -1}\n", "timeout=-1"),
        (b"code: a\n", "expected a list of job types"),
    ],
)
def test_every_bad_yaml_file_is_one_line_with_exit_2(
    kojo_sqlite: Kojo, tmp_path: Path, content: bytes, needle: str
) -> None:
    path = tmp_path / "types.yml"
    path.write_bytes(content)
    for command in (("types", "register"), ("server", "start", "--max-processes", "0")):
        line = one_line_error(kojo_sqlite(*command, "--file", str(path)), 2)
        assert needle in line, line
    missing = one_line_error(kojo_sqlite("types", "register", "--file", "nowhere.yml"), 2)
    assert "'nowhere.yml': No such file or directory" in missing


@pytest.mark.parametrize("args", [("ctl", "drain", ""), ("ctl", "scale", "", "1")])
def test_bad_values_found_past_option_parsing_exit_2(
    kojo_sqlite: Kojo, args: tuple[str, ...]
) -> None:
    one_line_error(kojo_sqlite(*args), 2)


def test_debug_adds_the_traceback(kojo_sqlite: Kojo) -> None:
    result = kojo_sqlite("--debug", "jobs", "schedule", "no_such_type")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_no_arguments_prints_help(tmp_path: Path) -> None:
    result = Kojo("sqlite:///unused.db", tmp_path)()
    assert result.returncode == 0
    assert "db" in result.stdout and "jobs" in result.stdout


def test_schedule_with_a_unique_key_and_show_a_result(kojo_sqlite: Kojo, workers: str) -> None:
    kojo = kojo_sqlite
    (kojo.cwd / f"{workers}_results.py").write_text("def work(job):\n    return {'sum': 3}\n")
    types = kojo.cwd / "summer.yml"
    types.write_text(f"- code: summer\n  worker: {workers}_results:work\n")
    kojo.ok("types", "register", "--file", str(types))
    first = kojo.json("jobs", "schedule", "summer", "--unique-key", "day:1")
    assert first == {"id": first["id"], "created": True}
    again = kojo.json("jobs", "schedule", "summer", "--unique-key", "day:1")
    assert again == {"id": first["id"], "created": False}
    text = kojo("jobs", "schedule", "summer", "--unique-key", "day:1")
    assert text.returncode == 0 and text.stdout.strip() == str(first["id"])
    assert "unfinished" in text.stderr
    line = one_line_error(kojo("jobs", "schedule", "summer", "--unique-key", ""), 2)
    assert "unique key" in line
    kojo.ok("work", str(first["id"]), "--inline", "--file", str(types))
    shown = kojo.json("jobs", "show", str(first["id"]))
    assert shown["result"] == {"sum": 3} and shown["unique_key"] == "day:1"
    assert "result" in kojo.ok("jobs", "show", str(first["id"]))
    # Finished, the key is free again.
    assert kojo.json("jobs", "schedule", "summer", "--unique-key", "day:1")["created"] is True
