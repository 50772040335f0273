"""PostgreSQL: a cluster of hosts sharing one database (psycopg 3).

A process registers on a dedicated "anchor" connection: it holds a session
advisory lock on the process's own id and LISTENs for wake-ups. The lock is
released by the server when the session ends, however the process died; any
connection can then take it with pg_try_advisory_xact_lock, which is how
liveness is probed. A server's anchor also holds the locks of its whole tree
(postgres_vouching.py), so a host has one. Never route an anchor through a
transaction pooler; query connections keep no session state and may go
through one.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row

from ..clock import as_utc, utcnow
from ..errors import DatabaseError, DatabaseUnavailable
from ..sql import compact
from . import claimed_rows
from .base import NOTIFY_CHANNEL, Backend, Notification, Owner, ProcessInfo, Row
from .bells import Ringer
from .errors import DriverErrors, register_driver
from .later_rows import LaterRows
from .lock_records import Released, Waiter
from .postgres_bells import ChannelRinger
from .postgres_pooler import LOST_PREPARED_CODES, PoolerTolerantConnection
from .postgres_vouching import TAKE_KEY, PostgresVoucher
from .url_secrets import mask_url, redact
from .vouching import Voucher

# Key space of kojo's advisory locks (the first int4 of the two-key form): 'kojo'.
LOCK_NAMESPACE = 0x6B6F6A6F
# Key space of the guard between reaping an owner (exclusive) and its claims (shared): 'kojp'.
REAP_NAMESPACE = 0x6B6F6A70
# Key space of the locks that serialise admissions per type and key (limit_lock): 'kojr'.
LIMIT_NAMESPACE = 0x6B6F6A72
INSTALL_LOCK_KEY = 0
# SQLSTATE classes and codes that say "not now" rather than "wrong": 08 connection
# exception, 53 insufficient resources (disk full, out of memory, too many connections),
# 57P01-57P05 operator intervention (shutdown, terminated session, cannot connect now), 58
# system error (I/O), 25006 read-only transaction (a standby during a failover),
# 40001/40P01 serialization failure and deadlock.
UNAVAILABLE_CLASSES = ("08", "53", "58")
UNAVAILABLE_CODES = frozenset(
    {"57P01", "57P02", "57P03", "57P04", "57P05", "25006", "40001", "40P01"}
)
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
# When the network between a process and the database goes silent, each side gives up on
# the anchor session in its own time: the process within about 25 s (it then stops, its
# registration lost), the server only after about 60 s (its session ends and the lock is
# free: only then can the process's jobs be re-run elsewhere). The process must give up
# first, or a job could run on both sides of the cut.
ANCHOR_KEEPALIVES = (
    "keepalives=1 keepalives_idle=10 keepalives_interval=5 keepalives_count=3 "
    "tcp_user_timeout=25000"
)
# Where anchors connect when query connections go through a transaction pooler (the
# anchor must be a real session on the same database): docs/architecture.md.
SESSION_URL_ENV = "KOJO_DATABASE_SESSION_URL"
# Key space of the lock that checks that an anchor's session reaches the queries' database.
SESSION_CHECK_NAMESPACE = 0x6B6F6A71
ANCHOR_SERVER_OPTIONS = (
    "-c TimeZone=UTC -c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 "
    "-c tcp_keepalives_count=3 -c tcp_user_timeout=60000"
)


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True  # connection lost or refused, server shutting down, disk full...
    code = getattr(exc, "sqlstate", None) or ""
    return (
        code in UNAVAILABLE_CODES or code in LOST_PREPARED_CODES or code[:2] in UNAVAILABLE_CLASSES
    )


def is_missing_table(exc: BaseException) -> bool:
    return isinstance(exc, pg_errors.UndefinedTable)


register_driver(DriverErrors(psycopg.Error, is_unavailable, is_missing_table))


@lru_cache(maxsize=512)
def to_pyformat(text: str) -> str:
    """`:name` parameters → psycopg's `%(name)s`, leaving `::type` casts alone; the
    text compacted (sql.compact: short enough for psycopg's cache of parsed queries)."""
    return _PARAM.sub(r"%(\1)s", compact(text).replace("%", "%%"))


# Queries never kept as server-side prepared statements (see PostgresBackend._run).
PLANNED_EACH_TIME = frozenset({"job_due_count"})

# Set in a claim's transaction, before job_claim: its plan is made once per session and
# kept (planning it took 1-2 ms a claim, as long as running it), from access paths that
# stay cheap at any size. A kept plan is made from the statistics of its moment, often a
# new, empty table when a server starts: then sequential scans look free, and with them
# (or with hash or merge joins) the plan read kojo_job whole on every claim once the
# table had grown. With them off, each step is an index seek (docs/claiming.md,
# "Planning"). JIT off too: the cost of a path turned off is huge enough to compile it.
# PostgreSQL makes a kept plan again after each ANALYZE of the tables it reads.
CLAIM_PLAN_SETTINGS = (
    "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL jit = off; "
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; "
    "SET LOCAL enable_mergejoin = off"
)


def _claimed(
    template: Row, whole: Mapping[int, Row], names: tuple[str, ...], raw: Sequence[Sequence[Any]]
) -> list[Row]:
    """job_claim's rows: its last two columns are rate_seconds and `uncommon`."""
    return claimed_rows.filled(template, whole, names[:-2], raw)


class PostgresBackend(Backend):
    dialect = "postgres"
    claim_races = True
    completion_tallies = True
    wakeups_are_reliable = True
    probe_namespace = LOCK_NAMESPACE
    releases_in_one_round_trip = True

    def __init__(self, url: str, session_url: str | None = None) -> None:
        super().__init__(url)
        self.session_url = session_url or os.environ.get(SESSION_URL_ENV) or url
        # Query connections go through a transaction pooler when anchors connect elsewhere.
        self.pooled = self.session_url != url
        self._job_columns: tuple[str, ...] | None = None  # kojo_job's, for claim_rows

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return PoolerTolerantConnection.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                # JIT compiling costs ~1 s, and the claim's walk has estimates (of its
                # recursive CTE) big enough to trigger it for a query that takes 1 ms.
                options="-c TimeZone=UTC -c jit=off",
                connect_timeout=10,
                # Through a transaction pooler (anchors connect elsewhere), no server-side
                # prepared statements: the next transaction may run on another session.
                # Directly, they save ~15% of a one-job claim (docs/architecture.md).
                prepare_threshold=None if self.pooled else 5,
            )
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                f"cannot connect to {self.safe_url()}: {redact(_first_line(exc), self.url)}"
            ) from exc

    def _prepare(self, text: str) -> str:
        return to_pyformat(text)

    def _run(self, conn: Any, name: str, params: Mapping[str, Any]) -> Any:
        # job_due_count runs seldom (a pool deciding to grow): planned with its values.
        prepare = False if name in PLANNED_EACH_TIME else None
        return conn.execute(self._queries[name], self._convert_params(params), prepare=prepare)

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN")

    def claim_rows(self, params: Mapping[str, Any]) -> LaterRows:
        # Tuples, made into dicts by claimed_rows.filled (a dict per row here, then one
        # without rate_seconds, cost more than the rest of a claimed job's rows).
        conn = self.connection()
        cursor = conn.cursor(row_factory=tuple_row)
        if conn.prepare_threshold is not None:  # a plan kept: made as CLAIM_PLAN_SETTINGS say
            cursor.execute(CLAIM_PLAN_SETTINGS)
        cursor.execute(self._queries["job_claim"], self._convert_params(params))
        raw = cursor.fetchall()
        names = tuple(column.name for column in cursor.description or ())
        whole: dict[int, Row] = {}
        uncommon = [values[0] for values in raw if values[-1]]
        if uncommon:
            again = self.fetchall("jobs_get", {"ids": self._id_list(uncommon)})
            whole = {int(row["kojo_job_id"]): row for row in again}
        if self._job_columns is None:
            table = self.connection().execute("SELECT * FROM kojo_job LIMIT 0")
            columns = [column.name for column in table.description or ()]
            self._job_columns = claimed_rows.checked(columns, names)
        template = claimed_rows.template(self._job_columns, as_utc(params["now"]), params["owner"])
        return LaterRows(names, raw, functools.partial(_claimed, template, whole))

    def _rate_limited(self, claimed: LaterRows) -> list[tuple[Row, float]]:
        periods = claimed.column("rate_seconds")  # 0: not rate-limited
        if not any(periods):
            return []
        rows = claimed.rows()
        return [
            (row, float(seconds)) for row, seconds in zip(rows, periods, strict=True) if seconds
        ]

    def abandon_connection(self, conn: Any) -> None:
        abandon_socket(conn)

    def is_broken(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    def _id_list(self, ids: list[int]) -> Any:
        return ids

    def _complete_success(self, params: Mapping[str, Any], count: int) -> tuple[int, list[int]]:
        row = self.fetchone("job_complete_success", params)  # the count, the flagged ids
        assert row is not None
        return int(row["completed"]), [int(i) for i in row["flagged"] or ()]

    def _fold(self, before: int) -> int:
        return self.execute("tally_fold_move", {"before": before})  # moves and adds at once

    def _is_missing_table(self, exc: Exception) -> bool:
        return is_missing_table(exc)

    def _run_script(self, script: str) -> None:
        self.connection().execute(script)

    @contextmanager
    def _install_lock(self) -> Iterator[None]:
        # Taken first in install()'s transaction and held to its commit: no session lock,
        # so the query connection may go through a transaction pooler.
        with self.write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, INSTALL_LOCK_KEY))
            yield

    # -- owners -------------------------------------------------------------------------

    def register_owner(self, info: ProcessInfo, now: datetime | None = None) -> Owner:
        return PostgresOwner(self, info, now or utcnow())

    def vouch_for_descendants(self, anchor: Owner) -> Voucher | None:
        return PostgresVoucher(self, self.anchor_of(anchor), LOCK_NAMESPACE)

    def anchor_of(self, owner: Owner) -> PostgresOwner:
        """`owner` as the anchor it must be to vouch for others."""
        if not isinstance(owner, PostgresOwner):
            raise TypeError(f"only an anchor can vouch for other processes, not {owner!r}")
        return owner

    def owner_is_dead(self, owner_id: int) -> bool:
        row = self.fetchone(
            "owner_probe", {"namespace": LOCK_NAMESPACE, "kojo_process_id": owner_id}
        )
        return bool(row and row["dead"])

    # A claim commits on the work connection, not the anchor: it can reach the server after
    # the anchor's session ended. The guard orders each claim against the reaping of its
    # owner, and the claim's first check (owner_vouch, after the guard) then sees the
    # reaping's outcome and its own anchor's liveness.

    def _guard_reap(self, owner_id: int) -> bool:
        row = self.fetchone(
            "owner_reap_guard", {"reap_namespace": REAP_NAMESPACE, "kojo_process_id": owner_id}
        )
        return bool(row and row["guarded"])

    def _vouch(self, owner_id: int) -> bool:
        # Two statements (the second's snapshot must follow the guard's wait), one round
        # trip: pipelined.
        conn = self.connection()
        guard = {"reap_namespace": REAP_NAMESPACE, "owner": owner_id}
        vouch = {"namespace": LOCK_NAMESPACE, "owner": owner_id}
        with conn.pipeline():
            conn.execute(self.query("owner_claim_guard"), guard)
            cursor = conn.execute(self.query("owner_vouch"), vouch)
        row = cursor.fetchone()
        return bool(row and row["vouched"])

    def lock_serial_types(self, codes: Iterable[str]) -> None:
        self.fetchall("job_type_lock", {"codes": sorted(set(codes))})

    def lock_limit_key(self, type_code: str, concurrency_key: str) -> None:
        self.fetchone(
            "limit_lock",
            {
                "namespace": LIMIT_NAMESPACE,
                "type_code": type_code,
                "concurrency_key": concurrency_key,
            },
        )

    def lock_child(self, child_id: int) -> None:
        self.fetchone("job_child_lock", {"child": child_id})

    # -- locks -------------------------------------------------------------------------

    def lock_take_fast(self, params: Mapping[str, Any]) -> Row | None:
        return self.fetchone("lock_take_fast", params)

    def lock_take(self, params: Mapping[str, Any]) -> Row | None:
        return self.fetchone("lock_slot_take", params)  # deletes the waiter row itself

    def commit_without_flush(self) -> None:
        self.fetchone("lock_commit_async")

    def lock_release(self, params: Mapping[str, Any]) -> Released:
        # The release statement rings the first live waiter itself, and reports the
        # waiters it saw dead.
        rows = self._release_rows(params)
        heads = [
            Waiter(int(r["kojo_process_id"]), str(r["bell"]), bool(r["waiter_dead"]))
            for r in rows
            if r["kojo_process_id"] is not None
        ]
        for waiter in heads:
            if waiter.dead:  # died waiting: its row would be looked at again and again
                self.free_dead_owner_locks(waiter.owner_id)
        first = rows[0]
        rung = any(r["rung"] for r in rows)
        return Released(bool(first["freed"]), bool(first["dead"]), rung, heads)

    def _release_rows(self, params: Mapping[str, Any]) -> list[Row]:
        """The lock that orders the release after a waiter's registration in flight, then
        the release; pipelined into one round trip, with its own BEGIN and COMMIT, unless
        the caller's transaction is open."""
        if self.in_transaction():
            self.fetchone("lock_semaphore_share", params)
            return self.fetchall("lock_release", params)
        conn = self.connection()
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                conn.execute(self.query("lock_semaphore_share"), params)
                cursor = conn.execute(self.query("lock_release"), params)
                conn.execute("COMMIT")
        except BaseException:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise
        return [dict(row) for row in cursor.fetchall()]

    def ringer(self) -> Ringer:
        return ChannelRinger()

    # -- notifications -----------------------------------------------------------------

    def _message_published(self, message_id: int, channel: str) -> None:
        pass  # message_publish sent the NOTIFY itself (its id and channel)

    def _notify_in_transaction(self, note: Notification) -> None:
        # NOTIFY travels with the transaction: delivered at commit, dropped on rollback.
        self.connection().execute(
            "SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, self.encode_notification(note))
        )

    def _deliver(self, notes: list[Notification]) -> None:
        for note in notes:
            self.connection().execute(
                "SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, self.encode_notification(note))
            )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def abandon_socket(conn: Any) -> None:
    """Make a connection inherited through fork() unusable here without ending the session.

    Closing it would send a Terminate message on the parent's socket. Instead
    the descriptor is replaced by /dev/null, so the child no longer holds the
    socket (the session still dies with the parent) and nothing can write to it.
    """
    try:
        fd = conn.pgconn.socket
    except Exception:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class PostgresOwner(Owner):
    """The anchor connection: a session advisory lock on our id, and LISTEN."""

    can_be_lost = True
    backend: PostgresBackend

    def __init__(self, backend: PostgresBackend, info: ProcessInfo, now: datetime) -> None:
        self.backend = backend
        self._pid = os.getpid()
        self._lost = False
        self._abandoned = False
        try:
            self.anchor: psycopg.Connection[Any] = psycopg.connect(
                conninfo=make_conninfo(
                    backend.session_url, options=ANCHOR_SERVER_OPTIONS, connect_timeout=10
                )
                + " "
                + ANCHOR_KEEPALIVES,
                autocommit=True,
                row_factory=dict_row,
            )
        except psycopg.Error as exc:
            url = backend.session_url
            raise DatabaseUnavailable(
                f"cannot connect to {mask_url(url)}: {redact(_first_line(exc), url)}"
            ) from exc
        if backend.pooled:
            self._check_same_database()
        params = backend.process_info_params(info, now)
        with self.anchor.transaction():
            row = self.anchor.execute(backend.query("process_register"), params).fetchone()
            assert row is not None
            self.id = int(row["kojo_process_id"])
            self.anchor.execute(TAKE_KEY, (LOCK_NAMESPACE, self.id))
        self.anchor.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self._watch_forks()

    def _check_same_database(self) -> None:
        """Anchors and queries must reach one database (advisory locks are per database),
        or liveness would be probed where no lock is held."""
        key = (SESSION_CHECK_NAMESPACE, self._pid)
        self.anchor.execute("SELECT pg_advisory_lock(%s, %s)", key)
        try:
            row = (
                self.backend.connection()
                .execute("SELECT pg_try_advisory_xact_lock(%s, %s) AS free", key)
                .fetchone()
            )
        finally:
            self.anchor.execute("SELECT pg_advisory_unlock(%s, %s)", key)
        if row is not None and row["free"]:
            self.anchor.close()
            raise DatabaseError(
                f"{SESSION_URL_ENV} ({mask_url(self.backend.session_url)}) and the database "
                f"URL ({self.backend.safe_url()}) do not reach the same database"
            )

    def fileno(self) -> int:
        return int(self.anchor.pgconn.socket)

    def wait(self, timeout: float | None) -> list[Notification]:
        notes: list[Notification] = []
        try:
            for notify in self.anchor.notifies(timeout=timeout, stop_after=1):
                self._collect(notify.payload, notes)
            if notes:
                for notify in self.anchor.notifies(timeout=0.0):
                    self._collect(notify.payload, notes)
        except psycopg.Error:
            self._lost = True
            raise
        return notes

    def _collect(self, payload: str, notes: list[Notification]) -> None:
        note = self.backend.decode_notification(payload)
        if note is not None:
            notes.append(note)

    def is_lost(self) -> bool:
        if self._lost or self.anchor.closed or self.anchor.broken:
            return True
        return self.anchor.pgconn.status != psycopg.pq.ConnStatus.OK

    def close(self, *, blame: bool = True) -> None:
        if self._pid != os.getpid() or self.anchor.closed:
            return
        try:
            # The server ends a closed session (and drops its locks) asynchronously: unlock
            # first, so the reap below already sees this owner dead.
            self.anchor.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, self.id))
        except psycopg.Error:
            pass  # a broken anchor: its session, and the lock with it, is gone or going
        try:
            self.anchor.close()
        finally:
            self.backend.reap_owner(self.id, blame=blame)

    def abandon(self) -> None:
        if self._abandoned or self.anchor.closed:
            return  # abandoned or closed already: its descriptor may be another file's now
        self._abandoned = True
        abandon_socket(self.anchor)
        self._lost = True
        self.backend._graveyard.append(self.anchor)
