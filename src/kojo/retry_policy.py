"""When a job whose worker raised is run again: the retry policy and its backoff.

A job is retried while times_retried < max_retries (its type's), each time after
an exponential backoff with jitter, so that many jobs failing on one cause (a
service down) do not all come back at the same moment.
"""

from __future__ import annotations

import random
from datetime import timedelta

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 3600.0


def may_retry(times_retried: int, max_retries: int) -> bool:
    """Whether a job that raised after `times_retried` retries is retried once more."""
    return times_retried < max_retries


def backoff_delay(
    times_retried: int, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS
) -> timedelta:
    """Exponential backoff with full jitter in [0.5, 1.5) of base * 2**n, capped."""
    seconds = min(cap, base * (2 ** min(times_retried, 30)))
    return timedelta(seconds=seconds * random.uniform(0.5, 1.5))
