"""The event loop that async workers run on: one per process, made when first needed.

A job process works one job at a time, so one loop serves every async job it
runs: jobs do not pay for a new loop each. A forked child never uses the loop
it inherited (its selector is shared with the parent): it makes its own.
asyncio is imported on first use: a server with only sync workers (SQLite)
starts without it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")

_runner: asyncio.Runner | None = None
_pid = 0  # the process that made _runner
# Runners inherited through fork: kept, so never closed nor collected. Closing the
# parent's loop here would remove the signal handlers it had added, which resets the
# wakeup fd that this process's SignalQueue set. One per fork that had a loop.
_inherited: list[asyncio.Runner] = []


def loop() -> asyncio.AbstractEventLoop:
    """This process's loop for async workers (made here if need be)."""
    return _this_process_runner().get_loop()


def run_coroutine(awaitable: Awaitable[T]) -> T:
    """Await `awaitable` to completion on this process's loop; its value or its exception.

    Tasks it started and left running are cancelled when it ends: they belong to
    this job and must not run on into the next async job.
    """
    runner = _this_process_runner()
    try:
        return runner.run(_as_coroutine(awaitable))
    finally:
        _cancel_leftovers(runner.get_loop())


def _this_process_runner() -> asyncio.Runner:
    global _runner, _pid
    runner = _runner
    if runner is None or _pid != os.getpid():
        import asyncio

        if runner is not None:
            _inherited.append(runner)
        runner = _runner = asyncio.Runner()
        _pid = os.getpid()
    return runner


def _as_coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    if isinstance(awaitable, Coroutine):
        return awaitable

    async def wait() -> T:
        return await awaitable

    return wait()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    import asyncio

    leftovers = asyncio.all_tasks(loop)
    if not leftovers:
        return
    for task in leftovers:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
