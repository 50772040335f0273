"""How a blocked lock waiter sleeps without polling, and how a releaser wakes it: the
interface each driver implements (sqlite_bells.py, postgres_bells.py, mysql_bells.py).

Every waiting thread has its own *bell*, whose address is stored in its
waiter row, so threads of one process never take each other's wake-ups and a
release wakes one chosen waiter rather than all of them. A thread keeps its
bell for its next waits (a stale ring costs one extra look, nothing more).
Bells are hints: the waiter re-checks the lock in the database after every
wake, and also every so often (locks.py), so a lost wake-up costs latency,
never a deadlock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Backend
    from .driver import Owner


class Bell(ABC):
    """One thread's wake-up: `address` goes into its waiter rows."""

    address: str

    def usable(self, backend: Backend, owner: Owner) -> bool:
        """Still good for waiting on `backend` from this thread, registered as `owner`."""
        return True

    @abstractmethod
    def prepare(self) -> None:
        """In the transaction registering a waiter row: drop stale rings, start listening."""

    def committed(self) -> None:
        """That transaction committed."""

    def rolled_back(self) -> None:
        """That transaction rolled back."""

    @abstractmethod
    def wait(self, timeout: float) -> bool:
        """True when rung (or a watched holder exited) within `timeout` seconds."""

    def watch(self, pids: Iterable[int]) -> None:
        """Also wake when one of these (holder) processes exits, where the OS can tell."""

    def expect(self, urgent: bool) -> None:
        """Whether this waiter is near the head of its queue (a ring may come any moment)
        or further back (a nudge comes first): where rings are polled for (MySQL), how
        fast."""

    def done(self) -> None:
        """A wait is over (the bell is kept for the next one)."""

    @abstractmethod
    def close(self) -> None: ...


class Ringer(ABC):
    """Wakes waiters, given the bells of their rows, oldest first."""

    # True: ring inside the releasing transaction (delivered at its commit);
    # False: ring after the commit, which also tells whether the waiter still listens.
    rings_in_transaction = False

    def ring_in_transaction(self, backend: Backend, bells: list[str]) -> None:
        """Inside the releasing transaction: ring every one of `bells`."""

    def ring_after_commit(self, bells: list[str], wanted: int) -> None:
        """Ring bells in order until `wanted` of them answered."""

    @abstractmethod
    def bell(self, backend: Backend, owner: Owner | None = None) -> Bell:
        """A new bell for the calling thread, registered as `owner` (MySQL needs it)."""
