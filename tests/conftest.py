"""Shared pytest fixtures: one database per test, on SQLite, PostgreSQL and MySQL.

Fixtures
--------
``database_url``
    Parametrized over ``sqlite``, ``postgres`` and ``mysql`` (test ids ``[sqlite]`` /
    ``[postgres]`` / ``[mysql]``; select one with ``-k sqlite`` and so on).
    Each test gets a brand-new, empty database. A test marked
    ``@pytest.mark.one_backend("why")`` checks nothing of the database and skips
    all but SQLite.
``sqlite_url``
    ``sqlite:///<tmp_path>/kojo.db`` (an absolute path, so four slashes).
``postgres_url``
    A fresh ``kojo_t_<hex>`` database on the server named by
    ``KOJO_TEST_POSTGRES_URL``, dropped (WITH (FORCE)) after the test. Created ahead
    and dropped behind by a helper process (``tests/pg_spares.py``), so that the test
    does not wait for either; tests/processes overrides it to do both in line.
``postgres_admin_url``
    Session-scoped: ``KOJO_TEST_POSTGRES_URL`` itself, checked reachable once.

Without ``KOJO_TEST_POSTGRES_URL`` the PostgreSQL fixtures fail (run the suite
via ``scripts/with-postgres`` / ``make test``) unless
``KOJO_TEST_SKIP_POSTGRES=1``, in which case those tests are skipped.

``mysql_url``
    A fresh ``kojo_t_<hex>`` database on the server named by ``KOJO_TEST_MYSQL_URL``
    (MariaDB from ``scripts/with-mariadb``); the MySQL tests skip, saying why, without it.

Create/drop helpers live in ``tests/pg.py`` (``import pg``) for reuse from
benchmarks and subprocess-based tests.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import mysql_db  # noqa: E402
import pg  # noqa: E402
from pg_spares import Spares  # noqa: E402


def pytest_report_header(config: pytest.Config) -> str:
    admin = pg.admin_url_from_env()
    if admin:
        return f"postgres: {admin}"
    if pg.skip_postgres_requested():
        return f"postgres: skipped ({pg.ENV_SKIP}=1)"
    return f"postgres: {pg.ENV_URL} not set, postgres tests will fail"


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    admin = pg.admin_url_from_env()
    if not admin:
        if pg.skip_postgres_requested():
            pytest.skip(f"PostgreSQL tests skipped ({pg.ENV_SKIP}=1)")
        pytest.fail(pg.MISSING_URL_MESSAGE, pytrace=False)
    try:
        with psycopg.connect(admin, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.fail(f"cannot connect to {pg.ENV_URL}={admin}: {exc}", pytrace=False)
    return admin


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/kojo.db"


@pytest.fixture(scope="session")
def postgres_spares(postgres_admin_url: str) -> Iterator[Spares]:
    spares = Spares(postgres_admin_url)
    try:
        yield spares
    finally:
        spares.close()


@pytest.fixture
def postgres_url(postgres_spares: Spares) -> Iterator[str]:
    url = postgres_spares.take()
    try:
        yield url
    finally:
        postgres_spares.give_back(url)


@pytest.fixture(scope="session")
def mysql_admin_url() -> str:
    admin = mysql_db.admin_url_from_env()
    if not admin:
        pytest.skip(mysql_db.MISSING_URL_MESSAGE)
    try:
        mysql_db.check(admin)
    except Exception as exc:
        pytest.fail(f"cannot connect to {mysql_db.ENV_URL}: {exc}", pytrace=False)
    return admin


@pytest.fixture
def mysql_url(mysql_admin_url: str) -> Iterator[str]:
    url = mysql_db.create_database(mysql_admin_url)
    try:
        yield url
    finally:
        mysql_db.drop_database(mysql_admin_url, url)


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def database_url(request: pytest.FixtureRequest) -> str:
    # A test whose subject is not the database (a signal, a log format, an option) runs
    # once: its other runs would cost CI minutes and check nothing more.
    one = request.node.get_closest_marker("one_backend")
    if one and request.param != "sqlite":
        pytest.skip(f"runs on SQLite only: {one.args[0]}")
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url
