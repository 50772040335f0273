"""MySQL: the server's anchor session holds the named locks of its whole tree and polls
wake-ups for it (session_vouching.py says how the tree reaches it).

A vouched process's key is its usual named lock (`GET_LOCK(<prefix>p<id>, 0)`), taken by
the server's anchor session in the transaction that inserts its process row (a session
may hold many named locks); every probe (IS_USED_LOCK, a claim's owner_vouch) is
unchanged. So a host costs one anchor session and one wake-up poller, whose wake-ups
the server forwards to every process of its tree: the processes below it poll nothing.

The anchor is shared with the poller's thread (mysql_wakeups.py): both take its lock.
The tree's lock bells are registered here too, and rung by that poller (mysql_bells.py).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from ..errors import DatabaseError
from .driver import Owner
from .session_vouching import SessionVoucher

if TYPE_CHECKING:
    from .mysql import MysqlBackend
    from .mysql_wakeups import MysqlOwner


class MysqlVoucher(SessionVoucher):
    anchor: MysqlOwner
    backend: MysqlBackend

    def _register_key(self, params: dict[str, Any]) -> int:
        backend = self.backend
        with self.anchor.anchor_lock:
            conn = self.anchor.anchor
            conn.execute("START TRANSACTION")
            owner_id = None
            try:
                row = backend.fetchall_on(conn, "process_register", params)[0]
                owner_id = int(row["kojo_process_id"])
                lock = {"lock_name": backend.names.owner(owner_id)}
                got = backend.fetchall_on(conn, "owner_lock", lock)
                if not got or got[0]["got"] != 1:
                    raise DatabaseError(f"cannot take the lock of vouched owner {owner_id}")
                conn.execute("COMMIT")
            except BaseException:
                self._undo(owner_id)
                raise
        return owner_id

    def _undo(self, owner_id: int | None) -> None:
        """After a failed registration: no row, no key (a broken session has neither)."""
        conn = self.anchor.anchor
        try:
            conn.execute("ROLLBACK")
            if owner_id is not None:
                lock = {"lock_name": self.backend.names.owner(owner_id)}
                self.backend.fetchall_on(conn, "owner_unlock", lock)
        except Exception:
            pass

    def _free_key(self, owner_id: int) -> None:
        with self.anchor.anchor_lock:
            lock = {"lock_name": self.backend.names.owner(owner_id)}
            self.backend.fetchall_on(self.anchor.anchor, "owner_unlock", lock)

    def _add_bell(self, address: str, sock: socket.socket) -> None:
        self.anchor.bells.add_remote(address, sock)

    def _as_anchor(self, owner: Owner) -> Owner:
        return self.backend.anchor_of(owner)
