"""Signals as events in a main loop: handlers only enqueue (gunicorn's arbiter does the same)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable


class SignalQueue:
    """Catches signals; wakes select() through a pipe; the loop pops them in order."""

    def __init__(self, signals: Iterable[signal.Signals]) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._queue: list[int] = []
        for signum in signals:
            signal.signal(signum, self._handle)
        # Also wakes select() when a signal lands between the check and the call.
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def _handle(self, signum: int, _frame: object) -> None:
        self._queue.append(signum)

    def fileno(self) -> int:
        return self._read

    def pending(self) -> bool:
        """Whether a signal waits to be popped (no system call: cheap enough per job)."""
        return bool(self._queue)

    def pop_all(self) -> list[int]:
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass
        popped, self._queue = self._queue, []
        return popped

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        os.close(self._read)
        os.close(self._write)
