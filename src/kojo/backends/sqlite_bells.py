"""SQLite's lock bells: an abstract unix datagram socket per waiting thread (gone with
the process); the releaser sends one datagram after its commit. While waiting, the
holders' pidfds are watched too, so a holder's death wakes the waiter at once.

Who may ring. Abstract-namespace sockets have no file, so no permission applies to
them and their names are listed in /proc/net/unix. We keep them (rather than
filesystem sockets in the 0700 `<db>.kojo/` folder) because a database path may be
long and sun_path holds 108 bytes; instead:

- every receiver sets SO_PASSCRED and reads with recvmsg, so the kernel tells it the
  sender's uid: a datagram from another user is dropped unread (`receive`);
- every name ends in a fresh random token (`bind_bell`), known only from the waiter row
  or the owner file (a 0600 file in a 0700 folder), so nobody can bind it first; a name
  seen in /proc/net/unix is never bound again, and a bind that still finds its name
  taken is retried with a fresh token and ends, at worst, in one `BellTaken` error.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import select
import socket
import struct
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import DatabaseError
from .bells import Bell, Ringer

if TYPE_CHECKING:
    from .base import Backend
    from .driver import Owner


BIND_TRIES = 8
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_ANCILLARY_SIZE = socket.CMSG_SPACE(_CREDENTIALS.size)


class BellTaken(DatabaseError):
    """No free name for a wake-up socket: another process holds every name tried."""


def bind_bell(prefix: str, what: str) -> tuple[socket.socket, str]:
    """A non-blocking datagram socket bound to `prefix` + a fresh random token, that
    learns its senders' credentials; and that address (without the leading NUL)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        for _ in range(BIND_TRIES):
            address = prefix + secrets.token_hex(16)
            try:
                sock.bind("\0" + address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue  # someone holds that name: never share it, draw another
            sock.setblocking(False)
            return sock, address
    except BaseException:
        sock.close()
        raise
    sock.close()
    raise BellTaken(
        f"cannot bind a kojo {what} socket: {BIND_TRIES} fresh random names under "
        f"{prefix!r} were all in use (is another process binding kojo's socket names?)"
    )


def sender_uid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        ours = level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
        if ours and len(data) >= _CREDENTIALS.size:
            return int(_CREDENTIALS.unpack_from(data)[1])
    return None


def receive(sock: socket.socket, size: int) -> bytes | None:
    """The next datagram sent by this user, or None when none is waiting. Datagrams
    from other users (or without credentials) are read and dropped."""
    uid = os.getuid()
    while True:
        try:
            packet, ancillary, _flags, _address = sock.recvmsg(size, _ANCILLARY_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        if sender_uid(ancillary) == uid:
            return packet


class SocketRinger(Ringer):
    def __init__(self, database_path: str) -> None:
        digest = hashlib.sha1(os.path.realpath(database_path).encode()).hexdigest()[:16]
        # Abstract namespace (leading NUL, added when used): no file, no path length limit.
        self.prefix = f"kojo-lock.{digest}."
        self._sender: socket.socket | None = None
        self._sender_pid = 0

    def bell(self, backend: Backend, owner: Owner | None = None) -> Bell:
        return SocketBell(self.prefix)

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
    def __init__(self, prefix: str) -> None:
        self._sock, self.address = bind_bell(prefix, "lock bell")
        self._pidfds: dict[int, int] = {}
        self._fired: set[int] = set()  # exited already; do not wake on them again

    def usable(self, backend: Backend, owner: Owner) -> bool:
        return self._sock.fileno() >= 0

    def prepare(self) -> None:
        self._drain()

    def _drain(self) -> bool:
        """Empty the queue; True if one of the datagrams came from this user."""
        rung = False
        while receive(self._sock, 64) is not None:
            rung = True
        return rung

    def watch(self, pids: Iterable[int]) -> None:
        wanted = set(pids) - self._fired
        for pid in set(self._pidfds) - wanted:
            os.close(self._pidfds.pop(pid))
        for pid in wanted - set(self._pidfds):
            fd = _pidfd(pid)
            if fd is not None:
                self._pidfds[pid] = fd

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            by_fd = {fd: pid for pid, fd in self._pidfds.items()}
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._sock.fileno(), *by_fd], [], [], left)
            if not ready:
                return False
            woken = False
            for fd in ready:
                pid = by_fd.get(fd)
                if pid is not None:
                    self._fired.add(pid)
                    os.close(self._pidfds.pop(pid))
                    woken = True
            if self._drain() or woken:
                return True
            # Only other users' datagrams: not a wake-up; wait out the rest.

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
