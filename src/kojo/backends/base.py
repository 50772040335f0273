"""What every storage backend does, in the domain's words.

A Backend owns this process's connections (one per thread, opened lazily and
abandoned in a forked child), runs the named queries of its dialect, and
implements the two primitives the rest of kojo is built on:

- an *owner*: a registration of this process whose liveness anyone can probe
  (it dies with the process: a PostgreSQL session advisory lock, or a flock);
- *notifications*: wake-ups delivered to every owner's wait() (NOTIFY, or a
  datagram to each process's doorbell socket).
"""

from __future__ import annotations

import functools
import json
import os
import random
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from .. import states
from ..clock import as_utc, utcnow
from ..durations import parse_duration
from ..errors import (
    DatabaseError,
    DatabaseUnavailable,
    InvalidTransition,
    JobNotFound,
    OwnerLost,
    SchemaMissing,
)
from ..job_types import JobType
from ..logs import get_logger
from ..sql import SCHEMA_VERSION, queries, schema
from .availability import UNAVAILABLE_ERRNOS

NOTIFY_CHANNEL = "kojo"
UNIQUE_VIOLATION = "23505"  # SQLSTATE
# deadlock_detected, serialization_failure: the database rolled the transaction back, so
# running it again is safe (kojo's claims never wait, but a user's transaction may).
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
TRANSIENT_ATTEMPTS = 5
# Each failed attempt means another claimer committed a serial job meanwhile.
CLAIM_ATTEMPTS = 20
BOOL_COLUMNS = frozenset(
    {"can_work_in_parallel", "is_enabled", "auto_complete_success", "is_paused", "dead"}
)
JSON_COLUMNS = frozenset({"payload", "info"})
# The only column names a transition may write (plan() output is checked against it).
WRITABLE_JOB_COLUMNS = frozenset(
    {
        "assigned_state",
        "next_state_request",
        "previous_state",
        "last_transition_date_time",
        "times_worked",
        "times_retried",
        "times_held",
        "times_crashed",
        "times_panicked",
        "priority",
        "completed_at_date_time",
        "delete_after_date_time",
        "work_at_date_time",
        "kojo_process_id",
        "last_error",
    }
)
TABLES = (
    "kojo_message",
    "kojo_semaphore_waiter",
    "kojo_semaphore_slot",
    "kojo_semaphore",
    "kojo_job",
    "kojo_process",
    "kojo_job_type",
    "kojo_schema_version",
)

Row = dict[str, Any]
T = TypeVar("T")
log = get_logger("backend")
_LOST = "owner {} is no longer registered: its process was reaped or its database session ended"

# Every backend and owner of this process, so that a forked child drops them at once:
# a child (multiprocessing, a worker's own fork) must neither keep its parent's
# registration alive (the flock, the anchor session) nor hold its open transactions.
_BACKENDS: weakref.WeakSet[Backend] = weakref.WeakSet()
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
    backend: Backend
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


