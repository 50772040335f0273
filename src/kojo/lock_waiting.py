"""How a blocked lock waiter sleeps without polling, and how a releaser wakes it.

Every waiting thread has its own *bell*, whose address is stored in its
waiter row, so threads of one process never take each other's wake-ups and a
release wakes one chosen waiter rather than all of them. A thread keeps its
bell for its next waits (a stale ring costs one extra look, nothing more):

- SQLite: an abstract unix datagram socket (gone with the process); the
  releaser sends one datagram after its commit. While waiting, the holders'
  pidfds are watched too, so a holder's death wakes the waiter at once.
- PostgreSQL: a LISTEN channel of its own on the waiting thread's connection;
  the releaser NOTIFYs it inside its transaction (delivered at commit).

Bells are hints: the waiter re-checks the lock in the database after every
wake, and also every PROBE_INTERVAL seconds, so a lost wake-up costs latency,
never a deadlock.
"""

from __future__ import annotations

import errno
import hashlib
import os
import select
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from .backends import Backend

# How often a waiter near the head of the queue (fewer than slots + 1 waiters
# ahead of it) re-checks a lock it was not woken for: frees of dead holders
# and lost wake-ups are noticed within this (plus jitter). Waiters further
# back only check every SAFETY_INTERVAL: a release or a grant wakes them in
# turn, so 100 blocked waiters cost about what 2 do.
PROBE_INTERVAL = 0.5
SAFETY_INTERVAL = 10.0
NEAR_HEAD = 1


class Bell(ABC):
    """One thread's wake-up: `address` goes into its waiter rows."""

    address: str

    def usable(self, backend: Backend) -> bool:
        """Still good for waiting on `backend` from this thread."""
        return True

    @abstractmethod
    def prepare(self) -> None:
        """In the transaction registering a waiter row: drop stale rings, start listening."""

    def committed(self) -> None:
        """That transaction committed."""

    def rolled_back(self) -> None:
        """That transaction rolled back."""

    @abstractmethod
    def wait(self, timeout: float) -> bool:
        """True when rung (or a watched holder exited) within `timeout` seconds."""

    def watch(self, pids: Iterable[int]) -> None:
        """Also wake when one of these (holder) processes exits, where the OS can tell."""

    def done(self) -> None:
        """A wait is over (the bell is kept for the next one)."""

    @abstractmethod
    def close(self) -> None: ...


class Ringer(ABC):
    """Wakes waiters, given the bells of their rows, oldest first."""

    # True: ring inside the releasing transaction (delivered at its commit);
    # False: ring after the commit, which also tells whether the waiter still listens.
    rings_in_transaction = False

    def ring_in_transaction(self, backend: Backend, bells: list[str]) -> None:
        """Inside the releasing transaction: ring every one of `bells`."""

    def ring_after_commit(self, bells: list[str], wanted: int) -> None:
        """Ring bells in order until `wanted` of them answered."""

    @abstractmethod
    def bell(self, backend: Backend) -> Bell:
        """A new bell for the calling thread."""


# -- SQLite: datagram sockets and pidfds ----------------------------------------------------


class SocketRinger(Ringer):
    def __init__(self, database_path: str) -> None:
        digest = hashlib.sha1(os.path.realpath(database_path).encode()).hexdigest()[:16]
        # Abstract namespace (leading NUL, added when used): no file, no path length limit.
        self.prefix = f"kojo-lock.{digest}."
        self._sender: socket.socket | None = None
        self._sender_pid = 0

    def bell(self, backend: Backend) -> Bell:
        return SocketBell(self.prefix + uuid.uuid4().hex)

    def ring_after_commit(self, bells: list[str], wanted: int) -> None:
        if self._sender is None or self._sender_pid != os.getpid():
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
            self._sender_pid = os.getpid()
        for address in bells:
            if wanted <= 0:
                return
            try:
                self._sender.sendto(b"!", "\0" + address)
            except (ConnectionRefusedError, FileNotFoundError):
                continue  # that waiter has gone: wake the next one
            except BlockingIOError:
                pass  # its queue is full of wake-ups already
            except OSError as exc:
                if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                    raise
            wanted -= 1


