"""Publish/subscribe between processes and hosts (docs/ipc.md).

Every message is a row of `kojo_message`, inserted in the publisher's
transaction together with a "message" notification. The table gives each
message an id; the notification wakes subscribers:

- SQLite: writes are serial, so ids commit in order. A woken subscriber reads
  the rows of its channel after the last id it delivered. A lost doorbell
  datagram costs at most one safety-poll interval, never a message.
- PostgreSQL: NOTIFY delivers in commit order, exactly once per listening
  session. A notification names the message's id and channel, never the message
  (any role that can connect can LISTEN); the subscriber reads the messages a
  batch of notifications names in one query, and delivers them in the
  notifications' order. After a lost connection the subscriber re-registers,
  then reads from the table what its channel received after the last id it
  delivered.

Either way a wake-up is only a hint: what is delivered is read from the table,
so a forged one can at most repeat a message of the channel (the last
RECENT_IDS delivered are remembered and not repeated).

A subscriber is an owner of its own (kind "subscriber"): its own anchor or
doorbell, so it never takes wake-ups meant for other code in the process.
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from . import bounds, json_text, settings
from .backends.base import MESSAGE_TOPIC, Backend, Notification, Owner, ProcessInfo
from .backends.errors import database_errors, driver_errors
from .clock import utcnow
from .errors import DatabaseError, InvalidArgument, KojoError
from .logs import get_logger, metadata

TOPIC = MESSAGE_TOPIC
MAX_MESSAGE_BYTES = 64 * 1024
MAX_CHANNEL_LENGTH = 255
MAX_TIMEOUT = 365 * 86400.0  # a finite wait: None waits forever
# SQLite: read the table this often even without a wake-up (a lost datagram).
SAFETY_POLL_SECONDS = 1.0
READ_BATCH = 500
RECENT_IDS = 4096
RECONNECT_BACKOFF = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)

log = get_logger("ipc")
_NO_MESSAGE = object()


def recoverable(exc: BaseException) -> bool:
    """What a subscriber survives: the database or its connection going away for a while."""
    return isinstance(exc, (OSError, DatabaseError, *driver_errors()))


def check_channel(channel: object) -> str:
    """A valid channel name (1-255 printable characters), else InvalidArgument naming it."""
    if not isinstance(channel, str):
        raise InvalidArgument(f"channel must be a string, got {channel!r}")
    if not 1 <= len(channel) <= MAX_CHANNEL_LENGTH:
        raise InvalidArgument(
            f"channel must be 1 to {MAX_CHANNEL_LENGTH} characters, got {len(channel)}: "
            f"{_short(channel)}"
        )
    if not channel.isprintable():
        raise InvalidArgument(f"channel must be printable characters only, got {channel!r}")
    return channel


def encode_message(message: Any) -> str:
    """The JSON text of a message; InvalidPayload if it is not JSON or too large."""
    return json_text.dumps(message, "message", max_bytes=MAX_MESSAGE_BYTES, shown=80)


def _describe(exc: BaseException) -> str:
    """An error on one line (driver messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def publish(backend: Backend, channel: str, message: Any, publisher: int | None = None) -> int:
    """Store a message and wake its subscribers (at commit, inside a caller's write()); its id."""
    check_channel(channel)
    with backend.write():
        return backend.message_publish(channel, encode_message(message), publisher, utcnow())


def last_message_id(backend: Backend, channel: str) -> int:
    """The id of the newest message of `channel` (0 when there is none)."""
    row = backend.fetchone("message_last_id", {"channel": channel})
    return int(row["last_id"]) if row and row["last_id"] is not None else 0


def messages_after(
    backend: Backend, channel: str, after: int, limit: int = READ_BATCH
) -> list[tuple[int, Any]]:
    """(id, message) of the messages of `channel` with ids above `after`, oldest first."""
    rows = backend.fetchall("message_after", {"channel": channel, "after": after, "limit": limit})
    return [(int(row["kojo_message_id"]), row["payload"]) for row in rows]


def subscriber_info(channel: str) -> ProcessInfo:
    parent = metadata.process.get("path") or f"/client[{os.getpid()}]"
    return ProcessInfo(
        host_name=settings.host_name(),
        process_id=os.getpid(),
        parent_process_id=os.getppid(),
        path=f"{parent}/subscriber",
        kind="subscriber",
        extra={"channel": channel},
    )


class Subscription:
    """Messages of one channel published from the moment this was made until close().

    One thread iterates messages(); close() may be called from any thread and
    ends a waiting messages() at once. Not usable in a forked child.
    """

    def __init__(self, backend: Backend, channel: str) -> None:
        self.channel = check_channel(channel)
        self._backend = backend
        # Whether wake-ups arrive exactly once, in commit order, naming each message
        # (PostgreSQL's NOTIFY): else they say "look after your last id" (SQLite's datagrams).
        self._reliable = backend.wakeups_are_reliable
        self._pending: deque[tuple[int, Any]] = deque()
        # Queued already: a wake-up naming one again (after a reconnect, or forged) is dropped.
        self._queued = RecentIds(RECENT_IDS)
        self._conn: Any = None  # our own connection for reads, opened when first needed
        self._pid = os.getpid()
        self._closed = False
        self._step = threading.Lock()  # held by the consuming thread while it waits
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._owner: Owner | None = None
        try:
            with database_errors():
                self._owner = backend.register_owner(subscriber_info(channel))
                # Listening already: anything committed after this read is ours. (The
                # backend's connection: the subscriber opens its own for reads only once
                # it needs one.)
                row = backend.fetchone("message_last_id", {"channel": channel})
        except BaseException:
            self._release()
            raise
        self._last_id = int(row["last_id"]) if row and row["last_id"] is not None else 0
        self._last_read = time.monotonic()
        _live.add(self)

    # -- public -------------------------------------------------------------------

    def messages(self, timeout: float | None = None) -> Iterator[Any]:
        """Each message as it arrives; ends after `timeout` seconds without one (None: never)."""
        if timeout is not None:
            timeout = bounds.check_seconds("timeout", timeout, MAX_TIMEOUT)
        return self._iterate(timeout)

    def _iterate(self, timeout: float | None) -> Iterator[Any]:
        while True:
            deadline = None if timeout is None else time.monotonic() + timeout
            message = self._next(deadline)
            if message is _NO_MESSAGE:
                return
            yield message

    def close(self) -> None:
        """Stop listening (idempotent); from any thread, a waiting messages() ends."""
        if self._closed:
            return
        self._closed = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        with self._step:
            self._release()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"after id {self._last_id}"
        return f"<Subscription {self.channel!r} {state}>"

    # -- receiving ------------------------------------------------------------------

    def _next(self, deadline: float | None) -> Any:
        if self._pid != os.getpid():
            raise KojoError(
                f"this subscription to {self.channel!r} belongs to process {self._pid}: "
                "subscribe again after fork"
            )
        with self._step:
            polled = False
            while not self._closed:
                if self._pending:
                    return self._pop()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if polled:
                        return _NO_MESSAGE
                    remaining = 0.0  # timeout=0 still takes what has arrived
                polled = True
                try:
                    self._receive(remaining)
                except Exception as exc:
                    if not recoverable(exc):
                        raise
                    if self._closed:
                        break
                    self._reconnect(exc, deadline)
            return _NO_MESSAGE

    def _pop(self) -> Any:
        message_id, message = self._pending.popleft()
        self._last_id = max(self._last_id, message_id)
        return message

    def _receive(self, remaining: float | None) -> None:
        """Wait up to `remaining` seconds for a wake-up, then queue what arrived."""
        owner = self._owner
        if owner is None or owner.is_lost():
            raise DatabaseError("the subscriber's registration was lost")
        wait = remaining
        if not self._reliable:
            until_poll = self._last_read + SAFETY_POLL_SECONDS - time.monotonic()
            wait = until_poll if wait is None else min(wait, until_poll)
        wait = None if wait is None else max(0.0, wait)
        ready, _, _ = select.select([owner.fileno(), self._wake_r], [], [], wait)
        if self._closed:
            return
        notes = owner.wait(0.0) if owner.fileno() in ready else []
        if self._reliable:
            self._take_notifications(notes)
        elif (
            wait == 0.0  # a last look before the deadline, or the safety poll is due
            or any(self._wakes_us(note) for note in notes)
            or time.monotonic() - self._last_read >= SAFETY_POLL_SECONDS
        ):
            self._read_after(self._last_id)

    def _wakes_us(self, note: Notification) -> bool:
        data = self._decode(note)
        return data is not None and data["id"] > self._last_id

    def _decode(self, note: Notification) -> dict[str, Any] | None:
        if note.topic != TOPIC:
            return None
        try:
            data = json.loads(note.data)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("channel") != self.channel:
            return None
        message_id = data.get("id")
        if type(message_id) is not int or not 0 < message_id < 2**63:
            return None  # not an id kojo gives (a wake-up may be forged)
        return data

    def _take_notifications(self, notes: list[Notification]) -> None:
        """Queue the messages `notes` name, in the notes' (commit) order."""
        named: list[int] = []
        for note in notes:
            data = self._decode(note)
            if data is not None and data["id"] not in self._queued and data["id"] not in named:
                named.append(data["id"])
        for start in range(0, len(named), READ_BATCH):
            batch = named[start : start + READ_BATCH]
            rows = self._read(
                "message_get_many", {"channel": self.channel, "ids": json.dumps(batch)}
            )
            payloads = {int(row["kojo_message_id"]): row["payload"] for row in rows}
            for message_id in batch:
                if message_id in payloads:
                    self._queue(message_id, payloads[message_id])
                else:
                    log.warning(
                        "message %s on channel %r was deleted before it could be read",
                        message_id,
                        self.channel,
                        extra={"context": {"channel": self.channel, "kojo_message_id": message_id}},
                    )

    def _queue(self, message_id: int, message: Any) -> None:
        self._pending.append((message_id, message))
        self._queued.add(message_id)

    def _read_after(self, after: int) -> list[int]:
        """Queue the channel's messages with ids above `after`; their ids."""
        ids: list[int] = []
        while True:
            rows = self._read(
                "message_after", {"channel": self.channel, "after": after, "limit": READ_BATCH}
            )
            for row in rows:
                after = int(row["kojo_message_id"])
                self._queue(after, row["payload"])
                ids.append(after)
            if len(rows) < READ_BATCH:
                break
        self._last_read = time.monotonic()
        return ids

    # -- database access --------------------------------------------------------------

    def _read(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        # Our own connection: never inside a transaction the consuming thread has open.
        if self._conn is None or self._backend.is_broken(self._conn):
            self._conn = self._backend.new_connection()
        return self._backend.fetchall_on(self._conn, name, params)

    def _reconnect(self, error: BaseException, deadline: float | None) -> None:
        """Register anew and catch up from the table; give up quietly at the deadline."""
        log.warning(
            "subscriber to channel %r lost its database connection (%s); reconnecting: "
            "messages published meanwhile may have been missed",
            self.channel,
            _describe(error),
            extra={"context": {"channel": self.channel, "last_id": self._last_id}},
        )
        self._drop_connections()
        for attempt in range(1_000_000):
            if self._closed:
                return
            try:
                self._owner = self._backend.register_owner(subscriber_info(self.channel))
                # Listening again; what the channel got meanwhile is in the table.
                after = max([self._last_id, *(message_id for message_id, _ in self._pending)])
                missed = self._read_after(after)
            except Exception as exc:
                if not recoverable(exc):
                    raise
                self._drop_connections()
                delay = RECONNECT_BACKOFF[min(attempt, len(RECONNECT_BACKOFF) - 1)]
                if deadline is not None:
                    delay = min(delay, deadline - time.monotonic())
                    if delay <= 0:
                        return
                log.warning(
                    "subscriber to channel %r cannot reconnect yet: %s",
                    self.channel,
                    _describe(exc),
                )
                select.select([self._wake_r], [], [], delay)
                continue
            log.warning(
                "subscriber to channel %r reconnected; %d message(s) recovered from the table",
                self.channel,
                len(missed),
                extra={"context": {"channel": self.channel, "recovered": len(missed)}},
            )
            return

    def _drop_connections(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            try:
                owner.close()
            except Exception:
                pass  # its session is gone already; whoever probes it next reaps the row
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _release(self) -> None:
        self._closed = True
        _live.discard(self)
        self._drop_connections()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    def _abandon(self) -> None:
        """In a forked child: let go of the parent's registration without touching it."""
        self._closed = True
        if self._owner is not None:
            self._owner.abandon()
            self._owner = None
        if self._conn is not None:
            self._backend.abandon_connection(self._conn)
            _graveyard.append(self._conn)
            self._conn = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


class RecentIds:
    """The last `size` ids added, for membership tests."""

    def __init__(self, size: int) -> None:
        self._order: deque[int] = deque()
        self._ids: set[int] = set()
        self._size = size

    def __contains__(self, value: int) -> bool:
        return value in self._ids

    def add(self, value: int) -> None:
        if value in self._ids:
            return
        self._order.append(value)
        self._ids.add(value)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())


_live: weakref.WeakSet[Subscription] = weakref.WeakSet()
_graveyard: list[Any] = []  # connections inherited through fork: never closed here


def _after_fork_in_child() -> None:
    for subscription in list(_live):
        subscription._abandon()
    _live.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
