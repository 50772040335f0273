"""Log lines: `text` for people (one line, local time, the job, tracebacks indented
below, colour only where it is wanted), `json` for machines (the job in brief)."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kojo import logs
from kojo.logs import JOB_KEYS, JsonFormatter, TextFormatter, local_time, wants_colour
from kojo.settings import Settings

# A job row as a job process holds it: every column, some of them long.
ROW: dict[str, Any] = {
    "kojo_job_id": 123,
    "type_code": "send_mail",
    "assigned_state": "working",
    "next_state_request": "none",
    "payload": {"to": ["someone@example.com"] * 40},
    "last_error": "Traceback (most recent call last):\n" + "  x\n" * 200,
    "work_at_date_time": "2026-11-30T10:00:00+00:00",
    **{f"times_{name}": 0 for name in ("worked", "retried", "held", "crashed", "panicked")},
}
LINE_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (UTC|[+-]\d\d:\d\d)  ")


@pytest.fixture(autouse=True)
def job_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process poses as a job process: its path and no current job."""
    monkeypatch.setattr(logs.metadata, "process", {"path": "/server[8]/root[22]/job[30]"})
    monkeypatch.setattr(logs.metadata, "job", None)


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Set the local time zone (TZ) for one test."""

    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def record(
    message: str,
    level: int = logging.INFO,
    *,
    job: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    exc: BaseException | None = None,
) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    made = logging.LogRecord("kojo.runner", level, __file__, 1, message, None, exc_info)
    if job is not None:
        made.job = job
    if context is not None:
        made.context = context
    return made


def raised(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


# -- text ---------------------------------------------------------------------------------


def test_a_text_line_has_time_level_process_job_message_and_short_context() -> None:
    line = TextFormatter().format(
        record("Retrying.", logging.WARNING, job=ROW, context={"attempt": 2, "why": "x" * 500})
    )
    assert "\n" not in line
    assert LINE_START.match(line), line
    fields = re.split(" {2,}", LINE_START.sub("", line))
    assert fields[:4] == [
        "WARNING",
        "/server[8]/root[22]/job[30]",
        "job 123 (send_mail)",
        "Retrying.",
    ]
    assert fields[4].startswith("attempt=2 why=xxx") and fields[4].endswith("...")
    assert len(line) < 250  # a short context, never the whole row


def test_a_line_outside_a_job_names_no_job_and_the_current_job_is_named() -> None:
    assert " job " not in TextFormatter().format(record("Server started."))
    logs.metadata.job = ROW
    assert "  job 123 (send_mail)  " in TextFormatter().format(record("chatty says hello"))


def test_the_time_is_local_with_its_offset_or_a_labelled_utc(zone: Any) -> None:
    created = 1_764_500_000.25  # 2025-11-30 10:53:20.250 UTC
    zone("UTC")
    assert local_time(created) == "2025-11-30 10:53:20.250 UTC"
    zone("Europe/Paris")
    assert local_time(created) == "2025-11-30 11:53:20.250 +01:00"
    zone("America/St_Johns")
    assert local_time(created) == "2025-11-30 07:23:20.250 -03:30"


def test_a_traceback_follows_indented_and_no_line_can_pass_for_kojos() -> None:
    exc = raised("bad mail\n2026-01-01 00:00:00.000 UTC  ERROR  forged\x1b[2K")
    text = TextFormatter().format(
        record("Panicking job with ID[123].", logging.CRITICAL, job=ROW, exc=exc)
    )
    first, *below = text.split("\n")
    assert first.endswith("Panicking job with ID[123].")  # no JSON of the exception
    assert below[0] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in below), below
    assert "    ValueError: bad mail" in below
    assert "    2026-01-01 00:00:00.000 UTC  ERROR  forged\\x1b[2K" in below
    assert "\x1b" not in text and "\r" not in text


def test_a_newline_in_a_message_cannot_forge_a_second_text_line() -> None:
    message = "Skipped job type [q\n12:00:00.000000 | error    | /server[1] | forged]\r\x1b[2K"
    line = TextFormatter().format(record(message, logging.WARNING))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.endswith("[q\\n12:00:00.000000 | error    | /server[1] | forged]\\r\\x1b[2K")


def test_tabs_and_text_are_kept_as_they_are() -> None:
    assert TextFormatter().format(record("a\tb ü")).endswith("  a\tb ü")


def test_colour_paints_level_and_job_but_not_the_text_a_worker_chose() -> None:
    made = record("boom", logging.ERROR, job=ROW)
    plain, painted = TextFormatter().format(made), TextFormatter(colour=True).format(made)
    assert "\x1b[" not in plain
    assert "\x1b[31mERROR   \x1b[0m" in painted and "\x1b[1mjob 123 (send_mail)\x1b[0m" in painted
    assert re.sub(r"\x1b\[[0-9;]*m", "", painted) == plain


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "environ", "expected"),
    [
        (Tty(), {"TERM": "xterm-256color"}, True),
        (Tty(), {"TERM": "xterm", "NO_COLOR": "1"}, False),
        (Tty(), {"TERM": "dumb"}, False),
        (io.StringIO(), {"TERM": "xterm"}, False),  # a file or a pipe
        (io.StringIO(), {"FORCE_COLOR": "1"}, True),
        (Tty(), {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),  # NO_COLOR wins
        (Tty(), {"TERM": "xterm", "NO_COLOR": ""}, True),  # empty: not set (no-color.org)
    ],
)
def test_colour_only_where_it_is_wanted(
    stream: io.StringIO, environ: dict[str, str], expected: bool
) -> None:
    assert wants_colour(stream, environ) is expected


# -- json ---------------------------------------------------------------------------------


def test_a_json_line_carries_the_job_in_brief_not_its_row() -> None:
    line = JsonFormatter().format(record("chatty says hello", job=ROW, context={"n": 7}))
    parsed = json.loads(line)
    assert {"time", "level", "message", "context", "kojo_metadata"} <= set(parsed)
    assert parsed["kojo_metadata"]["job"] == {key: ROW[key] for key in JOB_KEYS}
    assert parsed["context"] == {"n": 7}
    assert parsed["time"].endswith("+00:00")
    assert len(line) < 600, len(line)  # was the whole row: 1,500+ characters


def test_a_json_line_keeps_the_exception_as_data() -> None:
    line = JsonFormatter().format(record("Panicking.", logging.CRITICAL, exc=raised("boom")))
    exception = json.loads(line)["context"]["exception"]
    assert (exception["class"], exception["message"]) == ("builtins.ValueError", "boom")
    assert "\n" not in line
    assert json.loads(line)["kojo_metadata"]["job"] is None


def test_pretty_is_the_same_json_indented() -> None:
    made = record("hello", job=ROW)
    pretty = JsonFormatter(pretty=True).format(made)
    assert pretty.count("\n") > 5
    assert (
        json.loads(pretty)["kojo_metadata"]["job"]
        == json.loads(JsonFormatter().format(made))["kojo_metadata"]["job"]
    )


# -- which format -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tty", "env", "flag", "expected"),
    [
        (True, None, None, "text"),  # a person at a terminal
        (False, None, None, "json"),  # a pipe, a file, a log collector
        (True, "json", None, "json"),  # KOJO_LOG_FORMAT wins over the default
        (False, "Pretty", None, "pretty"),
        (False, "json", "text", "text"),  # --log-format wins over everything
    ],
)
def test_the_format_is_the_flag_else_the_environment_else_text_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tty: bool, env: str | None, flag: str | None, expected: str
) -> None:
    monkeypatch.setattr(sys, "stdout", Tty() if tty else io.StringIO())
    if env is None:
        monkeypatch.delenv("KOJO_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("KOJO_LOG_FORMAT", env)
    assert Settings.parse(host_name="h", log_format=flag).log_format == expected


def test_configure_installs_the_chosen_formatter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("KOJO_LOG_FORMAT", raising=False)
    logger = logging.getLogger(logs.LOGGER_NAME)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        logs.configure()
        (handler,) = logger.handlers
        assert isinstance(handler.formatter, TextFormatter) and handler.formatter.colour
        logs.configure("json")
        (handler,) = logger.handlers
        assert isinstance(handler.formatter, JsonFormatter)
    finally:  # other tests read kojo's records through pytest's handlers (propagation)
        logger.handlers[:], logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])
