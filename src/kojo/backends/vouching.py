"""One registration per host that vouches for the processes below it.

Where an owner costs a database session (PostgreSQL's anchor), the server holds
the host's only one and registers its descendants (the root, job processes, the
maintainer) on it: their liveness locks are held by its session, so the whole
host dies with it. They reach it through a `VouchLine` inherited at fork; each
gets a doorbell socket the server forwards its wake-ups to, and whose hang-up
tells the server the process is gone. A parent that reaps a child reports it
(`release`) before reaping the child's registrations, which are then dead at once.

Dialects whose owners cost nothing (SQLite's flocked files) vouch for no one:
`Driver.vouch_for_descendants` returns None and every process registers itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .driver import Notification, Owner, ProcessInfo


class VouchLine(ABC):
    """A descendant's way to the voucher (inherited through fork)."""

    @abstractmethod
    def register(self, info: ProcessInfo) -> Owner:
        """Register this process, vouched for by the host's registration
        (DatabaseUnavailable when the voucher cannot now)."""

    @abstractmethod
    def release(self, pid: int) -> None:
        """Child `pid` was reaped: its registrations are dead from now on."""


class Voucher(ABC):
    """The host registration's side, run by the server's loop."""

    line: VouchLine

    @abstractmethod
    def filenos(self) -> list[int]:
        """Descriptors to watch: requests, and the doorbells of vouched processes."""

    @abstractmethod
    def serve(self, ready: Collection[int]) -> None:
        """Answer requests and notice hang-ups among the `ready` descriptors."""

    @abstractmethod
    def forward(self, notes: list[Notification]) -> None:
        """Pass the host registration's wake-ups on to every vouched process."""

    @abstractmethod
    def forget_tree(self, pid: int) -> None:
        """Process `pid` (the root) was reaped: its registrations and its children's are
        dead from now on (its children die with it; any that did not stops once it sees
        the database no longer vouches for it)."""

    @abstractmethod
    def drop_all(self) -> None:
        """The host registration was lost: every vouched process lost its own too."""

    @abstractmethod
    def abandon(self) -> None:
        """In a forked child: close the voucher's own sockets (the line stays usable)."""

    @abstractmethod
    def rebind(self, anchor: Owner) -> None:
        """Vouch through a new host registration from now on."""
