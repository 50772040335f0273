"""Job type definitions: every SPEC field, good and bad, and YAML loading."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import kojo
from kojo.job_types import define, import_worker, load_yaml


def work(job: Any) -> None:
    """A module-level worker."""


class Workers:
    @staticmethod
    def nightly(job: Any) -> None:
        """A worker reached through a dotted attribute path."""


@pytest.fixture
def workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of an importable module with workers in it (and one that fails to import)."""
    name = f"kojo_test_workers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            def work(job):
                pass

            class Group:
                @staticmethod
                def nightly(job):
                    pass

            not_callable = 5
            """
        )
    )
    (tmp_path / f"{name}_broken.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in (name, f"{name}_broken"):
        sys.modules.pop(module, None)


def refused(field: str, value: object, **options: Any) -> str:
    """define() must refuse the value with a message naming the field and the value."""
    code = options.pop("code", "a_type")
    worker = options.pop("worker", work)
    with pytest.raises(kojo.InvalidJobType) as raised:
        define(code, worker, **options)
    message = str(raised.value)
    assert field in message, message
    assert repr(value) in message or str(value) in message, message
    return message


# -- defaults and good values ----------------------------------------------------------


def test_defaults_are_specs() -> None:
    t = define("send_digest", work)
    assert t.code == "send_digest"
    assert t.name == "send_digest"
    assert t.worker is work
    assert t.worker_uri == f"{work.__module__}:work"
    assert t.cron_expression is None
    assert t.can_work_in_parallel is True
    assert t.default_importance == 0
    assert t.schedule_limit == 0
    assert t.schedule_limit_allowance == 0
    assert t.is_enabled is True
    assert t.auto_complete_success is True
    assert t.auto_delete_interval_duration == "P1D"
    assert t.auto_delete_interval == timedelta(days=1)
    assert t.max_retries == 0
    assert t.max_crashes == 5
    assert t.timeout is None


def test_every_field_set() -> None:
    t = define(
        "nightly.report-2",
        work,
        name="Nightly report",
        cron_expression="*/5 * * * *",
        can_work_in_parallel=False,
        default_importance=10,
        schedule_limit=1,
        schedule_limit_allowance=2,
        is_enabled=False,
        auto_complete_success=False,
        auto_delete_interval_duration="PT60S",
        max_retries=3,
        max_crashes=0,
        timeout=30,
    )
    columns = t.columns()
    assert columns["type_code"] == "nightly.report-2"
    assert columns["name"] == "Nightly report"
    assert columns["cron_expression"] == "*/5 * * * *"
    assert columns["can_work_in_parallel"] is False
    assert columns["default_importance"] == 10
    assert columns["schedule_limit"] == 1
    assert columns["schedule_limit_allowance"] == 2
    assert columns["is_enabled"] is False
    assert columns["auto_complete_success"] is False
    assert columns["auto_delete_interval_duration"] == "PT60S"
    assert columns["max_retries"] == 3
    assert columns["max_crashes"] == 0
    assert columns["timeout"] == 30.0
    assert "worker" not in columns


@pytest.mark.parametrize("code", ["a", "x" * 255, "send_digest", "a.b-c_9", "0"])
def test_good_codes(code: str) -> None:
    assert define(code, work).code == code


@pytest.mark.parametrize(
    ("expression", "stored"),
    [
        ("* * * * *", "* * * * *"),
        ("*/5 * * * *", "*/5 * * * *"),
        ("0 0 * * 1-5", "0 0 * * 1-5"),
        ("  0   3 * *   *  ", "0 3 * * *"),
        ("@hourly", "@hourly"),
        ("@daily", "@daily"),
        ("@yearly", "@yearly"),
    ],
)
def test_good_cron(expression: str, stored: str) -> None:
    assert define("t", work, cron_expression=expression).cron_expression == stored


@pytest.mark.parametrize(
    ("value", "stored"),
    [("PT0S", "PT0S"), ("P1D", "P1D"), ("pt60s", "PT60S"), (timedelta(minutes=1), "PT1M")],
)
def test_good_durations(value: object, stored: str) -> None:
    t = define("t", work, auto_delete_interval_duration=value)
    assert t.auto_delete_interval_duration == stored


@pytest.mark.parametrize("value", [-5, 0, 7])
def test_default_importance_may_be_any_integer(value: int) -> None:
    assert define("t", work, default_importance=value).default_importance == value


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, None), (30, 30.0), (2.5, 2.5), (timedelta(minutes=2), 120.0)]
)
def test_good_timeouts(value: object, seconds: float | None) -> None:
    assert define("t", work, timeout=value).timeout == seconds


def test_worker_by_reference(workers: str) -> None:
    t = define("t", f"{workers}:work")
    assert t.worker_uri == f"{workers}:work"
    assert t.worker is sys.modules[workers].work


def test_worker_by_dotted_attribute(workers: str) -> None:
    t = define("t", f"{workers}:Group.nightly")
    assert t.worker is sys.modules[workers].Group.nightly


def test_worker_static_method_uri() -> None:
    assert define("t", Workers.nightly).worker_uri.endswith(":Workers.nightly")


# -- bad values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["", "Send", "with space", "a/b", "ü", "x" * 256, None, 5, "semi;colon"]
)
def test_bad_code(code: object) -> None:
    refused("code", code, code=code)


@pytest.mark.parametrize("name", ["", "x" * 256, 5])
def test_bad_name(name: object) -> None:
    refused("name", name, name=name)


@pytest.mark.parametrize(
    "expression",
    ["* * * *", "* * * * * *", "61 * * * *", "* 25 * * *", "every minute", "@reboot", "", 5],
)
def test_bad_cron(expression: object) -> None:
    refused("cron_expression", expression, cron_expression=expression)


@pytest.mark.parametrize("field", ["can_work_in_parallel", "is_enabled", "auto_complete_success"])
@pytest.mark.parametrize("value", [1, 0, "yes", "true", None])
def test_bad_booleans(field: str, value: object) -> None:
    refused(field, value, **{field: value})


@pytest.mark.parametrize("value", ["high", 1.5, True, None])
def test_bad_default_importance(value: object) -> None:
    refused("default_importance", value, default_importance=value)


@pytest.mark.parametrize(
    "field", ["schedule_limit", "schedule_limit_allowance", "max_retries", "max_crashes"]
)
@pytest.mark.parametrize("value", [-1, -100, 1.0, "3", True, None])
def test_bad_limits(field: str, value: object) -> None:
    message = refused(field, value, **{field: value})
    if isinstance(value, int) and not isinstance(value, bool):
        assert ">= 0" in message


@pytest.mark.parametrize("field", ["schedule_limit", "schedule_limit_allowance"])
def test_limits_accept_zero_and_positive(field: str) -> None:
    assert getattr(define("t", work, **{field: 0}), field) == 0
    assert getattr(define("t", work, **{field: 4}), field) == 4


@pytest.mark.parametrize(
    "value", ["1 day", "P", "PT", "P1H", "-P1D", "", 60, timedelta(seconds=-1), None]
)
def test_bad_auto_delete_interval(value: object) -> None:
    refused("auto_delete_interval_duration", value, auto_delete_interval_duration=value)


@pytest.mark.parametrize(
    "value", [0, -1, "10", True, timedelta(0), float("nan"), float("inf"), -0.5]
)
def test_bad_timeout(value: object) -> None:
    refused("timeout", value, timeout=value)


def test_unknown_field() -> None:
    refused("colour", "blue", colour="blue")


def lambda_worker() -> Any:
    return lambda job: None


def nested_worker() -> Any:
    def inner(job: Any) -> None:
        pass

    return inner


@pytest.mark.parametrize("worker", [lambda_worker(), nested_worker(), 5, None])
def test_bad_worker_objects(worker: object) -> None:
    message = refused("worker", worker, worker=worker)
    assert "worker" in message


def test_unimportable_worker_module() -> None:
    message = refused("worker", "kojo_no_such_module:work", worker="kojo_no_such_module:work")
    assert "ModuleNotFoundError" in message


def test_worker_module_that_fails_to_import(workers: str) -> None:
    uri = f"{workers}_broken:work"
    message = refused("worker", uri, worker=uri)
    assert "boom at import" in message


@pytest.mark.parametrize("suffix", [":missing", ":Group.missing", ":not_callable", "", ":a:b", ":"])
def test_bad_worker_references(workers: str, suffix: str) -> None:
    uri = workers + suffix
    refused("worker", uri, worker=uri)


# -- the decorator ---------------------------------------------------------------------------


def test_decorator_validates_when_it_runs(tmp_path: Path) -> None:
    app = kojo.App(database=f"sqlite:///{tmp_path}/k.db")
    with pytest.raises(kojo.InvalidJobType, match="cron_expression='nope'"):
        app.job_type("bad_cron", cron_expression="nope")(work)
    assert "bad_cron" not in app.job_types

    assert app.job_type("good", max_retries=2)(work) is work
    assert app.job_types["good"].max_retries == 2
    assert app.job_types["good"].worker is work


def test_decorator_refuses_a_nested_function(tmp_path: Path) -> None:
    # Job processes find the worker by "module:qualname"; a closure cannot be found that way.
    app = kojo.App(database=f"sqlite:///{tmp_path}/k.db")
    with pytest.raises(kojo.InvalidJobType, match=r"worker=.*<locals>.inner"):

        @app.job_type("nested")
        def inner(job: Any) -> None:
            pass


# -- YAML ------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "types.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_yaml_good_file(tmp_path: Path, workers: str) -> None:
    path = write(
        tmp_path,
        f"""
        - code: send_digest
          worker: {workers}:work
          cron_expression: "*/5 * * * *"
          can_work_in_parallel: false
          schedule_limit: 1
          default_importance: 3
          auto_delete_interval_duration: PT0S
          timeout: 12.5
        - code: send_one
          worker: {workers}:Group.nightly
        """,
    )
    first, second = load_yaml(path)
    assert first.code == "send_digest"
    assert first.worker_uri == f"{workers}:work"
    assert first.cron_expression == "*/5 * * * *"
    assert first.can_work_in_parallel is False
    assert first.schedule_limit == 1
    assert first.default_importance == 3
    assert first.auto_delete_interval_duration == "PT0S"
    assert first.timeout == 12.5
    assert second.code == "send_one"
    assert second.worker is sys.modules[workers].Group.nightly
    assert second.max_crashes == 5


def test_yaml_job_types_key(tmp_path: Path, workers: str) -> None:
    path = write(tmp_path, f"job_types:\n  - code: a\n    worker: {workers}:work\n")
    assert [t.code for t in load_yaml(path)] == ["a"]


@pytest.mark.parametrize(
    ("entry", "field", "value"),
    [
        ('cron_expression: "* * *"', "cron_expression", "* * *"),
        ("auto_delete_interval_duration: one day", "auto_delete_interval_duration", "one day"),
        ("schedule_limit: -1", "schedule_limit", "-1"),
        ("schedule_limit_allowance: -2", "schedule_limit_allowance", "-2"),
        ("max_retries: -3", "max_retries", "-3"),
        ("max_crashes: -4", "max_crashes", "-4"),
        ("can_work_in_parallel: maybe", "can_work_in_parallel", "maybe"),
    ],
)
def test_yaml_bad_field(tmp_path: Path, workers: str, entry: str, field: str, value: str) -> None:
    path = write(tmp_path, f"- code: a\n  worker: {workers}:work\n  {entry}\n")
    with pytest.raises(kojo.InvalidJobType) as raised:
        load_yaml(path)
    assert field in str(raised.value) and value in str(raised.value)


def test_yaml_bad_code(tmp_path: Path, workers: str) -> None:
    path = write(tmp_path, f"- code: Bad Code\n  worker: {workers}:work\n")
    with pytest.raises(kojo.InvalidJobType, match="code='Bad Code'"):
        load_yaml(path)


def test_yaml_missing_code(tmp_path: Path, workers: str) -> None:
    path = write(tmp_path, f"- worker: {workers}:work\n")
    with pytest.raises(kojo.InvalidJobType, match="code=None"):
        load_yaml(path)


def test_yaml_unimportable_worker(tmp_path: Path) -> None:
    path = write(tmp_path, "- code: a\n  worker: kojo_nowhere.module:work\n")
    with pytest.raises(kojo.InvalidJobType, match=r"worker='kojo_nowhere.module:work'"):
        load_yaml(path)


def test_yaml_missing_worker(tmp_path: Path) -> None:
    path = write(tmp_path, "- code: lonely\n")
    with pytest.raises(kojo.InvalidJobType, match=r"worker.*lonely"):
        load_yaml(path)


@pytest.mark.parametrize("text", ["code: a\nworker: x:y\n", "just a string\n", "", "42\n"])
def test_yaml_not_a_list(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(kojo.InvalidJobType, match="expected a list of job types"):
        load_yaml(path)


def test_yaml_entry_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- just_a_code\n")
    with pytest.raises(kojo.InvalidJobType, match=r"must be a mapping.*just_a_code"):
        load_yaml(path)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "- code: [unclosed\n")
    with pytest.raises(kojo.InvalidJobType, match="cannot read job types"):
        load_yaml(path)


def test_yaml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(kojo.InvalidJobType, match=r"nowhere.yml"):
        load_yaml(tmp_path / "nowhere.yml")


def test_yaml_error_stops_the_whole_file(tmp_path: Path, workers: str) -> None:
    # One bad entry refuses the file: no partial registration from a half-valid file.
    app = kojo.App(database=f"sqlite:///{tmp_path}/k.db")
    path = write(
        tmp_path,
        f"- code: ok\n  worker: {workers}:work\n- code: bad\n  worker: {workers}:work\n"
        "  max_retries: -1\n",
    )
    with pytest.raises(kojo.InvalidJobType, match="max_retries=-1"):
        app.load_job_types(path)
    assert app.job_types == {}


def test_the_worker_allow_list_refuses_other_modules_before_importing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KOJO_WORKER_MODULES", "json, email.mime")
    assert import_worker("json:dumps") is json.dumps
    assert import_worker("email.mime.text:MIMEText").__name__ == "MIMEText"
    imported = set(sys.modules)
    for uri in ("os:getcwd", "jsonschema_evil:run", "email:message_from_string"):
        with pytest.raises(
            kojo.InvalidJobType, match=r"KOJO_WORKER_MODULES=json,email\.mime"
        ) as refused:
            import_worker(uri)
        assert uri in str(refused.value)
    assert set(sys.modules) == imported  # refused before any import
    monkeypatch.delenv("KOJO_WORKER_MODULES")
    assert import_worker("os:getcwd") is os.getcwd


# -- values that cannot be computed with (issue 13) ------------------------------------------

UNCOMPUTABLE = [
    ("auto_delete_interval_duration", "P9000Y", "must be at most P1000Y"),
    ("auto_delete_interval_duration", "P99999999999Y", "must be at most P1000Y"),
    ("auto_delete_interval_duration", timedelta(days=365_001), "must be at most P1000Y"),
    ("catch_up_window", "P9000Y", "must be at most P1000Y"),
    ("catch_up_window", "P99999999999Y", "must be at most P1000Y"),
    ("catch_up_window", timedelta.max, "must be at most P1000Y"),
    ("timeout", 31_536_001, "at most 31536000"),
    ("timeout", 1e300, "at most 31536000"),
    ("timeout", timedelta(days=366), "at most 31536000"),
    ("timeout", timedelta.max, "at most 31536000"),
    ("timeout", "P1D", "must be a positive number of seconds"),
    ("cron_expression", "0 0 31 2 *", "never fires"),
    ("cron_expression", "0 0 30 2 *", "never fires"),
    ("cron_expression", "0 0 31 4,6,9,11 *", "never fires"),
    ("max_retries", 2**40, "must be <= 2147483647"),
]


def one_line_refusal(field: str, value: object, needle: str, build: Any) -> None:
    with pytest.raises(kojo.InvalidJobType) as raised:
        build()
    message = str(raised.value)
    assert "\n" not in message, message
    assert f"invalid job type field {field}={value!r}" in message, message
    assert needle in message, message


@pytest.mark.parametrize(("field", "value", "needle"), UNCOMPUTABLE)
def test_define_refuses_values_that_cannot_be_computed_with(
    field: str, value: object, needle: str
) -> None:
    one_line_refusal(field, value, needle, lambda: define("a_type", work, **{field: value}))


@pytest.mark.parametrize(("field", "value", "needle"), UNCOMPUTABLE)
def test_a_job_type_built_directly_is_checked_too(field: str, value: object, needle: str) -> None:
    # kojo.JobType is public: building one by hand must not get past define()'s checks.
    one_line_refusal(
        field,
        value,
        needle,
        lambda: kojo.JobType(code="a_type", worker_uri="os:getpid", **{field: value}),
    )


@pytest.mark.parametrize(("field", "value", "needle"), UNCOMPUTABLE)
def test_replacing_a_field_is_checked(field: str, value: object, needle: str) -> None:
    good = define("a_type", work)
    one_line_refusal(field, value, needle, lambda: dataclasses.replace(good, **{field: value}))


def test_a_job_type_built_directly_is_canonical() -> None:
    built = kojo.JobType(
        code="a_type",
        worker_uri="os:getpid",
        cron_expression="@daily",
        auto_delete_interval_duration=timedelta(hours=2),
        catch_up_window=" pt2h ",
        timeout=timedelta(minutes=1),
    )
    assert built.name == "a_type"  # the default name is the code, as define() makes it
    assert built.auto_delete_interval_duration == "PT2H"
    assert built.catch_up_window == "PT2H"
    assert built.timeout == 60.0
    assert built == define(
        "a_type",
        "os:getpid",
        cron_expression="@daily",
        auto_delete_interval_duration="PT2H",
        catch_up_window="PT2H",
        timeout=60,
    )


@pytest.mark.parametrize(
    ("field", "value"), [("code", "Bad Code"), ("code", None), ("worker", "nocolon"), ("worker", 5)]
)
def test_a_job_type_built_directly_needs_a_code_and_a_worker_reference(
    field: str, value: object
) -> None:
    options: dict[str, Any] = {"code": "a_type", "worker_uri": "os:getpid"}
    options["worker_uri" if field == "worker" else field] = value
    with pytest.raises(kojo.InvalidJobType, match=f"field {field}="):
        kojo.JobType(**options)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("auto_delete_interval_duration", "P9000Y", "must be at most P1000Y"),
        ("catch_up_window", "P99999999999Y", "must be at most P1000Y"),
        ("timeout", "31536001", "at most 31536000"),
        ("timeout", ".inf", "at most 31536000"),
        ("cron_expression", "'0 0 31 2 *'", "never fires"),
    ],
)
def test_yaml_refuses_values_that_cannot_be_computed_with(
    tmp_path: Path, workers: str, field: str, value: str, needle: str
) -> None:
    path = write(tmp_path, f"- code: a\n  worker: {workers}:work\n  {field}: {value}\n")
    with pytest.raises(kojo.InvalidJobType) as raised:
        load_yaml(path)
    message = str(raised.value)
    assert f"invalid job type field {field}=" in message and needle in message, message
    assert "\n" not in message


def test_the_decorator_refuses_an_expression_that_never_fires(tmp_path: Path) -> None:
    app = kojo.App(database=f"sqlite:///{tmp_path}/k.db")
    with pytest.raises(kojo.InvalidJobType, match=r"cron_expression='0 0 31 2 \*'.*never fires"):
        app.job_type("never", cron_expression="0 0 31 2 *")(work)
    assert "never" not in app.job_types
