"""Running totals of finished jobs (kojo_job_tally, schema version 6), for /metrics and the
dashboard's charts: written by the process that finishes jobs, in the transaction that
finishes them, so that a scrape never scans kojo_job.

A row holds one process's finishes of one type and outcome in one minute: how many, and
for those that ran (`timed`) the sums and histogram buckets of their duration (finish -
start) and wait (start - work_at). JobStore adds one row per group of a batch (one
statement, `tally_add`); the maintainer folds the minutes older than an hour into one row
per type and outcome (`tally_fold`). Nothing lowers a counter.
"""

from __future__ import annotations

import operator
import os
from abc import abstractmethod
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import repeat
from typing import Any

from .. import states
from ..clock import as_utc
from .driver import Driver

# Histogram bounds in seconds (Prometheus' defaults, then longer ones for slow jobs and
# backlogs) and the column suffix of each (schema_6.sql).
BOUNDS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
BOUNDS += (900.0, 3600.0)
SUFFIXES: tuple[str, ...] = (
    "5ms",
    "10ms",
    "25ms",
    "50ms",
    "100ms",
    "250ms",
    "500ms",
    "1s",
    "2_5s",
    "5s",
)
SUFFIXES += ("10s", "30s", "1m", "5m", "15m", "1h")
DURATION_COLUMNS = tuple(f"duration_{s}" for s in SUFFIXES)
WAIT_COLUMNS = tuple(f"wait_{s}" for s in SUFFIXES)
# An attempt that ended and will run again: not a finished job, but an end all the same.
RETRIED = "retried"
CRASHED = states.State.CRASHED.value
OUTCOMES = (*sorted(states.FINISHED_STATES), RETRIED, CRASHED)
FAILURES = frozenset(
    {
        states.State.COMPLETE_FAILED.value,
        states.State.COMPLETE_FAILED_SCHEDULE_LIMIT_CHECK.value,
        states.State.COMPLETE_TERMINATED.value,
        states.State.PANICKED.value,
    }
)
# Minute rows younger than this stay as they are: the charts show the last hour by minute.
KEPT_BY_MINUTE = timedelta(minutes=65)
WORKING = states.State.WORKING.value
ONE_SECOND = timedelta(seconds=1)


def minute_of(moment: datetime) -> int:
    """Minutes since 1970 (UTC) of `moment`: the tally's key, never 0 for a real time."""
    return int(as_utc(moment).timestamp()) // 60


@dataclass
class Group:
    """The finishes of one type and outcome in one batch."""

    finished: int = 0
    timed: int = 0
    duration_sum: float = 0.0
    wait_sum: float = 0.0
    duration_buckets: list[int] = field(default_factory=lambda: [0] * len(BOUNDS))
    wait_buckets: list[int] = field(default_factory=lambda: [0] * len(BOUNDS))

    def add(self, rows: Sequence[Mapping[str, Any]], now: datetime, ran: bool) -> None:
        """Jobs that ended at `now`; timed when they `ran` (ended while working, not
        terminated or gated while waiting) and their rows carry the claim time and
        work_at. Written for the auto-completed batch, the plain path: the jobs of one
        claim share their start (last_transition_date_time, set by the claim) and jobs
        scheduled together their work_at, and a span shared is counted once (a
        timedelta's seconds cost more than the rest of a job's tally); else C-level
        loops."""
        self.finished += len(rows)
        if not ran or not rows:
            return
        try:
            starts = list(map(START, rows))
            dues = list(map(DUE, rows))
        except KeyError:  # a caller's row without them (job_complete_many given ids)
            return
        count = len(rows)
        self.timed += count
        start, due = starts[0], dues[0]
        one_start = starts.count(start) == count
        if one_start:
            self.duration_sum += _count(self.duration_buckets, now - start, count)
        else:
            self.duration_sum += _count_each(
                self.duration_buckets, map(operator.sub, repeat(now), starts)
            )
        if one_start and dues.count(due) == count:
            self.wait_sum += _count(self.wait_buckets, start - due, count)
        else:
            self.wait_sum += _count_each(self.wait_buckets, map(operator.sub, starts, dues))

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "finished": self.finished,
            "timed": self.timed,
            "duration_sum": self.duration_sum,
            "wait_sum": self.wait_sum,
        }
        params.update(zip(DURATION_COLUMNS, self.duration_buckets, strict=True))
        params.update(zip(WAIT_COLUMNS, self.wait_buckets, strict=True))
        return params


START = operator.itemgetter("last_transition_date_time")
DUE = operator.itemgetter("work_at_date_time")


def _count(buckets: list[int], span: timedelta, count: int) -> float:
    """Add `count` values of `span` to `buckets`; their seconds summed (see _count_each)."""
    seconds = max(0.0, span / ONE_SECOND)
    index = bisect_left(BOUNDS, seconds)
    if index < len(BOUNDS):
        buckets[index] += count
    return seconds * count


def _count_each(buckets: list[int], spans: Iterable[timedelta]) -> float:
    """Add each span's seconds (never below 0: hosts whose clocks disagree) to the bucket
    above the previous bound and up to its own (none past the last: only `timed` counts
    those); their sum. A sort and a bisection per bound: the cost barely grows with the
    batch."""
    values: list[float] = list(map(operator.truediv, spans, repeat(ONE_SECOND)))
    if min(values) < 0:
        values = [max(0.0, v) for v in values]
    ordered = sorted(values)
    at_most = [bisect_right(ordered, bound) for bound in BOUNDS]
    for index, (upto, below) in enumerate(zip(at_most, [0, *at_most], strict=False)):
        buckets[index] += upto - below
    return sum(values)


def outcome_of(row: Mapping[str, Any], changes: Mapping[str, Any]) -> str | None:
    """What a transition from `row` writing `changes` ends, for the tally: the finished
    state; `retried` or `crashed` for a running attempt that will run again; None when no
    attempt ends (a hold, an unclaim, a release...)."""
    new = changes["assigned_state"]
    if new in states.FINISHED_STATES:
        return str(new)
    if row["assigned_state"] != WORKING:
        return None
    if new == CRASHED:
        return CRASHED
    if "times_retried" in changes:
        return RETRIED
    return None


class TallyStore(Driver):
    """Adds finishes to kojo_job_tally; folds its old minutes."""

    def tally(
        self,
        type_code: str,
        outcome: str,
        rows: Sequence[Mapping[str, Any]],
        now: datetime,
        *,
        ran: bool = True,
    ) -> None:
        """Inside write(): add jobs of one type that ended `outcome` at `now`, in one
        statement; each row as it was before (its claim time and work_at), timed if they
        `ran`."""
        group = Group()
        group.add(rows, now, ran)
        if not group.finished:
            return
        params = group.params()
        params.update(
            minute=minute_of(now), type_code=type_code, outcome=outcome, writer=os.getpid()
        )
        self.execute("tally_add", params)

    def tally_fold(self, now: datetime) -> int:
        """Fold the minutes older than KEPT_BY_MINUTE into one row per type and outcome;
        how many of those it added to. Cheap when there is nothing to fold: one index
        seek, no write."""
        before = minute_of(now - KEPT_BY_MINUTE)
        oldest = self.fetchone("tally_oldest")
        if oldest is None or oldest["minute"] is None or int(oldest["minute"]) >= before:
            return 0
        with self.write():
            return self._fold(before)

    @abstractmethod
    def _fold(self, before: int) -> int:
        """Inside write(): add the rows of the minutes before `before` to the folded rows
        and delete them; how many folded rows were written."""