class SocketBell(Bell):
    def __init__(self, address: str) -> None:
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + address)
        self._sock.setblocking(False)
        self._pidfds: dict[int, int] = {}
        self._fired: set[int] = set()  # exited already; do not wake on them again

    def usable(self, backend: Backend) -> bool:
        return self._sock.fileno() >= 0

    def prepare(self) -> None:
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return

    def watch(self, pids: Iterable[int]) -> None:
        wanted = set(pids) - self._fired
        for pid in set(self._pidfds) - wanted:
            os.close(self._pidfds.pop(pid))
        for pid in wanted - set(self._pidfds):
            fd = _pidfd(pid)
            if fd is not None:
                self._pidfds[pid] = fd

    def wait(self, timeout: float) -> bool:
        by_fd = {fd: pid for pid, fd in self._pidfds.items()}
        ready, _, _ = select.select([self._sock.fileno(), *by_fd], [], [], max(0.0, timeout))
        if not ready:
            return False
        for fd in ready:
            pid = by_fd.get(fd)
            if pid is not None:
                self._fired.add(pid)
                os.close(self._pidfds.pop(pid))
        self._drain()
        return True

    def done(self) -> None:
        for fd in self._pidfds.values():
            os.close(fd)
        self._pidfds.clear()
        self._fired.clear()

    def close(self) -> None:
        self.done()
        self._sock.close()


def _pidfd(pid: int) -> int | None:
    """A descriptor readable when `pid` exits (Linux ≥ 5.3), else None."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None or pid <= 0:
        return None
    try:
        return int(pidfd_open(pid))
    except ProcessLookupError:
        return None  # gone already: the next probe reaps it
    except OSError:
        return None  # not supported here (old kernel, sandbox): probing covers it


# -- PostgreSQL: one LISTEN channel per wait ----------------------------------------------


class ChannelRinger(Ringer):
    rings_in_transaction = True

    def bell(self, backend: Backend) -> Bell:
        return ChannelBell(backend.connection(), "kojo_w_" + uuid.uuid4().hex)

    def ring_in_transaction(self, backend: Backend, bells: list[str]) -> None:
        for address in bells:
            backend.execute("lock_ring", {"bell": address})


class ChannelBell(Bell):
    """A LISTEN channel on the thread's own connection (idle while it waits)."""

    def __init__(self, conn: Any, channel: str) -> None:
        from psycopg import sql

        self.address = channel
        self._conn = conn
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
        self._listening = False  # confirmed by a commit

    def usable(self, backend: Backend) -> bool:
        return (
            backend.connection() is self._conn and not self._conn.closed and not self._conn.broken
        )

    def prepare(self) -> None:
        self._take_pending()  # stale rings of earlier waits
        if not self._listening:
            # Inside the registering transaction: takes effect with the waiter row.
            self._conn.execute(self._listen)

    def committed(self) -> None:
        self._listening = True

    def _take_pending(self) -> bool:
        rung = False
        for note in self._conn.notifies(timeout=0.0):  # received already, or readable now
            rung = rung or note.channel == self.address
        return rung

    def wait(self, timeout: float) -> bool:
        # select() on the socket ourselves: psycopg's notifies(timeout) wakes every
        # 0.1 s (to notice Ctrl-C), which 100 idle waiters would pay for.
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if self._take_pending():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([self._conn.fileno()], [], [], remaining)
            if not ready:
                return False

    def close(self) -> None:
        pass  # the channel goes with the connection


def ringer_for(backend: Backend) -> Ringer:
    if backend.dialect == "sqlite":
        return SocketRinger(str(getattr(backend, "path", backend.url)))
    return ChannelRinger()
