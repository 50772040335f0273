"""SignalQueue: handlers only enqueue; select() wakes; the loop pops in order."""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Iterator

import pytest

from kojo.processes.signal_queue import SignalQueue


@pytest.fixture
def queue() -> Iterator[SignalQueue]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    signals = SignalQueue([signal.SIGUSR1, signal.SIGUSR2])
    try:
        yield signals
    finally:
        signals.close()
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_signals_wake_select_and_pop_in_order(queue: SignalQueue) -> None:
    assert select.select([queue.fileno()], [], [], 0)[0] == []
    os.kill(os.getpid(), signal.SIGUSR2)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert select.select([queue.fileno()], [], [], 1.0)[0] == [queue.fileno()]
    assert queue.pop_all() == [signal.SIGUSR2, signal.SIGUSR1]
    assert queue.pop_all() == []
    assert select.select([queue.fileno()], [], [], 0)[0] == []  # drained
