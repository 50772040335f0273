"""The server: `kojo server start`. One per host name and database.

It forks the root and forks it again whenever it dies. Signals:
SIGTERM / SIGINT / SIGHUP / SIGUSR1 drain (a second one stops now),
SIGQUIT stops now, SIGTTIN / SIGTTOU add or remove a job process.
`kojo ctl drain HOST` drains the server of that host.
"""

from __future__ import annotations

import os
import select
import signal
import time
from typing import TYPE_CHECKING

from ..backends import Owner
from ..backends.vouching import Voucher
from ..clock import SYSTEM_CLOCK, Clock
from ..control import CommandFeed
from ..errors import LockTimeout, WorkerUnavailable
from ..logs import get_logger
from ..settings import Settings
from . import patience
from .lifetime import Lifetime, close_owner
from .lineage import Lineage, describe_status, fork_child, server_lineage
from .root import Root
from .signal_queue import SignalQueue

if TYPE_CHECKING:
    from ..app import App

log = get_logger("server")
ROOT_RESPAWN_DELAY = 1.0
DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


class Server:
    def __init__(self, app: App, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.app = app
        self.settings = settings
        self.clock = clock
        self.lineage: Lineage = server_lineage()
        self.root_pid: int | None = None
        self.stopping = 0  # 0 running, 1 draining, 2 stopping now
        self.owner: Owner | None = None
        # Where the server's registration vouches for the whole tree below it (one
        # database session per host, docs/architecture.md): its side of that.
        self.voucher: Voucher | None = None
        self.commands = CommandFeed(app.backend)

    def run(self) -> int:
        self.lineage.announce()
        self.life = Lifetime(
            self.app,
            self.settings,
            self.lineage,
            "Server",
            log,
            [*DRAIN_SIGNALS, signal.SIGQUIT, signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU],
            max_processes=self.settings.max_processes,
        )
        self.backoff = self.life.backoff
        signals = self.life.signals
        owner = self._start(signals)
        if owner is None:
            return 0
        self.voucher = self.app.backend.vouch_for_descendants(owner)
        try:
            log.info(
                f"Server started for host [{self.settings.host_name}] with "
                f"{self.settings.max_processes} job processes.",
                extra={"context": {"database": self.app.backend.safe_url()}},
            )
            self._check_workers()
            return self._loop(owner, signals)
        finally:
            if self.owner is not None:
                close_owner(self.app.backend, self.owner)

    def _start(self, signals: SignalQueue) -> Owner | None:
        """Install (or check) the schema, register the job types and this server, and take
        the host's server mutex, waiting for the database as long as it is unavailable
        (None: a signal came first, or another server holds this host name)."""
        app = self.app
        backend = app.backend
        while True:
            try:
                app.install()
                if app.job_types:
                    app.register_job_types()
                break
            except Exception as exc:
                if not backend.is_unavailable(exc):
                    raise
                patience.pause(signals, self.backoff.failed(exc))
                if signals.pop_all():
                    return None
        self.commands.look(self.clock.monotonic())  # only commands stored from now on
        owner = self._register(signals)
        if owner is not None and not self._hold_host_name(owner):
            log.warning(
                f"A kojo server is already running for host [{self.settings.host_name}] "
                "on this database. Quitting."
            )
            return None
        return owner

    def _check_workers(self) -> None:
        """Say at start which stored job types' workers cannot be imported here, one
        warning each: their jobs will wait (job_process gives them back), the others run."""
        backend = self.app.backend
        try:
            types = backend.type_list()
        except Exception as exc:
            if not backend.is_unavailable(exc):
                raise
            return  # the job processes say it, if it is so, once the database is back
        for row in types:
            try:
                self.app.worker_for(str(row["type_code"]), str(row["worker_uri"]))
            except WorkerUnavailable as exc:
                log.warning(
                    f"Job type [{exc.type_code}] cannot run on this server: its worker "
                    f"{exc.worker_uri} {exc.why}. Its jobs wait for a server that can import "
                    f"it; other types run. To fix: {exc.FIX}.",
                    extra={
                        "context": {
                            "type_code": exc.type_code,
                            "worker": exc.worker_uri,
                            "error": exc.why,
                        }
                    },
                )

    def _register(self, signals: SignalQueue) -> Owner | None:
        self.owner = self.life.register(lambda: bool(signals.pop_all()))
        return self.owner

    def _hold_host_name(self, owner: Owner) -> bool:
        """Take the mutex of this host name, held by the registration (it dies with the
        server); False if another live server holds it."""
        while True:
            try:
                self.app.mutex(f"kojo.server:{self.settings.host_name}", timeout=0).acquire()
                return True
            except LockTimeout:
                return False
            except Exception as exc:
                if owner.is_lost() or not self.app.backend.is_unavailable(exc):
                    raise
                time.sleep(self.backoff.failed(exc))

    def _registration_lost(self, signals: SignalQueue) -> Owner | None:
        """Register again after the registration was lost (a database restart, a killed
        session), and take the host name back; None to stop."""
        log.warning("Server: lost its database registration; registering again.")
        lost = self.owner
        if lost is not None:
            try:
                lost.close()
            except Exception:
                pass
        while True:
            owner = self._register(signals)
            if owner is None:
                return None
            try:
                if self._hold_host_name(owner):
                    return owner
            except Exception as exc:
                if not self.app.backend.is_unavailable(exc):
                    raise
                continue
            log.error(
                f"Another kojo server took host name [{self.settings.host_name}] while this "
                "one was cut off from the database: draining this one."
            )
            self._stop(1)
            return owner

    def _fork_root(self) -> None:
        owner = self.owner
        voucher = self.voucher

        def drop_inherited() -> None:
            if owner is not None:
                owner.abandon()
            if voucher is not None:
                voucher.abandon()
            self.app.backend.after_fork()

        def run(lineage: Lineage) -> int:
            line = None if voucher is None else voucher.line
            return Root(self.app, lineage, self.settings, self.clock, line=line).run()

        self.root_pid = fork_child(self.lineage, "root", run, drop_inherited)
        log.debug(f"Forked process[{self.root_pid}][root].")

    def _loop(self, owner: Owner, signals: SignalQueue) -> int:
        self._fork_root()
        respawn_at: float | None = None
        while True:
            for signum in signals.pop_all():
                if signum in DRAIN_SIGNALS:
                    self._stop(1 if self.stopping == 0 else 2)
                elif signum == signal.SIGQUIT:
                    self._stop(2)
                elif signum in (signal.SIGTTIN, signal.SIGTTOU):
                    self._signal_root(signum)
            root_pid = self.root_pid
            exited = self._reap_root()
            if exited is not None and root_pid is not None and self.voucher is not None:
                self.voucher.forget_tree(root_pid)
            if exited is not None:
                if self.stopping:
                    if os.waitstatus_to_exitcode(exited) == 0:
                        log.info("Server stopped.")
                        return 0
                    log.error(f"Root process failed while stopping ({describe_status(exited)}).")
                    return 1
                log.error(f"Root process died ({describe_status(exited)}); forking a new one.")
                respawn_at = self.clock.monotonic() + ROOT_RESPAWN_DELAY
            if (
                respawn_at is not None
                and self.clock.monotonic() >= respawn_at
                and not self.stopping
            ):
                respawn_at = None
                self._fork_root()
            if self.stopping and self.root_pid is None:
                return 0
            if owner.is_lost() and not self.stopping:
                if self.voucher is not None:
                    self.voucher.drop_all()  # the tree's keys went with the session
                renewed = self._registration_lost(signals)
                if renewed is None:
                    self._stop(1)
                    continue
                owner = renewed
                if self.voucher is not None:
                    self.voucher.rebind(owner)
            # The anchor's descriptor is read once, before the wait: a session that breaks
            # meanwhile (while vouching, below) has none to ask for any more.
            owner_fd = None if owner.is_lost() else owner.fileno()
            watched = [signals.fileno()] + ([] if owner_fd is None else [owner_fd])
            vouching = [] if self.voucher is None or owner_fd is None else self.voucher.filenos()
            ready, _, _ = select.select(watched + vouching, [], [], 1.0)
            if vouching:
                assert self.voucher is not None
                self.voucher.serve(ready)
            # Vouching runs statements on the anchor: a wake-up may have come meanwhile.
            if owner_fd is not None and (owner_fd in ready or vouching):
                try:
                    notes = owner.wait(0)
                except Exception:
                    if not owner.is_lost():
                        raise
                    continue
                if self.voucher is not None:
                    self.voucher.forward(notes)
                for note in notes:
                    self.commands.hint(note)
            for command in self.commands.look(self.clock.monotonic()):
                if command.command == "drain" and command.is_for(self.settings.host_name):
                    log.info("Drain requested through kojo ctl.")
                    self._stop(1)

    def _stop(self, level: int) -> None:
        if level <= self.stopping:
            return
        self.stopping = level
        if level == 1:
            log.info("Stopping gracefully (send the signal again to stop now).")
            self._signal_root(signal.SIGTERM)
        else:
            log.info("Stopping now.")
            self._signal_root(signal.SIGQUIT)

    def _signal_root(self, signum: int) -> None:
        if self.root_pid is not None:
            try:
                os.kill(self.root_pid, signum)
            except ProcessLookupError:
                pass

    def _reap_root(self) -> int | None:
        """The root's wait status if it has exited."""
        if self.root_pid is None:
            return None
        try:
            pid, status = os.waitpid(self.root_pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.root_pid, 0
        if pid == 0:
            return None
        self.root_pid = None
        return status
