"""The job counts per type and state that the overview, /api/stats and /metrics show: a
snapshot the dashboard takes itself, in the background, while someone is looking.

Counting is a GROUP BY over the kojo_job_type_state index, every entry of it: about
200 ms at 1,000,000 jobs, more than a page may take. Counters kept by the job processes
would be exact but would cost the claim/complete path (docs/dashboard.md, "Why the
counts are a snapshot"). So a request reads the last snapshot and shows its age, and a
refresher thread counts again every `interval` seconds for as long as requests keep
coming (`linger` seconds after the last one), then stops: an idle dashboard costs the
database nothing. Only the very first read waits for a count (`kojo dashboard` primes
the snapshot before it listens), and an action taken through the dashboard drops the
snapshot so that the next page shows its effect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..clock import utcnow
from ..errors import KojoError

log = logging.getLogger("kojo.dashboard")
Row = dict[str, Any]

INTERVAL = 5.0  # seconds between counts while the dashboard is looked at
LINGER = 60.0  # keep counting this long after the last request (a 15 s scrape keeps it)


@dataclass(frozen=True)
class Counted:
    """Job counts (`kojo stats --json` rows) and when the count began (UTC)."""

    rows: list[Row]
    at: datetime

    def age_seconds(self, now: datetime | None = None) -> int:
        """Whole seconds since the count, never negative (a clock stepped back)."""
        return max(0, int(((now or utcnow()) - self.at).total_seconds()))


class CountSnapshot:
    """The last count, and the thread that refreshes it while it is read.

    `count` returns the rows. The first read counts on the reader's thread; the
    refresher hands each count to `run`, which runs it where the database is to be used
    (the dashboard's own pool of threads, whose connections are bounded); by default on
    the refresher thread itself.
    """

    def __init__(
        self,
        count: Callable[[], list[Row]],
        *,
        interval: float = INTERVAL,
        linger: float = LINGER,
        run: Callable[[Callable[[], Counted]], Counted] | None = None,
    ) -> None:
        if interval <= 0 or linger < 0:
            raise ValueError(f"interval must be > 0 and linger >= 0, got {interval}, {linger}")
        self._count = count
        self._run = run or (lambda fn: fn())
        self.interval = interval
        self.linger = linger
        self._lock = threading.Lock()
        self._last: Counted | None = None
        self._not_before: datetime | None = None  # forget(): no count begun earlier is kept
        self._asked = 0.0  # time.monotonic() of the last read
        self._refresher: threading.Thread | None = None
        self._closed = threading.Event()

    def read(self) -> Counted:
        """The last snapshot (counted now if there is none), and the refresher kept
        running. KojoError if a count is needed and the database cannot answer."""
        with self._lock:
            self._asked = time.monotonic()
            last = self._last
            if self._refresher is None and not self._closed.is_set():
                self._refresher = threading.Thread(
                    target=self._refresh_while_read, name="kojo-dashboard-counts", daemon=True
                )
                self._refresher.start()
        return last if last is not None else self.refresh()

    def refresh(self) -> Counted:
        """Count now, on this thread, and keep the result unless a newer count was kept
        meanwhile; the snapshot kept."""
        started = utcnow()  # what a count shows is the jobs as they were when it began
        counted = Counted(self._count(), started)
        with self._lock:
            newer = self._last is None or self._last.at < counted.at
            if newer and (self._not_before is None or counted.at > self._not_before):
                self._last = counted
            return self._last or counted

    def forget(self) -> None:
        """Drop the snapshot: the next read counts (after an action changed the jobs)."""
        with self._lock:
            self._last = None
            self._not_before = utcnow()  # a count running now may predate the change

    def close(self, wait: float = 10.0) -> None:
        """Stop the refresher, waiting up to `wait` seconds for a count it has begun (so
        that the database can be closed after)."""
        self._closed.set()
        with self._lock:
            refresher = self._refresher
        if refresher is not None and refresher is not threading.current_thread():
            refresher.join(wait)

    @property
    def refreshing(self) -> bool:
        """Whether the refresher thread runs now."""
        with self._lock:
            return self._refresher is not None

    def _refresh_while_read(self) -> None:
        try:
            while not self._closed.wait(self.interval):
                with self._lock:
                    # Decided under the lock that read() takes: a read either sees this
                    # thread still running or starts the next one.
                    if time.monotonic() - self._asked > self.linger:
                        self._refresher = None
                        return
                try:
                    self._run(self.refresh)
                except KojoError as exc:  # the database is away: keep the last count
                    log.warning("counting jobs failed: %s: %s", type(exc).__name__, exc)
                except RuntimeError:  # `run`'s pool is shut down: the process ends
                    return
        finally:
            with self._lock:
                if self._refresher is threading.current_thread():
                    self._refresher = None
