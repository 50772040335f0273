"""The root's pool rules (kojo.processes.pool_policy), without processes or clocks."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kojo.processes.pool_policy import (
    RESPAWN_BACKOFF_MAX,
    TIMEOUT_GRACE,
    ChildView,
    Drained,
    Kill,
    Pool,
    Retire,
    Spawn,
    StopNow,
    decide,
    due_count_wanted,
    maintainer_due,
    respawn_delay,
)

NOW = 1000.0
RETIRE = 300.0
SHUTDOWN = 30.0
MAINTAINER = ChildView(1, "maintainer")


def busy(pid: int, **kw: object) -> ChildView:
    return ChildView(pid, "job", **kw)  # type: ignore[arg-type]


def idle(pid: int, since: float) -> ChildView:
    return ChildView(pid, "job", idle_since=since)


def pool(*children: ChildView, target: int = 3, fill: bool = False, **kw: object) -> Pool:
    return Pool(
        (MAINTAINER, *children),
        target=target,
        idle_retire=RETIRE,
        shutdown_timeout=SHUTDOWN,
        fill=fill,
        **kw,  # type: ignore[arg-type]
    )


def test_a_new_root_fills_to_the_target_then_forks_a_maintainer() -> None:
    empty = Pool((), target=3, idle_retire=RETIRE, shutdown_timeout=SHUTDOWN)
    decision = decide(empty, due=0, now=NOW)
    # job processes first: the first job does not wait for the maintainer's fork
    assert decision.actions == [Spawn("job"), Spawn("job"), Spawn("job"), Spawn("maintainer")]
    assert decision.fill is False  # filled: from now on the pool grows on demand


def test_a_starting_root_forks_its_job_processes_before_its_maintainer_is_due() -> None:
    starting = Pool(
        (), target=2, idle_retire=RETIRE, shutdown_timeout=SHUTDOWN, maintainer_from=NOW + 0.5
    )
    assert decide(starting, due=0, now=NOW).actions == [Spawn("job"), Spawn("job")]
    assert maintainer_due(starting, NOW) == NOW + 0.5  # the root wakes up for it
    started = replace(starting, children=(busy(10), busy(11)), fill=False)
    assert decide(started, due=0, now=NOW + 0.4).actions == []
    assert decide(started, due=0, now=NOW + 0.5).actions == [Spawn("maintainer")]
    assert maintainer_due(replace(started, children=(MAINTAINER,)), NOW) is None
    assert maintainer_due(replace(started, draining=True, drain_deadline=NOW + 9), NOW) is None


def test_it_grows_up_to_the_target_when_all_are_busy_and_due_work_waits() -> None:
    all_busy = pool(busy(10), target=4)
    assert due_count_wanted(all_busy, NOW, next_check=0.0) == 3  # the query's limit
    assert decide(all_busy, due=2, now=NOW).actions == [Spawn("job"), Spawn("job")]
    assert decide(all_busy, due=50, now=NOW).actions == [Spawn("job")] * 3  # not past target
    assert decide(all_busy, due=0, now=NOW).actions == []


def test_due_work_is_not_counted_while_one_is_idle_or_too_soon() -> None:
    assert due_count_wanted(pool(busy(10), idle(11, NOW)), NOW, next_check=0.0) == 0
    assert due_count_wanted(pool(busy(10)), NOW, next_check=NOW + 0.05) == 0
    assert due_count_wanted(pool(busy(10), fill=True), NOW, next_check=0.0) == 0
    assert due_count_wanted(pool(busy(10), draining=True), NOW, next_check=0.0) == 0
    assert due_count_wanted(pool(busy(10), next_respawn=NOW + 1), NOW, next_check=0.0) == 0
    assert due_count_wanted(pool(busy(10), busy(11), busy(12)), NOW, next_check=0.0) == 0


def test_an_empty_pool_keeps_one_job_process_without_demand() -> None:
    assert decide(pool(), due=0, now=NOW).actions == [Spawn("job")]


def test_a_quiet_host_keeps_one_idle_and_retires_the_longest_idle() -> None:
    quiet = pool(idle(10, NOW - RETIRE - 5), idle(11, NOW - RETIRE), idle(12, NOW - 1))
    assert decide(quiet, due=0, now=NOW).actions == [Retire(10, SHUTDOWN, idle_for=RETIRE)]
    # One retirement per turn; the last idle one stays however long it idles.
    assert decide(pool(idle(12, NOW - 10 * RETIRE)), due=0, now=NOW).actions == []
    # Idle, but not for long enough yet.
    young = pool(idle(10, NOW - RETIRE + 1), idle(11, NOW - 1))
    assert decide(young, due=0, now=NOW).actions == []


def test_scaling_down_retires_the_newest_surplus_first() -> None:
    many = pool(busy(10), busy(12), busy(11), target=1)
    assert decide(many, due=0, now=NOW).actions == [Retire(12, SHUTDOWN), Retire(11, SHUTDOWN)]
    assert decide(replace(many, target=0), due=0, now=NOW).actions == [
        Retire(12, SHUTDOWN),
        Retire(11, SHUTDOWN),
        Retire(10, SHUTDOWN),
    ]


def test_a_surplus_idle_process_is_retired_once() -> None:
    surplus = pool(idle(10, NOW - 1), idle(12, NOW - 2 * RETIRE), target=1)
    assert decide(surplus, due=0, now=NOW).actions == [Retire(12, SHUTDOWN)]


def test_retiring_processes_do_not_count_toward_the_target() -> None:
    leaving = pool(busy(10), busy(11, retiring=True, kill_at=NOW + 5), target=2)
    assert decide(leaving, due=1, now=NOW).actions == [Spawn("job")]


def test_a_job_process_past_its_deadline_and_grace_is_killed_once() -> None:
    frozen = busy(10, job_deadline=NOW - TIMEOUT_GRACE / 2)
    assert decide(pool(frozen), due=0, now=NOW).actions == []
    at = NOW + TIMEOUT_GRACE / 2
    assert decide(pool(frozen), due=0, now=at).actions == [Kill(10, "timeout")]
    killed = replace(frozen, timed_out=True)
    assert decide(pool(killed), due=0, now=at).actions == []


def test_a_retiring_process_that_does_not_stop_in_time_is_killed() -> None:
    slow = busy(10, retiring=True, kill_at=NOW)
    assert Kill(10, "late") in decide(pool(slow), due=0, now=NOW).actions
    assert Kill(10, "late") not in decide(pool(slow), due=0, now=NOW - 0.01).actions


def test_nothing_is_forked_during_a_respawn_backoff_but_kills_go_on() -> None:
    backing_off = Pool(
        (busy(10, retiring=True, kill_at=NOW),),
        target=3,
        idle_retire=RETIRE,
        shutdown_timeout=SHUTDOWN,
        next_respawn=NOW + 0.1,
    )
    assert decide(backing_off, due=0, now=NOW).actions == [Kill(10, "late")]
    later = decide(backing_off, due=0, now=NOW + 0.1).actions
    assert later == [Kill(10, "late"), *[Spawn("job")] * 3, Spawn("maintainer")]


def test_the_respawn_pause_doubles_while_children_die_young() -> None:
    delays = [0.0]
    for _ in range(10):
        delays.append(respawn_delay(delays[-1], lived=0.2))
    assert delays[:5] == [0.0, 0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == RESPAWN_BACKOFF_MAX
    assert respawn_delay(RESPAWN_BACKOFF_MAX, lived=1.0) == 0.0


def test_forks_stop_at_the_idle_boards_size_and_filling_goes_on() -> None:
    full = pool(busy(10), target=4, fill=True, free_slots=1)
    decision = decide(full, due=0, now=NOW)
    assert decision.actions == [Spawn("job")]
    assert decision.fill is True  # the rest once slots come back


@pytest.mark.parametrize("deadline_passed", [False, True])
def test_draining_waits_for_the_children_then_stops(deadline_passed: bool) -> None:
    drain_deadline = NOW - 1 if deadline_passed else NOW + 1
    draining = Pool(
        (replace(MAINTAINER, retiring=True), busy(10, retiring=True)),
        target=3,
        idle_retire=RETIRE,
        shutdown_timeout=SHUTDOWN,
        draining=True,
        drain_deadline=drain_deadline,
    )
    expected = [StopNow()] if deadline_passed else []
    assert decide(draining, due=5, now=NOW).actions == expected  # no forks while draining
    assert decide(replace(draining, children=()), due=0, now=NOW).actions == [Drained()]
