"""PostgreSQL's lock bells: a LISTEN channel of its own per waiting thread, on that
thread's connection; the releaser NOTIFYs it inside its transaction (delivered at
commit)."""

from __future__ import annotations

import select
import time
import uuid
from typing import TYPE_CHECKING, Any

from psycopg import sql

from .bells import Bell, Ringer

if TYPE_CHECKING:
    from .base import Backend
    from .driver import Owner


class ChannelRinger(Ringer):
    rings_in_transaction = True

    def bell(self, backend: Backend, owner: Owner | None = None) -> Bell:
        return ChannelBell(backend.connection(), "kojo_w_" + uuid.uuid4().hex)

    def ring_in_transaction(self, backend: Backend, bells: list[str]) -> None:
        for address in bells:
            backend.execute("lock_ring", {"bell": address})


class ChannelBell(Bell):
    """A LISTEN channel on the thread's own connection (idle while it waits)."""

    def __init__(self, conn: Any, channel: str) -> None:
        self.address = channel
        self._conn = conn
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
        self._listening = False  # confirmed by a commit

    def usable(self, backend: Backend, owner: Owner) -> bool:
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
