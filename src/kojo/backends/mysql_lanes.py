"""The claim's lane walk on MySQL, from the application: MySQL has no LATERAL, so the
walk PostgreSQL's job_claim does in one statement (docs/claiming.md) is a few small
statements here, each an index seek that reads no more rows than it takes.

A lane is one type's parallel jobs or its serial ones. It is walked priority by
priority, highest first: the highest priority below the last with a runnable job
(claim_lane_top), then that priority's due jobs in time and id order (claim_lane_bucket),
until the lane has given what it may. A parallel lane of a type without a rate limit
gives up to `limit` jobs; a serial lane, and a rate-limited type's parallel lane, one.
The lanes' jobs are then merged in selection order and the first `limit` taken.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

# Above every priority kojo stores (a 32-bit integer column).
ABOVE_ALL = 2**31
Candidate = tuple[int, datetime, int]  # -priority, work_at, id: selection order
Fetch = Callable[[str, Mapping[str, Any]], list[dict[str, Any]]]


def lane_jobs(
    fetch: Fetch, type_code: str, parallel: bool, n: int, now: datetime
) -> list[Candidate]:
    """Up to `n` due jobs of one lane, in selection order."""
    found: list[Candidate] = []
    below = ABOVE_ALL
    lane = {"type_code": type_code, "parallel": parallel}
    while len(found) < n:
        tops = fetch("claim_lane_top", {**lane, "below": below})[0]
        present = [p for p in (tops["waiting"], tops["crashed"]) if p is not None]
        if not present:
            return found
        priority = int(max(present))
        bucket = fetch(
            "claim_lane_bucket", {**lane, "priority": priority, "now": now, "n": n - len(found)}
        )
        found += sorted(
            (-priority, row["work_at_date_time"], int(row["kojo_job_id"])) for row in bucket
        )[: n - len(found)]
        below = priority
    return found


def chosen_ids(
    fetch: Fetch, types: Sequence[Mapping[str, Any]], limit: int, now: datetime
) -> list[int]:
    """The ids a claim of up to `limit` jobs takes from the lanes of `types` (rows of
    job_claim's first step: type_code, rate_limit_seconds, serial_free)."""
    candidates: list[Candidate] = []
    for row in types:
        code = str(row["type_code"])
        many = limit if not row["rate_limit_seconds"] else 1
        candidates += lane_jobs(fetch, code, True, many, now)
        if row["serial_free"]:
            candidates += lane_jobs(fetch, code, False, 1, now)
    return [job_id for _, _, job_id in sorted(candidates)[:limit]]
