"""Throwaway MySQL / MariaDB databases for tests (like pg.py for PostgreSQL).

The admin URL is ``KOJO_TEST_MYSQL_URL`` (exported by ``scripts/with-mariadb``); its
user may create and drop databases named ``kojo_t_*``. Without it the MySQL tests
skip, saying so.
"""

from __future__ import annotations

import os
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

ENV_URL = "KOJO_TEST_MYSQL_URL"
DB_PREFIX = "kojo_t_"
MISSING_URL_MESSAGE = (
    f"{ENV_URL} is not set: MySQL tests need a server. Run the suite through "
    "scripts/with-mariadb (e.g. `scripts/with-mariadb python -m pytest` or `make test`), "
    f"or point {ENV_URL} at an existing server's database."
)


def admin_url_from_env() -> str | None:
    return os.environ.get(ENV_URL) or None


def name_of(url: str) -> str:
    """The database a mysql:// URL names."""
    return unquote(urlsplit(url).path.lstrip("/"))


def connect(url: str) -> Any:
    """A PyMySQL autocommit connection to the database of `url` (a test's own)."""
    return _connect(url, name_of(url))


def _connect(url: str, database: str | None = None) -> Any:
    import pymysql

    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "localhost",
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=database,
        autocommit=True,
        connect_timeout=10,
    )


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def check(admin_url: str) -> None:
    conn = _connect(admin_url)
    conn.close()


def create_database(admin_url: str) -> str:
    name = DB_PREFIX + uuid.uuid4().hex[:12]
    conn = _connect(admin_url)
    try:
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        conn.close()
    return with_database(admin_url, name)


def kill_sessions(admin_url: str, name: str) -> int:
    """KILL every session in database `name` but this one; how many were killed."""
    conn = _connect(admin_url)
    killed = 0
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
            (name,),
        )
        for (session,) in cur.fetchall():
            try:
                cur.execute(f"KILL {int(session)}")
                killed += 1
            except Exception:
                pass  # it ended meanwhile
    finally:
        conn.close()
    return killed


def drop_database(admin_url: str, url: str) -> None:
    name = unquote(urlsplit(url).path.lstrip("/"))
    assert name.startswith(DB_PREFIX), name
    # Sessions still in it (a test's leftover owners) would hold their metadata locks.
    kill_sessions(admin_url, name)
    conn = _connect(admin_url)
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()
