"""The `kojo` command refuses, as bad arguments (exit 2, one line), values that the database
columns or Python's dates cannot hold, and job types whose values cannot be computed with;
values at the bounds are accepted. Through a real subprocess."""

from __future__ import annotations

import sqlite3
import textwrap
import uuid
from pathlib import Path

import pytest

from cli_runner import Kojo, one_line_error

INT4_MIN, INT4_MAX, INT8_MAX = -(2**31), 2**31 - 1, 2**63 - 1


def write_types(tmp_path: Path, extra: str = "") -> Path:
    """A YAML file with type `q` (and `extra` fields on it), worked by an importable module."""
    module = f"bounds_workers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("def work(job):\n    pass\n")
    path = tmp_path / f"types_{uuid.uuid4().hex[:8]}.yml"
    path.write_text(f"- code: q\n  worker: {module}:work\n" + textwrap.indent(extra, "  "))
    return path


@pytest.fixture
def kojo(sqlite_url: str, tmp_path: Path) -> Kojo:
    cli = Kojo(sqlite_url, tmp_path)
    cli.ok("db", "install")
    cli.ok("types", "register", "--file", str(write_types(tmp_path)))
    return cli


# -- scheduling -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--importance", "-9223372036854775808"),
            "error: Invalid value for '--importance': importance must be an integer from "
            "-2147483648 to 2147483647, not -9223372036854775808",
        ),
        (
            ("--importance", "2147483648"),
            "error: Invalid value for '--importance': importance must be an integer from "
            "-2147483648 to 2147483647, not 2147483648",
        ),
        (
            ("--importance", str(2**70)),
            "error: Invalid value for '--importance': importance must be an integer from "
            f"-2147483648 to 2147483647, not {2**70}",
        ),
        (
            ("--at", "9999-12-31T23:59:59-05:00"),
            "error: Invalid value for '--at': at must be a date-time from "
            "0001-01-01T00:00:00+00:00 to 9999-12-31T23:59:59.999999+00:00 in UTC, "
            "not 9999-12-31T23:59:59-05:00",
        ),
        (
            ("--at", "0001-01-01T00:00:00+01:00"),
            "error: Invalid value for '--at': at must be a date-time from "
            "0001-01-01T00:00:00+00:00 to 9999-12-31T23:59:59.999999+00:00 in UTC, "
            "not 0001-01-01T00:00:00+01:00",
        ),
    ],
)
def test_schedule_refuses_what_cannot_be_stored(
    kojo: Kojo, args: tuple[str, ...], line: str
) -> None:
    assert one_line_error(kojo("jobs", "schedule", "q", *args), 2) == line
    assert kojo.json("jobs", "list") == []


@pytest.mark.parametrize("delay", ["1e300", "inf", "nan", "-1", "1e12", "-inf"])
def test_schedule_refuses_a_delay_past_the_last_date(kojo: Kojo, delay: str) -> None:
    line = one_line_error(kojo("jobs", "schedule", "q", "--delay", delay), 2)
    assert line.startswith(
        "error: Invalid value for '--delay': delay must be a number of seconds from 0 to "
    )
    assert "(until 9999-12-31T23:59:59.999999+00:00), not " in line
    assert kojo.json("jobs", "list") == []


def test_schedule_accepts_the_bounds(database_url: str, tmp_path: Path) -> None:
    kojo = Kojo(database_url, tmp_path)
    kojo.ok("db", "install")
    kojo.ok("types", "register", "--file", str(write_types(tmp_path)))
    low = kojo.json("jobs", "schedule", "q", "--importance", str(INT4_MIN))["id"]
    high = kojo.json(
        "jobs", "schedule", "q", "--importance", str(INT4_MAX), "--at", "9999-12-31T23:59:59Z"
    )["id"]
    first = kojo.json("jobs", "schedule", "q", "--at", "0001-01-01T00:00:00Z")["id"]
    late = kojo.json("jobs", "schedule", "q", "--delay", "1e10")["id"]
    assert kojo.json("jobs", "show", str(low))["priority"] == INT4_MIN
    shown = kojo.json("jobs", "show", str(high))
    assert shown["priority"] == INT4_MAX
    assert shown["work_at_date_time"].startswith("9999-12-31T23:59:59")
    assert kojo.json("jobs", "show", str(first))["work_at_date_time"].startswith("0001-01-01")
    assert kojo.json("jobs", "show", str(late))["work_at_date_time"][:4] > "2300"
    assert len(kojo.json("jobs", "list")) == 4


