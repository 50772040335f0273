"""PostgreSQL: the server's anchor session holds the liveness locks of its whole tree
(session_vouching.py says how).

A vouched process's key is `pg_advisory_lock(LOCK_NAMESPACE, its id)` taken by the
server's anchor session, in the transaction that inserts its process row; every probe
(`pg_try_advisory_xact_lock` on that key, e.g. a claim's owner_vouch) is unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .driver import Owner
from .session_vouching import SessionVoucher

if TYPE_CHECKING:
    from .postgres import PostgresBackend, PostgresOwner

# A registration's key, taken in the transaction that inserts its process row. That
# transaction need not wait for the disk: a crash that loses it also ends the session
# holding the key (the process registers again), and whatever the process then does that
# must outlive a crash (a claim) commits synchronously, which flushes it first.
TAKE_KEY = "SELECT pg_advisory_lock(%s, %s), set_config('synchronous_commit', 'off', true)"


class PostgresVoucher(SessionVoucher):
    anchor: PostgresOwner
    backend: PostgresBackend

    def __init__(self, backend: PostgresBackend, anchor: PostgresOwner, namespace: int) -> None:
        super().__init__(backend, anchor)
        self._namespace = namespace

    def _register_key(self, params: dict[str, Any]) -> int:
        conn = self.anchor.anchor
        with conn.transaction():
            row = conn.execute(self.backend.query("process_register"), params).fetchone()
            assert row is not None
            owner_id = int(row["kojo_process_id"])
            conn.execute(TAKE_KEY, (self._namespace, owner_id))
        return owner_id

    def _free_key(self, owner_id: int) -> None:
        self.anchor.anchor.execute("SELECT pg_advisory_unlock(%s, %s)", (self._namespace, owner_id))

    def _as_anchor(self, owner: Owner) -> Owner:
        return self.backend.anchor_of(owner)
