"""The life every kojo process shares: signals → register (waiting out the database) →
use the registration as the app's owner → the process's loop → close.

A loop returning patience.EXIT_REGISTRATION_LOST closes the registration without blame
(its jobs are re-run, not counted as crashed); any other end blames it.

Job processes and the maintainer live exactly this (`Lifetime.run`). The server uses
`Lifetime.register` after installing the schema (and again when its registration is
lost); the root registers from inside its loop without blocking it, so it shares only
`process_info` and `close_owner`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from logging import Logger
from typing import TYPE_CHECKING

from ..backends import Backend, Owner, ProcessInfo
from ..backends.availability import Backoff
from ..backends.vouching import VouchLine
from ..settings import Settings
from . import patience
from .lineage import Lineage
from .signal_queue import SignalQueue

if TYPE_CHECKING:
    from ..app import App


def process_info(settings: Settings, lineage: Lineage, kind: str, **extra: object) -> ProcessInfo:
    """How this process registers: its host, pid, parent and place in the tree."""
    return ProcessInfo(
        settings.host_name, os.getpid(), os.getppid(), lineage.path, kind, extra or None
    )


def close_owner(backend: Backend, owner: Owner, blame: bool = True) -> None:
    """Unregister; an unavailable database is no error here (whoever reaps the
    registration later crashes what it held)."""
    try:
        owner.close(blame=blame)
    except Exception as exc:
        if not backend.is_unavailable(exc):
            raise


class Lifetime:
    """A registered process: `run(loop)` registers, lets `loop(owner)` run, closes.

    `stop()` is asked after every wait for the database, and should handle the
    signals that arrived (True: stop before registering).
    """

    def __init__(
        self,
        app: App,
        settings: Settings,
        lineage: Lineage,
        name: str,
        log: Logger,
        signals: Iterable[signal.Signals],
        line: VouchLine | None = None,
        **extra: object,
    ) -> None:
        self.app = app
        self.line = line
        self.settings = settings
        self.lineage = lineage
        self.extra = extra
        self.signals = SignalQueue(signals)
        self.backoff = Backoff(name, log)

    def register(self, stop: Callable[[], bool]) -> Owner | None:
        """Register as soon as the database answers and make it the app's owner; None if
        `stop()` said so first."""
        info = process_info(self.settings, self.lineage, self.lineage.kind, **self.extra)
        owner = patience.register(
            self.app.backend, info, self.backoff, self.signals, stop, self.line
        )
        if owner is not None:
            self.app.use_owner(owner)
        return owner

    def run(self, loop: Callable[[Owner], int], stop: Callable[[], bool]) -> int:
        owner = self.register(stop)
        if owner is None:
            return 0
        code = 0
        try:
            code = loop(owner)
            return code
        finally:
            close_owner(self.app.backend, owner, blame=code != patience.EXIT_REGISTRATION_LOST)
