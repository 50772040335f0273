"""The driver: what kojo needs from a database, and what each dialect implements.

A Driver owns this process's connections (one per thread, opened lazily and
abandoned in a forked child), runs write transactions whose notifications are
delivered after commit, runs the named queries of its dialect (sql/), and
implements the two primitives the rest of kojo is built on:

- an *owner*: a registration of this process whose liveness anyone can probe
  (it dies with the process: a PostgreSQL session advisory lock, or a flock);
- *notifications*: wake-ups delivered to every owner's wait() (NOTIFY, or a
  datagram to each process's doorbell socket).

Everything here is the same for every database but the abstract methods and the
capability flags: sqlite.py and postgres.py implement them, and a third dialect
would too. The stores on top (job_store.py, process_store.py) are dialect-free.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from .. import json_text
from ..clock import utcnow
from ..errors import SchemaMissing, SchemaTooNew
from ..logs import get_logger
from ..sql import SCHEMA_VERSION, queries, schema
from .bells import Ringer
from .errors import is_unavailable
from .later_rows import LaterRows
from .lock_records import Released
from .url_secrets import mask_url
from .vouching import Voucher

NOTIFY_CHANNEL = "kojo"
MESSAGE_TOPIC = "message"  # the wake-up of a published message (ipc.py)
# deadlock_detected, serialization_failure: the database rolled the transaction back, so
# running it again is safe (kojo's claims never wait, but a user's transaction may).
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
TRANSIENT_ATTEMPTS = 5
BOOL_COLUMNS = frozenset(
    {
        "can_work_in_parallel",
        "is_enabled",
        "auto_complete_success",
        "is_paused",
        "dead",
        "awaited",
        "has_children",
        "limited",
    }
)
JSON_COLUMNS = frozenset({"payload", "info", "result"})
TABLES = (
    "kojo_message",
    "kojo_semaphore_waiter",
    "kojo_semaphore_slot",
    "kojo_semaphore",
    "kojo_job_dependency",
    "kojo_job_event",
    "kojo_rate_slot",
    "kojo_job_tally",
    "kojo_job",
    "kojo_process",
    "kojo_job_type",
    "kojo_schema_version",
)

Row = dict[str, Any]
T = TypeVar("T")
log = get_logger("backend")

# Every backend and owner of this process, so that a forked child drops them at once:
# a child (multiprocessing, a worker's own fork) must neither keep its parent's
# registration alive (the flock, the anchor session) nor hold its open transactions.
_BACKENDS: weakref.WeakSet[Driver] = weakref.WeakSet()
_OWNERS: weakref.WeakSet[Owner] = weakref.WeakSet()


def _drop_inherited() -> None:
    for owner in list(_OWNERS):
        try:
            owner.abandon()
        except Exception:
            pass
    for backend in list(_BACKENDS):
        try:
            backend.after_fork()
        except Exception:
            pass


os.register_at_fork(after_in_child=_drop_inherited)


@dataclass(frozen=True)
class Notification:
    """A wake-up: `topic` says what changed ("jobs", "locks", "message", "control")."""

    topic: str
    data: str = ""


@dataclass(frozen=True)
class ProcessInfo:
    """What a process says about itself when it registers as an owner."""

    host_name: str
    process_id: int
    parent_process_id: int
    path: str
    kind: str
    extra: Mapping[str, Any] | None = None


class Owner(ABC):
    """This process's registration: alive exactly as long as the process (or until close())."""

    id: int
    backend: Driver
    # Whether the registration can end while the process lives (a database session can;
    # a flock cannot), so that a busy process must watch it.
    can_be_lost = False

    @abstractmethod
    def fileno(self) -> int:
        """A descriptor that becomes readable when a notification arrives."""

    @abstractmethod
    def wait(self, timeout: float | None) -> list[Notification]:
        """Notifications that arrived, waiting up to `timeout` seconds for the first."""

    @abstractmethod
    def is_lost(self) -> bool:
        """True when the backend can no longer vouch for this owner (anchor dropped)."""

    @abstractmethod
    def close(self, *, blame: bool = True) -> None:
        """Unregister: locks and claims of this owner become free at once (its working
        jobs crashed, counted against them unless `blame` is False)."""

    @abstractmethod
    def abandon(self) -> None:
        """In a forked child: drop the inherited registration without touching the parent's.

        Called for every owner at each os.fork(); must be idempotent."""

    def _watch_forks(self) -> None:
        """Have a forked child abandon this registration (subclasses call it when set up)."""
        _OWNERS.add(self)


