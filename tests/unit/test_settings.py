"""kojo.settings: parsed once from flags and environment, bounds checked there."""

from __future__ import annotations

import dataclasses
import logging
import socket

import pytest

from kojo import cli, logs, settings
from kojo.errors import InvalidArgument
from kojo.settings import MAX_PROCESSES, Settings

ENV = (
    "KOJO_HOST_NAME",
    "KOJO_IDLE_RETIRE_SECONDS",
    "KOJO_LOG_FORMAT",
    "KOJO_LOG_LEVEL",
    "KOJO_DISABLED_TYPE_LOG_LEVEL",
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings, "_server_host_name", None)
    monkeypatch.setattr(logs.metadata, "host_name", logs.metadata.host_name)


def test_defaults() -> None:
    parsed = Settings.parse()
    assert parsed.host_name == socket.gethostname()
    assert 1 <= parsed.max_processes <= MAX_PROCESSES
    assert parsed.shutdown_timeout == 30.0
    assert parsed.idle_retire_seconds == 300.0
    assert (parsed.log_format, parsed.log_level) == ("json", "info")
    assert parsed.disabled_type_log_level == logging.WARNING
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.max_processes = 3  # type: ignore[misc]


def test_the_environment_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOJO_HOST_NAME", "from-env")
    monkeypatch.setenv("KOJO_IDLE_RETIRE_SECONDS", "0.5")
    monkeypatch.setenv("KOJO_LOG_FORMAT", "Text")
    monkeypatch.setenv("KOJO_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("KOJO_DISABLED_TYPE_LOG_LEVEL", "info")
    parsed = Settings.parse(max_processes=5, shutdown_timeout=2.0)
    assert parsed == Settings(
        "from-env", 5, 2.0, 0.5, None, "text", "debug", disabled_type_log_level=logging.INFO
    )
    assert Settings.parse(host_name=" flag ").host_name == "flag"  # the flag wins


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KOJO_IDLE_RETIRE_SECONDS", "soon", "KOJO_IDLE_RETIRE_SECONDS must be a positive number"),
        ("KOJO_IDLE_RETIRE_SECONDS", "0", "KOJO_IDLE_RETIRE_SECONDS must be a positive number"),
        ("KOJO_LOG_FORMAT", "xml", "KOJO_LOG_FORMAT must be one of json, pretty, text"),
        ("KOJO_LOG_LEVEL", "loud", "not a log level: 'LOUD'"),
        ("KOJO_DISABLED_TYPE_LOG_LEVEL", "loud", "KOJO_DISABLED_TYPE_LOG_LEVEL must be one of"),
    ],
)
def test_a_bad_environment_value_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidArgument, match=message) as caught:
        Settings.parse()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("bad", [-1, MAX_PROCESSES + 1, True, 2.0])
def test_max_processes_is_bounded(bad: object) -> None:
    with pytest.raises(InvalidArgument, match=f"from 0 to {MAX_PROCESSES}, got {bad!r}"):
        Settings("host", bad)  # type: ignore[arg-type]
    Settings("host", MAX_PROCESSES)


def test_other_bounds() -> None:
    with pytest.raises(InvalidArgument, match="host name"):
        Settings(" ", 1)
    with pytest.raises(InvalidArgument, match="shutdown timeout"):
        Settings("host", 1, shutdown_timeout=-1.0)


def test_max_processes_above_the_bound_is_refused_at_parse_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["server", "start", "--max-processes", str(MAX_PROCESSES + 1)])
    assert exited.value.code == 2
    assert "--max-processes" in capsys.readouterr().err


def test_the_host_name_of_a_server_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings.host_name() == socket.gethostname()
    monkeypatch.setenv("KOJO_HOST_NAME", "client-env")
    assert settings.host_name() == "client-env"  # a plain client process
    settings.use_host_name("server-flag")
    assert settings.host_name() == "server-flag"  # a server and what it forks
    assert logs.metadata.host_name == "server-flag"


def test_lock_and_subscriber_clients_register_under_that_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kojo.ipc import subscriber_info
    from kojo.process_owner import client_info

    monkeypatch.setenv("KOJO_HOST_NAME", "client-env")
    assert client_info().host_name == subscriber_info("c").host_name == "client-env"
    settings.use_host_name("server-flag")
    assert client_info().host_name == subscriber_info("c").host_name == "server-flag"
