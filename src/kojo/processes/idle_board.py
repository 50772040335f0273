"""Which of a root's job processes are idle, and since when: a board in shared memory.

The root maps it before forking; each job process writes only its own slot
(the monotonic time it became idle, or 0.0 while it works a batch) and the root
reads them all to grow and shrink its pool without asking anyone.
"""

from __future__ import annotations

import mmap
import struct
import time

SLOTS = 1024
_DOUBLE = struct.Struct("d")
BUSY = 0.0


class IdleBoard:
    def __init__(self) -> None:
        self._map = mmap.mmap(-1, SLOTS * _DOUBLE.size)  # anonymous, shared with children
        self._free = list(range(SLOTS - 1, -1, -1))

    def take(self) -> int:
        """A free slot for a new job process, marked idle from now."""
        slot = self._free.pop()
        self.mark_idle(slot)
        return slot

    def give_back(self, slot: int) -> None:
        self._free.append(slot)

    def mark_idle(self, slot: int) -> None:
        _DOUBLE.pack_into(self._map, slot * _DOUBLE.size, time.monotonic())

    def mark_busy(self, slot: int) -> None:
        _DOUBLE.pack_into(self._map, slot * _DOUBLE.size, BUSY)

    def idle_since(self, slot: int) -> float | None:
        """When the process in `slot` became idle (monotonic), or None while it works."""
        value: float = _DOUBLE.unpack_from(self._map, slot * _DOUBLE.size)[0]
        return None if value == BUSY else value
