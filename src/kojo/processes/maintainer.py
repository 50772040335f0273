"""The maintainer: the cluster's housekeeping, in one process of the whole cluster at a time.

Every root forks one; they contend for the mutex "kojo.maintainer" and the
holder runs the duties every second: crash detection (reaping dead
processes), cron scheduling, the schedule-limit gate, deleting expired jobs.
If the holder dies, its lock dies with it and another maintainer takes over.
None of this runs in a job process, so it never delays job work.
"""

from __future__ import annotations

import os
import select
import signal
from typing import TYPE_CHECKING

from .. import maintenance
from ..backends import Owner
from ..backends.availability import Backoff
from ..backends.vouching import VouchLine
from ..errors import KojoError, LockTimeout
from ..locks import Lease
from ..logs import get_logger
from ..settings import Settings
from . import patience
from .lifetime import Lifetime
from .lineage import Lineage

if TYPE_CHECKING:
    from ..app import App

INTERVAL = 1.0
MUTEX = "kojo.maintainer"
log = get_logger("maintainer")


class Maintainer:
    def __init__(
        self, app: App, lineage: Lineage, settings: Settings, line: VouchLine | None = None
    ) -> None:
        self.app = app
        self.line = line
        self.lineage = lineage
        self.settings = settings
        self.stopped: list[int] = []

    def run(self) -> int:
        self.life = Lifetime(
            self.app,
            self.settings,
            self.lineage,
            f"Maintainer [{os.getpid()}]",
            log,
            [signal.SIGTERM],
            self.line,
        )
        return self.life.run(self._loop, self.stop)

    def stop(self) -> bool:
        self.stopped.extend(self.life.signals.pop_all())
        return bool(self.stopped)

    def _loop(self, owner: Owner) -> int:
        backend = self.app.backend
        signals, backoff = self.life.signals, self.life.backoff
        lease: Lease | None = None
        code = 0
        try:
            while not self.stop():
                if owner.is_lost():
                    log.warning("Maintainer: lost its database registration; stopping.")
                    code = patience.EXIT_REGISTRATION_LOST
                    return code
                wait = INTERVAL
                try:
                    if lease is None:
                        lease = self._try_lock()
                    if lease is not None:
                        self._pass(backoff)
                    else:
                        backoff.succeeded()
                except Exception as exc:
                    if not backend.is_unavailable(exc):
                        raise
                    wait = backoff.failed(exc)
                if owner.is_lost():
                    continue  # seen at the top of the loop
                owner_fd = owner.fileno()
                ready, _, _ = select.select([signals.fileno(), owner_fd], [], [], wait)
                if owner_fd in ready:
                    try:
                        owner.wait(0)
                    except Exception:
                        if not owner.is_lost():
                            raise
            return code
        finally:
            if lease is not None and code == 0:
                try:
                    lease.release()
                except KojoError:
                    pass

    def _pass(self, backoff: Backoff) -> None:
        """One maintenance pass; a duty failing because the database is away counts as an
        outage (one line), any other failure is logged with its traceback."""
        report = maintenance.run_once(
            self.app, disabled_log_level=self.settings.disabled_type_log_level
        )
        failures: list[BaseException] = report.get("failures", [])
        unavailable = [exc for exc in failures if self.app.backend.is_unavailable(exc)]
        if unavailable:
            backoff.failed(unavailable[0])
        elif not failures:
            backoff.succeeded()

    def _try_lock(self) -> Lease | None:
        try:
            lease = self.app.mutex(MUTEX, timeout=0).acquire()
        except LockTimeout:
            return None
        log.debug("This process now runs the cluster's maintenance.")
        return lease