# -- job ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "job_id"),
    [
        (("jobs", "show"), "12345678901234567890123"),
        (("jobs", "hold"), "12345678901234567890123"),
        (("jobs", "release"), "12345678901234567890123"),
        (("jobs", "cancel"), "12345678901234567890123"),
        (("work", "--inline"), "12345678901234567890123"),
        (("jobs", "show"), str(INT8_MAX + 1)),
        (("jobs", "cancel"), "0"),
    ],
)
def test_job_ids_outside_bigint_are_bad_arguments(
    kojo: Kojo, command: tuple[str, ...], job_id: str
) -> None:
    line = one_line_error(kojo(*command, job_id), 2)
    assert line == (
        "error: Invalid value for 'JOB_ID': job id must be an integer from 1 to "
        f"9223372036854775807, not {job_id}"
    )


def test_the_largest_job_id_is_not_found(kojo: Kojo) -> None:
    for command in (("jobs", "show"), ("jobs", "hold"), ("jobs", "cancel")):
        assert str(INT8_MAX) in one_line_error(kojo(*command, str(INT8_MAX)), 1)


def test_list_limit_outside_bigint_is_a_bad_argument(kojo: Kojo) -> None:
    line = one_line_error(kojo("jobs", "list", "--limit", str(INT8_MAX + 1)), 2)
    assert "--limit" in line and str(INT8_MAX + 1) in line
    assert kojo.json("jobs", "list", "--limit", str(INT8_MAX)) == []


# -- job types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("auto_delete_interval_duration", "P9000Y", "must be at most P1000Y"),
        ("catch_up_window", "P99999999999Y", "must be at most P1000Y"),
        ("cron_expression", "'0 0 31 2 *'", "never fires"),
        ("cron_expression", "'0 0 30 2 *'", "never fires"),
        ("default_importance", "2147483648", "must be <= 2147483647"),
        ("default_importance", "-2147483649", "must be >= -2147483648"),
        ("max_retries", "9999999999", "must be <= 2147483647"),
        ("max_crashes", "2147483648", "must be <= 2147483647"),
        ("schedule_limit", "2147483648", "must be <= 2147483647"),
        ("schedule_limit_allowance", "2147483648", "must be <= 2147483647"),
        ("timeout", "31536001", "at most 31536000"),
        ("timeout", ".inf", "at most 31536000"),
    ],
)
def test_types_whose_values_cannot_be_computed_are_refused(
    kojo: Kojo, tmp_path: Path, field: str, value: str, needle: str
) -> None:
    path = write_types(tmp_path, f"{field}: {value}\n")
    line = one_line_error(kojo("types", "register", "--file", str(path)), 2)
    assert f"invalid job type field {field}=" in line and needle in line, line
    assert value.strip("'").replace(".inf", "inf") in line, line
    (stored,) = kojo.json("types", "list")
    assert stored[field] != value  # the type registered first is unchanged


def test_types_list_survives_a_stored_expression_that_never_fires(
    kojo: Kojo, tmp_path: Path, sqlite_url: str
) -> None:
    path = write_types(tmp_path, "cron_expression: '*/5 * * * *'\n")
    kojo.ok("types", "register", "--file", str(path))
    # An expression stored before registration checked it, or by hand.
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE kojo_job_type SET cron_expression = '0 0 31 2 *'")
    (row,) = kojo.json("types", "list")
    assert (row["cron_expression"], row["next_fire"]) == ("0 0 31 2 *", None)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob:hunter2@127.0.0.1:1/kojo",
        "postgresql://bob@127.0.0.1:1/kojo?password=hunter2",
        "postgresql://bob@127.0.0.1:1/kojo?password=hun%zzter2",
        "pgsql://bob:hunter2@127.0.0.1:1/kojo",
    ],
)
def test_a_password_in_the_database_url_is_never_printed(url: str, tmp_path: Path) -> None:
    result = Kojo(url, tmp_path)("jobs", "list")
    assert result.returncode == 1, result.stderr
    assert "hunter2" not in result.stderr and "hun%zzter2" not in result.stderr
    assert "***" in result.stderr


def test_a_payload_nested_too_deeply_is_one_line(kojo: Kojo) -> None:
    deep = "[" * 30000 + "]" * 30000
    line = one_line_error(kojo("jobs", "schedule", "q", "--payload", deep), 2)
    assert line.startswith("error: Invalid value for '--payload': '[[[[")
    assert line.endswith("...' is nested too deeply")
    assert kojo.json("jobs", "list") == []


def test_a_type_code_that_is_not_text_is_one_line(kojo: Kojo) -> None:
    # Bytes that are not UTF-8 reach Python as surrogates, which no driver can encode.
    line = one_line_error(kojo("jobs", "schedule", "\udcff\udcfe"), 2)
    assert line == "error: job type code must match [a-z0-9_.-]{1,255}, got '\\udcff\\udcfe'"


def test_listen_refuses_an_endless_timeout_before_listening(kojo: Kojo) -> None:
    result = kojo("listen", "ch", "--timeout", "inf")
    line = one_line_error(result, 2)
    assert line.startswith("error: Invalid value for --timeout: timeout must be a number")
    assert "listening" not in result.stdout + result.stderr
