"""kojo refuses a MySQL-family server it cannot speak to when it connects
(backends/mysql_version.py), and takes the MariaDB of the tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import kojo
from kojo.backends import mysql_version
from kojo.backends.mysql import MysqlUrl, connect


@pytest.fixture
def fresh_verdicts() -> Iterator[None]:
    mysql_version.refusal.cache_clear()
    yield
    mysql_version.refusal.cache_clear()


def test_the_mariadb_of_the_tests_is_spoken(mysql_url: str) -> None:
    conn = connect(MysqlUrl.parse(mysql_url), mysql_url)
    try:
        handshake = conn.raw.get_server_info()
        version = conn.execute("SELECT VERSION() AS v").fetchone()["v"]
    finally:
        conn.close()
    assert "MariaDB" in version
    assert mysql_version.refusal(handshake) is None
    assert mysql_version.refusal(version) is None


def test_a_server_older_than_kojo_needs_is_refused_when_kojo_connects(
    mysql_url: str, fresh_verdicts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tests' MariaDB plays an old one: kojo asks for a version it cannot have.
    monkeypatch.setattr(mysql_version, "MINIMUM", (99, 0))
    app = kojo.App(database=mysql_url)
    with pytest.raises(kojo.DatabaseError) as refused:
        app.install()
    assert not isinstance(refused.value, kojo.DatabaseUnavailable)  # waiting will not help
    message = str(refused.value)
    assert message.startswith("kojo needs MariaDB 99.0 or newer: this server is MariaDB '1")
    assert message.endswith("(it lacks SKIP LOCKED); see docs/howto/mysql.md")
    app.backend.close()
