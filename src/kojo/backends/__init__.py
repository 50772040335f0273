"""Storage backends, chosen by URL."""

from __future__ import annotations

from ..errors import DatabaseError
from .base import Backend, Notification, Owner, ProcessInfo
from .url_secrets import mask_url

__all__ = ["Backend", "Notification", "Owner", "ProcessInfo", "open_backend"]


def open_backend(url: str) -> Backend:
    """The backend for a database URL: sqlite:///PATH, postgresql://... or mysql://..."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from .sqlite import SqliteBackend

        return SqliteBackend(url)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresBackend

        return PostgresBackend(url)
    if scheme in ("mysql", "mariadb"):
        try:
            from .mysql import MysqlBackend
        except ModuleNotFoundError as exc:
            if exc.name != "pymysql":
                raise
            raise DatabaseError(
                f"database URL {mask_url(url)!r} needs PyMySQL: pip install 'kojo[mysql]' ({exc})"
            ) from exc
        return MysqlBackend(url)
    raise DatabaseError(
        f"unsupported database URL {mask_url(url)!r}: use sqlite:///PATH, "
        "postgresql://user@host/db or mysql://user:password@host/db"
    )
