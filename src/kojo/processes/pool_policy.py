"""What the root should do with its pool now: a pure function of what it sees.

The root gathers a `Pool` (its children as the idle board shows them, its target,
the clock's reading) and executes the actions `decide` returns; nothing here
reads a clock, signals a process or asks the database, so every rule is unit
tested (tests/unit/test_pool_policy.py).

The rules, in the order the root applies them:

- a job process still alive TIMEOUT_GRACE after its job's deadline did not act on
  its SIGALRM (frozen, or the signal blocked): kill it;
- a retiring child past its kill deadline did not stop in time: kill it;
- draining: done once no child is left; past the drain deadline, stop now;
- otherwise, unless a respawn backoff runs: fork job processes up to the target (all
  at once while filling, else as many as the due work calls for, and at least one),
  then the maintainer if there is none, but not before `maintainer_from` (the root's
  start + MAINTAINER_DELAY: its housekeeping is never as urgent as the first jobs,
  so its connections and first pass do not compete with their start-up; the root
  reaps a previous root's registrations itself); retire the surplus above the target
  (the newest first); retire the longest-idle job process once it has idled
  IDLE_RETIRE seconds while another one is idle too, so a quiet host keeps one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A job process still alive this long after its job's timeout did not act on its SIGALRM
# (frozen by SIGSTOP, or the signal blocked): the root kills it.
TIMEOUT_GRACE = 1.0
RESPAWN_BACKOFF_MAX = 10.0
QUICK_DEATH = 1.0  # a child dying younger than this doubles the respawn pause
MAINTAINER_DELAY = 0.5  # seconds from the root's start to its maintainer's fork


@dataclass(frozen=True)
class ChildView:
    """One live child as the root sees it."""

    pid: int
    kind: str  # "job" or "maintainer"
    retiring: bool = False
    kill_at: float | None = None  # monotonic SIGKILL deadline while retiring
    idle_since: float | None = None  # from the idle board; None while working
    job_deadline: float | None = None  # its current job's timeout (monotonic)
    timed_out: bool = False  # killed already for outliving that deadline


@dataclass(frozen=True)
class Pool:
    children: tuple[ChildView, ...]
    target: int
    idle_retire: float
    shutdown_timeout: float
    fill: bool = True  # fork up to the target without waiting for demand
    free_slots: int = 1 << 30  # room left on the idle board
    next_respawn: float = 0.0
    draining: bool = False
    drain_deadline: float = 0.0
    maintainer_from: float = 0.0  # no maintainer is forked before this

    def jobs(self) -> list[ChildView]:
        """Job processes that are not retiring."""
        return [c for c in self.children if c.kind == "job" and not c.retiring]

    def missing(self) -> int:
        return self.target - len(self.jobs())


@dataclass(frozen=True)
class Spawn:
    kind: str


@dataclass(frozen=True)
class Retire:
    """SIGTERM now, SIGKILL after `grace` seconds."""

    pid: int
    grace: float
    idle_for: float | None = None  # retired for idling this long (else: surplus)


@dataclass(frozen=True)
class Kill:
    pid: int
    reason: str  # "timeout" (outlived its job's deadline) or "late" (did not stop in time)


@dataclass(frozen=True)
class Drained:
    """Draining and no child left: the root exits."""


@dataclass(frozen=True)
class StopNow:
    """The drain deadline passed: kill what is left."""


Action = Spawn | Retire | Kill | Drained | StopNow


@dataclass(frozen=True)
class Decision:
    actions: list[Action] = field(default_factory=list)
    fill: bool = True


def job_deadlines(pool: Pool) -> list[tuple[float, int]]:
    """(deadline + grace, pid) of each job process working a job with a timeout."""
    return [
        (c.job_deadline + TIMEOUT_GRACE, c.pid)
        for c in pool.children
        if c.job_deadline is not None and not c.timed_out
    ]


def due_count_wanted(pool: Pool, now: float, next_check: float) -> int:
    """How many due jobs to count (the query's limit) before deciding; 0: no need to ask.
    Only while growing on demand, no job process is idle, and not more often than the
    root allows (`next_check`)."""
    if pool.draining or pool.fill or now < pool.next_respawn or now < next_check:
        return 0
    jobs = pool.jobs()
    if any(c.idle_since is not None for c in jobs):
        return 0
    return max(0, pool.missing())


def decide(pool: Pool, due: int, now: float) -> Decision:
    """The actions for this turn of the root's loop; `due` is the due work counted
    when `due_count_wanted` asked for it (else 0)."""
    actions: list[Action] = [Kill(pid, "timeout") for at, pid in job_deadlines(pool) if now >= at]
    actions += [
        Kill(c.pid, "late") for c in pool.children if c.kill_at is not None and now >= c.kill_at
    ]
    if pool.draining:
        if not pool.children:
            actions.append(Drained())
        elif now >= pool.drain_deadline:
            actions.append(StopNow())
        return Decision(actions, pool.fill)
    if now < pool.next_respawn:
        return Decision(actions, pool.fill)
    jobs = pool.jobs()
    missing = pool.target - len(jobs)
    fill = pool.fill
    if missing > 0:
        grow = missing if fill else max(0 if jobs else 1, due)
        grow = min(grow, missing, pool.free_slots)
        actions += [Spawn("job")] * grow
        fill = fill and grow < missing
    if now >= pool.maintainer_from and not any(c.kind == "maintainer" for c in pool.children):
        actions.append(Spawn("maintainer"))
    surplus = sorted((c.pid for c in jobs), reverse=True)[: max(0, len(jobs) - pool.target)]
    actions += [Retire(pid, pool.shutdown_timeout) for pid in surplus]
    idle = sorted((c.idle_since, c.pid) for c in jobs if c.idle_since is not None)
    if len(idle) > 1 and now - idle[0][0] >= pool.idle_retire and idle[0][1] not in surplus:
        actions.append(Retire(idle[0][1], pool.shutdown_timeout, idle_for=pool.idle_retire))
    return Decision(actions, fill)


def maintainer_due(pool: Pool, now: float) -> float | None:
    """When the maintainer, not yet forked, is due (None: there is one, or draining)."""
    if pool.draining or any(c.kind == "maintainer" for c in pool.children):
        return None
    return max(now, pool.maintainer_from, pool.next_respawn)


def respawn_delay(previous: float, lived: float) -> float:
    """The pause before forking again after a child died: doubling (0.1 s to
    RESPAWN_BACKOFF_MAX) while children die young, none once one lived long enough."""
    if lived >= QUICK_DEATH:
        return 0.0
    return min(RESPAWN_BACKOFF_MAX, max(0.1, previous * 2))
