"""kojo speaks MariaDB 10.6+ only (backends/mysql_version.py): the verdict on a server's
version string, as its handshake or VERSION() gives it."""

from __future__ import annotations

import pytest

from kojo.backends.mysql_version import refusal


@pytest.mark.parametrize(
    "version",
    [
        "10.6.0-MariaDB",
        "5.5.5-10.6.16-MariaDB",  # the handshake's prefix of MariaDB 10.x
        "10.11.6-MariaDB-0+deb12u1-log",
        "5.5.5-10.11.6-MariaDB-0+deb12u1-log",
        "11.4.2-MariaDB",
        "11.8.1-MariaDB-ubu2404",
        "12.0.2-MariaDB",
    ],
)
def test_mariadb_10_6_and_newer_is_spoken(version: str) -> None:
    assert refusal(version) is None


@pytest.mark.parametrize(
    ("version", "shown"),
    [
        ("8.0.36", "8.0.36"),
        ("8.4.3", "8.4.3"),
        ("9.1.0", "9.1.0"),
        ("8.0.36-28", "8.0.36-28"),  # Percona Server
        ("5.7.44-log", "5.7.44-log"),
    ],
)
def test_mysql_is_refused_naming_its_version(version: str, shown: str) -> None:
    assert refusal(version) == (
        f"kojo needs MariaDB 10.6 or newer: this server is MySQL '{shown}' "
        "(it lacks INSERT ... RETURNING); see docs/howto/mysql.md"
    )


@pytest.mark.parametrize(
    ("version", "shown"),
    [
        ("10.5.23-MariaDB", "10.5.23-MariaDB"),
        ("5.5.5-10.5.23-MariaDB-0+deb11u1", "10.5.23-MariaDB-0+deb11u1"),
        ("10.3.39-MariaDB-0ubuntu0.20.04.2", "10.3.39-MariaDB-0ubuntu0.20.04.2"),
        ("5.5.68-MariaDB", "5.5.68-MariaDB"),  # CentOS 7's
    ],
)
def test_mariadb_before_10_6_is_refused_naming_its_version(version: str, shown: str) -> None:
    assert refusal(version) == (
        f"kojo needs MariaDB 10.6 or newer: this server is MariaDB '{shown}' "
        "(it lacks SKIP LOCKED); see docs/howto/mysql.md"
    )


@pytest.mark.parametrize(
    ("version", "shown"), [("MariaDB", "MariaDB"), ("5.5.5-MariaDB-custom", "MariaDB-custom")]
)
def test_an_unreadable_mariadb_version_is_refused_saying_so(version: str, shown: str) -> None:
    assert refusal(version) == (
        f"kojo needs MariaDB 10.6 or newer: cannot read this server's version '{shown}'; "
        "see docs/howto/mysql.md"
    )


def test_a_version_is_quoted_on_one_line() -> None:
    reason = refusal("8.0.36\nsecond line")
    assert reason is not None and "\n" not in reason
