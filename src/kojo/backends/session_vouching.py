"""The host's one database session vouches for the processes of its tree, over local
sockets (vouching.py says why): the part PostgreSQL and MySQL share.

Requests are datagrams on a SOCK_SEQPACKET pair inherited by the tree; each carries the
descriptor of the requester's own reply socket (and, to register, of its doorbell), so
concurrent requests never cross. A vouched process's liveness key (PostgreSQL: an
advisory lock; MySQL: a named lock) is taken by the server's anchor session when it
registers, and freed when its parent reports it reaped, when its doorbell hangs up (the
process is gone: its descriptors closed with it), or all at once with the session: the
server's death takes its host's jobs and locks with it. The dialect says how a key is
taken and freed (`SessionVoucher._register_key`, `_free_key`).
"""

from __future__ import annotations

import json
import os
import select
import socket
from abc import abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..clock import utcnow
from ..errors import DatabaseError, DatabaseUnavailable
from .driver import Notification, Owner, ProcessInfo
from .errors import driver_errors
from .vouching import Voucher, VouchLine

if TYPE_CHECKING:
    from .base import Backend

# A request waits this long for the server, which may be waiting out the database itself;
# the requester then backs off like any other unavailable database. A release is only an
# accelerator (the server also sees the dead child's doorbell hang up): it waits less.
REGISTER_TIMEOUT = 2.0
RELEASE_TIMEOUT = 0.5
MAX_MESSAGE = 65536


def _session_errors() -> tuple[type[Exception], ...]:
    """What a failed statement on the anchor session raises."""
    return (DatabaseError, *driver_errors())


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def _info_json(info: ProcessInfo) -> dict[str, Any]:
    return {
        "host_name": info.host_name,
        "process_id": info.process_id,
        "parent_process_id": info.parent_process_id,
        "path": info.path,
        "kind": info.kind,
        "extra": dict(info.extra or {}),
    }


class SocketVouchLine(VouchLine):
    def __init__(self, backend: Backend, sock: socket.socket) -> None:
        self.backend = backend
        self._sock = sock

    def _ask(self, request: dict[str, Any], fds: list[int], timeout: float) -> dict[str, Any]:
        mine, theirs = _pair()
        try:
            payload = json.dumps(request).encode()
            # Never wait to send: a server that does not serve its queue is unavailable.
            socket.send_fds(self._sock, [payload], [theirs.fileno(), *fds], socket.MSG_DONTWAIT)
            theirs.close()
            ready, _, _ = select.select([mine], [], [], timeout)
            answer = mine.recv(MAX_MESSAGE) if ready else b""
        except OSError as exc:
            raise DatabaseUnavailable(f"the server cannot vouch for this process: {exc}") from exc
        finally:
            mine.close()
            if theirs.fileno() >= 0:
                theirs.close()
        if not answer:
            raise DatabaseUnavailable("the server did not answer a vouching request in time")
        reply: dict[str, Any] = json.loads(answer)
        if "error" in reply:
            raise DatabaseUnavailable(str(reply["error"]))
        return reply

    def register(self, info: ProcessInfo) -> Owner:
        bell, their_bell = _pair()
        try:
            reply = self._ask(
                {"op": "register", "info": _info_json(info)},
                [their_bell.fileno()],
                REGISTER_TIMEOUT,
            )
        except BaseException:
            bell.close()
            raise
        finally:
            their_bell.close()
        return VouchedOwner(self.backend, self, int(reply["id"]), bell)

    def register_bell(self, address: str) -> socket.socket:
        """A socket on which the server rings the lock bell `address` (mysql_bells.py)."""
        mine, theirs = _pair()
        try:
            self._ask({"op": "bell", "address": address}, [theirs.fileno()], REGISTER_TIMEOUT)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        return mine

    def release(self, pid: int) -> None:
        self._ask({"op": "release", "pid": pid}, [], RELEASE_TIMEOUT)

    def release_owner(self, owner_id: int) -> None:
        self._ask({"op": "release", "id": owner_id}, [], RELEASE_TIMEOUT)


