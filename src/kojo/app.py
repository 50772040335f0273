"""App: the database, the registry of job types, and the operations users call."""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import bounds, ipc, json_text, states
from .backends import Backend, open_backend
from .backends.errors import database_errors
from .backends.job_store import FINISHED_CHANNEL
from .clock import utcnow
from .control import Control, send_command
from .cron_scheduler import CronMemory
from .durations import parse_duration
from .errors import (
    InvalidArgument,
    InvalidJobType,
    InvalidTransition,
    JobFailed,
    JobNotFound,
    JobTypeDisabled,
    ResultTimeout,
    UnknownJobType,
    WorkerUnavailable,
)
from .ipc import Subscription
from .job_types import CODE_PATTERN, JobType, Worker, define, load_worker, load_yaml
from .locks import LockRequest, Locks
from .process_owner import ProcessOwner
from .refusals import operator_action
from .search import SEARCH_SCAN, check_search

if TYPE_CHECKING:
    from .backends import Owner
    from .why import Diagnosis

DEFAULT_DATABASE = "sqlite:///kojo.db"
TYPE_CACHE_SECONDS = 5.0
BATCH_INSERT_ROWS = 5000  # jobs per INSERT statement in schedule_many
MAX_PAYLOAD_BYTES = 1024 * 1024  # the default cap of one job's payload (App(max_payload_bytes=))
F = TypeVar("F", bound=Callable[..., Any])


MAX_UNIQUE_KEY = 255


def check_key(what: str, key: object) -> str:
    """A unique or concurrency key: 1 to 255 printable characters, else InvalidArgument
    naming it."""
    if not isinstance(key, str):
        raise InvalidArgument(f"{what} must be a string, got {key!r}")
    if not 1 <= len(key) <= MAX_UNIQUE_KEY or not key.isprintable():
        raise InvalidArgument(
            f"{what} must be 1 to {MAX_UNIQUE_KEY} printable characters, got {key[:80]!r}"
            + (f" ({len(key)} characters)" if len(key) > 80 else "")
        )
    return key


def check_unique_key(key: object) -> str:
    return check_key("unique key", key)


def check_concurrency_key(key: object) -> str:
    return check_key("concurrency key", key)


MAX_PARENTS = 10_000


def check_after(after: object) -> list[int]:
    """The ids a new job waits for (none: []), else InvalidArgument naming the value."""
    if after is None:
        return []
    if isinstance(after, str | bytes | int) or not isinstance(after, Iterable):
        raise InvalidArgument(f"after must be a list of job ids, got {after!r:.80}")
    ids = sorted({bounds.check_job_id(job_id) for job_id in after})
    if len(ids) > MAX_PARENTS:
        raise InvalidArgument(f"after may name at most {MAX_PARENTS} jobs, got {len(ids)}")
    return ids


def _duration(what: str, value: object) -> timedelta:
    """A non-negative length of time from a timedelta or an ISO-8601 duration text, else
    InvalidArgument naming the value."""
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, str):
        try:
            delta = parse_duration(value)
        except ValueError as exc:
            raise InvalidArgument(f"{what}: {exc}") from None
    else:
        raise InvalidArgument(f"{what} must be an ISO-8601 duration or a timedelta, got {value!r}")
    if delta < timedelta(0):
        raise InvalidArgument(f"{what} must not be negative, got {value!r}")
    return delta


def database_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("KOJO_DATABASE_URL") or DEFAULT_DATABASE


def encode_payload(payload: Any, max_bytes: int = MAX_PAYLOAD_BYTES) -> str | None:
    """JSON text of a payload; InvalidPayload (naming the value) if it is not JSON, or
    is larger than `max_bytes` once encoded."""
    if payload is None:
        return None
    return json_text.dumps(payload, "payload", max_bytes=max_bytes, shown=200)


