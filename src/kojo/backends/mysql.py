"""MySQL / MariaDB: a cluster of hosts sharing one database (PyMySQL).

PyMySQL is pure Python (no C client library to build or match to the server, so
`pip install 'kojo[mysql]'` works wherever Python does), kept by the PyMySQL
organisation, and speaks both MySQL 8 and MariaDB.

As on PostgreSQL, a process registers on a dedicated "anchor" connection: it holds
the session-scoped named lock `GET_LOCK(<prefix>p<id>, 0)`, which the server frees
when the session ends, however the process died. Anyone probes liveness with
IS_USED_LOCK (NULL: dead), never with a timer. Named locks are server-wide and
their names at most 64 characters: each name starts with a prefix made from the
database's name (mysql_names.py). Every transaction runs at READ COMMITTED, and
claims take rows with FOR UPDATE SKIP LOCKED (InnoDB).

There is no LISTEN/NOTIFY: wake-ups are rows of a small table that each anchor's
poller reads a few times a second (mysql_wakeups.py); they are hints, like
SQLite's datagrams (wakeups_are_reliable is False). As on PostgreSQL, a server's
anchor vouches for its whole tree (mysql_vouching.py): it holds their named locks and
forwards its wake-ups to them, so a host has one anchor session and one poller; lock
rings are wake-up rows that poller hands to the waiting threads (mysql_bells.py).

DDL is not transactional on MySQL (each statement commits): the schema scripts are
idempotent (IF NOT EXISTS everywhere), so an install cut short is finished by the
next one, and installs are serialised by a named lock.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql
import pymysql.cursors
from pymysql.constants import CLIENT

from ..clock import as_utc, utcnow
from ..errors import DatabaseError, DatabaseUnavailable
from . import mysql_lanes
from .base import (
    BOOL_COLUMNS,
    JSON_COLUMNS,
    MESSAGE_TOPIC,
    Backend,
    Notification,
    Owner,
    ProcessInfo,
    Row,
)
from .bells import Ringer
from .driver import TABLES
from .errors import DriverErrors, register_driver
from .job_store import skip_param
from .later_rows import LaterRows
from .lock_records import Released, Waiter
from .mysql_bells import MysqlRinger
from .mysql_names import LockNames
from .mysql_version import refusal
from .mysql_vouching import MysqlVoucher
from .mysql_wakeups import MysqlOwner, abandon_socket
from .url_secrets import mask_url, redact
from .vouching import Voucher

DEFAULT_PORT = 3306
# MySQL error numbers that say "not now" rather than "wrong": the server gone or
# unreachable (2003, 2006, 2013, 2055), too many connections (1040), shutting down
# (1053), a killed session or query (1927, 1317), a deadlock or lock wait timeout
# (1213, 1205), a full disk (1021), read-only (1290, 1836).
UNAVAILABLE_ERRNOS = frozenset(
    {2003, 2006, 2013, 2055, 1040, 1053, 1927, 1317, 1213, 1205, 1021, 1290, 1836, 4031}
)
# Error numbers in the SQLSTATE words the stores use (job_store, driver.retrying).
SQLSTATES = {1062: "23505", 1213: "40P01", 1205: "40001"}
MISSING_TABLE = 1146
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
# A query may be several statements (MySQL has no UPDATE ... RETURNING): each ends
# with ";" at the end of a line. Later statements see the first column of the last
# result set as :_ids and the previous statement's row count as :_rowcount.
_STATEMENT_END = re.compile(r";\s*\n")
TEXT_COLUMNS = frozenset({"bell", "data", "topic"})
# A claim that found nothing while another claim held the row of a type with due work
# (SKIP LOCKED) tries again this many times, this many seconds apart, rather than idle
# until its next poll: without it a busy type's jobs went to whichever process won first.
CONTENDED_TRIES = 3
CONTENDED_PAUSE = 0.02
TIME_SUFFIXES = ("date_time",)
# Tables of MySQL's own: wake-ups (mysql_wakeups.py), message order, and kojo_ring, unused
# since lock rings became wake-up rows (mysql_bells.py), until a schema drops it.
MYSQL_TABLES = ("kojo_wakeup", "kojo_ring", "kojo_message_order")


def errno_of(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, pymysql.err.InterfaceError):
        return True  # the connection is closed
    return isinstance(exc, pymysql.Error) and errno_of(exc) in UNAVAILABLE_ERRNOS


def is_missing_table(exc: BaseException) -> bool:
    return isinstance(exc, pymysql.Error) and errno_of(exc) == MISSING_TABLE


register_driver(DriverErrors(pymysql.Error, is_unavailable, is_missing_table))


@lru_cache(maxsize=512)
def to_pyformat(text: str) -> str:
    """`:name` parameters → PyMySQL's `%(name)s`."""
    return _PARAM.sub(r"%(\1)s", text.replace("%", "%%"))


