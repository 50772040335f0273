"""The queue of kojo's SQLite writers: an exclusive flock on `<db>.kojo/writers`, taken
just before BEGIN IMMEDIATE and dropped just after COMMIT or ROLLBACK.

SQLite lets one writer in at a time. One that finds the write lock taken sleeps in the
busy handler, 1, 2, 5, 10, 15 ms... between looks, so two job processes that take turns
lose the time between a release and the sleeper's next look: at 50-job batches each
transaction holds the lock 2-4 ms, no longer than those sleeps. A writer that finds the
flock taken looks again after 0.1, 0.2, 0.4 ms..., never more than 1 ms apart: it gets in
within a millisecond of the release. (A blocking flock would wake it at once, but could
not time out: a frozen holder would hold every other writer, and their signals, for good.)
After QUEUE_TIMEOUT it stops queueing and waits in SQLite's busy handler, whose 60 s
timeout then ends the wait with "database is locked", as before.

Only kojo's own connections queue here; another program's writes still meet SQLite's
busy handler. A holder that dies drops the flock with its descriptors, as it drops
SQLite's lock. The file is used only in a folder this process has checked (ours,
writable by nobody else: SqliteBackend.secure_dirs), and only if it is a regular file of
ours: nobody else can hold our writers up with a flock on a file they made. Until then
(a client of a database no kojo process has registered with), writers go straight to
BEGIN IMMEDIATE.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

# How long writers that found no usable folder go without looking again.
RECHECK_SECONDS = 1.0
FIRST_PAUSE = 0.0001  # seconds between looks at a taken queue, doubled up to LAST_PAUSE
LAST_PAUSE = 0.001
QUEUE_TIMEOUT = 5.0  # then SQLite's busy handler takes over the wait


class WriterQueue:
    """One descriptor of the queue file per thread (flocks of separate open files exclude
    each other, threads of one process included)."""

    def __init__(self, path: Path, folder_ok: Callable[[], bool]) -> None:
        self.path = path
        self._folder_ok = folder_ok  # whether the folder is there and checked
        self._local = threading.local()
        self._guard = threading.Lock()
        self._fds: list[int] = []
        self._missing_until = 0.0  # monotonic time before which not to look again

    def found(self) -> None:
        """The folder was just made or checked: the next writer looks at once."""
        self._missing_until = 0.0

    def enter(self) -> None:
        """Wait for this thread's turn to write (at once when nobody of ours writes)."""
        fd = self._fd()
        if fd is not None and _take(fd):
            self._local.held = fd

    def leave(self) -> None:
        fd = getattr(self._local, "held", None)
        if fd is not None:
            self._local.held = None
            fcntl.flock(fd, fcntl.LOCK_UN)

    def after_fork(self) -> None:
        """In a child: close the inherited descriptors (the parent's flock stays the
        parent's; unlocking here would drop it)."""
        self._guard = threading.Lock()
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        self._local = threading.local()
        self._missing_until = 0.0

    def _fd(self) -> int | None:
        fd: int | None = getattr(self._local, "fd", None)
        if fd is not None:
            return fd
        if self._missing_until and time.monotonic() < self._missing_until:
            return None
        fd = self._open()
        if fd is None:
            self._missing_until = time.monotonic() + RECHECK_SECONDS
            return None
        with self._guard:
            self._fds.append(fd)
        self._local.fd = fd
        return fd

    def _open(self) -> int | None:
        try:
            if not self._folder_ok():
                return None
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except Exception:  # no folder, or one we refuse: SQLite's busy handler, as before
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            os.close(fd)
            return None
        return fd


def _take(fd: int) -> bool:
    """The queue's flock, looked at every FIRST_PAUSE..LAST_PAUSE seconds; False once
    QUEUE_TIMEOUT has passed without it."""
    pause = FIRST_PAUSE
    deadline = 0.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        now = time.monotonic()
        if not deadline:
            deadline = now + QUEUE_TIMEOUT
        elif now > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, LAST_PAUSE)
