"""Waiting out the database: every kojo process registers when the database answers,
and backs off (availability.Backoff) while it does not, still answering its signals.

A process whose registration was lost while it lived (its anchor session ended: a
database restart, a failover, a killed session) exits with EXIT_REGISTRATION_LOST. Its
parent replaces it at once, and its jobs are re-run without counting a crash against
them: the outage was not their fault.
"""

from __future__ import annotations

import select
from collections.abc import Callable

from ..backends import Backend, Owner, ProcessInfo
from ..backends.availability import Backoff
from ..backends.vouching import VouchLine
from .signal_queue import SignalQueue

EXIT_REGISTRATION_LOST = 75  # EX_TEMPFAIL


def pause(signals: SignalQueue, seconds: float) -> None:
    """Sleep up to `seconds`, waking early when a signal arrives."""
    select.select([signals.fileno()], [], [], max(0.0, seconds))


def register(
    backend: Backend,
    info: ProcessInfo,
    backoff: Backoff,
    signals: SignalQueue,
    stop: Callable[[], bool],
    line: VouchLine | None = None,
) -> Owner | None:
    """Register this process as soon as the database answers (through `line`, vouched for
    by the server's registration, when given); None if `stop()` says so first (it is asked
    after every wait, and should handle the signals that arrived)."""
    while True:
        try:
            owner = backend.register_owner(info) if line is None else line.register(info)
        except Exception as exc:
            if not backend.is_unavailable(exc):
                raise
            pause(signals, backoff.failed(exc))
            if stop():
                return None
            continue
        backoff.succeeded()
        return owner
