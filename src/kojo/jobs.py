"""Job: what a worker receives, and the requests it may make.

Each request (retry, hold, complete_success, complete_failed) is applied at
once with a compare-and-set on the job's state and claim; inside
`job.transaction()` it is applied on that transaction and commits with it, or
not at all. A second request raises InvalidTransition (Kōjō silently ignored
it, quirk Q16).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import bounds, states
from .clock import utcnow
from .errors import InvalidArgument, InvalidTransition
from .logs import JobLogger
from .outcomes import Outcome

if TYPE_CHECKING:
    from .app import App
    from .locks import Lease


class Job:
    """A claimed job, as its worker sees it."""

    def __init__(
        self,
        app: App,
        row: Mapping[str, Any],
        owner_id: int | None,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        self._app = app
        self._row: dict[str, Any] = dict(row)
        self._owner_id = owner_id
        self._stop_requested = stop_requested
        self.request: Outcome | None = None  # the request applied, if any
        self.logger = JobLogger(self._row)

    # -- what the job is -----------------------------------------------------------------

    @property
    def id(self) -> int:
        return int(self._row["kojo_job_id"])

    @property
    def type_code(self) -> str:
        return str(self._row["type_code"])

    @property
    def payload(self) -> Any:
        return self._row.get("payload")

    @property
    def row(self) -> dict[str, Any]:
        """Every column of the job as last written by this process."""
        return dict(self._row)

    def __getattr__(self, name: str) -> Any:
        # times_worked, times_retried, times_crashed, priority, importance, ...
        row = self.__dict__.get("_row", {})
        if name in row:
            return row[name]
        raise AttributeError(name)

    @property
    def stop_requested(self) -> bool:
        """True when the server is draining or this job was cancelled: finish up soon."""
        return self._stop_requested()

    # -- what the job may do -----------------------------------------------------------

    def schedule(
        self,
        type_code: str,
        *,
        payload: Any = None,
        at: datetime | None = None,
        delay: float | timedelta | None = None,
        importance: int | None = None,
    ) -> int:
        """Schedule another job; inside `transaction()` it commits with it."""
        return self._app.schedule(
            type_code, payload=payload, at=at, delay=delay, importance=importance
        )

    def mutex(self, name: str, timeout: float | None = None) -> AbstractContextManager[Lease]:
        return self._app.mutex(name, timeout=timeout, job_id=self.id)

    def semaphore(
        self, name: str, slots: int, timeout: float | None = None
    ) -> AbstractContextManager[Lease]:
        return self._app.semaphore(name, slots, timeout=timeout, job_id=self.id)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A transaction on kojo's own database: user writes, requests and new jobs commit
        together, or none of them do."""
        before = (self.request, dict(self._row))
        try:
            with self._app.backend.write() as conn:
                yield conn
        except BaseException:
            self.request, self._row = before[0], before[1]
            self.logger.job = self._row
            raise

    def retry(self, delay: float | timedelta | None = None, at: datetime | None = None) -> None:
        """Run the job again later (now if neither `delay` nor `at` is given)."""
        if delay is not None and at is not None:
            raise InvalidArgument("retry: give delay or at, not both")
        now = utcnow()
        try:
            work_at = bounds.work_at(now, at, delay)
        except InvalidArgument as exc:
            raise InvalidArgument(f"retry: {exc}") from None
        self._request(states.RETRY, now=now, work_at=work_at)

    def hold(self) -> None:
        self._request(states.HOLD)

    def complete_success(self) -> None:
        self._request(states.COMPLETE_SUCCESS)

    def complete_failed(self) -> None:
        self._request(states.COMPLETE_FAILED)

    def _request(
        self,
        transition: states.Transition,
        *,
        now: datetime | None = None,
        work_at: datetime | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if self.request is not None:
            raise InvalidTransition(
                f"job {self.id}: {self.request} was already requested; "
                f"cannot also {transition.name}"
            )
        self._row = self._app.backend.job_transition(
            self.id,
            transition,
            now=now,
            owner=self._owner_id,
            work_at=work_at,
            row=self._row,
            extra=extra,
        )
        self.logger.job = self._row
        self.request = Outcome.of(transition)
