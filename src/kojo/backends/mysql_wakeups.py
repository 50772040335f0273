"""MySQL's owners and wake-ups, without LISTEN/NOTIFY.

An owner is an anchor session holding its named lock (mysql.py). The same session
polls `kojo_wakeup`, a small table of (id, topic, data) rows that notify() inserts
inside the sender's transaction (seen at commit, gone on rollback): a thread reads
the rows past the last one seen every POLL_INTERVAL and hands them to wait() through
a socket pair, so that fileno() works with select() as on the other dialects. The
poll doubles as the anchor's health check: a failed one marks the owner lost.

Auto-increment ids are handed out before commit, so a row may become visible after
one with a higher id: the poller notes the ids it skipped (gaps: a transaction still
open, or one rolled back) and reads again from the oldest gap, for at most
GAP_PATIENCE seconds and REORDER_WINDOW ids, skipping the rows it has seen; without a
gap a poll reads only new rows. Wake-ups are hints (wakeups_are_reliable is False):
readers look at the tables anyway when woken and every so often, so a late one costs
latency, never a job.

Lock bells ride the same stream (mysql_bells.py): a release inserts a wake-up row of
topic RING_TOPIC naming the waiter's bell, and the poller hands it to the waiting
thread (in this process, or through its socket to the server) instead of forwarding
it: a waiting thread queries nothing. While a waiter near the head of its queue waits
(its BellBoard says so) the poller polls every URGENT_POLL_INTERVAL, so such a ring never
waits out the idle interval; a waiter that comes near wakes the poller's sleep.

Idle cost: one indexed read per anchor per IDLE_POLL_INTERVAL; a server's anchor polls
for its whole tree (mysql_vouching.py), its lock waiters included: one read per
URGENT_POLL_INTERVAL however many wait. docs/howto/mysql.md has the measured CPU and
latency (50 blocked waiter processes: 4 to 6% of a core, 20% when each polled for
itself; a rung waiter has the lock in 12 to 16 ms at the median, 26 to 29 before).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import DatabaseError
from ..logs import get_logger
from .base import Notification, Owner, ProcessInfo
from .mysql_bells import RING_TOPIC, BellBoard

if TYPE_CHECKING:
    from .mysql import MysqlBackend, MysqlConnection

# Polls come every POLL_INTERVAL while wake-ups arrive, and slow down to every
# IDLE_POLL_INTERVAL once none has come for IDLE_AFTER seconds: an idle server's tree
# then costs two reads a second (its server's anchor polls for it), and the first wake-up
# after a quiet spell waits up to IDLE_POLL_INTERVAL.
POLL_INTERVAL = 0.05
IDLE_POLL_INTERVAL = 0.5
IDLE_AFTER = 5.0
# While a lock waiter near the head of its queue waits (mysql_bells.py), polls come this
# often: a ring waits half as long as at the busy rate, for one read per process or tree
# (a waiter polling for itself made 20 a second).
URGENT_POLL_INTERVAL = 0.025
REORDER_WINDOW = 256
GAP_PATIENCE = 10.0  # seconds a skipped id is waited for (a transaction still open)
PRUNE_EVERY = 30.0  # seconds between an owner's deletions of old wake-ups
KEEP_WAKEUPS = timedelta(seconds=60)

log = get_logger("mysql")


class MysqlOwner(Owner):
    """The anchor session: a named lock on our id, and the wake-up poller."""

    can_be_lost = True
    backend: MysqlBackend

    def __init__(self, backend: MysqlBackend, info: ProcessInfo, now: datetime) -> None:
        self.backend = backend
        self._pid = os.getpid()
        self._lost = False
        self._closed = False
        self.anchor: MysqlConnection = backend.connect_anchor()
        # The poller's thread and, on a server, its voucher (mysql_vouching.py) share it.
        self.anchor_lock = threading.Lock()
        try:
            params = backend.process_info_params(info, now)
            self.anchor.execute("START TRANSACTION")
            row = backend.fetchall_on(self.anchor, "process_register", params)[0]
            self.id = int(row["kojo_process_id"])
            got = backend.fetchall_on(
                self.anchor, "owner_lock", {"lock_name": backend.names.owner(self.id)}
            )
            if not got or got[0]["got"] != 1:
                raise DatabaseError(f"cannot take the lock of new owner {self.id}")
            self.anchor.execute("COMMIT")
            last = backend.fetchall_on(self.anchor, "wakeup_last", {})
        except BaseException:
            self.anchor.close()
            raise
        self._after = int(last[0]["last_id"] or 0) if last else 0
        self._seen: set[int] = set()
        self._gaps: dict[int, float] = {}  # ids skipped, not seen yet: when first missed
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._stop = threading.Event()
        self.bells = BellBoard()
        self._thread = threading.Thread(target=self._poll_loop, name="kojo-mysql-wakeups")
        self._thread.daemon = True
        self._thread.start()
        self._watch_forks()

    # -- the poller (its own thread; the only user of the anchor once registered) -----

    def _poll_loop(self) -> None:
        pruned = last_woken = last_polled = time.monotonic()
        while not self._stop.is_set():
            if self.bells.busy():
                interval = URGENT_POLL_INTERVAL
            elif time.monotonic() - last_woken > IDLE_AFTER:
                interval = IDLE_POLL_INTERVAL
            else:
                interval = POLL_INTERVAL
            pause = last_polled + interval - time.monotonic()
            if pause > 0:
                # Woken early by close() or by a waiter coming near the head: the rate
                # is worked out again (it may poll at once).
                self.bells.sleep(pause)
                continue
            last_polled = time.monotonic()
            try:
                with self.anchor_lock:
                    woken = self._poll()
                if woken:
                    last_woken = time.monotonic()
                if time.monotonic() - pruned > PRUNE_EVERY:
                    pruned = time.monotonic()
                    with self.anchor_lock:
                        self._prune()
            except Exception as exc:
                if not self._stop.is_set():
                    self._lost = True
                    log.warning(f"the anchor session of owner {self.id} failed: {exc}")
                    self._ring_self()
                    self.bells.close()  # the tree's bells hang up: their waiters look
                return

    def _poll(self) -> bool:
        """Hand the new wake-ups to wait(); whether there were any."""
        low = max(0, self._after - REORDER_WINDOW)
        after = min(self._gaps) - 1 if self._gaps else self._after
        rows = self.backend.fetchall_on(self.anchor, "wakeup_since", {"after": after})
        payloads = []
        rung = False
        previous = self._after
        for row in rows:
            wakeup_id = int(row["kojo_wakeup_id"])
            if wakeup_id in self._seen or wakeup_id <= low:
                continue
            self._seen.add(wakeup_id)
            self._gaps.pop(wakeup_id, None)
            # Past rings too: a ring left below the mark was read again by every poll,
            # and a thousand of them (LIMIT) hid every row after them until pruned.
            self._after = max(self._after, wakeup_id)
            note = Notification(str(row["topic"]), str(row["data"] or ""))
            if note.topic == RING_TOPIC:
                # A lock waiter's, never a notification. Activity where ours wait: a
                # waiter further back may be nudged next (the busy rate for it).
                rung = self.bells.ring(note.data) or self.bells.waiting() or rung
                continue
            payloads.append(self.backend.encode_notification(note).encode())
        self._note_gaps(previous)
        for payload in payloads:
            try:
                self._writer.send(payload + b"\n")
            except BlockingIOError:
                break  # its reader is behind: wake-ups are hints, it looks anyway
        return rung or bool(payloads)

    def _note_gaps(self, previous: int) -> None:
        """Note the ids skipped past `previous` (the last id before this poll); forget
        those out of the window or waited for long enough, and the seen ids below it."""
        now = time.monotonic()
        for skipped in range(max(previous, self._after - REORDER_WINDOW) + 1, self._after):
            if skipped not in self._seen:
                self._gaps.setdefault(skipped, now)
        floor = self._after - REORDER_WINDOW
        self._gaps = {
            i: since for i, since in self._gaps.items() if i > floor and now - since < GAP_PATIENCE
        }
        self._seen = {i for i in self._seen if i > floor}

    def _prune(self) -> None:
        from ..clock import utcnow

        self.backend.fetchall_on(self.anchor, "wakeup_prune", {"before": utcnow() - KEEP_WAKEUPS})

    def _ring_self(self) -> None:
        try:
            self._writer.send(b"\n")
        except OSError:
            pass

    # -- Owner --------------------------------------------------------------------------

    def fileno(self) -> int:
        return self._reader.fileno()

    def wait(self, timeout: float | None) -> list[Notification]:
        import select

        ready, _, _ = select.select([self._reader], [], [], timeout)
        if not ready:
            return []
        notes: list[Notification] = []
        while True:
            try:
                chunk = self._reader.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            for line in chunk.split(b"\n"):
                note = self.backend.decode_notification(line) if line else None
                if note is not None:
                    notes.append(note)
        return notes

    def is_lost(self) -> bool:
        return self._lost or self.anchor.closed

    def close(self, *, blame: bool = True) -> None:
        if self._closed or self._pid != os.getpid():
            return
        self._closed = True
        self._stop.set()
        self.bells.wake()
        self._thread.join(timeout=5)
        self.bells.close()
        try:
            # Free the lock before closing, so that the reap below sees this owner dead.
            self.backend.fetchall_on(
                self.anchor, "owner_unlock", {"lock_name": self.backend.names.owner(self.id)}
            )
        except Exception:
            pass  # a broken anchor: its session, and the lock with it, is gone or going
        self.anchor.close()
        self._reader.close()
        self._writer.close()
        self.backend.reap_owner(self.id, blame=blame)

    def abandon(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._lost = True
        abandon_socket(self.anchor)
        self.bells.abandon()
        self._reader.close()
        self._writer.close()
        self.backend._graveyard.append(self.anchor)


def abandon_socket(conn: Any) -> None:
    """Make a connection inherited through fork() unusable here without ending the
    session (closing it would send COM_QUIT on the parent's socket): its descriptor
    becomes /dev/null."""
    try:
        fd = conn.fileno()
    except Exception:
        return
    if fd < 0:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    conn.closed = True