@dataclass(frozen=True)
class MysqlUrl:
    """The parts of `mysql://user:pass@host:port/db` PyMySQL takes."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def parse(cls, url: str) -> MysqlUrl:
        shown = mask_url(url)
        try:
            parts = urlsplit(url)
            port = parts.port or DEFAULT_PORT
        except ValueError as exc:
            raise DatabaseError(f"bad MySQL URL {shown!r}: {exc}") from None
        if parts.scheme.lower() not in ("mysql", "mariadb"):
            raise DatabaseError(f"not a MySQL URL: {shown!r} (expected mysql://user:pass@host/db)")
        database = unquote(parts.path.lstrip("/"))
        if not database or "/" in database:
            raise DatabaseError(
                f"bad MySQL URL {shown!r}: name one database (mysql://user:pass@host/db)"
            )
        if parse_qs(parts.query):
            raise DatabaseError(f"bad MySQL URL {shown!r}: no query parameters are supported")
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            database=database,
        )


def _time(value: Any) -> Any:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) else value


def _convert(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name.endswith(TIME_SUFFIXES) or name == "work_at":
        return _time(value)
    if name in BOOL_COLUMNS:
        return bool(value)
    if name in JSON_COLUMNS and isinstance(value, str | bytes):
        return json.loads(value)
    return value


class MysqlConnection:
    """A PyMySQL connection with the `execute() -> cursor` of the other drivers; its
    errors carry the SQLSTATE words the stores look for (`sqlstate`)."""

    def __init__(self, raw: pymysql.connections.Connection[Any]) -> None:
        self.raw = raw
        self.closed = False

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql, params)
        except pymysql.Error as exc:
            state = SQLSTATES.get(errno_of(exc))
            if state:
                exc.sqlstate = state  # in the words job_store and retrying() look for
            raise
        return cursor

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.raw.close()
        except Exception:
            pass

    def fileno(self) -> int:
        sock = getattr(self.raw, "_sock", None)
        return -1 if sock is None else int(sock.fileno())


if TYPE_CHECKING:
    _PyMysqlConnection = pymysql.connections.Connection[Any]
else:  # generic only in the stubs
    _PyMysqlConnection = pymysql.connections.Connection


class _Connection(_PyMysqlConnection):
    """PyMySQL's connection, but for its TLS context: without TLS options PyMySQL tries
    TLS if the server offers it ("preferred"), and builds a new default context for each
    connection, loading the system's certificates (~170 ms, more than everything else
    an owner's registration costs). That context is the same every time: built once."""

    def _create_ssl_ctx(self, sslp: Any) -> Any:
        build = getattr(pymysql.connections.Connection, "_create_ssl_ctx")  # noqa: B009
        if sslp:
            return build(self, sslp)
        if not _tls_context:
            _tls_context.append(build(self, {}))
        return _tls_context[0]


_tls_context: list[Any] = []  # the one context, once built


