"""When the database does not answer: which errors mean "try again later", and how long
to wait before trying.

A restart, a failover, a killed session, a network cut, a full disk or a database
locked for longer than the busy timeout are normal events for a long-running process.
Each loop of kojo's processes asks `Backend.is_unavailable(exc)` whether an error is
one of them (each driver says which of its errors are: errors.py), and keeps one
`Backoff`: the first failure of an outage is logged as one warning line (no
traceback), later ones are quiet, the way back is logged once, and the waits grow
from 50 ms to a cap of 1 s with jitter (so a restarted database is used again within
about a second, and hundreds of processes do not reconnect in step).
"""

from __future__ import annotations

import errno
import logging
import random
import time

BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0

# Owner files and doorbells on a full, failing, read-only or briefly unreadable disk.
UNAVAILABLE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.ENOENT}
)


def one_line(exc: BaseException) -> str:
    """An error as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    first = text[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class Backoff:
    """Capped exponential backoff with jitter, and one log line per outage."""

    def __init__(
        self,
        what: str,
        logger: logging.Logger,
        *,
        base: float = BACKOFF_BASE,
        cap: float = BACKOFF_CAP,
    ) -> None:
        self.what = what
        self.log = logger
        self.base = base
        self.cap = cap
        self.failures = 0
        self.since = 0.0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def failed(self, exc: BaseException) -> float:
        """Note a failure; the seconds to wait before the next try."""
        if self.failures == 0:
            self.since = time.monotonic()
            self.log.warning(
                f"{self.what}: the database is unavailable ({one_line(exc)}); "
                "retrying until it answers."
            )
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** min(self.failures - 1, 20))
        return random.uniform(ceiling / 2, ceiling)

    def succeeded(self) -> None:
        """Note that the database answered (logs the end of an outage once)."""
        if self.failures:
            self.log.warning(
                f"{self.what}: the database answers again "
                f"(after {time.monotonic() - self.since:.1f} s)."
            )
            self.failures = 0
