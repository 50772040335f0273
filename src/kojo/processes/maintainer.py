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
from ..backends import ProcessInfo
from ..errors import KojoError, LockTimeout
from ..locks import Lease
from ..logs import get_logger
from .lineage import Lineage
from .signal_queue import SignalQueue

if TYPE_CHECKING:
    from ..app import App

INTERVAL = 1.0
MUTEX = "kojo.maintainer"
log = get_logger("maintainer")


class Maintainer:
    def __init__(self, app: App, lineage: Lineage, host_name: str) -> None:
        self.app = app
        self.lineage = lineage
        self.host_name = host_name

    def run(self) -> int:
        backend = self.app.backend
        owner = backend.register_owner(
            ProcessInfo(self.host_name, os.getpid(), os.getppid(), self.lineage.path, "maintainer")
        )
        self.app.use_owner(owner)
        signals = SignalQueue([signal.SIGTERM])
        lease: Lease | None = None
        try:
            while not signals.pop_all():
                if owner.is_lost():
                    return 1
                if lease is None:
                    lease = self._try_lock()
                if lease is not None:
                    try:
                        maintenance.run_once(self.app)
                    except Exception:
                        log.exception("Maintenance pass failed.")
                ready, _, _ = select.select([signals.fileno(), owner.fileno()], [], [], INTERVAL)
                if owner.fileno() in ready:
                    owner.wait(0)
            return 0
        finally:
            if lease is not None:
                try:
                    lease.release()
                except KojoError:
                    pass
            owner.close()

    def _try_lock(self) -> Lease | None:
        try:
            lease = self.app.mutex(MUTEX, timeout=0).acquire()
        except LockTimeout:
            return None
        log.debug("This process now runs the cluster's maintenance.")
        return lease
