"""MySQL's lock bells: a ring is a wake-up row, delivered by the process's one poller.

A release inserts a `kojo_wakeup` row of topic RING_TOPIC, whose data is the bell's
address, in its transaction (seen at commit, gone on rollback). The poller that reads
the wake-ups for this process (mysql_wakeups.py: its own owner's, or on a server the
host's anchor) hands it to the waiting thread through its BellBoard; it is never
forwarded as a notification. A waiting thread queries nothing: it sleeps on an Event
(a bell of the poller's own process) or on a socket to the server (a vouched process's
bell, registered with the server once per thread over the vouching line).

The poller polls at its urgent rate (URGENT_POLL_INTERVAL, twice the busy rate) while a
waiter near the head of its queue waits (an *urgent* one: a release rings it next), so
a ring after an idle spell is not left for the idle interval; a waiter further back
needs no haste (it is nudged when it comes near, and looks every SAFETY_INTERVAL
anyway), so 50 blocked processes keep only the pollers of the two at the head fast. A
waiter tells its board how it stands: a method call in the poller's process, a one-byte
message on its socket to the server otherwise (the server's poller thread reads those
sockets; a hang-up drops the bell).

Rings are hints, as everywhere (bells.py): a waiter re-checks the lock when rung and
every PROBE_INTERVAL (near the head) or SAFETY_INTERVAL anyway.
"""

from __future__ import annotations

import select
import socket
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING

from .bells import Bell, Ringer
from .session_vouching import VouchedOwner

if TYPE_CHECKING:
    from .base import Backend
    from .driver import Owner

RING_TOPIC = "kojo.ring"
# A waiter's state, as its board knows it (one byte on a vouched process's socket).
URGENT = b"u"  # near the head: the poller polls at its urgent rate
FAR = b"f"  # further back: the idle rate will do
DONE = b"d"  # not waiting
RUNG = b"r"  # server to waiter: a ring for this bell


