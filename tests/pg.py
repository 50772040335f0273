"""Throwaway PostgreSQL databases for tests, benchmarks and subprocess tests.

The admin URL is normally ``KOJO_TEST_POSTGRES_URL`` (exported by
``scripts/with-postgres``). Every call opens its own short autocommit
connection, so these helpers are safe to use from any process.

    from pg import create_database, drop_database   # tests/ is on sys.path

    url = create_database(admin_url)    # postgresql://.../kojo_t_1a2b3c4d5e6f
    try:
        ...
    finally:
        drop_database(admin_url, url)
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

ENV_URL = "KOJO_TEST_POSTGRES_URL"
ENV_SKIP = "KOJO_TEST_SKIP_POSTGRES"
DB_PREFIX = "kojo_t_"

MISSING_URL_MESSAGE = (
    f"{ENV_URL} is not set: PostgreSQL tests need a server. Run the suite through "
    "scripts/with-postgres (e.g. `scripts/with-postgres python -m pytest` or `make test`), "
    f"point {ENV_URL} at an existing server's database, or set {ENV_SKIP}=1 to skip them."
)


def admin_url_from_env() -> str | None:
    """The admin URL from the environment, or None."""
    return os.environ.get(ENV_URL) or None


def skip_postgres_requested() -> bool:
    return os.environ.get(ENV_SKIP, "").strip().lower() in {"1", "true", "yes", "on"}


def database_name(url: str) -> str:
    """The database name in a ``postgresql://`` URL."""
    name = unquote(urlsplit(url).path.lstrip("/"))
    if not name:
        raise ValueError(f"no database name in URL {url!r}")
    return name


def with_database(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name`` (user, host, query kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextmanager
def _admin(admin_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        yield conn


def create_database(admin_url: str) -> str:
    """Create a brand-new empty database and return a URL to it."""
    name = DB_PREFIX + uuid.uuid4().hex[:12]
    with _admin(admin_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database ``url`` points to, terminating its connections.

    Dropping a database that no longer exists is not an error.
    """
    name = database_name(url)
    if name == database_name(admin_url):
        raise ValueError(f"refusing to drop the admin database {name!r}")
    query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    last: Exception | None = None
    for attempt in range(5):
        try:
            with _admin(admin_url) as conn:
                conn.execute(query)
            return
        except psycopg.errors.ObjectInUse as exc:  # e.g. a prepared transaction
            last = exc
            time.sleep(0.2 * (attempt + 1))
    assert last is not None
    raise last


@contextmanager
def temporary_database(admin_url: str | None = None) -> Iterator[str]:
    """Context manager: a fresh database URL, dropped on exit."""
    admin = admin_url or admin_url_from_env()
    if not admin:
        raise RuntimeError(MISSING_URL_MESSAGE)
    url = create_database(admin)
    try:
        yield url
    finally:
        drop_database(admin, url)