def connect(target: MysqlUrl, url: str, *, keepalive: bool = False) -> MysqlConnection:
    """An autocommit connection at READ COMMITTED, with times in UTC."""
    try:
        raw = _Connection(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            database=target.database,
            autocommit=True,
            charset="utf8mb4",
            cursorclass=pymysql.cursors.DictCursor,
            connect_timeout=10,
            # Row counts are rows matched, as on PostgreSQL and SQLite, not rows changed.
            client_flag=CLIENT.FOUND_ROWS,
            init_command="SET time_zone = '+00:00'",
        )
        raw.cursor().execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    except pymysql.Error as exc:
        raise DatabaseUnavailable(
            f"cannot connect to {mask_url(url)}: {redact(str(exc), url)}"
        ) from exc
    refused = refusal(raw.get_server_info())  # type: ignore[no-untyped-call]
    if refused:
        raw.close()
        raise DatabaseError(refused)  # not "unavailable": waiting would not help
    if keepalive:
        _keepalive(raw)
    return MysqlConnection(raw)


def _keepalive(raw: Any) -> None:
    """TCP keepalives on an anchor: a silent network ends its session (see postgres.py)."""
    import socket

    sock = getattr(raw, "_sock", None)
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 25000)


class MysqlBackend(Backend):
    dialect = "mysql"
    # Claims take their types' rows with SKIP LOCKED, so two claims never pick one serial
    # type; the serial index is still there, and a race on it is retried.
    claim_races = True

    def __init__(self, url: str) -> None:
        self.target = MysqlUrl.parse(url)
        self.names = LockNames(self.target.database)
        super().__init__(url)

    # -- connections -------------------------------------------------------------

    def _connect(self) -> MysqlConnection:
        return connect(self.target, self.url)

    def connect_anchor(self) -> MysqlConnection:
        return connect(self.target, self.url, keepalive=True)

    def _prepare(self, text: str) -> str:
        return to_pyformat(text)

    def _begin(self, conn: Any) -> None:
        conn.execute("START TRANSACTION")

    def abandon_connection(self, conn: Any) -> None:
        abandon_socket(conn)

    def is_broken(self, conn: Any) -> bool:
        return bool(conn.closed or getattr(conn.raw, "_sock", None) is None)

    def _convert_params(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        converted = {}
        for key, value in params.items():
            if isinstance(value, datetime):
                value = as_utc(value).replace(tzinfo=None)
            converted[key] = value
        converted["lock_prefix"] = self.names.prefix
        return converted

    def _convert_row(self, row: Any) -> Row:
        return {name: _convert(name, value) for name, value in row.items()}

    def _run(self, conn: Any, name: str, params: Mapping[str, Any]) -> Any:
        return self._run_text(conn, self._queries[name], params)

    def _run_text(
        self, conn: Any, text: str, params: Mapping[str, Any], ids: Sequence[Any] = (None,)
    ) -> Any:
        """Run the statements of `text` (`ids`: :_ids of the first); the last's cursor."""
        statements = _STATEMENT_END.split(text)
        values = dict(self._convert_params(params))
        cursor = None
        ids = list(ids)
        for statement in statements:
            if not statement.strip():
                continue
            values["_ids"] = ids
            values["_rowcount"] = cursor.rowcount if cursor is not None else 0
            cursor = conn.execute(statement, values)
            if cursor.description is not None and len(statements) > 1:
                rows = cursor.fetchall()
                ids = [next(iter(r.values())) for r in rows] or [None]
                cursor = _Replay(rows, cursor.rowcount, cursor.description)
        return cursor

    def update_job_returning(
        self, sql: str, params: Mapping[str, Any], columns: Iterable[str]
    ) -> list[Row]:
        conn = self.connection()
        values = self._convert_params(params)
        if conn.execute(self._prepare(sql), values).rowcount != 1:
            return []
        read = f"SELECT {', '.join(columns)} FROM kojo_job WHERE kojo_job_id = :kojo_job_id"
        return [self._convert_row(r) for r in conn.execute(self._prepare(read), values).fetchall()]

    def _is_missing_table(self, exc: Exception) -> bool:
        return is_missing_table(exc)

    def _run_script(self, script: str) -> None:
        conn = self.connection()
        lines = [ln for ln in script.splitlines() if not ln.lstrip().startswith("--")]
        for statement in "\n".join(lines).split(";"):
            if statement.strip():
                conn.execute(statement)

    @contextmanager
    def _install_lock(self) -> Iterator[None]:
        # DDL commits as it goes: a session lock (not a transaction's) orders installs.
        conn = self.connection()
        got = conn.execute(
            "SELECT GET_LOCK(%(n)s, 60) AS got", {"n": self.names.install}
        ).fetchone()
        if not got or got["got"] != 1:
            raise DatabaseUnavailable(f"another kojo is installing the schema in {self.safe_url()}")
        try:
            yield
        finally:
            conn.execute("SELECT RELEASE_LOCK(%(n)s)", {"n": self.names.install})

    def uninstall(self) -> None:
        with self.write() as conn:
            for table in (*MYSQL_TABLES, *TABLES):
                conn.execute(f"DROP TABLE IF EXISTS {table}")  # fixed names only

    # -- owners -------------------------------------------------------------------------

    def register_owner(self, info: ProcessInfo, now: datetime | None = None) -> Owner:
        return MysqlOwner(self, info, now or utcnow())

    def vouch_for_descendants(self, anchor: Owner) -> Voucher | None:
        return MysqlVoucher(self, self.anchor_of(anchor))

    def anchor_of(self, owner: Owner) -> MysqlOwner:
        """`owner` as the anchor it must be to vouch for others."""
        if not isinstance(owner, MysqlOwner):
            raise TypeError(f"only an anchor can vouch for other processes, not {owner!r}")
        return owner

    def owner_is_dead(self, owner_id: int) -> bool:
        row = self.fetchone("owner_lock_free", {"lock_name": self.names.owner(owner_id)})
        return bool(row and row["dead"])

    # A claim shares its owner's process row until commit (owner_vouch); reaping takes the
    # row with SKIP LOCKED, so an owner with a claim in flight is left for the next pass.

    def _guard_reap(self, owner_id: int) -> bool:
        row = self.fetchone("owner_reap_skip", {"kojo_process_id": owner_id})
        return bool(row and (not row["present"] or row["guarded"]))

    def _vouch(self, owner_id: int) -> bool:
        row = self.fetchone(
            "owner_vouch", {"owner": owner_id, "lock_name": self.names.owner(owner_id)}
        )
        return bool(row and row["vouched"])

    def job_claim(
        self,
        owner_id: int,
        limit: int,
        now: datetime,
        completed: Sequence[Mapping[str, Any]] = (),
        skip: Collection[str] = (),
    ) -> list[Row]:
        """job_claim, tried again a few times when it came back empty only because other
        claims held the rows of the types with due work (claims split types, not jobs).

        Inside a transaction too (the job process claims in retrying()'s), but only when
        it completed nothing: the pauses then hold no job's row, only the shared lock on
        its own process row. A claim that completed jobs and met a held type comes back
        empty at once and says so (claim_contended): its caller commits the completions
        and claims again, instead of idling until its next poll while work is due."""
        self._local.contended = False
        rows = super().job_claim(owner_id, limit, now, completed, skip)
        if rows or not self._claim_contended(now, skip):
            return rows
        if completed and self.in_transaction():
            self._local.contended = True
            return rows
        for _ in range(CONTENDED_TRIES):
            time.sleep(CONTENDED_PAUSE)
            rows = super().job_claim(owner_id, limit, now, (), skip)
            if rows or not self._claim_contended(now, skip):
                break
        return rows

    def claim_rows(self, params: Mapping[str, Any]) -> LaterRows:
        # job_claim's first statement takes the types' rows, its others claim the ids that
        # the lane walk between them chose (mysql_lanes.py).
        conn = self.connection()
        take_types, claim = _STATEMENT_END.split(self._queries["job_claim"], maxsplit=1)
        held = conn.execute(take_types, self._convert_params(params)).fetchall()
        parallel = [row["type_code"] for row in self.fetchall("claim_parallel_types", params)]
        limit, now = int(params["limit"]), params["now"]
        ids = mysql_lanes.chosen_ids(self.fetchall, held, parallel, limit, now)
        if not ids:
            return LaterRows.converted([])
        cursor = self._run_text(conn, claim, params, ids)
        return LaterRows.converted([self._convert_row(r) for r in cursor.fetchall()])

    def claim_contended(self) -> bool:
        return bool(getattr(self._local, "contended", False))

    def _claim_contended(self, now: datetime, skip: Collection[str]) -> bool:
        params = {"now": now, "skip": skip_param(skip)}
        return self.fetchone("job_claim_contended", params) is not None

    def lock_serial_types(self, codes: Iterable[str]) -> None:
        self.fetchall("type_rows_lock", {"codes": json.dumps(sorted(set(codes)))})

    def lock_limit_key(self, type_code: str, concurrency_key: str) -> None:
        self.fetchone("limit_type_lock", {"type_code": type_code})

    def lock_child(self, child_id: int) -> None:
        self.fetchone("child_row_lock", {"child": child_id})

    def _fold(self, before: int) -> int:
        row = self.fetchone("tally_fold_lock", {"before": before})
        self.execute("tally_fold_add_up", {"before": before})
        self.execute("tally_fold_drop", {"before": before})
        return int(row["folds"]) if row else 0

    def _id_list(self, ids: list[int]) -> Any:
        return json.dumps(ids)

    def _complete_success(self, params: Mapping[str, Any], count: int) -> tuple[int, list[int]]:
        params = {**params, "id_list": json.loads(params["ids"])}  # PyMySQL writes (1, 2)
        completed = self.execute("job_complete_success", params)
        flagged = self.fetchall("job_flagged_after_complete", params) if completed else []
        return completed, [int(r["flagged"]) for r in flagged]

    # -- locks -------------------------------------------------------------------------

    def lock_take(self, params: Mapping[str, Any]) -> Row | None:
        row = self.fetchone("lock_slot_take", params)
        if row is not None and row["slot"] is not None:
            if params.get("waiter_id") is not None:
                self.execute("lock_waiter_remove", {"waiter_id": params["waiter_id"]})
            return row
        return None

    def lock_release(self, params: Mapping[str, Any]) -> Released:
        # Liveness (the releaser's, the waiters') is read by the queries (locks.sql).
        row = self.fetchone("lock_release", params)
        assert row is not None
        dead = bool(row["dead"])
        if not row["freed"]:
            return Released(freed=False, dead=dead, rung=False)
        waiters = self.fetchall("lock_waiters_next", params)
        heads = [
            Waiter(int(w["kojo_process_id"]), str(w["bell"]), bool(w["dead"])) for w in waiters
        ]
        return Released(freed=True, dead=dead, rung=False, heads=heads)

    def ringer(self) -> Ringer:
        return MysqlRinger()

    # -- notifications -----------------------------------------------------------------

    def _message_published(self, message_id: int, channel: str) -> None:
        self.notify(MESSAGE_TOPIC, self.message_wake_data(message_id, channel))

    def _notify_in_transaction(self, note: Notification) -> None:
        # A row travels with the transaction: seen at commit, gone on rollback.
        self.execute("wakeup_add", {"topic": note.topic, "data": note.data})

    def _deliver(self, notes: list[Notification]) -> None:
        for note in notes:
            self.execute("wakeup_add", {"topic": note.topic, "data": note.data})


class _Replay:
    """The rows of a statement already read, as a cursor."""

    def __init__(self, rows: list[Any], rowcount: int, description: Any) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.description = description

    def fetchall(self) -> list[Any]:
        return self._rows

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None
