"""Driver exceptions in kojo's words.

Each driver module registers what its database library raises when it is
imported (`register_driver`), so that code above the drivers can translate any
driver's error without importing that library: an exception of a driver can
only be raised once its module is loaded, so the registry is always complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import DatabaseError, DatabaseUnavailable, KojoError, SchemaMissing
from .availability import UNAVAILABLE_ERRNOS


@dataclass(frozen=True)
class DriverErrors:
    """What one database library raises, and how to read it."""

    error: type[Exception]  # the library's base exception class
    unavailable: Callable[[BaseException], bool]  # "not now" (see availability.py)
    missing_table: Callable[[BaseException], bool]  # kojo's tables are not installed


_DRIVERS: list[DriverErrors] = []


def register_driver(errors: DriverErrors) -> None:
    if errors not in _DRIVERS:
        _DRIVERS.append(errors)


def driver_of(exc: BaseException) -> DriverErrors | None:
    for driver in _DRIVERS:
        if isinstance(exc, driver.error):
            return driver
    return None


def driver_errors() -> tuple[type[Exception], ...]:
    """The base exception classes of every loaded driver."""
    return tuple(driver.error for driver in _DRIVERS)


def is_unavailable(exc: BaseException) -> bool:
    """A driver's (or the owner files') error that means "not now, try again later"."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, DatabaseError) and exc.__cause__ is not None:
        return is_unavailable(exc.__cause__)  # a driver error wrapped at the API
    if isinstance(exc, OSError):
        return exc.errno in UNAVAILABLE_ERRNOS
    driver = driver_of(exc)
    return driver is not None and driver.unavailable(exc)


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn driver exceptions into kojo.DatabaseError (or its kinds) at the API boundary."""
    try:
        yield
    except KojoError:
        raise
    except OSError as exc:
        if not is_unavailable(exc):
            raise
        raise DatabaseUnavailable(f"{type(exc).__name__}: {one_line_text(str(exc))}") from exc
    except Exception as exc:
        driver = driver_of(exc)
        if driver is None:
            raise
        text = one_line_text(str(exc))
        if driver.missing_table(exc):
            raise SchemaMissing(
                f"kojo's tables are not installed in this database ({text}): run `kojo db install`"
            ) from exc
        error = DatabaseUnavailable if driver.unavailable(exc) else DatabaseError
        raise error(f"{type(exc).__name__}: {text}".strip()) from exc


def one_line_text(text: str) -> str:
    """A driver message on one line: PostgreSQL's primary message and DETAIL/HINT, not the
    multi-line excerpt of the failing SQL (error messages must fit one CLI line)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    kept = lines[:1] + [line for line in lines[1:] if line.startswith(("DETAIL:", "HINT:"))]
    return " ".join(kept)