class Backend(ABC):
    """A database holding kojo's tables, as seen from one process."""

    dialect: str
    url: str
    # True where concurrent claims can race on the serial-type unique index (PostgreSQL's
    # READ COMMITTED); SQLite's BEGIN IMMEDIATE serialises claims, so they cannot.
    claim_races = False
    # True where job_claim itself claims nothing for an owner without a process row
    # (SQLite: serial writes); else the claim is preceded by a check (_vouch).
    claim_vouches = False

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
    def _abandon_connection(self, conn: Any) -> None:
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
        if conn is not None and self._local.depth == 0 and self._is_broken(conn):
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
            self._local.conn = conn
            self._local.depth = 0
            self._local.pending = []
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _is_broken(self, conn: Any) -> bool:
        """Whether a connection can no longer be used (dialects that can tell override)."""
        return False

    def is_unavailable(self, exc: BaseException) -> bool:
        """Whether `exc` means "the database cannot be used now, try again later" (down,
        restarting, a killed session, a full disk, locked past the busy timeout) rather
        than a mistake. See availability.py."""
        if isinstance(exc, DatabaseUnavailable):
            return True
        if isinstance(exc, DatabaseError) and exc.__cause__ is not None:
            return self.is_unavailable(exc.__cause__)  # a driver error wrapped at the API
        if isinstance(exc, OSError):
            return exc.errno in UNAVAILABLE_ERRNOS
        return self._driver_unavailable(exc)

    def _driver_unavailable(self, exc: BaseException) -> bool:
        return False

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
                self._abandon_connection(conn)
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
        cur = self.connection().execute(self._queries[name], self._convert_params(params or {}))
        return int(cur.rowcount)

    def fetchall(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        cur = self.connection().execute(self._queries[name], self._convert_params(params or {}))
        return [self._convert_row(r) for r in cur.fetchall()]

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
        return json.dumps([note.topic, note.data], separators=(",", ":"))

    @staticmethod
    def decode_notification(text: str | bytes) -> Notification | None:
        try:
            topic, data = json.loads(text)
            return Notification(str(topic), str(data))
        except (ValueError, TypeError):
            return None

    # -- owners (liveness) ------------------------------------------------------------

    @abstractmethod
    def register_owner(self, info: ProcessInfo, now: datetime | None = None) -> Owner:
        """Register this process; the registration dies with it."""

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
            "info": json.dumps(dict(info.extra or {})),
        }

    def reap_owner(self, owner_id: int, now: datetime | None = None, *, blame: bool = True) -> bool:
        """If `owner_id` is dead: forget it, crash its working jobs, free its locks.

        Returns True when the owner was dead and has been reaped. The process row is
        deleted first, in a transaction that excludes this owner's claims
        (`_guard_reap`): a claim checks that row under the same guard, so once it is
        gone no claim of this owner can commit, and the working jobs read next are
        all it will ever have.

        `blame`: count the crash against each job (times_crashed + 1, priority - 1, and
        panicked at max_crashes). Only a death that may be the job's doing is blamed: its
        process died while its root watched (docs/guarantees.md); a re-run caused by an
        outage, a lost registration or the loss of kojo's own processes is not.
        """
        now = now or utcnow()
        if not self.retrying(lambda: self._reap(owner_id, now, blame)):
            return False
        self._owner_forgotten(owner_id)
        return True

    def _reap(self, owner_id: int, now: datetime, blame: bool) -> bool:
        if not self._guard_reap(owner_id) or not self.owner_is_dead(owner_id):
            return False
        self.execute("process_delete", {"kojo_process_id": owner_id})
        for job in self.fetchall("process_working_jobs", {"kojo_process_id": owner_id}):
            crash = functools.partial(self._crash, job, now, blame, owner_id)
            self.each_row(f"crash of dead owner {owner_id}'s job", job["kojo_job_id"], crash)
        freed_slots = self.execute("process_release_slots", {"kojo_process_id": owner_id})
        self.execute("process_delete_waiters", {"kojo_process_id": owner_id})
        self.notify("jobs")
        if freed_slots:
            self.notify("locks")
        return True

    def _crash(self, job: Row, now: datetime, blame: bool, owner_id: int) -> bool:
        return self._apply(job, self._crash_changes(job, now, blame), owner=owner_id)

    @staticmethod
    def _crash_changes(job: Mapping[str, Any], now: datetime, blame: bool) -> dict[str, Any]:
        auto_delete = parse_duration(job["auto_delete_interval_duration"])
        if not blame:
            changes = states.plan(states.CRASH, job, now=now, auto_delete_interval=auto_delete)
            changes["times_crashed"] = job["times_crashed"]
            changes["priority"] = job["priority"]
            changes["last_error"] = (
                "re-run: its process stopped for a reason not counted against the job "
                "(lost database registration, or kojo's own process tree went away)"
            )
            return changes
        crashes_after = int(job["times_crashed"]) + 1
        transition = states.CRASH if crashes_after < int(job["max_crashes"]) else states.PANIC
        changes = states.plan(transition, job, now=now, auto_delete_interval=auto_delete)
        if transition is states.PANIC:
            # The process died: that is a crash too, even when it ends the job.
            changes["times_crashed"] = crashes_after
            changes["last_error"] = (
                f"crashed {crashes_after} times (max_crashes={job['max_crashes']})"
            )
        return changes

    def free_dead_owner_locks(self, owner_id: int) -> bool:
        """If `owner_id` is dead: free its lock slots and drop its waiter rows now (its
        process row and jobs are left to whoever reaps it, who knows how it died)."""

        def free() -> bool:
            if not self.owner_is_dead(owner_id):
                return False
            if self.execute("process_release_slots", {"kojo_process_id": owner_id}):
                self.notify("locks")
            self.execute("process_delete_waiters", {"kojo_process_id": owner_id})
            return True

        return self.retrying(free)

    def _guard_reap(self, owner_id: int) -> bool:
        """In the reaping transaction: exclude this owner's claims until commit (False: a
        claim is in flight, try again later). SQLite's writes are serial already."""
        return True

    def _vouch(self, owner_id: int) -> bool:
        """First in a claim's transaction: may `owner_id` still claim? (PostgreSQL first
        waits out any reaping of this owner: see its override.)"""
        row = self.fetchone("owner_vouch", {"owner": owner_id})
        return bool(row and row["vouched"])

    def lock_serial_types(self, codes: Iterable[str]) -> None:
        """Before a job of these serial types leaves `working` (inside write()): see the
        PostgreSQL job_claim. SQLite's writes are serial, so there is nothing to order."""

    def reap_dead_owners(self, now: datetime | None = None) -> list[int]:
        """Reap every registered process that has died (but those a live root will reap),
        and every owner that working jobs or lock slots still name without a process
        row; their ids. Nothing reaped here is blamed on its jobs."""
        reaped = [int(row["kojo_process_id"]) for row in self._reap_dead(now)[1]]
        return reaped + self.reap_orphans(now)

    def reap_orphans(self, now: datetime | None = None) -> list[int]:
        """Reap the dead owners that jobs or slots name but kojo_process no longer lists."""
        orphans = [int(row["kojo_process_id"]) for row in self.fetchall("orphan_owners")]
        return [owner for owner in orphans if self.reap_owner(owner, now, blame=False)]

    def _reap_dead(self, now: datetime | None = None) -> tuple[list[Row], list[Row]]:
        """(live, reaped) process rows. Each owner is probed outside any transaction
        first, so a pass over live processes writes nothing (and, on SQLite, takes no
        write lock); only the dead are reaped, re-probed inside the reaping transaction.

        A dead job process or maintainer whose root lives is left to that root: it saw
        how its child died, and only it can tell a crash from a lost registration."""
        rows = self.fetchall("process_list")
        dead = {int(r["kojo_process_id"]) for r in rows if self.owner_is_dead(r["kojo_process_id"])}
        live_roots = {
            (r["host_name"], int(r["process_id"]))
            for r in rows
            if r["kind"] == "root" and int(r["kojo_process_id"]) not in dead
        }
        alive, reaped = [], []
        for row in rows:
            owner_id = int(row["kojo_process_id"])
            if owner_id not in dead:
                alive.append(row)
            elif row["kind"] in ("job", "maintainer") and (
                (row["host_name"], int(row["parent_process_id"])) in live_roots
            ):
                continue
            elif self.reap_owner(owner_id, now, blame=False):
                reaped.append(row)
            else:
                alive.append(row)
        return alive, reaped

    def owners_of_process(self, host_name: str, pid: int) -> list[int]:
        """Every registration (live or not yet reaped) of process `pid` on `host_name`."""
        rows = self.fetchall("process_find", {"host_name": host_name, "process_id": pid})
        return [int(row["kojo_process_id"]) for row in rows]

    def processes(self) -> list[Row]:
        """Registered processes that are alive (dead ones are reaped on the way)."""
        return self._reap_dead()[0]

    # -- schema ---------------------------------------------------------------------

    def schema_version(self) -> int:
        try:
            row = self.fetchone("schema_version_get")
        except Exception as exc:
            if self._is_missing_table(exc):
                return 0
            raise
        return int(row["version"]) if row else 0

    @abstractmethod
    def _is_missing_table(self, exc: Exception) -> bool: ...

    @abstractmethod
    def _run_script(self, script: str) -> None: ...

    def install(self) -> int:
        """Create or upgrade the schema; idempotent. Returns the schema version."""
        with self._install_lock(), self.write():
            self.execute("schema_version_create")
            current = self.schema_version()
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

    def require_schema(self) -> None:
        if self.schema_version() < SCHEMA_VERSION:
            raise SchemaMissing(
                f"kojo's tables are not installed (or are outdated) in {self.safe_url()}: "
                "run `kojo db install`"
            )

    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return self.url

    # -- job types ----------------------------------------------------------------------

    def type_register(self, job_type: JobType, now: datetime | None = None) -> None:
        params = job_type.columns()
        params["now"] = now or utcnow()
        with self.write():
            self.execute("type_upsert", params)

    def type_list(self) -> list[Row]:
        return self.fetchall("type_list")

    def type_get(self, code: str) -> Row | None:
        return self.fetchone("type_get", {"type_code": code})

    def type_set_flag(self, code: str, flag_query: str, value: bool) -> bool:
        with self.write():
            rows = self.fetchall(flag_query, {"type_code": code, "flag": value, "now": utcnow()})
            if rows and flag_query == "type_set_paused" and not value:
                self.notify("jobs")
        return bool(rows)

    # -- jobs ---------------------------------------------------------------------------

    def job_insert_batch(
        self,
        type_code: str,
        payloads: Sequence[str | None],
        *,
        work_at: datetime,
        importance: int | None,
        now: datetime,
    ) -> list[int]:
        """Insert one job per JSON payload text in one statement (inside write()); their ids
        in payload order, or [] if the type is missing or disabled."""
        rows = self.fetchall(
            "job_insert_batch",
            {
                "type_code": type_code,
                "payloads": json.dumps(list(payloads)),
                "work_at": as_utc(work_at),
                "importance": importance,
                "now": now,
            },
        )
        return sorted(int(r["kojo_job_id"]) for r in rows)  # ids are handed out in row order

    def job_get(self, job_id: int) -> Row | None:
        return self.fetchone("job_get", {"kojo_job_id": job_id})

    def job_get_with_type(self, job_id: int) -> Row | None:
        return self.fetchone("job_get_with_type", {"kojo_job_id": job_id})

    def job_list(
        self, type_code: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[Row]:
        return self.fetchall("job_list", {"type_code": type_code, "state": state, "limit": limit})

    def job_next_work_at(self, now: datetime) -> datetime | None:
        """When the next job that is not yet due becomes due."""
        row = self.fetchone("job_next_work_at", {"now": now})
        value: datetime | None = row["work_at"] if row else None
        return value

    def job_claim(
        self,
        owner_id: int,
        limit: int,
        now: datetime,
        completed: Sequence[Mapping[str, Any]] = (),
    ) -> list[Row]:
        """Complete `completed` (auto-completions, as job_complete_many) and claim up to
        `limit` runnable jobs for `owner_id`, in one transaction; the claimed rows in
        selection order.

        A non-parallel type contributes at most one job, and none while one of its jobs
        is working anywhere. Raises OwnerLost, having changed nothing, when `owner_id` was
        reaped or (PostgreSQL) its anchor session is gone: the process must stop, since
        the cluster already treats it as dead.
        """
        with self.write():
            # Where the claim statement checks its owner itself (writes are serial), only
            # an empty claim needs asking why.
            if not self.claim_vouches and not self._vouch(owner_id):
                raise OwnerLost(_LOST.format(owner_id))
            if completed:
                self.job_complete_many(completed, owner_id, now)
            params = {"owner": owner_id, "limit": limit, "now": now}
            if not self.claim_races:
                rows = self.fetchall("job_claim", params)
            else:
                rows = self._claim_retrying(params)
            if not rows and self.claim_vouches and not self._vouch(owner_id):
                raise OwnerLost(_LOST.format(owner_id))
        rows.sort(key=lambda r: (-r["priority"], r["work_at_date_time"], r["kojo_job_id"]))
        return rows

    def _claim_retrying(self, params: Mapping[str, Any]) -> list[Row]:
        """The claim statement, retried when it loses a race on a serial type.

        Two concurrent claims can each see a serial type idle and pick different
        jobs of it; the unique index kojo_job_serial_working makes the later one
        fail once the earlier commits. A savepoint keeps the caller's
        transaction usable, and the retry's fresh snapshot sees the type busy.
        """
        with self.write() as conn:
            for attempt in range(CLAIM_ATTEMPTS):
                conn.execute("SAVEPOINT kojo_claim")
                try:
                    rows = self.fetchall("job_claim", params)
                except Exception as exc:
                    conn.execute("ROLLBACK TO SAVEPOINT kojo_claim")
                    if getattr(exc, "sqlstate", None) != UNIQUE_VIOLATION:
                        raise
                    if attempt == CLAIM_ATTEMPTS - 1:
                        raise
                    continue
                conn.execute("RELEASE SAVEPOINT kojo_claim")
                return rows
        raise AssertionError("unreachable")

    def _apply(self, row: Mapping[str, Any], changes: Mapping[str, Any], owner: int | None) -> bool:
        """Compare-and-set `changes` onto the job if it is still in `row`'s state (and claim)."""
        bad = set(changes) - WRITABLE_JOB_COLUMNS
        if bad:
            raise ValueError(f"not a writable job column: {sorted(bad)}")
        columns = sorted(changes)
        assignments = ", ".join(f"{c} = :{c}" for c in columns)
        sql = (
            f"UPDATE kojo_job SET {assignments} WHERE kojo_job_id = :kojo_job_id "
            "AND assigned_state = :expect_assigned AND next_state_request = :expect_request"
        )
        if row["assigned_state"] == states.State.WORKING.value and not row.get(
            "can_work_in_parallel", False
        ):
            self.lock_serial_types([row["type_code"]])
        params = dict(changes)
        params["kojo_job_id"] = row["kojo_job_id"]
        params["expect_assigned"] = row["assigned_state"]
        params["expect_request"] = row["next_state_request"]
        if owner is not None:
            sql += " AND kojo_process_id = :expect_owner"
            params["expect_owner"] = owner
        cur = self.connection().execute(self._prepare(sql), self._convert_params(params))
        return int(cur.rowcount) == 1

    def job_transition(
        self,
        job_id: int,
        transition: states.Transition,
        *,
        now: datetime | None = None,
        owner: int | None = None,
        work_at: datetime | None = None,
        row: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Row:
        """Apply a transition with compare-and-set; the new row.

        `row` is the job as the caller last saw it (with the type's
        auto_delete_interval_duration); without it the row is read first.
        `owner` restricts the change to a job claimed by that owner.
        Raises InvalidTransition if the job is not in a state allowing it, or
        if another process changed it first; JobNotFound if it does not exist.
        """
        now = now or utcnow()
        return self.retrying(
            lambda: self._transition(job_id, transition, now, owner, work_at, row, extra)
        )

    def _transition(
        self,
        job_id: int,
        transition: states.Transition,
        now: datetime,
        owner: int | None,
        work_at: datetime | None,
        row: Mapping[str, Any] | None,
        extra: Mapping[str, Any] | None,
    ) -> Row:
        if row is None:
            row = self.job_get_with_type(job_id)
            if row is None:
                raise JobNotFound(f"no job with id {job_id}")
        changes = states.plan(
            transition,
            row,
            now=now,
            auto_delete_interval=parse_duration(row["auto_delete_interval_duration"]),
            work_at=work_at,
        )
        changes.update(extra or {})
        if not self._apply(row, changes, owner):
            current = self.job_get(job_id)
            if current is None:
                raise JobNotFound(f"no job with id {job_id}")
            raise InvalidTransition(
                f"job {job_id}: cannot {transition.name}: it is now "
                f"{current['assigned_state']}/{current['next_state_request']}"
                + (" (claimed by another process)" if owner is not None else "")
            )
        if transition.assigned_state is states.State.WAITING or (
            row["assigned_state"] == states.State.WORKING.value
            and not row.get("can_work_in_parallel", True)
        ):
            self.notify("jobs")  # runnable again, or a serial type is free again
        result = dict(row)
        result.update(changes)
        return result

    def job_complete_many(
        self, jobs: Sequence[Mapping[str, Any]], owner: int, now: datetime
    ) -> int:
        """Auto-complete claimed jobs in one batch (inside write()); how many were completed.

        Each row must carry auto_delete_interval_duration. Jobs no longer
        claimed by `owner` (cancelled meanwhile) are left alone.
        """
        by_interval: dict[str, list[int]] = {}
        for job in jobs:
            by_interval.setdefault(job["auto_delete_interval_duration"], []).append(
                int(job["kojo_job_id"])
            )
        serial = {job["type_code"] for job in jobs if not job.get("can_work_in_parallel", True)}
        if serial:
            self.lock_serial_types(sorted(serial))
            self.notify("jobs")  # a serial type is free again
        completed = 0
        for interval, ids in by_interval.items():
            completed += self.execute(
                "job_complete_success",
                {
                    "ids": self._id_list(ids),
                    "owner": owner,
                    "now": now,
                    "delete_after": now + parse_duration(interval),
                },
            )
        return completed

    def _id_list(self, ids: list[int]) -> Any:
        """A list of ids as the job_complete_success query takes it (JSON text by default)."""
        return json.dumps(ids)