class Driver(ABC):
    """A database holding kojo's tables, as seen from one process."""

    dialect: str
    url: str
    # True where concurrent claims can race on the serial-type unique index (PostgreSQL's
    # READ COMMITTED); SQLite's BEGIN IMMEDIATE serialises claims, so they cannot.
    claim_races = False
    # True where job_claim itself claims nothing for an owner without a process row
    # (SQLite: serial writes); else the claim is preceded by a check (_vouch).
    claim_vouches = False
    # True where job_complete_success also adds the jobs it completed to the tally (one
    # statement: PostgreSQL's data-modifying WITH); else job_store tallies them after it.
    completion_tallies = False
    # True where wake-ups reach each listener exactly once, in commit order, and carry
    # small messages (NOTIFY); False where they are hints that may be lost (datagrams), so
    # a subscriber reads the table when woken and every so often (ipc.py).
    wakeups_are_reliable = False

    def __init__(self, url: str) -> None:
        self.url = url
        self._queries = {name: self._prepare(text) for name, text in queries(self.dialect).items()}
        self._local = threading.local()
        self._pid = os.getpid()
        self._graveyard: list[Any] = []
        self._connections: list[Any] = []
        self._connections_lock = threading.Lock()
        _BACKENDS.add(self)

    # -- connections -------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection in autocommit mode."""

    @abstractmethod
    def _prepare(self, text: str) -> str:
        """Turn a query with :name parameters into this driver's parameter style."""

    @abstractmethod
    def _begin(self, conn: Any) -> None: ...

    @abstractmethod
    def abandon_connection(self, conn: Any) -> None:
        """In a forked child: make an inherited connection unusable without closing it."""

    def _convert_params(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        return params

    def _convert_row(self, row: Any) -> Row:
        return dict(row)

    def connection(self) -> Any:
        """This thread's connection, opened on first use (and again after a fork, or once
        the old one broke: a lost connection costs the operation that met it, not all
        later ones)."""
        self._check_fork()
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.depth == 0 and self.is_broken(conn):
            with self._connections_lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            try:
                conn.close()
            except Exception:
                pass
            conn = None
        if conn is None:
            conn = self._connect()
            try:
                # Once per connection, not per call: a newer schema is refused by
                # library calls too, not only by the command line.
                self._refuse_newer(self._schema_version_on(conn))
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
            self._local.depth = 0
            self._local.pending = []
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def is_broken(self, conn: Any) -> bool:
        """Whether a connection can no longer be used (dialects that can tell override)."""
        return False

    def is_unavailable(self, exc: BaseException) -> bool:
        """Whether `exc` means "the database cannot be used now, try again later" (down,
        restarting, a killed session, a full disk, locked past the busy timeout) rather
        than a mistake. See availability.py and errors.py."""
        return is_unavailable(exc)

    def new_connection(self) -> Any:
        """A connection for the caller to own and close (e.g. a user's own transaction)."""
        return self._connect()

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            self.after_fork()

    def after_fork(self) -> None:
        """Forget the parent's connections in a child; they belong to the parent."""
        self._connections_lock = threading.Lock()  # another thread may have held it at fork()
        with self._connections_lock:
            for conn in self._connections:
                self.abandon_connection(conn)
                self._graveyard.append(conn)
            self._connections = []
        self._local = threading.local()
        self._pid = os.getpid()

    def close(self) -> None:
        """Close this process's connections (not the ones a parent handed down)."""
        self._check_fork()
        with self._connections_lock:
            for conn in self._connections:
                try:
                    conn.close()
                except Exception:
                    pass
            self._connections = []
        self._local = threading.local()

    # -- queries and transactions ---------------------------------------------------

    def in_transaction(self) -> bool:
        return getattr(self._local, "depth", 0) > 0

    @contextmanager
    def write(self) -> Iterator[Any]:
        """A write transaction on this thread's connection; nested calls join the outer one.

        Notifications sent inside are delivered after the outermost commit, and
        dropped on rollback.
        """
        conn = self.connection()
        if self._local.depth > 0:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        self._begin(conn)
        self._local.depth = 1
        self._local.pending = []
        try:
            yield conn
        except BaseException:
            self._local.depth = 0
            self._local.pending = []
            try:
                conn.execute("ROLLBACK")
            except Exception:
                pass
            raise
        self._local.depth = 0
        pending, self._local.pending = self._local.pending, []
        conn.execute("COMMIT")
        self._deliver(pending)

    def retrying(self, action: Callable[[], T]) -> T:
        """`action()` in a write transaction, run again (a few times, after a short random
        pause) when the database aborted it as a deadlock victim or a serialization failure.
        Inside an outer transaction it runs once: only the outermost one can be retried."""
        if self.in_transaction():
            with self.write():
                return action()
        for attempt in range(TRANSIENT_ATTEMPTS):
            try:
                with self.write():
                    return action()
            except Exception as exc:
                if getattr(exc, "sqlstate", None) not in TRANSIENT_SQLSTATES:
                    raise
                if attempt == TRANSIENT_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.001, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside write(): a failure in the block undoes only the block (one row of a batch
        that must not stop the rest), then propagates."""
        conn = self.connection()
        conn.execute("SAVEPOINT kojo_row")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO SAVEPOINT kojo_row")
            conn.execute("RELEASE SAVEPOINT kojo_row")
            raise
        conn.execute("RELEASE SAVEPOINT kojo_row")

    def each_row(self, what: str, row_id: object, action: Callable[[], T]) -> T | None:
        """Inside write(): `action()` for one row of a batch; a failure other than the
        database being unavailable is logged with the row's id and skipped (None), so that
        one bad row never stops crash recovery or housekeeping."""
        try:
            with self.savepoint():
                return action()
        except Exception as exc:
            if self.is_unavailable(exc):
                raise
            log.error(
                f"Skipped {what} [{row_id}]: {type(exc).__name__}: {exc}".splitlines()[0],
                extra={"context": {"id": row_id}},
            )
            return None

    def execute(self, name: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a named statement; the number of rows it changed."""
        cur = self._run(self.connection(), name, params or {})
        return int(cur.rowcount)

    def fetchall(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        cur = self._run(self.connection(), name, params or {})
        return [self._convert_row(r) for r in cur.fetchall()]

    def claim_rows(self, params: Mapping[str, Any]) -> LaterRows:
        """job_claim's rows, to be turned into dicts when asked for (SQLite and PostgreSQL:
        after the transaction, see claimed_rows.py; here at once)."""
        return LaterRows.converted(self.fetchall("job_claim", params))

    def fetchall_on(self, conn: Any, name: str, params: Mapping[str, Any]) -> list[Row]:
        """A named query on a connection of the caller's (from new_connection())."""
        cur = self._run(conn, name, params)
        return [self._convert_row(r) for r in cur.fetchall()]

    def _run(self, conn: Any, name: str, params: Mapping[str, Any]) -> Any:
        """Execute named query `name` on `conn`; its cursor."""
        return conn.execute(self._queries[name], self._convert_params(params))

    def update_job_returning(
        self, sql: str, params: Mapping[str, Any], columns: Iterable[str]
    ) -> list[Row]:
        """Run `sql`, an UPDATE of kojo_job by :kojo_job_id; `columns` of the row it
        changed (none or one). Dialects without UPDATE ... RETURNING override it."""
        sql += " RETURNING " + ", ".join(columns)
        cur = self.connection().execute(self._prepare(sql), self._convert_params(params))
        return [self._convert_row(r) for r in cur.fetchall()]  # sqlite3 counts once fetched

    def fetchone(self, name: str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = self.fetchall(name, params)
        return rows[0] if rows else None

    def query(self, name: str) -> str:
        return self._queries[name]

    # -- notifications ------------------------------------------------------------

    def notify(self, topic: str, data: str = "") -> None:
        """Wake every owner's wait(): after commit when inside write(), else at once."""
        note = Notification(topic, data)
        if self.in_transaction():
            self._notify_in_transaction(note)
        else:
            self._deliver([note])

    def _notify_in_transaction(self, note: Notification) -> None:
        """Queue a notification for delivery after commit (dialects may send it now)."""
        self._local.pending.append(note)

    @abstractmethod
    def _deliver(self, notes: list[Notification]) -> None:
        """Send notifications after a commit (or outside any transaction)."""

    @staticmethod
    def encode_notification(note: Notification) -> str:
        return json_text.dumps([note.topic, note.data], "notification")

    @staticmethod
    def decode_notification(text: str | bytes) -> Notification | None:
        try:
            topic, data = json.loads(text)
            return Notification(str(topic), str(data))
        except (ValueError, TypeError):
            return None

    @staticmethod
    def message_wake_data(message_id: int, channel: str) -> str:
        """The data of a "message" wake-up (PostgreSQL builds the same in SQL)."""
        return json_text.dumps({"id": message_id, "channel": channel}, "message wake-up")

    def message_publish(self, channel: str, payload: str, publisher: int | None, now: Any) -> int:
        """Inside write(): store a message (JSON text) and wake the channel's subscribers
        at commit; its id."""
        params = {
            "channel": channel,
            "payload": payload,
            "kojo_process_id": publisher,
            "now": now,
            "notify_channel": NOTIFY_CHANNEL,
        }
        row = self.fetchone("message_publish", params)
        assert row is not None
        message_id = int(row["kojo_message_id"])
        self._message_published(message_id, channel)
        return message_id

    @abstractmethod
    def _message_published(self, message_id: int, channel: str) -> None:
        """After message_publish's statement: wake subscribers, unless it did."""

    # -- locks: the statements that differ by dialect (lock_store.py calls these) ---------

    # The key space of the owners' liveness locks, for queries that probe liveness
    # themselves (0 where the driver probes outside SQL).
    probe_namespace = 0
    # True where lock_release runs in a transaction of its own, in one round trip.
    releases_in_one_round_trip = False

    def lock_take_fast(self, params: Mapping[str, Any]) -> Row | None:
        """Outside a transaction: take a slot in one statement where the dialect can
        (then the row has `slot` and `token`, both None when none was free); None
        where it cannot, and the caller takes the full path."""
        return None

    @abstractmethod
    def lock_take(self, params: Mapping[str, Any]) -> Row | None:
        """Inside write(): take the lowest free slot (`slot`, `token`), deleting the waiter
        row `waiter_id` if any; None when no slot is free."""

    def commit_without_flush(self) -> None:
        """Inside write() that handed out no token: its commit need not wait for the disk
        (a no-op where commits do not wait for it anyway)."""

    @abstractmethod
    def lock_release(self, params: Mapping[str, Any]) -> Released:
        """Free slot `slot` of `name` if `owner` holds it with `token`: inside write(), or
        in a transaction of its own where releases_in_one_round_trip."""

    @abstractmethod
    def ringer(self) -> Ringer:
        """How lock waiters are woken on this database (bells.py)."""

    # -- owners (liveness) ------------------------------------------------------------

    @abstractmethod
    def register_owner(self, info: ProcessInfo, now: datetime | None = None) -> Owner:
        """Register this process; the registration dies with it."""

    def vouch_for_descendants(self, anchor: Owner) -> Voucher | None:
        """A voucher on `anchor` for this process's descendants where an owner costs a
        database session (vouching.py); None where each registers itself."""
        return None

    @abstractmethod
    def owner_is_dead(self, owner_id: int) -> bool:
        """Probe an owner's liveness. Call inside write() to act on the answer atomically."""

    def _owner_forgotten(self, owner_id: int) -> None:
        """Hook: clean up what a reaped owner left outside the database."""

    def process_info_params(self, info: ProcessInfo, now: datetime) -> dict[str, Any]:
        return {
            "host_name": info.host_name,
            "process_id": info.process_id,
            "parent_process_id": info.parent_process_id,
            "path": info.path,
            "kind": info.kind,
            "now": now,
            "info": json_text.dumps(dict(info.extra or {}), "process info"),
        }

    @abstractmethod
    def _guard_reap(self, owner_id: int) -> bool:
        """In the reaping transaction: exclude this owner's claims until commit (False: a
        claim is in flight, try again later)."""

    @abstractmethod
    def _vouch(self, owner_id: int) -> bool:
        """First in a claim's transaction: may `owner_id` still claim? (After any reaping
        of this owner in flight: see _guard_reap.)"""

    @abstractmethod
    def lock_serial_types(self, codes: Iterable[str]) -> None:
        """Before a job of these serial types leaves `working` (inside write()): order it
        after any claim that saw the type busy (see PostgreSQL's job_claim)."""

    @abstractmethod
    def _id_list(self, ids: list[int]) -> Any:
        """A list of ids as the job_complete_success query takes it."""

    @abstractmethod
    def _complete_success(self, params: Mapping[str, Any], count: int) -> tuple[int, list[int]]:
        """Complete the `count` jobs of params["ids"] that `owner` still works (as
        job_complete_success): how many it completed, and the ids of those whose end sets
        something off (job_store._job_finished)."""

    @abstractmethod
    def lock_limit_key(self, type_code: str, concurrency_key: str) -> None:
        """Inside write(): admissions under one type's concurrency limit and key happen one
        at a time (job_store._admit)."""

    @abstractmethod
    def lock_child(self, child_id: int) -> None:
        """Inside write(), before counting a child's remaining parents: two parents ending
        at once must not each see the other's edge (job_store._settle_children)."""

    # -- schema ---------------------------------------------------------------------

    def schema_version(self) -> int:
        """The installed schema version (0: none), a newer one included: read on this
        thread's connection when it has one, else on a connection of its own (opening
        the thread's would refuse a newer schema)."""
        self._check_fork()
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self.is_broken(conn):
            return self._schema_version_on(conn)
        own = self._connect()
        try:
            return self._schema_version_on(own)
        finally:
            own.close()

    def _schema_version_on(self, conn: Any) -> int:
        try:
            rows = self.fetchall_on(conn, "schema_version_get", {})
        except Exception as exc:
            if self._is_missing_table(exc):
                return 0
            raise
        return int(rows[0]["version"]) if rows else 0

    @abstractmethod
    def _is_missing_table(self, exc: Exception) -> bool: ...

    @abstractmethod
    def _run_script(self, script: str) -> None: ...

    def install(self) -> int:
        """Create or upgrade the schema; idempotent. Returns the schema version."""
        # Every server start comes here: an up-to-date schema is one read, no lock and
        # no write (a schema is never downgraded, so what is read stays true).
        if self.check_schema() == SCHEMA_VERSION:
            return SCHEMA_VERSION
        with self._install_lock(), self.write():
            self.execute("schema_version_create")
            current = self.schema_version()
            self._refuse_newer(current)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                self._run_script(schema(self.dialect, version))
                self.execute("schema_version_set", {"version": version, "now": utcnow()})
        return SCHEMA_VERSION

    @contextmanager
    def _install_lock(self) -> Iterator[None]:
        """Serialises concurrent installs (dialects override as needed)."""
        yield

    def uninstall(self) -> None:
        with self.write() as conn:
            for table in TABLES:
                conn.execute(f"DROP TABLE IF EXISTS {table}")  # fixed names only

    def check_schema(self) -> int:
        """The installed schema version (0: none); SchemaTooNew when it is newer than this
        kojo knows. A missing schema is not an error here (`db install` makes it)."""
        version = self.schema_version()
        self._refuse_newer(version)
        return version

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the database's kojo schema is version {version}, newer than this kojo "
                f"knows ({SCHEMA_VERSION}): upgrade kojo"
            )

    def require_schema(self) -> None:
        """SchemaMissing unless this kojo's schema is installed; SchemaTooNew if newer."""
        if self.check_schema() < SCHEMA_VERSION:
            raise SchemaMissing(
                f"kojo's tables are not installed (or are outdated) in {self.safe_url()}: "
                "run `kojo db install`"
            )

    def safe_url(self) -> str:
        """The URL without its password, for messages and logs."""
        return mask_url(self.url)
