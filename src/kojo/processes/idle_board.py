"""Which of a root's job processes are idle, and since when: a board in shared memory.

The root maps it before forking; each job process writes only its own slot
(the monotonic time it became idle, or 0.0 while it works a batch; and the
monotonic time by which its current job must end, when its type has a timeout)
and the root reads them all to grow and shrink its pool without asking anyone,
and to kill a job process whose job outlived its timeout without dying of it (a
frozen process does not act on its SIGALRM until it is continued).
"""

from __future__ import annotations

import mmap
import struct

from ..clock import SYSTEM_CLOCK, Clock
from ..settings import MAX_PROCESSES

SLOTS = MAX_PROCESSES  # one per job process
_DOUBLE = struct.Struct("d")
_SLOT = 2 * _DOUBLE.size  # idle since, deadline
BUSY = 0.0
NO_DEADLINE = 0.0


class IdleBoard:
    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._map = mmap.mmap(-1, SLOTS * _SLOT)  # anonymous, shared with children
        self._free = list(range(SLOTS - 1, -1, -1))

    def free(self) -> int:
        """How many more job processes the board has room for."""
        return len(self._free)

    def take(self) -> int:
        """A free slot for a new job process, marked idle from now (IndexError if none)."""
        slot = self._free.pop()
        self.mark_idle(slot)
        self.set_deadline(slot, None)
        return slot

    def give_back(self, slot: int) -> None:
        self._free.append(slot)

    def mark_idle(self, slot: int) -> None:
        _DOUBLE.pack_into(self._map, slot * _SLOT, self._clock.monotonic())

    def mark_busy(self, slot: int) -> None:
        _DOUBLE.pack_into(self._map, slot * _SLOT, BUSY)

    def idle_since(self, slot: int) -> float | None:
        """When the process in `slot` became idle (monotonic), or None while it works."""
        value: float = _DOUBLE.unpack_from(self._map, slot * _SLOT)[0]
        return None if value == BUSY else value

    def set_deadline(self, slot: int, deadline: float | None) -> None:
        """The monotonic time by which the current job must end (None: no timeout)."""
        value = NO_DEADLINE if deadline is None else deadline
        _DOUBLE.pack_into(self._map, slot * _SLOT + _DOUBLE.size, value)

    def deadline(self, slot: int) -> float | None:
        value: float = _DOUBLE.unpack_from(self._map, slot * _SLOT + _DOUBLE.size)[0]
        return None if value == NO_DEADLINE else value
