"""How a blocked lock waiter sleeps without polling, and how a releaser wakes it.

Every wait has its own *bell*, whose address is stored in its waiter row, so
threads of one process never take each other's wake-ups and a release wakes
one chosen waiter rather than all of them:

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

# How often a waiter re-checks a lock it was not woken for: frees of dead
# holders and lost wake-ups are noticed within this (plus jitter).
PROBE_INTERVAL = 0.5


class Bell(ABC):
    """One waiter's wake-up: `address` goes into its waiter row."""

    address: str

    @abstractmethod
    def wait(self, timeout: float) -> bool:
        """True when rung (or a watched holder exited) within `timeout` seconds."""

    def watch(self, pids: Iterable[int]) -> None:
        """Also wake when one of these (holder) processes exits, where the OS can tell."""

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
        """A new bell for a waiter of this process (call inside the registering transaction)."""


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
        while True:
            try:
                self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return True

    def close(self) -> None:
        self._sock.close()
        for fd in self._pidfds.values():
            os.close(fd)
        self._pidfds.clear()


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
    """LISTEN on the waiting thread's own connection (idle while it waits)."""

    def __init__(self, conn: Any, channel: str) -> None:
        from psycopg import sql

        self.address = channel
        self._conn = conn
        self._sql = sql
        # Inside the registering transaction: takes effect at its commit, with the waiter row.
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            for note in self._conn.notifies(timeout=remaining, stop_after=1):
                if note.channel == self.address:
                    return True
            if remaining <= 0.0 or time.monotonic() >= deadline:
                return False

    def close(self) -> None:
        # Late notifications of this channel may still come: each wait has its
        # own channel, so a later wait ignores them.
        if self._conn.closed or self._conn.broken:
            return
        self._conn.execute(self._sql.SQL("UNLISTEN {}").format(self._sql.Identifier(self.address)))


def ringer_for(backend: Backend) -> Ringer:
    if backend.dialect == "sqlite":
        return SocketRinger(str(getattr(backend, "path", backend.url)))
    return ChannelRinger()
