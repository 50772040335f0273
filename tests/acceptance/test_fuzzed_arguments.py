"""Generated arguments thrown at the command line and the Python API (Hypothesis).

Whatever comes in, the answer is success or one line: `kojo.KojoError` in Python
(its message on one line), exit 2 for a bad argument or 1 for a runtime error on the
command line, never a traceback; and the database still answers afterwards.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kojo
from foundation_helpers import make_app
from kojo.cli import main

# Derandomized: CI runs the same examples on every run (a new bug shows up as a test
# that fails from then on, never as a flake); run with --hypothesis-seed=N to explore.
FUZZ = settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
text = st.text(st.characters(exclude_categories=()), max_size=40)  # surrogates too
numbers_as_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
)
json_text = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=10,
).map(repr)


def run(argv: list[str]) -> tuple[int, str]:
    """`kojo ARGV` in this process: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return code, err.getvalue()


def assert_answered(code: int, stderr: str) -> None:
    assert code in (0, 1, 2), (code, stderr)
    if code:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr


@pytest.fixture
def app(sqlite_url: str) -> kojo.App:
    return make_app(sqlite_url, q={})


@st.composite
def schedule_arguments(draw: st.DrawFn) -> list[str]:
    args = ["jobs", "schedule", draw(st.sampled_from(["q", "nope"]) | text)]
    options = {
        "--payload": json_text | text,
        "--delay": numbers_as_text | text,
        "--importance": numbers_as_text | text,
        "--at": st.datetimes().map(lambda d: d.isoformat()) | text,
    }
    for option, values in options.items():
        if draw(st.booleans()):
            args += [option, draw(values)]
    return args


@FUZZ
@given(args=schedule_arguments())
def test_the_command_line_answers_any_schedule_arguments_in_one_line(
    app: kojo.App, args: list[str]
) -> None:
    code, stderr = run([*args, "--database", app.database_url])
    assert_answered(code, stderr)
    assert isinstance(app.jobs(limit=1), list)  # the database still answers


@FUZZ
@given(
    command=st.sampled_from(
        [
            ["jobs", "show"],
            ["jobs", "hold"],
            ["jobs", "release"],
            ["jobs", "cancel"],
            ["jobs", "list", "--state"],
            ["jobs", "list", "--limit"],
            ["jobs", "list", "--type"],
            ["jobs", "list", "--before"],
            ["jobs", "why"],
            ["jobs", "retry"],
            ["jobs", "purge", "--yes", "--state"],
            ["jobs", "purge", "--yes", "--type"],
            ["jobs", "purge", "--yes", "--older-than"],
            ["types", "enable"],
            ["ctl", "pause"],
            ["ctl", "drain"],
            ["publish", "ch"],
            ["publish"],
        ]
    ),
    value=numbers_as_text | text | json_text,
)
def test_the_command_line_answers_any_value_in_one_line(
    app: kojo.App, command: list[str], value: str
) -> None:
    code, stderr = run([*command, value, "--database", app.database_url])
    assert_answered(code, stderr)
    assert isinstance(app.jobs(limit=1), list)


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.binary(max_size=10),
    st.datetimes(),
    st.timedeltas(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(text, st.integers(), max_size=3),
)


@FUZZ
@given(
    operation=st.sampled_from(
        [
            "schedule",
            "job",
            "jobs",
            "hold",
            "release",
            "cancel",
            "mutex",
            "semaphore",
            "publish",
            "why",
            "retry",
            "purge",
        ]
    ),
    first=anything | st.just("q"),
    second=anything,
    third=anything,
)
def test_the_api_answers_any_arguments_with_a_kojo_error_on_one_line(
    app: kojo.App, operation: str, first: Any, second: Any, third: Any
) -> None:
    calls: dict[str, Any] = {
        "schedule": lambda: app.schedule(first, payload=second, delay=third),
        "job": lambda: app.job(first),
        "jobs": lambda: app.jobs(first, second, third),
        "hold": lambda: app.hold(first),
        "release": lambda: app.release(first),
        "cancel": lambda: app.cancel(first),
        "mutex": lambda: app.mutex(first, second).acquire().release(),
        "semaphore": lambda: app.semaphore(first, second, 0).acquire().release(),
        "publish": lambda: app.publish(first, second),
        "why": lambda: app.why(first),
        "retry": lambda: app.retry(first),
        "purge": lambda: app.purge(first, second, third),
    }
    try:
        calls[operation]()
    except kojo.KojoError as exc:
        assert "\n" not in str(exc), str(exc)
    assert isinstance(app.jobs(limit=1), list)


@FUZZ
@given(at=st.datetimes(), delay=st.timedeltas() | st.floats() | st.integers())
def test_any_date_or_delay_is_scheduled_or_refused_in_one_line(
    app: kojo.App, at: Any, delay: Any
) -> None:
    for options in ({"at": at}, {"delay": delay}):
        try:
            job_id = app.schedule("q", **options)
        except kojo.InvalidArgument as exc:
            assert "\n" not in str(exc)
        else:
            assert app.job(job_id)["work_at_date_time"] is not None


def test_the_fuzzing_can_fail() -> None:
    # The checks above are real: a traceback, two lines, or another exit code are caught.
    with pytest.raises(AssertionError):
        assert_answered(1, "Traceback (most recent call last):\n  File ...\n")
    with pytest.raises(AssertionError):
        assert_answered(3, "error: x\n")