class VouchedOwner(Owner):
    """A registration whose key the server's anchor holds; wake-ups come by its doorbell."""

    can_be_lost = True
    backend: Backend

    def __init__(
        self, backend: Backend, line: SocketVouchLine, owner_id: int, bell: socket.socket
    ) -> None:
        self.backend = backend
        self.id = owner_id
        self._line = line
        self._bell = bell
        self._bell.setblocking(False)
        self._pid = os.getpid()
        self._lost = False
        self._closed = False
        self._watch_forks()

    def fileno(self) -> int:
        return self._bell.fileno()

    def wait(self, timeout: float | None) -> list[Notification]:
        if self._lost or self._closed:
            return []
        ready, _, _ = select.select([self._bell], [], [], timeout)
        notes: list[Notification] = []
        while ready:
            try:
                data = self._bell.recv(MAX_MESSAGE)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:  # the server hung up: its anchor, and our key with it, is gone
                self._lost = True
                break
            note = self.backend.decode_notification(data)
            if note is not None:
                notes.append(note)
        return notes

    def bell_socket(self, address: str) -> socket.socket:
        """Where the server rings this process's lock bell `address`, where it does."""
        return self._line.register_bell(address)

    def is_lost(self) -> bool:
        if self._lost or self._closed:
            return True
        # A hang-up shows at once, even behind wake-ups not read yet.
        poller = select.poll()
        poller.register(self._bell, select.POLLIN)
        if any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0)):
            self._lost = True
        return self._lost

    def close(self, *, blame: bool = True) -> None:
        if self._pid != os.getpid() or self._closed:
            return
        lost = self.is_lost()
        self._closed = True
        try:
            if not lost:  # else the key went with the server's session already
                self._line.release_owner(self.id)
        except DatabaseUnavailable:
            pass  # the server is gone or cut off: our key goes with its session
        finally:
            self._bell.close()
        self.backend.reap_owner(self.id, blame=blame)

    def abandon(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._lost = True
        self._bell.close()  # our copy only: the process we were forked from keeps its own


@dataclass
class _Vouched:
    owner_id: int
    pid: int
    parent_pid: int
    bell: socket.socket


class SessionVoucher(Voucher):
    """The server's side; a dialect says how its anchor session takes and frees a key."""

    def __init__(self, backend: Backend, anchor: Owner) -> None:
        self.backend = backend
        self.anchor = anchor
        self._requests, tree_end = _pair()
        self._requests.setblocking(False)
        self.line = SocketVouchLine(backend, tree_end)
        self._vouched: dict[int, _Vouched] = {}  # by the fileno of its doorbell

    def filenos(self) -> list[int]:
        return [self._requests.fileno(), *self._vouched]

    def serve(self, ready: Collection[int]) -> None:
        for fd in [fd for fd in ready if fd in self._vouched]:
            self._unlock(self._vouched.pop(fd))  # hung up: the process is gone
        if self._requests.fileno() in ready:
            self._answer_requests()

    def _answer_requests(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._requests, MAX_MESSAGE, 2)
            except BlockingIOError:
                return
            socks = [socket.socket(fileno=fd) for fd in fds]
            try:
                if data and socks:
                    self._answer(json.loads(data), socks[0], socks[1:])
            finally:
                for sock in socks:
                    if sock.fileno() >= 0 and not self._keeps(sock):
                        sock.close()

    def _keeps(self, sock: socket.socket) -> bool:
        return sock.fileno() in self._vouched and self._vouched[sock.fileno()].bell is sock

    def _answer(
        self, request: dict[str, Any], reply: socket.socket, fds: list[socket.socket]
    ) -> None:
        try:
            if request.get("op") == "register" and fds:
                answer: dict[str, Any] = {"id": self._register(request["info"], fds[0])}
            elif request.get("op") == "bell" and fds:
                self._add_bell(str(request.get("address")), fds[0].dup())
                answer = {"ok": True}
            elif request.get("op") == "release":
                answer = {"ids": self._release(request.get("pid"), request.get("id"))}
            else:
                answer = {"error": f"unknown vouching request {request.get('op')!r}"}
        except _session_errors() as exc:
            answer = {"error": f"the server's database session failed: {exc}".splitlines()[0]}
        try:
            reply.send(json.dumps(answer).encode(), socket.MSG_DONTWAIT)
        except OSError:
            pass  # the requester gave up waiting; a registration is undone by its hang-up

    def _register(self, info: dict[str, Any], bell: socket.socket) -> int:
        if self.anchor.is_lost():
            raise DatabaseUnavailable("its anchor is lost")
        params = self.backend.process_info_params(
            ProcessInfo(
                str(info["host_name"]),
                int(info["process_id"]),
                int(info["parent_process_id"]),
                str(info["path"]),
                str(info["kind"]),
                info.get("extra") or None,
            ),
            utcnow(),
        )
        owner_id = self._register_key(params)
        bell.setblocking(False)
        self._vouched[bell.fileno()] = _Vouched(
            owner_id, int(info["process_id"]), int(info["parent_process_id"]), bell
        )
        return owner_id

    @abstractmethod
    def _register_key(self, params: dict[str, Any]) -> int:
        """On the anchor session, in one transaction: insert the process row (`params`
        of process_register) and take its key; its id."""

    @abstractmethod
    def _free_key(self, owner_id: int) -> None:
        """On the anchor session: free `owner_id`'s key (it is dead from now on)."""

    def _add_bell(self, address: str, sock: socket.socket) -> None:
        """Ring lock bell `address` on `sock` (theirs now) when its ring comes."""
        sock.close()
        raise DatabaseError(f"this database rings lock bells itself, not through {address!r}")

    @abstractmethod
    def _as_anchor(self, owner: Owner) -> Owner:
        """`owner` as an anchor that can vouch (TypeError if it cannot)."""

    def forget_tree(self, pid: int) -> None:
        for fd in [fd for fd, v in self._vouched.items() if pid in (v.pid, v.parent_pid)]:
            self._unlock(self._vouched.pop(fd))

    def _release(self, pid: object, owner_id: object) -> list[int]:
        gone = [
            fd
            for fd, vouched in self._vouched.items()
            if vouched.pid == pid or vouched.owner_id == owner_id
        ]
        released = []
        for fd in gone:
            vouched = self._vouched.pop(fd)
            self._unlock(vouched)
            released.append(vouched.owner_id)
        return released

    def _unlock(self, vouched: _Vouched) -> None:
        vouched.bell.close()
        if self.anchor.is_lost():
            return  # the key went with the session
        try:
            self._free_key(vouched.owner_id)
        except _session_errors():
            pass  # a broken anchor: the key goes with its session

    def forward(self, notes: list[Notification]) -> None:
        payloads = [self.backend.encode_notification(note).encode() for note in notes]
        for vouched in list(self._vouched.values()):
            for payload in payloads:
                try:
                    vouched.bell.send(payload)
                except BlockingIOError:
                    break  # a full doorbell: wake-ups are hints, its owner looks anyway
                except OSError:
                    break  # hung up: serve() unlocks it when it sees the hang-up

    def abandon(self) -> None:
        self._requests.close()
        for vouched in self._vouched.values():
            vouched.bell.close()
        self._vouched.clear()

    def drop_all(self) -> None:
        for vouched in self._vouched.values():
            vouched.bell.close()  # each owner sees the hang-up: lost
        self._vouched.clear()

    def rebind(self, anchor: Owner) -> None:
        self.drop_all()
        self.anchor = self._as_anchor(anchor)
