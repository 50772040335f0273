"""Query connections that notice a transaction pooler they were not told about.

psycopg keeps a statement run five times as a server-side prepared statement, named
per connection. Through a transaction-pooling PgBouncer, the next transaction may run
on another server session: there the name is unknown (26000) or another client's
(42P05). A process told so (KOJO_DATABASE_SESSION_URL set) prepares nothing; a client
that was not (a web app scheduling jobs through the pooler) stops preparing on that
connection at the first such error, says so once, and repeats the statement when it
ran on its own (in a transaction of the caller's, the error stays: the transaction
failed, and the caller's retry finds the connection mended).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from ..logs import get_logger

log = get_logger("postgres")

LOST_PREPARED = (pg_errors.InvalidSqlStatementName, pg_errors.DuplicatePreparedStatement)
# Both say "retry": the statement was not run (see is_unavailable).
LOST_PREPARED_CODES = frozenset({"26000", "42P05"})


class PoolerTolerantConnection(psycopg.Connection[Any]):
    warned = False  # one warning per process, not per connection

    def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool = False,
    ) -> psycopg.Cursor[Any]:
        try:
            return super().execute(query, params, prepare=prepare, binary=binary)
        except LOST_PREPARED:
            if self.prepare_threshold is None:
                raise
            # Failed on its own (autocommit, no BEGIN), the session is idle again; inside a
            # transaction, that transaction is now aborted. (Read after the failure: the
            # statements that do not fail pay nothing.)
            on_its_own = self.info.transaction_status == TransactionStatus.IDLE
            self.prepare_threshold = None
            if not PoolerTolerantConnection.warned:
                PoolerTolerantConnection.warned = True
                log.warning(
                    "A prepared statement was lost between transactions: the database URL "
                    "goes through a transaction pooler. Statements are no longer prepared "
                    "on this connection; set KOJO_DATABASE_SESSION_URL to the database "
                    "itself (docs/scaling.md)."
                )
            if not on_its_own:
                raise
            return super().execute(query, params, prepare=False, binary=binary)
