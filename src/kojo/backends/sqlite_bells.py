"""SQLite's lock bells: an abstract unix datagram socket per waiting thread (gone with
the process); the releaser sends one datagram after its commit. While waiting, the
holders' pidfds are watched too, so a holder's death wakes the waiter at once."""

from __future__ import annotations

import errno
import hashlib
import os
import select
import socket
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .bells import Bell, Ringer

if TYPE_CHECKING:
    from .base import Backend


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
