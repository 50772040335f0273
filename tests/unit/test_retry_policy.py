"""kojo.retry_policy: retried while max_retries allows, after a jittered exponential backoff."""

from __future__ import annotations

from datetime import timedelta

from kojo.retry_policy import backoff_delay, may_retry


def test_retried_while_max_retries_allows() -> None:
    assert may_retry(0, 1) and may_retry(2, 3)
    assert not may_retry(0, 0) and not may_retry(3, 3)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    for n in range(8):
        delay = backoff_delay(n)
        assert timedelta(seconds=0.5 * 2**n) <= delay < timedelta(seconds=1.5 * 2**n)
    assert timedelta(seconds=1800) <= backoff_delay(10**6) < timedelta(seconds=5400)
