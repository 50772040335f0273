"""SQLite: the embedded default. One host, many processes.

WAL journal, every write in BEGIN IMMEDIATE, a long busy timeout. Liveness is
a flock on one owner file per process (the kernel drops it on any death, kill
-9 included). Wake-ups are datagrams sent to each live owner's doorbell, an
abstract-namespace unix socket (no path length limit, gone with the process) whose
random name is written in the owner file; receivers drop other users' datagrams (see
sqlite_bells).

Files: the database is created 0600, `<db>.kojo/` and its `owners/` 0700; a database
or folder that another user owns or may write, or a symlink where kojo keeps its own
files, is refused with `UnsafeSqliteFiles`.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import json
import os
import select
import socket
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..clock import as_utc, utcnow
from ..errors import DatabaseError, DatabaseUnavailable
from ..logs import get_logger
from . import claimed_rows
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
from .errors import DriverErrors, register_driver
from .later_rows import LaterRows
from .lock_records import Released, Waiter
from .sqlite_bells import SocketRinger, bind_bell, receive

log = get_logger("sqlite")

WAL_SWITCH_TIMEOUT = 60.0
# Result codes (sqlite3.Error.sqlite_errorname) that say "not now" rather than "wrong":
# busy or locked past the busy timeout, disk full, I/O errors, the file or its folder
# unreadable.
UNAVAILABLE_PREFIXES = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_READONLY",
    "SQLITE_PROTOCOL",
)


def is_unavailable(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.Error):
        return False
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(UNAVAILABLE_PREFIXES):
        return True
    # Errors raised before SQLite gave a code (e.g. while opening).
    text = str(exc)
    return "locked" in text or "disk" in text or "unable to open" in text


def is_missing_table(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)


register_driver(DriverErrors(sqlite3.Error, is_unavailable, is_missing_table))


class UnsafeSqliteFiles(DatabaseError):
    """A database file or kojo folder that another user could read or change."""


def _check_owned(path: Path, st: os.stat_result, what: str) -> None:
    uid = os.geteuid()
    if st.st_uid != uid:
        raise UnsafeSqliteFiles(
            f"refusing {what} {path}: it belongs to uid {st.st_uid}, not to this user (uid {uid})"
        )
    if st.st_mode & 0o022:
        raise UnsafeSqliteFiles(
            f"refusing {what} {path}: group or others may write it "
            f"(mode {stat.S_IMODE(st.st_mode):04o}; chmod go-w)"
        )


def _tighten(fd: int, path: Path, st: os.stat_result, what: str) -> None:
    """Take group's and others' access away from a file or folder of this user's that an
    older kojo or the umask left readable (payloads and tracebacks are private), through
    the descriptor that was checked, with a log line saying so."""
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return
    try:
        # An O_PATH descriptor cannot fchmod; its /proc link reaches the same inode.
        os.chmod(f"/proc/self/fd/{fd}", mode & ~0o077)
    except OSError as exc:
        raise UnsafeSqliteFiles(
            f"cannot make {what} {path} private (mode {mode:04o}; chmod go-rwx): {exc.strerror}"
        ) from exc
    log.warning(
        f"made {what} {path} private: mode {mode:04o} -> {mode & ~0o077:04o} "
        "(group or others could read it)",
        extra={"context": {"path": str(path)}},
    )


def _secure_existing(path: Path, what: str, flags: int = 0) -> bool:
    """Refuse `path` unless it is this user's and nobody else may write it; then make it
    private (`_tighten`). False when it does not exist.

    Through an O_PATH descriptor: closing a real one would drop the POSIX locks SQLite's
    connections in this process hold on the file (O_PATH descriptors hold none)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC | flags)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeSqliteFiles(f"refusing {what} {path}: it is a symlink") from None
        raise DatabaseUnavailable(f"cannot open {what} {path}: {exc}") from exc
    try:
        st = os.fstat(fd)
        _check_owned(path, st, what)
        _tighten(fd, path, st, what)
    finally:
        os.close(fd)
    return True