class BellBoard:
    """The bells one poller serves: its own process's threads, and its tree's (sockets)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local: weakref.WeakValueDictionary[str, LocalBell] = weakref.WeakValueDictionary()
        self._remote: dict[str, socket.socket] = {}
        self._address_of: dict[int, str] = {}  # a remote bell's address by its fileno
        self._urgent: set[str] = set()
        self._far: set[str] = set()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def busy(self) -> bool:
        """A waiter near the head of its queue waits: poll at the urgent rate."""
        return bool(self._urgent)

    def waiting(self) -> bool:
        """Any waiter waits, near the head or not."""
        return bool(self._urgent or self._far)

    def add_local(self, bell: LocalBell) -> None:
        with self._lock:
            self._local[bell.address] = bell

    def add_remote(self, address: str, sock: socket.socket) -> None:
        sock.setblocking(False)
        with self._lock:
            old = self._remote.pop(address, None)
            if old is not None:
                self._address_of.pop(old.fileno(), None)
                old.close()
            self._remote[address] = sock
            self._address_of[sock.fileno()] = address
        self.wake()  # the poller selects on the new socket from now on

    def mark(self, address: str, state: bytes) -> None:
        with self._lock:
            was_busy = bool(self._urgent)
            self._urgent.discard(address)
            self._far.discard(address)
            if state == URGENT:
                self._urgent.add(address)
            elif state == FAR:
                self._far.add(address)
            now_busy = bool(self._urgent)
        if now_busy and not was_busy:
            self.wake()  # out of an idle sleep at once

    def ring(self, address: str) -> bool:
        """Ring `address` if it is one of ours; whether it was."""
        with self._lock:
            local = self._local.get(address)
            remote = self._remote.get(address)
        if local is not None:
            local.rung()
        elif remote is not None:
            try:
                remote.send(RUNG, socket.MSG_DONTWAIT)
            except OSError:
                pass  # full (it is rung already) or hung up (dropped when next served)
        else:
            return False  # a bell of another host, or one gone
        return True

    def wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full: a wake is pending already; closed: the poller is gone

    def sleep(self, timeout: float) -> None:
        """Up to `timeout` seconds, until woken or a remote bell speaks (served here)."""
        with self._lock:
            remote = list(self._remote.values())
        try:
            ready, _, _ = select.select([self._wake_r, *remote], [], [], max(0.0, timeout))
        except (OSError, ValueError):
            return  # a socket closed meanwhile (close(), or a replaced bell): look again
        for sock in ready:
            if sock is self._wake_r:
                self._drain_wakes()
            else:
                self._serve(sock)

    def _drain_wakes(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            address = self._address_of.get(sock.fileno())
        if address is None:
            return
        while True:
            try:
                message = sock.recv(16)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:  # hung up: the thread, or its process, is gone
                self._drop(address, sock)
                return
            self.mark(address, message[-1:])

    def _drop(self, address: str, sock: socket.socket) -> None:
        with self._lock:
            if self._remote.get(address) is sock:
                del self._remote[address]
                self._address_of.pop(sock.fileno(), None)
                self._urgent.discard(address)
                self._far.discard(address)
        sock.close()

    def close(self) -> None:
        """The poller is gone: every remote bell sees the hang-up."""
        with self._lock:
            remote, self._remote = list(self._remote.values()), {}
            self._address_of.clear()
            self._urgent.clear()
            self._far.clear()
        for sock in remote:
            sock.close()
        self._wake_r.close()
        self._wake_w.close()

    abandon = close  # in a forked child: our copies only; the parent's stay open


class MysqlRinger(Ringer):
    rings_in_transaction = True

    def bell(self, backend: Backend, owner: Owner | None = None) -> Bell:
        address = "kojo_w_" + uuid.uuid4().hex
        board = getattr(owner, "bells", None)  # an anchor's, which polls (MysqlOwner)
        if owner is not None and isinstance(board, BellBoard):
            return LocalBell(owner, board, address)
        if isinstance(owner, VouchedOwner):
            return RemoteBell(owner, address, owner.bell_socket(address))
        raise TypeError(f"a MySQL lock bell needs the waiter's owner, not {owner!r}")

    def ring_in_transaction(self, backend: Backend, bells: list[str]) -> None:
        for address in bells:
            backend.execute("wakeup_add", {"topic": RING_TOPIC, "data": address})


class LocalBell(Bell):
    """A bell of the poller's own process: an Event its board sets."""

    def __init__(self, owner: Owner, board: BellBoard, address: str) -> None:
        self.address = address
        self._owner = owner
        self._board = board
        self._event = threading.Event()
        self._board.add_local(self)

    def usable(self, backend: Backend, owner: Owner) -> bool:
        return owner is self._owner and not owner.is_lost()

    def prepare(self) -> None:
        self._event.clear()  # stale rings of earlier waits
        self._board.mark(self.address, URGENT)

    def expect(self, urgent: bool) -> None:
        self._board.mark(self.address, URGENT if urgent else FAR)

    def rung(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        if self._event.wait(max(0.0, timeout)):
            self._event.clear()
            return True
        return False

    def done(self) -> None:
        self._board.mark(self.address, DONE)

    def close(self) -> None:
        self.done()


class RemoteBell(Bell):
    """A vouched process's bell: a socket to its server, whose poller rings it."""

    def __init__(self, owner: VouchedOwner, address: str, sock: socket.socket) -> None:
        self.address = address
        self._owner = owner
        self._sock = sock
        self._sock.setblocking(False)
        self._state = DONE
        self._hung_up = False

    def usable(self, backend: Backend, owner: Owner) -> bool:
        return owner is self._owner and not self._hung_up and not owner.is_lost()

    def _tell(self, state: bytes) -> None:
        if state == self._state or self._hung_up:
            return
        try:
            self._sock.send(state, socket.MSG_DONTWAIT)
            self._state = state
        except BlockingIOError:
            pass  # the server is behind: a wrong rate for a while, never a lost waiter
        except OSError:
            self._hung_up = True

    def _drain(self) -> bool:
        rung = False
        while not self._hung_up:
            try:
                message = self._sock.recv(16)
            except BlockingIOError:
                break
            except OSError:
                message = b""
            if not message:
                self._hung_up = True  # the server's poller is gone: look every so often
            rung = rung or message == RUNG
        return rung

    def prepare(self) -> None:
        self._drain()  # stale rings of earlier waits
        self._tell(URGENT)

    def expect(self, urgent: bool) -> None:
        self._tell(URGENT if urgent else FAR)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if self._drain():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._hung_up:
                time.sleep(remaining)  # no ring will come: the waiter's own looks remain
                return False
            ready, _, _ = select.select([self._sock], [], [], remaining)
            if not ready:
                return False

    def done(self) -> None:
        self._tell(DONE)

    def close(self) -> None:
        self._sock.close()
