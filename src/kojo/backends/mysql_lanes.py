"""The claim's lane walk on MySQL, from the application: MySQL has no LATERAL, so the
walk PostgreSQL's job_claim does in one statement (docs/claiming.md) is a few small
statements here, each an index seek that reads no more rows than it takes.

A lane is one type's parallel jobs or its serial ones. It is walked priority by
priority, highest first: the highest priority below the last with a runnable job
(claim_lane_top), then that priority's due jobs in time and id order, until the lane has
given what it may. A parallel lane of a type without a rate limit gives up to `limit`
jobs, taken row by row with SKIP LOCKED (claim_lane_rows_locked), so that claims of one
type at the same moment take different jobs; its type's row is not needed. A serial
lane, and a rate-limited type's parallel lane, give one job, and only to the claim that
holds the type's row (job_claim's first step), which is all they need
(claim_lane_bucket). The lanes' jobs are then merged in selection order and the first
`limit` taken.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

# Above every priority kojo stores (a 32-bit integer column).
ABOVE_ALL = 2**31
RUNNABLE = ("waiting", "crashed")
Candidate = tuple[int, datetime, int]  # -priority, work_at, id: selection order
Fetch = Callable[[str, Mapping[str, Any]], list[dict[str, Any]]]


def lane_jobs(
    fetch: Fetch, type_code: str, parallel: bool, n: int, now: datetime, *, row_locks: bool
) -> list[Candidate]:
    """Up to `n` due jobs of one lane, in selection order; with `row_locks`, each locked
    (SKIP LOCKED) as it is read: a parallel lane only."""
    found: list[Candidate] = []
    below = ABOVE_ALL
    lane = {"type_code": type_code, "parallel": parallel}
    while len(found) < n:
        tops = fetch("claim_lane_top", {**lane, "below": below})[0]
        present = [tops[state] for state in RUNNABLE if tops[state] is not None]
        if not present:
            return found
        priority = int(max(present))
        step = {**lane, "priority": priority, "now": now, "n": n - len(found)}
        if row_locks:
            rows = []
            for state in RUNNABLE:
                if tops[state] == priority:
                    rows += fetch("claim_lane_rows_locked", {**step, "state": state})
        else:
            rows = fetch("claim_lane_bucket", step)
        found += sorted(
            (-priority, row["work_at_date_time"], int(row["kojo_job_id"])) for row in rows
        )[: n - len(found)]
        below = priority
    return found


def chosen_ids(
    fetch: Fetch,
    held: Sequence[Mapping[str, Any]],
    parallel: Collection[str],
    limit: int,
    now: datetime,
) -> list[int]:
    """The ids a claim of up to `limit` jobs takes: from the lanes of the types whose rows
    it holds (`held`: rows of job_claim's first step, with type_code, rate_limit_seconds
    and serial_free), and from the parallel lanes of the types without a rate limit
    (`parallel`, held or not)."""
    candidates: list[Candidate] = []
    for code in sorted(parallel):
        candidates += lane_jobs(fetch, code, True, limit, now, row_locks=True)
    for row in held:
        code = str(row["type_code"])
        if row["rate_limit_seconds"]:
            candidates += lane_jobs(fetch, code, True, 1, now, row_locks=False)
        if row["serial_free"]:
            candidates += lane_jobs(fetch, code, False, 1, now, row_locks=False)
    return [job_id for _, _, job_id in sorted(candidates)[:limit]]