def path_from_url(url: str) -> Path:
    """`sqlite:///relative.db` or `sqlite:////absolute.db` → an absolute path."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc not in ("", "localhost"):
        raise DatabaseError(f"not a sqlite URL: {url!r} (expected sqlite:///PATH)")
    raw = unquote(parts.path)
    if raw.startswith("/"):
        raw = raw[1:]
    if not raw or raw == ":memory:":
        raise DatabaseError(
            f"unsupported sqlite database {url!r}: kojo needs a file shared by its processes"
        )
    return Path(raw).expanduser().absolute()


def _to_text(value: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order."""
    if value.tzinfo is not UTC:
        value = as_utc(value)
    return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _time(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if len(value) == 26:  # _to_text's fixed width: parsing an offset is far cheaper than replace()
        return datetime.fromisoformat(value + "+00:00")
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _converter(name: str) -> Callable[[Any], Any] | None:
    if name.endswith("date_time") or name == "work_at":
        return _time
    if name in BOOL_COLUMNS:
        return bool
    if name in JSON_COLUMNS:
        return json.loads
    return None


@lru_cache(maxsize=256)
def _plan(names: tuple[str, ...]) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    """Which columns of a result need converting from SQLite's types, and how."""
    plan = []
    for index, name in enumerate(names):
        convert = _converter(name)
        if convert is not None:
            plan.append((index, convert))
    return tuple(plan)


# The last result shape seen: (cursor.description, names, plan). A statement's rows share one
# description object, so batches skip rebuilding the names; the strong reference keeps
# `is` sound. One tuple, swapped whole, so threads never see a torn entry.
_last_shape: tuple[Any, tuple[str, ...], tuple[tuple[int, Callable[[Any], Any]], ...]] = (
    None,
    (),
    (),
)


def _row_factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    global _last_shape
    description, names, plan = _last_shape
    if cursor.description is not description:
        description = cursor.description
        names = tuple(col[0] for col in description)
        plan = _plan(names)
        _last_shape = (description, names, plan)
    values = list(row)
    for index, convert in plan:
        if values[index] is not None:
            values[index] = convert(values[index])
    return dict(zip(names, values, strict=True))


def _claimed_rows(
    template: dict[str, Any],
    whole: Mapping[int, dict[str, Any]],
    names: tuple[str, ...],
    raw: Sequence[Sequence[Any]],
) -> list[dict[str, Any]]:
    """claimed_rows.filled, converting each row's values as _row_factory does (its loop,
    inline: a shared function per row cost the plain path 0.6 % of its instructions)."""
    plan = _plan(names)
    own = names[:-1]  # all but `uncommon`, the last
    rows = []
    for row in raw:
        if row[-1]:
            rows.append(whole[row[0]])
            continue
        values = list(row)
        for index, convert in plan:
            if values[index] is not None:
                values[index] = convert(values[index])
        job = template.copy()
        job.update(zip(own, values, strict=False))
        rows.append(job)
    return rows


def _journal_mode(conn: sqlite3.Connection, pragma: str) -> str:
    row = conn.execute(pragma).fetchone()
    return str(next(iter(row.values()))).lower() if row else ""


class SqliteBackend(Backend):
    dialect = "sqlite"
    claim_vouches = True

    def __init__(self, url: str) -> None:
        self.path = path_from_url(url)
        self.state_dir = Path(f"{self.path}.kojo")
        self.owners_dir = self.state_dir / "owners"
        real = os.path.realpath(self.path)
        self.bell_prefix = "kojo." + hashlib.sha1(real.encode()).hexdigest()[:16] + "."
        self._sender: socket.socket | None = None
        self._sender_pid = 0
        self._dirs_checked = False
        self._doorbells: dict[str, str] = {}  # owner file name -> its doorbell's address
        self._job_columns: tuple[str, ...] | None = None  # kojo_job's, for _claim_template
        super().__init__(url)

    # -- connections -----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if not self.path.parent.is_dir():
            raise DatabaseUnavailable(
                f"directory of sqlite database does not exist: {self.path.parent}"
            )
        self._secure_database_file()
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=60.0, check_same_thread=False
            )
            conn.row_factory = _row_factory
            conn.execute("PRAGMA busy_timeout = 60000")
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            # 16 MiB of page cache (SQLite's default is 2 MiB), allocated as pages are
            # read: with a million stored jobs the default one missed on every claim
            # and completion, and the drain fell by a quarter (bench/scale.py).
            conn.execute("PRAGMA cache_size = -16384")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            error = DatabaseUnavailable if is_unavailable(exc) else DatabaseError
            raise error(f"cannot open sqlite database {self.path}: {exc}") from exc
        return conn

    def _secure_database_file(self) -> None:
        """Create the database 0600 (SQLite gives its -wal and -shm files the same
        mode); refuse one (or a -wal or -shm file) that another user owns or may
        write, and make one this user owns private if group or others could read it."""
        try:
            fd = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
            )
        except FileExistsError:
            pass
        except OSError as exc:
            raise DatabaseUnavailable(f"cannot create sqlite database {self.path}: {exc}") from exc
        else:
            os.close(fd)  # new and empty: no connection of ours holds a lock on it
        if not _secure_existing(self.path, "sqlite database"):
            raise DatabaseUnavailable(f"cannot open sqlite database {self.path}: it was removed")
        for suffix in ("-wal", "-shm"):
            _secure_existing(Path(f"{self.path}{suffix}"), f"sqlite {suffix[1:]} file")

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Put the database in WAL mode (once per file; it is persistent).

        Switching needs an exclusive lock and SQLite reports "database is locked" at
        once, without its busy handler, while another connection is opening the same
        new file: so retry until the mode is WAL or the busy timeout has passed.
        """
        deadline = time.monotonic() + WAL_SWITCH_TIMEOUT
        while True:
            try:
                if _journal_mode(conn, "PRAGMA journal_mode") == "wal":
                    return
                if _journal_mode(conn, "PRAGMA journal_mode = WAL") == "wal":
                    return
                raise DatabaseError(f"cannot put {self.path} in WAL mode")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _prepare(self, text: str) -> str:
        return text

    def _begin(self, conn: Any) -> None:
        # A writer that finds the lock taken waits in SQLite's busy handler. (A queue on a
        # flock that handed the lock over within 0.1-1 ms, in turn, drained 7-22% fewer
        # jobs with 2 job processes on 2 cores: bench/plain_path.py, 2026-12-01.)
        conn.execute("BEGIN IMMEDIATE")

    def abandon_connection(self, conn: Any) -> None:
        # Never close an inherited SQLite connection: closing any descriptor of
        # the file would drop this process's POSIX locks on it. Keep it unused.
        pass

    def _convert_params(self, params: Any) -> Any:
        converted = {}
        for key, value in params.items():
            if isinstance(value, datetime):
                value = _to_text(value)
            elif isinstance(value, bool):
                value = int(value)
            converted[key] = value
        return converted

    def _is_missing_table(self, exc: Exception) -> bool:
        return is_missing_table(exc)

    def _run_script(self, script: str) -> None:
        # executescript() would commit the surrounding transaction; run statements one by one.
        conn = self.connection()
        statement = ""
        for line in script.splitlines():
            if line.lstrip().startswith("--"):
                continue
            statement += line + "\n"
            if sqlite3.complete_statement(statement):
                conn.execute(statement)
                statement = ""
        if statement.strip():
            conn.execute(statement)

    # -- owners -------------------------------------------------------------------------

    def secure_dirs(self, *, create: bool = True) -> bool:
        """Make `<db>.kojo/` and `owners/` (0700), or check the ones there: real
        folders (no symlinks), of this user, that nobody else may write.

        This is what keeps owner files honest: only this user (or root) can create,
        replace or delete a file in them, so a missing owner file means its owner
        closed or was reaped, and `owner_is_dead` may trust it. Checked once per
        backend; a folder that passed can only be changed by this user afterwards.
        False when they are not there (and not `create`): no owner has registered yet.
        """
        if self._dirs_checked:
            return True
        for folder in (self.state_dir, self.owners_dir):
            try:
                if create:
                    os.mkdir(folder, 0o700)
            except FileExistsError:
                pass
            except OSError as exc:
                raise DatabaseUnavailable(f"cannot create kojo folder {folder}: {exc}") from exc
            try:
                st = os.lstat(folder)
            except FileNotFoundError:
                if create:
                    raise
                return False
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeSqliteFiles(f"refusing kojo folder {folder}: it is a symlink")
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeSqliteFiles(f"refusing kojo folder {folder}: not a directory")
            if not _secure_existing(folder, "kojo folder", os.O_DIRECTORY | os.O_NOFOLLOW):
                raise DatabaseUnavailable(f"kojo folder {folder} was removed while checked")
        self._dirs_checked = True
        return True

    def register_owner(self, info: ProcessInfo, now: datetime | None = None) -> Owner:
        self.secure_dirs()
        with self.write():
            row = self.fetchone("process_register", self.process_info_params(info, now or utcnow()))
            assert row is not None
            owner_id = int(row["kojo_process_id"])
            return SqliteOwner(self, owner_id)

    # Writes are serial (BEGIN IMMEDIATE): a claim cannot interleave with a reaping, and
    # the claim statement checks its owner's process row itself (claim_vouches).

    def _guard_reap(self, owner_id: int) -> bool:
        return True

    def _vouch(self, owner_id: int) -> bool:
        row = self.fetchone("owner_vouch", {"owner": owner_id})
        return bool(row and row["vouched"])

    def lock_serial_types(self, codes: Iterable[str]) -> None:
        pass  # nothing to order: no claim runs while this transaction does

    def lock_limit_key(self, type_code: str, concurrency_key: str) -> None:
        pass  # writes are serial: no other admission runs while this transaction does

    def lock_child(self, child_id: int) -> None:
        pass  # writes are serial: no other parent ends while this transaction runs

    def _complete_success(self, params: Mapping[str, Any], count: int) -> tuple[int, list[int]]:
        # One statement in the usual case; the second only when some job of the batch is
        # flagged (or was cancelled meanwhile: then it completes nothing).
        completed = self.execute("job_complete_success", params)
        if completed == count:
            return completed, []
        flagged = [int(r["flagged"]) for r in self.fetchall("job_complete_flagged", params)]
        return completed + len(flagged), flagged

    def claim_rows(self, params: Mapping[str, Any]) -> LaterRows:
        cursor = self.connection().cursor()
        cursor.row_factory = None  # tuples: converted by LaterRows.rows(), after COMMIT
        cursor.execute(self._queries["job_claim"], self._convert_params(params))
        raw = cursor.fetchall()
        names = tuple(column[0] for column in cursor.description)
        whole: dict[int, dict[str, Any]] = {}
        uncommon = [row[0] for row in raw if row[-1]]
        if uncommon:
            again = self.fetchall("jobs_get", {"ids": self._id_list(uncommon)})
            whole = {int(row["kojo_job_id"]): row for row in again}
        template = self._claim_template(names, params)
        return LaterRows(names, raw, functools.partial(_claimed_rows, template, whole))

    def _claim_template(self, names: tuple[str, ...], params: Mapping[str, Any]) -> Row:
        if self._job_columns is None:
            cursor = self.connection().execute("SELECT * FROM kojo_job LIMIT 0")
            table = [column[0] for column in cursor.description]
            self._job_columns = claimed_rows.checked(table, names)
        # As the database gives it back: text to the microsecond, UTC.
        now = _time(_to_text(params["now"]))
        return claimed_rows.template(self._job_columns, now, params["owner"])

    def _rate_limited(self, claimed: LaterRows) -> list[tuple[Row, float]]:
        # job_claim returns no rate_seconds here (its RETURNING cannot read its FROM, and a
        # subquery per row cost 1% of a job): one read of the rated types per claim instead.
        if not claimed:
            return []
        periods = {
            r["type_code"]: float(r["rate_limit_seconds"])
            for r in self.fetchall("job_rate_periods")
        }
        if periods.keys().isdisjoint(claimed.column("type_code")):
            return []  # the usual case: the rows stay tuples until after COMMIT
        rows = claimed.rows()
        return [(row, periods[row["type_code"]]) for row in rows if row["type_code"] in periods]

    def _fold(self, before: int) -> int:
        folded = self.execute("tally_fold_sums", {"before": before})
        self.execute("tally_fold_delete", {"before": before})
        return folded

    def _id_list(self, ids: list[int]) -> Any:
        return json.dumps(ids)  # job_complete_success reads it with json_each

    def owner_file(self, owner_id: int) -> Path:
        return self.owners_dir / f"{owner_id}.lock"

    def open_owner_file(self, owner_id: int, flags: int) -> int:
        """A descriptor of an owner file, never through a symlink."""
        path = self.owner_file(owner_id)
        if not self.secure_dirs(create=bool(flags & os.O_CREAT)):
            raise FileNotFoundError(errno.ENOENT, "no kojo owner folder", str(path))
        try:
            return os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeSqliteFiles(f"refusing owner file {path}: it is a symlink") from exc
            raise

    def owner_is_dead(self, owner_id: int) -> bool:
        # A missing file means dead: only this user can delete it (see secure_dirs).
        try:
            fd = self.open_owner_file(owner_id, os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True

    def _owner_forgotten(self, owner_id: int) -> None:
        if not self.secure_dirs(create=False):
            return
        path = self.owner_file(owner_id)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeSqliteFiles(f"refusing to delete owner file {path}: not a regular file")
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    # -- locks -------------------------------------------------------------------------

    def lock_take(self, params: Mapping[str, Any]) -> Row | None:
        row = self.fetchone("lock_slot_take", params)
        if row is not None and params.get("waiter_id") is not None:
            self.execute("lock_waiter_remove", {"waiter_id": params["waiter_id"]})
        return row

    def lock_release(self, params: Mapping[str, Any]) -> Released:
        row = self.fetchone("lock_release", params)
        dead = self.owner_is_dead(params["owner"])
        if row is None:
            return Released(freed=False, dead=dead, rung=False)
        heads = []
        if row["waiters"]:
            # Liveness unknown (None): the ringer skips the bells that no longer answer.
            waiters = self.fetchall("lock_waiters_next", params)
            heads = [Waiter(int(w["kojo_process_id"]), str(w["bell"]), None) for w in waiters]
        return Released(freed=True, dead=dead, rung=False, heads=heads)

    def ringer(self) -> Ringer:
        return SocketRinger(str(self.path))

    # -- notifications -----------------------------------------------------------------

    def _message_published(self, message_id: int, channel: str) -> None:
        self.notify(MESSAGE_TOPIC, self.message_wake_data(message_id, channel))

    def _deliver(self, notes: list[Notification]) -> None:
        if not notes:
            return
        if self._sender is None or self._sender_pid != os.getpid():
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
            self._sender_pid = os.getpid()
        packets = [self.encode_notification(n).encode() for n in notes]
        if not self.secure_dirs(create=False):
            return
        try:
            names = os.listdir(self.owners_dir)
        except FileNotFoundError:
            return
        known = self._doorbells
        if len(known) > len(names):
            present = set(names)
            for gone in [name for name in known if name not in present]:
                del known[gone]
        for name in names:
            owner_id, _, ext = name.partition(".")
            if ext != "lock" or not owner_id.isdigit():
                continue
            address = known.get(name)
            if address is not None and self._ring(address, packets):
                continue
            # Not known yet, or its doorbell is gone (its id may have a new owner now).
            address = self._doorbell_of(int(owner_id))
            if address is None:
                known.pop(name, None)  # registering still, or gone: it reads tables first
                continue
            known[name] = address
            self._ring(address, packets)

    def _ring(self, address: str, packets: list[bytes]) -> bool:
        """Send the packets to a doorbell; False if nobody is bound there."""
        assert self._sender is not None
        for packet in packets:
            try:
                self._sender.sendto(packet, address)
            except (ConnectionRefusedError, FileNotFoundError):
                return False  # no doorbell: that owner is gone
            except BlockingIOError:
                break  # its queue is full: it has wake-ups waiting already
            except OSError as exc:
                if exc.errno in (errno.EMSGSIZE, errno.ENOBUFS):
                    break
                raise
        return True

    def _doorbell_of(self, owner_id: int) -> str | None:
        """The doorbell address an owner wrote in its file ("PID ADDRESS"), if any."""
        try:
            fd = self.open_owner_file(owner_id, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fields = os.read(fd, 512).decode(errors="replace").split()
        finally:
            os.close(fd)
        if len(fields) < 2 or not fields[1].startswith(self.bell_prefix):
            return None
        return "\0" + fields[1]


class SqliteOwner(Owner):
    """An owner file held with flock, and a doorbell socket."""

    backend: SqliteBackend

    def __init__(self, backend: SqliteBackend, owner_id: int) -> None:
        self.backend = backend
        self.id = owner_id
        self._closed = False
        self._bell, address = bind_bell(backend.bell_prefix, "doorbell")
        try:
            self._fd = backend.open_owner_file(owner_id, os.O_RDWR | os.O_CREAT)
        except BaseException:
            self._bell.close()
            raise
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()} {address}\n".encode())
        except BaseException:
            # E.g. a full disk: the registration is rolled back, and the next one may get
            # the same id, so this file must not stay locked by a leaked descriptor.
            self._bell.close()
            os.close(self._fd)
            raise
        self._pid = os.getpid()
        self._watch_forks()

    def fileno(self) -> int:
        return self._bell.fileno()

    def wait(self, timeout: float | None) -> list[Notification]:
        ready, _, _ = select.select([self._bell], [], [], timeout)
        if not ready:
            return []
        return self.drain()

    def drain(self) -> list[Notification]:
        notes: list[Notification] = []
        while True:
            packet = receive(self._bell, 65536)
            if packet is None:
                return notes
            note = self.backend.decode_notification(packet)
            if note is not None:
                notes.append(note)

    def is_lost(self) -> bool:
        return self._closed

    def close(self, *, blame: bool = True) -> None:
        if self._closed or self._pid != os.getpid():
            return
        self._closed = True
        self._bell.close()
        os.close(self._fd)  # the flock goes with it: we are now "dead"
        self.backend.reap_owner(self.id, blame=blame)

    def abandon(self) -> None:
        # The child shares the parent's open file description: closing our copy
        # leaves the parent's flock in place. Only once: afterwards these
        # descriptor numbers may belong to other files.
        if self._closed:
            return
        self._closed = True
        self._bell.close()
        os.close(self._fd)
