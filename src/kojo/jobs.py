"""Job: what a worker receives, and the requests it may make.

Each request (retry, hold, complete_success, complete_failed) is applied at
once with a compare-and-set on the job's state and claim; inside
`job.transaction()` it is applied on that transaction and commits with it, or
not at all. A second request raises InvalidTransition (Kōjō silently ignored
it, quirk Q16).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import bounds, json_text, states
from .clock import utcnow
from .errors import InvalidArgument, InvalidTransition
from .logs import JobLogger
from .outcomes import Outcome
from .rows import JobRow, RunSettings

if TYPE_CHECKING:
    from .app import App
    from .locks import Lease


MAX_PROGRESS_NOTE = 1000
# The largest result stored (JSON): results are read back whole.
MAX_RESULT_BYTES = 1024 * 1024


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
        self._owner_id = owner_id
        self._stop_requested = stop_requested
        self.request: Outcome | None = None  # the request applied, if any
        self.logger = JobLogger({})
        self._set_row(row)

    def _set_row(self, row: Mapping[str, Any]) -> None:
        """The job as last written: the columns (for the store's compare-and-set), their
        typed view, and its type's settings when the row carries them (a claimed job's
        does, see runner.with_type)."""
        self._row: dict[str, Any] = dict(row)
        # The typed views are made when first read: most jobs never need them, and making
        # them costs more than running a no-op job (the fields a run reads come straight
        # from the row, which the store typed already).
        self._typed: JobRow | None = None
        self._typed_settings: RunSettings | None = None
        self.logger.job = self._row

    @property
    def _fields(self) -> JobRow:
        typed = self._typed
        if typed is None:
            typed = self._typed = JobRow.from_mapping(self._row)
        return typed

    # -- what the job is -----------------------------------------------------------------

    @property
    def id(self) -> int:
        return int(self._row["kojo_job_id"])

    @property
    def kojo_job_id(self) -> int:
        return self._fields.kojo_job_id

    @property
    def type_code(self) -> str:
        return str(self._row["type_code"])

    @property
    def payload(self) -> Any:
        """The JSON value given at scheduling, or None."""
        return self._fields.payload

    @property
    def row(self) -> dict[str, Any]:
        """Every column of the job as last written by this process."""
        return dict(self._row)

    @property
    def name(self) -> str:
        return self._fields.name

    @property
    def priority(self) -> int:
        return self._fields.priority

    @property
    def importance(self) -> int:
        return self._fields.importance

    @property
    def work_at_date_time(self) -> datetime:
        return self._fields.work_at_date_time

    @property
    def assigned_state(self) -> states.State:
        return self._fields.assigned_state

    @property
    def next_state_request(self) -> states.Request:
        return self._fields.next_state_request

    @property
    def previous_state(self) -> states.State:
        return self._fields.previous_state

    @property
    def worker_uri(self) -> str:
        return str(self._row["worker_uri"])

    @property
    def can_work_in_parallel(self) -> bool:
        return self._fields.can_work_in_parallel

    @property
    def last_transition_date_time(self) -> datetime:
        return self._fields.last_transition_date_time

    @property
    def times_worked(self) -> int:
        return self._fields.times_worked

    @property
    def times_retried(self) -> int:
        return self._fields.times_retried

    @property
    def times_held(self) -> int:
        return self._fields.times_held

    @property
    def times_crashed(self) -> int:
        return self._fields.times_crashed

    @property
    def times_panicked(self) -> int:
        return self._fields.times_panicked

    @property
    def created_at_date_time(self) -> datetime:
        return self._fields.created_at_date_time

    @property
    def completed_at_date_time(self) -> datetime | None:
        return self._fields.completed_at_date_time

    @property
    def delete_after_date_time(self) -> datetime | None:
        return self._fields.delete_after_date_time

    @property
    def started_at_date_time(self) -> datetime | None:
        """When the run that succeeded was claimed (None until the job succeeds)."""
        return self._fields.started_at_date_time

    @property
    def kojo_process_id(self) -> int | None:
        """The process that claimed the job."""
        return self._fields.kojo_process_id

    @property
    def cron_fire_date_time(self) -> datetime | None:
        """The due minute a cron-made job is for (UTC); None for other jobs."""
        return self._fields.cron_fire_date_time

    @property
    def last_error(self) -> str | None:
        return self._fields.last_error

    @property
    def unique_key(self) -> str | None:
        """The key it was scheduled with (schedule(unique_key=)), if any."""
        return self._fields.unique_key

    @property
    def result(self) -> Any:
        """The result stored when it last completed (None while it runs)."""
        return self._fields.result

    @property
    def progress_fraction(self) -> float | None:
        """The progress last recorded (job.progress()), 0.0 to 1.0."""
        return self._fields.progress

    @property
    def progress_note(self) -> str | None:
        return self._fields.progress_note

    @property
    def awaited(self) -> bool:
        """Whether someone waits for its result (app.result())."""
        return self._fields.awaited

    @property
    def concurrency_key(self) -> str:
        """The key its type's concurrency_limit counts it under ("" when none was given)."""
        return self._fields.concurrency_key

    @property
    def limited(self) -> bool:
        """Whether its type had a concurrency_limit when it was scheduled."""
        return self._fields.limited

    @property
    def has_children(self) -> bool:
        """Whether jobs were scheduled to wait for this one (schedule(after=))."""
        return self._fields.has_children

    # Its type's settings, as they were when the job was claimed.

    @property
    def settings(self) -> RunSettings:
        """Its type's settings; AttributeError for a job read without them."""
        settings = self._typed_settings
        if settings is None:
            if not all(name in self._row for name in RunSettings.CONVERT):
                raise AttributeError("settings: this job was read without its type's columns")
            settings = self._typed_settings = RunSettings.from_mapping(self._row)
        return settings

    @property
    def auto_delete_interval_duration(self) -> str:
        return self.settings.auto_delete_interval_duration

    @property
    def auto_complete_success(self) -> bool:
        if "auto_complete_success" not in self._row:
            return self.settings.auto_complete_success  # raises, naming what is missing
        return bool(self._row["auto_complete_success"])

    @property
    def max_retries(self) -> int:
        return self.settings.max_retries

    @property
    def max_crashes(self) -> int:
        return self.settings.max_crashes

    @property
    def timeout(self) -> float | None:
        return self.settings.timeout

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
        unique_key: str | None = None,
        after: Iterable[int] | None = None,
        concurrency_key: str | None = None,
    ) -> int:
        """Schedule another job (app.schedule); inside `transaction()` it commits with it."""
        return self._app.schedule(
            type_code,
            payload=payload,
            at=at,
            delay=delay,
            importance=importance,
            unique_key=unique_key,
            after=after,
            concurrency_key=concurrency_key,
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
        request, row = self.request, self._row
        try:
            with self._app.backend.write() as conn:
                yield conn
        except BaseException:
            self.request = request
            self._set_row(row)
            raise

    def progress(self, fraction: float, note: str | None = None) -> None:
        """Record how far the job has come (0.0 to 1.0) and what it is doing, for
        `kojo jobs show` and the dashboard; inside `transaction()` it commits with it."""
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not 0.0 <= fraction <= 1.0
        ):
            raise InvalidArgument(f"progress must be a number from 0 to 1, got {fraction!r}")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_PROGRESS_NOTE):
            raise InvalidArgument(
                f"progress note must be a string of at most {MAX_PROGRESS_NOTE} characters, "
                f"got {note!r:.80}"
            )
        if self._owner_id is None:
            return  # not claimed through a registration (a test's Job): nothing to record
        self._app.backend.job_set_progress(self.id, self._owner_id, float(fraction), note)

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

    def complete_success(self, result: Any = None) -> None:
        """End the job successfully now, storing `result` (JSON) for `app.result()`."""
        if result is None:
            self._request(states.COMPLETE_SUCCESS)
            return
        text = json_text.dumps(result, "result", max_bytes=MAX_RESULT_BYTES, shown=200)
        self._request(states.COMPLETE_SUCCESS, extra={"result": text})

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
        row = self._app.backend.job_transition(
            self.id,
            transition,
            now=now,
            owner=self._owner_id,
            work_at=work_at,
            row=self._row,
            extra=extra,
        )
        self._set_row(row)
        self.request = Outcome.of(transition)