class App:
    """A kojo application: where its database is and which job types it defines."""

    def __init__(
        self, database: str | None = None, *, max_payload_bytes: int = MAX_PAYLOAD_BYTES
    ) -> None:
        """`max_payload_bytes`: the largest job payload accepted, as UTF-8 JSON (a job
        table of huge payloads is slow to list and to work; store big data elsewhere and
        pass its key)."""
        url = database_url(database)
        self.max_payload_bytes = bounds.check_integer(
            "max_payload_bytes", max_payload_bytes, 1, bounds.INT8_MAX
        )
        self.database_url = url
        self.job_types: dict[str, JobType] = {}
        self._registered: set[str] = set()
        self._type_rows: dict[str, tuple[float, dict[str, Any]]] = {}
        self._workers: dict[str, Worker] = {}
        self._lock = threading.Lock()
        # This process's registration (for locks and clients), the lock engine, and what
        # cron remembers between passes: made on first use, one each per App.
        self._owners: ProcessOwner | None = None
        self._locks: Locks | None = None
        self.cron_memory = CronMemory()
        # Opened now (it connects only when used): a bad URL is refused here, and a
        # relative SQLite path is resolved before any chdir.
        self._backend = open_backend(url)

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def owners(self) -> ProcessOwner:
        """Holds this process's owner (see owner())."""
        with self._lock:
            if self._owners is None:
                self._owners = ProcessOwner(self.backend)
            return self._owners

    @property
    def lock_engine(self) -> Locks:
        """The mutexes and semaphores of this App, as used from this process."""
        owners = self.owners
        with self._lock:
            if self._locks is None:
                self._locks = Locks(self.backend, owners)
            return self._locks

    # -- job types ----------------------------------------------------------------------

    def job_type(self, code: str, **options: Any) -> Callable[[F], F]:
        """Decorator: define the job type `code` worked by the decorated function."""

        def register(worker: F) -> F:
            self.add_job_type(define(code, worker, **options))
            return worker

        return register

    def add_job_type(self, job_type: JobType) -> JobType:
        if job_type.code in self.job_types:
            existing = self.job_types[job_type.code]
            if existing.worker_uri != job_type.worker_uri:
                raise InvalidJobType(
                    f"invalid job type field code={job_type.code!r}: already defined "
                    f"with worker {existing.worker_uri}"
                )
        self.job_types[job_type.code] = job_type
        self._registered.discard(job_type.code)
        return job_type

    def load_job_types(self, path: str | Path) -> list[JobType]:
        """Add the job types of a YAML file."""
        return [self.add_job_type(t) for t in load_yaml(path)]

    def register_job_types(self, codes: Iterable[str] | None = None) -> list[str]:
        """Store this app's job types in the database (insert or update). Types stored as
        defined here are left alone: a restart that changed none reads, and writes
        nothing (no transaction, no commit to wait for: docs/architecture.md, Start-up)."""
        chosen = list(codes) if codes is not None else list(self.job_types)
        with database_errors():
            stored = self._stored_types(chosen)
            changed = [c for c in chosen if not self.job_types[c].is_stored_in(stored.get(c))]
            if changed:
                with self.backend.write():  # one transaction for them all
                    for code in changed:
                        self.backend.type_register(self.job_types[code])
        for code in chosen:
            self._registered.add(code)
            self._type_rows.pop(code, None)
        return chosen

    def _stored_types(self, codes: list[str]) -> dict[str, dict[str, Any]]:
        """The stored rows of these types, by code (one read)."""
        if len(codes) == 1:
            row = self.backend.type_get(codes[0])
            return {} if row is None else {codes[0]: row}
        return {str(row["type_code"]): row for row in self.backend.type_list()}

    def _ensure_registered(self, code: str) -> None:
        if code in self.job_types and code not in self._registered:
            self.register_job_types([code])

    def set_type_enabled(self, code: str, enabled: bool) -> None:
        with database_errors():
            if not self.backend.type_set_enabled(code, enabled):
                raise UnknownJobType(f"unknown job type: {code!r}")
        self._type_rows.pop(code, None)

    def set_type_paused(self, code: str, paused: bool) -> None:
        with database_errors():
            if not self.backend.type_set_paused(code, paused):
                raise UnknownJobType(f"unknown job type: {code!r}")

    def type_row(self, code: str, max_age: float = TYPE_CACHE_SECONDS) -> dict[str, Any]:
        """The stored job type, cached for a few seconds per process."""
        cached = self._type_rows.get(code)
        now = time.monotonic()
        if cached is not None and now - cached[0] < max_age:
            return cached[1]
        row = self.backend.type_get(code)
        if row is None:
            raise UnknownJobType(f"unknown job type: {code!r}")
        self._type_rows[code] = (now, row)
        return row

    def worker_for(self, type_code: str, worker_uri: str) -> Worker:
        """The callable that works jobs of a type: this app's, else imported by reference.
        WorkerUnavailable if it cannot be imported here."""
        job_type = self.job_types.get(type_code)
        if job_type is not None and job_type.worker is not None:
            return job_type.worker
        worker = self._workers.get(worker_uri)
        if worker is None:
            found = load_worker(worker_uri)
            if isinstance(found, str):
                # Files deployed since the last try may be hidden by the import system's
                # cache of directory listings: look once more, afresh.
                importlib.invalidate_caches()
                found = load_worker(worker_uri)
            if isinstance(found, str):
                raise WorkerUnavailable(type_code, worker_uri, found)
            worker = self._workers[worker_uri] = found
        return worker

    # -- schema -------------------------------------------------------------------------

    def after_fork(self) -> None:
        """In a forked child: let go of the parent's connections (they stay the parent's)."""
        self.backend.after_fork()
        self._type_rows.clear()

    def install(self) -> int:
        """Create or upgrade kojo's tables (idempotent); the schema version."""
        with database_errors():
            return self.backend.install()

    def uninstall(self) -> None:
        """Drop kojo's tables and everything in them."""
        with database_errors():
            self.backend.uninstall()

    # -- jobs ---------------------------------------------------------------------------

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
        """Create a job of `type_code` to run now, at `at`, or after `delay` seconds; its id.

        With `unique_key`: if an unfinished job of this type has that key, create nothing
        and return that job's id (docs/unique-jobs.md). With `after`: start only once
        each of those jobs is complete_success (docs/dependencies.md). With
        `concurrency_key`: at most the type's concurrency_limit jobs with that key work at
        once (docs/concurrency-limits.md)."""
        options: dict[str, Any] = {
            "at": at,
            "delay": delay,
            "importance": importance,
            "after": after,
            "concurrency_key": concurrency_key,
        }
        if unique_key is None:
            return self.schedule_many(type_code, [payload], **options)[0]
        return self.schedule_unique(type_code, unique_key, payload=payload, **options)[0]

    def schedule_unique(
        self,
        type_code: str,
        unique_key: str,
        *,
        payload: Any = None,
        at: datetime | None = None,
        delay: float | timedelta | None = None,
        importance: int | None = None,
        after: Iterable[int] | None = None,
        concurrency_key: str | None = None,
    ) -> tuple[int, bool]:
        """`schedule(..., unique_key=)`, telling also whether the job was created now:
        (id, True), or (the unfinished job's id, False)."""
        options = self._insert_options(type_code, at, delay, importance, after, concurrency_key)
        unique_key = check_unique_key(unique_key)
        encoded = encode_payload(payload, self.max_payload_bytes)
        with database_errors():
            self._ensure_registered(type_code)
            backend = self.backend
            with backend.write():
                outcome = backend.job_insert_unique(type_code, encoded, unique_key, **options)
                if outcome is None:
                    self._refuse(type_code)
                assert outcome is not None
                if outcome[1]:
                    backend.notify("jobs")
        return outcome

    def result(self, job_id: int, timeout: float | None = None) -> Any:
        """Wait for the job to finish (up to `timeout` seconds; None: no limit) and return
        its worker's return value; JobFailed if it ended other than complete_success,
        ResultTimeout if it has not finished in time (docs/results.md)."""
        job_id = bounds.check_job_id(job_id)
        if timeout is not None:
            timeout = bounds.check_seconds("timeout", timeout, ipc.MAX_TIMEOUT)
        deadline = None if timeout is None else time.monotonic() + timeout
        with database_errors(), self.subscribe(FINISHED_CHANNEL) as finished:
            # Listening before marking the job awaited: its finish cannot slip between.
            row = self.backend.job_await(job_id)
            while row is not None and not states.is_finished(row["assigned_state"]):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ResultTimeout(
                        f"job with ID[{job_id}] has not finished after {timeout:g} s "
                        f"(it is {row['assigned_state']})"
                    )
                for message in finished.messages(timeout=left):
                    if isinstance(message, dict) and message.get("id") == job_id:
                        break  # a hint: the row says whether it is so
                row = self.backend.job_get(job_id)
        if row is None:
            raise JobNotFound(f"no job with id {job_id} (a finished job may have been deleted)")
        if row["assigned_state"] == states.State.COMPLETE_SUCCESS.value:
            return row["result"]
        error = (row["last_error"] or "").strip().splitlines()
        raise JobFailed(
            f"job with ID[{job_id}] ended {row['assigned_state']}"
            + (f": {error[-1]}" if error else ""),
            row,
        )

    def schedule_many(
        self,
        type_code: str,
        payloads: Sequence[Any],
        *,
        at: datetime | None = None,
        delay: float | timedelta | None = None,
        importance: int | None = None,
        after: Iterable[int] | None = None,
        concurrency_key: str | None = None,
    ) -> list[int]:
        """Create one job per payload, in one transaction; their ids. With `after`, each
        starts only once all those jobs are complete_success (docs/dependencies.md)."""
        options = self._insert_options(type_code, at, delay, importance, after, concurrency_key)
        encoded = [encode_payload(p, self.max_payload_bytes) for p in payloads]
        if not encoded:
            return []
        with database_errors():
            self._ensure_registered(type_code)
            backend = self.backend

            def insert() -> list[int]:
                ids: list[int] = []
                for start in range(0, len(encoded), BATCH_INSERT_ROWS):
                    chunk = encoded[start : start + BATCH_INSERT_ROWS]
                    inserted = backend.job_insert_batch(type_code, chunk, **options)
                    if len(inserted) != len(chunk):
                        self._refuse(type_code)
                    ids.extend(inserted)
                backend.notify("jobs")
                return ids

            # A deadlock victim (a child scheduled `after` a parent that is finishing, on
            # MySQL) is run again when this call owns its transaction.
            return backend.retrying(insert)

    def _insert_options(
        self,
        type_code: str,
        at: datetime | None,
        delay: float | timedelta | None,
        importance: int | None,
        after: Iterable[int] | None,
        concurrency_key: str | None,
    ) -> dict[str, Any]:
        """The scheduling options checked (InvalidArgument naming a bad one), as the store's
        inserts take them."""
        self._check_type_code(type_code)
        now = utcnow()
        return {
            "work_at": bounds.work_at(now, at, delay),
            "importance": None if importance is None else bounds.check_importance(importance),
            "now": now,
            "after": check_after(after),
            "concurrency_key": (
                "" if concurrency_key is None else check_concurrency_key(concurrency_key)
            ),
        }

    @staticmethod
    def _check_type_code(type_code: object) -> None:
        if not isinstance(type_code, str) or not CODE_PATTERN.match(type_code):
            # No such type can exist; refused before the driver meets text it cannot encode.
            raise InvalidArgument(
                f"job type code must match [a-z0-9_.-]{{1,255}}, got {type_code!r}"
            )

    def _refuse(self, type_code: str) -> None:
        row = self.backend.type_get(type_code)
        if row is None:
            raise UnknownJobType(f"unknown job type: {type_code!r}")
        raise JobTypeDisabled(f"job type with type code [{type_code}] is not enabled")

    def job(self, job_id: int) -> dict[str, Any]:
        """Every column of a job; JobNotFound if there is none."""
        job_id = bounds.check_job_id(job_id)
        with database_errors():
            row = self.backend.job_get(job_id)
        if row is None:
            raise JobNotFound(f"no job with id {job_id}")
        return row

    def jobs(
        self,
        type_code: str | None = None,
        state: str | None = None,
        limit: int = 1000,
        *,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """Jobs newest first (highest id first): of `type_code` and in `state` when given,
        at most `limit`, with ids below `before` when given (the next page)."""
        return self.job_page(type_code, state, limit, before=before, future_cron=True)[0]

    def job_page(
        self,
        type_code: str | None = None,
        state: str | None = None,
        limit: int = 50,
        *,
        before: int | None = None,
        future_cron: bool = False,
    ) -> tuple[list[dict[str, Any]], int]:
        """`jobs()` as `kojo jobs list` shows them: cron jobs made ahead of their minute
        (waiting, not yet due) are left out unless `future_cron`; the rows, and how many
        were left out."""
        limit, before = _check_page(type_code, state, limit, before)
        with database_errors():
            return self.backend.job_page(type_code, state, limit, before, utcnow(), future_cron)

    def job_timeline(self, job_id: int) -> list[dict[str, Any]]:
        """The job's transitions, oldest first, each {at, transition, from_state, to_state,
        actor, kojo_process_id, path, note, recorded} (timeline.py: which are recorded,
        which read back from the job's columns); JobNotFound if there is no such job."""
        steps: list[dict[str, Any]] = self.job_detail(job_id)["timeline"]
        return steps

    def job_detail(self, job_id: int) -> dict[str, Any]:
        """Every column of a job and its `timeline` (`kojo jobs show --json`)."""
        from .timeline import timeline  # for operators: not imported by a server

        row = self.job(job_id)
        with database_errors():
            events = self.backend.job_events(int(row["kojo_job_id"]))
        return {**row, "timeline": timeline(row, events)}

    def job_search(
        self,
        text: str,
        type_code: str | None = None,
        state: str | None = None,
        limit: int = 50,
        *,
        before: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Jobs newest first whose payload's JSON text contains `text` (case-sensitive), of
        `type_code` and in `state` when given, ids below `before`. A scan: each call looks
        at no more than SEARCH_SCAN jobs, so it may return fewer than `limit` (even none)
        while older jobs remain. The rows, and the `before` of the next call (None: no
        older jobs). InvalidArgument naming a bad value."""
        text = check_search(text)
        limit, before = _check_page(type_code, state, limit, before)
        with database_errors():
            return self.backend.job_search(text, type_code, state, limit, before, SEARCH_SCAN)

    def stats(self) -> list[dict[str, Any]]:
        """Jobs per type and state: `{"type_code", "assigned_state", "count"}` for each pair
        that has jobs, by type then state."""
        with database_errors():
            return self.backend.job_stats()

    def why(self, job_id: int) -> Diagnosis:
        """Why the job is not running now (`kojo jobs why`); JobNotFound if there is none."""
        from .rows import JobRow, TypeRow
        from .why import Situation, diagnose  # for operators: not imported by a server

        row = self.job(job_id)
        with database_errors():
            type_row = self.backend.type_get(row["type_code"])
            if type_row is None:  # deleted with its jobs (ON DELETE CASCADE): gone meanwhile
                raise JobNotFound(f"no job with id {job_id}")
            situation = Situation(
                self.backend, JobRow.from_mapping(row), TypeRow.from_mapping(type_row), utcnow()
            )
            return diagnose(situation)

    def retry(self, job_id: int) -> dict[str, Any]:
        """Put a panicked, crashed, complete_failed or complete_terminated job back to
        waiting, to run now; InvalidTransition (naming the job and its state) otherwise."""
        row = self.job(job_id)
        state = row["assigned_state"]
        if not states.RERUN.allows(state, row["next_state_request"]):
            raise InvalidTransition(
                f"job {job_id} is {state}: only a panicked, crashed, complete_failed or "
                "complete_terminated job can be retried"
            )
        with database_errors():
            if row["unique_key"] is not None and states.is_finished(state):
                holder = self.backend.job_unique_holder(row["type_code"], row["unique_key"])
                if holder is not None and holder != job_id:
                    raise InvalidTransition(
                        f"job {job_id} cannot be retried: job {holder} of type "
                        f"{row['type_code']} has its unique key {row['unique_key']!r} and "
                        "is unfinished"
                    )
            return self.backend.job_transition(job_id, states.RERUN, actor="operator")

    def purge(
        self,
        state: str | None = None,
        type_code: str | None = None,
        older_than: timedelta | str | None = None,
        *,
        count_only: bool = False,
    ) -> int:
        """Delete finished (complete_*) jobs, only of `state` and `type_code` when given,
        and only those completed more than `older_than` (a timedelta or an ISO-8601
        duration) ago; how many (`count_only`: how many would go, deleting nothing).
        InvalidArgument for a state that is not finished, an unknown type, a bad duration."""
        finished = sorted(s.value for s in states.TERMINAL_STATES)
        if state is not None and state not in finished:
            raise InvalidArgument(
                f"state {state!r} is not a finished state: purge deletes only "
                f"{', '.join(finished)} jobs"
            )
        if type_code is not None:
            self._check_type_code(type_code)
            with database_errors():
                if self.backend.type_get(type_code) is None:
                    raise InvalidArgument(f"unknown job type {type_code!r}")
        now = utcnow()
        cutoff = now
        if older_than is not None:
            age = _duration("older_than", older_than)
            cutoff = now - age if age < now - bounds.DATE_MIN else bounds.DATE_MIN
        with database_errors():
            if count_only:
                return self.backend.job_purge_count(state, type_code, cutoff)
            return self.backend.job_purge(state, type_code, cutoff)

    def process_table(self) -> list[dict[str, Any]]:
        """Every live kojo process of the cluster, with the ids of the jobs it is working."""
        with database_errors():
            processes = self.backend.processes()
            working = self.backend.jobs_working_by_owner()
        return [{**p.as_dict(), "jobs": working.get(p.kojo_process_id, [])} for p in processes]

    @operator_action("hold")
    def hold(self, job_id: int) -> dict[str, Any]:
        """Park a waiting or working job: it is not worked again until released."""
        job_id = bounds.check_job_id(job_id)
        with database_errors():
            return self.backend.job_transition(job_id, states.HOLD, actor="operator")

    @operator_action("release")
    def release(self, job_id: int) -> dict[str, Any]:
        """Put a held, panicked or crashed job back to waiting."""
        job_id = bounds.check_job_id(job_id)
        with database_errors():
            return self.backend.job_transition(job_id, states.WAIT_FOR_WORK, actor="operator")

    @operator_action("cancel")
    def cancel(self, job_id: int) -> dict[str, Any]:
        """Terminate a job (complete_terminated); a running one is stopped where it runs."""
        job_id = bounds.check_job_id(job_id)
        backend = self.backend

        def cancel() -> dict[str, Any]:
            row = backend.job_get_with_type(job_id)
            if row is None:
                raise JobNotFound(f"no job with id {job_id}")
            process = row["kojo_process_id"]
            if row["assigned_state"] != states.State.WORKING.value or process is None:
                row = backend.job_transition(
                    job_id, states.COMPLETE_TERMINATED, row=row, actor="operator"
                )
                if row["previous_state"] == states.State.WORKING.value:
                    send_command(backend, {"cancel": job_id})
                return row
            # The stop names the process whose claim it ended: the job's row may be
            # deleted (auto_delete_interval_duration=PT0S) before a root reads the stop.
            row = backend.job_transition(
                job_id, states.COMPLETE_TERMINATED, owner=int(process), row=row, actor="operator"
            )
            send_command(backend, {"cancel": job_id, "process": int(process)})
            return row

        with database_errors():
            return backend.retrying(cancel)

    # -- IPC (docs/ipc.md) ---------------------------------------------------------------

    def publish(self, channel: str, message: Any) -> int:
        """Send a JSON message to every current subscriber of `channel`, on every host; its id.

        Inside a write transaction of this thread it is sent at commit, or not at all.
        """
        with database_errors():
            return ipc.publish(self.backend, channel, message)

    def subscribe(self, channel: str) -> Subscription:
        """Listen to `channel` from now on: `for message in sub.messages(timeout=5): ...`."""
        return Subscription(self.backend, channel)

    @property
    def control(self) -> Control:
        """Cluster control: ping(), pause(code), resume(code), scale(host, n), drain(host)."""
        return Control(self)

    # -- locks (docs/locks.md) -------------------------------------------------------------

    def owner(self) -> Owner:
        """This process's owner (a registration that dies with the process).

        The one given to use_owner(), else a "client" owner registered on first
        use and kept for the life of the process (re-made after a fork).
        """
        with database_errors():
            return self.owners.get()

    def use_owner(self, owner: Owner | None) -> None:
        """Make `owner` this process's owner; the caller registered it and closes it."""
        self.owners.use(owner)

    def mutex(
        self, name: str, timeout: float | None = None, *, job_id: int | None = None
    ) -> LockRequest:
        """`with app.mutex(name) as lease:` one holder at a time, cluster-wide.

        timeout None waits forever, 0 tries once; LockTimeout when it expires.
        """
        return self.semaphore(name, 1, timeout, job_id=job_id)

    def semaphore(
        self, name: str, slots: int, timeout: float | None = None, *, job_id: int | None = None
    ) -> LockRequest:
        """`with app.semaphore(name, slots) as lease:` at most `slots` holders at a time."""
        if job_id is not None:
            job_id = bounds.check_job_id(job_id)
        return self.lock_engine.request(name, slots, timeout, job_id)

    def locks(self) -> list[dict[str, Any]]:
        """Held slots (state "held") and waiters (state "waiting"), cluster-wide."""
        return self.lock_engine.listing()


def _check_page(
    type_code: str | None, state: str | None, limit: int, before: int | None
) -> tuple[int, int | None]:
    """A page of jobs' filters checked (InvalidArgument naming a bad one): its limit and
    `before`."""
    if state is not None and (not isinstance(state, str) or state not in states.STATES):
        raise InvalidArgument(f"unknown state {state!r}: one of {', '.join(sorted(states.STATES))}")
    if type_code is not None and not isinstance(type_code, str):
        raise InvalidArgument(f"type code must be a string or None, got {type_code!r}")
    return bounds.check_limit(limit), None if before is None else bounds.check_job_id(before)
