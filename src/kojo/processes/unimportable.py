"""The job types whose workers a job process cannot import, and when it tries again.

A worker that cannot be imported (the app's folder is not on the import path, a
deploy is missing a module, a module raises at import) is a setup error, never
the job's fault: the job process gives the job back untouched (waiting, its
counters as they were) and leaves the type out of its claims for a while, so
that processes that can import it work its jobs meanwhile and none of them is
claimed and given back in a loop. It says so once per type, loudly; it tries
again after RETRY_FIRST seconds, then less and less often (at most RETRY_MAX
apart), so a fix deployed while the server runs is picked up by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import WorkerUnavailable
from ..logs import get_logger

RETRY_FIRST = 5.0  # seconds before a process tries a type's worker again
RETRY_MAX = 300.0
log = get_logger("job")


@dataclass
class _Failure:
    until: float  # monotonic: left out of claims until then
    delay: float


class UnimportableTypes:
    """One job process's memory of the types whose workers it could not import."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        # By type code; empty while every worker imports (the job process looks at it
        # before calling skips() and worked(): two calls per job saved on the plain path).
        self.failing: dict[str, _Failure] = {}

    def skipped(self) -> list[str]:
        """The types to leave out of a claim now."""
        if not self.failing:
            return []
        now = self.clock.monotonic()
        return sorted(code for code, f in self.failing.items() if f.until > now)

    def skips(self, type_code: str) -> bool:
        """Whether a job of `type_code` claimed earlier (in the same batch) is to be given
        back without trying its worker again."""
        failure = self.failing.get(type_code)
        return failure is not None and failure.until > self.clock.monotonic()

    def failed(self, exc: WorkerUnavailable) -> None:
        """The worker of `exc.type_code` could not be imported: leave the type out for a
        while (longer each time); log it the first time only."""
        failure = self.failing.get(exc.type_code)
        delay = RETRY_FIRST if failure is None else min(RETRY_MAX, failure.delay * 2)
        self.failing[exc.type_code] = _Failure(self.clock.monotonic() + delay, delay)
        if failure is not None:
            log.debug(f"{exc}; trying again in {delay:g} s.")
            return
        log.error(
            f"Job type [{exc.type_code}] cannot run in this process: its worker "
            f"{exc.worker_uri} {exc.why}. A setup error, not the jobs' fault: they stay "
            "waiting, nothing counted against them, for a process that can import it; this "
            f"one tries again in {delay:g} s. To fix: {exc.FIX}.",
            extra={
                "context": {
                    "type_code": exc.type_code,
                    "worker": exc.worker_uri,
                    "error": exc.why,
                }
            },
        )

    def worked(self, type_code: str) -> None:
        """The worker of `type_code` was imported (after all)."""
        if self.failing.pop(type_code, None) is not None:
            log.info(f"Job type [{type_code}]: its worker can be imported now; working its jobs.")
