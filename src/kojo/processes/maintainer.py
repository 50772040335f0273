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

from ..backends import ProcessInfo
from ..clock import utcnow
from ..logs import get_logger
from .lineage import Lineage
from .signal_queue import SignalQueue

if TYPE_CHECKING:
    from ..app import App

INTERVAL = 1.0
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
        use_owner = getattr(self.app, "use_owner", None)
        if use_owner is not None:
            use_owner(owner)
        signals = SignalQueue([signal.SIGTERM])
        try:
            while not signals.pop_all():
                if owner.is_lost():
                    return 1
                try:
                    self.run_duties()
                except Exception:
                    log.exception("Maintenance pass failed.")
                ready, _, _ = select.select([signals.fileno(), owner.fileno()], [], [], INTERVAL)
                if owner.fileno() in ready:
                    owner.wait(0)
            return 0
        finally:
            owner.close()

    def run_duties(self) -> None:
        self.app.backend.reap_dead_owners(utcnow())
