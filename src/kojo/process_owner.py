"""This process's owner: the registration that holds its locks and dies with it.

kojo's own processes set theirs (`app.use_owner(owner)`); any other process
(a script, a web handler) gets a "client" owner registered on first use,
kept for the life of the process, replaced when its backend can no longer
vouch for it, and re-created in a forked child (which must not keep the
parent's alive: the inherited registration is abandoned at once).
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Callable

from . import settings
from .backends import Backend, Owner, ProcessInfo


def client_info() -> ProcessInfo:
    pid = os.getpid()
    return ProcessInfo(
        host_name=settings.host_name(),
        process_id=pid,
        parent_process_id=os.getppid(),
        path=f"/client[{pid}]",
        kind="client",
    )


class ProcessOwner:
    """Holds one App's owner for the current process."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._owner: Owner | None = None
        self._own = False  # registered here (a client), so ours to replace and close
        self._pid = os.getpid()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call(ref, ProcessOwner._after_fork))
        atexit.register(lambda: _call(ref, ProcessOwner._at_exit))

    def get(self) -> Owner:
        """The owner, registering a client owner if there is none (or it was lost)."""
        with self._lock:
            owner = self._owner
            if owner is not None and self._pid == os.getpid():
                if not (self._own and owner.is_lost()):
                    return owner
                _quietly(owner.close)  # lost: whatever it held is gone already
            self._owner = self._backend.register_owner(client_info())
            self._own = True
            self._pid = os.getpid()
            return self._owner

    def use(self, owner: Owner | None) -> None:
        """Make `owner` (registered by the caller, who closes it) this process's owner."""
        with self._lock:
            if self._own and self._owner is not None and self._owner is not owner:
                self._owner.close()
            self._owner = owner
            self._own = False
            self._pid = os.getpid()

    def replace_lost(self, owner: Owner) -> bool:
        """`owner` was found dead by the database: True if a new one will be registered."""
        with self._lock:
            if self._owner is not owner or not self._own:
                return False
            _quietly(owner.close)  # it is dead already; closing only tidies up
            self._owner = None
            return True

    def close(self) -> None:
        """Unregister a client owner now (its locks are freed at once)."""
        with self._lock:
            owner, self._owner = self._owner, None
            if owner is not None and self._own and self._pid == os.getpid():
                owner.close()

    def _at_exit(self) -> None:
        _quietly(self.close)

    def _after_fork(self) -> None:
        # Another thread may have held the lock at fork(): never wait for it here.
        self._lock = threading.Lock()
        owner, self._owner = self._owner, None
        # An owner closed already has no descriptors left: abandoning it would
        # close numbers that now belong to other files.
        if owner is not None and self._own and not owner.is_lost():
            _quietly(owner.abandon)  # the parent's flock or session must not live on in us
        self._own = False
        self._pid = os.getpid()


def _call(ref: weakref.ref[ProcessOwner], method: Callable[[ProcessOwner], None]) -> None:
    keeper = ref()
    if keeper is not None:
        method(keeper)


def _quietly(action: Callable[[], None]) -> None:
    try:
        action()
    except Exception:
        pass
